#include "connection-service/registry.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "connection-service/memory_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/fake_clock.h"

namespace chat::connection {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr int64_t kLeaseMs = 10'000;

// Event and presence records as short strings, so that failures read well:
// "+e1-1 alice@e1", "-e1-1 alice@e1 lease", "new bob", "alice on".
std::string Describe(const RouteEvent& e) {
  switch (e.kind) {
    case RouteEventKind::kUserCreated:
      return "new " + e.connection.user;
    case RouteEventKind::kBanned:
      return absl::StrCat("ban ", e.connection.user, " ", e.ban_until_ms);
    case RouteEventKind::kAdded:
      return absl::StrCat("+", e.connection.connection_id, " ", e.connection.user, "@",
                          e.connection.edge_id);
    case RouteEventKind::kRemoved: {
      const char* why = e.reason == RemoveReason::kUnregistered   ? "unregistered"
                        : e.reason == RemoveReason::kLeaseExpired ? "lease"
                        : e.reason == RemoveReason::kKicked       ? "kicked"
                                                                  : "none";
      return absl::StrCat("-", e.connection.connection_id, " ", e.connection.user, "@",
                          e.connection.edge_id, " ", why);
    }
  }
  return "?";
}

class RecordingRouteWatcher : public RouteWatcher {
 public:
  void OnRouteSnapshot(const std::vector<std::string>& users,
                       const std::vector<ConnectionInfo>& connections,
                       const std::vector<Ban>& /*bans*/) override {
    snapshot_users = users;
    for (const auto& c : connections) {
      snapshot.push_back(absl::StrCat(c.connection_id, " ", c.user, "@", c.edge_id));
    }
    ++snapshots;
  }
  void OnRouteEvents(const std::vector<RouteEvent>& batch) override {
    for (const auto& e : batch) events.push_back(Describe(e));
  }
  int snapshots = 0;
  std::vector<std::string> snapshot_users;
  std::vector<std::string> snapshot;
  std::vector<std::string> events;
};

class RecordingPresenceWatcher : public PresenceWatcher {
 public:
  void OnPresenceSnapshot(const std::vector<PresenceChange>&, int64_t) override {}
  void OnPresence(const std::vector<PresenceChange>& changes) override {
    for (const auto& c : changes) {
      events.push_back(c.user + (c.online ? " on" : " off"));
      last_ts_ms = c.ts_ms;
    }
  }
  std::vector<std::string> events;
  int64_t last_ts_ms = 0;
};

ConnectionInfo Conn(const std::string& id, const std::string& user) {
  ConnectionInfo c;
  c.connection_id = id;
  c.user = user;
  c.connected_at_ms = 1;
  c.user_agent = "test-agent";
  c.ip = "127.0.0.1";
  return c;
}

class RegistryTest : public ::testing::Test {
 protected:
  RegistryTest()
      : registry_(std::make_unique<MemoryStore>(), &clock_,
                  RegistryOptions{kLeaseMs, /*presence_warmup_ms=*/0}) {
    EXPECT_TRUE(registry_.AddPresenceWatcher(&presence_, {}).ok());
  }
  absl::StatusOr<int> Disconnect(const std::string& user, const std::string& connection_id) {
    KickRequest request;
    request.user = user;
    request.connection_id = connection_id;
    auto result = registry_.Disconnect(request);
    if (!result.ok()) return result.status();
    return result->disconnected;
  }
  ~RegistryTest() override { registry_.RemovePresenceWatcher(&presence_); }

