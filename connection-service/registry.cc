#include "connection-service/registry.h"

#include <algorithm>
#include <limits>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/grpc_status.h"
#include "common/names.h"
#include "spdlog/spdlog.h"

namespace chat::connection {
namespace {

// Messages never echo the request's strings: they may be long or binary.
absl::Status BadName(const absl::Status& invalid, absl::string_view field) {
  // "name is longer than 64 bytes" -> "<field>: longer than 64 bytes".
  absl::string_view why = invalid.message();
  if (!absl::ConsumePrefix(&why, "name is ")) absl::ConsumePrefix(&why, "name ");
  return WithReason(absl::InvalidArgumentError(absl::StrCat(field, ": ", why)), "INVALID_NAME");
}

absl::Status UserNotFound() {
  return WithReason(absl::NotFoundError("no user by that name"), "USER_NOT_FOUND");
}

// 0 becomes kDefaultKickCode.
absl::StatusOr<int> CheckedCloseCode(int code) {
  if (code == 0) return kDefaultKickCode;
  if (code < 4000 || code > 4999) {
    return WithReason(absl::InvalidArgumentError("code must be 4000-4999 (0 = 4000)"),
                      "INVALID_CLOSE_CODE");
  }
  return code;
}

absl::Status CheckCloseReason(const std::string& reason) {
  if (reason.size() > kMaxKickReasonBytes || !IsValidUtf8(reason)) {
    return WithReason(absl::InvalidArgumentError(absl::StrCat(
                          "reason must be at most ", kMaxKickReasonBytes, " bytes of UTF-8")),
                      "INVALID_CLOSE_REASON");
  }
  return absl::OkStatus();
}

RouteEvent ConnectionEvent(RouteEventKind kind, ConnectionInfo connection, RemoveReason reason) {
  RouteEvent event;
  event.kind = kind;
  event.connection = std::move(connection);
  event.reason = reason;
  return event;
}

// kUserCreated and kBanned: only the user is set.
RouteEvent UserEvent(RouteEventKind kind, const std::string& user) {
  RouteEvent event = ConnectionEvent(kind, {}, RemoveReason::kNone);
  event.connection.user = user;
  return event;
}

}  // namespace

Registry::Registry(std::unique_ptr<RegistryStore> store, const Clock* clock,
                   RegistryOptions options, RegistryMetrics* metrics,
                   store::UserStore* durable_users)
    : clock_(clock),
      lease_timeout_ms_(options.lease_timeout_ms),
      max_presence_watchers_(options.max_presence_watchers),
      metrics_(metrics),
      durable_users_(durable_users),
      store_(std::move(store)),
      // With a shared state the mirror is empty until its first snapshot:
      // presence snapshots wait for that (ApplySnapshot sets the time).
      presence_ready_ms_(options.shared != nullptr
                             ? std::numeric_limits<int64_t>::max()
                             : clock->NowMs() + (options.presence_warmup_ms < 0
                                                     ? options.lease_timeout_ms
                                                     : options.presence_warmup_ms)),
      warming_up_(clock->NowMs() < presence_ready_ms_),
      shared_(options.shared) {
  if (metrics_ != nullptr) InitMetrics();
  if (shared_ != nullptr) shared_->Start(this);
}

Registry::~Registry() {
  if (shared_ != nullptr) shared_->Stop();
}

std::string Registry::instance_id() const {
  absl::MutexLock lock(&epoch_mu_);
  return epoch_;
}

absl::Status Registry::AwaitShared(const absl::StatusOr<SharedWrite>& write) {
  if (!write.ok()) return write.status();
  return shared_->AwaitApplied(write->position);
}

void Registry::InitMetrics() {
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
  absl::ReleasableMutexLock durable_lock(&durable_mu_);
  if (durable_users_ != nullptr) {
    // A user exists once committed: the edge says hello only after this
    // answer, so anything that asks afterwards finds them.
    std::vector<std::string> fresh;
    absl::flat_hash_set<std::string_view> seen;
    {
      absl::ReaderMutexLock lock(&mu_);
      for (const auto& c : connections) {
        // Once each: a batch often carries several connections of a user.
        if (!store_->HasUser(c.user) && seen.insert(c.user).second) fresh.push_back(c.user);
      }
    }
    if (!fresh.empty()) {
      absl::StatusOr<int> added = durable_users_->AddUsers(fresh, now);
      if (!added.ok()) {
        return absl::UnavailableError(
            absl::StrCat("user store unavailable: ", added.status().message()));
      }
    }
  }
  for (auto& c : connections) c.edge_id = edge_id;
  if (shared_ != nullptr) {
    // Other replicas commit users and register concurrently anyway: holding
    // the lock through the round trip would only serialise this replica.
    durable_lock.Release();
    // The feed brings the change back to this replica's mirror.
    return AwaitShared(shared_->Register(edge_id, incarnation, connections));
  }
  absl::MutexLock lock(&mu_);
  Changes changes;
  TouchLocked(edge_id, incarnation, &changes);
  for (const auto& c : connections) AddLocked(c, &changes);  // a known one: nothing
  PublishLocked(changes);
  return absl::OkStatus();
}

bool Registry::AddLocked(const ConnectionInfo& c, Changes* changes) {
  if (store_->AddUser(c.user)) {
    if (metrics_ != nullptr) metrics_->users.Increment();
    changes->routes.push_back(UserEvent(RouteEventKind::kUserCreated, c.user));
  }
  if (!store_->AddConnection(c)) return false;
  const bool first = store_->ConnectionCount(c.user) == 1;
  if (metrics_ != nullptr) {
    metrics_->connections.Increment();
    if (first) metrics_->online_users.Increment();
  }
  if (first) changes->presence.push_back({c.user, true, clock_->NowMs()});
  changes->routes.push_back(ConnectionEvent(RouteEventKind::kAdded, c, RemoveReason::kNone));
  return true;
}

void Registry::SetBanLocked(const std::string& user, int64_t until_ms, Changes* changes) {
  if (until_ms > 0) {
    bans_[user] = until_ms;
  } else {
    bans_.erase(user);
  }
  RouteEvent banned = UserEvent(RouteEventKind::kBanned, user);
  banned.ban_until_ms = until_ms;
  changes->routes.push_back(std::move(banned));
}

void Registry::DropEdgeLocked(const std::string& edge_id, bool expired) {
  store_->RemoveEdge(edge_id);
  if (metrics_ != nullptr) {
    metrics_->edges.Decrement();
    if (expired) metrics_->lease_expiries.Increment();
  }
}

void Registry::ForgetLocked(const std::string& name) {
  if (store_->RemoveUser(name) && metrics_ != nullptr) metrics_->users.Decrement();
}

absl::Status Registry::Unregister(const std::string& edge_id, const std::string& incarnation,
                                  const std::vector<std::string>& ids) {
  if (edge_id.empty()) return absl::InvalidArgumentError("edge_id is required");
  if (shared_ != nullptr) return AwaitShared(shared_->Unregister(edge_id, incarnation, ids));
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
  if (shared_ != nullptr) {
    absl::StatusOr<SharedWrite> write = shared_->Heartbeat(edge_id, incarnation);
    if (absl::Status s = AwaitShared(write); !s.ok()) return s;
    return HeartbeatResult{write->lease_known};
  }
  absl::MutexLock lock(&mu_);
  Changes changes;
  const bool known = TouchLocked(edge_id, incarnation, &changes);
  PublishLocked(changes);
  return HeartbeatResult{known};
}

size_t Registry::ExpireLeases() {
  if (shared_ != nullptr) {
    // Any replica may do it (the step is atomic and idempotent); the feed
    // brings the removals to every mirror.
    if (!shared_->MayExpireLeases()) return 0;
    absl::StatusOr<SharedWrite> write = shared_->ExpireLeases(lease_timeout_ms_);
    return write.ok() ? static_cast<size_t>(write->count) : 0;
  }
  absl::MutexLock lock(&mu_);
  Changes changes;
  size_t removed = 0;
  for (const auto& edge : store_->EdgesSeenBefore(clock_->NowMs() - lease_timeout_ms_)) {
    for (const auto& id : store_->ConnectionIdsOfEdge(edge)) {
      RemoveLocked(id, RemoveReason::kLeaseExpired, &changes);
      ++removed;
    }
    DropEdgeLocked(edge, /*expired=*/true);
  }
  if (metrics_ != nullptr) metrics_->expired_connections.Increment(static_cast<double>(removed));
  PublishLocked(changes);
  return removed;
}

absl::StatusOr<KickResult> Registry::Disconnect(const KickRequest& request) {
  if (request.user.empty() == request.connection_id.empty()) {
    return WithReason(
        absl::InvalidArgumentError("exactly one of user and connection_id is required"),
        "INVALID_TARGET");
  }
  if (!request.user.empty()) {
    if (absl::Status s = ValidateUserName(request.user); !s.ok()) return BadName(s, "user");
  } else if (request.connection_id.size() > kMaxConnectionIdBytes ||
             !IsValidUtf8(request.connection_id)) {
    return WithReason(absl::InvalidArgumentError("connection_id is not one this service gave"),
                      "INVALID_CONNECTION_ID");
  }
  absl::StatusOr<int> code = CheckedCloseCode(request.code);
  if (!code.ok()) return code.status();
  if (absl::Status s = CheckCloseReason(request.reason); !s.ok()) return s;
  if (request.ban_ms < 0 || request.ban_ms > kMaxBanMs) {
    return WithReason(absl::InvalidArgumentError("ban must be between 0 and 366 days"),
                      "INVALID_BAN");
  }
  if (request.set_ban && request.user.empty()) {
    return WithReason(absl::InvalidArgumentError("a ban needs `user`, not `connection_id`"),
                      "INVALID_BAN");
  }
  const int64_t now = clock_->NowMs();
  if (shared_ != nullptr) {
    if (!request.user.empty()) {
      absl::ReaderMutexLock lock(&mu_);
      if (!store_->HasUser(request.user)) return UserNotFound();
    }
    absl::StatusOr<SharedWrite> write =
        shared_->Kick(request.user, request.connection_id, *code, request.reason, request.set_ban,
                      request.ban_ms);
    if (absl::Status s = AwaitShared(write); !s.ok()) return s;
    if (!request.connection_id.empty() && write->count == 0) {
      return WithReason(absl::NotFoundError("no live connection with that id"),
                        "CONNECTION_NOT_FOUND");
    }
    return KickResult{write->count, write->banned_until_ms};
  }
  absl::MutexLock lock(&mu_);
  std::vector<std::string> ids;
  Changes changes;
  KickResult result;
  if (!request.connection_id.empty()) {
    ids.push_back(request.connection_id);
  } else {
    if (!store_->HasUser(request.user)) return UserNotFound();
    for (const auto& c : store_->ConnectionsOfUser(request.user)) ids.push_back(c.connection_id);
    if (request.set_ban) {
      // The ban reaches every edge before the kicks, so a client that
      // reconnects at once is refused. A zero ban lifts it (until 0).
      SetBanLocked(request.user, request.ban_ms > 0 ? now + request.ban_ms : 0, &changes);
    }
    result.banned_until_ms = BannedUntilLocked(request.user, now);
  }
  result.disconnected = KickLocked(ids, *code, request.reason, &changes);
  if (!request.connection_id.empty() && result.disconnected == 0) {
    return WithReason(absl::NotFoundError("no live connection with that id"),
                      "CONNECTION_NOT_FOUND");
  }
  PublishLocked(changes);
  return result;
}

absl::StatusOr<ForgetResult> Registry::ForgetUser(const std::string& name, int code,
                                                  const std::string& reason) {
  if (absl::Status s = ValidateUserName(name); !s.ok()) return BadName(s, "name");
  absl::StatusOr<int> close_code = CheckedCloseCode(code);
  if (!close_code.ok()) return close_code.status();
  if (absl::Status s = CheckCloseReason(reason); !s.ok()) return s;
  ForgetResult result;
  absl::MutexLock durable_lock(&durable_mu_);
  if (durable_users_ != nullptr) {
    // The durable copy goes first: a failure leaves everything as it was,
    // and the caller retries.
    absl::StatusOr<bool> deleted = durable_users_->DeleteUser(name);
    if (!deleted.ok()) {
      return absl::UnavailableError(
          absl::StrCat("user store unavailable: ", deleted.status().message()));
    }
    result.existed = *deleted;
  }
  if (shared_ != nullptr) {
    {
      absl::ReaderMutexLock lock(&mu_);
      if (store_->HasUser(name)) result.existed = true;
    }
    absl::StatusOr<SharedWrite> write = shared_->Forget(name, *close_code, reason);
    if (absl::Status s = AwaitShared(write); !s.ok()) return s;
    result.disconnected = write->count;
    return result;
  }
  absl::MutexLock lock(&mu_);
  Changes changes;
  std::vector<std::string> ids;
  for (const auto& c : store_->ConnectionsOfUser(name)) ids.push_back(c.connection_id);
  result.disconnected = KickLocked(ids, *close_code, reason, &changes);
  if (store_->HasUser(name)) result.existed = true;
  ForgetLocked(name);
  if (bans_.erase(name) > 0) {
    changes.routes.push_back(UserEvent(RouteEventKind::kBanned, name));  // 0: lifted
  }
  PublishLocked(changes);
  return result;
}

int Registry::KickLocked(const std::vector<std::string>& ids, int code, const std::string& reason,
                         Changes* changes) {
  int kicked = 0;
  for (const auto& id : ids) {
    const size_t before = changes->routes.size();
    RemoveLocked(id, RemoveReason::kKicked, changes);
    if (changes->routes.size() == before) continue;
    changes->routes.back().close_code = code;
    changes->routes.back().close_reason = reason;
    ++kicked;
  }
  return kicked;
}

int64_t Registry::BannedUntilLocked(const std::string& user, int64_t now_ms) const {
  auto it = bans_.find(user);
  return it == bans_.end() || it->second <= now_ms ? 0 : it->second;
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
  changes->routes.push_back(ConnectionEvent(RouteEventKind::kRemoved, std::move(*removed), reason));
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
        // Every edge enforces bans; connections only concern their own edge.
        if (e.kind == RouteEventKind::kBanned ||
            (e.kind != RouteEventKind::kUserCreated && e.connection.edge_id == sub.edge_filter)) {
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
        if (sub.started) sub.watcher->OnPresence(changes.presence);
        continue;
      }
      filtered.clear();
      if (!sub.started) continue;  // its snapshot, taken later, will include these
      for (const auto& p : changes.presence) {
        if (sub.users.contains(p.user)) filtered.push_back(p);
      }
      if (!filtered.empty()) sub.watcher->OnPresence(filtered);
    }
  }
}

