// Metrics against the three real binaries: every endpoint scraped during
// traffic and checked by promtool, and a real Prometheus server scraping them.
// Both tools come from Debian's `prometheus` package (scripts/install-deps.sh);
// without them these tests fail, they never skip.
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>

#include "absl/strings/str_split.h"
#include "boost/asio/ip/tcp.hpp"
#include "tests/e2e/e2e_util.h"
#include "tests/support/process.h"
#include "tests/support/prom_text.h"

namespace chat::testing {
namespace {

namespace fs = std::filesystem;

// `name` on PATH, or empty.
std::string FindOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "/usr/bin:/bin", ':')) {
    const fs::path candidate = fs::path(std::string(dir)) / name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return "";
}

// A directory of this test's own, removed with it.
class TempDir {
 public:
  TempDir() {
    std::string dir = (fs::temp_directory_path() / "chat-metrics-XXXXXX").string();
    if (mkdtemp(dir.data()) != nullptr) path_ = dir;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) fs::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct PromtoolResult {
  int exit_code = -1;
  std::string output;
};

// `promtool check metrics` on `text` (its stdin).
PromtoolResult CheckMetrics(const std::string& promtool, const std::string& text,
                            const TempDir& dir, const std::string& name) {
  const std::string file = dir.path() + "/" + name + ".prom";
  std::ofstream(file) << text;
  PromtoolResult result;
  FILE* p = popen((promtool + " check metrics < " + file + " 2>&1").c_str(), "r");
  if (p == nullptr) return result;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) result.output.append(buf, n);
  const int status = pclose(p);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::vector<PromSample> Parse(const std::string& text) {
  auto samples = ParsePromText(text);
  EXPECT_TRUE(samples.ok()) << samples.status();
  return samples.ok() ? *samples : std::vector<PromSample>{};
}

std::string UrlEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += absl::StrCat("%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

class MetricsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new Cluster("metrics");
    start_status_ = new absl::Status(cluster_->Start());
  }
  // A failure in SetUpTestSuite would only skip the tests: fail each instead.
  void SetUp() override {
    ASSERT_TRUE(start_status_->ok()) << *start_status_;
    ASSERT_GT(cluster_->connection_metrics_port(), 0)
        << "no 'metrics on' line from connection-service";
    ASSERT_GT(cluster_->message_metrics_port(), 0) << "no 'metrics on' line from message-service";
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
    delete start_status_;
    start_status_ = nullptr;
  }

  // `from` sends `n` messages to `to`, each answered and delivered.
  static void Exchange(WsClient& from, WsClient& to, const std::string& to_name, int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(from.SendText(absl::StrCat(R"({"action":"send","send_to":")", to_name,
                                             R"(","message":"m)", i, R"(","request_id":)", i, "}"))
                      .ok());
      auto sent = from.ReadAction("sent");
      ASSERT_TRUE(sent.ok()) << sent.status();
      auto got = to.ReadAction("send");
      ASSERT_TRUE(got.ok()) << got.status();
    }
  }

  static Cluster* cluster_;
  static absl::Status* start_status_;
};
Cluster* MetricsTest::cluster_ = nullptr;
absl::Status* MetricsTest::start_status_ = nullptr;

