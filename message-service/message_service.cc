#include "message-service/message_service.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/names.h"
#include "message-service/queries.h"
#include "spdlog/spdlog.h"

namespace chat::message {
namespace {

using chat::v1::EdgeDown;
using chat::v1::EdgeUp;

inline constexpr size_t kMaxIdempotencyKeyBytes = 64;

absl::Status ValidateSend(const chat::v1::SendRequest& request, size_t max_message_bytes) {
  if (absl::Status s = ValidateUserName(request.send_to()); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("send_to: ", s.message()));
  }
  if (absl::Status s = ValidateUserName(request.sent_by()); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("sent_by: ", s.message()));
  }
  if (request.message().size() > max_message_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("message is longer than ", max_message_bytes, " bytes"));
  }
  if (!IsValidUtf8(request.message())) {
    return absl::InvalidArgumentError("message is not valid UTF-8");
  }
  if (request.idempotency_key().size() > kMaxIdempotencyKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("idempotency_key is longer than ", kMaxIdempotencyKeyBytes, " bytes"));
  }
  return absl::OkStatus();
}

chat::v1::EdgeSendResult FailedResult(const absl::Status& status) {
  chat::v1::EdgeSendResult result;
  result.set_code(static_cast<int>(status.code()));
  result.set_error(std::string(status.message()));
  return result;
}

const absl::Status& QueueFull() {
  static const absl::Status* status =
      new absl::Status(absl::UnavailableError("message service overloaded; retry later"));
  return *status;
}

// One edge's EdgeLink: reads batches of sends, attaches, reached marks and
// queries; everything going down is queued in its Outbox. One read and one
// write in flight.
class EdgeLinkReactor final : public grpc::ServerBidiReactor<EdgeUp, EdgeDown>, public DownWriter {
 public:
  explicit EdgeLinkReactor(MessageServiceImpl* service)
      : service_(service),
        outbox_(std::make_shared<Outbox>(this, service->options().max_link_pending_bytes)) {
    StartRead(&up_);
  }

  void StartDownWrite(const EdgeDown* message) override { StartWrite(message); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      FinishOnce(grpc::Status::OK);
      return;
    }
    if (edge_id_.empty()) {
      if (up_.edge_id().empty()) {
        FinishOnce(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                "the first EdgeUp must carry edge_id"));
        return;
      }
      edge_id_ = up_.edge_id();
      outbox_->Greet(service_->worker()->epoch());
      spdlog::info("edge {} linked", edge_id_);
    }
    if (up_.sends_size() > service_->options().max_sends_per_batch) {
      FinishOnce(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              absl::StrCat("more than ", service_->options().max_sends_per_batch,
                                           " sends in one EdgeUp")));
      return;
    }
    Dispatcher* dispatcher = service_->dispatcher();
    StoreWorker* worker = service_->worker();
    // Reached reports first: they describe frames written before anything
    // else in this batch was asked, and an attach answers with the mark.
    for (const auto& reached : up_.reached()) {
      // Never refused: a lost report would leave a hole until a sync.
      worker->SubmitAlways([dispatcher, reached](store::MessageStore*) {
        dispatcher->Reached(reached.user(), reached.from_useq(), reached.to_useq());
      });
    }
    // Attaches first: a send in the same batch to a user attaching here must
    // reach the new connection.
    for (auto& attach : *up_.mutable_attaches()) {
      const std::string connection_id = attach.connection_id();
      auto task = [dispatcher, link = outbox_, edge = edge_id_,
                   attach = std::move(attach)](store::MessageStore* store) {
        dispatcher->Attach(link, edge, attach, store);
      };
      if (!worker->Submit(task)) {
        chat::v1::Attached refused;
        refused.set_connection_id(connection_id);
        refused.set_error(std::string(QueueFull().message()));
        outbox_->AddAttached(std::move(refused));
      }
    }
    // One hand-over for the whole batch: the worker sees it at once and
    // commits it in one transaction.
    std::vector<StoreWorker::SendJob> jobs;
    jobs.reserve(up_.sends_size());
    for (auto& send : *up_.mutable_sends()) {
      service_->PrepareSend(
          send.request(), nullptr,
          [link = outbox_, seq = send.seq()](chat::v1::EdgeSendResult result) {
            result.set_seq(seq);
            link->AddResult(result);
          },
          &jobs);
    }
    worker->SubmitSends(std::move(jobs));
    for (const auto& query : up_.queries()) service_->SubmitQuery(outbox_, query);
    for (auto& id : *up_.mutable_detaches()) {
      worker->Submit([dispatcher, link = outbox_.get(), id = std::move(id)](store::MessageStore*) {
        dispatcher->Detach(link, id);
      });
    }
    StartRead(&up_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write to edge failed"));
      return;
    }
    outbox_->OnWriteDone();
  }

  void OnCancel() override { FinishOnce(grpc::Status::CANCELLED); }

  void OnDone() override {
    outbox_->Detach();
    if (!edge_id_.empty()) spdlog::info("edge {} unlinked", edge_id_);
    // The routes this link attached die with it. Queued behind everything
    // already submitted for it; the task keeps the outbox alive until then.
    Dispatcher* dispatcher = service_->dispatcher();
    service_->worker()->SubmitAlways(
        [dispatcher, link = outbox_](store::MessageStore*) { dispatcher->DetachLink(link.get()); });
    delete this;
  }

 private:
  void FinishOnce(grpc::Status status) {
    outbox_->Detach();  // nothing starts after Finish
    if (finished_.exchange(true)) return;
    Finish(std::move(status));
  }

  MessageServiceImpl* service_;
  std::shared_ptr<Outbox> outbox_;
  std::string edge_id_;  // only touched by the read chain
  EdgeUp up_;
  std::atomic<bool> finished_{false};
};

