#ifndef CHAT_COMMON_GRPC_SERVER_H_
#define CHAT_COMMON_GRPC_SERVER_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/grpc_health.h"
#include "common/grpc_tls.h"
#include "grpcpp/completion_queue.h"
#include "grpcpp/impl/codegen/service_type.h"
#include "grpcpp/server.h"

namespace chat {

class GrpcMetrics;

struct GrpcServerOptions {
  std::string listen = "127.0.0.1:0";
  int max_message_bytes = 4 << 20;
  int max_concurrent_streams = 1000;
  // Set: every call is counted and timed (grpc_server_* metrics).
  const GrpcMetrics* metrics = nullptr;
  // Cert and key set: the port serves only TLS; client CA set too: only
  // clients with a certificate it signed (mutual TLS).
  GrpcServerTls tls;
  // True: the server gets one completion queue for its async services
  // (StartedServer::completion_queue), which the caller must drive, and shut
  // down after the server.
  bool completion_queue = false;
  // With completion_queue: grpc.health.v1 is served on that queue too
  // (AsyncHealthService, SERVING for "" and these names) instead of by
  // gRPC's default health service, whose callback API brings threads that
  // poll the server's sockets. For a server whose one thread drives the queue.
  bool health_on_queue = false;
  std::vector<std::string> health_services;
};

struct StartedServer {
  // Set with GrpcServerOptions::health_on_queue: call its Serve with the
  // queue before driving it. First: it must outlive the server.
  std::unique_ptr<AsyncHealthService> health;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::unique_ptr<grpc::ServerCompletionQueue> completion_queue;
};

// Starts a server with the given services plus grpc.health.v1.Health (every
// service SERVING) and server reflection (grpc.reflection.v1alpha and v1),
// with message-size and stream limits. Unreadable or invalid TLS files are an
// InvalidArgument error naming the file.
absl::StatusOr<StartedServer> StartGrpcServer(const GrpcServerOptions& options,
                                              const std::vector<grpc::Service*>& services);

// A service address flag as a gRPC target: "host:port" and gRPC URIs
// ("dns:///name:port", "ipv4:...", "unix:...") are kept as they are; a
// comma-separated list of IP literals "10.0.0.1:50051,10.0.0.2:50051" becomes
// gRPC's static "ipv4:"/"ipv6:" target, which MakeChannel balances
// round-robin. A list with host names is INVALID_ARGUMENT (use dns:/// with a
// name that resolves to every replica).
absl::StatusOr<std::string> ChannelTarget(const std::string& flag);

// Same limits and keepalive settings for every client channel we open, and
// the round_robin load-balancing policy (every address a target resolves to
// takes calls in turn; one address: no difference);
// `metrics` set: every call on it is counted and timed (grpc_client_*);
// `security`: TLS credentials (LoadChannelSecurity), plaintext by default.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target,
                                           const GrpcMetrics* metrics = nullptr,
                                           const ChannelSecurity& security = {});

// Lets go of a channel on the calling thread once nothing else holds it. A
// finished call's ClientContext keeps a reference that gRPC drops on its own
// callback thread; if that is the last one, gRPC 1.51 shuts the shared
// callback completion queue down from inside one of its threads, which joins
// itself and frees the queue twice (grpc/grpc#32584). So: wait, bounded, for
// the other holders to finish; after `timeout` the channel is deliberately
// leaked instead (the process is exiting anyway).
void ReleaseChannel(std::shared_ptr<grpc::Channel> channel, std::chrono::milliseconds timeout);

}  // namespace chat

#endif  // CHAT_COMMON_GRPC_SERVER_H_
