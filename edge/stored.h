#ifndef CHAT_EDGE_STORED_H_
#define CHAT_EDGE_STORED_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

// Stored messages and the replies built from them (protocol version 2), as
// the edge's logic and its JSON codec see them: no transport types.
namespace chat::edge {

// A message object: `useq` is the receiving connection's user's.
struct MessageObject {
  std::string id;
  std::string conversation;
  int64_t seq = 0;
  int64_t useq = 0;
  std::string sent_by;
  std::string send_to;
  std::string message;
  int64_t ts_ms = 0;
  bool server = false;   // sent through the public gRPC API ("server": true)
  std::string type;      // "" = none
  std::string metadata;  // a JSON object's text, "" = none
};

struct SyncReply {
  std::vector<MessageObject> messages;
  int64_t useq = 0;  // last included, or `since` when none
  bool more = false;
  std::string epoch;
  bool reset = false;
};

struct HistoryReply {
  std::string with;
  std::string conversation;
  std::vector<MessageObject> messages;  // seq ascending
  bool more = false;
};

struct ConversationEntry {
  std::string with;
  std::string conversation;
  MessageObject last;
  int64_t unread = 0;
  int64_t read_seq = 0;
  int64_t peer_read_seq = 0;
  int64_t delivered_seq = 0;
};

struct ConversationsReply {
  std::vector<ConversationEntry> items;
  std::string next;
};

struct ReadReply {
  std::string conversation;
  int64_t read_seq = 0;
};

// message-service's answer to a send. `status` is its canonical code and
// reason as it came (EdgeSendResult.code and .error), or UNAVAILABLE when the
// link could not carry the send; the protocol error a client gets for it is
// SendErrorCode (protocol.h), the metric label OutcomeOf (edge_metrics.h).
// The rest is set when the status is OK, and is what the `sent` frame says.
struct SendResult {
  absl::Status status{absl::StatusCode::kUnavailable, ""};
  std::string id;
  int64_t ts_ms = 0;
  int delivered = 0;
  std::string conversation;
  int64_t seq = 0;
  int64_t useq = 0;  // the sender's
  bool duplicate = false;
};

struct Receipt {
  std::string conversation;
  std::string user;
  int64_t read_seq = 0;       // 0: not a read receipt
  int64_t delivered_seq = 0;  // 0: not a delivered receipt
  int64_t ts_ms = 0;
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_STORED_H_
