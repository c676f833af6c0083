#ifndef CHAT_COMMON_GRPC_STATUS_H_
#define CHAT_COMMON_GRPC_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/support/status.h"

namespace chat {

// The error model of our gRPC APIs (written down in chat.proto): canonical
// codes map 1:1 between absl and gRPC; every error leaving a server carries a
// google.rpc.Status in the details trailer with a google.rpc.ErrorInfo (domain
// "chat.v1", a stable `reason`, metadata "retryable") and, when a retry can
// help, a google.rpc.RetryInfo. Messages are cut to kMaxErrorMessageBytes so
// that no input is ever echoed unbounded.
inline constexpr size_t kMaxErrorMessageBytes = 256;

// Attaches the ErrorInfo reason ("USER_NOT_FOUND", ...) to `status`; without
// one, the reason is the code's name ("INVALID_ARGUMENT", ...).
absl::Status WithReason(absl::Status status, absl::string_view reason);
// The reason WithReason attached, or the code's name.
std::string ReasonOf(const absl::Status& status);
// UNAVAILABLE, ABORTED, RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED.
bool IsRetryable(absl::StatusCode code);

grpc::Status ToGrpcStatus(const absl::Status& status);

// The client side of ToGrpcStatus: the code, the message and, when the
// details carry our ErrorInfo, its reason (ReasonOf reads it back).
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace chat

#endif  // CHAT_COMMON_GRPC_STATUS_H_
