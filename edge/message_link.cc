#include "edge/message_link.h"

#include <algorithm>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "common/backoff.h"
#include "common/cq_tag.h"
#include "common/grpc_loop.h"
#include "common/grpc_server.h"
#include "edge/base64url.h"
#include "edge/protocol.h"
#include "spdlog/spdlog.h"

namespace chat::edge {
namespace {

// Delivery and StoredMessage carry the same message fields. Each proto is
// read once, so its strings (the message text above all) are moved out, not
// copied; `m` is left with empty strings.
template <typename Proto>
MessageObject TakeMessage(Proto* m) {
  MessageObject out;
  out.id = std::move(*m->mutable_id());
  out.conversation = std::move(*m->mutable_conversation());
  out.seq = m->seq();
  out.useq = m->useq();
  out.sent_by = std::move(*m->mutable_sent_by());
  out.send_to = std::move(*m->mutable_send_to());
  out.message = std::move(*m->mutable_message());
  out.ts_ms = m->ts_ms();
  out.server = m->server();
  out.type = std::move(*m->mutable_type());
  out.metadata = std::move(*m->mutable_metadata());
  return out;
}

SyncReply TakeSync(chat::v1::SyncResponse* r) {
  SyncReply out;
  out.messages.reserve(r->messages_size());
  for (auto& m : *r->mutable_messages()) out.messages.push_back(TakeMessage(&m));
  out.useq = r->useq();
  out.more = r->more();
  out.epoch = std::move(*r->mutable_epoch());
  out.reset = r->reset();
  return out;
}

// Every answer of message-service (EdgeSendResult, EdgeQueryResult) carries a
// canonical status code (google.rpc.Code, 0 = OK) and its reason.
template <typename Result>
absl::Status StatusOf(const Result& r) {
  if (r.code() == 0) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(r.code()), r.error());
}

SendResult Unavailable(const char* why) {
  SendResult r;
  r.status = absl::UnavailableError(why);
  return r;
}

}  // namespace

// One attempt at the stream, on the async API: its events complete on the
// process's GrpcLoop. Started; our hello written and the service's greeting
// read, it is up; then it reads until a read fails, asks for the status, and
// lets go of itself once that is in and no write is pending, after telling
// the link. The link keeps a reference while it is up, so that a write
// prepared under the link's lock can start after the lock is released
// (LinkWrite) even if the stream ends meanwhile.
class MessageLink::Stream final : public std::enable_shared_from_this<Stream> {
 public:
  explicit Stream(MessageLink* link) : link_(link) {}

  void Begin(chat::v1::EdgeGateway::Stub* stub) {
    self_ = shared_from_this();
    link_->options_.auth.Apply(&context_);
    hello_.set_edge_id(link_->edge_id_);
    rw_ = stub->PrepareAsyncEdgeLink(&context_, GrpcLoop::Default().cq());
    rw_->StartCall(&started_);
  }
  void Cancel() { context_.TryCancel(); }

  // Writes out(). Only the link calls this, one write at a time (and not
  // before up), without holding its lock.
  void WriteOut() {
    absl::MutexLock lock(&mu_);
    if (finishing_) return;  // the end is under way: the link hears of it
    write_pending_ = true;
    rw_->Write(out_, &written_);
  }
  chat::v1::EdgeUp& out() { return out_; }

