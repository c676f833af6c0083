#ifndef CHAT_CONNECTION_SERVICE_REGISTRY_H_
#define CHAT_CONNECTION_SERVICE_REGISTRY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "connection-service/registry_metrics.h"
#include "connection-service/registry_store.h"
#include "connection-service/shared_registry.h"
#include "store/user_store.h"

namespace chat::connection {

enum class RouteEventKind { kAdded, kRemoved, kUserCreated, kBanned };

struct RouteEvent {
  RouteEventKind kind;
  ConnectionInfo connection;  // for kUserCreated and kBanned only `user` is set
  RemoveReason reason = RemoveReason::kNone;
  int close_code = 0;        // kKicked: the WebSocket close code (4000-4999)
  std::string close_reason;  // kKicked
  int64_t ban_until_ms = 0;  // kBanned: 0 = lifted
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
  // `bans`: every ban in force (edge-filtered watchers get them too: every
  // edge refuses a banned user's handshakes).
  virtual void OnRouteSnapshot(const std::vector<std::string>& users,
                               const std::vector<ConnectionInfo>& connections,
                               const std::vector<Ban>& bans) = 0;
  virtual void OnRouteEvents(const std::vector<RouteEvent>& events) = 0;
  // The shared registry lost everything (a new epoch): the watch is over and
  // the watcher is dropped right after this call; its client watches again
  // for a fresh snapshot, as after a restart of a single connection-service.
  virtual void OnReset() {}
};

class PresenceWatcher {
 public:
  virtual ~PresenceWatcher() = default;
  // The state when the watch began (see Registry::AddPresenceWatcher), once,
  // before any OnPresence; `now_ms` is when it was taken.
  virtual void OnPresenceSnapshot(const std::vector<PresenceChange>& users, int64_t now_ms) = 0;
  virtual void OnPresence(const std::vector<PresenceChange>& changes) = 0;
  // As RouteWatcher::OnReset.
  virtual void OnReset() {}
};

struct ListUsersResult {
  std::vector<UserEntry> users;
  std::string next;  // empty when there is no further page
};

struct UserDetails {
  std::string name;
  std::vector<ConnectionInfo> connections;
  int64_t banned_until_ms = 0;  // 0: not banned
};

struct UsersResult {
  std::vector<UserDetails> users;      // in request order, each name once
  std::vector<std::string> not_found;  // well-formed names never seen
};

struct Counts {
  int64_t users = 0;
  int64_t online_users = 0;
  int64_t connections = 0;
  int64_t edges = 0;
};

struct HeartbeatResult {
  bool lease_known;
};

// Disconnect: exactly one of `user` and `connection_id`.
struct KickRequest {
  std::string user;
  std::string connection_id;
  int code = 0;        // 4000-4999; 0 = kDefaultKickCode
  std::string reason;  // at most kMaxKickReasonBytes of UTF-8
  // With `user` only. `set_ban` false leaves an existing ban alone; true
  // bans for `ban_ms` from now, or lifts the ban when `ban_ms` is 0.
  bool set_ban = false;
  int64_t ban_ms = 0;
};

struct KickResult {
  int disconnected = 0;
  int64_t banned_until_ms = 0;  // the ban in force afterwards (0: none)
};

struct ForgetResult {
  bool existed = false;
  int disconnected = 0;
};

struct RegistryOptions {
  int64_t lease_timeout_ms = 10'000;
  // A registry that just started is empty while its edges re-register (each
  // within a heartbeat, at most one lease period). Presence snapshots wait
  // this long after construction so that nobody is reported offline merely
  // because the registry restarted; the registry cannot know which edges held
  // a lease before, so this is a time, not a list. Negative: the lease
  // timeout; 0: the registry is known to be fresh (tests, a first start).
  int64_t presence_warmup_ms = -1;
  // Server-wide bound on presence watchers (RESOURCE_EXHAUSTED beyond).
  size_t max_presence_watchers = 10'000;
  // Null: the state lives in this process only (`store`). Otherwise every
  // mutation goes to the shared state and `store` is this replica's mirror
  // of it, kept by the shared feed; reads and watches are served from the
  // mirror. Must outlive the registry. The warm-up then follows the shared
  // state's epoch (presence_warmup_ms is not used).
  SharedRegistry* shared = nullptr;
};

inline constexpr size_t kMaxListUsers = 1000;
inline constexpr size_t kMaxGetUsers = 1000;
inline constexpr size_t kMaxWatchedUsers = 1000;
inline constexpr int kDefaultKickCode = 4000;
inline constexpr size_t kMaxKickReasonBytes = 120;
inline constexpr int64_t kMaxBanMs = int64_t{366} * 24 * 3600 * 1000;
inline constexpr size_t kMaxConnectionIdBytes = 256;

// Users ever seen, live connections, edge leases and the change feeds built on
// them. Thread-safe.
class Registry : private FeedSink {
 public:
  // `metrics` (may be null) must outlive the registry.
  // `durable_users` (optional): users ever seen are committed there before
  // a registration is answered; the store's users must already be in `store`.
  Registry(std::unique_ptr<RegistryStore> store, const Clock* clock, RegistryOptions options,
           RegistryMetrics* metrics = nullptr, store::UserStore* durable_users = nullptr);
  Registry(std::unique_ptr<RegistryStore> store, const Clock* clock, int64_t lease_timeout_ms,
           RegistryMetrics* metrics = nullptr, store::UserStore* durable_users = nullptr)
      : Registry(std::move(store), clock, RegistryOptions{lease_timeout_ms}, metrics,
                 durable_users) {}
  ~Registry() override;

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
  // Periodic work (the LeaseReaper calls it): expires leases, forgets bans
  // that ended and sends the presence snapshots held back since the start.
  void Tick();
  // Kicks every connection of `user` (optionally banning the user), or
  // exactly `connection_id`. NotFound for an unknown user or connection id.
  absl::StatusOr<KickResult> Disconnect(const KickRequest& request);
  // Erases `name`: from the durable user store first (Unavailable when it
  // fails; nothing changed then), then from the registry, its ban lifted and
  // its connections kicked with `code` (0 = 4000) and `reason`. An unknown
  // name is not an error (existed = false).
  absl::StatusOr<ForgetResult> ForgetUser(const std::string& name, int code,
                                          const std::string& reason);

