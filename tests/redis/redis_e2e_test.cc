// The real binaries: two connection-services sharing one redis-server, an
// edge registered on the first, message-service looking users up on the
// second.
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "chat/v1/chat.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "tests/e2e/e2e_util.h"
#include "tests/support/redis_server.h"

namespace chat::testing {
namespace {

std::unique_ptr<chat::v1::ConnectionService::Stub> Public(int port) {
  return chat::v1::ConnectionService::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
}

bool OnlineOn(int port, const std::string& user) {
  auto stub = Public(port);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 2s);
  chat::v1::GetUserRequest request;
  request.set_name(user);
  chat::v1::User response;
  return stub->GetUser(&ctx, request, &response).ok() && response.online();
}

TEST(RedisE2eTest, TwoConnectionServicesShareOneRedis) {
  auto redis = RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.status();
  const std::string registry = "--registry=" + (*redis)->Url();
  std::string dir = "/tmp/chat-redis-e2e-XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);

  // Replica B, started by hand; the cluster's own connection-service is A.
  ChildProcess b;
  ASSERT_TRUE(
      b.Start({BinaryDir() + "/connection-service/connection-service", "--listen=127.0.0.1:0",
               "--metrics_listen=127.0.0.1:0", registry, "--store=sqlite:" + dir + "/users-b.db"},
              {}, dir + "/connection-service-b.log")
          .ok());
  absl::StatusOr<int> b_port = b.WaitListening(10s);
  ASSERT_TRUE(b_port.ok()) << b_port.status();

  ClusterOptions options;
  options.connection_flags = {registry};
  // Flags given twice: the last one counts.
  options.message_flags = {absl::StrCat("--connection_service=127.0.0.1:", *b_port)};
  Cluster cluster("redis-e2e", options);
  ASSERT_TRUE(cluster.Start().ok());

  auto alice = Connect(cluster.edge_port(), "alice");
  auto bob = Connect(cluster.edge_port(), "bob");
  auto mallory = Connect(cluster.edge_port(), "mallory");
  ASSERT_TRUE(alice && bob && mallory);
  // Registered on A, seen on B.
  EXPECT_TRUE(Eventually([&] { return OnlineOn(*b_port, "bob"); }, 5s));
  // bob is a recipient message-service looks up on B.
  ASSERT_TRUE(
      alice->SendText(R"({"action":"send","message":"via two registries","send_to":"bob"})").ok());
  auto got = bob->ReadAction("send");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Str(*got, "message"), "via two registries");
  EXPECT_EQ(Str(*got, "sent_by"), "alice");

