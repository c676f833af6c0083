#include "edge/plain_ws_session.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "boost/asio/bind_allocator.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/write.hpp"
#include "spdlog/spdlog.h"

namespace chat::edge {

namespace net = boost::asio;
namespace http = boost::beast::http;
using boost::system::error_code;

namespace {

// What one read takes from the socket at most. Shared by every connection
// of the thread: bytes are parsed before the next connection's turn.
constexpr size_t kScratchBytes = 64 * 1024;

char* Scratch() {
  thread_local std::unique_ptr<char[]> scratch(new char[kScratchBytes]);
  return scratch.get();
}

// The waits an idle connection keeps pending (readable, timer) are its
// largest allocations after the session. Asio's default allocator recycles
// blocks cached from earlier operations, which may be larger (a finished
// write's); this one takes exactly an operation's size.
template <typename T>
struct ExactAllocator {
  using value_type = T;
  ExactAllocator() = default;
  template <typename U>
  ExactAllocator(const ExactAllocator<U>&) {}  // NOLINT: rebinding
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T))); }
  void deallocate(T* p, size_t) { ::operator delete(p); }
  template <typename U>
  bool operator==(const ExactAllocator<U>&) const {
    return true;
  }
  template <typename U>
  bool operator!=(const ExactAllocator<U>&) const {
    return false;
  }
};

// Frames coalesced into one write at most (two buffers each; writev takes 64
// at a time on Linux through Asio).
constexpr size_t kMaxBatchFrames = 32;

size_t HeaderSize(size_t payload) { return payload < 126 ? 2 : payload <= 0xFFFF ? 4 : 10; }

std::string_view View(boost::beast::string_view s) { return std::string_view(s.data(), s.size()); }

// The checks Beast's accept made beyond websocket::is_upgrade (which the
// HTTP session applied): a key, and version 13. Empty if fine, else the
// whole HTTP answer.
std::string RefuseHandshake(const http::request<http::empty_body>& request) {
  const std::string_view key = View(request[http::field::sec_websocket_key]);
  const std::string_view version = View(request[http::field::sec_websocket_version]);
  auto answer = [](std::string_view status, std::string_view extra, std::string_view body) {
    std::string out = "HTTP/1.1 ";
    out.append(status).append("\r\nServer: chat-edge\r\n").append(extra);
    out.append("Content-Type: text/plain\r\nContent-Length: ")
        .append(std::to_string(body.size()))
        .append("\r\nConnection: close\r\n\r\n")
        .append(body);
    return out;
  };
  if (key.empty()) return answer("400 Bad Request", "", "Missing Sec-WebSocket-Key\n");
  if (key.size() > 24) return answer("400 Bad Request", "", "Bad Sec-WebSocket-Key\n");
  if (version != "13") {
    return answer("426 Upgrade Required", "Sec-WebSocket-Version: 13\r\n",
                  "Unsupported Sec-WebSocket-Version\n");
  }
  return "";
}

// Sessions this thread is inside (0 or 1; an inline run never nests).
thread_local int t_sessions_held = 0;

}  // namespace

class PlainWsSession::Held {
 public:
  // Blocks: a strand handler waits for an inline run on another thread.
  explicit Held(PlainWsSession* session) : session_(session) {
    session_->mu_.Lock();
    ++t_sessions_held;
  }
  // After TryEnter succeeded: an inline run.
  Held(PlainWsSession* session, std::adopt_lock_t) : session_(session), inline_(true) {}
  Held(const Held&) = delete;
  Held& operator=(const Held&) = delete;
  ~Held() {
    DeliveryBatch* batch = inline_ ? DeliveryBatch::Current() : nullptr;
    if (batch != nullptr && session_->want_write_) {
      // The rest of the batch may bring more for this socket: one write
      // when it closes (WriteDeferred).
      if (!session_->deferred_) {
        session_->deferred_ = true;
        batch->Defer(session_->shared_from_this());
      }
    } else {
      // What the handler queued goes out now, in one write, and the logic
      // hears of written frames only here, never inside its own call.
      session_->deferred_ = false;
      session_->FlushWrites();
    }
    --t_sessions_held;
    session_->mu_.Unlock();
  }

