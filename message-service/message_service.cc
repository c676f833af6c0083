#include "message-service/message_service.h"

#include <algorithm>
#include <atomic>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "google/rpc/status.pb.h"
#include "message-service/queries.h"
#include "message-service/send_request.h"
#include "message-service/store_metrics.h"
#include "spdlog/spdlog.h"

namespace chat::message {
namespace {

using chat::v1::EdgeDown;
using chat::v1::EdgeUp;

// The EdgeLink's answer to a refused or failed send.
chat::v1::EdgeSendResult FailedResult(const absl::Status& status) {
  chat::v1::EdgeSendResult result;
  result.set_code(static_cast<int>(status.code()));
  result.set_error(std::string(status.message()));
  return result;
}

// A status inside a successful answer (RecipientResult, BatchItemResult):
// the same code, message and details a failed call would carry.
google::rpc::Status RpcStatus(const absl::Status& status) {
  google::rpc::Status out;
  if (status.ok()) return out;
  if (!out.ParseFromString(ToGrpcStatus(status).error_details())) {
    out.set_code(static_cast<int>(status.code()));
    out.set_message(std::string(status.message()));
  }
  return out;
}

const absl::Status& QueueFull() {
  static const absl::Status* status =
      new absl::Status(absl::UnavailableError("message service overloaded; retry later"));
  return *status;
}

// One edge's EdgeLink, on the async API: every event of the stream is
// handled on the store worker's thread (its completion queue), so an EdgeUp
// becomes store work where it was read, and what the work produces goes down
// once the worker's wake-up is done (Outbox::Flush). Reads batches of sends,
// attaches, reached marks and queries; everything going down is queued in
// its Outbox. One read and one write in flight. Deletes itself once no
// operation is pending and the call is finished.
class EdgeLinkCall final : public DownWriter {
 public:
  // Asks the server for the next link on `cq`.
  EdgeLinkCall(EdgeGatewayImpl* gateway, MessageServiceImpl* service,
               grpc::ServerCompletionQueue* cq)
      : gateway_(gateway), service_(service), cq_(cq), stream_(&ctx_) {
    gateway_->RequestEdgeLink(&ctx_, &stream_, cq_, cq_, &accepted_);
  }

  void StartDownWrite(const EdgeDown* message) override {
    writing_ = true;
    stream_.Write(*message, &written_);
  }
  bool FlushLater() override {
    service_->worker()->AfterThisBatch([link = outbox_] { link->Flush(); });
    return true;
  }

 private:
  // A tag: which of this call's operations completed.
  struct Op final : StoreWorker::CqEvent {
    Op(EdgeLinkCall* c, void (EdgeLinkCall::*f)(bool)) : call(c), fn(f) {}
    void Done(bool ok) override { (call->*fn)(ok); }
    EdgeLinkCall* const call;
    void (EdgeLinkCall::*const fn)(bool);
  };

  void OnAccepted(bool ok) {
    if (!ok) {  // the server is shutting down
      delete this;
      return;
    }
    new EdgeLinkCall(gateway_, service_, cq_);  // the next edge's
    outbox_ = std::make_shared<Outbox>(this, service_->options().max_link_pending_bytes);
    if (grpc::Status denied = service_->options().auth.Check(&ctx_); !denied.ok()) {
      FinishOnce(denied);
      return;
    }
    StartRead();
  }

  void StartRead() {
    reading_ = true;
    stream_.Read(&up_, &read_);
  }

