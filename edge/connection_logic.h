#ifndef CHAT_EDGE_CONNECTION_LOGIC_H_
#define CHAT_EDGE_CONNECTION_LOGIC_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "edge/backends.h"
#include "edge/limits.h"
#include "edge/local_hub.h"
#include "edge/protocol.h"

namespace chat::edge {

// Close codes of docs/protocol.md §4.
inline constexpr uint16_t kCloseNormal = 1000;
inline constexpr uint16_t kCloseGoingAway = 1001;
inline constexpr uint16_t kClosePolicy = 1008;
inline constexpr uint16_t kCloseTooBig = 1009;
inline constexpr uint16_t kCloseInternal = 1011;
inline constexpr uint16_t kCloseTryAgain = 1013;
inline constexpr uint16_t kCloseSlowConsumer = 4008;

struct LogicConfig {
  std::string server_id;
  size_t max_message_bytes = 128 * 1024;
  int messages_per_second = 50;
  int rate_burst = 50;
  int idle_timeout_s = 600;
  int bad_frames_max = 10;
  int64_t bad_frames_window_ms = 60000;
  int max_inflight_sends = 256;
  // Frames refused as rate_limited beyond this many within the window close
  // the connection with 1008: it was told and kept going.
  int rate_limit_strikes = 50;
  int64_t rate_limit_window_ms = 10000;
};

// The connection as the logic sees it. Implemented by the WebSocket session;
// every method is called on (and only valid from) the session's strand.
class ClientSink {
 public:
  virtual ~ClientSink() = default;
  virtual void SendText(std::shared_ptr<const std::string> frame) = 0;
  virtual void Close(uint16_t code, std::string reason) = 0;
  // Runs `fn` on the strand later; the connection stays alive until then.
  virtual void Post(std::function<void()> fn) = 0;
  // For answers that may outlive the connection: lock it, and Post only if
  // it is still there.
  virtual std::weak_ptr<ClientSink> WeakSelf() = 0;
  virtual void SetReadPaused(bool paused) = 0;
  // jwt mode: close with 1008 at this time (Unix ms) unless moved again.
  virtual void SetExpiry(int64_t expires_at_ms) = 0;
};

// Protocol v1 for one connection: validates frames, applies limits, turns
// actions into backend calls and backend answers into frames. No sockets, no
// gRPC: a test drives it with fakes.
class ConnectionLogic {
 public:
  ConnectionLogic(std::string user, std::string connection_id, const LogicConfig* config,
                  MessageBackend* messages, DirectoryBackend* directory, LocalHub* hub,
                  ClientSink* sink, const Clock* clock, TokenVerifier* tokens = nullptr);

  std::string HelloFrame() const;
  void OnText(std::string_view text);
  void OnBinary();
  void OnClosed();

  const std::string& user() const { return user_; }
  // jwt mode: the token's `sub`. A refresh token of the same subject renews
  // the connection even when its user claim is not the connection's name
  // (a name resolved from the user's profile).
  void set_subject(std::string subject) { subject_ = std::move(subject); }
  const std::string& connection_id() const { return connection_id_; }

 private:
  void Send(std::string frame);
  void SendError(ErrorCode code, std::string_view message, const RequestId& request_id);
  void CountBadFrame();
  void HandleSend(SendAction action, RequestId request_id);
  void HandleUsers(const UsersAction& action, RequestId request_id);
  void HandleWatch(WatchAction action, RequestId request_id);
  void HandleRefresh(RefreshAction action, RequestId request_id);
  void OnSendResult(const SendResult& result, const RequestId& request_id, bool counted);

  const std::string user_;
  std::string subject_;
  const std::string connection_id_;
  const LogicConfig* config_;
  MessageBackend* messages_;
  DirectoryBackend* directory_;
  LocalHub* hub_;
  ClientSink* sink_;
  const Clock* clock_;
  TokenVerifier* tokens_;  // null in name mode: `refresh` is unknown there
  TokenBucket rate_;
  WindowCounter bad_frames_;
  WindowCounter rate_strikes_;
  // Sends awaiting their result. Results that need no frame (no request_id,
  // delivered) are counted down on the backend's thread without a hop to the
  // connection's strand; `read_paused_` is read there to know when a hop is
  // needed after all (to resume reading).
  std::atomic<int> inflight_sends_{0};
  std::atomic<bool> read_paused_{false};
  bool closed_ = false;
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_CONNECTION_LOGIC_H_
