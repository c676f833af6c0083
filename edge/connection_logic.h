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
#include "edge/edge_metrics.h"
#include "edge/fifo.h"
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
inline constexpr uint16_t kCloseServiceRestart = 1012;
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
  EdgeMetrics* metrics = nullptr;  // set: sends and rate-limit closes are counted
  // Live frames held behind pushes of missed messages; beyond it the
  // connection is closed as a slow consumer (4008).
  size_t max_held_bytes = 4 << 20;
  int push_page_limit = 100;  // messages per page of missed messages
};

// The connection as the logic sees it. Implemented by the WebSocket session;
// every method is called on (and only valid from) the session's strand.
class ClientSink {
 public:
  virtual ~ClientSink() = default;
  virtual void SendText(std::shared_ptr<const std::string> frame) = 0;
  // A frame carrying useq from..to of the user's stream: once it is written
  // to the socket the sink calls ConnectionLogic::OnWritten(from, to).
  // `edge_received_us` (0: none): a live delivery, timed until written.
  virtual void SendStored(std::shared_ptr<const std::string> frame, int64_t from, int64_t to,
                          int64_t edge_received_us) = 0;
  // Bytes queued for the socket and not yet written.
  virtual size_t QueuedBytes() const = 0;
  virtual void Close(uint16_t code, std::string reason) = 0;
  // Runs `fn` on the strand later; the connection stays alive until then.
  virtual void Post(std::function<void()> fn) = 0;
  // Runs `fn` as if on the strand: now, on the calling thread, when the
  // connection is not busy on another thread and this thread is inside no
  // connection; else later, as Post. For answers arriving on a backend's
  // thread (a send's result): the write to the client needs no hand-off.
  // The caller holds no lock that the logic may take.
  virtual void RunOrPost(std::function<void()> fn) { Post(std::move(fn)); }
  // For answers that may outlive the connection: lock it, and Post only if
  // it is still there.
  virtual std::weak_ptr<ClientSink> WeakSelf() = 0;
  virtual void SetReadPaused(bool paused) = 0;
  // jwt mode: close with 1008 at this time (Unix ms) unless moved again.
  virtual void SetExpiry(int64_t expires_at_ms) = 0;
};

// The protocol for one connection: validates frames, applies limits, turns
// actions into backend calls and backend answers into frames; attaches the
// connection to message-service before its hello and pushes what the user
// missed. No sockets, no gRPC: a test drives it with fakes.
class ConnectionLogic {
 public:
  ConnectionLogic(std::string user, std::string connection_id, const LogicConfig* config,
                  MessageBackend* messages, DirectoryBackend* directory, LocalHub* hub,
                  ClientSink* sink, const Clock* clock, TokenVerifier* tokens = nullptr);

  // The upgrade is done: attach, then hello, then what the user missed.
  void Start();
  void OnText(std::string_view text);
  void OnBinary();
  void OnClosed();
  // From the connection (see LocalConnection).
  void OnStored(std::shared_ptr<const std::string> frame, int64_t useq, bool own_copy,
                int64_t edge_received_us = 0);
  void OnReceipt(std::shared_ptr<const std::string> frame);
  void Reattach();
  // The sink wrote frames carrying useq from..to; and its queue ran empty.
  void OnWritten(int64_t from, int64_t to);
  void OnQueueEmpty();

  const std::string& user() const { return user_; }
  // jwt mode: the token's `sub`. A refresh token of the same subject renews
  // the connection even when its user claim is not the connection's name
  // (a name resolved from the user's profile).
  void set_subject(std::string subject);
  const std::string& connection_id() const { return connection_id_; }
  ~ConnectionLogic();

 private:
  void Send(std::string frame);
  void SendError(ErrorCode code, std::string_view message, const RequestId& request_id);
  void CountBadFrame();
  bool TakeRateToken(int64_t now_ms);
  void HandleSend(SendAction action, RequestId request_id);
  void HandleUsers(const UsersAction& action, RequestId request_id);
  void HandleWatch(WatchAction action, RequestId request_id);
  void HandleRefresh(RefreshAction action, RequestId request_id);
  void HandleSync(const SyncAction& action, RequestId request_id);
  void HandleHistory(const HistoryAction& action, RequestId request_id);
  void HandleConversations(const ConversationsAction& action, RequestId request_id);
  void HandleRead(const ReadAction& action, RequestId request_id);
  // Runs `fn` on the strand with the answer, if the connection still exists
  // (for message-service answers only: run at once when the sink allows,
  // see ClientSink::RunOrPost).
  template <typename T, typename Fn>
  Done<T> OnStrand(Fn fn);
  void SendStoreError(const absl::Status& status, const RequestId& request_id);
  void Attach(int64_t after_useq);
  void OnAttached(absl::StatusOr<AttachInfo> info, int64_t after_useq);
  // Catching up: pages of what the connection missed, written before any
  // live frame; the next page is asked for when the socket's queue is empty.
  void BeginCatchUp(bool unread_only, int64_t after);
  void FetchPage();
  void OnPage(absl::StatusOr<SyncReply> page);
  void PumpCatchUp();
  void EndCatchUp();
  void OnSendResult(const SendResult& result, const RequestId& request_id, bool counted);

  // State of a connection that did something unusual (sent messages, broke
  // the rules, carries a token subject other than its name): made on first
  // use, so that tens of thousands of idle connections do not carry it.
  struct Rare;
  Rare& rare();
  // Pages of missed messages being pushed: only while catching up.
  struct CatchUp;

  const std::string user_;
  const std::string connection_id_;
  const LogicConfig* config_;
  MessageBackend* messages_;
  DirectoryBackend* directory_;
  LocalHub* hub_;
  ClientSink* sink_;
  const Clock* clock_;
  TokenVerifier* tokens_;  // null in name mode: `refresh` is unknown there
  // A token bucket (TokenBucket's arithmetic) whose rate and burst are read
  // from the config: two fields, not four, per connection.
  double rate_tokens_;
  int64_t rate_last_ms_;
  std::unique_ptr<Rare> rare_;
  std::unique_ptr<CatchUp> catch_up_;  // set while catching up
  // The epoch the client was told (null: none yet); the process keeps one
  // copy of each epoch it saw, for every connection.
  const std::string* epoch_ = nullptr;
  int64_t seen_useq_ = -1;  // highest useq written (or the stream's end at attach); -1: none
  // Sends awaiting their result. Results that need no frame (no request_id,
  // delivered) are counted down on the backend's thread without a hop to the
  // connection's strand; `read_paused_` is read there to know when a hop is
  // needed after all (to resume reading).
  std::atomic<int> inflight_sends_{0};
  std::atomic<bool> read_paused_{false};
  bool closed_ = false;

  // Protocol version 2 (strand only).
  bool hello_sent_ = false;
  bool v2_ = false;  // its first sync was accepted
  bool attach_pending_ = false;
  // A link came up or went down while an attach was under way: the attach
  // may have missed a replica, so it is done again once answered.
  bool reattach_again_ = false;
  bool attached_ = false;  // message-service knows this connection
  // jwt mode: the token's subject is the connection's name (else, if any,
  // it is in rare_).
  bool subject_is_user_ = false;
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_CONNECTION_LOGIC_H_
