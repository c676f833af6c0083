#ifndef CHAT_MESSAGE_SERVICE_MESSAGE_SERVICE_H_
#define CHAT_MESSAGE_SERVICE_MESSAGE_SERVICE_H_

#include "chat/v1/chat.grpc.pb.h"
#include "common/service_auth.h"
#include "message-service/edge_links.h"
#include "message-service/router.h"

namespace chat::message {

struct MessageServiceOptions {
  size_t max_link_pending_bytes = 64 << 20;  // per edge, deliveries not yet written
  int max_sends_per_batch = 4096;            // more in one EdgeUp is a protocol error
  ServiceAuth auth;                          // required of every caller when set
};

// gRPC adapter: EdgeLink streams from edges and the unary Send for other
// services, both over Router + EdgeLinks.
class MessageServiceImpl final : public chat::v1::MessageService::CallbackService {
 public:
  MessageServiceImpl(const Router* router, EdgeLinks* links, MessageServiceOptions options);

  grpc::ServerUnaryReactor* Send(grpc::CallbackServerContext* ctx,
                                 const chat::v1::SendRequest* request,
                                 chat::v1::SendResponse* response) override;
  grpc::ServerBidiReactor<chat::v1::EdgeUp, chat::v1::EdgeDown>* EdgeLink(
      grpc::CallbackServerContext* ctx) override;

  // Routes one send and hands its deliveries to the edges' outboxes. Fills the
  // per-connection result when `connections` is not null.
  chat::v1::EdgeSendResult Process(const chat::v1::SendRequest& request,
                                   google::protobuf::RepeatedPtrField<chat::v1::ConnectionDelivery>*
                                       connections) const;

  const MessageServiceOptions& options() const { return options_; }
  EdgeLinks* links() const { return links_; }
  const Router* router() const { return router_; }

 private:
  const Router* router_;
  EdgeLinks* links_;
  const MessageServiceOptions options_;
};

}  // namespace chat::message

#endif  // CHAT_MESSAGE_SERVICE_MESSAGE_SERVICE_H_