absl::StatusOr<ListUsersResult> Registry::ListUsers(const std::string& after, int limit,
                                                    bool online_only) const {
  if (limit < 0 || static_cast<size_t>(limit) > kMaxListUsers) {
    return WithReason(absl::InvalidArgumentError(absl::StrCat("page_size must be 0-", kMaxListUsers,
                                                              " (0 = ", kMaxListUsers, ")")),
                      "INVALID_PAGE_SIZE");
  }
  // A token is the last name of the previous page; any well-formed name
  // works (the user it named may be gone by now).
  if (!after.empty() && !ValidateUserName(after).ok()) {
    return WithReason(absl::InvalidArgumentError("page_token is not one this service gave"),
                      "INVALID_PAGE_TOKEN");
  }
  const size_t n = limit == 0 ? kMaxListUsers : static_cast<size_t>(limit);
  absl::ReaderMutexLock lock(&mu_);
  ListUsersResult result;
  bool more = false;
  result.users = store_->ListUsers(after, n, online_only, &more);
  if (more && !result.users.empty()) result.next = result.users.back().name;
  return result;
}

absl::StatusOr<UserDetails> Registry::GetUser(const std::string& name) const {
  if (absl::Status s = ValidateUserName(name); !s.ok()) return BadName(s, "name");
  const int64_t now = clock_->NowMs();
  absl::ReaderMutexLock lock(&mu_);
  if (!store_->HasUser(name)) return UserNotFound();
  return UserDetails{name, store_->ConnectionsOfUser(name), BannedUntilLocked(name, now)};
}

