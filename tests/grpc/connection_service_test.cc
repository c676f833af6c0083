#include "connection-service/connection_service.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "chat/v1/chat.grpc.pb.h"
#include "common/grpc_server.h"
#include "connection-service/memory_store.h"
#include "connection-service/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/grpc/grpc_test_util.h"
#include "tests/support/fake_clock.h"

namespace chat::connection {
namespace {

using chat::testing::Ctx;
using chat::testing::Show;
using chat::testing::StreamCollector;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
namespace v1 = chat::v1;

constexpr int64_t kLeaseMs = 10'000;

// A route change as "ADDED e1-1 alice@e1", "REMOVED e1-1 alice@e1 KICKED", "USER_CREATED bob".
std::string Describe(const v1::RouteChange& c) {
  const auto& conn = c.connection();
  if (c.kind() == v1::RouteChange::USER_CREATED) return "USER_CREATED " + conn.user();
  std::string s = absl::StrCat(v1::RouteChange::Kind_Name(c.kind()), " ", conn.connection_id(), " ",
                               conn.user(), "@", conn.edge_id());
  if (c.reason() != v1::RouteChange::REASON_UNSPECIFIED) {
    absl::StrAppend(&s, " ", v1::RouteChange::Reason_Name(c.reason()));
  }
  return s;
}

std::vector<std::string> Changes(const std::vector<v1::RouteUpdate>& updates, size_t from = 0) {
  std::vector<std::string> out;
  for (size_t i = from; i < updates.size(); ++i) {
    for (const auto& c : updates[i].changes()) out.push_back(Describe(c));
  }
  return out;
}

std::vector<std::string> Presence(const std::vector<v1::PresenceEvent>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(e.name() + (e.online() ? " on" : " off"));
  return out;
}

v1::Connection Conn(const std::string& id, const std::string& user) {
  v1::Connection c;
  c.set_connection_id(id);
  c.set_user(user);
  c.set_connected_at_ms(1764050000000);
  c.set_user_agent("wscat/5");
  c.set_ip("127.0.0.1");
  return c;
}

class ConnectionServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status started = server_.Start({&service_, &edge_registry_});
    ASSERT_TRUE(started.ok()) << started;
    channel_ = server_.channel();
    stub_ = v1::ConnectionService::NewStub(channel_);
    edges_ = v1::EdgeRegistry::NewStub(channel_);
  }

  grpc::Status Register(const std::string& edge, std::vector<v1::Connection> conns,
                        const std::string& incarnation = "inc-1",
                        v1::RegisterResponse* response = nullptr) {
    v1::RegisterRequest request;
    request.set_edge_id(edge);
    request.set_incarnation(incarnation);
    for (auto& c : conns) *request.add_connections() = std::move(c);
    v1::RegisterResponse ignored;
    return edges_->Register(Ctx().get(), request, response ? response : &ignored);
  }
  grpc::Status Unregister(const std::string& edge, std::vector<std::string> ids) {
    v1::UnregisterRequest request;
    request.set_edge_id(edge);
    request.set_incarnation("inc-1");
    for (auto& id : ids) request.add_connection_ids(id);
    v1::UnregisterResponse response;
    grpc::Status status = edges_->Unregister(Ctx().get(), request, &response);
    EXPECT_EQ(response.instance_id(), status.ok() ? "cs-test" : "");
    return status;
  }
  v1::HeartbeatResponse Heartbeat(const std::string& edge, const std::string& incarnation) {
    v1::HeartbeatRequest request;
    request.set_edge_id(edge);
    request.set_incarnation(incarnation);
    v1::HeartbeatResponse response;
    grpc::Status status = edges_->Heartbeat(Ctx().get(), request, &response);
    EXPECT_TRUE(status.ok()) << Show(status);
    return response;
  }
  // Connection ids of `user`, or the call's error.
  std::vector<std::string> ConnectionsOf(const std::string& user) {
    v1::GetUserRequest request;
    request.set_name(user);
    v1::User response;
    grpc::Status status = stub_->GetUser(Ctx().get(), request, &response);
    if (!status.ok()) return {Show(status)};
    std::vector<std::string> ids;
    for (const auto& c : response.connections()) ids.push_back(c.connection_id());
    return ids;
  }
  // "name:1"/"name:0" per user, then "next=<next>" when there is one; or the error.
  std::vector<std::string> ListUsers(const std::string& after, int limit, bool online_only) {
    v1::ListUsersRequest request;
    request.set_page_token(after);
    request.set_page_size(limit);
    request.set_online_only(online_only);
    v1::ListUsersResponse response;
    grpc::Status status = stub_->ListUsers(Ctx().get(), request, &response);
    if (!status.ok()) return {Show(status)};
    std::vector<std::string> out;
    for (const auto& u : response.users()) out.push_back(u.name() + (u.online() ? ":1" : ":0"));
    if (!response.next_page_token().empty()) {
      out.push_back("next=" + response.next_page_token());
    }
    return out;
  }
  std::unique_ptr<StreamCollector<v1::RouteUpdate>> WatchRoutes(const std::string& edge) {
    request_routes_.set_edge_id(edge);
    return std::make_unique<StreamCollector<v1::RouteUpdate>>(
        [this](grpc::ClientContext* ctx, grpc::ClientReadReactor<v1::RouteUpdate>* reactor) {
          edges_->async()->WatchRoutes(ctx, &request_routes_, reactor);
        });
  }

