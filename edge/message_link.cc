#include "edge/message_link.h"

#include "common/backoff.h"
#include "common/grpc_server.h"
#include "edge/protocol.h"
#include "spdlog/spdlog.h"

namespace chat::edge {
namespace {

SendResult::Status FromProto(chat::v1::SendStatus status) {
  switch (status) {
    case chat::v1::SEND_OK:
      return SendResult::Status::kOk;
    case chat::v1::SEND_UNKNOWN_USER:
      return SendResult::Status::kUnknownUser;
    case chat::v1::SEND_RECIPIENT_OFFLINE:
      return SendResult::Status::kRecipientOffline;
    case chat::v1::SEND_BAD_REQUEST:
      return SendResult::Status::kBadRequest;
    default:
      return SendResult::Status::kUnavailable;
  }
}

SendResult Unavailable(std::string why) {
  SendResult r;
  r.status = SendResult::Status::kUnavailable;
  r.error = std::move(why);
  return r;
}

}  // namespace

// One attempt at the stream. Deletes itself in OnDone after telling the link.
class MessageLink::Stream final
    : public grpc::ClientBidiReactor<chat::v1::EdgeUp, chat::v1::EdgeDown> {
 public:
  explicit Stream(MessageLink* link) : link_(link) {}

  void Begin(chat::v1::MessageService::Stub* stub) {
    link_->options_.auth.Apply(&context_);
    stub->async()->EdgeLink(&context_, this);
    hello_.set_edge_id(link_->edge_id_);
    StartWrite(&hello_);
    StartRead(&down_);
    StartCall();
  }
  void Cancel() { context_.TryCancel(); }

  // Only the link calls this, one write at a time.
  void Write(chat::v1::EdgeUp* up) { StartWrite(up); }
  chat::v1::EdgeUp& out() { return out_; }

  void OnWriteDone(bool ok) override {
    if (!ok) return;  // the read side sees the failure and OnDone follows
    if (!said_hello_) {
      said_hello_ = true;
      StepTowardsUp();
      return;
    }
    link_->OnWriteDone(this);
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (!greeted_) {
      // The first EdgeDown is the service's greeting: only now can sends be
      // routed (a service without a routing table refuses the link).
      greeted_ = true;
      StepTowardsUp();
    }
    link_->OnDown(down_);
    StartRead(&down_);
  }
  void OnDone(const grpc::Status& status) override {
    if (status.error_code() != grpc::StatusCode::CANCELLED) {
      spdlog::warn("EdgeLink ended: {} ({})", status.error_message(),
                   static_cast<int>(status.error_code()));
    }
    link_->OnStreamDone(this);
    delete this;
  }

 private:
  MessageLink* link_;
  grpc::ClientContext context_;
  chat::v1::EdgeUp hello_;
  chat::v1::EdgeUp out_;
  chat::v1::EdgeDown down_;
  // Up once our hello was written (no write in flight) and the greeting read.
  void StepTowardsUp() {
    if (++steps_ == 2) link_->OnStreamUp(this);
  }

  bool said_hello_ = false;
  bool greeted_ = false;
  std::atomic<int> steps_{0};
};

MessageLink::MessageLink(std::shared_ptr<grpc::Channel> channel, std::string edge_id,
                         LocalHub* hub, LinkOptions options)
    : stub_(chat::v1::MessageService::NewStub(channel)),
      edge_id_(std::move(edge_id)),
      hub_(hub),
      options_(options),
      thread_([this] { Run(); }) {}

MessageLink::~MessageLink() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void MessageLink::Run() {
  Backoff backoff(std::chrono::milliseconds(100), std::chrono::milliseconds(2000));
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    stream_done_ = false;
    auto* stream = new Stream(this);
    Stream* attempt = stream;
    mu_.Unlock();
    stream->Begin(stub_.get());
    mu_.Lock();
    // Wait for the attempt to end, or for shutdown; a stream that leaves
    // sends unanswered too long is cut (its end fails them as unavailable).
    auto done_or_stop = [this] { return stream_done_ || stopping_; };
    const absl::Duration tick = std::min(absl::Seconds(1), options_.answer_timeout / 4);
    while (!mu_.AwaitWithTimeout(absl::Condition(&done_or_stop), tick)) {
      if (!waiting_.empty() && absl::Now() - last_answer_ > options_.answer_timeout) {
        spdlog::warn("EdgeLink: {} sends unanswered for {}; reconnecting", waiting_.size(),
                     absl::FormatDuration(absl::Now() - last_answer_));
        attempt->Cancel();
        mu_.Await(absl::Condition(&stream_done_));
        break;
      }
    }
    if (stopping_) {
      if (!stream_done_) {
        attempt->Cancel();
        mu_.Await(absl::Condition(&stream_done_));
      }
      break;
    }
    const bool was_up = up_.load();
    up_ = false;
    if (was_up) backoff.Reset();
    const auto delay = backoff.Next();
    auto stop = [this] { return stopping_; };
    mu_.AwaitWithTimeout(absl::Condition(&stop), absl::FromChrono(delay));
  }
}

