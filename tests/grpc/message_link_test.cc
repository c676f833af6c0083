// MessageLink against an in-process fake EdgeGateway: what the edge sends up
// the stream, seen from the service's side.
#include "edge/message_link.h"

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "chat/v1/chat.grpc.pb.h"
#include "common/grpc_server.h"
#include "common/service_auth.h"
#include "edge/local_hub.h"
#include "gtest/gtest.h"
#include "tests/grpc/grpc_test_util.h"

namespace chat::edge {
namespace {

namespace v1 = chat::v1;

// Greets every link, records every EdgeUp it reads and answers its sends
// (OK), or holds the answers until Release(). Kill() ends every stream and
// refuses new ones until Revive().
class FakeGateway final : public v1::EdgeGateway::CallbackService {
 public:
  grpc::ServerBidiReactor<v1::EdgeUp, v1::EdgeDown>* EdgeLink(
      grpc::CallbackServerContext*) override {
    absl::MutexLock lock(&mu_);
    ++attempts_;
    if (!accepting_) {
      return new RefusedBidi<v1::EdgeUp, v1::EdgeDown>(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, "killed"));
    }
    auto* reactor = new Reactor(this);
    live_.insert(reactor);
    return reactor;
  }

  // EdgeLink calls received, refused ones included.
  int attempts() const {
    absl::MutexLock lock(&mu_);
    return attempts_;
  }
  bool WaitAttempts(int n, absl::Duration timeout) const {
    absl::MutexLock lock(&mu_);
    auto done = [&] { return attempts_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  }

  std::vector<v1::EdgeUp> ups() const {
    absl::MutexLock lock(&mu_);
    return ups_;
  }
  // Every send received, in arrival order.
  std::vector<v1::SendRequest> sends() const {
    absl::MutexLock lock(&mu_);
    std::vector<v1::SendRequest> out;
    for (const auto& up : ups_) {
      for (const auto& s : up.sends()) out.push_back(s.request());
    }
    return out;
  }
  size_t send_count() const { return sends().size(); }
  bool WaitSends(size_t n, absl::Duration timeout) const {
    absl::MutexLock lock(&mu_);
    auto done = [&] {
      size_t got = 0;
      for (const auto& up : ups_) got += up.sends_size();
      return got >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
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

  void Hold() {
    absl::MutexLock lock(&mu_);
    hold_ = true;
  }
  // Answers every held send and stops holding.
  void Release() {
    absl::MutexLock lock(&mu_);
    hold_ = false;
    for (Reactor* r : live_) r->ReleaseHeld();
  }
  void Kill() {
    absl::MutexLock lock(&mu_);
    accepting_ = false;
    for (Reactor* r : live_) r->Kill();
  }
  void Revive() {
    absl::MutexLock lock(&mu_);
    accepting_ = true;
  }

 private:
  class Reactor final : public grpc::ServerBidiReactor<v1::EdgeUp, v1::EdgeDown> {
   public:
    explicit Reactor(FakeGateway* gateway) : gateway_(gateway) {
      v1::EdgeDown greeting;
      greeting.set_epoch("epoch-1");
      absl::MutexLock lock(&mu_);
      QueueLocked(std::move(greeting));
      StartRead(&up_);
    }
    void OnReadDone(bool ok) override {
      if (!ok) {
        absl::MutexLock lock(&mu_);
        FinishLocked(grpc::Status::OK);
        return;
      }
      {
        // Both locks (gateway first, as everywhere): a Release() either sees
        // these sends held or comes after they were answered.
        absl::MutexLock lock(&gateway_->mu_);
        gateway_->ups_.push_back(up_);
        absl::MutexLock reactor_lock(&mu_);
        for (const auto& s : up_.sends()) held_.push_back(s.seq());
        if (!gateway_->hold_) ReleaseLocked();
      }
      StartRead(&up_);
    }
    void OnWriteDone(bool ok) override {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        // The call is over: nothing more goes out. Finishing already (the
        // read side saw the end while this write was in flight): now.
        queue_.clear();
        if (finishing_) {
          WriteNextLocked();
        } else {
          FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
        }
        return;
      }
      WriteNextLocked();
    }
    void OnDone() override {
      {
        absl::MutexLock lock(&gateway_->mu_);
        gateway_->live_.erase(this);
      }
      delete this;
    }
    void ReleaseHeld() {
      absl::MutexLock lock(&mu_);
      ReleaseLocked();
    }
    void Kill() {
      absl::MutexLock lock(&mu_);
      queue_.clear();
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "killed"));
    }

   private:
    void ReleaseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (held_.empty()) return;
      v1::EdgeDown down;
      for (uint64_t seq : held_) {
        auto* r = down.add_results();
        r->set_seq(seq);
        r->set_id(absl::StrCat("m", seq));
        r->set_useq(static_cast<int64_t>(seq) + 100);  // the sender's, as a store would
      }
      held_.clear();
      QueueLocked(std::move(down));
    }
    void QueueLocked(v1::EdgeDown down) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (finishing_) return;
      queue_.push_back(std::move(down));
      WriteNextLocked();
    }
    void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (writing_ || finished_) return;
      if (queue_.empty()) {
        if (finishing_) {
          finished_ = true;
          Finish(status_);
        }
        return;
      }
      out_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
      StartWrite(&out_);
    }
    // Finishes once no write is in flight.
    void FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (finishing_) return;
      finishing_ = true;
      status_ = std::move(status);
      WriteNextLocked();
    }

    FakeGateway* gateway_;
    v1::EdgeUp up_;  // the read chain's
    absl::Mutex mu_;
    std::deque<v1::EdgeDown> queue_ ABSL_GUARDED_BY(mu_);
    v1::EdgeDown out_ ABSL_GUARDED_BY(mu_);
    std::vector<uint64_t> held_ ABSL_GUARDED_BY(mu_);
    bool writing_ ABSL_GUARDED_BY(mu_) = false;
    bool finishing_ ABSL_GUARDED_BY(mu_) = false;
    bool finished_ ABSL_GUARDED_BY(mu_) = false;
    grpc::Status status_ ABSL_GUARDED_BY(mu_);
  };

  mutable absl::Mutex mu_;
  std::vector<v1::EdgeUp> ups_ ABSL_GUARDED_BY(mu_);
  std::set<Reactor*> live_ ABSL_GUARDED_BY(mu_);
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  int attempts_ ABSL_GUARDED_BY(mu_) = 0;
};

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

class MessageLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start(&gateway_).ok());
    Relink(LinkOptions());
  }
  void TearDown() override { link_.reset(); }

  // A new link with `options` in place of the current one; returns once up.
  void Relink(const LinkOptions& options) {
    link_.reset();
    link_ = std::make_unique<MessageLink>(server_.channel(), "e1", &hub_, options);
    ASSERT_TRUE(WaitFor([&] { return link_->Up(); }, absl::Seconds(20)))
        << "the link never came up";
  }

  // One send; `result` gets its answer.
  struct Answer {
    absl::Notification done;
    SendResult result;
  };
  std::shared_ptr<Answer> SendOne(const std::string& text) {
    auto answer = std::make_shared<Answer>();
    OutgoingSend send;
    send.sent_by = "alice";
    send.send_to = "bob";
    send.message = text;
    send.from_connection_id = "e1-1";
    link_->Send(std::move(send), [answer](const SendResult& r) {
      answer->result = r;
      answer->done.Notify();
    });
    return answer;
  }

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

// Reached reports alone wait (reached_delay) for company: the next send
// takes them along in its EdgeUp, ahead of it.
TEST_F(MessageLinkTest, AReachedReportWaitsForTheNextSendAndGoesUpWithIt) {
  LinkOptions options;
  options.reached_delay = absl::Hours(1);  // never on its own in this test
  Relink(options);
  link_->Reached("alice", 1, 3);
  auto answer = SendOne("carrier");
  ASSERT_TRUE(answer->done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_TRUE(answer->result.status.ok()) << answer->result.status;
  bool together = false;
  for (const v1::EdgeUp& up : gateway_.ups()) {
    if (up.reached_size() == 0) continue;
    EXPECT_EQ(up.sends_size(), 1) << "the report went up without the send";
    EXPECT_EQ(up.reached(0).user(), "alice");
    EXPECT_EQ(up.reached(0).to_useq(), 3);
    together = true;
  }
  EXPECT_TRUE(together) << "the report never went up";
}

// With nothing else to send, reports go up on their own once the oldest has
// waited reached_delay, merged.
TEST_F(MessageLinkTest, LoneReachedReportsGoUpAfterTheDelay) {
  LinkOptions options;
  options.reached_delay = absl::Milliseconds(500);
  Relink(options);
  for (int64_t useq = 1; useq <= 50; ++useq) link_->Reached("bob", useq, useq);
  ASSERT_TRUE(gateway_.WaitReached("bob", 50, absl::Seconds(10)));
  size_t reports = 0;
  for (const v1::EdgeUp& up : gateway_.ups()) reports += up.reached_size();
  EXPECT_EQ(reports, 1u) << "50 adjacent reports made while waiting go up as one range";
}

// The watchdog: while something waits for an answer and the service keeps
// answering (other calls), the link stays; once it answers nothing for
// answer_timeout, the link is cut, what waits fails as unavailable, and it
// reconnects.
TEST_F(MessageLinkTest, WatchdogCutsTheLinkOnlyWhenTheServiceStopsAnswering) {
  LinkOptions options;
  options.answer_timeout = absl::Milliseconds(400);
  Relink(options);
  const int attempts = gateway_.attempts();

  // The fake never answers attaches: this one waits throughout.
  struct AttachAnswer {
    absl::Notification done;
    absl::Status status;
    absl::Time at;
  };
  auto attach = std::make_shared<AttachAnswer>();
  link_->Attach("e1-1", "alice", 0, [attach](absl::StatusOr<AttachInfo> info) {
    attach->status = info.status();
    attach->at = absl::Now();
    attach->done.Notify();
  });
  // Sends answered for more than three timeouts: the service is alive.
  const absl::Time start = absl::Now();
  absl::Time last_answer;
  int sends = 0;
  while (absl::Now() - start < absl::Milliseconds(1300)) {
    auto answer = SendOne(absl::StrCat("m", sends++));
    ASSERT_TRUE(answer->done.WaitForNotificationWithTimeout(absl::Seconds(10)));
    last_answer = absl::Now();
    ASSERT_TRUE(answer->result.status.ok()) << answer->result.status;
    // (Paces the sends, and checks the attach still waits.)
    ASSERT_FALSE(attach->done.WaitForNotificationWithTimeout(absl::Milliseconds(50)))
        << "the link was cut while the service answered: " << attach->status;
  }
  EXPECT_EQ(gateway_.attempts(), attempts);

  // Now only the attach waits: cut once it waited answer_timeout unanswered.
  ASSERT_TRUE(attach->done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(attach->status.code(), absl::StatusCode::kUnavailable) << attach->status;
  EXPECT_GE(attach->at - last_answer, absl::Milliseconds(390));
  EXPECT_LT(attach->at - last_answer, absl::Seconds(3));
  ASSERT_TRUE(gateway_.WaitAttempts(attempts + 1, absl::Seconds(10))) << "no reconnect";
  ASSERT_TRUE(WaitFor([&] { return link_->Up(); }, absl::Seconds(10)));
  auto after = SendOne("after");
  ASSERT_TRUE(after->done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_TRUE(after->result.status.ok()) << after->result.status;
}

// A send held by a wedged service fails as unavailable after answer_timeout
// (its answer is unknown; the client retries).
TEST_F(MessageLinkTest, AWedgedSendFailsAfterTheAnswerTimeout) {
  LinkOptions options;
  options.answer_timeout = absl::Milliseconds(300);
  Relink(options);
  gateway_.Hold();
  const absl::Time start = absl::Now();
  auto held = SendOne("held");
  ASSERT_TRUE(held->done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(290));
  EXPECT_EQ(held->result.status.code(), absl::StatusCode::kUnavailable) << held->result.status;
  gateway_.Release();
  ASSERT_TRUE(WaitFor([&] { return link_->Up(); }, absl::Seconds(10)));
}

// Reconnecting is an alarm with backoff, not a thread: a link to a service
// that refuses it keeps trying, and stops at once when destroyed.
TEST_F(MessageLinkTest, ReconnectsWithBackoffAndStopsWhenDestroyed) {
  gateway_.Kill();
  ASSERT_TRUE(WaitFor([&] { return !link_->Up(); }, absl::Seconds(10)));
  const int before = gateway_.attempts();
  ASSERT_TRUE(gateway_.WaitAttempts(before + 3, absl::Seconds(10))) << "no retries";
  const absl::Time start = absl::Now();
  link_.reset();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2)) << "destruction waited for the backoff";
  const int after = gateway_.attempts();
  // The backoff reaches 1-2 s: a pending retry would show within 2.5 s.
  EXPECT_FALSE(gateway_.WaitAttempts(after + 1, absl::Milliseconds(2500)))
      << "the link tried again after it was destroyed";

  gateway_.Revive();
  Relink(LinkOptions());
  EXPECT_TRUE(link_->Up());
}

// Three fake replicas behind one MessageLinks, as an edge with
// --message_service=ms-0,ms-1,ms-2 has them.
class MessageLinksTest : public ::testing::Test {
 protected:
  static constexpr int kReplicas = 3;

  void SetUp() override {
    std::vector<std::shared_ptr<grpc::Channel>> channels;
    for (int i = 0; i < kReplicas; ++i) {
      ASSERT_TRUE(servers_[i].Start(&gateways_[i]).ok());
      channels.push_back(servers_[i].channel());
      names_.push_back(absl::StrCat("ms-", i));
    }
    links_ = std::make_unique<MessageLinks>(channels, "e1", &hub_, LinkOptions(), names_);
    for (int i = 0; i < kReplicas; ++i) ASSERT_TRUE(WaitUp(i, true)) << "link " << i;
  }
  void TearDown() override { links_.reset(); }

  bool WaitUp(int i, bool up) {
    return WaitFor([&] { return links_->LinkUp(i) == up; }, absl::Seconds(20));
  }

  // One send from `from` to `to`; its result lands in `results`.
  void SendOne(const std::string& from, const std::string& to, const std::string& text) {
    OutgoingSend send;
    send.sent_by = from;
    send.send_to = to;
    send.message = text;
    send.from_connection_id = "e1-" + from;
    {
      absl::MutexLock lock(&mu_);
      ++sent_;
    }
    links_->Send(std::move(send), [this, text](const SendResult& r) {
      absl::MutexLock lock(&mu_);
      results_[text] = r.status;
    });
  }
  bool WaitResults(size_t n) {
    absl::MutexLock lock(&mu_);
    auto done = [&] { return results_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(20));
  }
  absl::Status ResultOf(const std::string& text) {
    absl::MutexLock lock(&mu_);
    auto it = results_.find(text);
    return it == results_.end() ? absl::UnknownError("no answer yet") : it->second;
  }
  // Which gateway received the send with this text (-1: none, -2: several).
  int ReceivedBy(const std::string& text) {
    int where = -1;
    for (int i = 0; i < kReplicas; ++i) {
      for (const auto& s : gateways_[i].sends()) {
        if (s.message() != text) continue;
        where = where == -1 ? i : -2;
      }
    }
    return where;
  }

  FakeGateway gateways_[kReplicas];
  chat::testing::InProcessServer servers_[kReplicas];
  std::vector<std::string> names_;
  LocalHub hub_;
  std::unique_ptr<MessageLinks> links_;
  absl::Mutex mu_;
  size_t sent_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, absl::Status> results_ ABSL_GUARDED_BY(mu_);
};

// store::ConversationId's spelling (base64url names, sorted, '.' between):
// the edge does not link the store, so its values are spelled out here.
TEST(ConversationKeyTest, IsTheStoresConversationId) {
  EXPECT_EQ(ConversationKey("alice", "bob"), "YWxpY2U.Ym9i");
  EXPECT_EQ(ConversationKey("bob", "alice"), "YWxpY2U.Ym9i");
  EXPECT_EQ(ConversationKey("x", "x"), "eA.eA");
  EXPECT_EQ(ConversationKey("ab", "abcd"), "YWI.YWJjZA");
}

// Both directions of a conversation go to one replica; conversations spread
// over the replicas; another edge listing the same replicas (in another
// order) picks the same replica for each conversation.
TEST_F(MessageLinksTest, RendezvousIsStableAndSpreadsConversations) {
  constexpr int kPairs = 300;
  std::vector<int> per_link(kReplicas, 0);
  for (int p = 0; p < kPairs; ++p) {
    const std::string a = absl::StrCat("u", p), b = absl::StrCat("v", p);
    const int link = links_->LinkForConversation(a, b);
    ASSERT_GE(link, 0);
    EXPECT_EQ(link, links_->LinkForConversation(b, a));
    EXPECT_EQ(link, links_->Rank(ConversationKey(a, b)));
    ++per_link[link];
  }
  for (int i = 0; i < kReplicas; ++i) {
    EXPECT_GT(per_link[i], kPairs / kReplicas / 2) << "replica " << i << " got " << per_link[i];
  }

  // A second edge, its list reversed: the names decide, not the positions.
  LocalHub other_hub;
  std::vector<std::shared_ptr<grpc::Channel>> reversed_channels;
  std::vector<std::string> reversed_names;
  for (int i = kReplicas - 1; i >= 0; --i) {
    reversed_channels.push_back(servers_[i].channel());
    reversed_names.push_back(names_[i]);
  }
  MessageLinks other(reversed_channels, "e2", &other_hub, LinkOptions(), reversed_names);
  ASSERT_TRUE(WaitFor(
      [&] {
        for (int i = 0; i < kReplicas; ++i) {
          if (!other.LinkUp(i)) return false;
        }
        return true;
      },
      absl::Seconds(20)));
  for (int p = 0; p < kPairs; ++p) {
    const std::string a = absl::StrCat("u", p), b = absl::StrCat("v", p);
    EXPECT_EQ(kReplicas - 1 - other.LinkForConversation(b, a), links_->LinkForConversation(a, b));
  }

  // Real sends, both directions: each conversation lands on its replica only.
  for (int p = 0; p < 60; ++p) {
    const std::string a = absl::StrCat("u", p), b = absl::StrCat("v", p);
    SendOne(a, b, absl::StrCat("ab", p));
    SendOne(b, a, absl::StrCat("ba", p));
  }
  ASSERT_TRUE(WaitResults(120));
  for (int p = 0; p < 60; ++p) {
    const int link = links_->Rank(ConversationKey(absl::StrCat("u", p), absl::StrCat("v", p)));
    EXPECT_EQ(ReceivedBy(absl::StrCat("ab", p)), link);
    EXPECT_EQ(ReceivedBy(absl::StrCat("ba", p)), link);
    EXPECT_TRUE(ResultOf(absl::StrCat("ab", p)).ok());
  }
}

// A replica going down moves its conversations, and only those; when it
// comes back it gets them back.
TEST_F(MessageLinksTest, ALinkGoingDownMovesOnlyItsConversations) {
  constexpr int kPairs = 300;
  std::vector<int> before;
  for (int p = 0; p < kPairs; ++p) {
    before.push_back(links_->Rank(ConversationKey(absl::StrCat("u", p), absl::StrCat("v", p))));
  }
  gateways_[1].Kill();
  ASSERT_TRUE(WaitUp(1, false));
  int moved = 0;
  for (int p = 0; p < kPairs; ++p) {
    const int now = links_->Rank(ConversationKey(absl::StrCat("u", p), absl::StrCat("v", p)));
    if (before[p] == 1) {
      EXPECT_NE(now, 1);
      EXPECT_GE(now, 0);
      ++moved;
    } else {
      EXPECT_EQ(now, before[p]) << "pair " << p << " moved though its replica stayed up";
    }
  }
  EXPECT_GT(moved, 0);
  // Sends follow: nothing reaches the dead replica, everything is answered.
  for (int p = 0; p < kPairs; ++p) {
    SendOne(absl::StrCat("u", p), absl::StrCat("v", p), absl::StrCat("m", p));
  }
  ASSERT_TRUE(WaitResults(kPairs));
  for (int p = 0; p < kPairs; ++p) {
    const int got = ReceivedBy(absl::StrCat("m", p));
    EXPECT_NE(got, 1);
    if (before[p] != 1) {
      EXPECT_EQ(got, before[p]);
    }
    EXPECT_TRUE(ResultOf(absl::StrCat("m", p)).ok());
  }

  gateways_[1].Revive();
  ASSERT_TRUE(WaitUp(1, true));
  for (int p = 0; p < kPairs; ++p) {
    EXPECT_EQ(links_->Rank(ConversationKey(absl::StrCat("u", p), absl::StrCat("v", p))), before[p]);
  }
}

// A conversation whose sends wait on one link keeps that link even when the
// hashing moves it (its own replica came back); it moves once none waits.
TEST_F(MessageLinksTest, InFlightSendsKeepTheirConversationOnTheirLink) {
  // A conversation homed on replica 2; with 2 down it lives elsewhere.
  std::string a, b;
  for (int p = 0;; ++p) {
    a = absl::StrCat("u", p);
    b = absl::StrCat("v", p);
    if (links_->Rank(ConversationKey(a, b)) == 2) break;
  }
  gateways_[2].Kill();
  ASSERT_TRUE(WaitUp(2, false));
  const int stand_in = links_->Rank(ConversationKey(a, b));
  ASSERT_GE(stand_in, 0);
  ASSERT_NE(stand_in, 2);
  gateways_[stand_in].Hold();
  SendOne(a, b, "1");
  SendOne(b, a, "2");
  SendOne(a, b, "3");
  ASSERT_TRUE(gateways_[stand_in].WaitSends(3, absl::Seconds(20)));

  gateways_[2].Revive();
  ASSERT_TRUE(WaitUp(2, true));
  EXPECT_EQ(links_->Rank(ConversationKey(a, b)), 2) << "home again, by the hashing";
  EXPECT_EQ(links_->LinkForConversation(a, b), stand_in) << "but sends are in flight";
  SendOne(b, a, "4");
  SendOne(a, b, "5");
  ASSERT_TRUE(gateways_[stand_in].WaitSends(5, absl::Seconds(20)));
  for (const char* text : {"1", "2", "3", "4", "5"}) EXPECT_EQ(ReceivedBy(text), stand_in) << text;
  // Order kept on the link.
  std::vector<std::string> order;
  for (const auto& s : gateways_[stand_in].sends()) order.push_back(s.message());
  EXPECT_EQ(order, (std::vector<std::string>{"1", "2", "3", "4", "5"}));

  gateways_[stand_in].Release();
  ASSERT_TRUE(WaitResults(5));
  for (const char* text : {"1", "2", "3", "4", "5"}) EXPECT_TRUE(ResultOf(text).ok()) << text;
  EXPECT_EQ(links_->LinkForConversation(a, b), 2);
  SendOne(a, b, "6");
  ASSERT_TRUE(WaitResults(6));
  EXPECT_EQ(ReceivedBy("6"), 2) << "nothing in flight: the conversation went home";
}

// Sends waiting on a replica that dies fail as unavailable; the
// conversation's next send goes to a live replica.
TEST_F(MessageLinksTest, ADeadLinksSendsInFlightFailUnavailable) {
  const std::string a = "alice", b = "bob";
  const int home = links_->Rank(ConversationKey(a, b));
  ASSERT_GE(home, 0);
  gateways_[home].Hold();
  for (int i = 0; i < 5; ++i) SendOne(a, b, absl::StrCat("held", i));
  ASSERT_TRUE(gateways_[home].WaitSends(5, absl::Seconds(20)));
  gateways_[home].Kill();
  ASSERT_TRUE(WaitResults(5));
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(ResultOf(absl::StrCat("held", i)).code(), absl::StatusCode::kUnavailable);
  }
  ASSERT_TRUE(WaitUp(home, false));
  SendOne(a, b, "retry");
  ASSERT_TRUE(WaitResults(6));
  EXPECT_TRUE(ResultOf("retry").ok()) << ResultOf("retry");
  const int got = ReceivedBy("retry");
  EXPECT_GE(got, 0);
  EXPECT_NE(got, home);
}

