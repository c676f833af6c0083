// MessageLink against an in-process fake EdgeGateway: what the edge sends up
// the stream, seen from the service's side.
#include "edge/message_link.h"

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "chat/v1/chat.grpc.pb.h"
#include "common/grpc_server.h"
#include "edge/local_hub.h"
#include "gtest/gtest.h"
#include "tests/grpc/grpc_test_util.h"

namespace chat::edge {
namespace {

namespace v1 = chat::v1;

// Greets every link and records every EdgeUp it reads.
class FakeGateway final : public v1::EdgeGateway::CallbackService {
 public:
  grpc::ServerBidiReactor<v1::EdgeUp, v1::EdgeDown>* EdgeLink(
      grpc::CallbackServerContext*) override {
    return new Reactor(this);
  }

  std::vector<v1::EdgeUp> ups() const {
    absl::MutexLock lock(&mu_);
    return ups_;
  }
  // Waits until the reached ranges received for `user` end at `to`.
  bool WaitReached(const std::string& user, int64_t to, absl::Duration timeout) const {
    absl::MutexLock lock(&mu_);
    auto done = [&] {
      for (auto it = ups_.rbegin(); it != ups_.rend(); ++it) {
        for (const auto& r : it->reached()) {
          if (r.user() == user && r.to_useq() == to) return true;
        }
      }
      return false;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  }

 private:
  class Reactor final : public grpc::ServerBidiReactor<v1::EdgeUp, v1::EdgeDown> {
   public:
    explicit Reactor(FakeGateway* gateway) : gateway_(gateway) {
      greeting_.set_epoch("epoch-1");
      StartWrite(&greeting_);
      StartRead(&up_);
    }
    void OnReadDone(bool ok) override {
      if (!ok) {
        Finish(grpc::Status::OK);
        return;
      }
      {
        absl::MutexLock lock(&gateway_->mu_);
        gateway_->ups_.push_back(up_);
      }
      StartRead(&up_);
    }
    void OnWriteDone(bool) override {}
    void OnDone() override { delete this; }

   private:
    FakeGateway* gateway_;
    v1::EdgeDown greeting_;
    v1::EdgeUp up_;
  };

  mutable absl::Mutex mu_;
  std::vector<v1::EdgeUp> ups_ ABSL_GUARDED_BY(mu_);
};

class MessageLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start(&gateway_).ok());
    link_ = std::make_unique<MessageLink>(server_.channel(), "e1", &hub_, LinkOptions());
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (!link_->Up() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
    ASSERT_TRUE(link_->Up()) << "the link never came up";
  }
  void TearDown() override { link_.reset(); }

  FakeGateway gateway_;
  chat::testing::InProcessServer server_;
  LocalHub hub_;
  std::unique_ptr<MessageLink> link_;
};

// Frames written one by one report useq ranges one by one; those waiting for
// the same write go up merged per user, and nothing is lost or reordered.
TEST_F(MessageLinkTest, AdjacentReachedRangesOfAUserGoUpMerged) {
  constexpr int kFrames = 2000;
  for (int64_t useq = 1; useq <= kFrames; ++useq) {
    link_->Reached("alice", useq, useq);
    link_->Reached("bob", 2 * useq - 1, 2 * useq);  // two messages per frame
  }
  link_->Reached("alice", kFrames + 5, kFrames + 5);  // a hole: its own range
  ASSERT_TRUE(gateway_.WaitReached("alice", kFrames + 5, absl::Seconds(20)));
  ASSERT_TRUE(gateway_.WaitReached("bob", 2 * kFrames, absl::Seconds(20)));

  std::map<std::string, std::vector<std::pair<int64_t, int64_t>>> ranges;
  size_t entries = 0;
  for (const v1::EdgeUp& up : gateway_.ups()) {
    std::map<std::string, int64_t> last_to;
    for (const auto& r : up.reached()) {
      ++entries;
      auto it = last_to.find(r.user());
      if (it != last_to.end()) {
        EXPECT_NE(it->second + 1, r.from_useq())
            << r.user() << ": adjacent ranges in one EdgeUp were not merged";
      }
      last_to[r.user()] = r.to_useq();
      ranges[r.user()].emplace_back(r.from_useq(), r.to_useq());
    }
  }
  // Every useq reported, once, in order.
  auto covered = [](const std::vector<std::pair<int64_t, int64_t>>& rs) {
    std::vector<int64_t> out;
    for (const auto& [from, to] : rs) {
      for (int64_t u = from; u <= to; ++u) out.push_back(u);
    }
    return out;
  };
  std::vector<int64_t> alice = covered(ranges["alice"]);
  ASSERT_EQ(alice.size(), static_cast<size_t>(kFrames + 1));
  for (int i = 0; i < kFrames; ++i) ASSERT_EQ(alice[i], i + 1);
  EXPECT_EQ(alice.back(), kFrames + 5);
  const std::pair<int64_t, int64_t> after_hole(kFrames + 5, kFrames + 5);
  EXPECT_EQ(ranges["alice"].back(), after_hole) << "the range after a hole stays apart";
  std::vector<int64_t> bob = covered(ranges["bob"]);
  ASSERT_EQ(bob.size(), static_cast<size_t>(2 * kFrames));
  for (int i = 0; i < 2 * kFrames; ++i) ASSERT_EQ(bob[i], i + 1);
  EXPECT_LT(entries, static_cast<size_t>(2 * kFrames + 1))
      << "4001 reports, and none merged while writes were in flight";
}

}  // namespace
}  // namespace chat::edge
