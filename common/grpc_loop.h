#ifndef CHAT_COMMON_GRPC_LOOP_H_
#define CHAT_COMMON_GRPC_LOOP_H_

#include <thread>

#include "grpcpp/completion_queue.h"

namespace chat {

// The one thread of a process that drives gRPC for its clients: calls made
// with the async API on cq(), and alarms set on it, complete here, and each
// tag is a CqTag whose Done runs on this thread. With nothing on gRPC's
// callback API, this thread is also the only one that polls the process's
// gRPC sockets: gRPC's callback API brings two threads of its own that poll
// them and hand every event over to each other (measured on the edge: about
// seven voluntary context switches per chat message at 1,000 messages/s).
//
// Started on first use and never stopped, like gRPC's own threads: what runs
// on it must never wait for another event of it (nothing on this thread may
// block on a later completion).
class GrpcLoop {
 public:
  static GrpcLoop& Default();

  grpc::CompletionQueue* cq() { return &cq_; }
  bool OnLoopThread() const { return std::this_thread::get_id() == thread_.get_id(); }

  GrpcLoop(const GrpcLoop&) = delete;
  GrpcLoop& operator=(const GrpcLoop&) = delete;

 private:
  GrpcLoop();
  void Run();

  grpc::CompletionQueue cq_;
  std::thread thread_;
};

}  // namespace chat

#endif  // CHAT_COMMON_GRPC_LOOP_H_
