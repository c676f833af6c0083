// The failure model of docs/architecture.md, with real processes: backends that
// die and come back, edges killed or stopped, operators kicking users.
#include <signal.h>
#include <sys/wait.h>

#include "chat/v1/chat.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "tests/e2e/e2e_util.h"

namespace chat::testing {
namespace {

// Sends to `to` with a request id until the answer is `action` (or, for an
// error, has `code`); returns the last answer.
json::object SendUntil(WsClient& from, const std::string& to, const std::string& want,
                       std::chrono::milliseconds timeout = 15s) {
  json::object last;
  int n = 0;
  Eventually(
      [&] {
        json::object frame{
            {"action", "send"}, {"send_to", to}, {"message", "probe"}, {"request_id", ++n}};
        if (!from.SendJson(frame).ok()) return false;
        while (true) {
          auto reply = from.Read(3s);
          if (!reply.ok() || reply->closed) return false;
          const json::value* id = reply->json.if_contains("request_id");
          if (id == nullptr || !id->is_int64() || id->as_int64() != n) continue;  // stale
          last = reply->json;
          if (want == "stored_offline") {  // accepted, and no connection to hand it to
            return Str(last, "action") == "sent" && last.at("delivered").as_int64() == 0;
          }
          if (want == "delivered") {  // accepted and handed to a recipient's connection
            return Str(last, "action") == "sent" && last.at("delivered").as_int64() > 0;
          }
          return Str(last, "action") == want || Str(last, "code") == want;
        }
      },
      timeout);
  return last;
}

TEST(FailureTest, MessageServiceDownMeansUnavailableUntilItReturns) {
  Cluster cluster("ms-down");
  ASSERT_TRUE(cluster.Start().ok());
  auto alice = Connect(cluster.edge_port(), "alice");
  auto bob = Connect(cluster.edge_port(), "bob");
  ASSERT_TRUE(alice && bob);
  ASSERT_EQ(Str(SendUntil(*alice, "bob", "sent"), "action"), "sent");
  ASSERT_TRUE(bob->ReadAction("send").ok());

  ASSERT_TRUE(cluster.Stop(cluster.message_service(), SIGKILL).ok());
  json::object e = SendUntil(*alice, "bob", "unavailable");
  EXPECT_EQ(Str(e, "code"), "unavailable") << json::serialize(e);
  EXPECT_TRUE(e.at("temporary").as_bool());
  auto ready = HttpGet(cluster.edge_port(), "/readyz");
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(ready->status, 503) << ready->body;
  // Other actions keep working while message-service is away.
  ASSERT_TRUE(alice->SendText(R"({"action":"users"})").ok());
  EXPECT_TRUE(alice->ReadAction("users").ok());

  ASSERT_TRUE(cluster.StartMessageService().ok());  // same port
  // bob's connection attaches again once the edge's link is back; until it
  // has, a message to him is stored and reaches him by the catch-up instead.
  json::object sent = SendUntil(*alice, "bob", "delivered");
  ASSERT_EQ(Str(sent, "action"), "sent") << json::serialize(sent);
  EXPECT_EQ(sent.at("delivered").as_int64(), 1);
  auto got = bob->ReadAction("send");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(Str(*got, "message"), "probe");
}

// A message-service that hangs (SIGSTOP: its sockets stay open, nothing
// answers) must not leave senders waiting: after --send_timeout_ms the edge
// resets the link, the sends fail as unavailable, and it recovers on SIGCONT.
TEST(FailureTest, HungMessageServiceFailsSendsAfterTheTimeoutAndRecovers) {
  ClusterOptions options;
  options.edge_flags = {"--send_timeout_ms=1000"};
  Cluster cluster("ms-hung", options);
  ASSERT_TRUE(cluster.Start().ok());
  auto alice = Connect(cluster.edge_port(), "alice");
  auto bob = Connect(cluster.edge_port(), "bob");
  ASSERT_TRUE(alice && bob);
  ASSERT_EQ(Str(SendUntil(*alice, "bob", "sent"), "action"), "sent");
  ASSERT_TRUE(bob->ReadAction("send").ok());

  // Stopped for sure before the send: a bare kill(SIGSTOP) lets the service's
  // other threads answer it first under CPU load (the test then waited for an
  // error that could not come).
  ASSERT_TRUE(cluster.message_service().Suspend().ok());
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(
      alice
          ->SendText(
              R"({"action":"send","send_to":"bob","message":"into the void","request_id":"hung"})")
          .ok());
  auto e = alice->ReadAction("error", 10s);
  const auto waited = std::chrono::steady_clock::now() - start;
  cluster.message_service().Resume();
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(Str(*e, "code"), "unavailable") << json::serialize(*e);
  EXPECT_EQ(Str(*e, "request_id"), "hung");
  EXPECT_TRUE(e->at("temporary").as_bool());
  EXPECT_GE(waited, 900ms) << "failed before the timeout";
  // Other actions never depended on message-service.
  ASSERT_TRUE(alice->SendText(R"({"action":"ping","request_id":"p"})").ok());
  EXPECT_TRUE(alice->ReadAction("pong").ok());

  json::object sent = SendUntil(*alice, "bob", "sent");
  ASSERT_EQ(Str(sent, "action"), "sent") << json::serialize(sent);
  auto got = bob->ReadAction("send");
  ASSERT_TRUE(got.ok()) << got.status();
}

TEST(FailureTest, ConnectionServiceRestartIsHealedByReRegistration) {
  Cluster cluster("cs-restart");
  ASSERT_TRUE(cluster.Start().ok());
  auto alice = Connect(cluster.edge_port(), "alice");
  auto bob = Connect(cluster.edge_port(), "bob");
  ASSERT_TRUE(alice && bob);
  ASSERT_TRUE(alice->SendText(R"({"action":"watch","users":["bob","carol"]})").ok());
  ASSERT_TRUE(alice->ReadAction("watching").ok());

  ASSERT_TRUE(cluster.Stop(cluster.connection_service(), SIGKILL).ok());
  // New connections cannot be registered meanwhile: a clear 503.
  {
    WsClient refused;
    HandshakeOptions options;
    options.target = "/?name=dave";
    options.expect_hello = false;
    EXPECT_FALSE(refused.Connect(cluster.edge_port(), options).ok());
    EXPECT_EQ(refused.http_status(), 503) << refused.http_body();
  }
  // Messages between connected users still flow (routing from the last table).
  EXPECT_EQ(Str(SendUntil(*alice, "bob", "sent"), "action"), "sent");
  ASSERT_TRUE(bob->ReadAction("send").ok());

  ASSERT_TRUE(cluster.StartConnectionService().ok());  // same port, empty memory
  // The edge re-registers alice and bob; users shows them online again.
  std::string last;
  ASSERT_TRUE(Eventually([&] {
    if (!alice->SendText(R"({"action":"users","online_only":true})").ok()) return false;
    auto users = alice->ReadAction("users", 2s);
    if (!users.ok()) return false;
    last = json::serialize(*users);
    return users->at("contacts").as_array().size() == 2;
  })) << last;
  // message-service re-read the snapshot: routing works.
  EXPECT_EQ(Str(SendUntil(*alice, "bob", "sent"), "action"), "sent");
  // New connections register again, and presence flows to watchers again.
  auto carol = Connect(cluster.edge_port(), "carol");
  ASSERT_TRUE(carol);
  // A restarted connection-service holds presence back for one lease period
  // (10 s here) while its edges re-register; carol's arrival reaches alice
  // when it ends, through the edge's comparison of the new snapshot.
  bool carol_online = Eventually(
      [&] {
        auto p = alice->ReadAction("presence", 1s);
        return p.ok() && Str(*p, "name") == "carol" && p->at("status").as_bool();
      },
      20s);
  EXPECT_TRUE(carol_online) << "no presence for carol after the restart";
}

TEST(FailureTest, KilledEdgeUsersGoOfflineWithinTheLease) {
  ClusterOptions options;
  options.edges = 2;
  options.connection_flags = {"--lease_timeout_ms=1500"};
  Cluster cluster("edge-kill", options);
  ASSERT_TRUE(cluster.Start().ok());
  auto alice = Connect(cluster.edge_port(0), "alice");
  auto bob = Connect(cluster.edge_port(1), "bob");
  ASSERT_TRUE(alice && bob);
  // Across edges.
  json::object sent = SendUntil(*alice, "bob", "sent");
  ASSERT_EQ(Str(sent, "action"), "sent");
  EXPECT_EQ(sent.at("delivered").as_int64(), 1);
  ASSERT_TRUE(bob->ReadAction("send").ok());
  ASSERT_TRUE(alice->SendText(R"({"action":"watch","users":["bob"]})").ok());
  ASSERT_TRUE(alice->ReadAction("watching").ok());

  const auto killed_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(cluster.Stop(cluster.edge(1), SIGKILL).ok());
  auto off = alice->ReadAction("presence", 10s);
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_EQ(Str(*off, "name"), "bob");
  EXPECT_FALSE(off->at("status").as_bool());
  EXPECT_LT(std::chrono::steady_clock::now() - killed_at, 5s);
  // Stored for when bob comes back, handed to no connection.
  json::object e = SendUntil(*alice, "bob", "stored_offline");
  EXPECT_EQ(Str(e, "action"), "sent") << json::serialize(e);
  EXPECT_EQ(e.at("delivered").as_int64(), 0) << json::serialize(e);
}

TEST(FailureTest, RestartedEdgeClearsItsPredecessorsConnectionsAtOnce) {
  // A long lease: only the new incarnation can explain a quick cleanup.
  ClusterOptions options;
  options.connection_flags = {"--lease_timeout_ms=60000"};
  Cluster cluster("edge-restart", options);
  ASSERT_TRUE(cluster.Start().ok());
  {
    auto ghost = Connect(cluster.edge_port(), "ghost");
    ASSERT_TRUE(ghost);
    ASSERT_TRUE(cluster.Stop(cluster.edge(0), SIGKILL).ok());
  }
  ASSERT_TRUE(cluster.StartEdge(0).ok());
  ASSERT_TRUE(cluster.WaitEdgeReady(0).ok());
  auto alice = Connect(cluster.edge_port(), "alice");
  ASSERT_TRUE(alice);
  // The registry dropped the dead process's connections when the new one
  // registered, long before the 60 s lease.
  bool offline = Eventually(
      [&] {
        if (!alice->SendText(R"({"action":"users"})").ok()) return false;
        auto users = alice->ReadAction("users", 2s);
        if (!users.ok()) return false;
        for (const auto& c : users->at("contacts").as_array()) {
          if (Str(c.as_object(), "name") == "ghost") return !c.as_object().at("status").as_bool();
        }
        return false;
      },
      5s);
  EXPECT_TRUE(offline) << "ghost still online 5 s after its edge restarted";
  json::object e = SendUntil(*alice, "ghost", "stored_offline", 5s);
  EXPECT_EQ(e.at("delivered").as_int64(), 0) << json::serialize(e);
}

// SIGTERM to the edge: `client` sees 1001, the edge exits 0.
void ExpectSigtermClosesWith1001AndExitsZero(Cluster& cluster, WsClient& client) {
  cluster.edge(0).Signal(SIGTERM);
  auto code = client.ReadUntilClosed(10s);
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1001);
  auto status = cluster.edge(0).Wait(10s);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
}

TEST(FailureTest, SigtermClosesWith1001AndExitsZero) {
  Cluster cluster("sigterm");
  ASSERT_TRUE(cluster.Start().ok());
  auto alice = Connect(cluster.edge_port(), "alice");
  ASSERT_TRUE(alice);
  ExpectSigtermClosesWith1001AndExitsZero(cluster, *alice);
  for (ChildProcess* p : {&cluster.message_service(), &cluster.connection_service()}) {
    auto s = cluster.Stop(*p, SIGTERM);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_TRUE(WIFEXITED(*s) && WEXITSTATUS(*s) == 0) << "wait status " << *s;
  }
}

// A client that never answers the close keeps its session past the drain;
// the edge must still exit cleanly (the session dies with the I/O context,
// after the backends it used to call are gone).
TEST(FailureTest, SigtermWithAClientThatNeverAnswersTheCloseStillExitsZero) {
  ClusterOptions options;
  options.edge_flags = {"--close_grace_ms=60000", "--drain_timeout_ms=300"};
  Cluster cluster("sigterm-deaf", options);
  ASSERT_TRUE(cluster.Start().ok());
  WsClient deaf;
  HandshakeOptions h;
  h.target = "/?name=deaf";
  h.start_reader = false;  // reads nothing, so never answers the close frame
  h.expect_hello = false;
  ASSERT_TRUE(deaf.Connect(cluster.edge_port(), h).ok());
  auto alice = Connect(cluster.edge_port(), "alice");
  ASSERT_TRUE(alice);
  ExpectSigtermClosesWith1001AndExitsZero(cluster, *alice);
}

// Disconnect without a code closes with 4000 (chat.proto: 0 = 4000) and the
// edge's default reason; before the v1 contract it was 1008.
TEST(FailureTest, OperatorDisconnectWithoutACodeClosesWith4000) {
  Cluster cluster("kick");
  ASSERT_TRUE(cluster.Start().ok());
  auto mallory = Connect(cluster.edge_port(), "mallory");
  auto alice = Connect(cluster.edge_port(), "alice");
  ASSERT_TRUE(mallory && alice);
  auto stub = chat::v1::ConnectionService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", cluster.connection_port()), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  chat::v1::DisconnectRequest request;
  request.set_user("mallory");
  chat::v1::DisconnectResponse response;
  grpc::Status status = stub->Disconnect(&ctx, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.disconnected(), 1);
  absl::StatusOr<Frame> closed = mallory->Read(5s);
  while (closed.ok() && !closed->closed) closed = mallory->Read(5s);
  ASSERT_TRUE(closed.ok()) << closed.status();
  EXPECT_EQ(closed->close_code, 4000);
  EXPECT_EQ(closed->close_reason, "disconnected by an operator");
  // alice is untouched.
  ASSERT_TRUE(alice->SendText(R"({"action":"ping","request_id":1})").ok());
  EXPECT_TRUE(alice->ReadAction("pong").ok());
}

}  // namespace
}  // namespace chat::testing
