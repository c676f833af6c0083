#ifndef CHAT_CONNECTION_SERVICE_REGISTRY_H_
#define CHAT_CONNECTION_SERVICE_REGISTRY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "connection-service/registry_metrics.h"
#include "connection-service/registry_store.h"
#include "store/user_store.h"

namespace chat::connection {

enum class RouteEventKind { kAdded, kRemoved, kUserCreated };
enum class RemoveReason { kNone, kUnregistered, kLeaseExpired, kKicked };

struct RouteEvent {
  RouteEventKind kind;
  ConnectionInfo connection;  // for kUserCreated only `user` is set
  RemoveReason reason = RemoveReason::kNone;
};

struct PresenceChange {
  std::string user;
  bool online;
  int64_t ts_ms;
};

// Watchers are called with the registry lock held, so that a snapshot and the
// changes after it are never interleaved with another mutation. They must not
// block and must not call back into the registry.
class RouteWatcher {
 public:
  virtual ~RouteWatcher() = default;
  virtual void OnRouteSnapshot(const std::vector<std::string>& users,
                               const std::vector<ConnectionInfo>& connections) = 0;
  virtual void OnRouteEvents(const std::vector<RouteEvent>& events) = 0;
};

class PresenceWatcher {
 public:
  virtual ~PresenceWatcher() = default;
  virtual void OnPresence(const std::vector<PresenceChange>& changes) = 0;
};

struct ListUsersResult {
  std::vector<UserEntry> users;
  std::string next;  // empty when there is no further page
};

struct UserDetails {
  std::string name;
  std::vector<ConnectionInfo> connections;
};

struct HeartbeatResult {
  bool lease_known;
};

inline constexpr size_t kMaxListUsers = 1000;

// Users ever seen, live connections, edge leases and the change feeds built on
// them. Thread-safe.
class Registry {
 public:
  // `metrics` (may be null) must outlive the registry.
  // `durable_users` (optional): users ever seen are committed there before
  // a registration is answered; the store's users must already be in `store`.
  Registry(std::unique_ptr<RegistryStore> store, const Clock* clock, int64_t lease_timeout_ms,
           RegistryMetrics* metrics = nullptr, store::UserStore* durable_users = nullptr);

  // `incarnation` identifies the edge process; a new one for a known edge id
  // drops the connections the previous process left (it restarted).
  absl::Status Register(const std::string& edge_id, const std::string& incarnation,
                        std::vector<ConnectionInfo> connections);
  absl::Status Unregister(const std::string& edge_id, const std::string& incarnation,
                          const std::vector<std::string>& ids);
  absl::StatusOr<HeartbeatResult> Heartbeat(const std::string& edge_id,
                                            const std::string& incarnation);
  // Drops every connection of each edge whose lease ran out; returns their number.
  size_t ExpireLeases();
  // Kicks every connection of `user`, or exactly `connection_id`.
  absl::StatusOr<int> Disconnect(const std::string& user, const std::string& connection_id);

  absl::StatusOr<ListUsersResult> ListUsers(const std::string& after, int limit,
                                            bool online_only) const;
  absl::StatusOr<UserDetails> GetUser(const std::string& name) const;

  // `edge_filter` empty: every route. The snapshot is delivered before return.
  void AddRouteWatcher(RouteWatcher* watcher, const std::string& edge_filter);
  void RemoveRouteWatcher(RouteWatcher* watcher);
  // `users` empty: every user.
  void AddPresenceWatcher(PresenceWatcher* watcher, const std::vector<std::string>& users);
  void RemovePresenceWatcher(PresenceWatcher* watcher);

  int64_t lease_timeout_ms() const { return lease_timeout_ms_; }

 private:
  struct RouteSubscription {
    RouteWatcher* watcher;
    std::string edge_filter;
  };
  struct PresenceSubscription {
    PresenceWatcher* watcher;
    absl::flat_hash_set<std::string> users;
  };
  struct Changes {
    std::vector<RouteEvent> routes;
    std::vector<PresenceChange> presence;
  };

  // Renews the lease; returns false when the registry held nothing for this
  // edge process (new edge, new incarnation, or expired lease).
  bool TouchLocked(const std::string& edge_id, const std::string& incarnation, Changes* changes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveLocked(const std::string& connection_id, RemoveReason reason, Changes* changes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishLocked(const Changes& changes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Clock* clock_;
  const int64_t lease_timeout_ms_;
  RegistryMetrics* const metrics_;  // null: not counted
  // Commits new users before they are registered; taken before mu_, never
  // under it, so a slow disk never holds up lookups.
  absl::Mutex durable_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  store::UserStore* const durable_users_ ABSL_PT_GUARDED_BY(durable_mu_);
  mutable absl::Mutex mu_;
  std::unique_ptr<RegistryStore> store_ ABSL_GUARDED_BY(mu_);
  std::vector<RouteSubscription> route_watchers_ ABSL_GUARDED_BY(mu_);
  std::vector<PresenceSubscription> presence_watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace chat::connection

#endif  // CHAT_CONNECTION_SERVICE_REGISTRY_H_
