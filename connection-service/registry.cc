#include "connection-service/registry.h"

#include <algorithm>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/names.h"

namespace chat::connection {

Registry::Registry(std::unique_ptr<RegistryStore> store, const Clock* clock,
                   int64_t lease_timeout_ms, RegistryMetrics* metrics,
                   store::UserStore* durable_users)
    : clock_(clock),
      lease_timeout_ms_(lease_timeout_ms),
      metrics_(metrics),
      durable_users_(durable_users),
      store_(std::move(store)) {
  if (metrics_ == nullptr) return;
  // A store may start with state (a durable one); from here on the gauges
  // follow every change.
  absl::MutexLock lock(&mu_);
  const std::vector<ConnectionInfo> connections = store_->AllConnections();
  absl::flat_hash_set<std::string> online;
  for (const auto& c : connections) online.insert(c.user);
  metrics_->users.Set(static_cast<double>(store_->AllUsers().size()));
  metrics_->online_users.Set(static_cast<double>(online.size()));
  metrics_->connections.Set(static_cast<double>(connections.size()));
  metrics_->edges.Set(
      static_cast<double>(store_->EdgesSeenBefore(std::numeric_limits<int64_t>::max()).size()));
}

bool Registry::TouchLocked(const std::string& edge_id, const std::string& incarnation,
                           Changes* changes) {
  switch (store_->TouchEdge(edge_id, incarnation, clock_->NowMs())) {
    case RegistryStore::Touch::kKnown:
      return true;
    case RegistryStore::Touch::kNew:
      if (metrics_ != nullptr) metrics_->edges.Increment();
      return false;
    case RegistryStore::Touch::kNewIncarnation:
      for (const auto& id : store_->ConnectionIdsOfEdge(edge_id)) {
        RemoveLocked(id, RemoveReason::kLeaseExpired, changes);
        if (metrics_ != nullptr) metrics_->expired_connections.Increment();
      }
      return false;
  }
  return false;
}

absl::Status Registry::Register(const std::string& edge_id, const std::string& incarnation,
                                std::vector<ConnectionInfo> connections) {
  if (edge_id.empty()) return absl::InvalidArgumentError("edge_id is required");
  for (const auto& c : connections) {
    if (c.connection_id.empty()) return absl::InvalidArgumentError("connection_id is required");
    if (absl::Status s = ValidateUserName(c.user); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("user '", c.user, "': ", s.message()));
    }
  }
  const int64_t now = clock_->NowMs();
  absl::MutexLock durable_lock(&durable_mu_);
  if (durable_users_ != nullptr) {
    // A user exists once committed: the edge says hello only after this
    // answer, so anything that asks afterwards finds them.
    std::vector<std::string> fresh;
    {
      absl::ReaderMutexLock lock(&mu_);
      for (const auto& c : connections) {
        if (!store_->HasUser(c.user)) fresh.push_back(c.user);
      }
    }
    for (const auto& user : fresh) {
      absl::StatusOr<bool> added = durable_users_->AddUser(user, now);
      if (!added.ok()) {
        return absl::UnavailableError(
            absl::StrCat("user store unavailable: ", added.status().message()));
      }
    }
  }
  absl::MutexLock lock(&mu_);
  Changes changes;
  TouchLocked(edge_id, incarnation, &changes);
  for (auto& c : connections) {
    c.edge_id = edge_id;
    if (store_->AddUser(c.user)) {
      if (metrics_ != nullptr) metrics_->users.Increment();
      RouteEvent created{RouteEventKind::kUserCreated, {}, RemoveReason::kNone};
      created.connection.user = c.user;
      changes.routes.push_back(std::move(created));
    }
    if (!store_->AddConnection(c)) continue;  // re-registration of a known connection
    const bool first = store_->ConnectionCount(c.user) == 1;
    if (metrics_ != nullptr) {
      metrics_->connections.Increment();
      if (first) metrics_->online_users.Increment();
    }
    if (first) changes.presence.push_back({c.user, true, now});
    changes.routes.push_back({RouteEventKind::kAdded, std::move(c), RemoveReason::kNone});
  }
  PublishLocked(changes);
  return absl::OkStatus();
}

absl::Status Registry::Unregister(const std::string& edge_id, const std::string& incarnation,
                                  const std::vector<std::string>& ids) {
  if (edge_id.empty()) return absl::InvalidArgumentError("edge_id is required");
  absl::MutexLock lock(&mu_);
  Changes changes;
  TouchLocked(edge_id, incarnation, &changes);
  for (const auto& id : ids) {
    // An edge may only remove its own connections.
    if (!absl::StartsWith(id, absl::StrCat(edge_id, "-"))) continue;
    RemoveLocked(id, RemoveReason::kUnregistered, &changes);
  }
  PublishLocked(changes);
  return absl::OkStatus();
}

absl::StatusOr<HeartbeatResult> Registry::Heartbeat(const std::string& edge_id,
                                                    const std::string& incarnation) {
  if (edge_id.empty()) return absl::InvalidArgumentError("edge_id is required");
  absl::MutexLock lock(&mu_);
  Changes changes;
  const bool known = TouchLocked(edge_id, incarnation, &changes);
  PublishLocked(changes);
  return HeartbeatResult{known};
}

