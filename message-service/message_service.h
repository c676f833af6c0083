#ifndef CHAT_MESSAGE_SERVICE_MESSAGE_SERVICE_H_
#define CHAT_MESSAGE_SERVICE_MESSAGE_SERVICE_H_

#include <functional>
#include <string>

#include "chat/v1/chat.grpc.pb.h"
#include "common/clock.h"
#include "common/service_auth.h"
#include "message-service/dispatcher.h"
#include "message-service/id_generator.h"
#include "message-service/store_worker.h"

namespace chat::message {

struct MessageServiceOptions {
  size_t max_link_pending_bytes = 64 << 20;  // per edge, deliveries not yet written
  int max_sends_per_batch = 4096;            // more in one EdgeUp is a protocol error
  size_t max_message_bytes = 128 << 10;      // chat text
  ServiceAuth auth;                          // public and internal credentials
};

// gRPC adapters. MessageServiceImpl is the public API for other services
// (sends, stored-message reads); EdgeGatewayImpl the internal EdgeLink
// streams from edges, over the same send and query paths. Everything that
// touches the store or the routing state is handed to the StoreWorker;
// answers come back from its thread.
class MessageServiceImpl final : public chat::v1::MessageService::CallbackService {
 public:
  MessageServiceImpl(StoreWorker* worker, Dispatcher* dispatcher, IdGenerator* ids,
                     const Clock* clock, MessageServiceOptions options);

  grpc::ServerUnaryReactor* Send(grpc::CallbackServerContext* ctx,
                                 const chat::v1::SendRequest* request,
                                 chat::v1::SendResponse* response) override;
  grpc::ServerUnaryReactor* Batch(grpc::CallbackServerContext* ctx,
                                  const chat::v1::BatchRequest* request,
                                  chat::v1::BatchResponse* response) override;
  grpc::ServerUnaryReactor* DeleteUser(grpc::CallbackServerContext* ctx,
                                       const chat::v1::DeleteUserRequest* request,
                                       chat::v1::DeleteUserResponse* response) override;
  grpc::ServerUnaryReactor* Sync(grpc::CallbackServerContext* ctx,
                                 const chat::v1::SyncRequest* request,
                                 chat::v1::SyncResponse* response) override;
  grpc::ServerUnaryReactor* History(grpc::CallbackServerContext* ctx,
                                    const chat::v1::HistoryRequest* request,
                                    chat::v1::HistoryResponse* response) override;
  grpc::ServerUnaryReactor* Conversations(grpc::CallbackServerContext* ctx,
                                          const chat::v1::ConversationsRequest* request,
                                          chat::v1::ConversationsResponse* response) override;
  grpc::ServerUnaryReactor* MarkRead(grpc::CallbackServerContext* ctx,
                                     const chat::v1::MarkReadRequest* request,
                                     chat::v1::MarkReadResponse* response) override;

  // Validates, stamps and queues one send. `done` gets the result (and, for
  // the unary API, fills `per_connection`), on the worker's thread or at once
  // when the send is refused before the store.
  using SendDone = std::function<void(chat::v1::EdgeSendResult)>;
  void SubmitSend(const chat::v1::SendRequest& request,
                  google::protobuf::RepeatedPtrField<chat::v1::ConnectionDelivery>* per_connection,
                  SendDone done);

  // Validates and stamps one send: appends its job to `jobs`, or answers
  // `done` at once when it is refused.
  void PrepareSend(const chat::v1::SendRequest& request,
                   google::protobuf::RepeatedPtrField<chat::v1::ConnectionDelivery>* per_connection,
                   SendDone done, std::vector<StoreWorker::SendJob>* jobs);

  // The edge's query on a link, answered on it.
  void SubmitQuery(const std::shared_ptr<Outbox>& link, const chat::v1::EdgeQuery& query);

  const MessageServiceOptions& options() const { return options_; }
  StoreWorker* worker() const { return worker_; }
  Dispatcher* dispatcher() const { return dispatcher_; }

 private:
  StoreWorker* worker_;
  Dispatcher* dispatcher_;
  IdGenerator* ids_;
  const Clock* clock_;
  const MessageServiceOptions options_;
};

class EdgeGatewayImpl final : public chat::v1::EdgeGateway::CallbackService {
 public:
  explicit EdgeGatewayImpl(MessageServiceImpl* service);

  grpc::ServerBidiReactor<chat::v1::EdgeUp, chat::v1::EdgeDown>* EdgeLink(
      grpc::CallbackServerContext* ctx) override;

 private:
  MessageServiceImpl* service_;
};

}  // namespace chat::message

#endif  // CHAT_MESSAGE_SERVICE_MESSAGE_SERVICE_H_
