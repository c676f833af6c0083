// Abuse and admission rules at the edge and on the gRPC APIs, each asserting
// the exact refusal and that honest traffic keeps flowing meanwhile.
#include <thread>

#include "absl/strings/numbers.h"
#include "boost/asio/ip/tcp.hpp"
#include "chat/v1/chat.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "tests/e2e/e2e_util.h"

namespace chat::testing {
namespace {

// Two honest users who must keep talking whatever else happens.
void ExpectHonestExchange(int port, const std::string& tag) {
  auto a = Connect(port, "honest-a-" + tag);
  auto b = Connect(port, "honest-b-" + tag);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->SendText(absl::StrCat(R"({"action":"send","send_to":"honest-b-)", tag,
                                       R"(","message":"still fine","request_id":1})"))
                  .ok());
  auto sent = a->ReadAction("sent");
  ASSERT_TRUE(sent.ok()) << sent.status();
  auto got = b->ReadAction("send");
  ASSERT_TRUE(got.ok()) << got.status();
}

TEST(SecurityTest, OriginAllowList) {
  ClusterOptions options;
  options.edge_flags = {"--allowed_origins=https://chat.example.com"};
  Cluster cluster("origin", options);
  ASSERT_TRUE(cluster.Start().ok());
  HandshakeOptions evil;
  evil.headers = {{"Origin", "https://evil.example"}};
  evil.expect_hello = false;
  WsClient refused;
  evil.target = "/?name=alice";
  EXPECT_FALSE(refused.Connect(cluster.edge_port(), evil).ok());
  EXPECT_EQ(refused.http_status(), 403) << refused.http_body();
  HandshakeOptions good;
  good.headers = {{"Origin", "https://chat.example.com"}};
  EXPECT_TRUE(Connect(cluster.edge_port(), "alice", good) != nullptr);
  // No Origin: not a browser page; allowed.
  EXPECT_TRUE(Connect(cluster.edge_port(), "bob") != nullptr);
  ExpectHonestExchange(cluster.edge_port(), "origin");
}

TEST(SecurityTest, ConnectionLimitsPerUserAndPerEdge) {
  ClusterOptions options;
  options.edge_flags = {"--max_connections_per_user=2", "--max_connections=4"};
  Cluster cluster("limits", options);
  ASSERT_TRUE(cluster.Start().ok());
  auto a1 = Connect(cluster.edge_port(), "alice");
  auto a2 = Connect(cluster.edge_port(), "alice");
  ASSERT_TRUE(a1 && a2);
  WsClient third;
  HandshakeOptions o;
  o.target = "/?name=alice";
  o.expect_hello = false;
  EXPECT_FALSE(third.Connect(cluster.edge_port(), o).ok());
  EXPECT_EQ(third.http_status(), 503) << third.http_body();
  EXPECT_THAT(third.http_body(), ::testing::HasSubstr("connections")) << "the body says why";
  // Closing one frees a slot.
  a2->Close();
  ASSERT_TRUE(Eventually([&] {
    WsClient again;
    HandshakeOptions h;
    h.target = "/?name=alice";
    return again.Connect(cluster.edge_port(), h).ok();
  }));
  auto b1 = Connect(cluster.edge_port(), "bob");
  auto c1 = Connect(cluster.edge_port(), "carol");
  ASSERT_TRUE(b1 && c1);
  // a1, b1, c1 and possibly the probe above: the edge holds at most 4.
  auto d1 = Connect(cluster.edge_port(), "dave");
  WsClient over;
  HandshakeOptions h;
  h.target = "/?name=erin";
  h.expect_hello = false;
  EXPECT_FALSE(over.Connect(cluster.edge_port(), h).ok());
  EXPECT_EQ(over.http_status(), 503) << over.http_body();
}