absl::StatusOr<UsersResult> Registry::GetUsers(const std::vector<std::string>& names) const {
  if (names.size() > kMaxGetUsers) {
    return WithReason(
        absl::InvalidArgumentError(absl::StrCat("at most ", kMaxGetUsers, " names per call")),
        "TOO_MANY_NAMES");
  }
  for (size_t i = 0; i < names.size(); ++i) {
    if (absl::Status s = ValidateUserName(names[i]); !s.ok()) {
      return BadName(s, absl::StrCat("names[", i, "]"));
    }
  }
  const int64_t now = clock_->NowMs();
  absl::flat_hash_set<absl::string_view> seen;
  UsersResult result;
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& name : names) {
    if (!seen.insert(name).second) continue;
    if (!store_->HasUser(name)) {
      result.not_found.push_back(name);
      continue;
    }
    result.users.push_back({name, store_->ConnectionsOfUser(name), BannedUntilLocked(name, now)});
  }
  return result;
}

Counts Registry::GetCounts() const {
  absl::ReaderMutexLock lock(&mu_);
  return {
      static_cast<int64_t>(store_->UserCount()), static_cast<int64_t>(store_->OnlineUserCount()),
      static_cast<int64_t>(store_->ConnectionTotal()), static_cast<int64_t>(store_->EdgeCount())};
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
  const int64_t now = clock_->NowMs();
  std::vector<Ban> bans;
  for (const auto& [user, until] : bans_) {
    if (until > now) bans.push_back({user, until});
  }
  watcher->OnRouteSnapshot(users, connections, bans);
  route_watchers_.push_back({watcher, edge_filter});
}