 private:
  PlainWsSession* const session_;
  const bool inline_ = false;
};

bool PlainWsSession::TryEnter() {
  // Inside a session already (its logic delivering to another connection,
  // or a result answered synchronously): posted, so that no thread holds
  // two sessions and no session's code runs inside its own.
  if (t_sessions_held > 0 || !mu_.TryLock()) return false;
  ++t_sessions_held;
  return true;
}

template <typename Fn>
void PlainWsSession::RunInOrder(Fn fn) {
  // 0: everything this thread posted before has run (the count drops
  // inside the posted work, holding the session).
  if (ordered_posts_.load(std::memory_order_acquire) == 0 && TryEnter()) {
    Held held(this, std::adopt_lock);
    fn(*this);
    return;
  }
  ordered_posts_.fetch_add(1, std::memory_order_relaxed);
  PostHeld([fn = std::move(fn)](PlainWsSession& self) mutable {
    fn(self);
    self.ordered_posts_.fetch_sub(1, std::memory_order_release);
  });
}

template <typename Fn>
void PlainWsSession::PostHeld(Fn fn) {
  net::post(socket_.get_executor(), [self = shared_from_this(), fn = std::move(fn)]() mutable {
    Held held(self.get());
    fn(*self);
  });
}

PlainWsSession::PlainWsSession(PlainSocket socket, EdgeContext* context, Identity identity,
                               std::string connection_id, bool answer_authorization)
    : socket_(std::move(socket)),
      timer_(socket_.get_executor()),
      context_(context),
      logic_(std::move(identity.user), std::move(connection_id), &context->logic, context->messages,
             context->directory, context->hub, this, context->clock, context->tokens),
      parser_(context->logic.max_message_bytes),
      answer_authorization_(answer_authorization) {
  logic_.set_subject(std::move(identity.subject));
  if (identity.expires_at_s > 0 && context->tokens != nullptr) {
    expires_at_ms_ = ExpiryMs(identity.expires_at_s, context->tokens->clock_skew_s());
  }
  if (context->max_connection_age.count() > 0) {
    age_limit_ms_ =
        context->clock->NowMs() +
        std::chrono::duration_cast<std::chrono::milliseconds>(context->max_connection_age).count();
  }
}

PlainWsSession::~PlainWsSession() { End(); }

void PlainWsSession::Run(const http::request<http::empty_body>& request) {
  Held held(this);
  error_code ec;
  socket_.non_blocking(true, ec);  // reads are read_some after a readiness wait
  batch_ = std::make_unique<WriteBatch>();
  std::string refusal = RefuseHandshake(request);
  const bool accept = refusal.empty();
  if (accept) {
    std::string& answer = batch_->bytes;
    answer =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: ";
    answer.append(WebSocketAccept(View(request[http::field::sec_websocket_key])));
    answer.append("\r\nServer: chat-edge\r\n");
    if (answer_authorization_) answer.append("Sec-WebSocket-Protocol: authorization\r\n");
    answer.append("\r\n");
  } else {
    spdlog::debug("{}: handshake refused: {}", logic_.connection_id(),
                  refusal.substr(0, refusal.find('\r')));
    batch_->bytes = std::move(refusal);
  }
  writing_ = true;
  ArmTimer(context_->handshake_timeout);
  net::async_write(socket_, net::buffer(batch_->bytes),
                   [self = shared_from_this(), accept](error_code ec, size_t) {
                     Held held(self.get());
                     self->OnHandshakeWritten(accept, ec);
                   });
}

void PlainWsSession::OnHandshakeWritten(bool accepted, error_code ec) {
  writing_ = false;
  batch_.reset();
  if (ec || !accepted) {
    if (ec) spdlog::debug("{}: accept: {}", logic_.connection_id(), ec.message());
    End();
    return;
  }
  OnAccept();
}

