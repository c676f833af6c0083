#include "message-service/user_lookup.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/cq_tag.h"
#include "grpcpp/support/async_unary_call.h"

namespace chat::message {
namespace {

// One unary call to connection-service; deletes itself once answered.
template <typename Response>
struct Call final : CqTag {
  grpc::ClientContext context;
  Response response;
  grpc::Status status;
  std::unique_ptr<grpc::ClientAsyncResponseReader<Response>> reader;
  std::function<void(const grpc::Status&, const Response&)> done;

  void Done(bool /*ok: always true for Finish*/) override {
    done(status, response);
    delete this;
  }
};

absl::Status Unavailable(const grpc::Status& status) {
  return absl::UnavailableError(
      absl::StrCat("connection service unavailable: ", status.error_message()));
}

}  // namespace

void GrpcUserLookup::Exists(const std::string& user, std::function<void(absl::Status)> done) {
  if (cq_ == nullptr) {
    done(absl::FailedPreconditionError("user lookup has no completion queue"));
    return;
  }
  auto* call = new Call<chat::v1::User>();
  call->context.set_deadline(std::chrono::system_clock::now() + deadline_);
  auth_.Apply(&call->context);
  call->done = [user, done = std::move(done)](const grpc::Status& status, const chat::v1::User&) {
    if (status.ok()) {
      done(absl::OkStatus());
    } else if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
      done(absl::NotFoundError(absl::StrCat("no user named '", user, "'")));
    } else {
      done(Unavailable(status));
    }
  };
  chat::v1::GetUserRequest request;
  request.set_name(user);
  call->reader = stub_->AsyncLookupUser(&call->context, request, cq_);
  call->reader->Finish(&call->response, &call->status, static_cast<CqTag*>(call));
}

void GrpcUserLookup::Forget(const std::string& user, int code, const std::string& reason,
                            std::function<void(absl::StatusOr<ForgetResult>)> done) {
  if (cq_ == nullptr) {
    done(absl::FailedPreconditionError("user lookup has no completion queue"));
    return;
  }
  auto* call = new Call<chat::v1::ForgetUserResponse>();
  call->context.set_deadline(std::chrono::system_clock::now() + deadline_);
  auth_.Apply(&call->context);
  call->done = [done = std::move(done)](const grpc::Status& status,
                                        const chat::v1::ForgetUserResponse& response) {
    if (status.ok()) {
      done(ForgetResult{response.existed(), response.disconnected()});
    } else if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
      done(ForgetResult{});  // nothing to forget there
    } else {
      done(Unavailable(status));
    }
  };
  chat::v1::ForgetUserRequest request;
  request.set_name(user);
  request.set_code(code);
  request.set_reason(reason);
  call->reader = stub_->AsyncForgetUser(&call->context, request, cq_);
  call->reader->Finish(&call->response, &call->status, static_cast<CqTag*>(call));
}

}  // namespace chat::message