void Registry::RemoveRouteWatcher(RouteWatcher* watcher) {
  absl::MutexLock lock(&mu_);
  route_watchers_.erase(std::remove_if(route_watchers_.begin(), route_watchers_.end(),
                                       [&](const auto& s) { return s.watcher == watcher; }),
                        route_watchers_.end());
}

absl::Status Registry::AddPresenceWatcher(PresenceWatcher* watcher,
                                          const std::vector<std::string>& users) {
  if (users.size() > kMaxWatchedUsers) {
    return WithReason(
        absl::InvalidArgumentError(absl::StrCat("at most ", kMaxWatchedUsers, " users per watch")),
        "TOO_MANY_NAMES");
  }
  PresenceSubscription sub{watcher, {}, {}, false};
  for (size_t i = 0; i < users.size(); ++i) {
    if (absl::Status s = ValidateUserName(users[i]); !s.ok()) {
      return BadName(s, absl::StrCat("users[", i, "]"));
    }
    if (sub.users.insert(users[i]).second) sub.names.push_back(users[i]);
  }
  absl::MutexLock lock(&mu_);
  if (presence_watchers_.size() >= max_presence_watchers_) {
    return WithReason(absl::ResourceExhaustedError("too many presence watchers on this server"),
                      "TOO_MANY_WATCHERS");
  }
  presence_watchers_.push_back(std::move(sub));
  if (clock_->NowMs() >= presence_ready_ms_) {
    StartSnapshotLocked(presence_watchers_.back());
  } else {
    warming_up_ = true;
  }
  return absl::OkStatus();
}

