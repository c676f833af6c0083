#ifndef CHAT_COMMON_GRPC_SERVER_H_
#define CHAT_COMMON_GRPC_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/server.h"
#include "grpcpp/impl/codegen/service_type.h"

namespace chat {

struct GrpcServerOptions {
  std::string listen = "127.0.0.1:0";
  int max_message_bytes = 4 << 20;
  int max_concurrent_streams = 1000;
};

struct StartedServer {
  std::unique_ptr<grpc::Server> server;
  int port = 0;
};

// Starts a server with the given services plus grpc.health.v1.Health (every
// service SERVING) and server reflection, with message-size and stream limits.
absl::StatusOr<StartedServer> StartGrpcServer(const GrpcServerOptions& options,
                                              const std::vector<grpc::Service*>& services);

// Same limits and keepalive settings for every client channel we open.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target);

}  // namespace chat

#endif  // CHAT_COMMON_GRPC_SERVER_H_