template <typename Response>
void FinishWith(grpc::ServerUnaryReactor* reactor, Response* response,
                absl::StatusOr<Response> result) {
  if (!result.ok()) {
    reactor->Finish(ToGrpcStatus(result.status()));
    return;
  }
  *response = std::move(*result);
  reactor->Finish(grpc::Status::OK);
}

}  // namespace

MessageServiceImpl::MessageServiceImpl(StoreWorker* worker, Dispatcher* dispatcher,
                                       IdGenerator* ids, const Clock* clock,
                                       MessageServiceOptions options)
    : worker_(worker), dispatcher_(dispatcher), ids_(ids), clock_(clock), options_(options) {}

void MessageServiceImpl::SubmitSend(
    const chat::v1::SendRequest& request,
    google::protobuf::RepeatedPtrField<chat::v1::ConnectionDelivery>* per_connection,
    SendDone done) {
  std::vector<StoreWorker::SendJob> jobs;
  PrepareSend(request, per_connection, std::move(done), &jobs);
  worker_->SubmitSends(std::move(jobs));
}

void MessageServiceImpl::PrepareSend(
    const chat::v1::SendRequest& request,
    google::protobuf::RepeatedPtrField<chat::v1::ConnectionDelivery>* per_connection, SendDone done,
    std::vector<StoreWorker::SendJob>* jobs) {
  if (absl::Status valid = ValidateSend(request, options_.max_message_bytes); !valid.ok()) {
    done(FailedResult(valid));
    return;
  }
  StoreWorker::SendJob job;
  job.message.ts_ms = clock_->NowMs();
  job.message.id = ids_->Next(job.message.ts_ms);
  job.message.sent_by = request.sent_by();
  job.message.send_to = request.send_to();
  job.message.text = request.message();
  job.message.idempotency_key = request.idempotency_key();
  job.done = [dispatcher = dispatcher_, from = request.from_connection_id(),
              received_us = request.edge_received_us(), per_connection,
              done](absl::StatusOr<store::Committed> committed) {
    if (!committed.ok()) {
      done(FailedResult(committed.status()));
      return;
    }
    chat::v1::EdgeSendResult result;
    const store::Message& m = committed->for_sender;
    result.set_id(m.id);
    result.set_ts_ms(m.ts_ms);
    result.set_conversation(m.conversation);
    result.set_conversation_seq(m.seq);
    result.set_useq(m.useq);
    result.set_duplicate(committed->duplicate);
    result.set_delivered(dispatcher->Deliver(*committed, from, received_us, per_connection));
    done(std::move(result));
  };
  jobs->push_back(std::move(job));
}

