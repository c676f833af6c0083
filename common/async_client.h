#ifndef CHAT_COMMON_ASYNC_CLIENT_H_
#define CHAT_COMMON_ASYNC_CLIENT_H_

#include <functional>
#include <memory>
#include <utility>

#include "common/cq_tag.h"
#include "common/grpc_loop.h"
#include "grpcpp/support/async_unary_call.h"
#include "grpcpp/support/status.h"

namespace chat {

// A unary call on the process's GrpcLoop, in the shape of the callback API's
// stub->async()->Method(ctx, request, response, done): `prepare` is the
// generated PrepareAsyncMethod bound to the stub, context and request, e.g.
//   [&](grpc::CompletionQueue* cq) { return stub->PrepareAsyncGetUser(&ctx, request, cq); }
// `done` runs on the loop's thread with the call's status once `response` is
// filled; the context, request and response must live until then (keep them
// in what `done` holds).
template <typename Response, typename Prepare>
void CallOnLoop(Prepare prepare, Response* response, std::function<void(grpc::Status)> done) {
  struct Pending final : CqTag {
    std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> reader;
    grpc::Status status;
    std::function<void(grpc::Status)> done;
    void Done(bool /*ok: always for Finish*/) override {
      done(status);
      delete this;
    }
  };
  auto* pending = new Pending();
  pending->done = std::move(done);
  pending->reader = prepare(GrpcLoop::Default().cq());
  pending->reader->StartCall();
  pending->reader->Finish(response, &pending->status, static_cast<CqTag*>(pending));
}

}  // namespace chat

#endif  // CHAT_COMMON_ASYNC_CLIENT_H_
