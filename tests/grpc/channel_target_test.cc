// Service address flags as gRPC targets, and a channel over several replicas
// spreading its calls over all of them.
#include <memory>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "chat/v1/chat.grpc.pb.h"
#include "common/grpc_server.h"
#include "connection-service/connection_service.h"
#include "connection-service/memory_store.h"
#include "connection-service/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/grpc/grpc_test_util.h"
#include "tests/support/fake_clock.h"

namespace chat {
namespace {

using chat::testing::Ctx;
using chat::testing::Show;
namespace v1 = chat::v1;

TEST(ChannelTargetTest, SingleAddressesAndUrisAreKept) {
  EXPECT_EQ(*ChannelTarget("127.0.0.1:50051"), "127.0.0.1:50051");
  EXPECT_EQ(*ChannelTarget("connection-service:50051"), "connection-service:50051");
  EXPECT_EQ(*ChannelTarget("dns:///chat.internal:50051"), "dns:///chat.internal:50051");
  EXPECT_EQ(*ChannelTarget("ipv4:10.0.0.1:1,10.0.0.2:2"), "ipv4:10.0.0.1:1,10.0.0.2:2");
}

TEST(ChannelTargetTest, ListsOfIpLiteralsBecomeStaticTargets) {
  EXPECT_EQ(*ChannelTarget("10.0.0.1:50051,10.0.0.2:50051"), "ipv4:10.0.0.1:50051,10.0.0.2:50051");
  EXPECT_EQ(*ChannelTarget("[::1]:1, [::1]:2"), "ipv6:[::1]:1,[::1]:2");
}

TEST(ChannelTargetTest, ListsItCannotResolveAreRefused) {
  EXPECT_EQ(ChannelTarget("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChannelTarget("a:1,b:2").status().code(), absl::StatusCode::kInvalidArgument)
      << "host names in a list";
  EXPECT_EQ(ChannelTarget("10.0.0.1:1,[::1]:2").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ChannelTarget("10.0.0.1,10.0.0.2").status().code(), absl::StatusCode::kInvalidArgument)
      << "no ports";
}

// One connection-service replica with its own registry, on 127.0.0.1:0.
class Replica {
 public:
  Replica(const Clock* clock, const std::string& user)
      : registry_(std::make_unique<connection::MemoryStore>(), clock, 10'000),
        service_(&registry_, "cs-" + user) {
    connection::ConnectionInfo c;
    c.connection_id = "e1-" + user;
    c.user = user;
    c.edge_id = "e1";
    status_ = registry_.Register("e1", "inc-1", {c});
    if (!status_.ok()) return;
    auto started = StartGrpcServer({}, {&service_});
    if (!started.ok()) {
      status_ = started.status();
      return;
    }
    server_ = std::move(started->server);
    port_ = started->port;
  }
  ~Replica() {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }
  const absl::Status& status() const { return status_; }
  int port() const { return port_; }

 private:
  connection::Registry registry_;
  connection::ConnectionServiceImpl service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  absl::Status status_;
};

// Two replicas, each holding one user: a channel over both answers from
// both (round-robin), which one replica alone never could.
TEST(ChannelTargetTest, AChannelOverTwoReplicasUsesBoth) {
  chat::testing::FakeClock clock{1764050000000};
  Replica a(&clock, "alice");
  Replica b(&clock, "bob");
  ASSERT_TRUE(a.status().ok()) << a.status();
  ASSERT_TRUE(b.status().ok()) << b.status();
  auto channel = MakeChannel(absl::StrCat("127.0.0.1:", a.port(), ",127.0.0.1:", b.port()));
  auto stub = v1::ConnectionService::NewStub(channel);
  std::set<std::string> seen;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int calls = 0;
  while (seen.size() < 2 && std::chrono::steady_clock::now() < deadline) {
    v1::ListUsersRequest request;
    v1::ListUsersResponse response;
    grpc::Status status = stub->ListUsers(Ctx().get(), request, &response);
    ASSERT_TRUE(status.ok()) << Show(status);
    ASSERT_EQ(response.users_size(), 1);
    seen.insert(response.users(0).name());
    ++calls;
  }
  EXPECT_THAT(seen, ::testing::ElementsAre("alice", "bob")) << "after " << calls << " calls";
  stub.reset();
  ReleaseChannel(std::move(channel), std::chrono::seconds(2));
}

}  // namespace
}  // namespace chat

namespace chat {
namespace {

// gRPC would set SO_REUSEPORT on its own: two processes on one port would
// then share its connections silently (a misconfigured replica; in tests, an
// HAProxy handed the same "free" port took half of a server's connections).
TEST(GrpcServerTest, ASecondServerOnTheSamePortFailsToStart) {
  GrpcServerOptions options;
  options.listen = "127.0.0.1:0";
  absl::StatusOr<StartedServer> first = StartGrpcServer(options, {});
  ASSERT_TRUE(first.ok()) << first.status();
  options.listen = absl::StrCat("127.0.0.1:", first->port);
  absl::StatusOr<StartedServer> second = StartGrpcServer(options, {});
  EXPECT_FALSE(second.ok()) << "a second server took port " << first->port;
  first->server->Shutdown();
}

}  // namespace
}  // namespace chat
