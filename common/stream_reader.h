#ifndef CHAT_COMMON_STREAM_READER_H_
#define CHAT_COMMON_STREAM_READER_H_

#include <chrono>
#include <functional>
#include <memory>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "common/alarm_timer.h"
#include "common/backoff.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/client_callback.h"

namespace chat {

// Keeps one server-streaming call open for as long as it lives: reads every
// message into `on_message`, and when the call ends (server restarted,
// network) reports `on_broken` and starts it again after a jittered backoff.
// `start` begins the call with the given context and reactor (for example
// `stub->async()->WatchRoutes(ctx, &request, reactor)`).
//
// It has no thread: the callbacks run on gRPC's threads, and the restart is
// an alarm (AlarmTimer) set when the call ends.
template <typename Resp>
class ReconnectingReader {
 public:
  using StartFn = std::function<void(grpc::ClientContext*, grpc::ClientReadReactor<Resp>*)>;

  ReconnectingReader(StartFn start, std::function<void(const Resp&)> on_message,
                     std::function<void(const grpc::Status&)> on_broken)
      : start_(std::move(start)),
        on_message_(std::move(on_message)),
        on_broken_(std::move(on_broken)) {
    StartCall();
  }

  // Ends the call and returns once none of the callbacks can run any more.
  ~ReconnectingReader() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      // (A call not started yet is cancelled as soon as it starts.)
      if (context_ != nullptr) context_->TryCancel();
    }
    // A restart that fires from now on finds stopping_ set.
    restart_.Shutdown();
    absl::MutexLock lock(&mu_);
    auto ended = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !call_live_; };
    mu_.Await(absl::Condition(&ended));
  }

 private:
  // One attempt; deletes itself in OnDone, then tells the reader.
  class Call final : public grpc::ClientReadReactor<Resp> {
   public:
    explicit Call(ReconnectingReader* owner) : owner_(owner) {}
    void Begin() {
      this->StartRead(&msg_);
      this->StartCall();
    }
    void OnReadDone(bool ok) override {
      if (!ok) return;  // OnDone follows with the status
      received_any_ = true;
      owner_->on_message_(msg_);
      this->StartRead(&msg_);
    }
    void OnDone(const grpc::Status& status) override {
      ReconnectingReader* owner = owner_;
      const bool received_any = received_any_;
      const grpc::Status ended = status;
      delete this;
      owner->CallEnded(ended, received_any);
    }
    grpc::ClientContext context;

   private:
    ReconnectingReader* owner_;
    Resp msg_;
    bool received_any_ = false;
  };

  void StartCall() {
    auto* call = new Call(this);
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        delete call;
        return;
      }
      context_ = &call->context;
      call_live_ = true;
    }
    start_(&call->context, call);
    call->Begin();
  }

  // The call's last word: schedules the next one. call_live_ is cleared only
  // at the end, so the destructor waits for this to return.
  void CallEnded(const grpc::Status& status, bool received_any) {
    bool stopping;
    std::chrono::milliseconds delay{0};
    {
      absl::MutexLock lock(&mu_);
      context_ = nullptr;
      stopping = stopping_;
      if (!stopping) {
        // A stream that delivered something was healthy: restart soon.
        if (received_any) backoff_.Reset();
        delay = backoff_.Next();
      }
    }
    if (!stopping) {
      on_broken_(status);
      restart_.Schedule(delay, [this] { StartCall(); });
    }
    absl::MutexLock lock(&mu_);
    call_live_ = false;
  }

  StartFn start_;
  std::function<void(const Resp&)> on_message_;
  std::function<void(const grpc::Status&)> on_broken_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  // Between StartCall and the end of CallEnded: a call's callbacks may run.
  bool call_live_ ABSL_GUARDED_BY(mu_) = false;
  Backoff backoff_ ABSL_GUARDED_BY(mu_){std::chrono::milliseconds(100),
                                        std::chrono::milliseconds(2000)};
  AlarmTimer restart_;
};

}  // namespace chat

#endif  // CHAT_COMMON_STREAM_READER_H_
