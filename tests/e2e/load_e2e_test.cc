// Many pairs at once through the real binaries: nothing lost, per-pair order.
#include <thread>

#include "absl/strings/numbers.h"
#include "tests/e2e/e2e_util.h"

namespace chat::testing {
namespace {

TEST(LoadTest, HundredPairsHundredMessagesNoLossInOrder) {
  constexpr int kPairs = 100;
  constexpr int kMessages = 100;
  ClusterOptions options;
  options.edges = 2;  // senders on one edge, receivers on the other
  options.edge_flags = {"--messages_per_second=100000", "--rate_burst=100000"};
  Cluster cluster("load", options);
  ASSERT_TRUE(cluster.Start().ok());
  std::vector<std::unique_ptr<WsClient>> senders, receivers;
  for (int i = 0; i < kPairs; ++i) {
    receivers.push_back(Connect(cluster.edge_port(1), absl::StrCat("recv-", i)));
    senders.push_back(Connect(cluster.edge_port(0), absl::StrCat("send-", i)));
    ASSERT_TRUE(receivers.back() && senders.back());
  }
  // All senders write concurrently, interleaving on the edge and the link.
  std::vector<std::thread> threads;
  std::atomic<int> write_failures{0};
  for (int i = 0; i < kPairs; ++i) {
    threads.emplace_back([&, i] {
      for (int m = 0; m < kMessages; ++m) {
        json::object frame{{"action", "send"},
                           {"send_to", absl::StrCat("recv-", i)},
                           {"message", absl::StrCat(m)}};
        if (!senders[i]->SendJson(frame).ok()) ++write_failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(write_failures.load(), 0);
  int lost = 0, out_of_order = 0;
  for (int i = 0; i < kPairs; ++i) {
    int expected = 0;
    for (int m = 0; m < kMessages; ++m) {
      auto got = receivers[i]->ReadAction("send", 10s);
      if (!got.ok()) {
        lost += kMessages - m;
        break;
      }
      ASSERT_EQ(Str(*got, "sent_by"), absl::StrCat("send-", i));
      int seq = -1;
      ASSERT_TRUE(absl::SimpleAtoi(Str(*got, "message"), &seq));
      if (seq != expected) ++out_of_order;
      expected = seq + 1;
    }
  }
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(out_of_order, 0);
  // And nothing was answered with an error to any sender.
  for (auto& s : senders) {
    auto extra = s->Read(10ms);
    EXPECT_FALSE(extra.ok()) << "sender got: " << extra->payload;
  }
}

}  // namespace
}  // namespace chat::testing
