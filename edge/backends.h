#ifndef CHAT_EDGE_BACKENDS_H_
#define CHAT_EDGE_BACKENDS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

// What the edge needs from the services behind it, as interfaces that tests
// replace. Callbacks may run on any thread, and may run before the call
// returns.
namespace chat::edge {

struct OutgoingSend {
  std::string sent_by;
  std::string send_to;
  std::string message;
  std::string from_connection_id;
};

struct SendResult {
  enum class Status { kOk, kUnknownUser, kRecipientOffline, kBadRequest, kUnavailable };
  Status status = Status::kUnavailable;
  std::string error;
  std::string id;
  int64_t ts_ms = 0;
  int delivered = 0;
};

class MessageBackend {
 public:
  virtual ~MessageBackend() = default;
  virtual void Send(OutgoingSend send, std::function<void(const SendResult&)> done) = 0;
  virtual bool Ready() const = 0;
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
  virtual void Kick(uint16_t close_code, std::string reason) = 0;
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_BACKENDS_H_