void PlainWsSession::OnAccept() {
  accepted_ = true;
  error_code no_peer;  // an unknown address logs as 0.0.0.0:0
  record_.Opened(*context_, logic_, socket_.remote_endpoint(no_peer), weak_from_this());
  if (closing_) {
    // Closed while the handshake was written (a kick, a drain): say so now.
    ArmTimer(context_->close_grace);
    WantWrite();
    DoRead();
    return;
  }
  idle_check_at_ = std::chrono::steady_clock::now() + IdleHalf();
  SetExpiry(expires_at_ms_);  // arms the timer: idle checks and expiry
  logic_.Start();             // attaches, then the hello
  if (context_->shutting_down) {
    Close(kCloseGoingAway, "server shutting down");
    return;
  }
  DoRead();
}

void PlainWsSession::DoRead() {
  if (reading_ || ended_ || !accepted_) return;
  if (read_paused_ && !closing_) return;
  reading_ = true;
  socket_.async_wait(
      net::ip::tcp::socket::wait_read,
      net::bind_allocator(ExactAllocator<void>(), [self = shared_from_this()](error_code ec) {
        Held held(self.get());
        self->OnReadable(ec);
      }));
}

void PlainWsSession::OnReadable(error_code ec) {
  reading_ = false;
  if (ended_) return;
  if (ec) {
    if (ec != net::error::operation_aborted) {
      spdlog::debug("{}: wait: {}", logic_.connection_id(), ec.message());
    }
    End();
    return;
  }
  char* scratch = Scratch();
  const size_t n = socket_.read_some(net::buffer(scratch, kScratchBytes), ec);
  if (ec == net::error::would_block || ec == net::error::try_again) {
    DoRead();
    return;
  }
  if (ec) {
    // The peer hung up (after its close frame, or without one: 1006).
    if (ec != net::error::eof && ec != net::error::connection_reset) {
      spdlog::debug("{}: read: {}", logic_.connection_id(), ec.message());
    }
    End();
    return;
  }
  activity_ = true;
  if (HasPaused()) {
    // Bytes read before a pause come first (reads go on while closing).
    std::unique_ptr<std::string> bytes = TakePaused();
    bytes->append(scratch, n);
    Consume(bytes->data(), bytes->size());
    TrimRare();
  } else {
    Consume(scratch, n);
  }
  DoRead();
}

void PlainWsSession::Consume(char* data, size_t size) {
  size_t offset = 0;
  while (offset < size && !ended_) {
    if (read_paused_ && !closing_) {
      // The logic asked for no more frames for now: what is left waits.
      rare().paused = std::make_unique<std::string>(data + offset, size - offset);
      return;
    }
    size_t used = 0;
    const WsFrameParser::Event event = parser_.Next(data + offset, size - offset, &used);
    offset += used;
    switch (event.kind) {
      case WsFrameParser::Event::kNeedMore:
        break;
      case WsFrameParser::Event::kText:
      case WsFrameParser::Event::kBinary:
        if (closing_) break;  // after a close: dropped, as Beast does
        ++frames_in_;
        context_->metrics->FrameReceived();
        if (event.kind == WsFrameParser::Event::kText) {
          logic_.OnText(event.payload);
        } else {
          logic_.OnBinary();
        }
        break;
      case WsFrameParser::Event::kPing:
        if (closing_) break;
        // Only the latest ping needs its pong (RFC 6455 §5.5.3): a client
        // pinging without reading holds one payload here, not a queue.
        if (!HasPong()) rare().pong = std::make_unique<std::string>();
        rare_->pong->assign(event.payload);
        if (!writing_) WantWrite();
        break;
      case WsFrameParser::Event::kPong:
        break;
      case WsFrameParser::Event::kClose:
        OnPeerClose(event.code);
        break;
      case WsFrameParser::Event::kError:
        Fail(event.code, event.error);
        break;
    }
  }
}

