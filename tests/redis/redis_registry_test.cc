// Two connection-service replicas (Registry + RedisRegistry each, as main.cc
// builds them) on one real redis-server.
#include "connection-service/redis_registry.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/grpc_status.h"
#include "connection-service/memory_store.h"
#include "connection-service/redis_client.h"
#include "connection-service/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/redis_server.h"

namespace chat::connection {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using Clock = std::chrono::steady_clock;

bool WaitUntil(const std::function<bool()>& done,
               std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  const auto deadline = Clock::now() + timeout;
  while (!done()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

std::string Describe(const RouteEvent& e) {
  switch (e.kind) {
    case RouteEventKind::kUserCreated:
      return "new " + e.connection.user;
    case RouteEventKind::kBanned:
      return absl::StrCat("ban ", e.connection.user, e.ban_until_ms > 0 ? "" : " lifted");
    case RouteEventKind::kAdded:
      return absl::StrCat("+", e.connection.connection_id, " ", e.connection.user, "@",
                          e.connection.edge_id);
    case RouteEventKind::kRemoved: {
      const std::string why = e.reason == RemoveReason::kUnregistered   ? "unregistered"
                              : e.reason == RemoveReason::kLeaseExpired ? "lease"
                              : e.reason == RemoveReason::kKicked
                                  ? absl::StrCat("kicked ", e.close_code, " ", e.close_reason)
                                  : "none";
      return absl::StrCat("-", e.connection.connection_id, " ", e.connection.user, "@",
                          e.connection.edge_id, " ", why);
    }
  }
  return "?";
}

// Called by the replica's tailer thread; read by the test.
class Recorder : public RouteWatcher, public PresenceWatcher {
 public:
  void OnRouteSnapshot(const std::vector<std::string>&, const std::vector<ConnectionInfo>& c,
                       const std::vector<Ban>&) override {
    absl::MutexLock lock(&mu_);
    for (const auto& x : c) snapshot_.push_back(x.connection_id);
  }
  void OnRouteEvents(const std::vector<RouteEvent>& events) override {
    absl::MutexLock lock(&mu_);
    for (const auto& e : events) {
      routes_.push_back(Describe(e));
      if (e.kind == RouteEventKind::kBanned) last_ban_until_ = e.ban_until_ms;
    }
  }
  void OnPresenceSnapshot(const std::vector<PresenceChange>& users, int64_t) override {
    absl::MutexLock lock(&mu_);
    presence_started_ = true;
    for (const auto& u : users) presence_snapshot_.push_back(u.user);
  }
  void OnPresence(const std::vector<PresenceChange>& changes) override {
    absl::MutexLock lock(&mu_);
    for (const auto& c : changes) presence_.push_back(c.user + (c.online ? " on" : " off"));
  }
  // Both interfaces have one; each call counts.
  void OnReset() override {
    absl::MutexLock lock(&mu_);
    ++resets_;
  }
  int resets() const {
    absl::MutexLock lock(&mu_);
    return resets_;
  }
  std::vector<std::string> routes() const {
    absl::MutexLock lock(&mu_);
    return routes_;
  }
  std::vector<std::string> presence() const {
    absl::MutexLock lock(&mu_);
    return presence_;
  }
  bool presence_started() const {
    absl::MutexLock lock(&mu_);
    return presence_started_;
  }
  int64_t last_ban_until() const {
    absl::MutexLock lock(&mu_);
    return last_ban_until_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> snapshot_, routes_, presence_, presence_snapshot_;
  bool presence_started_ = false;
  int64_t last_ban_until_ = 0;
  int resets_ = 0;
};

// One connection-service replica, wired like main.cc does.
struct Replica {
  // `known_users`: users loaded from the durable store at start.
  Replica(const std::string& url, int64_t lease_ms, int64_t new_epoch_warmup_ms = 0,
          const std::vector<std::string>& known_users = {}) {
    RedisRegistryOptions options;
    options.target = *ParseRegistryUrl(url);
    options.lease_timeout_ms = lease_ms;
    options.new_epoch_warmup_ms = new_epoch_warmup_ms;
    shared = std::make_unique<RedisRegistry>(options);
    RegistryOptions registry_options;
    registry_options.lease_timeout_ms = lease_ms;
    registry_options.shared = shared.get();
    auto store = std::make_unique<MemoryStore>();
    for (const auto& user : known_users) store->AddUser(user);
    registry = std::make_unique<Registry>(std::move(store), SystemClock::Get(), registry_options);
  }
  ~Replica() {
    registry.reset();  // stops the tailer first
    shared.reset();
  }
  Registry* operator->() { return registry.get(); }
  bool Online(const std::string& user) {
    absl::StatusOr<UserDetails> u = registry->GetUser(user);
    return u.ok() && !u->connections.empty();
  }

  std::unique_ptr<RedisRegistry> shared;
  std::unique_ptr<Registry> registry;
};

ConnectionInfo Conn(const std::string& id, const std::string& user) {
  return {id, user, "", 1700000000000, "test-agent/1", "127.0.0.1"};
}

class RedisRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = testing::RedisServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    redis_ = *std::move(server);
  }
  // Waits until both replicas followed Redis (their first snapshot).
  void WaitFollowing(Replica& r) {
    ASSERT_TRUE(WaitUntil([&] { return !r->instance_id().empty(); })) << "no snapshot";
  }

  std::unique_ptr<testing::RedisServer> redis_;
};

TEST_F(RedisRegistryTest, RegisterOnOneReplicaReadOnTheOther) {
  Replica a(redis_->Url(), 10'000), b(redis_->Url(), 10'000);
  WaitFollowing(a);
  WaitFollowing(b);
  EXPECT_EQ(a->instance_id(), b->instance_id());
  ASSERT_TRUE(a->Register("e1", "i1", {Conn("e1-1", "alice"), Conn("e1-2", "bob")}).ok());
  // Read your own writes on the replica that wrote.
  absl::StatusOr<UserDetails> alice = a->GetUser("alice");
  ASSERT_TRUE(alice.ok()) << alice.status();
  ASSERT_EQ(alice->connections.size(), 1u);
  EXPECT_EQ(alice->connections[0].edge_id, "e1");
  EXPECT_EQ(alice->connections[0].user_agent, "test-agent/1");
  EXPECT_EQ(alice->connections[0].connected_at_ms, 1700000000000);
  // And on the other one, once the feed reached it.
  ASSERT_TRUE(WaitUntil([&] { return b.Online("alice") && b.Online("bob"); }));
  Counts counts = b->GetCounts();
  EXPECT_EQ(counts.users, 2);
  EXPECT_EQ(counts.online_users, 2);
  EXPECT_EQ(counts.connections, 2);
  EXPECT_EQ(counts.edges, 1);
  // Registering a known connection again changes nothing; a heartbeat knows the lease.
  ASSERT_TRUE(b->Register("e1", "i1", {Conn("e1-1", "alice")}).ok());
  absl::StatusOr<HeartbeatResult> beat = b->Heartbeat("e1", "i1");
  ASSERT_TRUE(beat.ok()) << beat.status();
  EXPECT_TRUE(beat->lease_known);
  EXPECT_EQ(b->GetCounts().connections, 2);
  ASSERT_TRUE(b->Unregister("e1", "i1", {"e1-1"}).ok());
  EXPECT_FALSE(b.Online("alice"));
  ASSERT_TRUE(WaitUntil([&] { return !a.Online("alice"); }));
  absl::StatusOr<ListUsersResult> list = a->ListUsers("", 0, /*online_only=*/true);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->users.size(), 1u);
  EXPECT_EQ(list->users[0].name, "bob");
}

TEST_F(RedisRegistryTest, WatchersOnOneReplicaSeeTheOthersEventsInOrder) {
  Replica a(redis_->Url(), 10'000), b(redis_->Url(), 10'000);
  WaitFollowing(a);
  WaitFollowing(b);
  Recorder on_a, on_b, e2_on_b;
  a->AddRouteWatcher(&on_a, "");
  b->AddRouteWatcher(&on_b, "");
  b->AddRouteWatcher(&e2_on_b, "e2");
  ASSERT_TRUE(a->AddPresenceWatcher(&on_a, {}).ok());
  ASSERT_TRUE(b->AddPresenceWatcher(&on_b, {}).ok());
  ASSERT_TRUE(WaitUntil([&] { return on_a.presence_started() && on_b.presence_started(); }));

  ASSERT_TRUE(a->Register("e1", "i1", {Conn("e1-1", "alice")}).ok());
  ASSERT_TRUE(b->Register("e2", "j1", {Conn("e2-1", "bob"), Conn("e2-2", "alice")}).ok());
  ASSERT_TRUE(a->Unregister("e1", "i1", {"e1-1"}).ok());
  ASSERT_TRUE(a->Unregister("e2", "j1", {"e2-2"}).ok());
  // e2 restarted: its old connections go, the new process registers again.
  ASSERT_TRUE(a->Register("e2", "j2", {Conn("e2-7", "bob")}).ok());

  const std::vector<std::string> routes = {
      "new alice",
      "+e1-1 alice@e1",
      "new bob",
      "+e2-1 bob@e2",
      "+e2-2 alice@e2",
      "-e1-1 alice@e1 unregistered",
      "-e2-2 alice@e2 unregistered",
      "-e2-1 bob@e2 lease",
      "+e2-7 bob@e2",
  };
  const std::vector<std::string> presence = {"alice on", "bob on", "alice off", "bob off",
                                             "bob on"};
  ASSERT_TRUE(WaitUntil([&] { return on_b.routes().size() >= routes.size(); }));
  EXPECT_THAT(on_b.routes(), ElementsAreArray(routes));
  EXPECT_THAT(on_a.routes(), ElementsAreArray(routes));
  EXPECT_THAT(e2_on_b.routes(),
              ElementsAre("+e2-1 bob@e2", "+e2-2 alice@e2", "-e2-2 alice@e2 unregistered",
                          "-e2-1 bob@e2 lease", "+e2-7 bob@e2"));
  ASSERT_TRUE(WaitUntil([&] { return on_b.presence().size() >= presence.size(); }));
  EXPECT_THAT(on_b.presence(), ElementsAreArray(presence));
  EXPECT_THAT(on_a.presence(), ElementsAreArray(presence));
  a->RemoveRouteWatcher(&on_a);
  a->RemovePresenceWatcher(&on_a);
  b->RemoveRouteWatcher(&on_b);
  b->RemoveRouteWatcher(&e2_on_b);
  b->RemovePresenceWatcher(&on_b);
}

TEST_F(RedisRegistryTest, ConcurrentWritersOnBothReplicasLeaveOneOrder) {
  Replica a(redis_->Url(), 10'000), b(redis_->Url(), 10'000);
  WaitFollowing(a);
  WaitFollowing(b);
  Recorder on_a, on_b;
  a->AddRouteWatcher(&on_a, "");
  b->AddRouteWatcher(&on_b, "");
  constexpr int kThreads = 4, kRounds = 50;
  std::vector<std::thread> writers;
  const auto start = Clock::now();
  for (int t = 0; t < kThreads; ++t) {
    Replica& r = t % 2 == 0 ? a : b;
    writers.emplace_back([&r, t] {
      const std::string edge = absl::StrCat("e", t);
      for (int i = 0; i < kRounds; ++i) {
        const std::string id = absl::StrCat(edge, "-", i);
        const std::string user = absl::StrCat("u", i % 7);
        EXPECT_TRUE(r->Register(edge, "i", {Conn(id, user)}).ok());
        if (i % 3 == 0) {
          EXPECT_TRUE(r->Unregister(edge, "i", {id}).ok());
        }
      }
    });
  }
  for (auto& w : writers) w.join();
  const auto took =
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
  const int calls = kThreads * (kRounds + (kRounds + 2) / 3);
  std::printf("[ timing ] %d mutations from %d threads on 2 replicas: %.0f us each on average\n",
              calls, kThreads, static_cast<double>(took) / calls * kThreads);
  const int64_t live = kThreads * (kRounds - (kRounds + 2) / 3);
  ASSERT_TRUE(WaitUntil(
      [&] { return a->GetCounts().connections == live && b->GetCounts().connections == live; }));
  ASSERT_TRUE(WaitUntil([&] { return on_a.routes().size() == on_b.routes().size(); }));
  // Every replica saw every change in the same order.
  EXPECT_EQ(on_a.routes(), on_b.routes());
  EXPECT_EQ(a->GetCounts().online_users, b->GetCounts().online_users);
  a->RemoveRouteWatcher(&on_a);
  b->RemoveRouteWatcher(&on_b);
}

TEST_F(RedisRegistryTest, EitherReplicaExpiresLeases) {
  constexpr int64_t kLeaseMs = 600;
  Replica a(redis_->Url(), kLeaseMs), b(redis_->Url(), kLeaseMs);
  WaitFollowing(a);
  WaitFollowing(b);
  Recorder on_a;
  a->AddRouteWatcher(&on_a, "");
  ASSERT_TRUE(a->Register("e1", "i1", {Conn("e1-1", "alice")}).ok());
  ASSERT_TRUE(a->Register("e2", "j1", {Conn("e2-1", "bob")}).ok());
  // e2 keeps heartbeating (through A), e1 went silent; only B runs the reaper.
  const auto start = Clock::now();
  ASSERT_TRUE(WaitUntil(
      [&] {
        EXPECT_TRUE(a->Heartbeat("e2", "j1").ok());
        b->Tick();
        return !a.Online("alice");
      },
      std::chrono::seconds(5)));
  const auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  // Not before the lease, and not before B followed Redis for a lease.
  EXPECT_GE(took, kLeaseMs - 50);
  EXPECT_TRUE(a.Online("bob"));
  EXPECT_EQ(a->GetCounts().edges, 1);
  EXPECT_THAT(on_a.routes(), ::testing::Contains("-e1-1 alice@e1 lease"));
  // The edge that lost its lease hears so and registers again.
  absl::StatusOr<HeartbeatResult> beat = a->Heartbeat("e1", "i1");
  ASSERT_TRUE(beat.ok());
  EXPECT_FALSE(beat->lease_known);
  // Both replicas expiring at once is harmless (the script is idempotent).
  a->Tick();
  b->Tick();
  EXPECT_TRUE(a.Online("bob"));
  a->RemoveRouteWatcher(&on_a);
}

TEST_F(RedisRegistryTest, DisconnectWithBanOnOneReplicaReachesTheOthersEdgeWatcher) {
  Replica a(redis_->Url(), 10'000), b(redis_->Url(), 10'000);
  WaitFollowing(a);
  WaitFollowing(b);
  Recorder edge_on_a;
  a->AddRouteWatcher(&edge_on_a, "e1");
  ASSERT_TRUE(a->Register("e1", "i1", {Conn("e1-1", "alice"), Conn("e1-2", "alice")}).ok());
  ASSERT_TRUE(WaitUntil([&] { return b.Online("alice"); }));
  KickRequest kick;
  kick.user = "alice";
  kick.code = 4003;
  kick.reason = "bye";
  kick.set_ban = true;
  kick.ban_ms = 60'000;
  const int64_t before = SystemClock::Get()->NowMs();
  absl::StatusOr<KickResult> kicked = b->Disconnect(kick);
  ASSERT_TRUE(kicked.ok()) << kicked.status();
  EXPECT_EQ(kicked->disconnected, 2);
  EXPECT_GE(kicked->banned_until_ms, before + 60'000 - 1000);
  EXPECT_LE(kicked->banned_until_ms, before + 60'000 + 1000);
  ASSERT_TRUE(WaitUntil([&] { return edge_on_a.routes().size() >= 5; }));
  const std::vector<std::string> routes = edge_on_a.routes();
  // The ban first (every edge gets bans; it refuses the reconnect), then
  // the kicks, in either order, with code and reason.
  ASSERT_EQ(routes.size(), 5u);
  EXPECT_EQ(routes[0], "+e1-1 alice@e1");
  EXPECT_EQ(routes[1], "+e1-2 alice@e1");
  EXPECT_EQ(routes[2], "ban alice");
  EXPECT_EQ(edge_on_a.last_ban_until(), kicked->banned_until_ms);
  EXPECT_THAT(
      std::vector<std::string>(routes.begin() + 3, routes.end()),
      UnorderedElementsAre("-e1-1 alice@e1 kicked 4003 bye", "-e1-2 alice@e1 kicked 4003 bye"));
  absl::StatusOr<UserDetails> alice = a->GetUser("alice");
  ASSERT_TRUE(alice.ok());
  EXPECT_EQ(alice->banned_until_ms, kicked->banned_until_ms);
  EXPECT_TRUE(alice->connections.empty());
  // A kick by connection id of an unknown connection is NOT_FOUND; a user
  // never seen too.
  KickRequest none;
  none.connection_id = "e1-99";
  EXPECT_EQ(a->Disconnect(none).status().code(), absl::StatusCode::kNotFound);
  none.connection_id.clear();
  none.user = "nobody";
  EXPECT_EQ(a->Disconnect(none).status().code(), absl::StatusCode::kNotFound);
  // Lifting the ban on A reaches B.
  KickRequest lift;
  lift.user = "alice";
  lift.set_ban = true;
  lift.ban_ms = 0;
  ASSERT_TRUE(a->Disconnect(lift).ok());
  ASSERT_TRUE(WaitUntil([&] { return b->GetUser("alice")->banned_until_ms == 0; }));
  a->RemoveRouteWatcher(&edge_on_a);
}

TEST_F(RedisRegistryTest, ForgetUserOnOneReplicaErasesItEverywhere) {
  Replica a(redis_->Url(), 10'000), b(redis_->Url(), 10'000);
  WaitFollowing(a);
  WaitFollowing(b);
  ASSERT_TRUE(a->Register("e1", "i1", {Conn("e1-1", "carol")}).ok());
  ASSERT_TRUE(WaitUntil([&] { return b.Online("carol"); }));
  absl::StatusOr<ForgetResult> forgot = b->ForgetUser("carol", 0, "erased");
  ASSERT_TRUE(forgot.ok()) << forgot.status();
  EXPECT_TRUE(forgot->existed);
  EXPECT_EQ(forgot->disconnected, 1);
  EXPECT_EQ(b->GetUser("carol").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(WaitUntil(
      [&] { return a->GetUser("carol").status().code() == absl::StatusCode::kNotFound; }));
  EXPECT_EQ(a->GetCounts().users, 0);
}

TEST_F(RedisRegistryTest, RedisDownMutationsFailFastReadsStillAnswer) {
  Replica a(redis_->Url(), 10'000);
  WaitFollowing(a);
  ASSERT_TRUE(a->Register("e1", "i1", {Conn("e1-1", "alice")}).ok());
  ASSERT_TRUE(redis_->Kill().ok());
  const auto start = Clock::now();
  absl::Status registered = a->Register("e1", "i1", {Conn("e1-2", "bob")});
  const auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  EXPECT_EQ(registered.code(), absl::StatusCode::kUnavailable) << registered;
  EXPECT_EQ(ReasonOf(registered), "REGISTRY_UNAVAILABLE");
  EXPECT_LT(took, 1500);
  std::printf("[ timing ] Register with Redis down failed in %lld ms\n",
              static_cast<long long>(took));
  absl::StatusOr<HeartbeatResult> beat = a->Heartbeat("e1", "i1");
  EXPECT_EQ(beat.status().code(), absl::StatusCode::kUnavailable);
  KickRequest kick;
  kick.user = "alice";
  EXPECT_EQ(a->Disconnect(kick).status().code(), absl::StatusCode::kUnavailable);
  // Reads come from the mirror.
  absl::StatusOr<UserDetails> alice = a->GetUser("alice");
  ASSERT_TRUE(alice.ok()) << alice.status();
  EXPECT_EQ(alice->connections.size(), 1u);
  EXPECT_EQ(a->GetCounts().connections, 1);
  EXPECT_TRUE(a->ListUsers("", 0, false).ok());
  // The reaper does not expire anything while Redis is away.
  EXPECT_EQ(a->ExpireLeases(), 0u);
}

TEST_F(RedisRegistryTest, AHungRedisFailsMutationsWithinTheCommandTimeout) {
  Replica a(redis_->Url(), 10'000);
  WaitFollowing(a);
  ASSERT_TRUE(a->Register("e1", "i1", {Conn("e1-1", "alice")}).ok());
  ASSERT_TRUE(redis_->Suspend().ok());
  const auto start = Clock::now();
  absl::Status registered = a->Register("e1", "i1", {Conn("e1-2", "bob")});
  const auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  redis_->Resume();
  EXPECT_EQ(registered.code(), absl::StatusCode::kUnavailable) << registered;
  std::printf("[ timing ] Register with Redis hung (SIGSTOP) failed in %lld ms\n",
              static_cast<long long>(took));
  EXPECT_LT(took, 1600);
  EXPECT_TRUE(a.Online("alice"));
  // Once it answers again, so does the registry.
  ASSERT_TRUE(WaitUntil([&] { return a->Register("e1", "i1", {Conn("e1-2", "bob")}).ok(); }));
  EXPECT_TRUE(a.Online("bob"));
}

TEST_F(RedisRegistryTest, ConcurrentCallersOnAHungRedisAllFailWithinOneTimeout) {
  // More callers than pooled connections: those queued behind a connection
  // stuck on the hung server must not each wait a command timeout of their own.
  Replica a(redis_->Url(), 10'000);
  WaitFollowing(a);
  ASSERT_TRUE(a->Register("e1", "i1", {Conn("e1-1", "alice")}).ok());
  ASSERT_TRUE(redis_->Suspend().ok());
  constexpr int kCallers = 16;
  std::vector<int64_t> took(kCallers, 0);
  std::vector<absl::StatusCode> codes(kCallers, absl::StatusCode::kOk);
  std::vector<std::thread> callers;
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([&, i] {
      const auto start = Clock::now();
      codes[i] = a->Heartbeat("e1", "i1").status().code();
      took[i] = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
    });
  }
  for (auto& t : callers) t.join();
  redis_->Resume();
  const int64_t slowest = *std::max_element(took.begin(), took.end());
  std::printf("[ timing ] %d concurrent heartbeats on a hung Redis: slowest failed in %lld ms\n",
              kCallers, static_cast<long long>(slowest));
  for (int i = 0; i < kCallers; ++i) EXPECT_EQ(codes[i], absl::StatusCode::kUnavailable) << i;
  EXPECT_LT(slowest, 1800);
}

TEST_F(RedisRegistryTest, StopsPromptlyWhileRedisIsHung) {
  // SIGTERM with a hung Redis: the feed thread must not hold the exit up for
  // long (it was blocked in XREAD with a timeout of several seconds).
  auto a = std::make_unique<Replica>(redis_->Url(), 10'000);
  WaitFollowing(*a);
  ASSERT_TRUE((*a)->Register("e1", "i1", {Conn("e1-1", "alice")}).ok());
  ASSERT_TRUE(redis_->Suspend().ok());
  // Whatever the feed thread was doing (an XREAD BLOCK, most likely), the
  // server will not answer it now.
  const auto start = Clock::now();
  a.reset();
  const auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  redis_->Resume();
  std::printf("[ timing ] replica stopped with Redis hung in %lld ms\n",
              static_cast<long long>(took));
  EXPECT_LT(took, 3000);
}

TEST_F(RedisRegistryTest, RedisRestartedEmptyGetsANewEpochAndEdgesHealIt) {
  Replica a(redis_->Url(), 10'000), b(redis_->Url(), 10'000);
  WaitFollowing(a);
  WaitFollowing(b);
  const std::string epoch = a->instance_id();
  Recorder on_b;
  b->AddRouteWatcher(&on_b, "");
  ASSERT_TRUE(b->AddPresenceWatcher(&on_b, {}).ok());
  ASSERT_TRUE(a->Register("e1", "i1", {Conn("e1-1", "alice"), Conn("e1-2", "bob")}).ok());
  ASSERT_TRUE(WaitUntil([&] { return b.Online("alice"); }));
  const size_t routes_before = on_b.routes().size();
  const size_t presence_before = on_b.presence().size();
  ASSERT_TRUE(redis_->Kill().ok());
  ASSERT_TRUE(redis_->Restart().ok());
  const auto restarted = Clock::now();
  // Both replicas follow the new, empty Redis: a new epoch, the same on both.
  ASSERT_TRUE(
      WaitUntil([&] { return a->instance_id() != epoch && b->instance_id() == a->instance_id(); }));
  EXPECT_FALSE(a.Online("alice"));
  // Watches end, as when a single connection-service restarts (their
  // clients watch again), instead of every user flapping offline and online.
  EXPECT_EQ(on_b.resets(), 2);  // the route watch and the presence watch
  // The edge's next heartbeat hears its lease is unknown (and sees the new
  // instance id): it registers every live connection again, as after a
  // connection-service restart.
  absl::StatusOr<HeartbeatResult> beat = a->Heartbeat("e1", "i1");
  ASSERT_TRUE(beat.ok()) << beat.status();
  EXPECT_FALSE(beat->lease_known);
  ASSERT_TRUE(a->Register("e1", "i1", {Conn("e1-1", "alice"), Conn("e1-2", "bob")}).ok());
  ASSERT_TRUE(WaitUntil([&] { return b.Online("alice") && b.Online("bob"); }));
  const auto healed =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - restarted).count();
  std::printf("[ timing ] Redis restarted empty -> state re-registered and seen by both: %lld ms\n",
              static_cast<long long>(healed));
  EXPECT_EQ(b->GetCounts().connections, 2);
  EXPECT_EQ(on_b.routes().size(), routes_before);
  EXPECT_EQ(on_b.presence().size(), presence_before);
  // A watcher that comes back gets the state re-registered; presence
  // snapshots wait for the warm-up (0 here).
  Recorder again;
  b->AddRouteWatcher(&again, "");
  ASSERT_TRUE(b->AddPresenceWatcher(&again, {}).ok());
  EXPECT_TRUE(again.presence_started());
  b->RemoveRouteWatcher(&again);
  b->RemovePresenceWatcher(&again);
}

TEST_F(RedisRegistryTest, FeedGapResynchronisesWithTheDifferences) {
  Replica a(redis_->Url(), 10'000), b(redis_->Url(), 10'000);
  WaitFollowing(a);
  WaitFollowing(b);
  ASSERT_TRUE(a->Register("e1", "i1", {Conn("e1-1", "alice"), Conn("e1-2", "bob")}).ok());
  ASSERT_TRUE(WaitUntil([&] { return b.Online("bob"); }));
  Recorder on_b;
  b->AddRouteWatcher(&on_b, "");
  ASSERT_TRUE(b->AddPresenceWatcher(&on_b, {"alice", "bob", "carol", "dave"}).ok());
  const int64_t resyncs = b.shared->resyncs();
  b.shared->PauseFeedForTest(true);
  // While B is behind: bob leaves, carol comes and goes, dave comes, and the
  // feed is trimmed past all of it.
  ASSERT_TRUE(a->Unregister("e1", "i1", {"e1-2"}).ok());
  ASSERT_TRUE(a->Register("e1", "i1", {Conn("e1-3", "carol")}).ok());
  ASSERT_TRUE(a->Unregister("e1", "i1", {"e1-3"}).ok());
  ASSERT_TRUE(a->Register("e1", "i1", {Conn("e1-4", "dave")}).ok());
  ASSERT_TRUE(redis_->Command({"XTRIM", "chat:feed", "MAXLEN", "0"}).ok());
  ASSERT_TRUE(a->Register("e1", "i1", {Conn("e1-5", "alice")}).ok());
  b.shared->PauseFeedForTest(false);
  ASSERT_TRUE(WaitUntil([&] { return b.shared->resyncs() > resyncs; }));
  ASSERT_TRUE(WaitUntil([&] { return b->GetCounts().connections == 3; }));
  // Only the real differences, as ordinary events (carol never showed up
  // online: she came and went while B was not looking).
  EXPECT_THAT(on_b.routes(), UnorderedElementsAre("new dave", "+e1-4 dave@e1", "+e1-5 alice@e1",
                                                  "-e1-2 bob@e1 lease"));
  EXPECT_THAT(on_b.presence(), UnorderedElementsAre("dave on", "bob off"));
  EXPECT_FALSE(b.Online("carol"));
  EXPECT_TRUE(b.Online("alice"));
  // And B follows the feed again afterwards.
  ASSERT_TRUE(a->Unregister("e1", "i1", {"e1-4"}).ok());
  ASSERT_TRUE(WaitUntil([&] { return !b.Online("dave"); }));
  EXPECT_EQ(b.shared->resyncs(), resyncs + 1);
  b->RemoveRouteWatcher(&on_b);
  b->RemovePresenceWatcher(&on_b);
}

TEST_F(RedisRegistryTest, PresenceSnapshotsWaitALeaseAfterANewEpoch) {
  // Users were seen before (the durable store has them): edges may hold
  // connections that a new, empty Redis does not know yet.
  constexpr int64_t kWarmupMs = 800;
  Replica a(redis_->Url(), 10'000, kWarmupMs, {"alice"});
  Recorder watcher;
  const auto start = Clock::now();
  ASSERT_TRUE(a->AddPresenceWatcher(&watcher, {}).ok());
  ASSERT_TRUE(WaitUntil([&] {
    a->Tick();
    return watcher.presence_started();
  }));
  const auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  EXPECT_GE(took, kWarmupMs - 100);
  a->RemovePresenceWatcher(&watcher);
  // Nobody ever seen: nothing to wait for.
  ASSERT_TRUE(redis_->Command({"FLUSHALL"}).ok());
  Replica fresh(redis_->Url(), 10'000, kWarmupMs);
  WaitFollowing(fresh);
  Recorder at_once;
  ASSERT_TRUE(fresh->AddPresenceWatcher(&at_once, {}).ok());
  EXPECT_TRUE(at_once.presence_started());
  fresh->RemovePresenceWatcher(&at_once);
}

TEST_F(RedisRegistryTest, ASnapshotOfManyConnectionsIsAppliedWhole) {
  // 500,000 connections in Redis: a replica that starts takes them all in
  // one snapshot and follows the feed from there. How long Redis answered
  // nobody meanwhile is printed, not asserted (it depends on the machine's
  // load): a MULTI/EXEC of HVALS took ~1 s here, the Lua script it replaced
  // over 2 s.
  constexpr int kConnections = 500'000;
  // In scripts of 10,000 each: one script of 500,000 outlasts the test
  // client's timeout on a loaded machine.
  constexpr int kPerScript = 10'000;
  for (int from = 1; from <= kConnections; from += kPerScript) {
    ASSERT_TRUE(redis_
                    ->Command({"EVAL",
                               "for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do "
                               "redis.call('HSET', 'chat:conns', "
                               "'e1-' .. i, '{\"id\":\"e1-' .. i .. '\",\"user\":\"u' .. i .. "
                               "'\",\"edge\":\"e1\",\"at\":1700000000000,\"ua\":\"Mozilla/5.0 "
                               "(X11; Linux x86_64)\",\"ip\":\"127.0.0.1\"}') end return 1",
                               "0", absl::StrCat(from), absl::StrCat(from + kPerScript - 1)})
                    .ok());
  }
  std::atomic<bool> done{false};
  std::atomic<int64_t> slowest_ping_ms{0};
  std::atomic<int> failed_pings{0};
  std::thread prober([&] {
    while (!done) {
      const auto start = Clock::now();
      // Fails after 2 s without an answer.
      if (!testing::RedisCommand(redis_->port(), {"PING"}).ok()) ++failed_pings;
      const int64_t ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
      if (ms > slowest_ping_ms) slowest_ping_ms = ms;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  const auto start = Clock::now();
  Replica a(redis_->Url(), 10'000);
  const bool followed =
      WaitUntil([&] { return !a->instance_id().empty(); }, std::chrono::seconds(60));
  done = true;
  prober.join();
  std::printf(
      "[ timing ] snapshot of %d connections applied in %lld ms; slowest PING meanwhile "
      "%lld ms (%d unanswered in 2 s)\n",
      kConnections,
      static_cast<long long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count()),
      static_cast<long long>(slowest_ping_ms.load()), failed_pings.load());
  ASSERT_TRUE(followed);
  EXPECT_EQ(a->GetCounts().connections, kConnections);
  // And the replica follows the feed from there. Redis may still be busy
  // with the aftermath of the load (the PING above can take over a second on a
  // loaded machine), and a mutation Redis does not answer within the command
  // timeout fails UNAVAILABLE, as it should: the caller retries.
  absl::Status registered;
  ASSERT_TRUE(WaitUntil(
      [&] {
        registered = a->Register("e2", "i1", {Conn("e2-1", "alice")});
        return registered.ok();
      },
      std::chrono::seconds(20)))
      << registered;
  EXPECT_EQ(a->GetCounts().connections, kConnections + 1);
}

TEST_F(RedisRegistryTest, ScriptsReloadAfterTheScriptCacheIsEmptied) {
  Replica a(redis_->Url(), 10'000);
  WaitFollowing(a);
  ASSERT_TRUE(a->Register("e1", "i1", {Conn("e1-1", "alice")}).ok());
  // What a promoted replica or restarted server looks like to EVALSHA.
  ASSERT_TRUE(redis_->Command({"SCRIPT", "FLUSH"}).ok());
  ASSERT_TRUE(a->Register("e1", "i1", {Conn("e1-2", "bob")}).ok());
  EXPECT_TRUE(a.Online("bob"));
}

TEST_F(RedisRegistryTest, DatabaseNumberSelectsTheDatabase) {
  Replica a(redis_->Url() + "/2", 10'000);
  WaitFollowing(a);
  ASSERT_TRUE(a->Register("e1", "i1", {Conn("e1-1", "alice")}).ok());
  absl::StatusOr<std::string> in_2 = redis_->Command({"EVAL",
                                                      "redis.call('SELECT', 2) return "
                                                      "redis.call('HLEN', 'chat:conns')",
                                                      "0"});
  ASSERT_TRUE(in_2.ok()) << in_2.status();
  EXPECT_EQ(*in_2, "1");
  absl::StatusOr<std::string> in_0 = redis_->Command({"HLEN", "chat:conns"});
  ASSERT_TRUE(in_0.ok());
  EXPECT_EQ(*in_0, "0");
}

}  // namespace
}  // namespace chat::connection