void Registry::StartSnapshotLocked(PresenceSubscription& sub) {
  const int64_t now = clock_->NowMs();
  std::vector<PresenceChange> snapshot;
  if (sub.names.empty()) {
    absl::flat_hash_set<std::string> online;
    for (const auto& c : store_->AllConnections()) online.insert(c.user);
    snapshot.reserve(online.size());
    for (const auto& user : online) snapshot.push_back({user, true, now});
    std::sort(snapshot.begin(), snapshot.end(),
              [](const auto& a, const auto& b) { return a.user < b.user; });
  } else {
    snapshot.reserve(sub.names.size());
    for (const auto& user : sub.names) {
      snapshot.push_back({user, store_->ConnectionCount(user) > 0, now});
    }
  }
  sub.watcher->OnPresenceSnapshot(snapshot, now);
  sub.started = true;
}

void Registry::StartDueSnapshots() {
  absl::MutexLock lock(&mu_);
  StartDueSnapshotsLocked();
}

void Registry::StartDueSnapshotsLocked() {
  if (!warming_up_ || clock_->NowMs() < presence_ready_ms_) return;
  for (auto& sub : presence_watchers_) {
    if (!sub.started) StartSnapshotLocked(sub);
  }
  warming_up_ = false;
}

void Registry::Tick() {
  ExpireLeases();
  StartDueSnapshots();
  absl::MutexLock lock(&mu_);
  const int64_t now = clock_->NowMs();
  absl::erase_if(bans_, [now](const auto& ban) { return ban.second <= now; });
}

void Registry::RemovePresenceWatcher(PresenceWatcher* watcher) {
  absl::MutexLock lock(&mu_);
  presence_watchers_.erase(std::remove_if(presence_watchers_.begin(), presence_watchers_.end(),
                                          [&](const auto& s) { return s.watcher == watcher; }),
                           presence_watchers_.end());
}