void PlainWsSession::OnPeerClose(uint16_t code) {
  if (peer_close_code_ != 0) return;
  peer_close_code_ = code;
  if (close_sent_) {
    if (!writing_) End();  // our close frame is out: the handshake is complete
    return;                // else OnWrite ends it
  }
  if (!closing_) {
    // The peer's close: answered with its code (nothing if it sent none).
    closing_ = true;
    close_code_ = code;
    if (rare_ != nullptr) rare_->close_reason.clear();
    ArmTimer(context_->close_grace);
  }
  // Nothing queued will be read by a peer that is leaving.
  DropQueue();
  DropPong();
  TrimRare();
  if (!writing_) WantWrite();
}

void PlainWsSession::Fail(uint16_t code, const char* why) {
  spdlog::debug("{}: closing with {} ({})", logic_.connection_id(), code, why);
  drain_after_close_ = true;
  if (close_sent_) {
    if (!writing_) End();
    return;
  }
  if (!closing_) {
    closing_ = true;
    close_code_ = code;
    rare().close_reason = why;
    ArmTimer(context_->close_grace);
  }
  DropQueue();
  DropPong();
  if (!writing_) WantWrite();
}

void PlainWsSession::SetReadPaused(bool paused) {
  read_paused_ = paused;
  if (paused) {
    if (!ended_) rare().keep_alive_while_paused = shared_from_this();
    return;
  }
  // Reset last: it may hold the only reference, and what follows takes its own.
  auto keep = TakeKeepAlive();
  if (HasPaused()) {
    // Frames read before the pause: parsed on the strand's next turn, never
    // inside the logic call that resumed reading.
    PostHeld([](PlainWsSession& self) {
      if (self.ended_ || self.read_paused_ || !self.HasPaused()) return;
      std::unique_ptr<std::string> bytes = self.TakePaused();
      self.Consume(bytes->data(), bytes->size());
      self.TrimRare();
      self.DoRead();
    });
    return;
  }
  TrimRare();
  DoRead();
}

void PlainWsSession::SetExpiry(int64_t expires_at_ms) {
  // --on_token_expiry=keep: like API Gateway, the token only had to be good
  // at the handshake; the age limit still ends the connection.
  if (context_->keep_on_token_expiry) expires_at_ms = 0;
  expires_at_ms_ = expires_at_ms;
  ArmOpenTimer();
}

int64_t PlainWsSession::ExpiryDeadlineMs() const {
  return expires_at_ms_ == 0  ? age_limit_ms_
         : age_limit_ms_ == 0 ? expires_at_ms_
                              : std::min(expires_at_ms_, age_limit_ms_);
}

std::chrono::milliseconds PlainWsSession::IdleHalf() const {
  return std::chrono::milliseconds(int64_t{context_->logic.idle_timeout_s} * 500);
}

void PlainWsSession::ArmOpenTimer() {
  if (!accepted_ || closing_ || ended_) return;  // the timer is the handshake's or the grace's
  constexpr auto kNever = std::chrono::steady_clock::time_point::max();
  auto at = context_->logic.idle_timeout_s > 0 ? idle_check_at_ : kNever;
  if (const int64_t deadline_ms = ExpiryDeadlineMs(); deadline_ms != 0) {
    // Waits at most a day at a time (a far exp must not overflow the clock).
    constexpr int64_t kMaxWaitMs = 24 * 3600 * 1000;
    const int64_t left_ms = deadline_ms - context_->clock->NowMs();
    at = std::min(at, std::chrono::steady_clock::now() +
                          std::chrono::milliseconds(std::clamp<int64_t>(left_ms, 0, kMaxWaitMs)));
  }
  if (at == kNever) {
    timer_.cancel();
    return;
  }
  timer_.expires_at(at);
  timer_.async_wait(
      net::bind_allocator(ExactAllocator<void>(), [self = shared_from_this()](error_code ec) {
        Held held(self.get());
        self->OnTimer(ec);
      }));
}

