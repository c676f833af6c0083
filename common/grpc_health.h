#ifndef CHAT_COMMON_GRPC_HEALTH_H_
#define CHAT_COMMON_GRPC_HEALTH_H_

#include <string>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/completion_queue.h"

namespace chat {

// grpc.health.v1.Health on a completion queue the caller drives (CqTag), for
// a server with no thread of gRPC's own: gRPC's default health service uses
// the callback API, whose threads would poll the server's sockets. Every
// service of the server is SERVING for as long as it runs: Check answers
// SERVING for "" and each of them, NOT_FOUND otherwise; Watch sends the
// status (SERVICE_UNKNOWN for other names) and stays open until the caller
// leaves or the server shuts down.
class AsyncHealthService final : public grpc::health::v1::Health::AsyncService {
 public:
  // Requests the first calls on `cq`; `services`: the names that are SERVING.
  void Serve(std::vector<std::string> services, grpc::ServerCompletionQueue* cq);

  bool Knows(const std::string& service) const;

 private:
  std::vector<std::string> services_;
};

}  // namespace chat

#endif  // CHAT_COMMON_GRPC_HEALTH_H_
