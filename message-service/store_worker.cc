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
      next_prune_(absl::Now()),
      thread_([this] { Run(); }) {}

StoreWorker::~StoreWorker() {
  {
    absl::MutexLock lock(&alive_->mu);
    alive_->worker = nullptr;
  }
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
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
  });
}

void StoreWorker::SetAfterBatch(std::function<void(store::MessageStore*)> fn) {
  absl::MutexLock lock(&mu_);
  after_batch_ = std::move(fn);
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
}

bool StoreWorker::SubmitSend(SendJob job) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return false;
    if (queue_.size() < options_.max_queue) {
      queue_.emplace_back(std::move(job));
      NoteDepth();
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
    if (queued > 0) NoteDepth();
  }
  // Refusals while stopping are shutdown, not overload.
  if (!stopping) NoteRejected(jobs.size() - queued);
  for (size_t i = queued; i < jobs.size(); ++i) {
    jobs[i].done(absl::UnavailableError("message service overloaded; retry later"));
  }
}

void StoreWorker::Run() {
  std::vector<Item> items;
  std::vector<SendJob> batch;
  for (;;) {
    std::function<void(store::MessageStore*)> after;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this] { return !queue_.empty() || stopping_; };
      // Idle, the worker still wakes up every second: the after-batch step
      // revisits reached marks held back by holes (another replica's
      // commits) even when nothing else happens.
      const absl::Time tick = absl::Now() + absl::Seconds(1);
      if (options_.retention_ms > 0 && !prune_more_) {
        mu_.AwaitWithDeadline(absl::Condition(&ready), std::min(next_prune_, tick));
      } else if (options_.retention_ms > 0) {
        // Pruning in progress: only look whether work arrived.
      } else {
        mu_.AwaitWithDeadline(absl::Condition(&ready), tick);
      }
      if (queue_.empty() && stopping_) return;
      items.swap(queue_);
      NoteDepth();
      after = after_batch_;
    }
    for (Item& item : items) {
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
        batch.push_back(std::move(*job));
        continue;
      }
      if (auto* resolved = std::get_if<Resolved>(&item)) {
        auto node = awaiting_lookup_.extract(resolved->recipient);
        if (node.empty()) continue;
        if (resolved->status.ok()) {
          NoteKnownUser(resolved->recipient);
          for (SendJob& job : node.mapped()) batch.push_back(std::move(job));
        } else {
          for (SendJob& job : node.mapped()) job.done(resolved->status);
        }
        continue;
      }
      CommitBatch(&batch);  // what came before this task is committed first
      std::get<Task>(item)(store_.get());
    }
    CommitBatch(&batch);
    items.clear();
    if (after) after(store_.get());
    MaybePrune();
  }
}

void StoreWorker::CommitBatch(std::vector<SendJob>* batch) {
  if (batch->empty()) return;
  std::vector<store::NewMessage> messages;
  messages.reserve(batch->size());
  for (SendJob& job : *batch) messages.push_back(std::move(job.message));
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<store::Committed>> committed = store_->Commit(messages);
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
