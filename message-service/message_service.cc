#include "message-service/message_service.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace chat::message {
namespace {

using chat::v1::EdgeDown;
using chat::v1::EdgeUp;

chat::v1::SendStatus ToProto(SendOutcome outcome) {
  switch (outcome) {
    case SendOutcome::kOk:
      return chat::v1::SEND_OK;
    case SendOutcome::kUnknownUser:
      return chat::v1::SEND_UNKNOWN_USER;
    case SendOutcome::kRecipientOffline:
      return chat::v1::SEND_RECIPIENT_OFFLINE;
    case SendOutcome::kBadRequest:
      return chat::v1::SEND_BAD_REQUEST;
    case SendOutcome::kUnavailable:
      return chat::v1::SEND_UNAVAILABLE;
  }
  return chat::v1::SEND_UNAVAILABLE;
}

// One edge's EdgeLink: reads batches of sends, writes batches of deliveries
// and results through its Outbox. One read and one write in flight.
class EdgeLinkReactor final : public grpc::ServerBidiReactor<EdgeUp, EdgeDown>,
                              public DownWriter {
 public:
  explicit EdgeLinkReactor(const MessageServiceImpl* service)
      : service_(service),
        outbox_(std::make_shared<Outbox>(this, service->options().max_link_pending_bytes)) {
    if (!service->router()->Ready()) {
      // An edge whose link is up believes sends can be routed: refuse until
      // the routing table is loaded; the edge retries with backoff.
      FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              "routing table not loaded yet (connection-service unreachable)"));
      return;
    }
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
      service_->links()->Attach(edge_id_, outbox_);
      outbox_->Greet();
      spdlog::info("edge {} linked", edge_id_);
    }
    if (up_.sends_size() > service_->options().max_sends_per_batch) {
      FinishOnce(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              absl::StrCat("more than ", service_->options().max_sends_per_batch,
                                           " sends in one EdgeUp")));
      return;
    }
    for (const auto& send : up_.sends()) {
      chat::v1::EdgeSendResult result = service_->Process(send.request(), nullptr);
      result.set_seq(send.seq());
      outbox_->AddResult(result);
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
    if (!edge_id_.empty()) {
      service_->links()->Detach(edge_id_, outbox_.get());
      spdlog::info("edge {} unlinked", edge_id_);
    }
    outbox_->Detach();
    delete this;
  }

 private:
  void FinishOnce(grpc::Status status) {
    // Stop new writes first so nothing starts after Finish.
    outbox_->Detach();
    if (finished_.exchange(true)) return;
    Finish(std::move(status));
  }

  const MessageServiceImpl* service_;
  std::shared_ptr<Outbox> outbox_;
  std::string edge_id_;  // only touched by the read chain
  EdgeUp up_;
  std::atomic<bool> finished_{false};
};

}  // namespace

MessageServiceImpl::MessageServiceImpl(const Router* router, EdgeLinks* links,
                                       MessageServiceOptions options)
    : router_(router), links_(links), options_(options) {}

chat::v1::EdgeSendResult MessageServiceImpl::Process(
    const chat::v1::SendRequest& request,
    google::protobuf::RepeatedPtrField<chat::v1::ConnectionDelivery>* connections) const {
  RoutedMessage routed = router_->Route({request.sent_by(), request.send_to(), request.message()});
  chat::v1::EdgeSendResult result;
  result.set_status(ToProto(routed.outcome));
  if (routed.outcome != SendOutcome::kOk) {
    result.set_error(routed.error);
    return result;
  }
  result.set_id(routed.id);
  result.set_ts_ms(routed.ts_ms);
  int delivered = 0;
  for (auto& group : routed.edges) {
    std::shared_ptr<Outbox> outbox = links_->Find(group.edge_id);
    bool handed = false;
    if (outbox != nullptr) {
      chat::v1::Delivery delivery;
      delivery.set_id(routed.id);
      delivery.set_ts_ms(routed.ts_ms);
      delivery.set_sent_by(request.sent_by());
      delivery.set_send_to(request.send_to());
      delivery.set_message(request.message());
      for (const auto& id : group.connection_ids) delivery.add_connection_ids(id);
      handed = outbox->AddDelivery(std::move(delivery));
    }
    if (handed) delivered += static_cast<int>(group.connection_ids.size());
    if (connections != nullptr) {
      for (auto& id : group.connection_ids) {
        auto* c = connections->Add();
        c->set_connection_id(std::move(id));
        c->set_edge_id(group.edge_id);
        c->set_delivered(handed);
      }
    }
  }
  result.set_delivered(delivered);
  return result;
}

grpc::ServerUnaryReactor* MessageServiceImpl::Send(grpc::CallbackServerContext* ctx,
                                                   const chat::v1::SendRequest* request,
                                                   chat::v1::SendResponse* response) {
  if (grpc::Status denied = options_.auth.Check(ctx); !denied.ok()) {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(denied);
    return reactor;
  }
  chat::v1::EdgeSendResult result = Process(*request, response->mutable_connections());
  auto* reactor = ctx->DefaultReactor();
  switch (result.status()) {
    case chat::v1::SEND_BAD_REQUEST:
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, result.error()));
      return reactor;
    case chat::v1::SEND_UNAVAILABLE:
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, result.error()));
      return reactor;
    default:
      break;
  }
  // unknown_user / recipient_offline are answers, not failures: the caller
  // decides whether to fall back to a push notification.
  response->set_status(result.status());
  response->set_id(result.id());
  response->set_ts_ms(result.ts_ms());
  response->set_delivered(result.delivered());
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerBidiReactor<EdgeUp, EdgeDown>* MessageServiceImpl::EdgeLink(
    grpc::CallbackServerContext* ctx) {
  if (grpc::Status denied = options_.auth.Check(ctx); !denied.ok()) {
    return new RefusedBidi<EdgeUp, EdgeDown>(denied);
  }
  return new EdgeLinkReactor(this);
}

}  // namespace chat::message