void MessageServiceImpl::SubmitQuery(const std::shared_ptr<Outbox>& link,
                                     const chat::v1::EdgeQuery& query) {
  auto task = [this, link, query](store::MessageStore* store) {
    chat::v1::EdgeQueryResult out;
    out.set_seq(query.seq());
    absl::Status status;
    switch (query.query_case()) {
      case chat::v1::EdgeQuery::kSync: {
        auto r = RunSync(store, query.sync(), worker_->epoch());
        if (r.ok()) *out.mutable_sync() = std::move(*r);
        status = r.status();
        break;
      }
      case chat::v1::EdgeQuery::kUnread: {
        auto r = RunUnread(store, query.unread());
        if (r.ok()) *out.mutable_sync() = std::move(*r);
        status = r.status();
        break;
      }
      case chat::v1::EdgeQuery::kHistory: {
        auto r = RunHistory(store, query.history());
        if (r.ok()) *out.mutable_history() = std::move(*r);
        status = r.status();
        break;
      }
      case chat::v1::EdgeQuery::kConversations: {
        auto r = RunConversations(store, query.conversations());
        if (r.ok()) *out.mutable_conversations() = std::move(*r);
        status = r.status();
        break;
      }
      case chat::v1::EdgeQuery::kRead: {
        std::vector<store::MarkChange> changes;
        auto r = RunMarkRead(store, query.read(), &changes);
        if (r.ok()) *out.mutable_read() = std::move(*r);
        status = r.status();
        if (!changes.empty()) dispatcher_->NoteRead(query.read().user());
        dispatcher_->SendReceipts(changes);
        break;
      }
      default:
        status = absl::InvalidArgumentError("empty query");
    }
    out.set_code(static_cast<int>(status.code()));
    out.set_error(std::string(status.message()));
    link->AddQueryResult(std::move(out));
  };
  if (!worker_->Submit(task)) {
    chat::v1::EdgeQueryResult out;
    out.set_seq(query.seq());
    out.set_code(static_cast<int>(QueueFull().code()));
    out.set_error(std::string(QueueFull().message()));
    link->AddQueryResult(std::move(out));
  }
}

grpc::ServerUnaryReactor* MessageServiceImpl::Send(grpc::CallbackServerContext* ctx,
                                                   const chat::v1::SendRequest* request,
                                                   chat::v1::SendResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  if (grpc::Status denied = options_.auth.CheckPublic(ctx); !denied.ok()) {
    reactor->Finish(denied);
    return reactor;
  }
  // A backend's message: marked as the server's, never as a connection's.
  chat::v1::SendRequest send = *request;
  send.clear_from_connection_id();
  send.clear_edge_received_us();
  SubmitSend(send, response->mutable_connections(),
             [reactor, response](chat::v1::EdgeSendResult result) {
               if (result.code() != 0) {
                 reactor->Finish(ToGrpcStatus(
                     absl::Status(static_cast<absl::StatusCode>(result.code()), result.error())));
                 return;
               }
               response->set_status(chat::v1::SEND_STATUS_OK);
               response->set_id(result.id());
               response->set_ts_ms(result.ts_ms());
               response->set_delivered(result.delivered());
               response->set_conversation(result.conversation());
               response->set_seq(result.conversation_seq());
               response->set_useq(result.useq());
               response->set_duplicate(result.duplicate());
               reactor->Finish(grpc::Status::OK);
             });
  return reactor;
}