TEST(SecurityTest, HammeringAfterRateLimitedClosesWith1008) {
  ClusterOptions options;
  options.edge_flags = {"--messages_per_second=5", "--rate_burst=5", "--rate_limit_strikes=10"};
  Cluster cluster("hammer", options);
  ASSERT_TRUE(cluster.Start().ok());
  auto bystander = Connect(cluster.edge_port(), "bystander");
  auto hammer = Connect(cluster.edge_port(), "hammer");
  ASSERT_TRUE(bystander && hammer);
  for (int i = 0; i < 40; ++i) {
    if (!hammer->SendText(R"({"action":"ping"})").ok()) break;
  }
  auto limited = hammer->ReadAction("error");
  ASSERT_TRUE(limited.ok()) << limited.status();
  EXPECT_EQ(Str(*limited, "code"), "rate_limited");
  EXPECT_TRUE(limited->at("temporary").as_bool());
  auto code = hammer->ReadUntilClosed();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 1008);
  ASSERT_TRUE(bystander->SendText(R"({"action":"ping","request_id":1})").ok());
  EXPECT_TRUE(bystander->ReadAction("pong").ok());
}

TEST(SecurityTest, SilentHandshakeIsCutAfterTheTimeout) {
  ClusterOptions options;
  options.edge_flags = {"--handshake_timeout_s=1"};
  Cluster cluster("handshake", options);
  ASSERT_TRUE(cluster.Start().ok());
  const auto start = std::chrono::steady_clock::now();
  auto raw = RawRequest(cluster.edge_port(), "GET /?name=slowloris HTTP/1.1\r\nHost: x\r\n", 5s);
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s) << "edge kept a silent handshake open";
  ExpectHonestExchange(cluster.edge_port(), "handshake");
}