  chat::testing::FakeClock clock_{1764050000000};
  Registry registry_{std::make_unique<MemoryStore>(), &clock_, kLeaseMs};
  NameClaims claims_{std::make_unique<MemoryNameOwners>(), &clock_};
  ConnectionServiceImpl service_{&registry_, "cs-test"};
  EdgeRegistryImpl edge_registry_{&registry_, "cs-test", {}, &claims_};
  chat::testing::InProcessServer server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ConnectionService::Stub> stub_;
  std::unique_ptr<v1::EdgeRegistry::Stub> edges_;
  v1::WatchRoutesRequest request_routes_;
};

TEST_F(ConnectionServiceTest, RegisterThenGetUserShowsTheConnection) {
  v1::RegisterResponse registered;
  grpc::Status status = Register("e1", {Conn("e1-1", "alice")}, "inc-1", &registered);
  ASSERT_TRUE(status.ok()) << Show(status);
  EXPECT_EQ(registered.instance_id(), "cs-test") << "edges detect a restarted registry by this";

  v1::GetUserRequest request;
  request.set_name("alice");
  v1::User alice;
  status = stub_->GetUser(Ctx().get(), request, &alice);
  ASSERT_TRUE(status.ok()) << Show(status);
  EXPECT_EQ(alice.name(), "alice");
  EXPECT_TRUE(alice.online());
  ASSERT_EQ(alice.connections_size(), 1);
  const v1::Connection& c = alice.connections(0);
  EXPECT_EQ(c.connection_id(), "e1-1");
  EXPECT_EQ(c.edge_id(), "e1");
  EXPECT_EQ(c.user(), "alice");
  EXPECT_EQ(c.connected_at_ms(), 1764050000000);
  EXPECT_EQ(c.user_agent(), "wscat/5");
  EXPECT_EQ(c.ip(), "127.0.0.1");

  ASSERT_TRUE(Unregister("e1", {"e1-1"}).ok());
  status = stub_->GetUser(Ctx().get(), request, &alice);
  ASSERT_TRUE(status.ok()) << Show(status);
  EXPECT_FALSE(alice.online()) << "alice has no live connection any more";
}

