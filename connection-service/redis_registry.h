#ifndef CHAT_CONNECTION_SERVICE_REDIS_REGISTRY_H_
#define CHAT_CONNECTION_SERVICE_REDIS_REGISTRY_H_

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "connection-service/redis_client.h"
#include "connection-service/registry_url.h"
#include "connection-service/shared_registry.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace chat::connection {

// What the Redis registry counts (connection-service with --registry=redis...).
struct RedisRegistryMetrics {
  explicit RedisRegistryMetrics(prometheus::Registry& registry)
      : up(prometheus::BuildGauge()
               .Name("chat_registry_redis_up")
               .Help("1 while this replica follows the shared registry's feed in Redis")
               .Register(registry)
               .Add({})),
        resyncs(prometheus::BuildCounter()
                    .Name("chat_registry_redis_resyncs_total")
                    .Help("Snapshots of the shared registry applied (start, reconnects, feed "
                          "gaps, a Redis that started afresh)")
                    .Register(registry)
                    .Add({})),
        unavailable(prometheus::BuildCounter()
                        .Name("chat_registry_redis_unavailable_total")
                        .Help("Registry changes refused because Redis could not be reached "
                              "or this replica's feed was behind")
                        .Register(registry)
                        .Add({})) {}

  prometheus::Gauge& up;
  prometheus::Counter& resyncs;
  prometheus::Counter& unavailable;
};

struct RedisRegistryOptions {
  RegistryUrl target;  // kRedis or kSentinel
  RedisTimeouts timeouts;
  size_t pool_size = 4;
  int64_t lease_timeout_ms = 10'000;
  // How long presence snapshots wait after a new epoch began (its edges are
  // re-registering); negative: the lease timeout.
  int64_t new_epoch_warmup_ms = -1;
  // How long a mutation waits for this replica's mirror to apply it.
  absl::Duration apply_timeout = absl::Seconds(2);
  // After a mutation that wrote, how long to wait for a replica to have it
  // (WAIT 1): a Sentinel failover right after then loses nothing that was
  // answered. Zero: do not wait. Only when the primary has replicas.
  absl::Duration replica_ack_timeout = absl::Milliseconds(100);
  // How long one XREAD waits for new entries (a resync asked for by a
  // mutation waits at most this long).
  absl::Duration block = absl::Milliseconds(500);
  RedisRegistryMetrics* metrics = nullptr;  // optional; must outlive the registry
};

// The shared registry in Redis (keys under "chat:"):
//   chat:conns        HASH  connection id -> JSON {id, user, edge, at, ua, ip}
//   chat:user:<name>  SET   the user's connection ids (online = non-empty)
//   chat:edge:<id>    SET   the edge's connection ids
//   chat:edges        HASH  edge id -> incarnation
//   chat:leases       ZSET  edge id -> last sign of life (ms, Redis's clock)
//   chat:bans         HASH  user -> banned until (ms)
//   chat:epoch        STRING  random id, set when missing (Redis lost everything)
//   chat:epoch_at     STRING  when the epoch began (ms)
//   chat:feed         STREAM  one entry per mutation: n (chat:seq, to see gaps)
//                             and ev (JSON array of events); MAXLEN ~ 100000
// Every mutation is one Lua script (atomic, one round trip) that decides
// what happened and appends it to the feed.
//
// Threads: the server's blocking-call threads (BlockingCalls, not gRPC's
// own) run the scripts synchronously over a small pool of connections
// (RedisPool, one mutex each), then wait for the tailer; one tailer thread
// reads the feed (XREAD BLOCK, its own connection) and applies it in order
// to the FeedSink, or a snapshot (one MULTI/EXEC) after a reconnect or a
// gap. Users ever seen are not here: they are in --store.
class RedisRegistry final : public SharedRegistry {
 public:
  explicit RedisRegistry(RedisRegistryOptions options);
  ~RedisRegistry() override;

  void Start(FeedSink* sink) override;
  void Stop() override;
  absl::StatusOr<SharedWrite> Register(const std::string& edge_id, const std::string& incarnation,
                                       const std::vector<ConnectionInfo>& connections) override;
  absl::StatusOr<SharedWrite> Unregister(const std::string& edge_id, const std::string& incarnation,
                                         const std::vector<std::string>& ids) override;
  absl::StatusOr<SharedWrite> Heartbeat(const std::string& edge_id,
                                        const std::string& incarnation) override;
  absl::StatusOr<SharedWrite> Kick(const std::string& user, const std::string& connection_id,
                                   int code, const std::string& reason, bool set_ban,
                                   int64_t ban_ms) override;
  absl::StatusOr<SharedWrite> Forget(const std::string& user, int code,
                                     const std::string& reason) override;
  absl::StatusOr<SharedWrite> ExpireLeases(int64_t lease_ms) override;
  absl::Status AwaitApplied(const FeedPosition& position) override;
  bool MayExpireLeases() override;

  // Tests: a paused tailer applies nothing (a replica that fell behind).
  void PauseFeedForTest(bool paused);
  // Snapshots applied so far (the first one, reconnects, gaps).
  int64_t resyncs() const;

 private:
  absl::StatusOr<SharedWrite> Run(const RedisScript& script, std::vector<std::string> args);
  void TailLoop();
  // Waits `d` or until stopped; true when stopped.
  bool SleepUnlessStopped(absl::Duration d);

  const RedisRegistryOptions options_;
  RedisPool pool_;
  FeedSink* sink_ = nullptr;
  std::thread tailer_;

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool paused_ ABSL_GUARDED_BY(mu_) = false;
  bool resync_asked_ ABSL_GUARDED_BY(mu_) = false;
  std::string applied_epoch_ ABSL_GUARDED_BY(mu_);
  std::string applied_entry_ ABSL_GUARDED_BY(mu_);
  // Since when the tailer has followed Redis without interruption.
  absl::Time connected_since_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  int64_t resyncs_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace chat::connection

#endif  // CHAT_CONNECTION_SERVICE_REDIS_REGISTRY_H_
