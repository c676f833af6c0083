// EdgeMetrics as a scrape shows them: labels chosen once, unknown codes
// folded into "other", latency never negative.
#include "edge/edge_metrics.h"

#include "absl/status/status.h"
#include "common/metrics.h"
#include "gtest/gtest.h"
#include "tests/support/prom_text.h"

namespace chat::edge {
namespace {

using chat::testing::PromValue;

class EdgeMetricsTest : public ::testing::Test {
 protected:
  std::vector<chat::testing::PromSample> Scrape() {
    auto samples = chat::testing::ParsePromText(metrics_.Text());
    EXPECT_TRUE(samples.ok()) << samples.status();
    return samples.ok() ? *samples : std::vector<chat::testing::PromSample>{};
  }

  Metrics metrics_;
  EdgeMetrics edge_{metrics_.registry()};
};

TEST_F(EdgeMetricsTest, EveryLabelIsExportedAtZeroBeforeAnythingHappens) {
  const auto s = Scrape();
  EXPECT_EQ(PromValue(s, "chat_edge_sends_total", {{"result", "rate_limited"}}), 0);
  EXPECT_EQ(PromValue(s, "chat_edge_connections_closed_total", {{"code", "4008"}}), 0);
  EXPECT_EQ(PromValue(s, "chat_edge_handshakes_refused_total", {{"status", "503"}}), 0);
  EXPECT_EQ(PromValue(s, "chat_edge_delivery_latency_seconds_count"), 0);
  EXPECT_EQ(PromValue(s, "chat_edge_message_links_up"), 0);
}

TEST_F(EdgeMetricsTest, ConnectionsOpenAndCloseByCode) {
  edge_.ConnectionOpened();
  edge_.ConnectionOpened();
  edge_.ConnectionOpened();
  edge_.ConnectionClosed(1000);
  edge_.ConnectionClosed(4321);  // an application code the edge does not list
  const auto s = Scrape();
  EXPECT_EQ(PromValue(s, "chat_edge_connections_opened_total"), 3);
  EXPECT_EQ(PromValue(s, "chat_edge_connections_open"), 1);
  EXPECT_EQ(PromValue(s, "chat_edge_connections_closed_total", {{"code", "1000"}}), 1);
  EXPECT_EQ(PromValue(s, "chat_edge_connections_closed_total", {{"code", "other"}}), 1);
}

TEST_F(EdgeMetricsTest, RefusalsBySendResultsAndLinks) {
  edge_.HandshakeRefused(401);
  edge_.HandshakeRefused(418);
  edge_.Send(OutcomeOf(absl::OkStatus()));
  edge_.Send(OutcomeOf(absl::UnavailableError("link lost")));
  edge_.Send(SendOutcome::kRateLimited);
  edge_.LinkUp(false);
  edge_.LinkDown();
  edge_.LinkUp(true);
  const auto s = Scrape();
  EXPECT_EQ(PromValue(s, "chat_edge_handshakes_refused_total", {{"status", "401"}}), 1);
  EXPECT_EQ(PromValue(s, "chat_edge_handshakes_refused_total", {{"status", "other"}}), 1);
  EXPECT_EQ(PromValue(s, "chat_edge_sends_total", {{"result", "ok"}}), 1);
  EXPECT_EQ(PromValue(s, "chat_edge_sends_total", {{"result", "unavailable"}}), 1);
  EXPECT_EQ(PromValue(s, "chat_edge_sends_total", {{"result", "rate_limited"}}), 1);
  EXPECT_EQ(PromValue(s, "chat_edge_message_links_up"), 1);
  EXPECT_EQ(PromValue(s, "chat_edge_message_link_reconnects_total"), 1);
}

// The label is the error code the client got for message-service's answer.
TEST_F(EdgeMetricsTest, SendResultsAreLabelledAsTheClientIsAnswered) {
  edge_.Send(OutcomeOf(absl::NotFoundError("no such user")));
  edge_.Send(OutcomeOf(absl::InvalidArgumentError("too long")));
  edge_.Send(OutcomeOf(absl::PermissionDeniedError("not yours")));
  edge_.Send(OutcomeOf(absl::ResourceExhaustedError("busy")));
  edge_.Send(OutcomeOf(absl::Status(static_cast<absl::StatusCode>(99), "new code")));
  const auto s = Scrape();
  EXPECT_EQ(PromValue(s, "chat_edge_sends_total", {{"result", "unknown_user"}}), 1);
  EXPECT_EQ(PromValue(s, "chat_edge_sends_total", {{"result", "bad_request"}}), 2);
  EXPECT_EQ(PromValue(s, "chat_edge_sends_total", {{"result", "unavailable"}}), 2);
  EXPECT_EQ(PromValue(s, "chat_edge_sends_total", {{"result", "ok"}}), 0);
  // No longer produced, still exported: dashboards and alerts keep their series.
  EXPECT_EQ(PromValue(s, "chat_edge_sends_total", {{"result", "recipient_offline"}}), 0);
}

TEST_F(EdgeMetricsTest, DeliveryLatencyFromTheSendersReadTime) {
  edge_.DeliveryWritten(WallMicros() - 2000);       // 2 ms ago
  edge_.DeliveryWritten(WallMicros() + 5'000'000);  // a sender clock ahead: counted as 0
  edge_.DeliveryWritten(0);                         // unknown: not a sample
  const auto s = Scrape();
  EXPECT_EQ(PromValue(s, "chat_edge_delivery_latency_seconds_count"), 2);
  EXPECT_EQ(PromValue(s, "chat_edge_delivery_latency_seconds_bucket", {{"le", "0.0001"}}), 1);
  EXPECT_EQ(PromValue(s, "chat_edge_delivery_latency_seconds_bucket", {{"le", "0.001"}}), 1);
  EXPECT_EQ(PromValue(s, "chat_edge_delivery_latency_seconds_bucket", {{"le", "1"}}), 2);
  EXPECT_GE(PromValue(s, "chat_edge_delivery_latency_seconds_sum"), 0.002);
}

}  // namespace
}  // namespace chat::edge
