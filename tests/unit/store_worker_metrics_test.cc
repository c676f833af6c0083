// The StoreWorker's metrics (chat_store_*) after known work, on a real SQLite
// store in a temporary directory, read back from the registry's text
// exposition as a scrape would see them.
#include <stdlib.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "gtest/gtest.h"
#include "message-service/store_metrics.h"
#include "message-service/store_worker.h"
#include "store/open_store.h"
#include "tests/support/flaky_message_store.h"
#include "tests/support/prom_text.h"

namespace chat::message {
namespace {

constexpr absl::Duration kWait = absl::Seconds(10);

// Every recipient in these tests is known to the store up front; a lookup
// would be a test bug.
class NoLookup : public UserLookup {
 public:
  void Exists(const std::string&, std::function<void(absl::Status)> done) override {
    ADD_FAILURE() << "unexpected user lookup";
    done(absl::NotFoundError("no lookup in this test"));
  }
  void Forget(const std::string&, int, const std::string&,
              std::function<void(absl::StatusOr<ForgetResult>)> done) override {
    done(absl::UnimplementedError("no lookup in this test"));
  }
};

class StoreWorkerMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/chat-store-worker-metrics-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    worker_.reset();
    std::error_code ignored;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
  }

  // Opens the store (alice and bob known) and starts the worker on it.
  void Start(StoreWorker::Options options = StoreWorker::Options()) {
    auto real = store::OpenMessageStore("sqlite:" + dir_ + "/messages.db", {});
    ASSERT_TRUE(real.ok()) << real.status();
    ASSERT_TRUE((*real)->KnowUser("alice").ok());
    ASSERT_TRUE((*real)->KnowUser("bob").ok());
    auto flaky = std::make_unique<testing::FlakyMessageStore>(std::move(*real));
    store_ = flaky.get();
    worker_ = std::make_unique<StoreWorker>(std::move(flaky), options, &lookup_, &store_metrics_);
    worker_->Start();
  }

  // A send from alice to bob whose outcome lands in `results`.
  StoreWorker::SendJob Job(std::vector<absl::Status>* results, absl::Mutex* mu, int64_t ts_ms = 0) {
    StoreWorker::SendJob job;
    job.message.id = "m" + std::to_string(next_id_++);
    job.message.sent_by = "alice";
    job.message.send_to = "bob";
    job.message.text = "hello";
    job.message.ts_ms = ts_ms != 0 ? ts_ms : absl::ToUnixMillis(absl::Now());
    job.done = [results, mu](absl::StatusOr<store::Committed> c) {
      absl::MutexLock lock(mu);
      results->push_back(c.status());
    };
    return job;
  }

  // Sends `n` messages in one hand-over (one wake-up, so one commit) and
  // waits for their outcomes.
  std::vector<absl::Status> SendBatch(int n, int64_t ts_ms = 0) {
    absl::Mutex mu;
    std::vector<absl::Status> results;
    std::vector<StoreWorker::SendJob> jobs;
    for (int i = 0; i < n; ++i) jobs.push_back(Job(&results, &mu, ts_ms));
    worker_->SubmitSends(std::move(jobs));
    absl::MutexLock lock(&mu);
    auto all = [&] { return results.size() == static_cast<size_t>(n); };
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), kWait))
        << results.size() << " of " << n << " sends answered";
    return results;
  }

  // The value of one series in the exposition text; -1 when absent.
  double Value(const std::string& name, const std::map<std::string, std::string>& labels = {}) {
    absl::StatusOr<std::vector<testing::PromSample>> samples =
        testing::ParsePromText(metrics_.Text());
    EXPECT_TRUE(samples.ok()) << samples.status();
    if (!samples.ok()) return -1;
    return testing::PromValue(*samples, name, labels);
  }

  // Waits until the series has `want`, or the deadline.
  ::testing::AssertionResult WaitForValue(const std::string& name, double want) {
    const absl::Time deadline = absl::Now() + kWait;
    double now = Value(name);
    while (now != want && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
      now = Value(name);
    }
    if (now == want) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << name << " is " << now << ", wanted " << want;
  }

  std::string dir_;
  Metrics metrics_;
  StoreMetrics store_metrics_{metrics_.registry()};
  NoLookup lookup_;
  int next_id_ = 1;
  testing::FlakyMessageStore* store_ = nullptr;  // owned by the worker
  std::unique_ptr<StoreWorker> worker_;
};

TEST_F(StoreWorkerMetricsTest, EverySeriesIsThereBeforeAnyWork) {
  Start();
  EXPECT_EQ(Value("chat_store_queue_depth"), 0);
  EXPECT_EQ(Value("chat_store_queue_rejected_total"), 0);
  EXPECT_EQ(Value("chat_store_commit_batch_size_count"), 0);
  EXPECT_EQ(Value("chat_store_commit_seconds_count"), 0);
  EXPECT_EQ(Value("chat_store_commit_failures_total"), 0);
  EXPECT_EQ(Value("chat_store_pruned_total"), 0);
  for (const char* kind : {"sync", "unread", "history", "conversations", "read"}) {
    EXPECT_EQ(Value("chat_store_query_seconds_count", {{"kind", kind}}), 0) << kind;
  }
}

