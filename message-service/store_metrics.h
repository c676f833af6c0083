#ifndef CHAT_MESSAGE_SERVICE_STORE_METRICS_H_
#define CHAT_MESSAGE_SERVICE_STORE_METRICS_H_

#include <array>
#include <chrono>
#include <cstddef>

#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace chat::message {

// The reads that run on the store worker, one label value each.
enum class StoreQuery { kSync, kUnread, kHistory, kConversations, kRead };

// The store's health as the StoreWorker and the queries see it. Everything
// but the queue depth is recorded once per batch, query or prune step, never
// per message.
struct StoreMetrics {
  explicit StoreMetrics(prometheus::Registry& registry)
      : queue_depth(prometheus::BuildGauge()
                        .Name("chat_store_queue_depth")
                        .Help("Tasks (sends, reads, link updates) waiting for the store worker")
                        .Register(registry)
                        .Add({})),
        queue_rejected(prometheus::BuildCounter()
                           .Name("chat_store_queue_rejected_total")
                           .Help("Tasks refused because the store worker's queue was full "
                                 "(answered unavailable)")
                           .Register(registry)
                           .Add({})),
        commit_batch_size(prometheus::BuildHistogram()
                              .Name("chat_store_commit_batch_size")
                              .Help("Messages per store commit (one transaction each)")
                              .Register(registry)
                              .Add({}, BatchBuckets())),
        commit_seconds(prometheus::BuildHistogram()
                           .Name("chat_store_commit_seconds")
                           .Help("Time one store commit took, failed ones included")
                           .Register(registry)
                           .Add({}, SecondsBuckets())),
        commit_failures(prometheus::BuildCounter()
                            .Name("chat_store_commit_failures_total")
                            .Help("Store commits that failed (every send in them failed)")
                            .Register(registry)
                            .Add({})),
        marks_transactions(prometheus::BuildCounter()
                               .Name("chat_store_marks_transactions_total")
                               .Help("Store transactions that saved reached marks alone (a "
                                     "batch of messages carries them when there is one)")
                               .Register(registry)
                               .Add({})),
        pruned(prometheus::BuildCounter()
                   .Name("chat_store_pruned_total")
                   .Help("Messages deleted by retention")
                   .Register(registry)
                   .Add({})) {
    auto& family = prometheus::BuildHistogram()
                       .Name("chat_store_query_seconds")
                       .Help("Time one read on the store worker took, by kind")
                       .Register(registry);
    // All kinds up front: a scrape shows every series from the start.
    query_seconds[static_cast<size_t>(StoreQuery::kSync)] =
        &family.Add({{"kind", "sync"}}, SecondsBuckets());
    query_seconds[static_cast<size_t>(StoreQuery::kUnread)] =
        &family.Add({{"kind", "unread"}}, SecondsBuckets());
    query_seconds[static_cast<size_t>(StoreQuery::kHistory)] =
        &family.Add({{"kind", "history"}}, SecondsBuckets());
    query_seconds[static_cast<size_t>(StoreQuery::kConversations)] =
        &family.Add({{"kind", "conversations"}}, SecondsBuckets());
    query_seconds[static_cast<size_t>(StoreQuery::kRead)] =
        &family.Add({{"kind", "read"}}, SecondsBuckets());
  }

  // 100 µs (a small SQLite commit without fsync) to 5 s (a stalled disk).
  static prometheus::Histogram::BucketBoundaries SecondsBuckets() {
    return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
            0.05,   0.1,     0.25,   0.5,   1,      2.5,   5};
  }
  // 1..4096 in powers of two: a batch is whatever queued during the last one.
  static prometheus::Histogram::BucketBoundaries BatchBuckets() {
    prometheus::Histogram::BucketBoundaries b;
    for (double n = 1; n <= 4096; n *= 2) b.push_back(n);
    return b;
  }

  prometheus::Histogram& query(StoreQuery kind) {
    return *query_seconds[static_cast<size_t>(kind)];
  }

  prometheus::Gauge& queue_depth;
  prometheus::Counter& queue_rejected;
  prometheus::Histogram& commit_batch_size;
  prometheus::Histogram& commit_seconds;
  prometheus::Counter& commit_failures;
  prometheus::Counter& marks_transactions;
  prometheus::Counter& pruned;
  std::array<prometheus::Histogram*, 5> query_seconds{};
};

// Times one store read from construction to Stop() (or destruction) into
// chat_store_query_seconds{kind}; does nothing when `metrics` is null.
class StoreQueryTimer {
 public:
  StoreQueryTimer(StoreMetrics* metrics, StoreQuery kind)
      : metrics_(metrics), kind_(kind), start_(std::chrono::steady_clock::now()) {}
  ~StoreQueryTimer() { Stop(); }
  StoreQueryTimer(const StoreQueryTimer&) = delete;
  StoreQueryTimer& operator=(const StoreQueryTimer&) = delete;

  void Stop() {
    if (metrics_ == nullptr) return;
    metrics_->query(kind_).Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
    metrics_ = nullptr;
  }

 private:
  StoreMetrics* metrics_;
  const StoreQuery kind_;
  const std::chrono::steady_clock::time_point start_;
};

}  // namespace chat::message

#endif  // CHAT_MESSAGE_SERVICE_STORE_METRICS_H_
