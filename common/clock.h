#ifndef CHAT_COMMON_CLOCK_H_
#define CHAT_COMMON_CLOCK_H_

#include <chrono>
#include <cstdint>

namespace chat {

// Wall-clock milliseconds, replaceable in tests.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowMs() const = 0;
};

class SystemClock : public Clock {
 public:
  int64_t NowMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  static SystemClock* Get() {
    static SystemClock clock;
    return &clock;
  }
};

}  // namespace chat

#endif  // CHAT_COMMON_CLOCK_H_