  void Register(const std::string& edge, std::vector<ConnectionInfo> conns,
                const std::string& incarnation = "inc-1") {
    ASSERT_TRUE(registry_.Register(edge, incarnation, std::move(conns)).ok());
  }
  void Unregister(const std::string& edge, std::vector<std::string> ids,
                  const std::string& incarnation = "inc-1") {
    ASSERT_TRUE(registry_.Unregister(edge, incarnation, ids).ok());
  }
  // Connection ids of `user` ("<none>" when the user is unknown).
  std::vector<std::string> ConnectionsOf(const std::string& user) {
    auto details = registry_.GetUser(user);
    if (!details.ok()) return {"<none>"};
    std::vector<std::string> ids;
    for (const auto& c : details->connections) ids.push_back(c.connection_id);
    return ids;
  }
  // "name:1" for online, "name:0" for offline, plus "next=<next>" when set.
  std::vector<std::string> Page(const std::string& after, int limit, bool online_only) {
    auto page = registry_.ListUsers(after, limit, online_only);
    if (!page.ok()) return {std::string(page.status().message())};
    std::vector<std::string> out;
    for (const auto& u : page->users) out.push_back(u.name + (u.online ? ":1" : ":0"));
    if (!page->next.empty()) out.push_back("next=" + page->next);
    return out;
  }

