#ifndef CHAT_TESTS_SUPPORT_FAKE_CLOCK_H_
#define CHAT_TESTS_SUPPORT_FAKE_CLOCK_H_

#include <atomic>
#include <cstdint>

#include "common/clock.h"

namespace chat::testing {

// A clock that moves only when the test says so. Safe to read from server
// threads while the test thread sets it.
class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t now_ms = 1'700'000'000'000) : now_ms_(now_ms) {}
  int64_t NowMs() const override { return now_ms_.load(); }
  void Set(int64_t now_ms) { now_ms_.store(now_ms); }
  void Advance(int64_t delta_ms) { now_ms_.fetch_add(delta_ms); }

 private:
  std::atomic<int64_t> now_ms_;
};

}  // namespace chat::testing

#endif  // CHAT_TESTS_SUPPORT_FAKE_CLOCK_H_