size_t Registry::ExpireLeases() {
  absl::MutexLock lock(&mu_);
  Changes changes;
  size_t removed = 0;
  for (const auto& edge : store_->EdgesSeenBefore(clock_->NowMs() - lease_timeout_ms_)) {
    for (const auto& id : store_->ConnectionIdsOfEdge(edge)) {
      RemoveLocked(id, RemoveReason::kLeaseExpired, &changes);
      ++removed;
    }
    store_->RemoveEdge(edge);
    if (metrics_ != nullptr) {
      metrics_->edges.Decrement();
      metrics_->lease_expiries.Increment();
    }
  }
  if (metrics_ != nullptr) metrics_->expired_connections.Increment(static_cast<double>(removed));
  PublishLocked(changes);
  return removed;
}

absl::StatusOr<int> Registry::Disconnect(const std::string& user,
                                         const std::string& connection_id) {
  if (user.empty() == connection_id.empty()) {
    return absl::InvalidArgumentError("exactly one of user and connection_id is required");
  }
  absl::MutexLock lock(&mu_);
  std::vector<std::string> ids;
  if (!connection_id.empty()) {
    ids.push_back(connection_id);
  } else {
    if (!store_->HasUser(user))
      return absl::NotFoundError(absl::StrCat("no user named '", user, "'"));
    for (const auto& c : store_->ConnectionsOfUser(user)) ids.push_back(c.connection_id);
  }
  Changes changes;
  for (const auto& id : ids) RemoveLocked(id, RemoveReason::kKicked, &changes);
  PublishLocked(changes);
  return static_cast<int>(changes.routes.size());
}

void Registry::RemoveLocked(const std::string& connection_id, RemoveReason reason,
                            Changes* changes) {
  auto removed = store_->RemoveConnection(connection_id);
  if (!removed) return;
  const bool last = store_->ConnectionCount(removed->user) == 0;
  if (metrics_ != nullptr) {
    metrics_->connections.Decrement();
    if (last) metrics_->online_users.Decrement();
  }
  if (last) changes->presence.push_back({removed->user, false, clock_->NowMs()});
  changes->routes.push_back({RouteEventKind::kRemoved, std::move(*removed), reason});
}

void Registry::PublishLocked(const Changes& changes) {
  if (!changes.routes.empty()) {
    std::vector<RouteEvent> filtered;
    for (const auto& sub : route_watchers_) {
      if (sub.edge_filter.empty()) {
        sub.watcher->OnRouteEvents(changes.routes);
        continue;
      }
      filtered.clear();
      for (const auto& e : changes.routes) {
        if (e.kind != RouteEventKind::kUserCreated && e.connection.edge_id == sub.edge_filter) {
          filtered.push_back(e);
        }
      }
      if (!filtered.empty()) sub.watcher->OnRouteEvents(filtered);
    }
  }
  if (!changes.presence.empty()) {
    std::vector<PresenceChange> filtered;
    for (const auto& sub : presence_watchers_) {
      if (sub.users.empty()) {
        sub.watcher->OnPresence(changes.presence);
        continue;
      }
      filtered.clear();
      for (const auto& p : changes.presence) {
        if (sub.users.contains(p.user)) filtered.push_back(p);
      }
      if (!filtered.empty()) sub.watcher->OnPresence(filtered);
    }
  }
}

absl::StatusOr<ListUsersResult> Registry::ListUsers(const std::string& after, int limit,
                                                    bool online_only) const {
  if (limit < 0) return absl::InvalidArgumentError("limit must not be negative");
  const size_t n = limit == 0 ? kMaxListUsers : std::min<size_t>(limit, kMaxListUsers);
  absl::MutexLock lock(&mu_);
  ListUsersResult result;
  bool more = false;
  result.users = store_->ListUsers(after, n, online_only, &more);
  if (more && !result.users.empty()) result.next = result.users.back().name;
  return result;
}

absl::StatusOr<UserDetails> Registry::GetUser(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  if (!store_->HasUser(name))
    return absl::NotFoundError(absl::StrCat("no user named '", name, "'"));
  return UserDetails{name, store_->ConnectionsOfUser(name)};
}

void Registry::AddRouteWatcher(RouteWatcher* watcher, const std::string& edge_filter) {
  absl::MutexLock lock(&mu_);
  std::vector<ConnectionInfo> connections = store_->AllConnections();
  std::vector<std::string> users;
  if (edge_filter.empty()) {
    users = store_->AllUsers();
  } else {
    connections.erase(std::remove_if(connections.begin(), connections.end(),
                                     [&](const auto& c) { return c.edge_id != edge_filter; }),
                      connections.end());
  }
  watcher->OnRouteSnapshot(users, connections);
  route_watchers_.push_back({watcher, edge_filter});
}

void Registry::RemoveRouteWatcher(RouteWatcher* watcher) {
  absl::MutexLock lock(&mu_);
  route_watchers_.erase(std::remove_if(route_watchers_.begin(), route_watchers_.end(),
                                       [&](const auto& s) { return s.watcher == watcher; }),
                        route_watchers_.end());
}

void Registry::AddPresenceWatcher(PresenceWatcher* watcher, const std::vector<std::string>& users) {
  absl::MutexLock lock(&mu_);
  presence_watchers_.push_back({watcher, {users.begin(), users.end()}});
}

void Registry::RemovePresenceWatcher(PresenceWatcher* watcher) {
  absl::MutexLock lock(&mu_);
  presence_watchers_.erase(std::remove_if(presence_watchers_.begin(), presence_watchers_.end(),
                                          [&](const auto& s) { return s.watcher == watcher; }),
                           presence_watchers_.end());
}

}  // namespace chat::connection
