#include "message-service/store_worker.h"

#include <algorithm>
#include <chrono>

#include "spdlog/spdlog.h"

namespace chat::message {

StoreWorker::StoreWorker(std::unique_ptr<store::MessageStore> store, Options options,
                         UserLookup* users, StoreMetrics* metrics)
    : store_(std::move(store)),
      options_(options),
      users_(users),
      metrics_(metrics),
      alive_(std::make_shared<Alive>(this)),
      epoch_(store_->Epoch()),
      next_prune_(absl::Now()) {}

void StoreWorker::Start(std::unique_ptr<grpc::CompletionQueue> cq) {
  if (cq == nullptr) cq = std::make_unique<grpc::CompletionQueue>();
  thread_cq_ = cq.get();
  {
    absl::MutexLock lock(&mu_);
    cq_ = std::move(cq);
  }
  thread_ = std::thread([this] { Run(); });
}

StoreWorker::~StoreWorker() {
  {
    absl::MutexLock lock(&alive_->mu);
    alive_->worker = nullptr;
  }
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    WakeLocked();
  }
  if (thread_.joinable()) thread_.join();
  // Never started: what was queued is dropped; its sends fail.
  std::vector<Item> dropped;
  {
    absl::MutexLock lock(&mu_);
    dropped.swap(queue_);
  }
  for (Item& item : dropped) {
    if (auto* job = std::get_if<SendJob>(&item)) {
      job->done(absl::UnavailableError("message service shutting down"));
    }
  }
  for (auto& [recipient, jobs] : awaiting_lookup_) {
    for (SendJob& job : jobs) job.done(absl::UnavailableError("message service shutting down"));
  }
}

void StoreWorker::Ask(const std::string& recipient) {
  users_->Exists(recipient, [alive = alive_, recipient](absl::Status status) {
    absl::MutexLock lock(&alive->mu);
    if (alive->worker == nullptr) return;
    absl::MutexLock queue_lock(&alive->worker->mu_);
    // Never refused: the sends it releases were admitted already.
    alive->worker->queue_.emplace_back(Resolved{recipient, std::move(status)});
    alive->worker->NoteDepth();
    alive->worker->WakeLocked();
  });
}

void StoreWorker::WakeLocked() {
  if (alarm_set_ || cq_ == nullptr || cq_closed_) return;
  alarm_set_ = true;
  // Due at once: the alarm's event is only there to end the thread's wait.
  alarm_.Set(cq_.get(), gpr_time_0(GPR_CLOCK_MONOTONIC), &wake_);
}

void StoreWorker::Wake::Done(bool /*ok*/) {
  absl::MutexLock lock(&worker->mu_);
  worker->alarm_set_ = false;
}

void StoreWorker::PostSends(std::vector<SendJob> jobs) {
  for (SendJob& job : jobs) local_.emplace_back(std::move(job));
}

void StoreWorker::SetMarkHooks(MarkHooks hooks) {
  absl::MutexLock lock(&mu_);
  mark_hooks_ = std::move(hooks);
}

void StoreWorker::NoteDepth() {
  if (metrics_ != nullptr) metrics_->queue_depth.Set(static_cast<double>(queue_.size()));
}

void StoreWorker::NoteRejected(size_t n) {
  if (metrics_ != nullptr && n > 0) metrics_->queue_rejected.Increment(static_cast<double>(n));
}

bool StoreWorker::Submit(Task task) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return false;
    if (queue_.size() < options_.max_queue) {
      queue_.emplace_back(std::move(task));
      NoteDepth();
      WakeLocked();
      return true;
    }
  }
  NoteRejected(1);
  return false;
}

void StoreWorker::SubmitAlways(Task task) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  queue_.emplace_back(std::move(task));
  NoteDepth();
  WakeLocked();
}

bool StoreWorker::SubmitSend(SendJob job) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return false;
    if (queue_.size() < options_.max_queue) {
      queue_.emplace_back(std::move(job));
      NoteDepth();
      WakeLocked();
      return true;
    }
  }
  NoteRejected(1);
  return false;
}

