#ifndef CHAT_COMMON_ASYNC_UNARY_H_
#define CHAT_COMMON_ASYNC_UNARY_H_

#include <functional>
#include <utility>

#include "common/cq_tag.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/async_unary_call.h"
#include "grpcpp/support/status.h"

namespace chat {

// How a unary call is answered: Finish exactly once, from any thread. The
// request and response stay valid until then.
class UnaryReply {
 public:
  virtual void Finish(const grpc::Status& status) = 0;

 protected:
  ~UnaryReply() = default;
};

// One method of an async service, served on a completion queue whose thread
// calls CqTag::Done: one request is always pending; when a call arrives the
// next one is requested and `handle` runs on that thread. The call deletes
// itself once answered, or when the server shuts down before a call came.
template <typename Request, typename Response>
class AsyncUnaryCall final : public CqTag, public UnaryReply {
 public:
  // The generated AsyncService::RequestX, bound to its service.
  using RequestFn =
      std::function<void(grpc::ServerContext*, Request*, grpc::ServerAsyncResponseWriter<Response>*,
                         grpc::ServerCompletionQueue*, void* tag)>;
  using HandleFn = std::function<void(const grpc::ServerContextBase* ctx, const Request* request,
                                      Response* response, UnaryReply* reply)>;

  // Starts serving the method: the first request is pending on return.
  static void Serve(RequestFn request, HandleFn handle, grpc::ServerCompletionQueue* cq) {
    new AsyncUnaryCall(std::move(request), std::move(handle), cq);
  }

  void Done(bool ok) override {
    if (answered_ || !ok) {  // the answer went out, or the server is shutting down
      delete this;
      return;
    }
    new AsyncUnaryCall(request_fn_, handle_, cq_);
    handle_(&ctx_, &request_, &response_, this);
  }

  void Finish(const grpc::Status& status) override {
    answered_ = true;
    writer_.Finish(response_, status, static_cast<CqTag*>(this));
  }

 private:
  AsyncUnaryCall(RequestFn request, HandleFn handle, grpc::ServerCompletionQueue* cq)
      : request_fn_(std::move(request)), handle_(std::move(handle)), cq_(cq), writer_(&ctx_) {
    request_fn_(&ctx_, &request_, &writer_, cq_, static_cast<CqTag*>(this));
  }

  const RequestFn request_fn_;
  const HandleFn handle_;
  grpc::ServerCompletionQueue* const cq_;
  grpc::ServerContext ctx_;
  Request request_;
  Response response_;
  grpc::ServerAsyncResponseWriter<Response> writer_;
  bool answered_ = false;
};

}  // namespace chat

#endif  // CHAT_COMMON_ASYNC_UNARY_H_
