#ifndef CHAT_COMMON_ALARM_TIMER_H_
#define CHAT_COMMON_ALARM_TIMER_H_

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "common/cq_tag.h"
#include "common/grpc_loop.h"
#include "grpc/support/time.h"
#include "grpcpp/alarm.h"

namespace chat {

// A one-shot timer on the process's GrpcLoop: a grpc::Alarm on its queue,
// whose function runs on the loop's thread, and no thread waits for the
// deadline. For components whose other events (their gRPC calls) already
// complete there.
//
// A grpc::Alarm that is cancelled or replaced still delivers its tag later
// (not ok), so every alarm's tag holds the timer's state, shared, and only the
// latest Schedule() may run its function. Shutdown() refuses further ones and
// returns once no function of this timer runs any more, so the owner may be
// destroyed right after; alarms still pending then find the state stopped.
class AlarmTimer {
 public:
  AlarmTimer() = default;
  AlarmTimer(const AlarmTimer&) = delete;
  AlarmTimer& operator=(const AlarmTimer&) = delete;
  ~AlarmTimer() { Shutdown(); }

  // Runs `fn` once after `delay` unless Cancel(), Shutdown() or a later
  // Schedule() comes first (that one replaces it). Returns false, and never
  // runs `fn`, after Shutdown(). `fn` never runs inside Schedule() (it runs on
  // the loop's thread when the alarm's tag comes out of the queue), so the
  // caller may hold a lock that `fn` takes.
  bool Schedule(std::chrono::nanoseconds delay, std::function<void()> fn) {
    auto* fired = new Fired(state_, std::move(fn));
    std::unique_ptr<grpc::Alarm> replaced;
    {
      absl::MutexLock lock(&state_->mu);
      if (state_->stopped) {
        delete fired;
        return false;
      }
      fired->id = ++state_->last_id;
      state_->armed = fired->id;
      replaced = std::exchange(state_->alarm, std::make_unique<grpc::Alarm>());
      const gpr_timespec deadline =
          gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                       gpr_time_from_nanos(std::max<int64_t>(0, delay.count()), GPR_TIMESPAN));
      state_->alarm->Set(GrpcLoop::Default().cq(), deadline, static_cast<CqTag*>(fired));
    }
    // (Destroying a pending alarm cancels it; its tag still comes, not ok.)
    replaced.reset();
    return true;
  }

  // The pending function, if any, will not run (one already running may
  // still be).
  void Cancel() {
    std::unique_ptr<grpc::Alarm> alarm;
    {
      absl::MutexLock lock(&state_->mu);
      state_->armed = 0;
      alarm = std::move(state_->alarm);
    }
  }

  // Cancels what is pending, refuses later Schedule() calls, and waits until
  // no function of this timer runs. Never from the timer's own function (it
  // would wait for itself); from another function on the loop's thread it
  // need not wait (one thread: none of ours can be running).
  void Shutdown() {
    std::unique_ptr<grpc::Alarm> alarm;
    {
      absl::MutexLock lock(&state_->mu);
      state_->stopped = true;
      state_->armed = 0;
      alarm = std::move(state_->alarm);
    }
    alarm.reset();
    absl::MutexLock lock(&state_->mu);
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_->mu) { return !state_->running; };
    state_->mu.Await(absl::Condition(&idle));
  }

 private:
  struct State {
    absl::Mutex mu;
    bool stopped ABSL_GUARDED_BY(mu) = false;
    bool running ABSL_GUARDED_BY(mu) = false;  // a function runs now
    uint64_t last_id ABSL_GUARDED_BY(mu) = 0;
    uint64_t armed ABSL_GUARDED_BY(mu) = 0;  // the Schedule() whose `fn` may run; 0: none
    std::unique_ptr<grpc::Alarm> alarm ABSL_GUARDED_BY(mu);  // the latest one
  };

  // One alarm's tag; deletes itself when it comes out of the queue.
  struct Fired final : CqTag {
    Fired(std::shared_ptr<State> s, std::function<void()> f)
        : state(std::move(s)), fn(std::move(f)) {}
    void Done(bool ok) override {
      bool run;
      {
        absl::MutexLock lock(&state->mu);
        run = ok && !state->stopped && state->armed == id;
        if (run) {
          state->armed = 0;
          state->running = true;
        }
      }
      if (run) {
        fn();
        absl::MutexLock lock(&state->mu);
        state->running = false;
      }
      delete this;
    }
    std::shared_ptr<State> state;
    std::function<void()> fn;
    uint64_t id = 0;
  };

  std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace chat

#endif  // CHAT_COMMON_ALARM_TIMER_H_