  chat::testing::FakeClock clock_{1'000'000};
  Registry registry_;
  RecordingPresenceWatcher presence_;
};

// ----- registration and presence -----

TEST_F(RegistryTest, RegisterMakesTheUserKnownAndOnline) {
  Register("e1", {Conn("e1-1", "alice")});
  auto alice = registry_.GetUser("alice");
  ASSERT_TRUE(alice.ok()) << alice.status();
  ASSERT_EQ(alice->connections.size(), 1u);
  const ConnectionInfo& c = alice->connections[0];
  EXPECT_EQ(c.connection_id, "e1-1");
  EXPECT_EQ(c.edge_id, "e1") << "the edge id comes from the caller, not the connection";
  EXPECT_EQ(c.user_agent, "test-agent");
  EXPECT_EQ(c.ip, "127.0.0.1");
  EXPECT_THAT(presence_.events, ElementsAre("alice on"));
  EXPECT_EQ(presence_.last_ts_ms, 1'000'000) << "presence carries the registry's time";
}

TEST_F(RegistryTest, UnknownUserIsNotFound) {
  EXPECT_EQ(registry_.GetUser("nobody").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RegistryTest, InvalidRegistrationsChangeNothing) {
  EXPECT_EQ(registry_.Register("", "inc", {Conn("e1-1", "alice")}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_.Register("e1", "inc", {Conn("", "alice")}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_.Register("e1", "inc", {Conn("e1-1", "ok"), Conn("e1-2", " bad")}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry_.Register("e1", "inc", {Conn("e1-3", std::string(65, 'x'))}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ConnectionsOf("ok"), ElementsAre("<none>"))
      << "a batch with one bad entry must not register the good ones";
  EXPECT_THAT(presence_.events, IsEmpty());
}

TEST_F(RegistryTest, PresenceChangesOnlyBetweenZeroAndOneConnections) {
  Register("e1", {Conn("e1-1", "alice")});
  Register("e2", {Conn("e2-1", "alice")});  // second device
  Register("e1", {Conn("e1-2", "alice"), Conn("e1-3", "bob"), Conn("e1-4", "bob")});
  EXPECT_THAT(presence_.events, ElementsAre("alice on", "bob on"));

  Unregister("e1", {"e1-1"});
  Unregister("e2", {"e2-1"});
  Unregister("e1", {"e1-3"});
  EXPECT_THAT(presence_.events, ElementsAre("alice on", "bob on"))
      << "closing one of several connections must not report offline";
  Unregister("e1", {"e1-2", "e1-4"});
  EXPECT_THAT(presence_.events, ElementsAre("alice on", "bob on", "alice off", "bob off"));
  EXPECT_THAT(ConnectionsOf("alice"), IsEmpty()) << "the user stays known while offline";
}

TEST_F(RegistryTest, ReRegisteringAKnownConnectionChangesNothing) {
  Register("e1", {Conn("e1-1", "alice")});
  RecordingRouteWatcher routes;
  registry_.AddRouteWatcher(&routes, "");
  Register("e1", {Conn("e1-1", "alice")});
  EXPECT_THAT(routes.events, IsEmpty());
  EXPECT_THAT(ConnectionsOf("alice"), ElementsAre("e1-1"));
  EXPECT_THAT(presence_.events, ElementsAre("alice on"));
  registry_.RemoveRouteWatcher(&routes);
}

TEST_F(RegistryTest, AnEdgeCannotUnregisterAnotherEdgesConnections) {
  Register("e1", {Conn("e1-1", "alice")});
  Register("e2", {Conn("e2-1", "bob")});
  Unregister("e2", {"e1-1"});
  EXPECT_THAT(ConnectionsOf("alice"), ElementsAre("e1-1"));
  Unregister("e1", {"e1-1", "e1-404"});
  EXPECT_THAT(ConnectionsOf("alice"), IsEmpty());
}

// ----- leases -----

TEST_F(RegistryTest, HeartbeatReportsWhetherTheLeaseWasKnown) {
  auto first = registry_.Heartbeat("e1", "inc-1");
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(first->lease_known) << "a new edge must register its connections";
  auto second = registry_.Heartbeat("e1", "inc-1");
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(second->lease_known);
  EXPECT_EQ(registry_.Heartbeat("", "inc-1").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RegistryTest, LeaseExpiresOnlyAfterTheTimeoutWithoutHeartbeat) {
  Register("e1", {Conn("e1-1", "alice"), Conn("e1-2", "bob")});
  Register("e2", {Conn("e2-1", "carol")});
  RecordingRouteWatcher routes;
  registry_.AddRouteWatcher(&routes, "");

  clock_.Advance(kLeaseMs / 2);
  ASSERT_TRUE(registry_.Heartbeat("e2", "inc-1").ok());
  clock_.Advance(kLeaseMs / 2);
  EXPECT_EQ(registry_.ExpireLeases(), 0u) << "exactly the timeout since e1's last sign of life";
  EXPECT_THAT(ConnectionsOf("alice"), ElementsAre("e1-1"));

  clock_.Advance(1);
  EXPECT_EQ(registry_.ExpireLeases(), 2u) << "e1 is 1 ms past its lease";
  EXPECT_THAT(ConnectionsOf("alice"), IsEmpty());
  EXPECT_THAT(ConnectionsOf("bob"), IsEmpty());
  EXPECT_THAT(ConnectionsOf("carol"), ElementsAre("e2-1")) << "e2 heartbeated: it keeps its lease";
  EXPECT_THAT(routes.events, UnorderedElementsAre("-e1-1 alice@e1 lease", "-e1-2 bob@e1 lease"));
  EXPECT_THAT(presence_.events,
              ElementsAre("alice on", "bob on", "carol on", ::testing::_, ::testing::_));
  EXPECT_THAT(std::vector<std::string>(presence_.events.begin() + 3, presence_.events.end()),
              UnorderedElementsAre("alice off", "bob off"));
  EXPECT_EQ(presence_.last_ts_ms, 1'000'000 + kLeaseMs + 1);

  auto after = registry_.Heartbeat("e1", "inc-1");
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(after->lease_known) << "after expiry the edge must re-register";
  registry_.RemoveRouteWatcher(&routes);
}

TEST_F(RegistryTest, RegisterAndUnregisterAlsoRenewTheLease) {
  Register("e1", {Conn("e1-1", "alice")});
  clock_.Advance(kLeaseMs);
  Register("e1", {Conn("e1-2", "alice")});
  clock_.Advance(kLeaseMs);
  EXPECT_EQ(registry_.ExpireLeases(), 0u);
  Unregister("e1", {"e1-2"});
  clock_.Advance(kLeaseMs);
  EXPECT_EQ(registry_.ExpireLeases(), 0u);
  EXPECT_THAT(ConnectionsOf("alice"), ElementsAre("e1-1"));
}

TEST_F(RegistryTest, NewIncarnationDropsWhatThePreviousProcessLeft) {
  Register("e1", {Conn("e1-1", "alice"), Conn("e1-2", "bob")}, "old");
  Register("e2", {Conn("e2-1", "bob")});

  auto hb = registry_.Heartbeat("e1", "new");
  ASSERT_TRUE(hb.ok());
  EXPECT_FALSE(hb->lease_known) << "a restarted edge must re-register";
  EXPECT_THAT(ConnectionsOf("alice"), IsEmpty());
  EXPECT_THAT(ConnectionsOf("bob"), ElementsAre("e2-1")) << "other edges are untouched";
  EXPECT_THAT(presence_.events, ElementsAre("alice on", "bob on", "alice off"));

  Register("e1", {Conn("e1-1", "alice")}, "new");
  EXPECT_THAT(ConnectionsOf("alice"), ElementsAre("e1-1"));
  auto again = registry_.Heartbeat("e1", "new");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->lease_known);
}

TEST_F(RegistryTest, RegisterWithNewIncarnationReplacesOldConnections) {
  Register("e1", {Conn("e1-1", "alice")}, "old");
  Register("e1", {Conn("e1-9", "alice")}, "new");
  EXPECT_THAT(ConnectionsOf("alice"), ElementsAre("e1-9"));
}

// ----- route watchers -----

TEST_F(RegistryTest, RouteWatcherGetsASnapshotThenEveryChange) {
  Register("e1", {Conn("e1-1", "alice")});
  Register("e2", {Conn("e2-1", "bob")});
  Unregister("e2", {"e2-1"});  // bob: known, offline

  RecordingRouteWatcher routes;
  registry_.AddRouteWatcher(&routes, "");
  EXPECT_EQ(routes.snapshots, 1);
  EXPECT_THAT(routes.snapshot_users, UnorderedElementsAre("alice", "bob"));
  EXPECT_THAT(routes.snapshot, ElementsAre("e1-1 alice@e1"));
  EXPECT_THAT(routes.events, IsEmpty()) << "the snapshot is not repeated as events";

  Register("e2", {Conn("e2-2", "carol")});
  Unregister("e1", {"e1-1"});
  EXPECT_THAT(routes.events,
              ElementsAre("new carol", "+e2-2 carol@e2", "-e1-1 alice@e1 unregistered"));

  registry_.RemoveRouteWatcher(&routes);
  Register("e1", {Conn("e1-5", "dave")});
  EXPECT_EQ(routes.events.size(), 3u) << "a removed watcher got events";
}

TEST_F(RegistryTest, EdgeFilteredRouteWatcherSeesOnlyItsEdge) {
  Register("e1", {Conn("e1-1", "alice")});
  Register("e2", {Conn("e2-1", "bob")});

  RecordingRouteWatcher e1;
  registry_.AddRouteWatcher(&e1, "e1");
  EXPECT_THAT(e1.snapshot, ElementsAre("e1-1 alice@e1"));
  EXPECT_THAT(e1.snapshot_users, IsEmpty()) << "an edge has no use for the user list";

  Register("e2", {Conn("e2-2", "newbie")});
  Register("e1", {Conn("e1-2", "carol")});
  ASSERT_TRUE(Disconnect("", "e1-1").ok());
  EXPECT_THAT(e1.events, ElementsAre("+e1-2 carol@e1", "-e1-1 alice@e1 kicked"))
      << "no other edge's routes and no user creations";
  registry_.RemoveRouteWatcher(&e1);
}

// ----- presence watchers -----

TEST_F(RegistryTest, PresenceWatcherForChosenUsersSeesOnlyThem) {
  RecordingPresenceWatcher bob_only;
  ASSERT_TRUE(registry_.AddPresenceWatcher(&bob_only, {"bob"}).ok());
  Register("e1", {Conn("e1-1", "alice"), Conn("e1-2", "bob")});
  Unregister("e1", {"e1-1", "e1-2"});
  EXPECT_THAT(bob_only.events, ElementsAre("bob on", "bob off"));
  registry_.RemovePresenceWatcher(&bob_only);
  Register("e1", {Conn("e1-3", "bob")});
  EXPECT_EQ(bob_only.events.size(), 2u) << "a removed watcher got events";
}

// ----- ListUsers -----

TEST_F(RegistryTest, ListUsersIsSortedAndPaged) {
  Register("e1", {Conn("e1-1", "carol"), Conn("e1-2", "alice"), Conn("e1-3", "bob"),
                  Conn("e1-4", "dave")});
  Unregister("e1", {"e1-3"});  // bob offline

  EXPECT_THAT(Page("", 0, false), ElementsAre("alice:1", "bob:0", "carol:1", "dave:1"))
      << "limit 0 means the default page";
  EXPECT_THAT(Page("", 2, false), ElementsAre("alice:1", "bob:0", "next=bob"));
  EXPECT_THAT(Page("bob", 2, false), ElementsAre("carol:1", "dave:1"))
      << "no 'next' when the page ends exactly at the last user";
  EXPECT_THAT(Page("dave", 2, false), IsEmpty());
  EXPECT_THAT(Page("b", 10, false), ElementsAre("bob:0", "carol:1", "dave:1"))
      << "'after' need not be an existing name";
}

TEST_F(RegistryTest, ListUsersOnlineOnlySkipsOfflineUsersWhenPaging) {
  Register("e1", {Conn("e1-1", "alice"), Conn("e1-2", "bob"), Conn("e1-3", "carol"),
                  Conn("e1-4", "dave")});
  Unregister("e1", {"e1-2", "e1-4"});  // bob, dave offline

  EXPECT_THAT(Page("", 0, true), ElementsAre("alice:1", "carol:1"));
  EXPECT_THAT(Page("", 1, true), ElementsAre("alice:1", "next=alice"));
  EXPECT_THAT(Page("alice", 1, true), ElementsAre("carol:1"))
      << "only offline users follow carol: there is no next page";
}

TEST_F(RegistryTest, ListUsersPagesAre1000AtMost) {
  std::vector<ConnectionInfo> conns;
  for (int i = 0; i < 1001; ++i) {
    conns.push_back(Conn(absl::StrCat("e1-", i), absl::StrCat("user", 10000 + i)));
  }
  Register("e1", conns);
  EXPECT_EQ(registry_.ListUsers("", 1001, false).status().code(),
            absl::StatusCode::kInvalidArgument)
      << "a page size over 1000 is refused, not capped";
  auto page = registry_.ListUsers("", 0, false);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->users.size(), 1000u);
  EXPECT_EQ(page->next, "user10999");
  auto rest = registry_.ListUsers(page->next, 1000, false);
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->users.size(), 1u);
  EXPECT_EQ(rest->users[0].name, "user11000");
  EXPECT_EQ(registry_.ListUsers("", -1, false).status().code(), absl::StatusCode::kInvalidArgument);
}

// ----- Disconnect -----

TEST_F(RegistryTest, DisconnectAUserRemovesAllTheirConnections) {
  Register("e1", {Conn("e1-1", "alice"), Conn("e1-2", "bob")});
  Register("e2", {Conn("e2-1", "alice")});
  RecordingRouteWatcher routes;
  registry_.AddRouteWatcher(&routes, "");

  auto n = Disconnect("alice", "");
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 2);
  EXPECT_THAT(ConnectionsOf("alice"), IsEmpty());
  EXPECT_THAT(ConnectionsOf("bob"), ElementsAre("e1-2"));
  EXPECT_THAT(routes.events,
              UnorderedElementsAre("-e1-1 alice@e1 kicked", "-e2-1 alice@e2 kicked"));
  EXPECT_THAT(presence_.events, ElementsAre("alice on", "bob on", "alice off"));
  registry_.RemoveRouteWatcher(&routes);
}

TEST_F(RegistryTest, DisconnectOneConnection) {
  Register("e1", {Conn("e1-1", "alice"), Conn("e1-2", "alice")});
  auto n = Disconnect("", "e1-2");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1);
  EXPECT_THAT(ConnectionsOf("alice"), ElementsAre("e1-1"));
  EXPECT_EQ(Disconnect("", "e1-404").status().code(), absl::StatusCode::kNotFound)
      << "an unknown connection id is NOT_FOUND";
}

TEST_F(RegistryTest, DisconnectNeedsExactlyOneTarget) {
  EXPECT_EQ(Disconnect("", "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Disconnect("alice", "e1-1").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Disconnect("nobody", "").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace chat::connection