 private:
  void OnStarted(bool ok) {
    if (!ok) {
      Finish();
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      write_pending_ = true;
      rw_->Write(hello_, &written_);
    }
    rw_->Read(&down_, &read_);
  }
  void OnWritten(bool ok) {
    bool hello = false;
    bool end = false;
    {
      absl::MutexLock lock(&mu_);
      write_pending_ = false;
      if (ok && !finishing_ && !said_hello_) {
        said_hello_ = true;
        hello = true;
      }
      // Not ok: the read side sees the failure and the end follows; if the
      // status is in already, this was the last thing to wait for.
      if (!ok || finishing_) end = finished_;
    }
    if (end) {
      End();
      return;
    }
    if (!ok || hello) {
      if (hello) StepTowardsUp();
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) return;
    }
    link_->OnWriteDone(this);
  }
  void OnRead(bool ok) {
    if (!ok) {
      Finish();
      return;
    }
    if (!greeted_) {
      // The first EdgeDown is the service's greeting: only now can sends be
      // routed (a service without a routing table refuses the link).
      greeted_ = true;
      StepTowardsUp();
    }
    link_->OnDown(&down_);
    rw_->Read(&down_, &read_);
  }
  // No read is pending any more: ask for the status.
  void Finish() {
    {
      absl::MutexLock lock(&mu_);
      finishing_ = true;
    }
    rw_->Finish(&status_, &finished_tag_);
  }
  void OnFinished(bool /*ok*/) {
    {
      absl::MutexLock lock(&mu_);
      finished_ = true;
      if (write_pending_) return;  // its completion ends it
    }
    End();
  }
  void End() {
    if (status_.error_code() != grpc::StatusCode::CANCELLED) {
      spdlog::warn("EdgeLink ended: {} ({})", status_.error_message(),
                   static_cast<int>(status_.error_code()));
    }
    link_->OnStreamDone(this);
    // The last reference may be a write that found the stream finishing.
    std::shared_ptr<Stream> last = std::move(self_);
  }
  // Up once our hello was written (no write in flight) and the greeting read.
  void StepTowardsUp() {
    if (++steps_ == 2) link_->OnStreamUp(this);
  }

  MessageLink* link_;
  std::shared_ptr<Stream> self_;  // from Begin to End
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<chat::v1::EdgeUp, chat::v1::EdgeDown>> rw_;
  chat::v1::EdgeUp hello_;
  chat::v1::EdgeUp out_;
  chat::v1::EdgeDown down_;
  grpc::Status status_;
  MemberTag<Stream> started_{this, &Stream::OnStarted};
  MemberTag<Stream> written_{this, &Stream::OnWritten};
  MemberTag<Stream> read_{this, &Stream::OnRead};
  MemberTag<Stream> finished_tag_{this, &Stream::OnFinished};
  absl::Mutex mu_;  // writes come from the link's callers' threads
  bool write_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool said_hello_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool greeted_ = false;  // loop thread only
  std::atomic<int> steps_{0};
};

// A write WriteNextLocked prepared under mu_, started when this goes out of
// scope: declared before the MutexLock, after the lock is released. The
// stream's own lock orders it against the stream's end, and writing_ keeps
// it the only write in flight, so nothing else touches the stream's out().
class MessageLink::LinkWrite {
 public:
  LinkWrite() = default;
  LinkWrite(const LinkWrite&) = delete;
  LinkWrite& operator=(const LinkWrite&) = delete;
  ~LinkWrite() {
    if (stream_ != nullptr) stream_->WriteOut();
  }
  void Set(std::shared_ptr<Stream> stream) { stream_ = std::move(stream); }

 private:
  std::shared_ptr<Stream> stream_;
};

MessageLink::MessageLink(std::shared_ptr<grpc::Channel> channel, std::string edge_id, LocalHub* hub,
                         LinkOptions options)
    : stub_(chat::v1::EdgeGateway::NewStub(channel)),
      edge_id_(std::move(edge_id)),
      hub_(hub),
      options_(options) {
  Connect();
}

MessageLink::~MessageLink() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    // (An attempt not started yet is cancelled as soon as it starts.)
    if (attempt_ != nullptr) attempt_->Cancel();
  }
  // Alarms that fire from now on find stopping_ set; these wait for any
  // that is running.
  reconnect_.Shutdown();
  watchdog_.Shutdown();
  reached_flush_.Shutdown();
  absl::MutexLock lock(&mu_);
  auto ended = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return live_attempts_ == 0; };
  mu_.Await(absl::Condition(&ended));
}