  // An operator's kick on B closes the socket the edge registered on A.
  {
    auto stub = Public(*b_port);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 5s);
    chat::v1::DisconnectRequest request;
    request.set_user("mallory");
    request.set_code(4005);
    request.set_reason("not here");
    chat::v1::DisconnectResponse response;
    grpc::Status status = stub->Disconnect(&ctx, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.disconnected(), 1);
  }
  absl::StatusOr<Frame> closed = mallory->Read(5s);
  while (closed.ok() && !closed->closed) closed = mallory->Read(5s);
  ASSERT_TRUE(closed.ok()) << closed.status();
  EXPECT_EQ(closed->close_code, 4005);
  EXPECT_EQ(closed->close_reason, "not here");
  EXPECT_TRUE(Eventually([&] { return !OnlineOn(cluster.connection_port(), "mallory"); }, 5s));

  // Both answer with the same counts and the same instance id.
  auto counts = [](int port) {
    auto stub = Public(port);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 2s);
    chat::v1::GetCountsResponse response;
    stub->GetCounts(&ctx, chat::v1::GetCountsRequest(), &response);
    return response.connections();
  };
  EXPECT_EQ(counts(*b_port), 2);
  EXPECT_EQ(counts(cluster.connection_port()), 2);
  absl::StatusOr<HttpResult> metrics = HttpGet(cluster.connection_metrics_port(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_NE(metrics->body.find("\nchat_registry_redis_up 1\n"), std::string::npos);
  EXPECT_NE(metrics->body.find("\nchat_registry_connections 2\n"), std::string::npos);
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

TEST(RedisE2eTest, RedisLostAndRestartedEmptyIsRefilledByTheEdge) {
  auto redis = RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.status();
  ClusterOptions options;
  options.connection_flags = {"--registry=" + (*redis)->Url()};
  Cluster cluster("redis-restart", options);
  ASSERT_TRUE(cluster.Start().ok());
  auto alice = Connect(cluster.edge_port(), "alice");
  auto bob = Connect(cluster.edge_port(), "bob");
  ASSERT_TRUE(alice && bob);

  ASSERT_TRUE((*redis)->Kill().ok());
  // While Redis is away: live sockets stay, messages between them flow, a
  // new handshake is refused with 503 and Retry-After, lookups still answer.
  ASSERT_TRUE(
      alice->SendText(R"({"action":"send","message":"redis is down","send_to":"bob"})").ok());
  auto got = bob->ReadAction("send");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Str(*got, "message"), "redis is down");
  WsClient carol;
  HandshakeOptions handshake;
  handshake.target = "/?name=carol";
  EXPECT_FALSE(carol.Connect(cluster.edge_port(), handshake).ok());
  EXPECT_EQ(carol.http_status(), 503);
  EXPECT_TRUE(OnlineOn(cluster.connection_port(), "alice"));

  ASSERT_TRUE((*redis)->Restart().ok());
  const auto restarted = std::chrono::steady_clock::now();
  // The edge sees a new instance id (or an unknown lease) on its next
  // heartbeat and registers its connections again.
  ASSERT_TRUE(Eventually(
      [&] {
        absl::StatusOr<std::string> n = (*redis)->Command({"HLEN", "chat:conns"});
        return n.ok() && *n == "2";
      },
      15s));
  const auto healed = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - restarted)
                          .count();
  std::printf(
      "[ timing ] redis-server restarted empty -> the edge's 2 connections back in it: "
      "%lld ms\n",
      static_cast<long long>(healed));
  EXPECT_TRUE(Eventually([&] { return OnlineOn(cluster.connection_port(), "bob"); }, 5s));
  auto carol_again = Connect(cluster.edge_port(), "carol");
  ASSERT_TRUE(carol_again);
  ASSERT_TRUE(alice->SendText(R"({"action":"send","message":"back","send_to":"carol"})").ok());
  auto back = carol_again->ReadAction("send");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(Str(*back, "message"), "back");
}

TEST(RedisE2eTest, NewHandshakesWorkAgainAfterTheRedisPrimaryIsKilled) {
  auto primary = RedisServer::Start();
  ASSERT_TRUE(primary.ok()) << primary.status();
  auto replica = RedisServer::Start({(*primary)->port()});
  ASSERT_TRUE(replica.ok()) << replica.status();
  auto sentinels = SentinelGroup::Start((*primary)->port(), 3);
  ASSERT_TRUE(sentinels.ok()) << sentinels.status();
  ASSERT_TRUE((*sentinels)->WaitReady(1, 20s).ok());
  ClusterOptions options;
  options.connection_flags = {"--registry=" + (*sentinels)->Url()};
  Cluster cluster("redis-sentinel", options);
  ASSERT_TRUE(cluster.Start().ok());
  auto alice = Connect(cluster.edge_port(), "alice");
  ASSERT_TRUE(alice);

  ASSERT_TRUE((*primary)->Kill().ok());
  const auto killed = std::chrono::steady_clock::now();
  int refused = 0;
  std::unique_ptr<WsClient> bob;
  ASSERT_TRUE(Eventually(
      [&] {
        auto client = std::make_unique<WsClient>();
        HandshakeOptions handshake;
        handshake.target = "/?name=bob";
        if (!client->Connect(cluster.edge_port(), handshake).ok()) {
          EXPECT_EQ(client->http_status(), 503);
          ++refused;
          return false;
        }
        bob = std::move(client);
        return true;
      },
      30s));
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - killed)
                        .count();
  std::printf(
      "[ timing ] Redis primary SIGKILLed -> a new handshake accepted: %lld ms "
      "(%d refused with 503 before)\n",
      static_cast<long long>(took), refused);
  EXPECT_LT(took, 10'000);
  // alice never noticed, and she and bob talk.
  ASSERT_TRUE(
      alice->SendText(R"({"action":"send","message":"after failover","send_to":"bob"})").ok());
  auto got = bob->ReadAction("send");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(Str(*got, "message"), "after failover");
  EXPECT_TRUE(Eventually([&] { return OnlineOn(cluster.connection_port(), "bob"); }, 5s));
}

