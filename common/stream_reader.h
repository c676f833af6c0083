#ifndef CHAT_COMMON_STREAM_READER_H_
#define CHAT_COMMON_STREAM_READER_H_

#include <chrono>
#include <functional>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/backoff.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/client_callback.h"

namespace chat {

// Keeps one server-streaming call open for as long as it lives: reads every
// message into `on_message`, and when the call ends (server restarted,
// network) reports `on_broken` and starts it again after a jittered backoff.
// `start` begins the call with the given context and reactor (for example
// `stub->async()->WatchRoutes(ctx, &request, reactor)`).
template <typename Resp>
class ReconnectingReader {
 public:
  using StartFn = std::function<void(grpc::ClientContext*, grpc::ClientReadReactor<Resp>*)>;

  ReconnectingReader(StartFn start, std::function<void(const Resp&)> on_message,
                     std::function<void(const grpc::Status&)> on_broken)
      : start_(std::move(start)),
        on_message_(std::move(on_message)),
        on_broken_(std::move(on_broken)),
        thread_([this] { Run(); }) {}

  ~ReconnectingReader() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      if (context_ != nullptr) context_->TryCancel();
    }
    thread_.join();
  }

 private:
  struct Outcome {
    absl::Notification done;
    grpc::Status status;
    bool received_any = false;
  };

  // Deletes itself in OnDone; the outcome outlives it.
  class Call final : public grpc::ClientReadReactor<Resp> {
   public:
    Call(ReconnectingReader* owner, std::shared_ptr<Outcome> outcome)
        : owner_(owner), outcome_(std::move(outcome)) {}
    void Begin() {
      this->StartRead(&msg_);
      this->StartCall();
    }
    void OnReadDone(bool ok) override {
      if (!ok) return;  // OnDone follows with the status
      outcome_->received_any = true;
      owner_->on_message_(msg_);
      this->StartRead(&msg_);
    }
    void OnDone(const grpc::Status& status) override {
      {
        absl::MutexLock lock(&owner_->mu_);
        owner_->context_ = nullptr;
      }
      std::shared_ptr<Outcome> outcome = std::move(outcome_);
      outcome->status = status;
      delete this;
      outcome->done.Notify();
    }
    grpc::ClientContext context;

   private:
    ReconnectingReader* owner_;
    std::shared_ptr<Outcome> outcome_;
    Resp msg_;
  };

  void Run() {
    Backoff backoff(std::chrono::milliseconds(100), std::chrono::milliseconds(2000));
    while (true) {
      auto outcome = std::make_shared<Outcome>();
      auto* call = new Call(this, outcome);
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) {
          delete call;
          return;
        }
        context_ = &call->context;
      }
      start_(&call->context, call);
      call->Begin();
      outcome->done.WaitForNotification();
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
      }
      on_broken_(outcome->status);
      if (outcome->received_any) backoff.Reset();
      const auto delay = backoff.Next();
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::FromChrono(delay));
      if (stopping_) return;
    }
  }

  StartFn start_;
  std::function<void(const Resp&)> on_message_;
  std::function<void(const grpc::Status&)> on_broken_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread thread_;  // last: starts after everything above exists
};

}  // namespace chat

#endif  // CHAT_COMMON_STREAM_READER_H_