void MessageLink::Connect() {
  auto stream = std::make_shared<Stream>(this);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    attempt_up_ = false;
    attempt_ = stream.get();
    ++live_attempts_;
  }
  stream->Begin(stub_.get());
}

void MessageLink::ArmWatchdogLocked() {
  if (watchdog_armed_) return;
  watchdog_armed_ = true;
  const absl::Duration left =
      std::max(last_answer_ + options_.answer_timeout - absl::Now(), absl::Milliseconds(1));
  watchdog_.Schedule(absl::ToChronoNanoseconds(left), [this] { OnWatchdog(); });
}

// A stream that leaves what was sent up unanswered too long is cut: its end
// fails the sends as unavailable, and the link reconnects.
void MessageLink::OnWatchdog() {
  absl::MutexLock lock(&mu_);
  watchdog_armed_ = false;
  if (stopping_ || !AwaitingLocked()) return;  // set again by the next wait
  const absl::Duration waited = absl::Now() - last_answer_;
  if (waited <= options_.answer_timeout) {
    ArmWatchdogLocked();  // answers came meanwhile: the newest wait's deadline
    return;
  }
  spdlog::warn(
      "EdgeLink: {} sends, {} attaches and {} queries unanswered for {}; "
      "reconnecting",
      waiting_.size(), attaches_.size(), queries_.size(), absl::FormatDuration(waited));
  if (attempt_ != nullptr) attempt_->Cancel();
}

void MessageLink::OnStreamUp(Stream* stream) {
  {
    LinkWrite write;
    absl::MutexLock lock(&mu_);
    stream_ = stream->shared_from_this();
    up_ = true;
    attempt_up_ = true;
    if (options_.metrics != nullptr) options_.metrics->LinkUp(ever_up_);
    ever_up_ = true;
    spdlog::info("EdgeLink up");
    WriteNextLocked(&write);
  }
  // Every live connection attaches again and catches up on what it missed
  // while the path was down (a new connection attaches by itself).
  hub_->ForAll([](LocalConnection& c) { c.Reattach(); });
}

void MessageLink::Attach(const std::string& connection_id, const std::string& user,
                         int64_t after_useq, Done<AttachInfo> done) {
  {
    LinkWrite write;
    absl::MutexLock lock(&mu_);
    if (stream_ != nullptr) {
      auto* a = pending_other_.add_attaches();
      a->set_connection_id(connection_id);
      a->set_user(user);
      a->set_after_useq(after_useq);
      has_other_ = true;
      has_urgent_other_ = true;
      Done<AttachInfo> replaced;
      if (done) {
        if (!AwaitingLocked()) last_answer_ = absl::Now();
        auto& slot = attaches_[connection_id];
        replaced = std::move(slot);
        slot = std::move(done);
        ArmWatchdogLocked();
      }
      WriteNextLocked(&write);
      if (!replaced) return;
      done = std::move(replaced);  // an older attach of the same connection: superseded
    }
  }
  if (done) done(absl::UnavailableError("message service unavailable"));
}

void MessageLink::Detach(const std::string& connection_id) {
  LinkWrite write;
  absl::MutexLock lock(&mu_);
  if (stream_ == nullptr) return;  // a new stream knows nothing of it anyway
  pending_other_.add_detaches(connection_id);
  has_other_ = true;
  has_urgent_other_ = true;
  attaches_.erase(connection_id);
  WriteNextLocked(&write);
}

