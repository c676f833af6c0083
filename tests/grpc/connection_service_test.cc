#include "connection-service/connection_service.h"

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "chat/v1/chat.grpc.pb.h"
#include "common/grpc_server.h"
#include "common/grpc_status.h"
#include "connection-service/memory_store.h"
#include "connection-service/registry.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
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
  if (c.kind() == v1::RouteChange::BANNED) {
    return absl::StrCat("BANNED ", conn.user(), " ", c.ban_until_ms());
  }
  std::string s = absl::StrCat(v1::RouteChange::Kind_Name(c.kind()), " ", conn.connection_id(), " ",
                               conn.user(), "@", conn.edge_id());
  if (c.reason() != v1::RouteChange::REASON_UNSPECIFIED) {
    absl::StrAppend(&s, " ", v1::RouteChange::Reason_Name(c.reason()));
  }
  if (c.reason() == v1::RouteChange::KICKED) {
    absl::StrAppend(&s, " ", c.close_code(), " '", c.close_reason(), "'");
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

// "bob on", "bob off"; snapshot events end in "*" ("bob on*"), snapshot_end is "END".
std::vector<std::string> Presence(const std::vector<v1::PresenceEvent>& events, size_t from = 0) {
  std::vector<std::string> out;
  for (size_t i = from; i < events.size(); ++i) {
    const auto& e = events[i];
    if (e.snapshot_end()) {
      out.push_back(e.name().empty() ? "END" : "END " + e.name());
      continue;
    }
    out.push_back(e.name() + (e.online() ? " on" : " off") + (e.snapshot() ? "*" : ""));
  }
  return out;
}

bool HasSnapshotEnd(const std::vector<v1::PresenceEvent>& events) {
  for (const auto& e : events) {
    if (e.snapshot_end()) return true;
  }
  return false;
}

// "<code> <reason>" from a status's google.rpc.ErrorInfo ("3 INVALID_NAME"), or what is wrong.
std::string Reason(const grpc::Status& status) {
  google::rpc::Status details;
  if (!details.ParseFromString(status.error_details())) return "unparsable details";
  for (const auto& any : details.details()) {
    google::rpc::ErrorInfo info;
    if (any.UnpackTo(&info)) {
      return absl::StrCat(static_cast<int>(status.error_code()), " ", info.reason());
    }
  }
  return absl::StrCat(static_cast<int>(status.error_code()), " without ErrorInfo");
}

constexpr char kInvalidName[] = "3 INVALID_NAME";
constexpr char kUserNotFound[] = "5 USER_NOT_FOUND";

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
    // Each stream reads its own request (the call may start after this returns).
    auto request = std::make_shared<v1::WatchRoutesRequest>();
    request->set_edge_id(edge);
    return std::make_unique<StreamCollector<v1::RouteUpdate>>(
        [this, request](grpc::ClientContext* ctx,
                        grpc::ClientReadReactor<v1::RouteUpdate>* reactor) {
          edges_->async()->WatchRoutes(ctx, request.get(), reactor);
        });
  }
  // Public WatchPresence (internal: through EdgeRegistry) of `users`.
  std::unique_ptr<StreamCollector<v1::PresenceEvent>> WatchPresence(
      std::vector<std::string> users, bool internal = false,
      v1::ConnectionService::Stub* stub = nullptr) {
    auto request = std::make_shared<v1::WatchPresenceRequest>();
    for (auto& u : users) request->add_users(std::move(u));
    if (stub == nullptr) stub = stub_.get();
    return std::make_unique<StreamCollector<v1::PresenceEvent>>(
        [this, request, internal, stub](grpc::ClientContext* ctx,
                                        grpc::ClientReadReactor<v1::PresenceEvent>* reactor) {
          if (internal) {
            edges_->async()->WatchPresence(ctx, request.get(), reactor);
          } else {
            stub->async()->WatchPresence(ctx, request.get(), reactor);
          }
        });
  }
  grpc::Status GetUser(const std::string& name, v1::User* user = nullptr) {
    v1::GetUserRequest request;
    request.set_name(name);
    v1::User ignored;
    return stub_->GetUser(Ctx().get(), request, user ? user : &ignored);
  }
  grpc::Status LookupUser(const std::string& name) {
    v1::GetUserRequest request;
    request.set_name(name);
    v1::User ignored;
    return edges_->LookupUser(Ctx().get(), request, &ignored);
  }
  grpc::Status Disconnect(const v1::DisconnectRequest& request,
                          v1::DisconnectResponse* response = nullptr) {
    v1::DisconnectResponse ignored;
    return stub_->Disconnect(Ctx().get(), request, response ? response : &ignored);
  }
  v1::DisconnectRequest KickUser(const std::string& user, int code = 0,
                                 const std::string& reason = "", int64_t ban_s = 0) {
    v1::DisconnectRequest request;
    request.set_user(user);
    request.set_code(code);
    request.set_reason(reason);
    if (ban_s != 0) request.mutable_ban()->set_seconds(ban_s);
    return request;
  }
  grpc::Status ForgetUser(const std::string& name, int code, const std::string& reason,
                          v1::ForgetUserResponse* response) {
    v1::ForgetUserRequest request;
    request.set_name(name);
    request.set_code(code);
    request.set_reason(reason);
    return edges_->ForgetUser(Ctx().get(), request, response);
  }

  chat::testing::FakeClock clock_{1764050000000};
  // A fresh registry: presence snapshots are not held back (the warm-up has
  // a test of its own).
  Registry registry_{std::make_unique<MemoryStore>(), &clock_,
                     RegistryOptions{kLeaseMs, /*presence_warmup_ms=*/0}};
  NameClaims claims_{std::make_unique<MemoryNameOwners>(), &clock_};
  ConnectionServiceImpl service_{&registry_, "cs-test"};
  EdgeRegistryImpl edge_registry_{&registry_, "cs-test", {}, &claims_};
  chat::testing::InProcessServer server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ConnectionService::Stub> stub_;
  std::unique_ptr<v1::EdgeRegistry::Stub> edges_;
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
  EXPECT_THAT(Changes(e1->WaitFor(2), 1), ElementsAre("REMOVED e1-1 alice@e1 KICKED 4000 ''"))
      << "e1 must close its socket for e1-1 (code 0 means 4000) and hear nothing of e2";

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
  auto presence = WatchPresence({"bob", "sync"});
  ASSERT_TRUE(presence->WaitUntil(HasSnapshotEnd)) << "no snapshot_end within 10 s";
  EXPECT_THAT(Presence(presence->Received()), ElementsAre("bob off*", "sync off*", "END"))
      << "a named watch set starts with one event per name, online or not";
  presence->Clear();

  ASSERT_TRUE(Register("e1", {Conn("e1-1", "alice")}).ok());  // not watched
  ASSERT_TRUE(Register("e1", {Conn("e1-2", "bob")}).ok());
  ASSERT_TRUE(Register("e2", {Conn("e2-1", "bob")}).ok());  // bob's second device
  ASSERT_TRUE(Unregister("e1", {"e1-2"}).ok());
  ASSERT_TRUE(Unregister("e2", {"e2-1"}).ok());
  std::vector<v1::PresenceEvent> events = presence->WaitFor(2);
  EXPECT_THAT(Presence(events), ElementsAre("bob on", "bob off"))
      << "one 'on' for two devices, one 'off' when the last closes, nothing for alice";
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].ts_ms(), 1764050000000) << "presence carries the registry's time";
  EXPECT_EQ(events[0].instance_id(), "cs-test");

  ASSERT_TRUE(Register("e1", {Conn("e1-3", "bob")}).ok());
  clock_.Advance(kLeaseMs + 1);
  registry_.ExpireLeases();
  EXPECT_THAT(Presence(presence->WaitFor(4)), ElementsAre("bob on", "bob off", "bob on", "bob off"))
      << "an edge whose lease expires still produces 'off' for its users";
}

