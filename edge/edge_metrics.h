#ifndef CHAT_EDGE_EDGE_METRICS_H_
#define CHAT_EDGE_EDGE_METRICS_H_

#include <array>
#include <chrono>
#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace chat::edge {

// The wall clock in Unix microseconds: when an edge read a send, and when
// the recipient's edge wrote it (the two may be different machines).
inline int64_t WallMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// What became of a `send` frame.
enum class SendOutcome {
  kOk,
  kUnknownUser,
  kRecipientOffline,  // no longer produced; its series stays exported (at 0)
  kBadRequest,
  kForbidden,
  kRateLimited,
  kUnavailable,
  kCount,
};

// The label of a send message-service answered (or the link failed): `ok`,
// else the protocol error the client gets for it (SendErrorCode).
SendOutcome OutcomeOf(const absl::Status& status);

// The edge's own metrics (chat_edge_*). Every child is created here, once;
// the hot path only increments atomics through the references kept below.
// Thread-safe.
class EdgeMetrics {
 public:
  explicit EdgeMetrics(prometheus::Registry& registry);

  void ConnectionOpened() {
    opened_.Increment();
    open_.Increment();
  }
  // `code` is the close code sent or received; 1006 when the connection
  // ended without a close frame.
  void ConnectionClosed(uint16_t code);
  // A WebSocket upgrade answered with HTTP `status` (400, 401, 403, 503...).
  void HandshakeRefused(int status);
  void FrameReceived() { frames_in_.Increment(); }
  void FrameSent() { frames_out_.Increment(); }
  void Send(SendOutcome outcome) { sends_[static_cast<size_t>(outcome)]->Increment(); }
  // A delivery frame was written to the recipient's socket; `edge_received_us`
  // is when the sender's edge read the send (Unix µs; 0 = unknown).
  void DeliveryWritten(int64_t edge_received_us) {
    if (edge_received_us <= 0) return;
    const int64_t now_us = WallMicros();
    // Two machines' clocks may disagree by a little: never negative.
    delivery_latency_.Observe(now_us > edge_received_us ? (now_us - edge_received_us) / 1e6 : 0);
  }
  void RateLimitClose() { rate_limit_closes_.Increment(); }
  void SlowConsumerClose() { slow_consumer_closes_.Increment(); }
  // A message-service link (EdgeLink) came up; `reconnect`: not its first time.
  void LinkUp(bool reconnect) {
    links_up_.Increment();
    if (reconnect) link_reconnects_.Increment();
  }
  void LinkDown() { links_up_.Decrement(); }
  // Sampled when /metrics is served.
  void SetBackendsReady(bool connection_service, bool message_service) {
    connection_service_ready_->Set(connection_service ? 1 : 0);
    message_service_ready_->Set(message_service ? 1 : 0);
  }

 private:
  prometheus::Gauge& open_;
  prometheus::Counter& opened_;
  // Close codes the edge sends or commonly receives; the rest count as "other".
  static constexpr std::array<uint16_t, 12> kCloseCodes = {1000, 1001, 1002, 1003, 1005, 1006,
                                                           1007, 1008, 1009, 1011, 1013, 4008};
  std::array<prometheus::Counter*, kCloseCodes.size()> closed_;
  prometheus::Counter* closed_other_;
  static constexpr std::array<int, 6> kRefuseStatuses = {400, 401, 403, 429, 431, 503};
  std::array<prometheus::Counter*, kRefuseStatuses.size()> refused_;
  prometheus::Counter* refused_other_;
  prometheus::Counter& frames_in_;
  prometheus::Counter& frames_out_;
  std::array<prometheus::Counter*, static_cast<size_t>(SendOutcome::kCount)> sends_;
  prometheus::Histogram& delivery_latency_;
  prometheus::Counter& rate_limit_closes_;
  prometheus::Counter& slow_consumer_closes_;
  prometheus::Gauge& links_up_;
  prometheus::Counter& link_reconnects_;
  prometheus::Gauge* connection_service_ready_;
  prometheus::Gauge* message_service_ready_;
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_EDGE_METRICS_H_
