#ifndef CHAT_EDGE_NAME_CLAIMS_H_
#define CHAT_EDGE_NAME_CLAIMS_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "chat/v1/chat.grpc.pb.h"
#include "grpcpp/channel.h"
#include "common/service_auth.h"

namespace chat::edge {

// Who owns a user name: the first identity-provider subject bound to it.
// A display name is not an identity (users may edit it), so before a
// connection speaks as a name taken from a profile, the name is claimed.
class NameClaims {
 public:
  virtual ~NameClaims() = default;
  // done(true): `subject` owns `name` (now or already); done(false): another
  // subject does. An error: the owner could not be asked. `done` may run on
  // any thread.
  virtual void Claim(const std::string& name, const std::string& subject,
                     std::function<void(absl::StatusOr<bool>)> done) = 0;
};

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