void MessageLink::OnStreamUp(Stream* stream) {
  absl::MutexLock lock(&mu_);
  stream_ = stream;
  up_ = true;
  spdlog::info("EdgeLink up");
  WriteNextLocked();
}

void MessageLink::OnWriteDone(Stream* stream) {
  absl::MutexLock lock(&mu_);
  writing_ = false;
  WriteNextLocked();
}

void MessageLink::WriteNextLocked() {
  if (writing_ || stream_ == nullptr || pending_.empty()) return;
  chat::v1::EdgeUp& up = stream_->out();
  up.Clear();
  const int n = std::min<int>(pending_.size(), options_.max_sends_per_batch);
  up.mutable_sends()->Reserve(n);
  for (int i = 0; i < n; ++i) {
    *up.add_sends() = std::move(pending_.front());
    pending_.pop_front();
  }
  writing_ = true;
  stream_->Write(&up);
}

void MessageLink::Send(OutgoingSend send, std::function<void(const SendResult&)> done) {
  {
    absl::MutexLock lock(&mu_);
    if (stream_ != nullptr && waiting_.size() < options_.max_inflight_sends) {
      const uint64_t seq = next_seq_++;
      chat::v1::EdgeSend& s = pending_.emplace_back();
      s.set_seq(seq);
      auto* r = s.mutable_request();
      r->set_sent_by(std::move(send.sent_by));
      r->set_send_to(std::move(send.send_to));
      r->set_message(std::move(send.message));
      r->set_from_connection_id(std::move(send.from_connection_id));
      if (waiting_.empty()) last_answer_ = absl::Now();
      waiting_.emplace(seq, std::move(done));
      WriteNextLocked();
      return;
    }
  }
  done(Unavailable(up_ ? "message service overloaded; nothing was delivered"
                       : "message service unavailable; nothing was delivered"));
}

void MessageLink::OnDown(const chat::v1::EdgeDown& down) {
  for (const auto& d : down.deliveries()) {
    auto frame = std::make_shared<const std::string>(
        EncodeDelivery(d.sent_by(), d.send_to(), d.message(), d.id(), d.ts_ms()));
    hub_->Deliver({d.connection_ids().begin(), d.connection_ids().end()}, frame);
  }
  if (down.results_size() == 0) return;
  std::vector<std::pair<std::function<void(const SendResult&)>, SendResult>> ready;
  ready.reserve(down.results_size());
  {
    absl::MutexLock lock(&mu_);
    last_answer_ = absl::Now();
    for (const auto& r : down.results()) {
      auto it = waiting_.find(r.seq());
      if (it == waiting_.end()) continue;
      SendResult result;
      result.status = FromProto(r.status());
      result.error = r.error();
      result.id = r.id();
      result.ts_ms = r.ts_ms();
      result.delivered = r.delivered();
      ready.emplace_back(std::move(it->second), std::move(result));
      waiting_.erase(it);
    }
  }
  for (auto& [done, result] : ready) done(result);
}

void MessageLink::OnStreamDone(Stream* stream) {
  absl::flat_hash_map<uint64_t, std::function<void(const SendResult&)>> failed;
  {
    absl::MutexLock lock(&mu_);
    if (stream_ == stream) stream_ = nullptr;
    up_ = false;
    writing_ = false;
    pending_.clear();
    failed.swap(waiting_);
    stream_done_ = true;
  }
  // The answer to these is unknown; tell the clients to retry.
  for (auto& [seq, done] : failed) {
    done(Unavailable("message service connection lost; the message may not have been delivered"));
  }
}

MessageLinks::MessageLinks(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                           const std::string& edge_id, LocalHub* hub, LinkOptions options) {
  for (const auto& channel : channels) {
    links_.push_back(std::make_unique<MessageLink>(channel, edge_id, hub, options));
  }
}

void MessageLinks::Send(OutgoingSend send, std::function<void(const SendResult&)> done) {
  const size_t n = links_.size();
  const size_t first = std::hash<std::string>()(send.from_connection_id) % n;
  for (size_t i = 0; i < n; ++i) {
    MessageLink* link = links_[(first + i) % n].get();
    if (link->Up()) {
      link->Send(std::move(send), std::move(done));
      return;
    }
  }
  links_[first]->Send(std::move(send), std::move(done));  // fails as unavailable
}

bool MessageLinks::Ready() const {
  for (const auto& link : links_) {
    if (link->Up()) return true;
  }
  return false;
}

}  // namespace chat::edge
