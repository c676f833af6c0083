#include "common/grpc_loop.h"

#include <pthread.h>

#include "common/cq_tag.h"

namespace chat {

GrpcLoop& GrpcLoop::Default() {
  // Leaked on purpose: the thread blocks in the queue until the process
  // exits, as gRPC's own threads do.
  static GrpcLoop* loop = new GrpcLoop();
  return *loop;
}

GrpcLoop::GrpcLoop() : thread_([this] { Run(); }) {}

void GrpcLoop::Run() {
  pthread_setname_np(pthread_self(), "grpc-loop");
  void* tag = nullptr;
  bool ok = false;
  while (cq_.Next(&tag, &ok)) static_cast<CqTag*>(tag)->Done(ok);
}

}  // namespace chat
