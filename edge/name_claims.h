#ifndef CHAT_EDGE_NAME_CLAIMS_H_
#define CHAT_EDGE_NAME_CLAIMS_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "chat/v1/chat.grpc.pb.h"
#include "common/service_auth.h"
#include "edge/backends.h"
#include "grpcpp/channel.h"

namespace chat::edge {

// ConnectionService.ClaimName over gRPC.
class GrpcNameClaims final : public NameClaims {
 public:
  GrpcNameClaims(std::shared_ptr<grpc::Channel> channel, ServiceAuth auth,
                 std::chrono::milliseconds deadline = std::chrono::seconds(5));
  void Claim(const std::string& name, const std::string& subject,
             std::function<void(absl::StatusOr<bool>)> done) override;

 private:
  std::unique_ptr<chat::v1::EdgeRegistry::Stub> stub_;
  const ServiceAuth auth_;
  const std::chrono::milliseconds deadline_;
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_NAME_CLAIMS_H_
