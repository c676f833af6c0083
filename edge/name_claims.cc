#include "edge/name_claims.h"

#include "common/async_client.h"
#include "common/grpc_status.h"

namespace chat::edge {

GrpcNameClaims::GrpcNameClaims(std::shared_ptr<grpc::Channel> channel, ServiceAuth auth,
                               std::chrono::milliseconds deadline)
    : stub_(chat::v1::EdgeRegistry::NewStub(std::move(channel))),
      auth_(std::move(auth)),
      deadline_(deadline) {}

void GrpcNameClaims::Claim(const std::string& name, const std::string& subject,
                           std::function<void(absl::StatusOr<bool>)> done) {
  struct Call {
    grpc::ClientContext ctx;
    chat::v1::ClaimNameRequest request;
    chat::v1::ClaimNameResponse response;
  };
  auto call = std::make_shared<Call>();
  call->ctx.set_deadline(std::chrono::system_clock::now() + deadline_);
  auth_.Apply(&call->ctx);
  call->request.set_name(name);
  call->request.set_subject(subject);
  CallOnLoop(
      [&](grpc::CompletionQueue* cq) {
        return stub_->PrepareAsyncClaimName(&call->ctx, call->request, cq);
      },
      &call->response,
      [call, done = std::move(done)](grpc::Status status) {
        if (!status.ok()) {
          done(FromGrpcStatus(status));
          return;
        }
        done(call->response.granted());
      });
}

}  // namespace chat::edge
