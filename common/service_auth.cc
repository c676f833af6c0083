#include "common/service_auth.h"

#include <openssl/crypto.h>

namespace chat {

grpc::Status ServiceAuth::Check(const grpc::CallbackServerContext* ctx) const {
  if (token_.empty()) return grpc::Status::OK;
  const auto& metadata = ctx->client_metadata();
  auto it = metadata.find("authorization");
  const std::string expected = "Bearer " + token_;
  if (it != metadata.end() && it->second.size() == expected.size() &&
      CRYPTO_memcmp(it->second.data(), expected.data(), expected.size()) == 0) {
    return grpc::Status::OK;
  }
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      "a valid service credential (authorization: Bearer <token>) is required");
}

void ServiceAuth::Apply(grpc::ClientContext* ctx) const {
  if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
}

}  // namespace chat
