#ifndef CHAT_MESSAGE_SERVICE_MESSAGE_SERVICE_H_
#define CHAT_MESSAGE_SERVICE_MESSAGE_SERVICE_H_

#include <functional>
#include <string>

#include "chat/v1/chat.grpc.pb.h"
#include "common/async_unary.h"
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

// gRPC adapters, all on the async API and the one completion queue the store
// worker's thread drives, so no other thread polls the server's sockets.
// MessageServiceImpl answers the public API for other services (sends,
// stored-message reads, erasure), served by MessageServiceApi: everything
// that touches the store or the routing state runs as work of the store
// worker, which answers. EdgeGatewayImpl serves the internal EdgeLink
// streams from edges, over the same send and query paths.
//
// Sends of the public API (Send, Batch) are the server's: stored and
// delivered with `server` set, which the edges show as "server": true and
// which no edge send can set.
class MessageServiceImpl final {
 public:
  // `users` (connection-service) is asked by DeleteUser; it must outlive this.
  MessageServiceImpl(StoreWorker* worker, Dispatcher* dispatcher, IdGenerator* ids,
                     const Clock* clock, MessageServiceOptions options, UserLookup* users);

  void Send(const grpc::ServerContextBase* ctx, const chat::v1::SendRequest* request,
            chat::v1::SendResponse* response, UnaryReply* reply);
  void Batch(const grpc::ServerContextBase* ctx, const chat::v1::BatchRequest* request,
             chat::v1::BatchResponse* response, UnaryReply* reply);
  void DeleteUser(const grpc::ServerContextBase* ctx, const chat::v1::DeleteUserRequest* request,
                  chat::v1::DeleteUserResponse* response, UnaryReply* reply);
  void Sync(const grpc::ServerContextBase* ctx, const chat::v1::SyncRequest* request,
            chat::v1::SyncResponse* response, UnaryReply* reply);
  void History(const grpc::ServerContextBase* ctx, const chat::v1::HistoryRequest* request,
               chat::v1::HistoryResponse* response, UnaryReply* reply);
  void Conversations(const grpc::ServerContextBase* ctx,
                     const chat::v1::ConversationsRequest* request,
                     chat::v1::ConversationsResponse* response, UnaryReply* reply);
  void MarkRead(const grpc::ServerContextBase* ctx, const chat::v1::MarkReadRequest* request,
                chat::v1::MarkReadResponse* response, UnaryReply* reply);

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
                     chat::v1::DeleteUserResponse* response, UnaryReply* reactor);
  // Stamps one checked message and appends its job.
  void QueueMessage(
      store::NewMessage message, const std::string& from_connection_id, int64_t edge_received_us,
      google::protobuf::RepeatedPtrField<chat::v1::ConnectionDelivery>* per_connection,
      SendDone done, std::vector<StoreWorker::SendJob>* jobs);
};

// chat.v1.MessageService on the async API. Register it with the server
// (StartGrpcServer with a completion queue), hand that queue to the store
// worker (StoreWorker::Start), then Serve.
class MessageServiceApi final : public chat::v1::MessageService::AsyncService {
 public:
  explicit MessageServiceApi(MessageServiceImpl* service) : service_(service) {}

  // One request of each method is always pending on `cq` until the server
  // shuts down. Once.
  void Serve(grpc::ServerCompletionQueue* cq);

 private:
  MessageServiceImpl* service_;
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