void PlainWsSession::SendText(std::shared_ptr<const std::string> frame) {
  Enqueue({std::move(frame), 0, 0});
}

void PlainWsSession::SendStored(std::shared_ptr<const std::string> frame, int64_t from, int64_t to,
                                int64_t edge_received_us) {
  Enqueue({std::move(frame), from, to, edge_received_us});
}

void PlainWsSession::Enqueue(Outgoing out) {
  if (closing_ || ended_) return;
  if (queued_bytes_ + out.frame->size() > context_->max_outbound_bytes && queued_bytes_ > 0) {
    // The client is not reading fast enough; dropping it protects everyone else.
    Close(kCloseSlowConsumer, "slow consumer: outbound queue full");
    return;
  }
  queued_bytes_ += out.frame->size();
  queue_.push_back(std::move(out));
  if (!writing_ && accepted_) WantWrite();
}

void PlainWsSession::DropQueue() {
  while (!queue_.empty()) {
    queued_bytes_ -= queue_.back().frame->size();
    queue_.pop_back();
  }
}

void PlainWsSession::FlushWrites() {
  // A completion written here may queue more (the logic pushing the next
  // missed message): round again until nothing is asked or a write waits
  // for the socket.
  while (want_write_ && !writing_ && !ended_) {
    want_write_ = false;
    WriteBatchNow();
  }
}

void PlainWsSession::WriteBatchNow() {
  if (writing_ || ended_ || !accepted_ || close_sent_) return;
  if (batch_ == nullptr) batch_ = std::make_unique<WriteBatch>();
  WriteBatch& batch = *batch_;
  batch.bytes.clear();
  batch.frames.clear();
  batch.buffers.clear();
  batch.close = false;
  if (HasPong()) {
    AppendControlFrame(WsOpcode::kPong, *rare_->pong, batch.bytes);
    rare_->pong.reset();
    TrimRare();
  }
  if (ping_pending_) {
    AppendControlFrame(WsOpcode::kPing, "", batch.bytes);
    ping_pending_ = false;
  }
  const size_t control_end = batch.bytes.size();
  while (!queue_.empty() && batch.frames.size() < kMaxBatchFrames) {
    Outgoing& out = queue_.front();
    uint8_t header[kWsMaxServerHeader];
    const size_t n = EncodeServerHeader(WsOpcode::kText, out.frame->size(), header);
    batch.bytes.append(reinterpret_cast<const char*>(header), n);
    batch.frames.push_back(std::move(out));
    queue_.pop_front();
  }
  // A queued goodbye (e.g. the last error) goes out before the close frame.
  const size_t close_at = batch.bytes.size();
  if (closing_ && queue_.empty()) {
    if (close_code_ == kWsCloseNoStatus) {
      AppendControlFrame(WsOpcode::kClose, "", batch.bytes);  // echoes a close without a code
    } else {
      AppendCloseFrame(close_code_, rare_ != nullptr ? rare_->close_reason : "", batch.bytes);
    }
    batch.close = true;
    close_sent_ = true;
  }
  if (batch.bytes.empty() && batch.frames.empty()) return;
  // Only now are the bytes final: the buffers may point into them.
  const char* bytes = batch.bytes.data();
  if (control_end > 0) batch.buffers.emplace_back(bytes, control_end);
  size_t at = control_end;
  for (const Outgoing& out : batch.frames) {
    const size_t n = HeaderSize(out.frame->size());
    batch.buffers.emplace_back(bytes + at, n);
    at += n;
    if (!out.frame->empty()) batch.buffers.emplace_back(out.frame->data(), out.frame->size());
  }
  if (batch.close) batch.buffers.emplace_back(bytes + close_at, batch.bytes.size() - close_at);
  writing_ = true;
  // Most writes fit in the socket's buffer: written here, no reactor
  // operation and no handler. writev takes at most 64 buffers at a time;
  // what it leaves goes on asynchronously.
  error_code ec;
  size_t written = socket_.write_some(batch.buffers, ec);
  if (ec == net::error::would_block || ec == net::error::try_again) {
    ec = {};
    written = 0;
  }
  if (ec) {
    OnWrite(ec);
    return;
  }
  auto first = batch.buffers.begin();
  while (first != batch.buffers.end() && written >= first->size()) {
    written -= first->size();
    ++first;
  }
  if (first == batch.buffers.end()) {
    OnWrite(ec);
    return;
  }
  *first += written;
  batch.buffers.erase(batch.buffers.begin(), first);
  net::async_write(socket_, batch.buffers, [self = shared_from_this()](error_code ec, size_t) {
    Held held(self.get());
    self->OnWrite(ec);
  });
}