void Registry::ApplyFeed(const std::vector<FeedEvent>& events) {
  absl::MutexLock lock(&mu_);
  Changes changes;
  for (const FeedEvent& e : events) {
    switch (e.kind) {
      case FeedEvent::Kind::kAdded:
        AddLocked(e.connection, &changes);
        break;
      case FeedEvent::Kind::kRemoved: {
        const size_t before = changes.routes.size();
        RemoveLocked(e.connection.connection_id, e.reason, &changes);
        if (changes.routes.size() == before) break;
        if (e.reason == RemoveReason::kKicked) {
          changes.routes.back().close_code = e.close_code;
          changes.routes.back().close_reason = e.close_reason;
        } else if (e.reason == RemoveReason::kLeaseExpired && metrics_ != nullptr) {
          metrics_->expired_connections.Increment();
        }
        break;
      }
      case FeedEvent::Kind::kBanned:
        SetBanLocked(e.connection.user, e.ban_until_ms, &changes);
        break;
      case FeedEvent::Kind::kForgotten:
        ForgetLocked(e.connection.user);
        break;
      case FeedEvent::Kind::kEdgeUp:
        // The shared step already removed a previous process's connections
        // (events before this one): the mirror's edge has none left.
        TouchLocked(e.connection.edge_id, e.incarnation, &changes);
        break;
      case FeedEvent::Kind::kEdgeDown:
        DropEdgeLocked(e.connection.edge_id, /*expired=*/true);
        break;
    }
  }
  PublishLocked(changes);
}

void Registry::ApplySnapshot(const SharedSnapshot& snapshot) {
  absl::MutexLock lock(&mu_);
  // No user ever seen: no edge can hold connections to register again, so
  // presence need not wait (as a first start in memory mode).
  const bool first_start = store_->UserCount() == 0;
  bool new_epoch, restarted;
  {
    absl::MutexLock epoch_lock(&epoch_mu_);
    new_epoch = epoch_ != snapshot.epoch;
    restarted = new_epoch && !epoch_.empty();
    epoch_ = snapshot.epoch;
  }
  if (restarted) {
    // Redis lost everything and edges are about to register again: the
    // differences would be every connection going and coming back (users
    // flapping offline and online). End the watches instead, as a restart of
    // a single connection-service does; watchers come back for a snapshot
    // (presence ones once the warm-up below is over).
    spdlog::warn("the shared registry started afresh (epoch {}): watchers must watch again",
                 snapshot.epoch);
    for (auto& sub : route_watchers_) sub.watcher->OnReset();
    for (auto& sub : presence_watchers_) sub.watcher->OnReset();
    route_watchers_.clear();
    presence_watchers_.clear();
  }
  Changes changes;
  // Edges first: a new incarnation drops the mirror's connections of the
  // old one, and the snapshot's connections come back right after.
  absl::flat_hash_set<std::string> edges;
  for (const auto& [edge, incarnation] : snapshot.edges) {
    edges.insert(edge);
    TouchLocked(edge, incarnation, &changes);
  }
  for (const auto& edge : store_->EdgesSeenBefore(std::numeric_limits<int64_t>::max())) {
    if (!edges.contains(edge)) DropEdgeLocked(edge, /*expired=*/false);
  }
  // Additions before removals: a user whose connection changed stays online.
  absl::flat_hash_set<std::string> ids;
  for (const auto& c : snapshot.connections) {
    ids.insert(c.connection_id);
    AddLocked(c, &changes);
  }
  for (const auto& c : store_->AllConnections()) {
    // Gone from the shared state while this replica was not following it:
    // most likely a lease that ended (never a kick: edges close kicked
    // sockets, and only the feed knows who was kicked).
    if (!ids.contains(c.connection_id)) {
      RemoveLocked(c.connection_id, RemoveReason::kLeaseExpired, &changes);
    }
  }
  const int64_t now = clock_->NowMs();
  absl::flat_hash_map<std::string, int64_t> bans;
  for (const auto& ban : snapshot.bans) {
    if (ban.until_ms > now) bans[ban.user] = ban.until_ms;
  }
  std::vector<std::string> lifted;
  for (const auto& [user, until] : bans_) {
    if (!bans.contains(user) && until > now) lifted.push_back(user);
  }
  for (const auto& user : lifted) SetBanLocked(user, 0, &changes);
  for (const auto& [user, until] : bans) {
    auto it = bans_.find(user);
    if (it == bans_.end() || it->second != until) SetBanLocked(user, until, &changes);
  }
  PublishLocked(changes);
  // The first snapshot, or a shared state that started afresh (its edges
  // are still re-registering): presence snapshots wait for what is left of
  // a lease since the epoch began.
  if (new_epoch) {
    presence_ready_ms_ = now + (first_start ? 0 : std::max<int64_t>(0, snapshot.warmup_left_ms));
    StartDueSnapshotsLocked();
  }
}

}  // namespace chat::connection
