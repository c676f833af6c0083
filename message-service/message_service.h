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
#include "message-service/user_lookup.h"

namespace chat::message {

struct MessageServiceOptions {
  size_t max_link_pending_bytes = 64 << 20;  // per edge, deliveries not yet written
  int max_sends_per_batch = 4096;            // more in one EdgeUp is a protocol error
  size_t max_message_bytes = 128 << 10;      // chat text
  ServiceAuth auth;                          // public and internal credentials
};

// gRPC adapters. MessageServiceImpl is the public API for other services
// (sends, stored-message reads, erasure), on gRPC's callback API: everything
// that touches the store or the routing state is handed to the StoreWorker,
// and answers come back from its thread. EdgeGatewayImpl serves the internal
// EdgeLink streams from edges, over the same send and query paths, on the
// async API: their events are handled on the store worker's own thread.
//
// Sends of the public API (Send, Batch) are the server's: stored and
// delivered with `server` set, which the edges show as "server": true and
// which no edge send can set.
class MessageServiceImpl final : public chat::v1::MessageService::CallbackService {
 public:
  // `users` (connection-service) is asked by DeleteUser; it must outlive this.
  MessageServiceImpl(StoreWorker* worker, Dispatcher* dispatcher, IdGenerator* ids,
                     const Clock* clock, MessageServiceOptions options, UserLookup* users);

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

  // One send's outcome: the stored message's numbers (the EdgeLink's
  // result, without seq), or why not: a status with its ErrorInfo reason
  // (NOT_FOUND is always USER_NOT_FOUND, the recipient).
  using SendDone = std::function<void(absl::StatusOr<chat::v1::EdgeSendResult>)>;

  // An edge's send (one recipient, never the server's): validates and stamps
  // it, appends its job to `jobs`, or answers `done` at once when refused.
  void PrepareEdgeSend(const chat::v1::SendRequest& request, SendDone done,
                       std::vector<StoreWorker::SendJob>* jobs);

  // A public send (send_to or recipients): validates it and appends one job
  // per recipient to `jobs`; fills `response` as they commit. `finished`
  // gets the call's status once every job answered, or at once when the
  // request is refused: a failure of the single send_to, or OK (recipients
  // are answered one by one in response->results).
  void PreparePublicSend(const chat::v1::SendRequest& request, chat::v1::SendResponse* response,
                         std::function<void(absl::Status)> finished,
                         std::vector<StoreWorker::SendJob>* jobs);

  // The edge's query on a link, answered on it. Store worker thread.
  void RunQuery(store::MessageStore* store, const std::shared_ptr<Outbox>& link,
                const chat::v1::EdgeQuery& query);

  const MessageServiceOptions& options() const { return options_; }
  StoreWorker* worker() const { return worker_; }
  Dispatcher* dispatcher() const { return dispatcher_; }

 private:
  StoreWorker* worker_;
  Dispatcher* dispatcher_;
  IdGenerator* ids_;
  const Clock* clock_;
  const MessageServiceOptions options_;
  UserLookup* const users_;

  // DeleteUser's part on the store worker, once connection-service forgot
  // the user (`existed`: it knew them).
  void EraseOnWorker(store::MessageStore* store, const std::string& name, bool existed,
                     chat::v1::DeleteUserResponse* response, grpc::ServerUnaryReactor* reactor);
  // Stamps one checked message and appends its job.
  void QueueMessage(
      store::NewMessage message, const std::string& from_connection_id, int64_t edge_received_us,
      google::protobuf::RepeatedPtrField<chat::v1::ConnectionDelivery>* per_connection,
      SendDone done, std::vector<StoreWorker::SendJob>* jobs);
};

// Register it with the server (StartGrpcServer with a completion queue),
// hand that queue to the store worker (StoreWorker::Start), then Serve.
class EdgeGatewayImpl final : public chat::v1::EdgeGateway::AsyncService {
 public:
  explicit EdgeGatewayImpl(MessageServiceImpl* service);

  // Accepts links on `cq`, the queue the store worker's thread drives; one
  // accept is always pending until the server shuts down. Once.
  void Serve(grpc::ServerCompletionQueue* cq);

 private:
  MessageServiceImpl* service_;
};

}  // namespace chat::message

#endif  // CHAT_MESSAGE_SERVICE_MESSAGE_SERVICE_H_