TEST(RedisE2eTest, ReadsAnswerWhileMutationsWaitOnAHungRedis) {
  // Mutations block their gRPC thread on Redis; reads come from the mirror
  // and must not queue behind them.
  auto redis = RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << redis.status();
  std::string dir = "/tmp/chat-redis-e2e-XXXXXX";
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  ChildProcess service;
  ASSERT_TRUE(service
                  .Start({BinaryDir() + "/connection-service/connection-service",
                          "--listen=127.0.0.1:0", "--metrics_listen=",
                          "--registry=" + (*redis)->Url(), "--store=sqlite:" + dir + "/users.db"},
                         {}, dir + "/connection-service.log")
                  .ok());
  absl::StatusOr<int> port = service.WaitListening(10s);
  ASSERT_TRUE(port.ok()) << port.status();
  auto channel =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", *port), grpc::InsecureChannelCredentials());
  auto edges = chat::v1::EdgeRegistry::NewStub(channel);
  ASSERT_TRUE(Eventually(
      [&] {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + 2s);
        chat::v1::RegisterRequest request;
        request.set_edge_id("e1");
        request.set_incarnation("i1");
        auto* c = request.add_connections();
        c->set_connection_id("e1-1");
        c->set_user("alice");
        chat::v1::RegisterResponse response;
        return edges->Register(&ctx, request, &response).ok();
      },
      10s));
  ASSERT_TRUE((*redis)->Suspend().ok());
  constexpr int kCalls = 64;
  std::atomic<int> pending{kCalls};
  std::vector<std::thread> callers;
  for (int i = 0; i < kCalls; ++i) {
    callers.emplace_back([&] {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + 10s);
      chat::v1::HeartbeatRequest request;
      request.set_edge_id("e1");
      request.set_incarnation("i1");
      chat::v1::HeartbeatResponse response;
      (void)edges->Heartbeat(&ctx, request, &response);
      --pending;
    });
  }
  // Reads for as long as heartbeats are waiting.
  int64_t slowest = 0;
  int reads = 0;
  while (pending > 0) {
    const auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(OnlineOn(*port, "alice"));
    ++reads;
    slowest = std::max<int64_t>(slowest, std::chrono::duration_cast<std::chrono::milliseconds>(
                                             std::chrono::steady_clock::now() - start)
                                             .count());
  }
  for (auto& t : callers) t.join();
  (*redis)->Resume();
  std::printf("[ timing ] %d GetUser while %d heartbeats wait on a hung Redis: slowest %lld ms\n",
              reads, kCalls, static_cast<long long>(slowest));
  // Had a read waited on Redis, it would have taken a whole command timeout
  // (1 s); answered from the mirror it takes milliseconds.
  EXPECT_LT(slowest, 900);
}

TEST(RedisE2eTest, BadRegistryFormStopsTheServiceAtStart) {
  ChildProcess cs;
  ASSERT_TRUE(cs.Start({BinaryDir() + "/connection-service/connection-service",
                        "--listen=127.0.0.1:0", "--metrics_listen=", "--registry=redis://nowhere"})
                  .ok());
  absl::StatusOr<int> status = cs.Wait(10s);
  ASSERT_TRUE(status.ok()) << status.status();
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 2);
}

}  // namespace
}  // namespace chat::testing