void PlainWsSession::OnWrite(error_code ec) {
  writing_ = false;
  WriteBatch& batch = *batch_;
  for (const Outgoing& out : batch.frames) queued_bytes_ -= out.frame->size();
  if (ec) {
    spdlog::debug("{}: write: {}", logic_.connection_id(), ec.message());
    End();
    return;
  }
  const bool close = batch.close;
  std::vector<Outgoing> frames = std::move(batch.frames);
  for (const Outgoing& out : frames) {
    ++frames_out_;
    context_->metrics->FrameSent();
    if (out.edge_received_us > 0) context_->metrics->DeliveryWritten(out.edge_received_us);
    // Written to the socket: only now has the message reached the user.
    if (out.to > 0) logic_.OnWritten(out.from, out.to);
    if (ended_) return;
  }
  frames.clear();
  if (close) {
    batch_.reset();
    if (drain_after_close_) {
      // After a protocol error: FIN, then whatever the peer still sends is
      // read and dropped until it hangs up (closing with unread bytes would
      // reset the connection, and the close frame could be lost with it).
      socket_.shutdown(net::ip::tcp::socket::shutdown_send, ec);
      DoRead();
    } else if (peer_close_code_ != 0) {
      End();  // both close frames are out: done
    } else {
      DoRead();  // waits for the peer's close frame, within the grace
    }
    return;
  }
  if (!queue_.empty() || HasPong() || ping_pending_ || (closing_ && !close_sent_)) {
    batch_->frames = std::move(frames);  // keeps the vector's room for the next write
    WantWrite();
    return;
  }
  // Idle: nothing held for writing. An emptied Fifo keeps its vector's
  // room for the next frames; an idle connection gives it back.
  batch_.reset();
  queue_ = Fifo<Outgoing>();
  if (!closing_) logic_.OnQueueEmpty();
}

void PlainWsSession::Close(uint16_t code, std::string reason) {
  if (closing_ || ended_) return;
  spdlog::debug("{}: closing with {} ({})", logic_.connection_id(), code, reason);
  closing_ = true;
  close_code_ = code;
  rare().close_reason = std::move(reason);
  if (code == kCloseSlowConsumer) {
    context_->metrics->SlowConsumerClose();
    // Nothing queued will reach a client that does not read.
    DropQueue();
  }
  ArmTimer(context_->close_grace);
  if (!accepted_) return;  // OnAccept will see closing_
  // Reads go on: the peer's close frame ends the handshake.
  DoRead();
  if (!writing_) WantWrite();
}

void PlainWsSession::ArmTimer(std::chrono::steady_clock::duration after) {
  timer_.expires_after(after);
  timer_.async_wait(
      net::bind_allocator(ExactAllocator<void>(), [self = shared_from_this()](error_code ec) {
        Held held(self.get());
        self->OnTimer(ec);
      }));
}