void MessageLink::Reached(const std::string& user, int64_t from, int64_t to) {
  LinkWrite write;
  absl::MutexLock lock(&mu_);
  if (stream_ == nullptr) return;  // lost: after a crash messages may be pushed twice
  // Frames written while the previous EdgeUp was on its way: a user's
  // adjacent ranges go up as one (one report, one worker task on the other
  // side, instead of one per frame).
  auto [it, added] = pending_reached_.try_emplace(user, pending_other_.reached_size());
  if (!added) {
    chat::v1::Reached* last = pending_other_.mutable_reached(it->second);
    if (last->to_useq() + 1 == from) {
      last->set_to_useq(to);
      return;  // already waiting for the next write
    }
    it->second = pending_other_.reached_size();
  }
  auto* r = pending_other_.add_reached();
  r->set_user(user);
  r->set_from_useq(from);
  r->set_to_useq(to);
  if (!has_other_) reached_since_ = absl::Now();
  has_other_ = true;
  WriteNextLocked(&write);
}

void MessageLink::Query(chat::v1::EdgeQuery query, Done<chat::v1::EdgeQueryResult> done) {
  {
    LinkWrite write;
    absl::MutexLock lock(&mu_);
    if (stream_ != nullptr && queries_.size() < options_.max_inflight_sends) {
      const uint64_t seq = next_seq_++;
      query.set_seq(seq);
      if (!AwaitingLocked()) last_answer_ = absl::Now();
      *pending_other_.add_queries() = std::move(query);
      has_other_ = true;
      has_urgent_other_ = true;
      queries_.emplace(seq, std::move(done));
      ArmWatchdogLocked();
      WriteNextLocked(&write);
      return;
    }
  }
  done(absl::UnavailableError(up_ ? "message service overloaded" : "message service unavailable"));
}

void MessageLink::OnWriteDone(Stream* stream) {
  LinkWrite write;
  absl::MutexLock lock(&mu_);
  writing_ = false;
  WriteNextLocked(&write);
}

void MessageLink::WriteNextLocked(LinkWrite* write) {
  if (writing_ || stream_ == nullptr || (pending_.empty() && !has_other_)) return;
  if (pending_.empty() && !has_urgent_other_ && options_.reached_delay > absl::ZeroDuration()) {
    // Only reached reports wait: they go with the next send, attach or
    // query, or on their own once the oldest has waited reached_delay.
    const absl::Duration left = reached_since_ + options_.reached_delay - absl::Now();
    if (left > absl::ZeroDuration()) {
      if (!reached_flush_armed_) {
        reached_flush_armed_ = true;
        reached_flush_.Schedule(absl::ToChronoNanoseconds(left), [this] {
          LinkWrite write;
          absl::MutexLock lock(&mu_);
          reached_flush_armed_ = false;
          if (!stopping_) WriteNextLocked(&write);
        });
      }
      return;
    }
  }
  chat::v1::EdgeUp& up = stream_->out();
  up.Clear();
  if (has_other_) {
    up.Swap(&pending_other_);
    has_other_ = false;
    has_urgent_other_ = false;
    pending_reached_.clear();
    if (options_.on_lost_reached && up.reached_size() > 0) {
      const absl::Time now = absl::Now();
      for (const auto& r : up.reached()) recent_reached_.emplace_back(now, r);
      while (!recent_reached_.empty() &&
             recent_reached_.front().first < now - options_.reached_replay) {
        recent_reached_.pop_front();
      }
    }
  }
  const int n = std::min<int>(pending_.size(), options_.max_sends_per_batch);
  up.mutable_sends()->Reserve(n);
  for (int i = 0; i < n; ++i) {
    *up.add_sends() = std::move(pending_.front());
    pending_.pop_front();
  }
  writing_ = true;
  write->Set(stream_);
}

void MessageLink::Send(OutgoingSend send, std::function<void(const SendResult&)> done) {
  {
    LinkWrite write;
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
      r->set_idempotency_key(std::move(send.idempotency_key));
      r->set_edge_received_us(send.received_us);
      if (!AwaitingLocked()) last_answer_ = absl::Now();
      waiting_.emplace(seq, std::move(done));
      ArmWatchdogLocked();
      WriteNextLocked(&write);
      return;
    }
  }
  done(Unavailable(up_ ? "message service overloaded; nothing was delivered"
                       : "message service unavailable; nothing was delivered"));
}