TEST_F(ConnectionServiceTest, WatchPresenceSnapshotThenTransitionsWithInstanceId) {
  ASSERT_TRUE(Register("e1", {Conn("e1-1", "carol"), Conn("e1-2", "alice")}).ok());
  ASSERT_TRUE(Register("e1", {Conn("e1-3", "bob")}).ok());
  ASSERT_TRUE(Unregister("e1", {"e1-3"}).ok());  // bob known, offline

  auto named = WatchPresence({"bob", "alice", "bob", "nobody-yet"});
  auto all = WatchPresence({});
  auto internal = WatchPresence({}, /*internal=*/true);
  for (auto* w : {named.get(), all.get(), internal.get()}) {
    ASSERT_TRUE(w->WaitUntil(HasSnapshotEnd)) << "no snapshot_end within 10 s";
  }
  EXPECT_THAT(Presence(named->Received()),
              ElementsAre("bob off*", "alice on*", "nobody-yet off*", "END"))
      << "request order, duplicates once, a name never seen is offline";
  EXPECT_THAT(Presence(all->Received()), ElementsAre("alice on*", "carol on*", "END"))
      << "watching everyone: a snapshot of who is online";
  EXPECT_THAT(Presence(internal->Received()), ElementsAre("alice on*", "carol on*", "END"))
      << "EdgeRegistry.WatchPresence is the same stream";
  for (const auto& e : named->Received()) {
    EXPECT_EQ(e.instance_id(), "cs-test") << e.ShortDebugString();
    EXPECT_EQ(e.ts_ms(), 1764050000000) << "snapshot events carry the time they were taken";
  }
  EXPECT_TRUE(named->Received().back().name().empty()) << "snapshot_end has no name";

  ASSERT_TRUE(Register("e2", {Conn("e2-1", "nobody-yet")}).ok());
  ASSERT_TRUE(Unregister("e1", {"e1-2"}).ok());
  EXPECT_THAT(Presence(named->WaitFor(6), 4), ElementsAre("nobody-yet on", "alice off"));
  EXPECT_THAT(Presence(all->WaitFor(5), 3), ElementsAre("nobody-yet on", "alice off"));
  for (const auto& e : all->Received()) EXPECT_EQ(e.instance_id(), "cs-test");
}

// Whether alice is online by the snapshot and the transitions after it;
// "" while the snapshot is incomplete, "broken" when a transition repeats the
// state it should change. Other users' events are skipped.
std::string AliceBy(const std::vector<v1::PresenceEvent>& events) {
  bool online = false;  // a snapshot of everyone lists online users only
  size_t k = 0;
  for (; k < events.size() && !events[k].snapshot_end(); ++k) {
    if (events[k].name() == "alice") online = events[k].online();
  }
  if (k == events.size()) return "";
  for (++k; k < events.size(); ++k) {
    if (events[k].name() != "alice") continue;
    if (events[k].snapshot() || events[k].online() == online) return "broken";
    online = events[k].online();
  }
  return online ? "on" : "off";
}