void PlainWsSession::OnTimer(error_code ec) {
  if (ec || ended_) return;  // re-armed or cancelled meanwhile
  const auto now = std::chrono::steady_clock::now();
  // A wait that completed just before the timer was moved: the new one will come.
  if (timer_.expiry() > now) return;
  if (!accepted_ || closing_) {
    // The handshake or the close grace ran out: cut.
    error_code ignored;
    socket_.close(ignored);  // the pending wait or write fails and ends the session
    return;
  }
  if (const int64_t deadline_ms = ExpiryDeadlineMs(); deadline_ms != 0) {
    const int64_t now_ms = context_->clock->NowMs();
    if (now_ms >= deadline_ms) {
      if (expires_at_ms_ != 0 && now_ms >= expires_at_ms_) {
        Close(kClosePolicy, "token expired");
      } else {
        // Going away, not a policy violation: the client did nothing wrong
        // and should reconnect (as after API Gateway's 2-hour limit).
        Close(kCloseGoingAway, "connection age limit reached");
      }
      return;
    }
  }
  if (context_->logic.idle_timeout_s > 0 && now >= idle_check_at_) {
    // The idle check, every half idle timeout (Beast's keep-alive pings): a
    // silent half gets a ping, a second silent half ends the connection.
    if (activity_ || read_paused_) {
      activity_ = false;
      idle_pinged_ = false;
    } else if (!idle_pinged_) {
      idle_pinged_ = true;
      ping_pending_ = true;
      if (!writing_) WantWrite();
    } else {
      spdlog::debug("{}: idle timeout", logic_.connection_id());
      End();
      return;
    }
    idle_check_at_ = now + IdleHalf();
  }
  ArmOpenTimer();
}

void PlainWsSession::End() {
  if (ended_) return;
  if (accepted_) {
    // The code this edge sent, else the peer's, else 1006: no close frame.
    const uint16_t code = closing_ ? close_code_ : peer_close_code_ != 0 ? peer_close_code_ : 1006;
    record_.Closed(*context_, logic_, code, frames_in_, frames_out_);
  }
  ended_ = true;
  closing_ = true;
  spdlog::debug("{}: closed", logic_.connection_id());
  timer_.cancel();
  auto keep = TakeKeepAlive();  // released when End returns
  rare_.reset();
  error_code ignored;
  socket_.close(ignored);
  SessionRecord::Release(*context_, logic_);
}

void PlainWsSession::Post(std::function<void()> fn) {
  PostHeld([fn = std::move(fn)](PlainWsSession&) { fn(); });
}

void PlainWsSession::RunOrPost(std::function<void()> fn) {
  RunInOrder([fn = std::move(fn)](PlainWsSession&) { fn(); });
}

void PlainWsSession::Deliver(std::shared_ptr<const std::string> frame) {
  RunInOrder([frame = std::move(frame)](PlainWsSession& self) mutable {
    self.SendText(std::move(frame));
  });
}

void PlainWsSession::DeliverStored(std::shared_ptr<const std::string> frame, int64_t useq,
                                   bool own_copy, int64_t edge_received_us) {
  RunInOrder(
      [frame = std::move(frame), useq, own_copy, edge_received_us](PlainWsSession& self) mutable {
        if (!self.ended_) self.logic_.OnStored(std::move(frame), useq, own_copy, edge_received_us);
      });
}

void PlainWsSession::DeliverReceipt(std::shared_ptr<const std::string> frame) {
  RunInOrder([frame = std::move(frame)](PlainWsSession& self) mutable {
    if (!self.ended_) self.logic_.OnReceipt(std::move(frame));
  });
}

void PlainWsSession::WriteDeferred() {
  // Busy: the thread inside writes everything when it leaves.
  if (TryEnter()) {
    Held held(this, std::adopt_lock);  // the batch is closed: this one flushes
  }
}

void PlainWsSession::Reattach() {
  PostHeld([](PlainWsSession& self) {
    if (!self.ended_) self.logic_.Reattach();
  });
}

void PlainWsSession::Kick(uint16_t close_code, std::string reason) {
  PostHeld([close_code, reason = std::move(reason)](PlainWsSession& self) mutable {
    self.Close(close_code, std::move(reason));
  });
}

}  // namespace chat::edge
