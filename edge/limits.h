#ifndef CHAT_EDGE_LIMITS_H_
#define CHAT_EDGE_LIMITS_H_

#include <algorithm>
#include <cstdint>
#include <deque>

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
class WindowCounter {
 public:
  WindowCounter(int max, int64_t window_ms) : max_(max), window_ms_(window_ms) {}

  // Records one event; true when the window now holds more than `max`.
  bool AddAndCheck(int64_t now_ms) {
    while (!events_.empty() && events_.front() <= now_ms - window_ms_) events_.pop_front();
    events_.push_back(now_ms);
    const bool over = static_cast<int>(events_.size()) > max_;
    // Never keep more than max + 1 timestamps: the answer is already known.
    if (static_cast<int>(events_.size()) > max_ + 1) events_.pop_front();
    return over;
  }

 private:
  const int max_;
  const int64_t window_ms_;
  std::deque<int64_t> events_;
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_LIMITS_H_
