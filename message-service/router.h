#ifndef CHAT_MESSAGE_SERVICE_ROUTER_H_
#define CHAT_MESSAGE_SERVICE_ROUTER_H_

#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "message-service/id_generator.h"
#include "message-service/routing_table.h"

namespace chat::message {

enum class SendOutcome { kOk, kUnknownUser, kRecipientOffline, kBadRequest, kUnavailable };

struct SendInput {
  std::string sent_by;
  std::string send_to;
  std::string message;
};

struct EdgeGroup {
  std::string edge_id;
  std::vector<std::string> connection_ids;
};

struct RoutedMessage {
  SendOutcome outcome = SendOutcome::kUnavailable;
  std::string error;  // human-readable, for non-OK outcomes
  std::string id;
  int64_t ts_ms = 0;
  std::vector<EdgeGroup> edges;  // recipient connections grouped by edge
};

// Validates a send, stamps it with id and time and finds where it goes. Pure
// logic over the local routing table; delivering is the caller's job.
class Router {
 public:
  Router(const RoutingTable* table, IdGenerator* ids, const Clock* clock,
         size_t max_message_bytes);

  RoutedMessage Route(const SendInput& input) const;
  // Whether the routing table holds a complete snapshot.
  bool Ready() const { return table_->ready(); }

 private:
  const RoutingTable* table_;
  IdGenerator* ids_;
  const Clock* clock_;
  const size_t max_message_bytes_;
};

}  // namespace chat::message

#endif  // CHAT_MESSAGE_SERVICE_ROUTER_H_
