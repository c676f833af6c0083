#include "common/grpc_health.h"

#include <algorithm>
#include <utility>

#include "common/async_unary.h"
#include "common/cq_tag.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/async_stream.h"

namespace chat {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// One Watch call: the status once, then open until the caller cancels or the
// server shuts down (both end the call: the done notification fires).
class WatchCall final {
 public:
  WatchCall(AsyncHealthService* service, grpc::ServerCompletionQueue* cq)
      : service_(service), cq_(cq), writer_(&ctx_) {
    ctx_.AsyncNotifyWhenDone(&ended_);
    service_->RequestWatch(&ctx_, &request_, &writer_, cq_, cq_, &arrived_);
  }

 private:
  void OnArrived(bool ok) {
    arrived_done_ = true;
    if (!ok) {  // shutting down before a call came: `ended_` never fires
      delete this;
      return;
    }
    new WatchCall(service_, cq_);
    response_.set_status(service_->Knows(request_.service())
                             ? HealthCheckResponse::SERVING
                             : HealthCheckResponse::SERVICE_UNKNOWN);
    writing_ = true;
    writer_.Write(response_, &written_);
  }
  void OnWritten(bool /*ok*/) {
    writing_ = false;
    MaybeDelete();
  }
  void OnEnded(bool /*ok*/) {
    ended_seen_ = true;
    MaybeDelete();
  }
  void MaybeDelete() {
    if (ended_seen_ && !writing_) delete this;
  }

  AsyncHealthService* const service_;
  grpc::ServerCompletionQueue* const cq_;
  grpc::ServerContext ctx_;
  HealthCheckRequest request_;
  HealthCheckResponse response_;
  grpc::ServerAsyncWriter<HealthCheckResponse> writer_;
  MemberTag<WatchCall> arrived_{this, &WatchCall::OnArrived};
  MemberTag<WatchCall> written_{this, &WatchCall::OnWritten};
  MemberTag<WatchCall> ended_{this, &WatchCall::OnEnded};
  bool arrived_done_ = false;
  bool writing_ = false;
  bool ended_seen_ = false;
};

}  // namespace

bool AsyncHealthService::Knows(const std::string& service) const {
  return service.empty() ||
         std::find(services_.begin(), services_.end(), service) != services_.end();
}

void AsyncHealthService::Serve(std::vector<std::string> services, grpc::ServerCompletionQueue* cq) {
  services_ = std::move(services);
  AsyncUnaryCall<HealthCheckRequest, HealthCheckResponse>::Serve(
      [this](grpc::ServerContext* ctx, HealthCheckRequest* request,
             grpc::ServerAsyncResponseWriter<HealthCheckResponse>* writer,
             grpc::ServerCompletionQueue* queue,
             void* tag) { RequestCheck(ctx, request, writer, queue, queue, tag); },
      [this](const grpc::ServerContextBase*, const HealthCheckRequest* request,
             HealthCheckResponse* response, UnaryReply* reply) {
        if (!Knows(request->service())) {
          reply->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service"));
          return;
        }
        response->set_status(HealthCheckResponse::SERVING);
        reply->Finish(grpc::Status::OK);
      },
      cq);
  new WatchCall(this, cq);
}

}  // namespace chat