void MessageLink::OnDown(chat::v1::EdgeDown* down_ptr) {
  chat::v1::EdgeDown& down = *down_ptr;
  // Everything this batch brings one connection goes out in one write.
  DeliveryBatch batch;
  // Attach answers first: a connection's hello goes out before anything
  // delivered to it in the same batch.
  if (down.attached_size() > 0) {
    std::vector<std::pair<Done<AttachInfo>, absl::StatusOr<AttachInfo>>> ready;
    {
      absl::MutexLock lock(&mu_);
      last_answer_ = absl::Now();
      for (const auto& a : down.attached()) {
        auto it = attaches_.find(a.connection_id());
        if (it == attaches_.end()) continue;
        if (!a.error().empty()) {
          ready.emplace_back(std::move(it->second), absl::UnavailableError(a.error()));
        } else {
          ready.emplace_back(std::move(it->second),
                             AttachInfo{a.epoch(), a.last_useq(), a.reached_useq()});
        }
        attaches_.erase(it);
      }
    }
    for (auto& [done, info] : ready) done(std::move(info));
  }
  for (auto& d : *down.mutable_deliveries()) {
    const bool own_copy = d.user() == d.sent_by() && d.sent_by() != d.send_to();
    auto frame = std::make_shared<const std::string>(EncodeDelivery(TakeMessage(&d)));
    const int64_t useq = d.useq();
    const int64_t received_us = d.edge_received_us();
    hub_->ForEach(d.connection_ids(),
                  [&](LocalConnection& c) { c.DeliverStored(frame, useq, own_copy, received_us); });
  }
  if (down.query_results_size() > 0) {
    std::vector<std::pair<Done<chat::v1::EdgeQueryResult>, chat::v1::EdgeQueryResult*>> ready;
    {
      absl::MutexLock lock(&mu_);
      last_answer_ = absl::Now();
      for (auto& r : *down.mutable_query_results()) {
        auto it = queries_.find(r.seq());
        if (it == queries_.end()) continue;
        ready.emplace_back(std::move(it->second), &r);
        queries_.erase(it);
      }
    }
    for (auto& [done, r] : ready) {
      absl::Status status = StatusOf(*r);
      if (status.ok()) {
        done(std::move(*r));  // a page of messages: moved, not copied
      } else {
        done(status);
      }
    }
  }
  if (down.results_size() > 0) {
    std::vector<std::pair<std::function<void(const SendResult&)>, SendResult>> ready;
    ready.reserve(down.results_size());
    {
      absl::MutexLock lock(&mu_);
      last_answer_ = absl::Now();
      for (const auto& r : down.results()) {
        auto it = waiting_.find(r.seq());
        if (it == waiting_.end()) continue;
        SendResult result;
        // Kept as message-service gave it: what the client and the metrics
        // make of it is decided once, in SendErrorCode.
        result.status = StatusOf(r);
        result.id = r.id();
        result.ts_ms = r.ts_ms();
        result.delivered = r.delivered();
        result.conversation = r.conversation();
        result.seq = r.conversation_seq();
        result.useq = r.useq();
        result.duplicate = r.duplicate();
        ready.emplace_back(std::move(it->second), std::move(result));
        waiting_.erase(it);
      }
    }
    for (auto& [done, result] : ready) done(result);
  }
  for (const auto& r : down.receipts()) {
    auto frame = std::make_shared<const std::string>(EncodeReceipt(
        Receipt{r.conversation(), r.user(), r.read_seq(), r.delivered_seq(), r.ts_ms()}));
    hub_->ForEach(r.connection_ids(), [&](LocalConnection& c) { c.DeliverReceipt(frame); });
  }
}

