#ifndef CHAT_EDGE_LIMITS_H_
#define CHAT_EDGE_LIMITS_H_

#include <algorithm>
#include <cstdint>
#include <memory>

namespace chat::edge {

// Token bucket: `rate` tokens per second, at most `burst` saved up.
class TokenBucket {
 public:
  TokenBucket(double rate, double burst, int64_t now_ms)
      : rate_per_ms_(rate / 1000.0), burst_(burst), tokens_(burst), last_ms_(now_ms) {}

  bool TryTake(int64_t now_ms) {
    if (now_ms > last_ms_) {
      tokens_ = std::min(burst_, tokens_ + (now_ms - last_ms_) * rate_per_ms_);
      last_ms_ = now_ms;
    }
    if (tokens_ < 1.0) return false;
    tokens_ -= 1.0;
    return true;
  }

 private:
  const double rate_per_ms_;
  const double burst_;
  double tokens_;
  int64_t last_ms_;
};

// Counts events in a sliding window; says when more than `max` happened.
// Keeps at most max + 1 timestamps in a ring allocated on the first event, so
// an idle connection's counters cost no heap.
class WindowCounter {
 public:
  WindowCounter(int max, int64_t window_ms)
      : max_(std::max(0, max)), window_ms_(window_ms) {}

  // Records one event; true when the window now holds more than `max`.
  bool AddAndCheck(int64_t now_ms) {
    const size_t capacity = static_cast<size_t>(max_) + 1;
    if (ring_ == nullptr) ring_ = std::make_unique<int64_t[]>(capacity);
    while (count_ > 0 && ring_[head_] <= now_ms - window_ms_) Pop(capacity);
    // The answer is already known with max + 1 timestamps: drop the oldest.
    if (count_ == capacity) Pop(capacity);
    ring_[(head_ + count_) % capacity] = now_ms;
    ++count_;
    return count_ > static_cast<size_t>(max_);
  }

 private:
  void Pop(size_t capacity) {
    head_ = (head_ + 1) % capacity;
    --count_;
  }

  const int max_;
  const int64_t window_ms_;
  std::unique_ptr<int64_t[]> ring_;
  size_t head_ = 0;
  size_t count_ = 0;
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_LIMITS_H_