  // InvalidArgument for `limit` outside 0..1000 (0 = 1000) or an `after`
  // that is not a user name.
  absl::StatusOr<ListUsersResult> ListUsers(const std::string& after, int limit,
                                            bool online_only) const;
  // InvalidArgument for a malformed name, NotFound for an unknown one.
  absl::StatusOr<UserDetails> GetUser(const std::string& name) const;
  // At most kMaxGetUsers names, each well-formed; all answered under one lock.
  absl::StatusOr<UsersResult> GetUsers(const std::vector<std::string>& names) const;
  Counts GetCounts() const;

  // `edge_filter` empty: every route. The snapshot is delivered before return.
  void AddRouteWatcher(RouteWatcher* watcher, const std::string& edge_filter);
  void RemoveRouteWatcher(RouteWatcher* watcher);
  // `users` empty: every user (the snapshot lists those online); otherwise at
  // most kMaxWatchedUsers well-formed names (the snapshot lists each, online
  // or not). The snapshot and the subscription are taken under one lock, so
  // no transition falls between them; during the warm-up after start both
  // wait for Tick(). ResourceExhausted beyond max_presence_watchers.
  absl::Status AddPresenceWatcher(PresenceWatcher* watcher, const std::vector<std::string>& users);
  void RemovePresenceWatcher(PresenceWatcher* watcher);

  int64_t lease_timeout_ms() const { return lease_timeout_ms_; }
  // With a shared state: its epoch, the same on every replica, new when the
  // shared state lost everything (edges then register again); empty until
  // the first snapshot. Without one: empty (the server has its own id).
  std::string instance_id() const;

 private:
  struct RouteSubscription {
    RouteWatcher* watcher;
    std::string edge_filter;
  };
  struct PresenceSubscription {
    PresenceWatcher* watcher;
    std::vector<std::string> names;  // as asked, without duplicates; empty: all
    absl::flat_hash_set<std::string> users;
    bool started = false;  // false: its snapshot waits for the warm-up to end
  };
  struct Changes {
    std::vector<RouteEvent> routes;
    std::vector<PresenceChange> presence;
  };

  // FeedSink: the shared feed, applied to the mirror.
  void ApplyFeed(const std::vector<FeedEvent>& events) override;
  void ApplySnapshot(const SharedSnapshot& snapshot) override;
  absl::Status AwaitShared(const absl::StatusOr<SharedWrite>& write);

  // The steps shared by both modes: the in-process mutations and the feed.
  // Adds a connection (and its user, when new); false if already present.
  bool AddLocked(const ConnectionInfo& c, Changes* changes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // until_ms 0 lifts the ban.
  void SetBanLocked(const std::string& user, int64_t until_ms, Changes* changes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropEdgeLocked(const std::string& edge_id, bool expired) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ForgetLocked(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartDueSnapshotsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Renews the lease; returns false when the registry held nothing for this
  // edge process (new edge, new incarnation, or expired lease).
  bool TouchLocked(const std::string& edge_id, const std::string& incarnation, Changes* changes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveLocked(const std::string& connection_id, RemoveReason reason, Changes* changes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishLocked(const Changes& changes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Kicks `ids` with `code`/`reason`; returns how many were live.
  int KickLocked(const std::vector<std::string>& ids, int code, const std::string& reason,
                 Changes* changes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t BannedUntilLocked(const std::string& user, int64_t now_ms) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void StartSnapshotLocked(PresenceSubscription& sub) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartDueSnapshots();
  void InitMetrics();

  const Clock* clock_;
  const int64_t lease_timeout_ms_;
  const size_t max_presence_watchers_;
  RegistryMetrics* const metrics_;  // null: not counted
  // Commits new users before they are registered; taken before mu_, never
  // under it, so a slow disk never holds up lookups.
  absl::Mutex durable_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  store::UserStore* const durable_users_ ABSL_PT_GUARDED_BY(durable_mu_);
  mutable absl::Mutex mu_;
  std::unique_ptr<RegistryStore> store_ ABSL_GUARDED_BY(mu_);
  std::vector<RouteSubscription> route_watchers_ ABSL_GUARDED_BY(mu_);
  std::vector<PresenceSubscription> presence_watchers_ ABSL_GUARDED_BY(mu_);
  int64_t presence_ready_ms_ ABSL_GUARDED_BY(mu_);  // presence snapshots wait until then
  bool warming_up_ ABSL_GUARDED_BY(mu_);            // some presence snapshots still wait
  SharedRegistry* const shared_;
  // Apart from mu_: watchers (called under mu_) read it.
  mutable absl::Mutex epoch_mu_;
  std::string epoch_ ABSL_GUARDED_BY(epoch_mu_);
  // Bans live in memory only: they do not survive a restart of
  // connection-service (the user store has no place for them). Expired ones
  // are dropped by Tick(); edges compare the time themselves.
  absl::flat_hash_map<std::string, int64_t> bans_ ABSL_GUARDED_BY(mu_);
};

}  // namespace chat::connection

#endif  // CHAT_CONNECTION_SERVICE_REGISTRY_H_