void MessageLink::OnStreamDone(Stream* stream) {
  absl::flat_hash_map<uint64_t, std::function<void(const SendResult&)>> failed;
  absl::flat_hash_map<uint64_t, Done<chat::v1::EdgeQueryResult>> failed_queries;
  absl::flat_hash_map<std::string, Done<AttachInfo>> failed_attaches;
  bool was_up = false;
  std::vector<chat::v1::Reached> lost_reached;
  {
    absl::MutexLock lock(&mu_);
    if (stream_.get() == stream) {  // it was up
      was_up = !stopping_;          // (shutting down: nobody to catch up)
      stream_ = nullptr;
      if (options_.metrics != nullptr) options_.metrics->LinkDown();
    }
    if (was_up && options_.on_lost_reached) {
      for (auto& [when, r] : recent_reached_) lost_reached.push_back(std::move(r));
      for (auto& r : *pending_other_.mutable_reached()) lost_reached.push_back(std::move(r));
    }
    recent_reached_.clear();
    up_ = false;
    writing_ = false;
    pending_.clear();
    pending_other_.Clear();
    pending_reached_.clear();
    has_other_ = false;
    has_urgent_other_ = false;
    failed.swap(waiting_);
    failed_queries.swap(queries_);
    failed_attaches.swap(attaches_);
  }
  for (auto& [seq, done] : failed_queries) {
    done(absl::UnavailableError("message service connection lost"));
  }
  for (auto& [id, done] : failed_attaches) {
    done(absl::UnavailableError("message service connection lost"));
  }
  // The answer to these is unknown; tell the clients to retry.
  for (auto& [seq, done] : failed) {
    done(Unavailable("message service connection lost; the message may not have been delivered"));
  }
  // Reports the dead replica may not have stored go to the users' new
  // replica (reports are ranges: a repeated one changes nothing).
  if (!lost_reached.empty()) options_.on_lost_reached(std::move(lost_reached));
  // What that replica committed but had not yet handed down is lost to the
  // live path (a retry of the send answers `duplicate` and delivers
  // nothing): every connection catches up from the store through the
  // replicas still up, as after a reconnect. With none up the attach fails
  // and the next link up does it.
  if (was_up) hub_->ForAll([](LocalConnection& c) { c.Reattach(); });

  // The next attempt, after a backoff: a quick one if this attempt came up,
  // longer and longer while attempts fail.
  bool reconnect = false;
  std::chrono::milliseconds delay{0};
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      reconnect = true;
      if (attempt_up_) backoff_.Reset();
      delay = backoff_.Next();
    }
  }
  if (reconnect) reconnect_.Schedule(delay, [this] { Connect(); });
  // Last touch of this object (the destructor waits for it).
  absl::MutexLock lock(&mu_);
  if (attempt_ == stream) attempt_ = nullptr;
  --live_attempts_;
}

// The store's conversation id: both names, base64url without padding.
std::string ConversationKey(const std::string& a, const std::string& b) {
  const std::string& first = std::min(a, b);
  const std::string& second = std::max(a, b);
  return absl::StrCat(Base64UrlEncode(first), ".", Base64UrlEncode(second));
}

