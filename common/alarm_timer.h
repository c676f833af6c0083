#ifndef CHAT_COMMON_ALARM_TIMER_H_
#define CHAT_COMMON_ALARM_TIMER_H_

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "grpc/support/time.h"
#include "grpcpp/alarm.h"

namespace chat {

// A one-shot timer on gRPC's callback alarm, for components whose other
// callbacks already run on gRPC's threads: the callback runs on one of
// gRPC's executor threads, and no thread waits for the deadline.
//
// Why the bookkeeping: a grpc::Alarm that is cancelled or destroyed still
// runs its callback (with `ok` false) later, on another thread, and its
// destructor does not wait for that. So every alarm set is counted until its
// callback has returned, only the latest Schedule() may run its function,
// and Shutdown() returns only once no callback can still run: the owner may
// be destroyed right after.
class AlarmTimer {
 public:
  AlarmTimer() = default;
  AlarmTimer(const AlarmTimer&) = delete;
  AlarmTimer& operator=(const AlarmTimer&) = delete;
  ~AlarmTimer() { Shutdown(); }

  // Runs `fn` once after `delay` unless Cancel(), Shutdown() or a later
  // Schedule() comes first (that one replaces it). Returns false, and never
  // runs `fn`, after Shutdown(). `fn` never runs inside Schedule() (gRPC hands
  // a due alarm to its executor threads), so the caller may hold a lock that
  // `fn` takes; only a cancelled alarm's bookkeeping may run inline, and it
  // takes no lock but this timer's.
  bool Schedule(std::chrono::nanoseconds delay, std::function<void()> fn) {
    auto alarm = std::make_shared<grpc::Alarm>();
    std::shared_ptr<grpc::Alarm> replaced;
    uint64_t id;
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return false;
      id = ++last_id_;
      armed_ = id;
      ++outstanding_;
      replaced = std::exchange(alarm_, alarm);
    }
    // Outside mu_: cancelling may run the old callback's bookkeeping here.
    // `alarm` is ours until Set returns, whoever replaces it meanwhile.
    if (replaced != nullptr) replaced->Cancel();
    replaced.reset();
    const gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                     gpr_time_from_nanos(std::max<int64_t>(0, delay.count()), GPR_TIMESPAN));
    alarm->Set(deadline, [this, id, fn = std::move(fn)](bool ok) { Fired(id, ok, fn); });
    return true;
  }

  // The pending function, if any, will not run (one already running may
  // still be).
  void Cancel() {
    std::shared_ptr<grpc::Alarm> alarm;
    {
      absl::MutexLock lock(&mu_);
      armed_ = 0;
      alarm = std::move(alarm_);
    }
    if (alarm != nullptr) alarm->Cancel();
  }

  // Cancels what is pending, refuses later Schedule() calls, and waits until
  // no callback runs or is still to run. Never from the timer's own
  // function (it would wait for itself).
  void Shutdown() {
    std::shared_ptr<grpc::Alarm> alarm;
    {
      absl::MutexLock lock(&mu_);
      stopped_ = true;
      armed_ = 0;
      alarm = std::move(alarm_);
    }
    if (alarm != nullptr) alarm->Cancel();
    alarm.reset();
    absl::MutexLock lock(&mu_);
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return outstanding_ == 0; };
    mu_.Await(absl::Condition(&idle));
  }

 private:
  void Fired(uint64_t id, bool ok, const std::function<void()>& fn) {
    bool run;
    {
      absl::MutexLock lock(&mu_);
      run = ok && !stopped_ && armed_ == id;
      if (run) armed_ = 0;
    }
    if (run) fn();
    // Last touch of `this`: Shutdown() may return as soon as this unlocks.
    absl::MutexLock lock(&mu_);
    --outstanding_;
  }

  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t last_id_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t armed_ ABSL_GUARDED_BY(mu_) = 0;   // the Schedule() whose `fn` may run; 0: none
  int outstanding_ ABSL_GUARDED_BY(mu_) = 0;  // alarms set whose callback has not returned
  std::shared_ptr<grpc::Alarm> alarm_ ABSL_GUARDED_BY(mu_);  // the latest one
};

}  // namespace chat

#endif  // CHAT_COMMON_ALARM_TIMER_H_