TEST_F(StoreWorkerMetricsTest, EachCommitIsObservedOnceWithItsSize) {
  Start();
  for (int n : {1, 2, 5}) {
    for (const absl::Status& s : SendBatch(n)) EXPECT_TRUE(s.ok()) << s;
  }
  // Three transactions, whatever the number of messages in them.
  EXPECT_EQ(Value("chat_store_commit_batch_size_count"), 3);
  EXPECT_EQ(Value("chat_store_commit_batch_size_sum"), 8);
  EXPECT_EQ(Value("chat_store_commit_seconds_count"), 3);
  EXPECT_GT(Value("chat_store_commit_seconds_sum"), 0);
  // Cumulative buckets: sizes 1, 2 and 5.
  EXPECT_EQ(Value("chat_store_commit_batch_size_bucket", {{"le", "1"}}), 1);
  EXPECT_EQ(Value("chat_store_commit_batch_size_bucket", {{"le", "2"}}), 2);
  EXPECT_EQ(Value("chat_store_commit_batch_size_bucket", {{"le", "4"}}), 2);
  EXPECT_EQ(Value("chat_store_commit_batch_size_bucket", {{"le", "8"}}), 3);
  EXPECT_EQ(Value("chat_store_commit_batch_size_bucket", {{"le", "4096"}}), 3);
  EXPECT_EQ(Value("chat_store_commit_failures_total"), 0);
}

TEST_F(StoreWorkerMetricsTest, AFailedCommitIsCountedAndTimed) {
  Start();
  for (const absl::Status& s : SendBatch(1)) EXPECT_TRUE(s.ok()) << s;
  store_->Break();
  std::vector<absl::Status> failed = SendBatch(3);
  store_->Repair();
  ASSERT_EQ(failed.size(), 3u);
  for (const absl::Status& s : failed) EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_EQ(Value("chat_store_commit_failures_total"), 1);  // one transaction, three sends
  EXPECT_EQ(Value("chat_store_commit_seconds_count"), 2);
  EXPECT_EQ(Value("chat_store_commit_batch_size_count"), 2);
}

// Reached marks (MarkHooks) ride on the wake-up's commit: one transaction
// for both, the sends answered before the marks' outcome is handed back;
// without sends they get a transaction of their own, counted apart. A
// failed commit hands its failure to both.
TEST_F(StoreWorkerMetricsTest, MarksAreSavedWithTheBatchOrInATransactionOfTheirOwn) {
  absl::Mutex mu;
  std::vector<absl::Status> results;
  std::vector<std::string> events;  // in order: "done", "saved:<changes>", "saved:error"
  // Worker thread only.
  std::vector<std::pair<std::string, int64_t>> pending;
  bool took = false;
  Start();
  worker_->SetMarkHooks({[&](store::MessageStore*) {
                           took = !pending.empty();
                           return std::exchange(pending, {});
                         },
                         [&](const absl::StatusOr<std::vector<store::MarkChange>>& changes) {
                           if (!took) return;  // a wake-up with no mark moved
                           absl::MutexLock lock(&mu);
                           events.push_back(changes.ok()
                                                ? "saved:" + std::to_string(changes->size())
                                                : "saved:error");
                         }});
  // Marks moved and sends handed in by one task: both in the same wake-up.
  auto marks_and_sends = [&](std::vector<std::pair<std::string, int64_t>> marks, int sends) {
    std::vector<StoreWorker::SendJob> jobs;
    for (int i = 0; i < sends; ++i) {
      StoreWorker::SendJob job = Job(&results, &mu);
      job.done = [&](absl::StatusOr<store::Committed> c) {
        absl::MutexLock lock(&mu);
        results.push_back(c.status());
        events.push_back("done");
      };
      jobs.push_back(std::move(job));
    }
    absl::MutexLock lock(&mu);
    events.clear();
    ASSERT_TRUE(worker_->Submit([&, marks, jobs = std::move(jobs)](store::MessageStore*) mutable {
      pending = marks;
      worker_->PostSends(std::move(jobs));
    }));
    const size_t want = sends + 1;
    auto all = [&] { return events.size() >= want && events.back().rfind("saved", 0) == 0; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), kWait)) << events.size();
  };

  // bob's mark covers the message committed with it (useq 1).
  marks_and_sends({{"bob", 1}}, 1);
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(events, (std::vector<std::string>{"done", "saved:1"}))
        << "acks first, then the marks' receipts";
  }
  EXPECT_EQ(Value("chat_store_commit_batch_size_count"), 1);
  EXPECT_EQ(Value("chat_store_marks_transactions_total"), 0);
  absl::StatusOr<store::UserMarks> marks = store_->Marks("bob");
  ASSERT_TRUE(marks.ok()) << marks.status();
  EXPECT_EQ(marks->reached_useq, 1);

  // No send: the marks alone.
  marks_and_sends({{"alice", 1}}, 0);
  EXPECT_EQ(Value("chat_store_marks_transactions_total"), 1);
  marks = store_->Marks("alice");
  ASSERT_TRUE(marks.ok()) << marks.status();
  EXPECT_EQ(marks->reached_useq, 1);

  // The commit fails: its sends and the marks get the failure.
  store_->Break();
  marks_and_sends({{"bob", 2}}, 1);
  store_->Repair();
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(events, (std::vector<std::string>{"done", "saved:error"}));
    EXPECT_EQ(results.back().code(), absl::StatusCode::kUnavailable);
  }
  EXPECT_EQ(Value("chat_store_marks_transactions_total"), 1);
  marks = store_->Marks("bob");
  ASSERT_TRUE(marks.ok()) << marks.status();
  EXPECT_EQ(marks->reached_useq, 1);
  worker_.reset();  // its hooks refer to this test's locals
}

