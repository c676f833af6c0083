// The gRPC interceptors' metrics (both ends of real calls) and the
// connection registry's gauges, read back from the text a scrape would get.
#include "common/grpc_metrics.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "chat/v1/chat.grpc.pb.h"
#include "common/grpc_server.h"
#include "common/metrics.h"
#include "connection-service/connection_service.h"
#include "connection-service/memory_store.h"
#include "connection-service/registry.h"
#include "connection-service/registry_metrics.h"
#include "gtest/gtest.h"
#include "tests/grpc/grpc_test_util.h"
#include "tests/support/cluster.h"
#include "tests/support/fake_clock.h"
#include "tests/support/prom_text.h"

namespace chat {
namespace {

using chat::testing::Ctx;
using chat::testing::PromSample;
using chat::testing::PromValue;
using chat::testing::StreamCollector;
namespace v1 = chat::v1;

constexpr int64_t kLeaseMs = 10'000;
constexpr char kService[] = "chat.v1.EdgeRegistry";
constexpr char kPublicService[] = "chat.v1.ConnectionService";

std::vector<PromSample> Scrape(const Metrics& metrics) {
  auto samples = chat::testing::ParsePromText(metrics.Text());
  EXPECT_TRUE(samples.ok()) << samples.status();
  return samples.ok() ? *samples : std::vector<PromSample>{};
}

// Server and client each with their own registry, as in two processes.
class GrpcMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GrpcServerOptions options;
    options.metrics = &server_grpc_;
    auto started = StartGrpcServer(options, {&service_, &edge_registry_});
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = std::move(started->server);
    channel_ = MakeChannel(absl::StrCat("127.0.0.1:", started->port), &client_grpc_);
    stub_ = v1::ConnectionService::NewStub(channel_);
    edges_ = v1::EdgeRegistry::NewStub(channel_);
  }
  void TearDown() override {
    stub_.reset();
    edges_.reset();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    ReleaseChannel(std::move(channel_), std::chrono::seconds(2));
  }

  grpc::Status Register(const std::string& edge, const std::vector<std::string>& ids,
                        const std::string& user) {
    v1::RegisterRequest request;
    request.set_edge_id(edge);
    request.set_incarnation("inc-1");
    for (const auto& id : ids) {
      auto* c = request.add_connections();
      c->set_connection_id(id);
      c->set_user(user);
    }
    v1::RegisterResponse response;
    return edges_->Register(Ctx().get(), request, &response);
  }

  static std::map<std::string, std::string> Call(const std::string& method,
                                                 const std::string& code = "",
                                                 const char* service = kService) {
    std::map<std::string, std::string> labels = {{"grpc_service", service},
                                                 {"grpc_method", method}};
    if (!code.empty()) labels["grpc_code"] = code;
    return labels;
  }

  chat::testing::FakeClock clock_{1764050000000};
  Metrics server_metrics_;
  GrpcMetrics server_grpc_{server_metrics_};
  connection::RegistryMetrics registry_metrics_{server_metrics_.registry()};
  connection::Registry registry_{std::make_unique<connection::MemoryStore>(), &clock_, kLeaseMs,
                                 &registry_metrics_};
  connection::ConnectionServiceImpl service_{&registry_, "cs-test"};
  connection::EdgeRegistryImpl edge_registry_{&registry_, "cs-test"};
  Metrics client_metrics_;
  GrpcMetrics client_grpc_{client_metrics_};
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ConnectionService::Stub> stub_;
  std::unique_ptr<v1::EdgeRegistry::Stub> edges_;
};

