#ifndef CHAT_COMMON_STREAM_WRITER_H_
#define CHAT_COMMON_STREAM_WRITER_H_

#include <deque>
#include <functional>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "grpcpp/support/server_callback.h"

namespace chat {

// A server-streaming reactor fed from other threads through Push(). One write
// in flight; a bounded queue; a consumer that falls behind by more than
// `max_queued` messages is finished with RESOURCE_EXHAUSTED (it reconnects and
// starts from a fresh snapshot) instead of growing memory without limit.
template <typename Msg>
class StreamWriter : public grpc::ServerWriteReactor<Msg> {
 public:
  StreamWriter(size_t max_queued, std::function<void()> on_done)
      : max_queued_(max_queued), on_done_(std::move(on_done)) {}

  // Returns false once the stream is finished.
  bool Push(Msg msg) {
    absl::MutexLock lock(&mu_);
    if (finished_) return false;
    if (queue_.size() - exempt_ >= max_queued_) {
      FinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                "watcher fell too far behind; reconnect for a fresh snapshot"));
      return false;
    }
    queue_.push_back(std::move(msg));
    if (!writing_) WriteNextLocked();
    return true;
  }

  // Queues `msgs` whatever the bound: a snapshot, finite and wanted whole.
  // Call before any Push; the bound then counts only what follows.
  bool PushSnapshot(std::vector<Msg> msgs) {
    absl::MutexLock lock(&mu_);
    if (finished_) return false;
    exempt_ += msgs.size();
    for (auto& msg : msgs) queue_.push_back(std::move(msg));
    if (!writing_ && !queue_.empty()) WriteNextLocked();
    return true;
  }

  void Close(grpc::Status status) {
    absl::MutexLock lock(&mu_);
    FinishLocked(std::move(status));
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    queue_.pop_front();
    if (exempt_ > 0) --exempt_;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
      return;
    }
    if (!queue_.empty() && !finished_) WriteNextLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    FinishLocked(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    if (on_done_) on_done_();
    delete this;
  }

 private:
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    writing_ = true;
    this->StartWrite(&queue_.front());
  }
  void FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    this->Finish(std::move(status));
  }

  const size_t max_queued_;
  std::function<void()> on_done_;
  absl::Mutex mu_;
  std::deque<Msg> queue_ ABSL_GUARDED_BY(mu_);  // front() is in flight while writing_
  size_t exempt_ ABSL_GUARDED_BY(mu_) = 0;      // PushSnapshot's, at the front of queue_
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace chat

#endif  // CHAT_COMMON_STREAM_WRITER_H_