TEST(SecurityTest, GrpcApisRequireTheServiceCredentialWhenConfigured) {
  ClusterOptions options;
  options.connection_flags = {"--service_token=s3cret"};
  options.message_flags = {"--service_token=s3cret"};
  options.edge_flags = {"--service_token=s3cret"};
  Cluster cluster("token", options);
  ASSERT_TRUE(cluster.Start().ok());
  ExpectHonestExchange(cluster.edge_port(), "token");

  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", cluster.connection_port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = chat::v1::ConnectionService::NewStub(channel);
  for (const char* token : {"", "Bearer wrong", "Bearer s3cret"}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 5s);
    if (*token != '\0') ctx.AddMetadata("authorization", token);
    chat::v1::ListUsersRequest request;
    chat::v1::ListUsersResponse response;
    grpc::Status status = stub->ListUsers(&ctx, request, &response);
    if (std::string(token) == "Bearer s3cret") {
      EXPECT_TRUE(status.ok()) << status.error_message();
      EXPECT_GE(response.users_size(), 2);
    } else {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << token;
    }
  }
  auto message_stub = chat::v1::MessageService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", cluster.message_port()), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  chat::v1::SendRequest send;
  send.set_sent_by("mallory");
  send.set_send_to("honest-b-token");
  send.set_message("spoofed");
  chat::v1::SendResponse response;
  EXPECT_EQ(message_stub->Send(&ctx, send, &response).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST(SecurityTest, GrpcApisRefuseOversizedRequestsAndKeepServing) {
  ClusterOptions options;
  options.message_flags = {"--max_grpc_message_bytes=65536", "--max_message_bytes=4096"};
  options.connection_flags = {"--max_message_bytes=65536"};
  Cluster cluster("grpc-limits", options);
  ASSERT_TRUE(cluster.Start().ok());
  auto message_stub = chat::v1::MessageService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", cluster.message_port()), grpc::InsecureChannelCredentials()));
  auto send = [&](size_t bytes) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 5s);
    chat::v1::SendRequest request;
    request.set_sent_by("system");
    request.set_send_to("nobody");
    request.set_message(std::string(bytes, 'x'));
    chat::v1::SendResponse response;
    return message_stub->Send(&ctx, request, &response);
  };
  // Over the gRPC message limit: refused by the transport.
  EXPECT_EQ(send(200000).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Under it but over the chat text limit: refused by the service.
  EXPECT_EQ(send(8000).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  auto connection_stub = chat::v1::ConnectionService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", cluster.connection_port()), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  chat::v1::GetUserRequest get;
  get.set_name(std::string(100000, 'u'));
  chat::v1::User got;
  EXPECT_EQ(connection_stub->GetUser(&ctx, get, &got).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Both services still serve, and the chat still flows.
  grpc::Status small = send(10);
  EXPECT_EQ(small.error_code(), grpc::StatusCode::NOT_FOUND)
      << "served, and nobody does not exist: " << small.error_message();
  ExpectHonestExchange(cluster.edge_port(), "grpc-limits");
}

// Many hostile connections doing every kind of abuse at once while two honest
// users exchange 1000 messages: the honest exchange loses nothing.
TEST(SecurityTest, HostileCrowdDoesNotHurtHonestUsers) {
  ClusterOptions options;
  options.edge_flags = {"--messages_per_second=2000", "--rate_burst=2000",
                        "--max_outbound_bytes=65536", "--bad_frames_max=5",
                        "--max_message_bytes=8192",   "--handshake_timeout_s=2"};
  Cluster cluster("hostile", options);
  ASSERT_TRUE(cluster.Start().ok());
  const int port = cluster.edge_port();
  auto alice = Connect(port, "alice");
  auto bob = Connect(port, "bob");
  ASSERT_TRUE(alice && bob);

  std::atomic<bool> stop{false};
  std::vector<std::thread> attackers;
  // Garbage, binary and oversized frames, invalid UTF-8, bad names, half-open
  // handshakes, floods, and slow consumers being sent to.
  for (int t = 0; t < 6; ++t) {
    attackers.emplace_back([&, t] {
      int round = 0;
      while (!stop) {
        ++round;
        WsClient c;
        HandshakeOptions h;
        h.target = absl::StrCat("/?name=hostile-", t);
        h.expect_hello = false;
        switch (t) {
          case 0:
            if (c.Connect(port, h).ok()) {
              for (int i = 0; i < 10; ++i) c.SendText("{not json").IgnoreError();
            }
            break;
          case 1:
            if (c.Connect(port, h).ok()) c.SendText(std::string(20000, 'x')).IgnoreError();
            break;
          case 2:
            if (c.Connect(port, h).ok()) {
              c.SendBinary("\x00\x01").IgnoreError();
              c.SendText("\"\xFF\xFE\"").IgnoreError();
            }
            break;
          case 3:
            h.target = "/?name=%00%FF";
            c.Connect(port, h).IgnoreError();
            RawRequest(port, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n", 100ms)
                .IgnoreError();
            break;
          case 4:
            if (c.Connect(port, h).ok()) {
              for (int i = 0; i < 300; ++i) {
                c.SendText(
                     R"({"action":"send","send_to":"hostile-5","message":"flood flood flood"})")
                    .IgnoreError();
              }
            }
            break;
          case 5: {
            // A consumer that never reads, flooded by attacker 4.
            h.start_reader = false;
            if (c.Connect(port, h).ok()) {
              c.SetReceiveBuffer(2048);
              for (int i = 0; i < 50 && !stop; ++i) {
                c.SendText(R"({"action":"users"})").IgnoreError();
              }
            }
            break;
          }
        }
      }
    });
  }
  constexpr int kMessages = 1000;
  std::thread sender([&] {
    for (int i = 0; i < kMessages; ++i) {
      json::object frame{{"action", "send"}, {"send_to", "bob"}, {"message", absl::StrCat(i)}};
      ASSERT_TRUE(alice->SendJson(frame).ok());
    }
  });
  int expected = 0;
  int lost = 0;
  for (int i = 0; i < kMessages; ++i) {
    auto got = bob->ReadAction("send", 15s);
    if (!got.ok()) {
      lost = kMessages - i;
      break;
    }
    int seq = -1;
    ASSERT_TRUE(absl::SimpleAtoi(Str(*got, "message"), &seq));
    ASSERT_EQ(seq, expected) << "out of order";
    ++expected;
  }
  sender.join();
  stop = true;
  for (auto& t : attackers) t.join();
  EXPECT_EQ(lost, 0);
  auto error = alice->Read(10ms);
  EXPECT_FALSE(error.ok()) << "alice got " << error->payload << " close " << error->close_code
                           << " " << error->close_reason;
  // The edge is still healthy.
  auto health = HttpGet(port, "/readyz");
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(health->status, 200);
}

}  // namespace
}  // namespace chat::testing
