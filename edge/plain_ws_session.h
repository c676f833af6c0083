#ifndef CHAT_EDGE_PLAIN_WS_SESSION_H_
#define CHAT_EDGE_PLAIN_WS_SESSION_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "boost/asio/buffer.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/beast/http/empty_body.hpp"
#include "boost/beast/http/message.hpp"
#include "edge/connection_logic.h"
#include "edge/edge_context.h"
#include "edge/fifo.h"
#include "edge/session_record.h"
#include "edge/transport.h"
#include "edge/ws_codec.h"

namespace chat::edge {

// One WebSocket connection on a plain TCP socket, framed by ws_codec.h
// instead of Beast's websocket::stream (TLS connections keep WsSession). The
// same contract as WsSession: its strand (the socket's executor), a bounded
// outbound queue (bytes), the close handshake within the close grace, the
// idle timeout with keep-alive pings, token expiry and the age limit.
//
// What it holds while idle is the point: no read buffer and no pending read
// operation. It waits for the socket to become readable (async_wait), then
// reads what is there into a scratch buffer of the thread and feeds the
// parser, which copies only a frame or message split across reads. Writes
// are gather writes (header, shared payload) of every queued frame at once,
// tried at once on the calling thread (the socket is non-blocking); only
// what the socket does not take waits for an asynchronous write.
//
// Threads: the strand serialises the handlers, and each handler also holds
// the session's mutex. The mutex lets a backend's thread (the gRPC loop
// delivering a message or a send's result) run the session's code itself
// when no other thread is in it (TryEnter), instead of posting to the
// strand and waking an I/O thread; when it is busy, the work is posted.
class PlainWsSession final : public std::enable_shared_from_this<PlainWsSession>,
                             public ClientSink,
                             public LocalConnection,
                             public DeferredWrite {
 public:
  PlainWsSession(PlainSocket socket, EdgeContext* context, Identity identity,
                 std::string connection_id, bool answer_authorization);
  ~PlainWsSession() override;

  // Answers `request` (101, or 400/426 if it is not a valid WebSocket
  // handshake), then sends hello and reads.
  void Run(const boost::beast::http::request<boost::beast::http::empty_body>& request);

  // ClientSink (on the strand).
  void SendText(std::shared_ptr<const std::string> frame) override;
  void SendStored(std::shared_ptr<const std::string> frame, int64_t from, int64_t to,
                  int64_t edge_received_us) override;
  size_t QueuedBytes() const override { return queued_bytes_; }
  void Close(uint16_t code, std::string reason) override;
  void Post(std::function<void()> fn) override;
  std::weak_ptr<ClientSink> WeakSelf() override { return shared_from_this(); }
  void SetReadPaused(bool paused) override;
  void SetExpiry(int64_t expires_at_ms) override;
  void RunOrPost(std::function<void()> fn) override;

  // LocalConnection (any thread).
  void Deliver(std::shared_ptr<const std::string> frame) override;
  void DeliverStored(std::shared_ptr<const std::string> frame, int64_t useq, bool own_copy,
                     int64_t edge_received_us) override;
  void DeliverReceipt(std::shared_ptr<const std::string> frame) override;
  void Reattach() override;
  void Kick(uint16_t close_code, std::string reason) override;
  // DeferredWrite: the DeliveryBatch this session's inline runs were part of
  // closed; writes what they queued.
  void WriteDeferred() override;

 private:
  struct Outgoing {
    std::shared_ptr<const std::string> frame;
    int64_t from = 0;  // useqs of the user's stream it carries (0: none)
    int64_t to = 0;
    int64_t edge_received_us = 0;  // a live delivery: its latency is observed once written
  };
  // The write in flight: control frames and data frame headers in `bytes`,
  // the frames whose payloads it shares, and the gather list over both.
  struct WriteBatch {
    std::string bytes;
    std::vector<Outgoing> frames;
    std::vector<boost::asio::const_buffer> buffers;
    bool close = false;  // ends with the close frame
  };

  // The socket and timer name their executor's type: any_io_executor would
  // make each 32 bytes larger, and every pending operation too.
  using Strand = PlainStrand;
  using Socket = PlainSocket;
  using Timer = boost::asio::basic_waitable_timer<
      std::chrono::steady_clock, boost::asio::wait_traits<std::chrono::steady_clock>, Strand>;
  // Holds the session's mutex for a handler or an inline run.
  class Held;
  // Enters the session on this thread unless another thread is in it or this
  // thread is already inside a session (never waits; never nests).
  bool TryEnter();
  // Runs `fn` holding the session: inline when TryEnter succeeds and no
  // earlier work of this kind is still posted (so a frame never overtakes
  // one posted before it), else posted behind that work.
  template <typename Fn>
  void RunInOrder(Fn fn);
  // Posts `fn` to the strand, run holding the session.
  template <typename Fn>
  void PostHeld(Fn fn);
  // The earlier of the token's expiry and the age limit (Unix ms); 0: none.
  int64_t ExpiryDeadlineMs() const;

  void OnHandshakeWritten(bool accepted, boost::system::error_code ec);
  void OnAccept();
  void DoRead();
  void OnReadable(boost::system::error_code ec);
  // Parses data[0..size) (writable scratch) and acts on each event.
  void Consume(char* data, size_t size);
  void OnPeerClose(uint16_t code);
  // The peer broke the protocol: close with `code` (1002, 1007, 1009), then
  // half-close and drop what it still sends until it hangs up.
  void Fail(uint16_t code, const char* why);
  void Enqueue(Outgoing out);
  // Drops queued data frames (not the write in flight).
  void DropQueue();
  // Asks for a write of what is queued: made when the handler (or inline
  // run) that asked ends (FlushWrites, from Held), so that every frame it
  // queued goes out in one write and no write completes inside a call into
  // the logic.
  void WantWrite() { want_write_ = true; }
  void FlushWrites();
  // One batch: written now as far as the socket takes it, the rest async.
  void WriteBatchNow();
  void OnWrite(boost::system::error_code ec);
  // Handshake and close grace: a plain deadline.
  void ArmTimer(std::chrono::steady_clock::duration after);
  // While open: the next idle check or the expiry, whichever comes first.
  void ArmOpenTimer();
  std::chrono::milliseconds IdleHalf() const;
  void OnTimer(boost::system::error_code ec);
  void End();

  // What few connections hold at any time, made on first use and dropped
  // when empty again, so that an idle session stays one 640-byte block
  // (jemalloc's class, with make_shared's control block).
  struct Rare {
    std::unique_ptr<std::string> pong;    // the last ping's payload, not yet answered
    std::unique_ptr<std::string> paused;  // bytes read before reads were paused, not yet parsed
    // While reads are paused no operation holds the session; this does,
    // until reads resume or the connection ends.
    std::shared_ptr<PlainWsSession> keep_alive_while_paused;
    std::string close_reason;  // of the close frame this edge sends
    bool Empty() const {
      return pong == nullptr && paused == nullptr && keep_alive_while_paused == nullptr &&
             close_reason.empty();
    }
  };
  Rare& rare() {
    if (rare_ == nullptr) rare_ = std::make_unique<Rare>();
    return *rare_;
  }
  // Frees rare_ once nothing is left in it.
  void TrimRare() {
    if (rare_ != nullptr && rare_->Empty()) rare_.reset();
  }
  bool HasPong() const { return rare_ != nullptr && rare_->pong != nullptr; }
  bool HasPaused() const { return rare_ != nullptr && rare_->paused != nullptr; }
  void DropPong() {
    if (rare_ != nullptr) rare_->pong.reset();
  }
  // The session's own reference while reads are paused, moved out.
  std::shared_ptr<PlainWsSession> TakeKeepAlive() {
    return rare_ != nullptr ? std::move(rare_->keep_alive_while_paused) : nullptr;
  }
  // Bytes read before a pause, moved out (null if none).
  std::unique_ptr<std::string> TakePaused() {
    return rare_ != nullptr ? std::move(rare_->paused) : nullptr;
  }

  absl::Mutex mu_;
  Socket socket_;
  // Handshake deadline; then the idle check (every half idle timeout) or
  // the token expiry / age limit, whichever is first; then the close grace.
  // One timer (and one pending wait) per connection: what it means follows
  // the connection's state.
  Timer timer_;
  std::chrono::steady_clock::time_point idle_check_at_;
  EdgeContext* context_;
  ConnectionLogic logic_;
  WsFrameParser parser_;
  Fifo<Outgoing> queue_;
  size_t queued_bytes_ = 0;
  std::unique_ptr<WriteBatch> batch_;  // set while a write is in flight
  std::unique_ptr<Rare> rare_;
  int64_t expires_at_ms_ = 0;  // the token's, with skew; 0: none (or kept past it)
  int64_t age_limit_ms_ = 0;   // --max_connection_age_s from the upgrade; 0: none
  // The open and close bookkeeping, shared with WsSession (session_record.h);
  // the frame counts are for its close line.
  SessionRecord record_;
  uint32_t frames_in_ = 0;
  uint32_t frames_out_ = 0;
  // RunInOrder's work posted and not yet run (written by any thread).
  std::atomic<int32_t> ordered_posts_{0};
  uint16_t close_code_ = kCloseNormal;
  uint16_t peer_close_code_ = 0;  // 0: no close frame came
  const bool answer_authorization_;
  bool accepted_ = false;
  bool writing_ = false;
  bool want_write_ = false;  // WantWrite since the last FlushWrites
  bool deferred_ = false;    // in the open DeliveryBatch's list
  bool reading_ = false;
  bool read_paused_ = false;
  bool closing_ = false;     // Close() called (or a close frame or error came): no more frames
  bool close_sent_ = false;  // the close frame is written or in the write in flight
  bool drain_after_close_ = false;  // a protocol error: half-close after the close frame
  bool ended_ = false;
  bool activity_ = false;     // bytes came since the last idle check
  bool idle_pinged_ = false;  // a keep-alive ping went out after a silent half timeout
  bool ping_pending_ = false;
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_PLAIN_WS_SESSION_H_
