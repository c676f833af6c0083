#include "common/service_auth.h"

#include <openssl/crypto.h>

#include "absl/status/status.h"
#include "common/grpc_status.h"

namespace chat {

grpc::Status ServiceAuth::Matches(const grpc::ServerContextBase* ctx, const std::string& token) {
  if (token.empty()) return grpc::Status::OK;
  const auto& metadata = ctx->client_metadata();
  auto it = metadata.find("authorization");
  const std::string expected = "Bearer " + token;
  if (it != metadata.end() && it->second.size() == expected.size() &&
      CRYPTO_memcmp(it->second.data(), expected.data(), expected.size()) == 0) {
    return grpc::Status::OK;
  }
  return ToGrpcStatus(
      WithReason(absl::UnauthenticatedError(
                     "a valid credential (authorization: Bearer <token>) for this API is required"),
                 "BAD_CREDENTIAL"));
}

grpc::Status ServiceAuth::Check(const grpc::ServerContextBase* ctx) const {
  return Matches(ctx, internal_);
}

grpc::Status ServiceAuth::CheckPublic(const grpc::ServerContextBase* ctx) const {
  return Matches(ctx, api_.empty() ? internal_ : api_);
}

void ServiceAuth::Apply(grpc::ClientContext* ctx) const {
  if (!internal_.empty()) ctx->AddMetadata("authorization", "Bearer " + internal_);
}

}  // namespace chat
