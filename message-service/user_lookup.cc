#include "message-service/user_lookup.h"

#include "absl/strings/str_cat.h"

namespace chat::message {

void GrpcUserLookup::Exists(const std::string& user, std::function<void(absl::Status)> done) {
  struct Call {
    grpc::ClientContext context;
    chat::v1::GetUserRequest request;
    chat::v1::User response;
  };
  auto call = std::make_shared<Call>();
  call->context.set_deadline(std::chrono::system_clock::now() + deadline_);
  auth_.Apply(&call->context);
  call->request.set_name(user);
  stub_->async()->LookupUser(
      &call->context, &call->request, &call->response,
      [call, user, done = std::move(done)](grpc::Status status) {
        if (status.ok()) {
          done(absl::OkStatus());
        } else if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
          done(absl::NotFoundError(absl::StrCat("no user named '", user, "'")));
        } else {
          done(absl::UnavailableError(
              absl::StrCat("connection service unavailable: ", status.error_message())));
        }
      });
}

void GrpcUserLookup::Forget(const std::string& user, int code, const std::string& reason,
                            std::function<void(absl::StatusOr<ForgetResult>)> done) {
  struct Call {
    grpc::ClientContext context;
    chat::v1::ForgetUserRequest request;
    chat::v1::ForgetUserResponse response;
  };
  auto call = std::make_shared<Call>();
  call->context.set_deadline(std::chrono::system_clock::now() + deadline_);
  auth_.Apply(&call->context);
  call->request.set_name(user);
  call->request.set_code(code);
  call->request.set_reason(reason);
  stub_->async()->ForgetUser(
      &call->context, &call->request, &call->response,
      [call, done = std::move(done)](grpc::Status status) {
        if (status.ok()) {
          done(ForgetResult{call->response.existed(), call->response.disconnected()});
        } else if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
          done(ForgetResult{});  // nothing to forget there
        } else {
          done(absl::UnavailableError(
              absl::StrCat("connection service unavailable: ", status.error_message())));
        }
      });
}

}  // namespace chat::message