  void OnRead(bool ok) {
    reading_ = false;
    if (!ok) {
      FinishOnce(grpc::Status::OK);
      MaybeDelete();
      return;
    }
    if (finish_asked_) {
      MaybeDelete();
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
    HandleUp();
    StartRead();
  }

  // This EdgeUp's work, in the order the worker runs it. Reached reports
  // first: they describe frames written before anything else in this batch
  // was asked, and an attach answers with the mark. Attaches before the
  // sends: a send in the same batch to a user attaching here must reach the
  // new connection. Queries and detaches after the sends, which the worker
  // commits first.
  void HandleUp() {
    Dispatcher* dispatcher = service_->dispatcher();
    StoreWorker* worker = service_->worker();
    if (up_.reached_size() > 0) {
      // Reports describe messages committed in earlier wake-ups: they need
      // not split this wake-up's transaction.
      worker->PostBetweenSends(
          [dispatcher, reached = std::move(*up_.mutable_reached())](store::MessageStore*) {
            for (const auto& r : reached) dispatcher->Reached(r.user(), r.from_useq(), r.to_useq());
          });
    }
    if (up_.attaches_size() > 0) {
      worker->Post([dispatcher, link = outbox_, edge = edge_id_,
                    attaches = std::move(*up_.mutable_attaches())](store::MessageStore* store) {
        dispatcher->Attach(link, edge, attaches, store);
      });
    }
    if (up_.sends_size() > 0) {
      std::vector<StoreWorker::SendJob> jobs;
      jobs.reserve(up_.sends_size());
      for (auto& send : *up_.mutable_sends()) {
        service_->PrepareEdgeSend(
            send.request(),
            [link = outbox_, seq = send.seq()](absl::StatusOr<chat::v1::EdgeSendResult> result) {
              chat::v1::EdgeSendResult out =
                  result.ok() ? std::move(*result) : FailedResult(result.status());
              out.set_seq(seq);
              link->AddResult(std::move(out));
            },
            &jobs);
      }
      worker->PostSends(std::move(jobs));
    }
    if (up_.queries_size() > 0 || up_.detaches_size() > 0) {
      worker->Post([service = service_, dispatcher, link = outbox_,
                    queries = std::move(*up_.mutable_queries()),
                    detaches = std::move(*up_.mutable_detaches())](store::MessageStore* store) {
        for (const auto& query : queries) service->RunQuery(store, link, query);
        for (const auto& id : detaches) dispatcher->Detach(link.get(), id);
      });
    }
  }

  void OnWritten(bool ok) {
    writing_ = false;
    if (!ok) {
      FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write to edge failed"));
    } else if (!finish_asked_) {
      outbox_->OnWriteDone();
    }
    MaybeFinish();
    MaybeDelete();
  }

  // Nothing is written after this; the status goes once no write is in flight.
  void FinishOnce(grpc::Status status) {
    outbox_->Detach();
    if (finish_asked_) return;
    finish_asked_ = true;
    status_ = std::move(status);
    MaybeFinish();
  }
  void MaybeFinish() {
    if (!finish_asked_ || finishing_ || finished_ || writing_) return;
    finishing_ = true;
    stream_.Finish(status_, &finished_op_);
  }
  void OnFinished(bool /*ok*/) {
    finishing_ = false;
    finished_ = true;
    MaybeDelete();
  }

  // The call is over once it is finished and nothing is pending (a read
  // pending at Finish completes, failed, when the call ends).
  void MaybeDelete() {
    if (!finished_ || reading_ || writing_ || finishing_) return;
    outbox_->Detach();
    if (!edge_id_.empty()) spdlog::info("edge {} unlinked", edge_id_);
    // The routes this link attached die with it, behind everything already
    // handed in for it; the task keeps the outbox alive until then.
    Dispatcher* dispatcher = service_->dispatcher();
    service_->worker()->Post(
        [dispatcher, link = outbox_](store::MessageStore*) { dispatcher->DetachLink(link.get()); });
    delete this;
  }

  EdgeGatewayImpl* const gateway_;
  MessageServiceImpl* const service_;
  grpc::ServerCompletionQueue* const cq_;
  grpc::ServerContext ctx_;
  grpc::ServerAsyncReaderWriter<EdgeDown, EdgeUp> stream_;
  Op accepted_{this, &EdgeLinkCall::OnAccepted};
  Op read_{this, &EdgeLinkCall::OnRead};
  Op written_{this, &EdgeLinkCall::OnWritten};
  Op finished_op_{this, &EdgeLinkCall::OnFinished};
  std::shared_ptr<Outbox> outbox_;
  std::string edge_id_;
  EdgeUp up_;
  bool reading_ = false;
  bool writing_ = false;
  bool finish_asked_ = false;
  bool finishing_ = false;
  bool finished_ = false;
  grpc::Status status_;
};

template <typename Response>
void FinishWith(UnaryReply* reactor, Response* response, absl::StatusOr<Response> result) {
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
                                       MessageServiceOptions options, UserLookup* users)
    : worker_(worker),
      dispatcher_(dispatcher),
      ids_(ids),
      clock_(clock),
      options_(options),
      users_(users) {}

void MessageServiceImpl::QueueMessage(
    store::NewMessage message, const std::string& from_connection_id, int64_t edge_received_us,
    google::protobuf::RepeatedPtrField<chat::v1::ConnectionDelivery>* per_connection, SendDone done,
    std::vector<StoreWorker::SendJob>* jobs) {
  StoreWorker::SendJob job;
  job.message = std::move(message);
  job.message.ts_ms = clock_->NowMs();
  job.message.id = ids_->Next(job.message.ts_ms);
  job.done = [dispatcher = dispatcher_, from = from_connection_id, received_us = edge_received_us,
              per_connection, done = std::move(done)](absl::StatusOr<store::Committed> committed) {
    if (!committed.ok()) {
      // The store worker answers NOT_FOUND only for a recipient nobody knows.
      done(committed.status().code() == absl::StatusCode::kNotFound
               ? WithReason(committed.status(), kUserNotFound)
               : committed.status());
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

void MessageServiceImpl::PrepareEdgeSend(const chat::v1::SendRequest& request, SendDone done,
                                         std::vector<StoreWorker::SendJob>* jobs) {
  absl::Status valid = CheckSendFields(request, options_.max_message_bytes);
  if (valid.ok()) valid = CheckName(request.send_to(), "send_to");
  if (valid.ok() && !request.recipients().empty()) {
    valid = WithReason(absl::InvalidArgumentError("an edge send has one recipient"),
                       kInvalidRecipients);
  }
  if (!valid.ok()) {
    done(valid);
    return;
  }
  store::NewMessage message;
  message.sent_by = request.sent_by();
  message.send_to = request.send_to();
  message.text = request.message();
  message.idempotency_key = request.idempotency_key();
  message.type = request.type();
  message.metadata = request.metadata();
  message.server = false;  // a WebSocket user's, whatever the request says
  QueueMessage(std::move(message), request.from_connection_id(), request.edge_received_us(),
               nullptr, std::move(done), jobs);
}

namespace {
void FillResponse(const chat::v1::EdgeSendResult& result, chat::v1::SendResponse* response) {
  response->set_status(chat::v1::SEND_OK);
  response->set_id(result.id());
  response->set_ts_ms(result.ts_ms());
  response->set_delivered(result.delivered());
  response->set_conversation(result.conversation());
  response->set_seq(result.conversation_seq());
  response->set_useq(result.useq());
  response->set_duplicate(result.duplicate());
}
}  // namespace

void MessageServiceImpl::PreparePublicSend(const chat::v1::SendRequest& request,
                                           chat::v1::SendResponse* response,
                                           std::function<void(absl::Status)> finished,
                                           std::vector<StoreWorker::SendJob>* jobs) {
  absl::StatusOr<std::vector<std::string>> recipients =
      CheckPublicSend(request, options_.max_message_bytes);
  if (!recipients.ok()) {
    finished(recipients.status());
    return;
  }
  // A backend's message: the server's, never a connection's.
  store::NewMessage base;
  base.sent_by = request.sent_by();
  base.text = request.message();
  base.type = request.type();
  base.metadata = request.metadata();
  base.server = true;
  if (request.recipients().empty()) {
    base.send_to = request.send_to();
    base.idempotency_key = request.idempotency_key();
    QueueMessage(
        std::move(base), "", 0, response->mutable_connections(),
        [response, finished = std::move(finished)](absl::StatusOr<chat::v1::EdgeSendResult> r) {
          if (!r.ok()) {
            finished(r.status());
            return;
          }
          FillResponse(*r, response);
          finished(absl::OkStatus());
        },
        jobs);
    return;
  }
  // One message per recipient, all queued together: the worker commits them
  // in one transaction (those whose recipient it must first look up follow
  // in a later one).
  response->set_status(chat::v1::SEND_OK);
  const size_t n = recipients->size();
  for (const std::string& to : *recipients) response->add_results()->set_send_to(to);
  auto remaining = std::make_shared<std::atomic<size_t>>(n);
  auto shared_finished = std::make_shared<std::function<void(absl::Status)>>(std::move(finished));
  for (size_t i = 0; i < n; ++i) {
    store::NewMessage message = base;
    message.send_to = (*recipients)[i];
    message.idempotency_key = RecipientKey(request.idempotency_key(), (*recipients)[i]);
    chat::v1::RecipientResult* slot = response->mutable_results(static_cast<int>(i));
    QueueMessage(
        std::move(message), "", 0, nullptr,
        [slot, remaining, shared_finished](absl::StatusOr<chat::v1::EdgeSendResult> r) {
          if (!r.ok()) {
            *slot->mutable_status() = RpcStatus(r.status());
          } else {
            slot->mutable_status()->set_code(0);
            slot->set_id(r->id());
            slot->set_ts_ms(r->ts_ms());
            slot->set_delivered(r->delivered());
            slot->set_conversation(r->conversation());
            slot->set_seq(r->conversation_seq());
            slot->set_useq(r->useq());
            slot->set_duplicate(r->duplicate());
          }
          if (remaining->fetch_sub(1, std::memory_order_acq_rel) == 1) {
            (*shared_finished)(absl::OkStatus());
          }
        },
        jobs);
  }
}

void MessageServiceImpl::RunQuery(store::MessageStore* store, const std::shared_ptr<Outbox>& link,
                                  const chat::v1::EdgeQuery& query) {
  {
    chat::v1::EdgeQueryResult out;
    out.set_seq(query.seq());
    absl::Status status;
    switch (query.query_case()) {
      case chat::v1::EdgeQuery::kSync: {
        StoreQueryTimer timer(worker_->metrics(), StoreQuery::kSync);
        auto r = RunSync(store, query.sync(), worker_->epoch());
        if (r.ok()) *out.mutable_sync() = std::move(*r);
        status = r.status();
        break;
      }
      case chat::v1::EdgeQuery::kUnread: {
        StoreQueryTimer timer(worker_->metrics(), StoreQuery::kUnread);
        auto r = RunUnread(store, query.unread());
        if (r.ok()) *out.mutable_sync() = std::move(*r);
        status = r.status();
        break;
      }
      case chat::v1::EdgeQuery::kHistory: {
        StoreQueryTimer timer(worker_->metrics(), StoreQuery::kHistory);
        auto r = RunHistory(store, query.history());
        if (r.ok()) *out.mutable_history() = std::move(*r);
        status = r.status();
        break;
      }
      case chat::v1::EdgeQuery::kConversations: {
        StoreQueryTimer timer(worker_->metrics(), StoreQuery::kConversations);
        auto r = RunConversations(store, query.conversations());
        if (r.ok()) *out.mutable_conversations() = std::move(*r);
        status = r.status();
        break;
      }
      case chat::v1::EdgeQuery::kRead: {
        std::vector<store::MarkChange> changes;
        StoreQueryTimer timer(worker_->metrics(), StoreQuery::kRead);
        auto r = RunMarkRead(store, query.read(), &changes);
        timer.Stop();
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
  }
}

void MessageServiceImpl::Send(const grpc::ServerContextBase* ctx,
                              const chat::v1::SendRequest* request,
                              chat::v1::SendResponse* response, UnaryReply* reactor) {
  if (grpc::Status denied = options_.auth.CheckPublic(ctx); !denied.ok()) {
    reactor->Finish(denied);
    return;
  }
  std::vector<StoreWorker::SendJob> jobs;
  PreparePublicSend(
      *request, response, [reactor](absl::Status status) { reactor->Finish(ToGrpcStatus(status)); },
      &jobs);
  worker_->SubmitSends(std::move(jobs));
  return;
}

void MessageServiceImpl::Batch(const grpc::ServerContextBase* ctx,
                               const chat::v1::BatchRequest* request,
                               chat::v1::BatchResponse* response, UnaryReply* reactor) {
  if (grpc::Status denied = options_.auth.CheckPublic(ctx); !denied.ok()) {
    reactor->Finish(denied);
    return;
  }
  if (request->sends_size() > kMaxBatchSends) {
    reactor->Finish(ToGrpcStatus(
        WithReason(absl::InvalidArgumentError(absl::StrCat("more than ", kMaxBatchSends, " sends")),
                   kTooManySends)));
    return;
  }
  int messages = 0;
  size_t text_bytes = 0;
  for (const chat::v1::SendRequest& send : request->sends()) {
    const int copies = std::max(1, send.recipients_size());
    messages += copies;
    text_bytes += send.message().size() * copies;
  }
  if (messages > kMaxBatchMessages || text_bytes > kMaxBatchTextBytes) {
    reactor->Finish(
        ToGrpcStatus(WithReason(absl::InvalidArgumentError(absl::StrCat(
                                    "a batch may fan out to at most ", kMaxBatchMessages,
                                    " messages and ", kMaxBatchTextBytes >> 20, " MiB of text")),
                                kTooManySends)));
    return;
  }
  const int n = request->sends_size();
  for (int i = 0; i < n; ++i) response->add_results();
  // One more than the items: the last answer cannot come before every item
  // was queued.
  auto remaining = std::make_shared<std::atomic<int>>(n + 1);
  auto one_done = [reactor, remaining] {
    if (remaining->fetch_sub(1, std::memory_order_acq_rel) == 1) reactor->Finish(grpc::Status::OK);
  };
  // Every item's jobs in one hand-over: committed together where possible.
  std::vector<StoreWorker::SendJob> jobs;
  for (int i = 0; i < n; ++i) {
    chat::v1::BatchItemResult* item = response->mutable_results(i);
    PreparePublicSend(
        request->sends(i), item->mutable_response(),
        [item, one_done](absl::Status status) {
          if (status.ok()) {
            item->mutable_status()->set_code(0);
          } else {
            *item->mutable_status() = RpcStatus(status);
            item->clear_response();
          }
          one_done();
        },
        &jobs);
  }
  worker_->SubmitSends(std::move(jobs));
  one_done();
  return;
}

void MessageServiceImpl::DeleteUser(const grpc::ServerContextBase* ctx,
                                    const chat::v1::DeleteUserRequest* request,
                                    chat::v1::DeleteUserResponse* response, UnaryReply* reactor) {
  if (grpc::Status denied = options_.auth.CheckPublic(ctx); !denied.ok()) {
    reactor->Finish(denied);
    return;
  }
  if (absl::Status s = CheckName(request->name(), "name"); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return;
  }
  // connection-service first: once it has forgotten the name, no new send
  // to it passes the recipient lookup, so nothing is stored for the user
  // after the store's erasure below (what was stored in between is erased
  // with the rest). It also closes the user's connections (4003).
  users_->Forget(request->name(), 4003, "account deleted",
                 [this, reactor, request, response](absl::StatusOr<ForgetResult> forgot) {
                   if (!forgot.ok()) {
                     reactor->Finish(ToGrpcStatus(forgot.status()));
                     return;
                   }
                   const bool existed = forgot->existed;
                   response->set_disconnected(forgot->disconnected);
                   auto erase = [this, reactor, request, response,
                                 existed](store::MessageStore* store) {
                     EraseOnWorker(store, request->name(), existed, response, reactor);
                   };
                   if (!worker_->Submit(std::move(erase)))
                     reactor->Finish(ToGrpcStatus(QueueFull()));
                 });
  return;
}

namespace {

// Everyone `user` has a conversation with (best effort: a failed read gives
// fewer).
std::vector<std::string> PeersOf(store::MessageStore* store, const std::string& user) {
  std::vector<std::string> peers;
  std::string after;
  for (int page = 0; page < 100000; ++page) {
    absl::StatusOr<store::ConversationsPage> got =
        store->Conversations(user, after, kMaxPageLimit, kMaxReplyTextBytes);
    if (!got.ok()) break;
    for (const auto& item : got->items) {
      if (item.with != user) peers.push_back(item.with);
    }
    if (got->next.empty() || got->items.empty()) break;
    after = got->next;
  }
  return peers;
}

}  // namespace

void MessageServiceImpl::EraseOnWorker(store::MessageStore* store, const std::string& name,
                                       bool existed, chat::v1::DeleteUserResponse* response,
                                       UnaryReply* reactor) {
  // The peers' streams get holes where the erased messages were; holes that
  // had not reached them would hold their reached prefix marks (and so
  // their delivered receipts) back for good. Filled as for messages read.
  const std::vector<std::string> peers = PeersOf(store, name);
  absl::StatusOr<int64_t> erased = store->EraseUser(name);
  worker_->ForgetKnownUser(name);
  const bool unknown = erased.status().code() == absl::StatusCode::kNotFound;
  if (erased.ok() || unknown) dispatcher_->EraseUser(name);
  if (erased.ok()) {
    for (const std::string& peer : peers) dispatcher_->NoteRead(peer);
  }
  if (!erased.ok() && !unknown) {
    reactor->Finish(ToGrpcStatus(erased.status()));
  } else if (unknown && !existed) {
    reactor->Finish(
        ToGrpcStatus(WithReason(absl::NotFoundError("no user by that name"), kUserNotFound)));
  } else {
    response->set_messages_deleted(erased.ok() ? *erased : 0);
    reactor->Finish(grpc::Status::OK);
  }
}

EdgeGatewayImpl::EdgeGatewayImpl(MessageServiceImpl* service) : service_(service) {}

void EdgeGatewayImpl::Serve(grpc::ServerCompletionQueue* cq) {
  new EdgeLinkCall(this, service_, cq);  // deletes itself
}

#define CHAT_UNARY_READ(Method, Kind, Request, Response, Body)                                    \
  void MessageServiceImpl::Method(const grpc::ServerContextBase* ctx,                             \
                                  const chat::v1::Request* request, chat::v1::Response* response, \
                                  UnaryReply* reactor) {                                          \
    if (grpc::Status denied = options_.auth.CheckPublic(ctx); !denied.ok()) {                     \
      reactor->Finish(denied);                                                                    \
      return;                                                                                     \
    }                                                                                             \
    if (!worker_->Submit([this, reactor, request, response](store::MessageStore* store) {         \
          StoreQueryTimer timer(worker_->metrics(), StoreQuery::Kind);                            \
          absl::StatusOr<chat::v1::Response> result = Body;                                       \
          timer.Stop();                                                                           \
          FinishWith<chat::v1::Response>(reactor, response, std::move(result));                   \
        })) {                                                                                     \
      reactor->Finish(ToGrpcStatus(QueueFull()));                                                 \
    }                                                                                             \
    return;                                                                                       \
  }

CHAT_UNARY_READ(Sync, kSync, SyncRequest, SyncResponse,
                RunSync(store, *request, worker_->epoch(), /*check_user=*/true))
CHAT_UNARY_READ(History, kHistory, HistoryRequest, HistoryResponse,
                RunHistory(store, *request, /*check_user=*/true))
CHAT_UNARY_READ(Conversations, kConversations, ConversationsRequest, ConversationsResponse,
                RunConversations(store, *request, /*check_user=*/true))

#undef CHAT_UNARY_READ

void MessageServiceImpl::MarkRead(const grpc::ServerContextBase* ctx,
                                  const chat::v1::MarkReadRequest* request,
                                  chat::v1::MarkReadResponse* response, UnaryReply* reactor) {
  if (grpc::Status denied = options_.auth.CheckPublic(ctx); !denied.ok()) {
    reactor->Finish(denied);
    return;
  }
  if (!worker_->Submit([this, reactor, request, response](store::MessageStore* store) {
        std::vector<store::MarkChange> changes;
        StoreQueryTimer timer(worker_->metrics(), StoreQuery::kRead);
        auto result = RunMarkRead(store, *request, &changes, /*check_user=*/true);
        timer.Stop();
        if (!changes.empty()) dispatcher_->NoteRead(request->user());
        dispatcher_->SendReceipts(changes);
        // Last: the request and response belong to gRPC once finished.
        FinishWith<chat::v1::MarkReadResponse>(reactor, response, std::move(result));
      })) {
    reactor->Finish(ToGrpcStatus(QueueFull()));
  }
  return;
}

void MessageServiceApi::Serve(grpc::ServerCompletionQueue* cq) {
  // Each method: the generated RequestX of this service, and the handler.
#define CHAT_SERVE_UNARY(Method, Req, Resp)                                                        \
  AsyncUnaryCall<chat::v1::Req, chat::v1::Resp>::Serve(                                            \
      [this](grpc::ServerContext* ctx, chat::v1::Req* request,                                     \
             grpc::ServerAsyncResponseWriter<chat::v1::Resp>* writer,                              \
             grpc::ServerCompletionQueue* queue,                                                   \
             void* tag) { Request##Method(ctx, request, writer, queue, queue, tag); },             \
      [service = service_](const grpc::ServerContextBase* ctx, const chat::v1::Req* request,       \
                           chat::v1::Resp* response,                                               \
                           UnaryReply* reply) { service->Method(ctx, request, response, reply); }, \
      cq)
  CHAT_SERVE_UNARY(Send, SendRequest, SendResponse);
  CHAT_SERVE_UNARY(Batch, BatchRequest, BatchResponse);
  CHAT_SERVE_UNARY(DeleteUser, DeleteUserRequest, DeleteUserResponse);
  CHAT_SERVE_UNARY(Sync, SyncRequest, SyncResponse);
  CHAT_SERVE_UNARY(History, HistoryRequest, HistoryResponse);
  CHAT_SERVE_UNARY(Conversations, ConversationsRequest, ConversationsResponse);
  CHAT_SERVE_UNARY(MarkRead, MarkReadRequest, MarkReadResponse);
#undef CHAT_SERVE_UNARY
}

}  // namespace chat::message