TEST_F(MetricsTest, EveryEndpointPassesPromtoolAndCountsTheTraffic) {
  const std::string promtool = FindOnPath("promtool");
  ASSERT_FALSE(promtool.empty())
      << "promtool not found: install Debian's prometheus package (scripts/install-deps.sh)";
  const int edge = cluster_->edge_port();
  auto alice = Connect(edge, "mt_alice");
  auto bob = Connect(edge, "mt_bob");
  ASSERT_TRUE(alice && bob);
  Exchange(*alice, *bob, "mt_bob", 5);
  Exchange(*bob, *alice, "mt_alice", 3);
  // Two reads on the store (timed by kind).
  ASSERT_TRUE(alice->SendText(R"({"action":"history","with":"mt_bob","request_id":100})").ok());
  auto history = alice->ReadAction("history");
  ASSERT_TRUE(history.ok()) << history.status();
  ASSERT_TRUE(alice->SendText(R"({"action":"conversations","request_id":101})").ok());
  auto conversations = alice->ReadAction("conversations");
  ASSERT_TRUE(conversations.ok()) << conversations.status();
  // Refused handshakes: a bad ?name= (400).
  WsClient refused;
  HandshakeOptions bad_name;
  bad_name.target = "/?name=";
  bad_name.expect_hello = false;
  EXPECT_FALSE(refused.Connect(edge, bad_name).ok());
  EXPECT_EQ(refused.http_status(), 400);

  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  struct Endpoint {
    std::string name;
    int port;
  };
  std::map<std::string, std::vector<PromSample>> scraped;
  for (const Endpoint& e :
       {Endpoint{"edge", edge}, Endpoint{"connection-service", cluster_->connection_metrics_port()},
        Endpoint{"message-service", cluster_->message_metrics_port()}}) {
    SCOPED_TRACE(e.name);
    auto response = HttpGet(e.port, "/metrics");
    ASSERT_TRUE(response.ok()) << response.status();
    ASSERT_EQ(response->status, 200) << response->body;
    EXPECT_EQ(response->headers["content-type"].rfind("text/plain", 0), 0u)
        << response->headers["content-type"];
    const PromtoolResult check = CheckMetrics(promtool, response->body, dir, e.name);
    EXPECT_EQ(check.exit_code, 0) << "promtool check metrics:\n" << check.output;
    scraped[e.name] = Parse(response->body);
  }

  const auto& edge_samples = scraped["edge"];
  EXPECT_GE(PromValue(edge_samples, "chat_edge_sends_total", {{"result", "ok"}}), 8);
  EXPECT_GE(PromValue(edge_samples, "chat_edge_delivery_latency_seconds_count"), 8);
  EXPECT_GT(PromValue(edge_samples, "chat_edge_delivery_latency_seconds_sum"), 0);
  EXPECT_GE(PromValue(edge_samples, "chat_edge_connections_open"), 2);
  EXPECT_GE(PromValue(edge_samples, "chat_edge_connections_opened_total"), 2);
  EXPECT_GE(PromValue(edge_samples, "chat_edge_frames_received_total"), 8);
  EXPECT_GE(PromValue(edge_samples, "chat_edge_frames_sent_total"), 16);
  EXPECT_GE(PromValue(edge_samples, "chat_edge_handshakes_refused_total", {{"status", "400"}}), 1);
  EXPECT_EQ(PromValue(edge_samples, "chat_edge_message_links_up"), 1);
  EXPECT_EQ(PromValue(edge_samples, "chat_edge_backend_ready", {{"backend", "message_service"}}),
            1);
  // The edge's gRPC clients: every registration answered OK.
  EXPECT_GE(PromValue(edge_samples, "grpc_client_handled_total",
                      {{"grpc_method", "Register"}, {"grpc_code", "OK"}}),
            2);

  const auto& cs = scraped["connection-service"];
  EXPECT_GE(PromValue(cs, "grpc_server_handled_total",
                      {{"grpc_service", "chat.v1.EdgeRegistry"},
                       {"grpc_method", "Register"},
                       {"grpc_code", "OK"}}),
            2);
  EXPECT_GE(PromValue(cs, "chat_registry_connections"), 2);
  EXPECT_GE(PromValue(cs, "chat_registry_edges"), 1);
  EXPECT_GE(PromValue(cs, "chat_registry_users"), 2);

  const auto& ms = scraped["message-service"];
  // EdgeLink is still open: started, not yet handled.
  EXPECT_GE(PromValue(ms, "grpc_server_started_total",
                      {{"grpc_service", "chat.v1.EdgeGateway"}, {"grpc_method", "EdgeLink"}}),
            1);
  // The store worker: the 8 sends committed in at least one transaction each
  // timed, none failed or refused; every series exists from the start.
  EXPECT_GE(PromValue(ms, "chat_store_commit_batch_size_count"), 1);
  EXPECT_GE(PromValue(ms, "chat_store_commit_batch_size_sum"), 8);
  EXPECT_EQ(PromValue(ms, "chat_store_commit_seconds_count"),
            PromValue(ms, "chat_store_commit_batch_size_count"));
  EXPECT_GT(PromValue(ms, "chat_store_commit_seconds_sum"), 0);
  EXPECT_EQ(PromValue(ms, "chat_store_commit_failures_total"), 0);
  EXPECT_GE(PromValue(ms, "chat_store_queue_depth"), 0);
  EXPECT_EQ(PromValue(ms, "chat_store_queue_rejected_total"), 0);
  EXPECT_EQ(PromValue(ms, "chat_store_pruned_total"), 0);  // no retention configured
  EXPECT_GE(PromValue(ms, "chat_store_query_seconds_count", {{"kind", "history"}}), 1);
  EXPECT_GE(PromValue(ms, "chat_store_query_seconds_count", {{"kind", "conversations"}}), 1);
  for (const char* kind : {"sync", "unread", "read"}) {
    EXPECT_GE(PromValue(ms, "chat_store_query_seconds_count", {{"kind", kind}}), 0) << kind;
  }

  // A normal close is counted by its code.
  const double closed_before = std::max(
      0.0, PromValue(edge_samples, "chat_edge_connections_closed_total", {{"code", "1000"}}));
  bob->Close();
  EXPECT_TRUE(Eventually([&] {
    auto r = HttpGet(edge, "/metrics");
    return r.ok() && PromValue(Parse(r->body), "chat_edge_connections_closed_total",
                               {{"code", "1000"}}) >= closed_before + 1;
  }));
}