void StoreWorker::SubmitSends(std::vector<SendJob> jobs) {
  size_t queued = 0;
  bool stopping = false;
  {
    absl::MutexLock lock(&mu_);
    stopping = stopping_;
    while (queued < jobs.size() && !stopping_ && queue_.size() < options_.max_queue) {
      queue_.emplace_back(std::move(jobs[queued++]));
    }
    if (queued > 0) {
      NoteDepth();
      WakeLocked();
    }
  }
  // Refusals while stopping are shutdown, not overload.
  if (!stopping) NoteRejected(jobs.size() - queued);
  for (size_t i = queued; i < jobs.size(); ++i) {
    jobs[i].done(absl::UnavailableError("message service overloaded; retry later"));
  }
}

bool StoreWorker::WaitAndHandle(absl::Time deadline) {
  void* tag = nullptr;
  bool ok = false;
  const absl::Duration wait = deadline - absl::Now();
  const gpr_timespec until =
      wait <= absl::ZeroDuration()
          ? gpr_time_0(GPR_CLOCK_MONOTONIC)
          : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                         gpr_time_from_micros(absl::ToInt64Microseconds(wait), GPR_TIMESPAN));
  grpc::CompletionQueue::NextStatus status = thread_cq_->AsyncNext(&tag, &ok, until);
  for (int events = 0; status == grpc::CompletionQueue::GOT_EVENT;) {
    static_cast<CqEvent*>(tag)->Done(ok);
    if (++events == kMaxEventsPerWake) return true;
    // Whatever else is ready joins this wake-up (a poll that never blocks).
    status = thread_cq_->AsyncNext(&tag, &ok, gpr_time_0(GPR_CLOCK_MONOTONIC));
  }
  return false;
}

void StoreWorker::Run() {
  std::vector<Item> items;
  std::vector<Item> posted;
  std::vector<SendJob> batch;
  std::vector<std::function<void()>> after_this;
  MarkHooks hooks;   // a copy of mark_hooks_, to call without the lock
  bool busy = true;  // work may have been submitted before Start
  for (;;) {
    // Idle, the worker still wakes up every second: taking the moved marks
    // (MarkHooks) revisits reached marks held back by holes (another
    // replica's commits) even when nothing else happens.
    absl::Time deadline = absl::Now() + absl::Seconds(1);
    if (options_.retention_ms > 0) deadline = std::min(deadline, next_prune_);
    if (busy || prune_more_) deadline = absl::InfinitePast();
    busy = WaitAndHandle(deadline);
    bool marks = false;
    bool stop = false;
    {
      absl::MutexLock lock(&mu_);
      items.swap(queue_);
      NoteDepth();
      hooks = mark_hooks_;
      marks = hooks.take && hooks.saved;
      stop = stopping_;
    }
    RunItems(&items, &batch);
    // What the events brought; tasks among it may post more.
    while (!local_.empty()) {
      posted.swap(local_);
      RunItems(&posted, &batch);
    }
    CommitBatch(&batch, marks ? &hooks : nullptr);
    after_this.swap(after_this_batch_);
    for (auto& fn : after_this) fn();
    after_this.clear();
    MaybePrune();
    if (!stop) continue;
    {
      absl::MutexLock lock(&mu_);
      if (!queue_.empty()) continue;
      // Nothing may start on the queue after Shutdown, alarms included.
      cq_closed_ = true;
    }
    thread_cq_->Shutdown();
    void* tag = nullptr;
    bool ok = false;
    while (thread_cq_->Next(&tag, &ok)) static_cast<CqEvent*>(tag)->Done(ok);
    // The last events' clean-up (a link's routes).
    while (!local_.empty()) {
      posted.swap(local_);
      RunItems(&posted, &batch);
    }
    CommitBatch(&batch);
    after_this.swap(after_this_batch_);
    for (auto& fn : after_this) fn();
    return;
  }
}