bool SawSentinel(const std::vector<v1::PresenceEvent>& events) {
  for (const auto& e : events) {
    if (e.name() == "sentinel" && e.online() && !e.snapshot()) return true;
  }
  return false;
}

TEST_F(ConnectionServiceTest, WatchPresenceLosesNoTransitionBetweenSnapshotAndChanges) {
  // alice flips on and off as fast as the registry goes while watchers
  // start: whatever moment a snapshot is taken at, what follows it must
  // continue from it exactly (alternating, starting with the opposite).
  std::atomic<bool> stop{false};
  std::thread flipper([&] {
    ConnectionInfo c;
    c.connection_id = "e1-1";
    c.user = "alice";
    // Bounded, so that no watcher falls 20000 events behind.
    for (int i = 0; i < 8000 && !stop.load(); ++i) {
      ASSERT_TRUE(registry_.Register("e1", "inc-1", {c}).ok());
      ASSERT_TRUE(registry_.Unregister("e1", "inc-1", {"e1-1"}).ok());
    }
  });
  std::vector<std::unique_ptr<StreamCollector<v1::PresenceEvent>>> watchers;
  for (int i = 0; i < 20; ++i) {
    watchers.push_back(WatchPresence(i % 2 == 0 ? std::vector<std::string>{"alice", "sentinel"}
                                                : std::vector<std::string>{}));
    ASSERT_TRUE(watchers.back()->WaitUntil(HasSnapshotEnd));
  }
  stop = true;
  flipper.join();
  // After alice's last change: when a stream shows the sentinel, it has
  // shown everything about alice.
  ASSERT_TRUE(Register("e2", {Conn("e2-1", "sentinel")}).ok());
  for (size_t i = 0; i < watchers.size(); ++i) {
    ASSERT_TRUE(watchers[i]->WaitUntil(SawSentinel)) << "watcher " << i;
    EXPECT_EQ(AliceBy(watchers[i]->Received()), "off")
        << "watcher " << i << " saw " << watchers[i]->Received().size() << " events";
  }
}

