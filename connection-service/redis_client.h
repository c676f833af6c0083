#ifndef CHAT_CONNECTION_SERVICE_REDIS_CLIENT_H_
#define CHAT_CONNECTION_SERVICE_REDIS_CLIENT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "connection-service/registry_url.h"

struct redisContext;

namespace chat::connection {

// A reply, copied out of hiredis's tree (which hiredis parses: no RESP here).
struct RedisReply {
  enum class Type { kNil, kString, kStatus, kInteger, kArray, kError };
  Type type = Type::kNil;
  std::string str;  // kString, kStatus, kError
  int64_t integer = 0;
  std::vector<RedisReply> elements;  // kArray

  bool is_error() const { return type == Type::kError; }
};

struct RedisTimeouts {
  absl::Duration connect = absl::Milliseconds(300);
  absl::Duration command = absl::Seconds(1);
};

// A Lua script run with EVALSHA, and EVAL when the server does not know it
// (NOSCRIPT: a restarted server, or a replica promoted by Sentinel, starts
// with an empty script cache).
class RedisScript {
 public:
  explicit RedisScript(std::string body);
  const std::string& body() const { return body_; }
  const std::string& sha1() const { return sha1_; }

 private:
  std::string body_;
  std::string sha1_;  // lower-case hex
};

// One connection to the Redis primary named by a RegistryUrl (kRedis or
// kSentinel), made on first use. Any I/O error drops it and the next call
// connects again, asking the Sentinels afresh: after a failover the next call
// reaches the new primary. Not thread-safe (RedisPool shares several).
class RedisConnection {
 public:
  RedisConnection(RegistryUrl target, RedisTimeouts timeouts);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Unavailable when Redis cannot be reached or the connection broke; an
  // error reply from Redis comes back as a RedisReply of type kError.
  absl::StatusOr<RedisReply> Command(const std::vector<std::string>& argv);
  // EVALSHA, falling back to EVAL on NOSCRIPT. No KEYS: the scripts name
  // their keys themselves (one Redis, not a Cluster).
  absl::StatusOr<RedisReply> Eval(const RedisScript& script, const std::vector<std::string>& args);
  // After a write: waits (at most `timeout`) until a replica acknowledged
  // it, so that a failover soon after does not lose it (replication is
  // asynchronous). Only when the primary has replicas (ROLE when connecting,
  // and again at most once a second while it had none: one may attach
  // later, as the old primary does after a failover), and not again for a
  // second once a wait timed out (a replica that is gone would cost every
  // write the timeout). Best effort: never fails.
  void WaitForReplica(absl::Duration timeout);
  // The timeout of the commands that follow (connecting keeps
  // RedisTimeouts::command): a caller that expects a slow reply (a large
  // snapshot) raises it for that command only.
  void SetCommandTimeout(absl::Duration timeout);
  bool connected() const { return ctx_ != nullptr; }
  void Disconnect();
  // "host:port" of the server connected to (empty when not connected).
  const std::string& peer() const { return peer_; }

 private:
  absl::Status Connect();

  const RegistryUrl target_;
  const RedisTimeouts timeouts_;
  redisContext* ctx_ = nullptr;
  std::string peer_;
  bool has_replicas_ = false;    // per ROLE; cleared by a wait that timed out
  absl::Time replicas_checked_;  // when has_replicas_ was last set
  absl::Duration command_timeout_;
};

// A few RedisConnections for the gRPC threads: each call takes a free one (a
// command holds it for one round trip).
class RedisPool {
 public:
  RedisPool(const RegistryUrl& target, RedisTimeouts timeouts, size_t size);

  absl::StatusOr<RedisReply> Command(const std::vector<std::string>& argv);
  absl::StatusOr<RedisReply> Eval(const RedisScript& script, const std::vector<std::string>& args);
  // Eval, then (when `wrote` says the reply shows a write and
  // `replica_timeout` is positive) WaitForReplica on the same connection.
  absl::StatusOr<RedisReply> EvalWrite(const RedisScript& script,
                                       const std::vector<std::string>& args,
                                       const std::function<bool(const RedisReply&)>& wrote,
                                       absl::Duration replica_timeout);

 private:
  struct Slot {
    absl::Mutex mu;
    std::unique_ptr<RedisConnection> connection;
  };
  template <typename F>
  absl::StatusOr<RedisReply> WithConnection(F&& f);

  std::vector<std::unique_ptr<Slot>> slots_;
  static constexpr absl::Duration kRetryAfter = absl::Milliseconds(200);
  absl::Mutex state_mu_;
  size_t next_ ABSL_GUARDED_BY(state_mu_) = 0;
  bool failing_ ABSL_GUARDED_BY(state_mu_) = false;  // the last call could not reach Redis
  absl::Time last_try_ ABSL_GUARDED_BY(state_mu_);
  absl::Time failed_at_ ABSL_GUARDED_BY(state_mu_);  // when a call last could not reach Redis
  std::string last_error_ ABSL_GUARDED_BY(state_mu_);
};

}  // namespace chat::connection

#endif  // CHAT_CONNECTION_SERVICE_REDIS_CLIENT_H_