void StoreWorker::RunItems(std::vector<Item>* items, std::vector<SendJob>* batch) {
  for (Item& item : *items) {
    if (auto* job = std::get_if<SendJob>(&item)) {
      const std::string& to = job->message.send_to;
      if (auto waiting = awaiting_lookup_.find(to); waiting != awaiting_lookup_.end()) {
        waiting->second.push_back(std::move(*job));
        continue;
      }
      if (!Known(to)) {
        absl::StatusOr<bool> has = store_->HasUser(to);
        if (has.ok() && *has) {
          NoteKnownUser(to);
        } else if (has.ok()) {
          const std::string recipient = to;
          awaiting_lookup_[recipient].push_back(std::move(*job));
          Ask(recipient);
          continue;
        } else {
          job->done(has.status());
          continue;
        }
      }
      batch->push_back(std::move(*job));
      continue;
    }
    if (auto* resolved = std::get_if<Resolved>(&item)) {
      auto node = awaiting_lookup_.extract(resolved->recipient);
      if (node.empty()) continue;
      if (resolved->status.ok()) {
        NoteKnownUser(resolved->recipient);
        for (SendJob& job : node.mapped()) batch->push_back(std::move(job));
      } else {
        for (SendJob& job : node.mapped()) job.done(resolved->status);
      }
      continue;
    }
    if (auto* unordered = std::get_if<Unordered>(&item)) {
      unordered->task(store_.get());
      continue;
    }
    CommitBatch(batch);  // what came before this task is committed first
    std::get<Task>(item)(store_.get());
  }
  items->clear();
}

void StoreWorker::CommitBatch(std::vector<SendJob>* batch, const MarkHooks* marks) {
  std::vector<std::pair<std::string, int64_t>> moved;
  if (marks != nullptr) moved = marks->take(store_.get());
  if (batch->empty()) {
    if (marks == nullptr) return;
    if (moved.empty()) {
      marks->saved(std::vector<store::MarkChange>());
    } else {
      if (metrics_ != nullptr) metrics_->marks_transactions.Increment();
      marks->saved(store_->AdvanceReachedMany(moved));
    }
    return;
  }
  std::vector<store::NewMessage> messages;
  messages.reserve(batch->size());
  for (SendJob& job : *batch) messages.push_back(std::move(job.message));
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<store::Committed>> committed;
  std::vector<store::MarkChange> changes;
  if (moved.empty()) {
    committed = store_->Commit(messages);
  } else {
    absl::StatusOr<store::MessageStore::CommitResult> both =
        store_->CommitAndAdvance(messages, moved);
    if (both.ok()) {
      committed = std::move(both->committed);
      changes = std::move(both->changes);
    } else {
      committed = both.status();
    }
  }
  if (metrics_ != nullptr) {
    metrics_->commit_seconds.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    metrics_->commit_batch_size.Observe(static_cast<double>(messages.size()));
    if (!committed.ok()) metrics_->commit_failures.Increment();
  }
  if (!committed.ok()) {
    spdlog::warn("store commit of {} messages failed: {}", messages.size(),
                 committed.status().ToString());
    for (SendJob& job : *batch) job.done(committed.status());
  } else {
    for (size_t i = 0; i < batch->size(); ++i) {
      NoteKnownUser((*committed)[i].for_sender.sent_by);
      NoteKnownUser((*committed)[i].for_sender.send_to);
      (*batch)[i].done(std::move((*committed)[i]));
    }
  }
  batch->clear();
  // After the sends' answers, as when the marks had a transaction of their
  // own: receipts never overtake the acks of the messages they cover.
  if (marks == nullptr) return;
  if (committed.ok()) {
    marks->saved(std::move(changes));
  } else {
    marks->saved(committed.status());
  }
}

void StoreWorker::MaybePrune() {
  if (options_.retention_ms <= 0 || absl::Now() < next_prune_) return;
  const int64_t cutoff = absl::ToUnixMillis(absl::Now()) - options_.retention_ms;
  absl::StatusOr<int64_t> deleted = store_->PruneOlderThan(cutoff, options_.prune_chunk);
  if (!deleted.ok()) {
    spdlog::warn("retention: {}", deleted.status().ToString());
    prune_more_ = false;
    next_prune_ = absl::Now() + options_.prune_interval;
    return;
  }
  if (*deleted > 0) {
    spdlog::debug("retention: deleted {} messages", *deleted);
    if (metrics_ != nullptr) metrics_->pruned.Increment(static_cast<double>(*deleted));
  }
  // A full chunk: more may be waiting; continue between the next batches.
  prune_more_ = *deleted >= options_.prune_chunk;
  if (!prune_more_) next_prune_ = absl::Now() + options_.prune_interval;
}

}  // namespace chat::message