TEST_F(ConnectionServiceTest, ASnapshotLargerThanTheQueueBoundComesWhole) {
  // The bound on queued updates (20000) is for watchers that fall behind on
  // changes; a snapshot is sent whole however many users are online.
  std::vector<ConnectionInfo> conns;
  for (int i = 0; i < 25'000; ++i) {
    ConnectionInfo c;
    c.connection_id = absl::StrCat("e1-", i);
    c.user = absl::StrCat("u", i);
    conns.push_back(std::move(c));
  }
  ASSERT_TRUE(registry_.Register("e1", "inc-1", std::move(conns)).ok());
  auto all = WatchPresence({});
  ASSERT_TRUE(all->WaitUntil(HasSnapshotEnd, absl::Seconds(30)))
      << "got " << all->Received().size() << " events";
  EXPECT_EQ(all->Received().size(), 25'001u);
  ASSERT_TRUE(Register("e2", {Conn("e2-1", "late")}).ok());
  EXPECT_THAT(Presence(all->WaitFor(25'002), 25'001), ElementsAre("late on"))
      << "the stream goes on after the snapshot";
}

TEST_F(ConnectionServiceTest, WatchPresenceRefusesBadWatchSets) {
  std::vector<std::string> many;
  for (int i = 0; i < 1001; ++i) many.push_back(absl::StrCat("u", i));
  auto too_many = WatchPresence(many);
  std::optional<grpc::Status> done = too_many->WaitDone();
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(Reason(*done), "3 TOO_MANY_NAMES") << Show(*done);
  many.pop_back();
  auto thousand = WatchPresence(many);
  EXPECT_TRUE(thousand->WaitUntil(HasSnapshotEnd)) << "1000 names are allowed";
  EXPECT_EQ(thousand->Received().size(), 1001u);

  for (const std::string& bad :
       {std::string(""), std::string("a\nb"), std::string(" a"), std::string(65, 'x')}) {
    auto watch = WatchPresence({"alice", bad});
    done = watch->WaitDone();
    ASSERT_TRUE(done.has_value());
    EXPECT_EQ(Reason(*done), kInvalidName) << Show(*done);
  }
}

TEST_F(ConnectionServiceTest, WatchPresenceHasAServerWideWatcherLimit) {
  chat::testing::FakeClock clock(1764050000000);
  RegistryOptions options;
  options.presence_warmup_ms = 0;
  options.max_presence_watchers = 2;
  Registry registry(std::make_unique<MemoryStore>(), &clock, options);
  ConnectionServiceImpl service(&registry, "cs-small");
  EdgeRegistryImpl edges(&registry, "cs-small");
  chat::testing::InProcessServer server;
  ASSERT_TRUE(server.Start({&service, &edges}).ok());
  auto stub = v1::ConnectionService::NewStub(server.channel());

  auto first = WatchPresence({"a"}, false, stub.get());
  auto second = WatchPresence({}, false, stub.get());
  ASSERT_TRUE(first->WaitUntil(HasSnapshotEnd));
  ASSERT_TRUE(second->WaitUntil(HasSnapshotEnd));
  auto third = WatchPresence({"b"}, false, stub.get());
  std::optional<grpc::Status> done = third->WaitDone();
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(Reason(*done), "8 TOO_MANY_WATCHERS") << Show(*done);

  first.reset();  // cancels; its place frees once the server sees it
  bool admitted = false;
  for (int i = 0; i < 50 && !admitted; ++i) {
    auto again = WatchPresence({"b"}, false, stub.get());
    admitted = again->WaitUntil(HasSnapshotEnd, absl::Milliseconds(200));
  }
  EXPECT_TRUE(admitted) << "a watcher that ended must free its place";
}

TEST_F(ConnectionServiceTest, PresenceSnapshotsWaitForTheWarmUpAfterStart) {
  // A registry that just started (in a real restart the edges re-register
  // during this time): snapshots are held back for one lease period.
  chat::testing::FakeClock clock(1764050000000);
  RegistryOptions options;
  options.lease_timeout_ms = kLeaseMs;  // warm-up: the lease timeout by default
  Registry registry(std::make_unique<MemoryStore>(), &clock, options);
  ConnectionServiceImpl service(&registry, "cs-restarted");
  EdgeRegistryImpl edge_service(&registry, "cs-restarted");
  chat::testing::InProcessServer server;
  ASSERT_TRUE(server.Start({&service, &edge_service}).ok());
  auto stub = v1::ConnectionService::NewStub(server.channel());
  auto edges = v1::EdgeRegistry::NewStub(server.channel());
  auto reg = [&](const std::string& id, const std::string& user) {
    v1::RegisterRequest request;
    request.set_edge_id("e1");
    request.set_incarnation("inc-1");
    *request.add_connections() = Conn(id, user);
    v1::RegisterResponse response;
    return edges->Register(Ctx().get(), request, &response);
  };

  auto named = WatchPresence({"alice", "bob"}, false, stub.get());
  auto all = WatchPresence({}, false, stub.get());
  ASSERT_TRUE(reg("e1-1", "alice").ok());  // an edge re-registering its live connections
  clock.Advance(kLeaseMs - 1);
  registry.Tick();
  EXPECT_FALSE(named->WaitUntil(HasSnapshotEnd, absl::Milliseconds(300)))
      << "a snapshot went out before the warm-up ended: "
      << ::testing::PrintToString(Presence(named->Received()));
  EXPECT_THAT(all->Received(), IsEmpty()) << "no transitions before the snapshot either";

  clock.Advance(1);
  registry.Tick();
  ASSERT_TRUE(named->WaitUntil(HasSnapshotEnd));
  ASSERT_TRUE(all->WaitUntil(HasSnapshotEnd));
  EXPECT_THAT(Presence(named->Received()), ElementsAre("alice on*", "bob off*", "END"))
      << "alice's re-registration is state, not an 'on' transition";
  EXPECT_THAT(Presence(all->Received()), ElementsAre("alice on*", "END"));
  EXPECT_EQ(named->Received().front().ts_ms(), 1764050000000 + kLeaseMs);

  ASSERT_TRUE(reg("e1-2", "bob").ok());
  EXPECT_THAT(Presence(named->WaitFor(4), 3), ElementsAre("bob on"));
  auto late = WatchPresence({"bob"}, false, stub.get());
  EXPECT_TRUE(late->WaitUntil(HasSnapshotEnd)) << "after the warm-up a snapshot comes at once";
  EXPECT_THAT(Presence(late->Received()), ElementsAre("bob on*", "END"));
}

TEST_F(ConnectionServiceTest, NamesAreValidatedTheSameWayEverywhere) {
  ASSERT_TRUE(Register("e1", {Conn("e1-1", "alice")}).ok());
  const std::string huge(20 * 1024, 'x');
  for (const std::string& bad :
       {std::string(""), std::string("al\x01ice"), std::string("al\x7f"), std::string("\xc2\x85x"),
        std::string(" alice"), std::string("alice "), std::string(65, 'a'), huge}) {
    grpc::Status status = GetUser(bad);
    EXPECT_EQ(Reason(status), kInvalidName) << "GetUser: " << Show(status);
    EXPECT_TRUE(absl::StartsWith(status.error_message(), "name: ")) << status.error_message();
    EXPECT_LE(status.error_message().size(), 256u);
    EXPECT_EQ(status.error_message().find("xxxx"), std::string::npos) << "echoes the input";
    status = LookupUser(bad);
    EXPECT_EQ(Reason(status), kInvalidName) << "LookupUser: " << Show(status);
  }
  EXPECT_TRUE(GetUser(std::string(64, 'a')).error_code() == grpc::NOT_FOUND)
      << "64 bytes is a well-formed name";
  grpc::Status unknown = GetUser("nobody-by-this-name");
  EXPECT_EQ(Reason(unknown), kUserNotFound) << Show(unknown);
  EXPECT_EQ(unknown.error_message().find("nobody-by-this-name"), std::string::npos)
      << "NOT_FOUND does not echo the name: " << unknown.error_message();
  EXPECT_EQ(Reason(LookupUser("nobody")), kUserNotFound);
  EXPECT_TRUE(GetUser("alice").ok());
  EXPECT_TRUE(LookupUser("alice").ok());
  EXPECT_TRUE(GetUser("\xc3\xa9lodie").error_code() == grpc::NOT_FOUND) << "UTF-8 is fine";
  // Invalid UTF-8 never reaches the service over gRPC (protobuf refuses a
  // proto3 string that is not UTF-8 when it parses the request); the
  // registry refuses it all the same.
  for (const std::string& bad : {std::string("\xff"), std::string("\xed\xa0\x80")}) {
    EXPECT_FALSE(GetUser(bad).ok());
    EXPECT_EQ(ReasonOf(registry_.GetUser(bad).status()), "INVALID_NAME");
  }
}

TEST_F(ConnectionServiceTest, ListUsersRefusesBadPageSizesAndTokens) {
  ASSERT_TRUE(Register("e1", {Conn("e1-1", "alice"), Conn("e1-2", "bob")}).ok());
  auto list = [&](int size, const std::string& token) {
    v1::ListUsersRequest request;
    request.set_page_size(size);
    request.set_page_token(token);
    v1::ListUsersResponse response;
    return stub_->ListUsers(Ctx().get(), request, &response);
  };
  EXPECT_EQ(Reason(list(-1, "")), "3 INVALID_PAGE_SIZE");
  EXPECT_EQ(Reason(list(1001, "")), "3 INVALID_PAGE_SIZE");
  EXPECT_EQ(Reason(list(1 << 30, "")), "3 INVALID_PAGE_SIZE");
  EXPECT_TRUE(list(1000, "").ok());
  EXPECT_TRUE(list(0, "").ok());
  EXPECT_EQ(Reason(list(10, "a\nb")), "3 INVALID_PAGE_TOKEN");
  EXPECT_EQ(Reason(list(10, std::string(300, 'z'))), "3 INVALID_PAGE_TOKEN");
  EXPECT_EQ(ReasonOf(registry_.ListUsers("\xff", 10, false).status()), "INVALID_PAGE_TOKEN");
  EXPECT_THAT(ListUsers("alice", 1, false), ElementsAre("bob:1"))
      << "a token is the previous page's last name";
  v1::ListUsersRequest request;
  request.set_page_size(1001);
  v1::ListUsersResponse response;
  EXPECT_EQ(Reason(edges_->ListUsers(Ctx().get(), request, &response)), "3 INVALID_PAGE_SIZE")
      << "the internal ListUsers checks the same";
}

TEST_F(ConnectionServiceTest, GetUsersAnswersEachNameOnceInRequestOrder) {
  ASSERT_TRUE(Register("e1", {Conn("e1-1", "alice"), Conn("e1-2", "bob")}).ok());
  ASSERT_TRUE(Unregister("e1", {"e1-2"}).ok());
  ASSERT_TRUE(Disconnect(KickUser("bob", 0, "", 60)).ok());
  v1::GetUsersRequest request;
  for (const char* name : {"bob", "nobody", "alice", "bob", "nobody", "zed"}) {
    request.add_names(name);
  }
  v1::GetUsersResponse response;
  grpc::Status status = stub_->GetUsers(Ctx().get(), request, &response);
  ASSERT_TRUE(status.ok()) << Show(status);
  ASSERT_EQ(response.users_size(), 2);
  EXPECT_EQ(response.users(0).name(), "bob");
  EXPECT_FALSE(response.users(0).online());
  EXPECT_EQ(response.users(0).banned_until_ms(), 1764050000000 + 60'000);
  EXPECT_EQ(response.users(1).name(), "alice");
  EXPECT_TRUE(response.users(1).online());
  ASSERT_EQ(response.users(1).connections_size(), 1);
  EXPECT_EQ(response.users(1).connections(0).connection_id(), "e1-1");
  EXPECT_EQ(response.users(1).banned_until_ms(), 0);
  EXPECT_THAT(response.not_found(), ElementsAre("nobody", "zed"));

  v1::GetUsersRequest none;
  ASSERT_TRUE(stub_->GetUsers(Ctx().get(), none, &response).ok()) << "an empty list is fine";

  v1::GetUsersRequest bad;
  bad.add_names("alice");
  bad.add_names("bad\tname");
  EXPECT_EQ(Reason(stub_->GetUsers(Ctx().get(), bad, &response)), kInvalidName);
  v1::GetUsersRequest many;
  for (int i = 0; i < 1000; ++i) many.add_names(absl::StrCat("u", i));
  EXPECT_TRUE(stub_->GetUsers(Ctx().get(), many, &response).ok()) << "1000 names are allowed";
  EXPECT_EQ(response.not_found_size(), 1000);
  many.add_names("u1000");
  EXPECT_EQ(Reason(stub_->GetUsers(Ctx().get(), many, &response)), "3 TOO_MANY_NAMES");
}

TEST_F(ConnectionServiceTest, GetCountsFollowsUsersConnectionsAndLeases) {
  auto counts = [&] {
    v1::GetCountsResponse response;
    grpc::Status status = stub_->GetCounts(Ctx().get(), v1::GetCountsRequest(), &response);
    EXPECT_TRUE(status.ok()) << Show(status);
    return absl::StrCat("users=", response.users(), " online=", response.online_users(),
                        " connections=", response.connections(), " edges=", response.edges());
  };
  EXPECT_EQ(counts(), "users=0 online=0 connections=0 edges=0");
  ASSERT_TRUE(
      Register("e1", {Conn("e1-1", "alice"), Conn("e1-2", "alice"), Conn("e1-3", "bob")}).ok());
  ASSERT_TRUE(Register("e2", {Conn("e2-1", "carol")}).ok());
  EXPECT_EQ(counts(), "users=3 online=3 connections=4 edges=2");
  ASSERT_TRUE(Unregister("e1", {"e1-3"}).ok());
  EXPECT_EQ(counts(), "users=3 online=2 connections=3 edges=2");
  clock_.Advance(kLeaseMs / 2);
  Heartbeat("e1", "inc-1");
  clock_.Advance(kLeaseMs / 2 + 1);
  registry_.ExpireLeases();
  EXPECT_EQ(counts(), "users=3 online=1 connections=2 edges=1") << "e2's lease ran out";
  v1::ForgetUserResponse forgot;
  ASSERT_TRUE(ForgetUser("bob", 0, "", &forgot).ok());
  EXPECT_EQ(counts(), "users=2 online=1 connections=2 edges=1");
}

TEST_F(ConnectionServiceTest, DisconnectRefusesBadRequestsWithTheirReasons) {
  ASSERT_TRUE(Register("e1", {Conn("e1-1", "alice")}).ok());
  auto reason = [&](const v1::DisconnectRequest& request) { return Reason(Disconnect(request)); };
  EXPECT_EQ(reason(v1::DisconnectRequest()), "3 INVALID_TARGET") << "neither user nor id";
  EXPECT_EQ(reason(KickUser("")), kInvalidName);
  EXPECT_EQ(reason(KickUser("al\nice")), kInvalidName);
  EXPECT_EQ(reason(KickUser("nobody")), kUserNotFound);
  v1::DisconnectRequest empty_id;
  empty_id.set_connection_id("");
  EXPECT_EQ(reason(empty_id), "3 INVALID_CONNECTION_ID");
  v1::DisconnectRequest long_id;
  long_id.set_connection_id(std::string(300, 'e'));
  EXPECT_EQ(reason(long_id), "3 INVALID_CONNECTION_ID");
  v1::DisconnectRequest unknown_id;
  unknown_id.set_connection_id("e1-404");
  EXPECT_EQ(reason(unknown_id), "5 CONNECTION_NOT_FOUND")
      << "an id that is not live is NOT_FOUND, not OK {}";
  for (int code : {1, 1000, 1008, 3999, 5000, -4000}) {
    EXPECT_EQ(reason(KickUser("alice", code)), "3 INVALID_CLOSE_CODE") << code;
  }
  EXPECT_EQ(reason(KickUser("alice", 4000, std::string(121, 'r'))), "3 INVALID_CLOSE_REASON");
  KickRequest bad_utf8;  // gRPC refuses it before the service; the registry checks anyway
  bad_utf8.user = "alice";
  bad_utf8.reason = "bad \xc3\x28 utf8";
  EXPECT_EQ(ReasonOf(registry_.Disconnect(bad_utf8).status()), "INVALID_CLOSE_REASON");
  EXPECT_EQ(reason(KickUser("alice", 4000, "", 366LL * 86400 + 1)), "3 INVALID_BAN");
  EXPECT_EQ(reason(KickUser("alice", 4000, "", -60)), "3 INVALID_BAN");
  v1::DisconnectRequest ban_one = unknown_id;
  ban_one.set_connection_id("e1-1");
  ban_one.mutable_ban()->set_seconds(60);
  EXPECT_EQ(reason(ban_one), "3 INVALID_BAN") << "a ban needs `user`";
  EXPECT_THAT(ConnectionsOf("alice"), ElementsAre("e1-1")) << "refused requests change nothing";
  v1::User alice;
  ASSERT_TRUE(GetUser("alice", &alice).ok());
  EXPECT_EQ(alice.banned_until_ms(), 0);

  v1::DisconnectResponse response;
  ASSERT_TRUE(Disconnect(KickUser("alice", 4999, std::string(120, 'r')), &response).ok());
  EXPECT_EQ(response.disconnected(), 1) << "4999 and 120 bytes are within the limits";
  ASSERT_TRUE(Disconnect(KickUser("alice", 0, "", 366LL * 86400), &response).ok())
      << "a 366-day ban is allowed";
  EXPECT_EQ(response.disconnected(), 0) << "an offline user can be banned";
  EXPECT_EQ(response.banned_until_ms(), 1764050000000 + 366LL * 86400 * 1000);
}

TEST_F(ConnectionServiceTest, DisconnectCarriesCodeAndReasonToTheEdge) {
  ASSERT_TRUE(Register("e1", {Conn("e1-1", "alice"), Conn("e1-2", "bob")}).ok());
  ASSERT_TRUE(Register("e2", {Conn("e2-1", "alice")}).ok());
  auto e1 = WatchRoutes("e1");
  auto e2 = WatchRoutes("e2");
  ASSERT_EQ(e1->WaitFor(1).size(), 1u);
  ASSERT_EQ(e2->WaitFor(1).size(), 1u);
  v1::DisconnectResponse response;
  ASSERT_TRUE(Disconnect(KickUser("alice", 4321, "bye now"), &response).ok());
  EXPECT_EQ(response.disconnected(), 2);
  EXPECT_EQ(response.banned_until_ms(), 0);
  EXPECT_THAT(Changes(e1->WaitFor(2), 1),
              ElementsAre("REMOVED e1-1 alice@e1 KICKED 4321 'bye now'"));
  EXPECT_THAT(Changes(e2->WaitFor(2), 1),
              ElementsAre("REMOVED e2-1 alice@e2 KICKED 4321 'bye now'"));

  v1::DisconnectRequest one;
  one.set_connection_id("e1-2");
  one.set_reason("session revoked");
  ASSERT_TRUE(Disconnect(one, &response).ok());
  EXPECT_EQ(response.disconnected(), 1);
  EXPECT_THAT(Changes(e1->WaitFor(3), 2),
              ElementsAre("REMOVED e1-2 bob@e1 KICKED 4000 'session revoked'"));
}

TEST_F(ConnectionServiceTest, BansReachEveryEdgeAndTheirSnapshots) {
  ASSERT_TRUE(Register("e1", {Conn("e1-1", "mallory"), Conn("e1-2", "alice")}).ok());
  auto e1 = WatchRoutes("e1");
  auto e2 = WatchRoutes("e2");  // holds none of mallory's connections
  auto all = WatchRoutes("");
  for (auto* w : {e1.get(), e2.get(), all.get()}) ASSERT_EQ(w->WaitFor(1).size(), 1u);

  const int64_t until = 1764050000000 + 60'000;
  v1::DisconnectResponse response;
  ASSERT_TRUE(Disconnect(KickUser("mallory", 4321, "bye", 60), &response).ok());
  EXPECT_EQ(response.disconnected(), 1);
  EXPECT_EQ(response.banned_until_ms(), until);
  const std::string banned = absl::StrCat("BANNED mallory ", until);
  EXPECT_THAT(Changes(e1->WaitFor(2), 1),
              ElementsAre(banned, "REMOVED e1-1 mallory@e1 KICKED 4321 'bye'"))
      << "the ban comes before the kick";
  EXPECT_THAT(Changes(e2->WaitFor(2), 1), ElementsAre(banned)) << "every edge learns of bans";
  EXPECT_THAT(Changes(all->WaitFor(2), 1),
              ElementsAre(banned, "REMOVED e1-1 mallory@e1 KICKED 4321 'bye'"));
  v1::User mallory;
  ASSERT_TRUE(GetUser("mallory", &mallory).ok());
  EXPECT_EQ(mallory.banned_until_ms(), until);
  EXPECT_FALSE(mallory.online());

  auto e3 = WatchRoutes("e3");
  std::vector<v1::RouteUpdate> snapshot = e3->WaitFor(1);
  ASSERT_EQ(snapshot.size(), 1u);
  EXPECT_THAT(Changes(snapshot), ElementsAre(banned)) << "a new edge starts with the bans";

  ASSERT_TRUE(Disconnect(KickUser("mallory"), &response).ok());
  EXPECT_EQ(response.banned_until_ms(), until) << "no ban: the existing one stays";
  ASSERT_TRUE(Disconnect(KickUser("mallory", 0, "", 10), &response).ok());
  EXPECT_EQ(response.banned_until_ms(), 1764050000000 + 10'000) << "a new ban replaces it";
  EXPECT_THAT(Changes(e3->WaitFor(2), 1),
              ElementsAre(absl::StrCat("BANNED mallory ", 1764050000000 + 10'000)));

  clock_.Advance(10'000);
  registry_.Tick();
  ASSERT_TRUE(GetUser("mallory", &mallory).ok());
  EXPECT_EQ(mallory.banned_until_ms(), 0) << "the ban ended";
  auto e4 = WatchRoutes("e4");
  snapshot = e4->WaitFor(1);
  ASSERT_EQ(snapshot.size(), 1u);
  EXPECT_THAT(Changes(snapshot), IsEmpty()) << "ended bans are not in snapshots";
}

TEST_F(ConnectionServiceTest, AZeroBanLiftsTheBanOnEveryEdge) {
  ASSERT_TRUE(Register("e1", {Conn("e1-1", "mallory")}).ok());
  auto e2 = WatchRoutes("e2");
  ASSERT_EQ(e2->WaitFor(1).size(), 1u);
  ASSERT_TRUE(Disconnect(KickUser("mallory", 0, "", 3600)).ok());
  v1::DisconnectRequest lift = KickUser("mallory");
  lift.mutable_ban();  // present and zero: lift
  v1::DisconnectResponse response;
  ASSERT_TRUE(Disconnect(lift, &response).ok());
  EXPECT_EQ(response.banned_until_ms(), 0);
  EXPECT_THAT(
      Changes(e2->WaitFor(3), 1),
      ElementsAre(absl::StrCat("BANNED mallory ", 1764050000000 + 3'600'000), "BANNED mallory 0"))
      << "edges learn that the ban is gone";
  v1::User mallory;
  ASSERT_TRUE(GetUser("mallory", &mallory).ok());
  EXPECT_EQ(mallory.banned_until_ms(), 0);

  v1::DisconnectRequest by_connection;
  by_connection.set_connection_id("e1-1");
  by_connection.mutable_ban();
  grpc::Status status = Disconnect(by_connection);
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT) << "bans name a user";
}

// The durable table of users, in memory; `fail` makes every call UNAVAILABLE.
class FakeUserStore : public store::UserStore {
 public:
  absl::StatusOr<bool> AddUser(const std::string& name, int64_t) override {
    if (fail) return absl::UnavailableError("disk on fire");
    return users.insert(name).second;
  }
  absl::StatusOr<int> AddUsers(const std::vector<std::string>& names, int64_t) override {
    if (fail) return absl::UnavailableError("disk on fire");
    int added = 0;
    for (const std::string& name : names) added += users.insert(name).second ? 1 : 0;
    return added;
  }
  absl::StatusOr<std::vector<std::string>> AllUsers() override {
    return std::vector<std::string>(users.begin(), users.end());
  }
  absl::StatusOr<std::string> ClaimName(const std::string&, const std::string& subject,
                                        int64_t) override {
    return subject;
  }
  absl::StatusOr<bool> DeleteUser(const std::string& name) override {
    if (fail) return absl::UnavailableError("disk on fire");
    return users.erase(name) > 0;
  }
  std::set<std::string> users;
  bool fail = false;
};

TEST_F(ConnectionServiceTest, ForgetUserErasesTheUserEverywhereAndClosesTheirConnections) {
  ASSERT_TRUE(
      Register("e1", {Conn("e1-1", "alice"), Conn("e1-2", "alice"), Conn("e1-3", "bob")}).ok());
  ASSERT_TRUE(Disconnect(KickUser("alice", 0, "", 0)).ok());  // no ban: nothing to lift
  ASSERT_TRUE(Register("e1", {Conn("e1-4", "alice"), Conn("e1-5", "alice")}).ok());
  ASSERT_TRUE(Disconnect(KickUser("alice", 0, "", 60)).ok());
  ASSERT_TRUE(Register("e1", {Conn("e1-6", "alice"), Conn("e1-7", "alice")}).ok());
  v1::ClaimNameRequest claim;
  claim.set_name("alice");
  claim.set_subject("sub-alice");
  v1::ClaimNameResponse claimed;
  ASSERT_TRUE(edges_->ClaimName(Ctx().get(), claim, &claimed).ok());
  ASSERT_TRUE(claimed.granted());
  auto e1 = WatchRoutes("e1");
  ASSERT_EQ(e1->WaitFor(1).size(), 1u);

  v1::ForgetUserResponse response;
  grpc::Status status = ForgetUser("alice", 4003, "account deleted", &response);
  ASSERT_TRUE(status.ok()) << Show(status);
  EXPECT_TRUE(response.existed());
  EXPECT_EQ(response.disconnected(), 2);
  EXPECT_THAT(
      Changes(e1->WaitFor(2), 1),
      UnorderedElementsAre("REMOVED e1-6 alice@e1 KICKED 4003 'account deleted'",
                           "REMOVED e1-7 alice@e1 KICKED 4003 'account deleted'", "BANNED alice 0"))
      << "connections closed with the request's code and reason, the ban lifted";
  EXPECT_EQ(Reason(GetUser("alice")), kUserNotFound);
  EXPECT_EQ(Reason(LookupUser("alice")), kUserNotFound);
  EXPECT_THAT(ListUsers("", 0, false), ElementsAre("bob:1"));
  claim.set_subject("sub-someone-else");
  ASSERT_TRUE(edges_->ClaimName(Ctx().get(), claim, &claimed).ok());
  EXPECT_TRUE(claimed.granted()) << "the name claim was released";

  status = ForgetUser("alice", 4003, "account deleted", &response);
  ASSERT_TRUE(status.ok()) << "a second ForgetUser is not an error: " << Show(status);
  EXPECT_FALSE(response.existed());
  EXPECT_EQ(response.disconnected(), 0);
  EXPECT_EQ(Reason(ForgetUser("bad\x01name", 0, "", &response)), kInvalidName);
  EXPECT_EQ(Reason(ForgetUser("bob", 1000, "", &response)), "3 INVALID_CLOSE_CODE");
  EXPECT_THAT(ConnectionsOf("bob"), ElementsAre("e1-3"));
}

TEST_F(ConnectionServiceTest, ForgetUserErasesTheDurableCopyFirst) {
  chat::testing::FakeClock clock(1764050000000);
  FakeUserStore durable;
  Registry registry(std::make_unique<MemoryStore>(), &clock, RegistryOptions{kLeaseMs, 0}, nullptr,
                    &durable);
  ConnectionInfo c;
  c.connection_id = "e1-1";
  c.user = "alice";
  ASSERT_TRUE(registry.Register("e1", "inc-1", {c}).ok());
  ASSERT_EQ(durable.users.count("alice"), 1u);

  durable.fail = true;
  absl::StatusOr<ForgetResult> failed = registry.ForgetUser("alice", 4003, "account deleted");
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable) << failed.status();
  EXPECT_TRUE(registry.GetUser("alice").ok()) << "a failed erase leaves the user as it was";
  EXPECT_EQ(registry.GetCounts().connections, 1);

  durable.fail = false;
  absl::StatusOr<ForgetResult> forgot = registry.ForgetUser("alice", 4003, "account deleted");
  ASSERT_TRUE(forgot.ok()) << forgot.status();
  EXPECT_TRUE(forgot->existed);
  EXPECT_EQ(forgot->disconnected, 1);
  EXPECT_EQ(durable.users.count("alice"), 0u);
  EXPECT_EQ(registry.GetUser("alice").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ConnectionServiceTest, HealthServiceAnswersServing) {
  std::string error;
  EXPECT_EQ(chat::testing::HealthCheck(channel_, "", &error), 1) << "1 = SERVING; " << error;
}

}  // namespace
}  // namespace chat::connection
