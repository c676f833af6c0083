#ifndef CHAT_COMMON_STREAM_READER_H_
#define CHAT_COMMON_STREAM_READER_H_

#include <chrono>
#include <functional>
#include <memory>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "common/alarm_timer.h"
#include "common/backoff.h"
#include "common/cq_tag.h"
#include "common/grpc_loop.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/async_stream.h"

namespace chat {

// Keeps one server-streaming call open for as long as it lives: reads every
// message into `on_message`, and when the call ends (server restarted,
// network) reports `on_broken` and starts it again after a jittered backoff.
// `start` prepares the call on the given context and queue (for example
// `stub->PrepareAsyncWatchRoutes(ctx, request, cq)`); it is started here.
//
// It has no thread: the call's events and the restart alarm (AlarmTimer)
// complete on the process's GrpcLoop, where the callbacks run.
template <typename Resp>
class ReconnectingReader {
 public:
  using StartFn = std::function<std::unique_ptr<grpc::ClientAsyncReader<Resp>>(
      grpc::ClientContext*, grpc::CompletionQueue*)>;

  ReconnectingReader(StartFn start, std::function<void(const Resp&)> on_message,
                     std::function<void(const grpc::Status&)> on_broken)
      : start_(std::move(start)),
        on_message_(std::move(on_message)),
        on_broken_(std::move(on_broken)) {
    StartCall();
  }

  // Ends the call and returns once none of the callbacks can run any more.
  // Not on the loop's thread (the call's end is handled there).
  ~ReconnectingReader() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      if (context_ != nullptr) context_->TryCancel();
    }
    // A restart that fires from now on finds stopping_ set.
    restart_.Shutdown();
    absl::MutexLock lock(&mu_);
    auto ended = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !call_live_; };
    mu_.Await(absl::Condition(&ended));
  }

 private:
  // One attempt: started, then reads until one fails, then Finish for the
  // status; deletes itself once that is in, then tells the reader.
  class Call final {
   public:
    explicit Call(ReconnectingReader* owner) : owner_(owner) {}
    void Begin(std::unique_ptr<grpc::ClientAsyncReader<Resp>> reader) {
      reader_ = std::move(reader);
      reader_->StartCall(&started_);
    }
    grpc::ClientContext context;

   private:
    void OnStarted(bool ok) {
      if (!ok) {
        reader_->Finish(&status_, &finished_);
        return;
      }
      reader_->Read(&msg_, &read_);
    }
    void OnRead(bool ok) {
      if (!ok) {  // the stream ended: its status next
        reader_->Finish(&status_, &finished_);
        return;
      }
      received_any_ = true;
      owner_->on_message_(msg_);
      reader_->Read(&msg_, &read_);
    }
    void OnFinished(bool /*ok*/) {
      ReconnectingReader* owner = owner_;
      const bool received_any = received_any_;
      const grpc::Status ended = status_;
      // Before the context goes: the destructor cancels through it.
      owner->ForgetContext();
      delete this;
      owner->CallEnded(ended, received_any);
    }

    ReconnectingReader* owner_;
    std::unique_ptr<grpc::ClientAsyncReader<Resp>> reader_;
    Resp msg_;
    grpc::Status status_;
    bool received_any_ = false;
    MemberTag<Call> started_{this, &Call::OnStarted};
    MemberTag<Call> read_{this, &Call::OnRead};
    MemberTag<Call> finished_{this, &Call::OnFinished};
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
    call->Begin(start_(&call->context, GrpcLoop::Default().cq()));
  }

  void ForgetContext() {
    absl::MutexLock lock(&mu_);
    context_ = nullptr;
  }

  // The call's last word: schedules the next one. call_live_ is cleared only
  // at the end, so the destructor waits for this to return.
  void CallEnded(const grpc::Status& status, bool received_any) {
    bool stopping;
    std::chrono::milliseconds delay{0};
    {
      absl::MutexLock lock(&mu_);
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