// A real Prometheus server on loopback scrapes the three services every second;
// its HTTP API must see the sends counter move.
TEST_F(MetricsTest, APrometheusServerScrapesAllThreeAndSeesSends) {
  const std::string prometheus = FindOnPath("prometheus");
  ASSERT_FALSE(prometheus.empty())
      << "prometheus not found: install Debian's prometheus package (scripts/install-deps.sh)";
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string config = dir.path() + "/prometheus.yml";
  std::ofstream(config) << absl::StrCat(
      "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
      "scrape_configs:\n"
      "  - job_name: edge\n    static_configs: [{targets: ['127.0.0.1:",
      cluster_->edge_port(), "']}]\n",
      "  - job_name: connection-service\n    static_configs: [{targets: ['127.0.0.1:",
      cluster_->connection_metrics_port(), "']}]\n",
      "  - job_name: message-service\n    static_configs: [{targets: ['127.0.0.1:",
      cluster_->message_metrics_port(), "']}]\n");
  const int port = chat::testing::FreeLoopbackPort();
  ChildProcess server;
  ASSERT_TRUE(server
                  .Start({prometheus, "--config.file=" + config,
                          "--storage.tsdb.path=" + dir.path() + "/data",
                          absl::StrCat("--web.listen-address=127.0.0.1:", port)},
                         {}, cluster_->LogPath("prometheus"))
                  .ok());
  ASSERT_TRUE(Eventually(
      [&] {
        if (!absl::IsDeadlineExceeded(server.Wait(std::chrono::milliseconds(0)).status())) {
          return true;  // exited: stop waiting
        }
        auto r = HttpGet(port, "/-/ready", {}, 1s);
        return r.ok() && r->status == 200;
      },
      30s));
  ASSERT_TRUE(server.running()) << "prometheus exited; see " << cluster_->LogPath("prometheus");

  // Query the HTTP API; the value of the single (summed) sample, or -1.
  auto query = [&](const std::string& promql) -> double {
    auto r = HttpGet(port, "/api/v1/query?query=" + UrlEncode(promql), {}, 2s);
    if (!r.ok() || r->status != 200) return -1;
    boost::system::error_code ec;
    const auto body = boost::json::parse(r->body, ec);
    if (ec || !body.is_object()) return -1;
    const auto* data = body.as_object().if_contains("data");
    if (data == nullptr || !data->is_object()) return -1;
    const auto* result = data->as_object().if_contains("result");
    if (result == nullptr || !result->is_array() || result->as_array().empty()) return -1;
    const auto& value = result->as_array()[0].as_object().at("value").as_array();
    return std::strtod(std::string(value[1].as_string()).c_str(), nullptr);
  };

  // Every target up, then traffic, then the counter moves in Prometheus.
  EXPECT_TRUE(Eventually([&] { return query("sum(up)") == 3; }, 30s))
      << "not all three targets are up; see " << cluster_->LogPath("prometheus");
  const double before = std::max(0.0, query("sum(chat_edge_sends_total{result=\"ok\"})"));
  auto carol = Connect(cluster_->edge_port(), "mt_carol");
  auto dave = Connect(cluster_->edge_port(), "mt_dave");
  ASSERT_TRUE(carol && dave);
  Exchange(*carol, *dave, "mt_dave", 3);
  EXPECT_TRUE(Eventually(
      [&] { return query("sum(chat_edge_sends_total{result=\"ok\"})") >= before + 3; }, 30s))
      << "Prometheus never saw the sends; last value "
      << query("sum(chat_edge_sends_total{result=\"ok\"})");
  EXPECT_GT(query("sum(chat_edge_delivery_latency_seconds_count)"), 0);
  EXPECT_GT(query("sum(grpc_server_handled_total{job=\"connection-service\"})"), 0);
  // Scraped on its own schedule: it may not have seen the commits yet.
  EXPECT_TRUE(Eventually(
      [&] { return query("sum(chat_store_commit_batch_size_count{job=\"message-service\"})") > 0; },
      30s))
      << "Prometheus never saw a store commit";

  // Every query of the shipped Grafana dashboard is valid PromQL for this
  // server, and every metric it names is exported by one of the three.
  std::ifstream dashboard_file(SourceDir() + "/docs/grafana/chat-dashboard.json");
  ASSERT_TRUE(dashboard_file.good());
  const std::string dashboard_text((std::istreambuf_iterator<char>(dashboard_file)),
                                   std::istreambuf_iterator<char>());
  const boost::json::value dashboard_json = boost::json::parse(dashboard_text);
  const auto& dashboard = dashboard_json.as_object();
  std::set<std::string> exported;
  {
    auto names = HttpGet(port, "/api/v1/label/__name__/values", {}, 2s);
    ASSERT_TRUE(names.ok() && names->status == 200);
    const boost::json::value parsed = boost::json::parse(names->body);
    for (const auto& n : parsed.at("data").as_array()) {
      exported.insert(std::string(n.as_string()));
    }
  }
  int queries = 0;
  for (const auto& panel : dashboard.at("panels").as_array()) {
    const auto* targets = panel.as_object().if_contains("targets");
    if (targets == nullptr) continue;
    for (const auto& target : targets->as_array()) {
      const std::string expr(target.as_object().at("expr").as_string());
      ++queries;
      auto r = HttpGet(port, "/api/v1/query?query=" + UrlEncode(expr), {}, 2s);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->status, 200) << expr << ": " << r->body;
      // Metric names: the identifiers that end in _total, _seconds_bucket,
      // or start with chat_ (label names and functions never do).
      static const std::regex kMetric(R"((chat_[a-z_]+|grpc_(server|client)_[a-z_]+))");
      for (std::sregex_iterator it(expr.begin(), expr.end(), kMetric), end; it != end; ++it) {
        EXPECT_TRUE(exported.count(it->str()) > 0)
            << it->str() << " (in the dashboard) is not exported by any service";
      }
    }
  }
  EXPECT_GE(queries, 20);

  server.Signal(SIGTERM);
  EXPECT_TRUE(server.Wait(10s).ok());
}

}  // namespace
}  // namespace chat::testing