TEST_F(ConnectionServiceTest, ClaimNameGrantsANameToItsFirstSubjectOnly) {
  auto claim = [&](const std::string& name, const std::string& subject, bool* granted) {
    v1::ClaimNameRequest request;
    request.set_name(name);
    request.set_subject(subject);
    v1::ClaimNameResponse response;
    grpc::Status status = edges_->ClaimName(Ctx().get(), request, &response);
    *granted = response.granted();
    return status;
  };
  bool granted = false;
  ASSERT_TRUE(claim("Alice", "sub-a", &granted).ok());
  EXPECT_TRUE(granted);
  ASSERT_TRUE(claim("Alice", "sub-a", &granted).ok());
  EXPECT_TRUE(granted) << "the owner may claim it again (every connection does)";
  ASSERT_TRUE(claim("Alice", "sub-m", &granted).ok());
  EXPECT_FALSE(granted) << "another subject presenting Alice";
  EXPECT_EQ(claim(" Alice", "sub-m", &granted).error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_EQ(claim("Bob", "", &granted).error_code(), grpc::INVALID_ARGUMENT);
}

TEST_F(ConnectionServiceTest, ErrorsUseCanonicalCodes) {
  EXPECT_EQ(Register("e1", {Conn("e1-1", " alice")}).error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_EQ(Register("", {Conn("e1-1", "alice")}).error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_THAT(ConnectionsOf("nobody"), ElementsAre(::testing::StartsWith("code 5:")))
      << "NOT_FOUND (5) for an unknown user";
  EXPECT_THAT(ListUsers("", -1, false), ElementsAre(::testing::StartsWith("code 3:")))
      << "INVALID_ARGUMENT (3) for a negative limit";
}

TEST_F(ConnectionServiceTest, HeartbeatTellsTheEdgeWhetherItsLeaseIsKnown) {
  v1::HeartbeatResponse fresh = Heartbeat("e1", "inc-1");
  EXPECT_FALSE(fresh.lease_known()) << "a registry that never saw e1 must ask it to register";
  EXPECT_EQ(fresh.lease_timeout_ms(), kLeaseMs);
  EXPECT_EQ(fresh.instance_id(), "cs-test");

  ASSERT_TRUE(Register("e1", {Conn("e1-1", "alice")}).ok());
  EXPECT_TRUE(Heartbeat("e1", "inc-1").lease_known());

  clock_.Advance(kLeaseMs + 1);
  EXPECT_EQ(registry_.ExpireLeases(), 1u);
  EXPECT_THAT(ConnectionsOf("alice"), IsEmpty()) << "the lease ran out: alice is offline";
  EXPECT_FALSE(Heartbeat("e1", "inc-1").lease_known()) << "after expiry the edge must re-register";
}

TEST_F(ConnectionServiceTest, HeartbeatWithANewIncarnationDropsTheOldConnections) {
  ASSERT_TRUE(Register("e1", {Conn("e1-1", "alice")}, "before-restart").ok());
  EXPECT_FALSE(Heartbeat("e1", "after-restart").lease_known());
  EXPECT_THAT(ConnectionsOf("alice"), IsEmpty());
}

TEST_F(ConnectionServiceTest, ListUsersPagesAndFiltersOnline) {
  ASSERT_TRUE(Register("e1", {Conn("e1-1", "carol"), Conn("e1-2", "alice"), Conn("e1-3", "bob"),
                              Conn("e1-4", "dave")})
                  .ok());
  ASSERT_TRUE(Unregister("e1", {"e1-3"}).ok());
  EXPECT_THAT(ListUsers("", 0, false), ElementsAre("alice:1", "bob:0", "carol:1", "dave:1"));
  EXPECT_THAT(ListUsers("", 2, false), ElementsAre("alice:1", "bob:0", "next=bob"));
  EXPECT_THAT(ListUsers("bob", 2, false), ElementsAre("carol:1", "dave:1"));
  EXPECT_THAT(ListUsers("", 0, true), ElementsAre("alice:1", "carol:1", "dave:1"));
  EXPECT_THAT(ListUsers("alice", 1, true), ElementsAre("carol:1", "next=carol"));
}

TEST_F(ConnectionServiceTest, DisconnectKicksAndTheEdgeLearnsOfIt) {
  ASSERT_TRUE(Register("e1", {Conn("e1-1", "alice"), Conn("e1-2", "bob")}).ok());
  ASSERT_TRUE(Register("e2", {Conn("e2-1", "alice")}).ok());
  auto e1 = WatchRoutes("e1");
  ASSERT_EQ(e1->WaitFor(1).size(), 1u) << "no snapshot on the edge's route stream";

  v1::DisconnectRequest request;
  request.set_user("alice");
  v1::DisconnectResponse response;
  grpc::Status status = stub_->Disconnect(Ctx().get(), request, &response);
  ASSERT_TRUE(status.ok()) << Show(status);
  EXPECT_EQ(response.disconnected(), 2);
  EXPECT_THAT(ConnectionsOf("alice"), IsEmpty());
  EXPECT_THAT(Changes(e1->WaitFor(2), 1), ElementsAre("REMOVED e1-1 alice@e1 KICKED"))
      << "e1 must close its socket for e1-1 and hear nothing of e2";

  v1::DisconnectRequest one;
  one.set_connection_id("e1-2");
  status = stub_->Disconnect(Ctx().get(), one, &response);
  ASSERT_TRUE(status.ok()) << Show(status);
  EXPECT_EQ(response.disconnected(), 1);

  v1::DisconnectRequest neither;
  EXPECT_EQ(stub_->Disconnect(Ctx().get(), neither, &response).error_code(),
            grpc::INVALID_ARGUMENT);
  v1::DisconnectRequest unknown;
  unknown.set_user("nobody");
  EXPECT_EQ(stub_->Disconnect(Ctx().get(), unknown, &response).error_code(), grpc::NOT_FOUND);
}

TEST_F(ConnectionServiceTest, WatchRoutesStartsWithASnapshotThenCarriesChanges) {
  ASSERT_TRUE(Register("e1", {Conn("e1-1", "alice")}).ok());
  ASSERT_TRUE(Register("e2", {Conn("e2-1", "bob")}).ok());
  ASSERT_TRUE(Unregister("e2", {"e2-1"}).ok());

  auto routes = WatchRoutes("");
  std::vector<v1::RouteUpdate> got = routes->WaitFor(1);
  ASSERT_EQ(got.size(), 1u) << "no snapshot within 10 s";
  const v1::RouteUpdate& snapshot = got[0];
  EXPECT_TRUE(snapshot.reset()) << "the first message must tell the reader to drop its table";
  EXPECT_TRUE(snapshot.snapshot_done()) << "a small snapshot fits in one message";
  EXPECT_THAT(snapshot.users(), UnorderedElementsAre("alice", "bob"))
      << "offline users are in the snapshot, so unknown and offline stay distinct";
  EXPECT_THAT(Changes({snapshot}), ElementsAre("ADDED e1-1 alice@e1"));

  ASSERT_TRUE(Register("e2", {Conn("e2-2", "carol")}).ok());
  ASSERT_TRUE(Unregister("e1", {"e1-1"}).ok());
  got = routes->WaitFor(3);
  ASSERT_EQ(got.size(), 3u) << "expected the snapshot and two change messages";
  EXPECT_THAT(Changes(got, 1), ElementsAre("USER_CREATED carol", "ADDED e2-2 carol@e2",
                                           "REMOVED e1-1 alice@e1 UNREGISTERED"));
  for (size_t i = 1; i < got.size(); ++i) {
    EXPECT_FALSE(got[i].reset()) << "message " << i;
    EXPECT_FALSE(got[i].snapshot_done()) << "message " << i;
    EXPECT_THAT(got[i].users(), IsEmpty()) << "message " << i;
  }
}

TEST_F(ConnectionServiceTest, LargeSnapshotComesInChunksResetFirstDoneLast) {
  std::vector<v1::Connection> conns;
  for (int i = 0; i < 6000; ++i)
    conns.push_back(Conn(absl::StrCat("e1-", i), absl::StrCat("u", i)));
  ASSERT_TRUE(Register("e1", std::move(conns)).ok());

  auto routes = WatchRoutes("");
  ASSERT_TRUE(routes->WaitUntil([](const std::vector<v1::RouteUpdate>& u) {
    for (const auto& m : u) {
      if (m.snapshot_done()) return true;
    }
    return false;
  })) << "no message with snapshot_done within 10 s";
  std::vector<v1::RouteUpdate> got = routes->Received();
  size_t users = 0, added = 0;
  for (const auto& m : got) {
    users += m.users_size();
    added += m.changes_size();
  }
  ASSERT_GT(got.size(), 1u) << "6000 users + 6000 routes should not fit one chunk";
  EXPECT_TRUE(got.front().reset());
  for (size_t i = 1; i < got.size(); ++i) EXPECT_FALSE(got[i].reset()) << "chunk " << i;
  for (size_t i = 0; i + 1 < got.size(); ++i) {
    EXPECT_FALSE(got[i].snapshot_done()) << "chunk " << i << " is not the last";
  }
  EXPECT_EQ(users, 6000u);
  EXPECT_EQ(added, 6000u);
}

TEST_F(ConnectionServiceTest, WatchRoutesForOneEdgeSeesOnlyThatEdge) {
  ASSERT_TRUE(Register("e1", {Conn("e1-1", "alice")}).ok());
  ASSERT_TRUE(Register("e2", {Conn("e2-1", "bob")}).ok());
  auto e1 = WatchRoutes("e1");
  std::vector<v1::RouteUpdate> got = e1->WaitFor(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].reset());
  EXPECT_TRUE(got[0].snapshot_done());
  EXPECT_THAT(got[0].users(), IsEmpty());
  EXPECT_THAT(Changes(got), ElementsAre("ADDED e1-1 alice@e1"));

  ASSERT_TRUE(Register("e2", {Conn("e2-2", "carol")}).ok());  // not for e1
  ASSERT_TRUE(Register("e1", {Conn("e1-2", "dave")}).ok());
  got = e1->WaitFor(2);
  EXPECT_THAT(Changes(got, 1), ElementsAre("ADDED e1-2 dave@e1"))
      << "the stream is ordered, so e2's change would have come first";
}

TEST_F(ConnectionServiceTest, AWatcherThatStopsReadingIsDroppedNotBuffered) {
  v1::WatchRoutesRequest request;
  auto ctx = Ctx(std::chrono::seconds(60));
  std::unique_ptr<grpc::ClientReader<v1::RouteUpdate>> reader =
      edges_->WatchRoutes(ctx.get(), request);
  v1::RouteUpdate update;
  ASSERT_TRUE(reader->Read(&update)) << "no snapshot";
  ASSERT_TRUE(update.snapshot_done());

  // The reader stops reading; the registry keeps changing. Far more changes
  // than any transport buffer holds, so the server's own queue must fill.
  ConnectionInfo c;
  c.connection_id = "e1-1";
  c.user = "alice";
  c.user_agent = std::string(1000, 'u');
  for (int i = 0; i < 60'000; ++i) {
    ASSERT_TRUE(registry_.Register("e1", "inc-1", {c}).ok());
    ASSERT_TRUE(registry_.Unregister("e1", "inc-1", {"e1-1"}).ok());
  }
  size_t read = 0;
  while (reader->Read(&update)) ++read;
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::RESOURCE_EXHAUSTED)
      << "a watcher 120000 updates behind must be cut off; got " << Show(status) << " after "
      << read << " updates";
  EXPECT_LT(read, 120'000u);

  // The registry is unharmed and a fresh watcher starts from a snapshot.
  ASSERT_TRUE(Register("e1", {Conn("e1-2", "bob")}).ok());
  auto fresh = WatchRoutes("");
  std::vector<v1::RouteUpdate> got = fresh->WaitFor(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_THAT(Changes(got), ElementsAre("ADDED e1-2 bob@e1"));
}

TEST_F(ConnectionServiceTest, WatchPresenceReportsTransitionsOfWatchedUsersOnly) {
  v1::WatchPresenceRequest request;
  request.add_users("bob");
  request.add_users("sync");
  StreamCollector<v1::PresenceEvent> presence(
      [&](grpc::ClientContext* ctx, grpc::ClientReadReactor<v1::PresenceEvent>* reactor) {
        stub_->async()->WatchPresence(ctx, &request, reactor);
      });
  // Presence has no snapshot, so nothing tells us when the watch is in place:
  // connect a watched user until its "on" shows up, then start from a clean slate.
  auto saw_on = [](const std::vector<v1::PresenceEvent>& e) {
    for (const auto& p : e) {
      if (p.online()) return true;
    }
    return false;
  };
  std::string sync_id;
  for (int i = 0; i < 100; ++i) {
    sync_id = absl::StrCat("e9-", i);
    ASSERT_TRUE(Register("e9", {Conn(sync_id, "sync")}).ok());
    if (presence.WaitUntil(saw_on, absl::Milliseconds(100))) break;
    ASSERT_TRUE(Unregister("e9", {sync_id}).ok());
    sync_id.clear();
  }
  ASSERT_FALSE(sync_id.empty()) << "WatchPresence never delivered an event";
  ASSERT_TRUE(Unregister("e9", {sync_id}).ok());
  ASSERT_TRUE(presence.WaitUntil([](const std::vector<v1::PresenceEvent>& e) {
    return e.size() >= 2 && e[e.size() - 2].online() && !e.back().online();
  })) << "the sentinel's 'off' never came; got "
      << ::testing::PrintToString(Presence(presence.Received()));
  presence.Clear();

  ASSERT_TRUE(Register("e1", {Conn("e1-1", "alice")}).ok());  // not watched
  ASSERT_TRUE(Register("e1", {Conn("e1-2", "bob")}).ok());
  ASSERT_TRUE(Register("e2", {Conn("e2-1", "bob")}).ok());  // bob's second device
  ASSERT_TRUE(Unregister("e1", {"e1-2"}).ok());
  ASSERT_TRUE(Unregister("e2", {"e2-1"}).ok());
  std::vector<v1::PresenceEvent> events = presence.WaitFor(2);
  EXPECT_THAT(Presence(events), ElementsAre("bob on", "bob off"))
      << "one 'on' for two devices, one 'off' when the last closes, nothing for alice";
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].ts_ms(), 1764050000000) << "presence carries the registry's time";

  ASSERT_TRUE(Register("e1", {Conn("e1-3", "bob")}).ok());
  clock_.Advance(kLeaseMs + 1);
  registry_.ExpireLeases();
  EXPECT_THAT(Presence(presence.WaitFor(4)), ElementsAre("bob on", "bob off", "bob on", "bob off"))
      << "an edge whose lease expires still produces 'off' for its users";
}

TEST_F(ConnectionServiceTest, HealthServiceAnswersServing) {
  std::string error;
  EXPECT_EQ(chat::testing::HealthCheck(channel_, "", &error), 1) << "1 = SERVING; " << error;
}

}  // namespace
}  // namespace chat::connection
