#include "edge/work_queue.h"

#include <algorithm>

namespace chat::edge {

WorkQueue::WorkQueue(std::string name, int threads, size_t max_queued)
    : name_(std::move(name)), max_queued_(std::max<size_t>(max_queued, 1)) {
  const int n = std::max(threads, 1);
  workers_.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) workers_.emplace_back([this] { Work(); });
}

WorkQueue::~WorkQueue() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  for (auto& worker : workers_) worker.join();
}

bool WorkQueue::TryPost(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  if (stop_ || tasks_.size() >= max_queued_) return false;
  tasks_.push_back(std::move(task));
  return true;
}

size_t WorkQueue::queued() const {
  absl::MutexLock lock(&mu_);
  return tasks_.size();
}

void WorkQueue::Work() {
  for (;;) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_ || !tasks_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (tasks_.empty()) return;  // stopping, and nothing left to run
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace chat::edge