namespace {

// Stable across processes and builds (every edge must weigh a key the same
// way; absl::Hash is seeded per process): FNV-1a, then a 64-bit finalizer so
// that nearby inputs spread.
uint64_t StableHash(std::string_view bytes, uint64_t seed = 0) {
  uint64_t h = 1469598103934665603ULL ^ seed;
  for (char c : bytes) {
    h ^= static_cast<uint8_t>(c);
    h *= 1099511628211ULL;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

}  // namespace

MessageLinks::MessageLinks(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                           const std::string& edge_id, LocalHub* hub, LinkOptions options,
                           std::vector<std::string> names) {
  // A broken link's recent reached reports go to each user's new replica.
  options.on_lost_reached = [this](std::vector<chat::v1::Reached> lost) {
    if (closing_) return;
    for (const auto& r : lost) Reached(r.user(), r.from_useq(), r.to_useq());
  };
  for (size_t i = 0; i < channels.size(); ++i) {
    links_.push_back(std::make_unique<MessageLink>(channels[i], edge_id, hub, options));
    const std::string name = i < names.size() ? names[i] : absl::StrCat("replica-", i);
    seeds_.push_back(StableHash(name));
  }
}

int MessageLinks::Rank(const std::string& key) const {
  const uint64_t h = StableHash(key);
  int best = -1;
  uint64_t best_weight = 0;
  for (size_t i = 0; i < links_.size(); ++i) {
    if (!links_[i]->Up()) continue;
    // The key's weight on this replica; ties (never in practice) go to the
    // lower index, the same on every edge.
    const uint64_t weight =
        StableHash(std::string_view(reinterpret_cast<const char*>(&h), sizeof h), seeds_[i]);
    if (best < 0 || weight > best_weight) {
      best = static_cast<int>(i);
      best_weight = weight;
    }
  }
  return best;
}

MessageLink* MessageLinks::Pick(const std::string& key) const {
  const int i = Rank(key);
  return i < 0 ? nullptr : links_[i].get();
}

int MessageLinks::LinkForConversation(const std::string& a, const std::string& b) const {
  const std::string key = ConversationKey(a, b);
  {
    absl::MutexLock lock(&mu_);
    auto it = in_flight_.find(key);
    if (it != in_flight_.end()) return static_cast<int>(it->second.link);
  }
  return Rank(key);
}

void MessageLinks::Send(OutgoingSend send, std::function<void(const SendResult&)> done) {
  std::string key = ConversationKey(send.sent_by, send.send_to);
  int index;
  {
    absl::MutexLock lock(&mu_);
    auto it = in_flight_.find(key);
    if (it != in_flight_.end()) {
      // Earlier sends of this conversation still wait on that link: this one
      // queues behind them there (or fails with them), whatever the hashing
      // says now.
      index = static_cast<int>(it->second.link);
      ++it->second.sends;
    } else {
      index = Rank(key);
      if (index >= 0) in_flight_.emplace(key, InFlight{static_cast<size_t>(index), 1});
    }
  }
  if (index < 0) {
    links_[0]->Send(std::move(send), std::move(done));  // none is up: fails as unavailable
    return;
  }
  // Queued on the link outside mu_: the answer may come at once (a link
  // that just went down) and takes mu_ to let go of the conversation.
  std::string sender = send.sent_by;
  links_[index]->Send(std::move(send), [this, key = std::move(key), sender = std::move(sender),
                                        done = std::move(done)](const SendResult& result) {
    Answered(key);
    // The sender's own copy reached them when it was committed. Reported
    // here, to the sender's replica with their other reached ranges: the
    // conversation's replica may be another one, and the sender's mark
    // would wait at a hole there.
    if (result.status.ok() && result.useq > 0 && !closing_) {
      Reached(sender, result.useq, result.useq);
    }
    done(result);
  });
}

void MessageLinks::Answered(const std::string& conversation) {
  absl::MutexLock lock(&mu_);
  auto it = in_flight_.find(conversation);
  if (it != in_flight_.end() && --it->second.sends == 0) in_flight_.erase(it);
}

bool MessageLinks::Ready() const {
  for (const auto& link : links_) {
    if (link->Up()) return true;
  }
  return false;
}

void MessageLinks::Attach(const std::string& connection_id, const std::string& user,
                          int64_t after_useq, Done<AttachInfo> done) {
  // Every replica delivers what it commits to every connection; the user's
  // replica (the one their reached marks go to) answers with the marks.
  MessageLink* home = Pick(user);
  if (home == nullptr) {
    done(absl::UnavailableError("message service unavailable"));
    return;
  }
  for (const auto& link : links_) {
    if (link.get() == home) {
      link->Attach(connection_id, user, after_useq, std::move(done));
    } else if (link->Up()) {
      link->Attach(connection_id, user, after_useq, nullptr);
    }
  }
}

void MessageLinks::Detach(const std::string& connection_id) {
  for (const auto& link : links_) link->Detach(connection_id);
}

void MessageLinks::Reached(const std::string& user, int64_t from, int64_t to) {
  if (MessageLink* link = Pick(user)) link->Reached(user, from, to);
}

void MessageLinks::Query(const std::string& user, chat::v1::EdgeQuery query,
                         Done<chat::v1::EdgeQueryResult> done) {
  MessageLink* link = Pick(user);
  if (link == nullptr) {
    done(absl::UnavailableError("message service unavailable"));
    return;
  }
  link->Query(std::move(query), std::move(done));
}

void MessageLinks::Sync(const std::string& user, int64_t since, int limit, const std::string& epoch,
                        Done<SyncReply> done) {
  chat::v1::EdgeQuery q;
  auto* r = q.mutable_sync();
  r->set_user(user);
  r->set_since(since);
  r->set_limit(limit);
  r->set_epoch(epoch);
  Query(user, std::move(q), [done = std::move(done)](absl::StatusOr<chat::v1::EdgeQueryResult> r) {
    if (!r.ok()) return done(r.status());
    done(TakeSync(r->mutable_sync()));
  });
}

void MessageLinks::Unread(const std::string& user, int64_t after, int limit, Done<SyncReply> done) {
  chat::v1::EdgeQuery q;
  auto* r = q.mutable_unread();
  r->set_user(user);
  r->set_after(after);
  r->set_limit(limit);
  Query(user, std::move(q), [done = std::move(done)](absl::StatusOr<chat::v1::EdgeQueryResult> r) {
    if (!r.ok()) return done(r.status());
    done(TakeSync(r->mutable_sync()));
  });
}

void MessageLinks::History(const std::string& user, const std::string& with, int64_t before,
                           int limit, Done<HistoryReply> done) {
  chat::v1::EdgeQuery q;
  auto* r = q.mutable_history();
  r->set_user(user);
  r->set_with(with);
  r->set_before(before);
  r->set_limit(limit);
  Query(user, std::move(q), [done = std::move(done)](absl::StatusOr<chat::v1::EdgeQueryResult> r) {
    if (!r.ok()) return done(r.status());
    auto& h = *r->mutable_history();
    HistoryReply out;
    out.with = h.with();
    out.conversation = h.conversation();
    out.messages.reserve(h.messages_size());
    for (auto& m : *h.mutable_messages()) out.messages.push_back(TakeMessage(&m));
    out.more = h.more();
    done(std::move(out));
  });
}

void MessageLinks::Conversations(const std::string& user, int limit, const std::string& after,
                                 Done<ConversationsReply> done) {
  chat::v1::EdgeQuery q;
  auto* r = q.mutable_conversations();
  r->set_user(user);
  r->set_limit(limit);
  r->set_after(after);
  Query(user, std::move(q), [done = std::move(done)](absl::StatusOr<chat::v1::EdgeQueryResult> r) {
    if (!r.ok()) return done(r.status());
    ConversationsReply out;
    for (auto& c : *r->mutable_conversations()->mutable_items()) {
      out.items.push_back({c.with(), c.conversation(), TakeMessage(c.mutable_last()), c.unread(),
                           c.read_seq(), c.peer_read_seq(), c.delivered_seq()});
    }
    out.next = r->conversations().next();
    done(std::move(out));
  });
}

void MessageLinks::MarkRead(const std::string& user, const std::string& with, int64_t seq,
                            Done<ReadReply> done) {
  chat::v1::EdgeQuery q;
  auto* r = q.mutable_read();
  r->set_user(user);
  r->set_with(with);
  r->set_seq(seq);
  Query(user, std::move(q), [done = std::move(done)](absl::StatusOr<chat::v1::EdgeQueryResult> r) {
    if (!r.ok()) return done(r.status());
    done(ReadReply{r->read().conversation(), r->read().read_seq()});
  });
}

}  // namespace chat::edge
