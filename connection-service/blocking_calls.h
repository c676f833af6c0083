#ifndef CHAT_CONNECTION_SERVICE_BLOCKING_CALLS_H_
#define CHAT_CONNECTION_SERVICE_BLOCKING_CALLS_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace chat::connection {

// A few threads of its own for RPC bodies that may block for a while (a
// round trip to Redis, waiting for the shared feed): run on gRPC's
// callback threads, which are few, they would hold up every other call of
// the server, reads from the mirror included. Bounded queue.
class BlockingCalls {
 public:
  BlockingCalls(size_t threads, size_t max_queued);
  // Runs what is still queued, then joins the threads.
  ~BlockingCalls();
  BlockingCalls(const BlockingCalls&) = delete;
  BlockingCalls& operator=(const BlockingCalls&) = delete;

  // False (and `call` dropped) when max_queued calls are waiting already.
  bool Run(std::function<void()> call);

 private:
  void Work();

  const size_t max_queued_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace chat::connection

#endif  // CHAT_CONNECTION_SERVICE_BLOCKING_CALLS_H_
