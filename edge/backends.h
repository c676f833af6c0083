#ifndef CHAT_EDGE_BACKENDS_H_
#define CHAT_EDGE_BACKENDS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "edge/stored.h"

// What the edge needs from the services behind it, as interfaces that tests
// replace. Callbacks may run on any thread, and may run before the call
// returns.
namespace chat::edge {

struct OutgoingSend {
  std::string sent_by;
  std::string send_to;
  std::string message;
  std::string from_connection_id;
  std::string idempotency_key;  // empty: none
  int64_t received_us = 0;      // when the edge read the frame (Unix µs)
};

// message-service's answer to an attach: the store's epoch and where the
// user's stream stands.
struct AttachInfo {
  std::string epoch;
  int64_t last_useq = 0;
  int64_t reached_useq = 0;
};

template <typename T>
using Done = std::function<void(absl::StatusOr<T>)>;

class MessageBackend {
 public:
  virtual ~MessageBackend() = default;
  virtual void Send(OutgoingSend send, std::function<void(const SendResult&)> done) = 0;
  virtual bool Ready() const = 0;

  // A connection is live here: every message committed for its user from now
  // on is delivered to it. `after_useq`: -1 for a new connection, else the
  // highest useq already written to it (re-attaching after a link reset).
  virtual void Attach(const std::string& connection_id, const std::string& user, int64_t after_useq,
                      Done<AttachInfo> done) = 0;
  virtual void Detach(const std::string& connection_id) = 0;
  // useq from..to of `user`'s stream were written to one of their sockets.
  virtual void Reached(const std::string& user, int64_t from, int64_t to) = 0;

  // Store reads (protocol version 2). Errors: INVALID_ARGUMENT, NOT_FOUND
  // (unknown `with`), UNAVAILABLE.
  virtual void Sync(const std::string& user, int64_t since, int limit, const std::string& epoch,
                    Done<SyncReply> done) = 0;
  // Messages to `user` past `after` not covered by a read mark (pushes).
  virtual void Unread(const std::string& user, int64_t after, int limit, Done<SyncReply> done) = 0;
  virtual void History(const std::string& user, const std::string& with, int64_t before, int limit,
                       Done<HistoryReply> done) = 0;
  virtual void Conversations(const std::string& user, int limit, const std::string& after,
                             Done<ConversationsReply> done) = 0;
  virtual void MarkRead(const std::string& user, const std::string& with, int64_t seq,
                        Done<ReadReply> done) = 0;
};

struct UserPage {
  struct Entry {
    std::string name;
    bool online;
  };
  std::vector<Entry> users;
  std::string next;
};

struct NewConnection {
  std::string connection_id;
  std::string user;
  int64_t connected_at_ms = 0;
  std::string user_agent;
  std::string ip;
};

class DirectoryBackend {
 public:
  virtual ~DirectoryBackend() = default;
  virtual void ListUsers(bool online_only, int limit, const std::string& after,
                         std::function<void(absl::StatusOr<UserPage>)> done) = 0;
  // Registration completes before the connection's hello is sent.
  virtual void Register(NewConnection connection, std::function<void(absl::Status)> done) = 0;
  virtual void Unregister(const std::string& connection_id) = 0;
  virtual bool Ready() const = 0;
  // Until when (Unix ms) `user` is banned (operator Disconnect with a ban);
  // 0 or a past time: not banned. Handshakes of a banned user get 403.
  virtual int64_t BannedUntil(const std::string& /*user*/) const { return 0; }
};

struct Identity {
  std::string user;
  int64_t expires_at_s = 0;  // 0: never (name mode, or a token without exp)
  // jwt mode: the token's `sub` (empty when it has none); the owner of
  // `user` when names are claimed.
  std::string subject;
};

// When a connection with a token expiring at `expires_at_s` must close, in
// Unix ms (with `skew_s` of tolerance); 0 for never. An `exp` past the year
// 5000 (tokens meant never to expire say 9999-12-31) counts as never, which
// also keeps the arithmetic far from overflow.
inline int64_t ExpiryMs(int64_t expires_at_s, int64_t skew_s) {
  constexpr int64_t kNeverS = 100'000'000'000;
  if (expires_at_s <= 0 || expires_at_s >= kNeverS) return 0;
  return (expires_at_s + skew_s) * 1000;
}

// Who owns a user name: the first identity-provider subject bound to it.
// A display name is not an identity (users may edit it), so before a
// connection speaks as a name taken from a profile, the name is claimed.
// (The gRPC client is GrpcNameClaims in name_claims.h.)
class NameClaims {
 public:
  virtual ~NameClaims() = default;
  // done(true): `subject` owns `name` (now or already); done(false): another
  // subject does. An error: the owner could not be asked. `done` may run on
  // any thread.
  virtual void Claim(const std::string& name, const std::string& subject,
                     std::function<void(absl::StatusOr<bool>)> done) = 0;
};

// Checks a bearer token (jwt mode). The answer may come on another thread.
class TokenVerifier {
 public:
  virtual ~TokenVerifier() = default;
  virtual void Verify(std::string token, std::function<void(absl::StatusOr<Identity>)> done) = 0;
  // Seconds a token stays acceptable past its exp.
  virtual int64_t clock_skew_s() const = 0;
};

// A live local connection, as seen from outside its strand. Thread-safe.
class LocalConnection {
 public:
  virtual ~LocalConnection() = default;
  virtual void Deliver(std::shared_ptr<const std::string> frame) = 0;
  // A frame carrying message `useq` of this connection's user's stream;
  // `own_copy`: the user sent it from another connection. `edge_received_us`:
  // when the sender's edge read it (Unix µs, 0: unknown), for the delivery
  // latency measured when the frame is written.
  virtual void DeliverStored(std::shared_ptr<const std::string> frame, int64_t useq, bool own_copy,
                             int64_t edge_received_us) = 0;
  virtual void DeliverReceipt(std::shared_ptr<const std::string> frame) = 0;
  // The path to message-service came back: attach again and catch up.
  virtual void Reattach() = 0;
  virtual void Kick(uint16_t close_code, std::string reason) = 0;
};

// Writes that connections put off while a DeliveryBatch is open on their
// thread, each done once when it closes.
class DeferredWrite {
 public:
  virtual ~DeferredWrite() = default;
  virtual void WriteDeferred() = 0;
};

// Open on a backend's thread while it hands one batch (an EdgeDown's
// deliveries, receipts and answers) to connections: a connection that takes
// frames on this thread queues them and writes once when the batch closes,
// so many frames for one socket cost one write, not one each. Scopes on one
// thread do not nest (an inner one does nothing).
class DeliveryBatch {
 public:
  DeliveryBatch() {
    if (current_ == nullptr) current_ = this;
  }
  ~DeliveryBatch() {
    if (current_ != this) return;
    current_ = nullptr;  // what the writes below queue is written at once
    for (auto& w : deferred_) w->WriteDeferred();
  }
  DeliveryBatch(const DeliveryBatch&) = delete;
  DeliveryBatch& operator=(const DeliveryBatch&) = delete;

  // The batch open on this thread, if any.
  static DeliveryBatch* Current() { return current_; }
  // Called once per connection per batch (the connection remembers).
  void Defer(std::shared_ptr<DeferredWrite> write) { deferred_.push_back(std::move(write)); }

 private:
  static inline thread_local DeliveryBatch* current_ = nullptr;
  std::vector<std::shared_ptr<DeferredWrite>> deferred_;
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_BACKENDS_H_
