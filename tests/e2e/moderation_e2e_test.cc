// Operators' Disconnect with the real binaries: the close code and reason
// reach the WebSocket client, and a ban makes every edge refuse the user's
// handshakes with HTTP 403 until it ends.
#include <chrono>

#include "chat/v1/chat.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "tests/e2e/e2e_util.h"

namespace chat::testing {
namespace {

std::unique_ptr<chat::v1::ConnectionService::Stub> ConnectionStub(const Cluster& cluster) {
  return chat::v1::ConnectionService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", cluster.connection_port()), grpc::InsecureChannelCredentials()));
}

grpc::Status Disconnect(chat::v1::ConnectionService::Stub& stub,
                        const chat::v1::DisconnectRequest& request,
                        chat::v1::DisconnectResponse* response) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  return stub.Disconnect(&ctx, request, response);
}

// The close frame's code and reason, skipping whatever comes before it.
absl::StatusOr<Frame> ReadClose(WsClient& client, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return absl::DeadlineExceededError("connection not closed in time");
    absl::StatusOr<Frame> frame = client.Read(left);
    if (!frame.ok() || frame->closed) return frame;
  }
}

// The HTTP status a handshake as `name` gets (101 when it is accepted).
int HandshakeStatus(int port, const std::string& name, std::string* body = nullptr) {
  WsClient client;
  HandshakeOptions options;
  options.target = absl::StrCat("/?name=", name);
  if (client.Connect(port, options).ok()) return 101;
  if (body != nullptr) *body = client.http_body();
  return client.http_status();
}

TEST(ModerationTest, KickWithCodeAndReasonReachesTheClient) {
  Cluster cluster("kick-code");
  ASSERT_TRUE(cluster.Start().ok());
  auto carol = Connect(cluster.edge_port(), "carol");
  auto alice = Connect(cluster.edge_port(), "alice");
  ASSERT_TRUE(carol && alice);
  auto stub = ConnectionStub(cluster);
  chat::v1::DisconnectRequest request;
  request.set_user("carol");
  request.set_code(4321);
  request.set_reason("bye for now");
  chat::v1::DisconnectResponse response;
  grpc::Status status = Disconnect(*stub, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.disconnected(), 1);
  EXPECT_EQ(response.banned_until_ms(), 0);
  absl::StatusOr<Frame> closed = ReadClose(*carol);
  ASSERT_TRUE(closed.ok()) << closed.status();
  EXPECT_EQ(closed->close_code, 4321);
  EXPECT_EQ(closed->close_reason, "bye for now");
  // alice is untouched, and carol (not banned) may come back.
  ASSERT_TRUE(alice->SendText(R"({"action":"ping","request_id":1})").ok());
  EXPECT_TRUE(alice->ReadAction("pong").ok());
  EXPECT_TRUE(Connect(cluster.edge_port(), "carol") != nullptr);
}

TEST(ModerationTest, ABannedUserIsRefusedWith403OnEveryEdgeUntilTheBanEnds) {
  ClusterOptions options;
  options.edges = 2;
  Cluster cluster("ban", options);
  ASSERT_TRUE(cluster.Start().ok());
  ASSERT_TRUE(cluster.WaitEdgeReady(1).ok());
  auto mallory = Connect(cluster.edge_port(0), "mallory");
  auto alice = Connect(cluster.edge_port(0), "alice");
  ASSERT_TRUE(mallory && alice);
  auto stub = ConnectionStub(cluster);

  const int64_t before_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
  chat::v1::DisconnectRequest request;
  request.set_user("mallory");
  request.mutable_ban()->set_seconds(60);
  chat::v1::DisconnectResponse response;
  grpc::Status status = Disconnect(*stub, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.disconnected(), 1);
  EXPECT_GE(response.banned_until_ms(), before_ms + 60'000);
  EXPECT_LT(response.banned_until_ms(), before_ms + 70'000);
  absl::StatusOr<Frame> closed = ReadClose(*mallory);
  ASSERT_TRUE(closed.ok()) << closed.status();
  EXPECT_EQ(closed->close_code, 4000) << "no code: 4000";

  // The edge learned of the ban before the kick (same stream, in order).
  std::string body;
  EXPECT_EQ(HandshakeStatus(cluster.edge_port(0), "mallory", &body), 403);
  EXPECT_EQ(body, "this user is banned from connecting for now\n");
  // The other edge never held mallory's connection, and refuses too.
  EXPECT_TRUE(Eventually([&] { return HandshakeStatus(cluster.edge_port(1), "mallory") == 403; }))
      << "edge 1 lets a banned user in";
  // Everyone else is unaffected.
  ASSERT_TRUE(alice->SendText(R"({"action":"ping","request_id":1})").ok());
  EXPECT_TRUE(alice->ReadAction("pong").ok());
  EXPECT_TRUE(Connect(cluster.edge_port(1), "bob") != nullptr);

  chat::v1::GetUserRequest get;
  get.set_name("mallory");
  chat::v1::User user;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  ASSERT_TRUE(stub->GetUser(&ctx, get, &user).ok());
  EXPECT_EQ(user.banned_until_ms(), response.banned_until_ms());

  // A later ban replaces it: a millisecond's ban ends it at once.
  request.mutable_ban()->set_seconds(0);
  request.mutable_ban()->set_nanos(1);
  ASSERT_TRUE(Disconnect(*stub, request, &response).ok());
  EXPECT_EQ(response.disconnected(), 0);
  for (int edge : {0, 1}) {
    EXPECT_TRUE(Eventually([&] {
      return HandshakeStatus(cluster.edge_port(edge), "mallory") == 101;
    })) << "edge "
        << edge << " still refuses mallory after the ban ended";
  }
}

}  // namespace
}  // namespace chat::testing
