#ifndef CHAT_COMMON_BACKOFF_H_
#define CHAT_COMMON_BACKOFF_H_

#include <algorithm>
#include <chrono>
#include <random>

namespace chat {

// Exponential backoff with full jitter, for reconnecting streams.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max)
      : initial_(initial), max_(max), next_(initial) {}

  std::chrono::milliseconds Next() {
    std::uniform_int_distribution<long> dist(next_.count() / 2, next_.count());
    auto delay = std::chrono::milliseconds(dist(rng_));
    next_ = std::min(max_, next_ * 2);
    return delay;
  }
  void Reset() { next_ = initial_; }

 private:
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds max_;
  std::chrono::milliseconds next_;
  std::mt19937 rng_{std::random_device{}()};
};

}  // namespace chat

#endif  // CHAT_COMMON_BACKOFF_H_