TEST_F(GrpcMetricsTest, UnaryCallsAreCountedAndTimedByMethodAndCodeOnBothEnds) {
  ASSERT_TRUE(Register("e1", {"e1-0"}, "alice").ok());
  ASSERT_TRUE(Register("e1", {"e1-1"}, "bob").ok());
  EXPECT_EQ(Register("", {"x-0"}, "carol").error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::GetUserRequest get;
  get.set_name("nobody");
  v1::User user;
  EXPECT_EQ(stub_->GetUser(Ctx().get(), get, &user).error_code(), grpc::StatusCode::NOT_FOUND);

  for (const auto* side : {"grpc_server", "grpc_client"}) {
    SCOPED_TRACE(side);
    const Metrics& m = std::string(side) == "grpc_server" ? server_metrics_ : client_metrics_;
    // The server records at the status it sends, the client at the status it
    // receives: both before the synchronous call above returned.
    const auto samples = Scrape(m);
    const std::string p = side;
    EXPECT_EQ(PromValue(samples, p + "_started_total", Call("Register")), 3);
    EXPECT_EQ(PromValue(samples, p + "_handled_total", Call("Register", "OK")), 2);
    EXPECT_EQ(PromValue(samples, p + "_handled_total", Call("Register", "INVALID_ARGUMENT")), 1);
    EXPECT_EQ(
        PromValue(samples, p + "_handled_total", Call("GetUser", "NOT_FOUND", kPublicService)), 1);
    EXPECT_EQ(PromValue(samples, p + "_handling_seconds_count", Call("Register", "OK")), 2);
    EXPECT_EQ(PromValue(samples, p + "_handling_seconds_bucket",
                        {{"grpc_method", "Register"}, {"grpc_code", "OK"}, {"le", "+Inf"}}),
              2);
    EXPECT_GT(PromValue(samples, p + "_handling_seconds_sum", Call("Register", "OK")), 0);
  }
}

TEST_F(GrpcMetricsTest, AStreamTheClientCancelsIsCountedWhenItEnds) {
  v1::WatchRoutesRequest request;
  request.set_edge_id("e1");
  auto stream = std::make_unique<StreamCollector<v1::RouteUpdate>>(
      [&](grpc::ClientContext* ctx, grpc::ClientReadReactor<v1::RouteUpdate>* reactor) {
        edges_->async()->WatchRoutes(ctx, &request, reactor);
      });
  ASSERT_EQ(stream->WaitFor(1).size(), 1u);  // the snapshot: the stream is live
  EXPECT_EQ(PromValue(Scrape(server_metrics_), "grpc_server_started_total", Call("WatchRoutes")),
            1);
  stream.reset();  // cancels and waits for the end
  EXPECT_EQ(PromValue(Scrape(client_metrics_), "grpc_client_handled_total",
                      Call("WatchRoutes", "CANCELLED")),
            1);
  EXPECT_TRUE(chat::testing::Eventually([&] {
    return PromValue(Scrape(server_metrics_), "grpc_server_handled_total",
                     {{"grpc_method", "WatchRoutes"}}) == 1;
  }));
}

TEST_F(GrpcMetricsTest, RegistryGaugesFollowConnectionsAndLeaseExpiries) {
  ASSERT_TRUE(Register("e1", {"e1-0", "e1-1"}, "alice").ok());
  ASSERT_TRUE(Register("e1", {"e1-2"}, "bob").ok());
  ASSERT_TRUE(Register("e2", {"e2-0"}, "bob").ok());
  auto samples = Scrape(server_metrics_);
  EXPECT_EQ(PromValue(samples, "chat_registry_users"), 2);
  EXPECT_EQ(PromValue(samples, "chat_registry_online_users"), 2);
  EXPECT_EQ(PromValue(samples, "chat_registry_connections"), 4);
  EXPECT_EQ(PromValue(samples, "chat_registry_edges"), 2);

  ASSERT_TRUE(registry_.Unregister("e1", "inc-1", {"e1-0"}).ok());
  EXPECT_EQ(PromValue(Scrape(server_metrics_), "chat_registry_connections"), 3);

  // e2 keeps heartbeating; e1 goes silent and loses its two connections.
  clock_.Advance(kLeaseMs / 2);
  ASSERT_TRUE(registry_.Heartbeat("e2", "inc-1").ok());
  clock_.Advance(kLeaseMs / 2 + 1);
  EXPECT_EQ(registry_.ExpireLeases(), 2u);
  samples = Scrape(server_metrics_);
  EXPECT_EQ(PromValue(samples, "chat_registry_lease_expiries_total"), 1);
  EXPECT_EQ(PromValue(samples, "chat_registry_lease_expired_connections_total"), 2);
  EXPECT_EQ(PromValue(samples, "chat_registry_edges"), 1);
  EXPECT_EQ(PromValue(samples, "chat_registry_connections"), 1);
  EXPECT_EQ(PromValue(samples, "chat_registry_online_users"), 1);  // bob, on e2
  EXPECT_EQ(PromValue(samples, "chat_registry_users"), 2);
}

}  // namespace
}  // namespace chat