TEST_F(StoreWorkerMetricsTest, AFullQueueCountsEveryRefusalAndShowsItsDepth) {
  StoreWorker::Options options;
  options.max_queue = 2;
  Start(options);
  // Hold the worker inside a task so that what follows stays queued.
  absl::Notification running, release;
  ASSERT_TRUE(worker_->Submit([&](store::MessageStore*) {
    running.Notify();
    release.WaitForNotificationWithTimeout(kWait);
  }));
  ASSERT_TRUE(running.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(Value("chat_store_queue_depth"), 0);

  int ran = 0;  // worker thread only, read after the worker is drained
  ASSERT_TRUE(worker_->Submit([&](store::MessageStore*) { ++ran; }));
  ASSERT_TRUE(worker_->Submit([&](store::MessageStore*) { ++ran; }));
  EXPECT_EQ(Value("chat_store_queue_depth"), 2);

  EXPECT_FALSE(worker_->Submit([&](store::MessageStore*) { ++ran; }));
  absl::Mutex mu;
  std::vector<absl::Status> refused;
  EXPECT_FALSE(worker_->SubmitSend(Job(&refused, &mu)));
  std::vector<StoreWorker::SendJob> jobs;
  for (int i = 0; i < 3; ++i) jobs.push_back(Job(&refused, &mu));
  worker_->SubmitSends(std::move(jobs));  // all three refused at once
  {
    absl::MutexLock lock(&mu);
    ASSERT_EQ(refused.size(), 3u);
    for (const absl::Status& s : refused) EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  }
  EXPECT_EQ(Value("chat_store_queue_rejected_total"), 5);
  // The bound does not apply to SubmitAlways: the depth may pass it.
  worker_->SubmitAlways([&](store::MessageStore*) { ++ran; });
  EXPECT_EQ(Value("chat_store_queue_depth"), 3);

  release.Notify();
  absl::Notification drained;
  worker_->SubmitAlways([&](store::MessageStore*) { drained.Notify(); });
  ASSERT_TRUE(drained.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(ran, 3);
  EXPECT_EQ(Value("chat_store_queue_depth"), 0);
  EXPECT_EQ(Value("chat_store_queue_rejected_total"), 5);
}

TEST_F(StoreWorkerMetricsTest, RetentionCountsThePrunedMessages) {
  StoreWorker::Options options;
  options.retention_ms = 60 * 60 * 1000;  // an hour
  options.prune_interval = absl::Milliseconds(10);
  options.prune_chunk = 2;  // several steps: each one is counted
  Start(options);
  const int64_t two_hours_ago = absl::ToUnixMillis(absl::Now() - absl::Hours(2));
  for (const absl::Status& s : SendBatch(5, two_hours_ago)) EXPECT_TRUE(s.ok()) << s;
  for (const absl::Status& s : SendBatch(1)) EXPECT_TRUE(s.ok()) << s;  // recent: kept
  EXPECT_TRUE(WaitForValue("chat_store_pruned_total", 5));
}

TEST(StoreQueryTimerTest, ObservesOnceUnderItsKindAndToleratesNoMetrics) {
  Metrics metrics;
  StoreMetrics store_metrics(metrics.registry());
  {
    StoreQueryTimer timer(&store_metrics, StoreQuery::kHistory);
    timer.Stop();
  }  // stopped: the destructor adds nothing
  { StoreQueryTimer timer(&store_metrics, StoreQuery::kRead); }
  { StoreQueryTimer timer(nullptr, StoreQuery::kSync); }
  absl::StatusOr<std::vector<testing::PromSample>> samples = testing::ParsePromText(metrics.Text());
  ASSERT_TRUE(samples.ok()) << samples.status();
  auto count = [&](const char* kind) {
    return testing::PromValue(*samples, "chat_store_query_seconds_count", {{"kind", kind}});
  };
  EXPECT_EQ(count("history"), 1);
  EXPECT_EQ(count("read"), 1);
  EXPECT_EQ(count("sync"), 0);
  EXPECT_EQ(count("unread"), 0);
  EXPECT_EQ(count("conversations"), 0);
}

}  // namespace
}  // namespace chat::message
