#include "connection-service/blocking_calls.h"

#include <utility>

namespace chat::connection {

BlockingCalls::BlockingCalls(size_t threads, size_t max_queued) : max_queued_(max_queued) {
  threads_.reserve(threads);
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
}

BlockingCalls::~BlockingCalls() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  for (auto& t : threads_) t.join();
}

bool BlockingCalls::Run(std::function<void()> call) {
  absl::MutexLock lock(&mu_);
  if (stop_ || queue_.size() >= max_queued_) return false;
  queue_.push_back(std::move(call));
  return true;
}

void BlockingCalls::Work() {
  while (true) {
    std::function<void()> call;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // stopped, nothing left
      call = std::move(queue_.front());
      queue_.pop_front();
    }
    call();
  }
}

}  // namespace chat::connection