grpc::ServerUnaryReactor* MessageServiceImpl::Batch(grpc::CallbackServerContext* ctx,
                                                    const chat::v1::BatchRequest* request,
                                                    chat::v1::BatchResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  if (grpc::Status denied = options_.auth.CheckPublic(ctx); !denied.ok()) {
    reactor->Finish(denied);
    return reactor;
  }
  reactor->Finish(ToGrpcStatus(absl::UnimplementedError("Batch is not implemented yet")));
  return reactor;
}

grpc::ServerUnaryReactor* MessageServiceImpl::DeleteUser(grpc::CallbackServerContext* ctx,
                                                         const chat::v1::DeleteUserRequest* request,
                                                         chat::v1::DeleteUserResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  if (grpc::Status denied = options_.auth.CheckPublic(ctx); !denied.ok()) {
    reactor->Finish(denied);
    return reactor;
  }
  reactor->Finish(ToGrpcStatus(absl::UnimplementedError("DeleteUser is not implemented yet")));
  return reactor;
}

EdgeGatewayImpl::EdgeGatewayImpl(MessageServiceImpl* service) : service_(service) {}

grpc::ServerBidiReactor<EdgeUp, EdgeDown>* EdgeGatewayImpl::EdgeLink(
    grpc::CallbackServerContext* ctx) {
  if (grpc::Status denied = service_->options().auth.Check(ctx); !denied.ok()) {
    return new RefusedBidi<EdgeUp, EdgeDown>(denied);
  }
  return new EdgeLinkReactor(service_);
}

#define CHAT_UNARY_READ(Method, Request, Response, Body)                                  \
  grpc::ServerUnaryReactor* MessageServiceImpl::Method(grpc::CallbackServerContext* ctx,  \
                                                       const chat::v1::Request* request,  \
                                                       chat::v1::Response* response) {    \
    auto* reactor = ctx->DefaultReactor();                                                \
    if (grpc::Status denied = options_.auth.CheckPublic(ctx); !denied.ok()) {             \
      reactor->Finish(denied);                                                            \
      return reactor;                                                                     \
    }                                                                                     \
    if (!worker_->Submit([this, reactor, request, response](store::MessageStore* store) { \
          FinishWith<chat::v1::Response>(reactor, response, Body);                        \
        })) {                                                                             \
      reactor->Finish(ToGrpcStatus(QueueFull()));                                         \
    }                                                                                     \
    return reactor;                                                                       \
  }

CHAT_UNARY_READ(Sync, SyncRequest, SyncResponse, RunSync(store, *request, worker_->epoch()))
CHAT_UNARY_READ(History, HistoryRequest, HistoryResponse, RunHistory(store, *request))
CHAT_UNARY_READ(Conversations, ConversationsRequest, ConversationsResponse,
                RunConversations(store, *request))

#undef CHAT_UNARY_READ

grpc::ServerUnaryReactor* MessageServiceImpl::MarkRead(grpc::CallbackServerContext* ctx,
                                                       const chat::v1::MarkReadRequest* request,
                                                       chat::v1::MarkReadResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  if (grpc::Status denied = options_.auth.CheckPublic(ctx); !denied.ok()) {
    reactor->Finish(denied);
    return reactor;
  }
  if (!worker_->Submit([this, reactor, request, response](store::MessageStore* store) {
        std::vector<store::MarkChange> changes;
        auto result = RunMarkRead(store, *request, &changes);
        if (!changes.empty()) dispatcher_->NoteRead(request->user());
        dispatcher_->SendReceipts(changes);
        // Last: the request and response belong to gRPC once finished.
        FinishWith<chat::v1::MarkReadResponse>(reactor, response, std::move(result));
      })) {
    reactor->Finish(ToGrpcStatus(QueueFull()));
  }
  return reactor;
}

}  // namespace chat::message