// A send's own copy is reported reached to the sender's replica (the one
// their other reached ranges go to), not only known to the conversation's.
TEST_F(MessageLinksTest, TheOwnCopyOfASendIsReportedToTheSendersReplica) {
  // A sender whose replica is not the conversation's.
  std::string from, to;
  for (int p = 0;; ++p) {
    from = absl::StrCat("u", p);
    to = absl::StrCat("v", p);
    if (links_->Rank(from) != links_->Rank(ConversationKey(from, to))) break;
  }
  SendOne(from, to, "mine");
  ASSERT_TRUE(WaitResults(1));
  ASSERT_TRUE(ResultOf("mine").ok());
  const int conversation = links_->Rank(ConversationKey(from, to));
  const int home = links_->Rank(from);
  ASSERT_EQ(ReceivedBy("mine"), conversation);
  // The fake answers useq = 100 + its seq for the link: 101 for a first send.
  EXPECT_TRUE(gateways_[home].WaitReached(from, 101, absl::Seconds(20)));
}

// Reached reports a replica received shortly before it died may exist only
// in its memory: the edge hands them to the user's new replica.
TEST_F(MessageLinksTest, ADeadLinksRecentReachedReportsGoToTheUsersNewReplica) {
  const std::string user = "carol";
  const int home = links_->Rank(user);
  ASSERT_GE(home, 0);
  links_->Reached(user, 1, 5);
  links_->Reached(user, 7, 9);
  ASSERT_TRUE(gateways_[home].WaitReached(user, 9, absl::Seconds(20)));
  gateways_[home].Kill();
  ASSERT_TRUE(WaitUp(home, false));
  const int next = links_->Rank(user);
  ASSERT_GE(next, 0);
  ASSERT_NE(next, home);
  EXPECT_TRUE(gateways_[next].WaitReached(user, 5, absl::Seconds(20)));
  EXPECT_TRUE(gateways_[next].WaitReached(user, 9, absl::Seconds(20)));
}

}  // namespace
}  // namespace chat::edge
