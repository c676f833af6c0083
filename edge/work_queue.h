#ifndef CHAT_EDGE_WORK_QUEUE_H_
#define CHAT_EDGE_WORK_QUEUE_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace chat::edge {

// A fixed set of worker threads fed by a bounded FIFO: the place for work the
// I/O threads must never do themselves (signature checks, blocking HTTP calls
// to an identity provider). When the backlog is full, TryPost refuses instead
// of queueing, so a flood costs its senders a quick refusal rather than making
// every later caller wait behind it.
class WorkQueue {
 public:
  // `threads` >= 1 workers; at most `max_queued` tasks wait (not counting the
  // ones running).
  WorkQueue(std::string name, int threads, size_t max_queued);
  // Runs what is queued, then joins the workers.
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // False (and `task` dropped) when the backlog is full or the queue stops.
  bool TryPost(std::function<void()> task);

  size_t queued() const;
  int threads() const { return static_cast<int>(workers_.size()); }

 private:
  void Work();

  const std::string name_;
  const size_t max_queued_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_WORK_QUEUE_H_
