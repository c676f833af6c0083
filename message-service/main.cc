// message-service: turns a send into deliveries on the edges' links.
#include <cstdio>
#include <memory>
#include <random>

#include "absl/flags/flag.h"
#include "common/env_flags.h"
#include "common/logging.h"
#include "common/grpc_server.h"
#include "common/signals.h"
#include "message-service/edge_links.h"
#include "message-service/message_service.h"
#include "message-service/routes_feed.h"
#include "message-service/router.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50052", "gRPC listen address (host:port; port 0 = any)");
ABSL_FLAG(std::string, connection_service, "127.0.0.1:50051", "connection-service address");
ABSL_FLAG(int, replica_id, -1,
          "0..65535, part of every message id; -1 = random (unique enough for a few replicas)");
ABSL_FLAG(int, max_message_bytes, 131072, "largest chat message text accepted");
ABSL_FLAG(int, max_link_pending_mib, 64,
          "per edge: deliveries queued beyond this are refused (the edge is not keeping up)");
ABSL_FLAG(int, max_grpc_message_bytes, 16 << 20, "largest gRPC message accepted or sent");
ABSL_FLAG(std::string, service_token, "",
          "when set, every caller must send 'authorization: Bearer <token>' metadata; also "
          "presented to connection-service");

int main(int argc, char** argv) {
  chat::BlockTerminationSignals();
  chat::InitProcess("message-service");
  chat::ParseFlagsWithEnv(argc, argv,
                          "message-service: routes chat messages to the edges.\nUsage: "
                          "message-service [--listen=127.0.0.1:50052] [flags]");
  int replica = absl::GetFlag(FLAGS_replica_id);
  if (replica < -1 || replica > 65535) {
    std::fprintf(stderr, "--replica_id must be -1 or 0..65535\n");
    return 2;
  }
  if (replica < 0) replica = static_cast<int>(std::random_device{}() & 0xFFFF);

  auto channel = chat::MakeChannel(absl::GetFlag(FLAGS_connection_service));
  auto stub = chat::v1::ConnectionService::NewStub(channel);
  chat::message::RoutingTable table;
  chat::message::IdGenerator ids(static_cast<uint16_t>(replica));
  chat::message::Router router(&table, &ids, chat::SystemClock::Get(),
                               static_cast<size_t>(absl::GetFlag(FLAGS_max_message_bytes)));
  chat::message::EdgeLinks links;
  chat::message::MessageServiceOptions service_options;
  service_options.max_link_pending_bytes =
      static_cast<size_t>(absl::GetFlag(FLAGS_max_link_pending_mib)) << 20;
  service_options.auth = chat::ServiceAuth(absl::GetFlag(FLAGS_service_token));
  chat::message::MessageServiceImpl service(&router, &links, service_options);

  chat::GrpcServerOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_grpc_message_bytes);
  auto server = chat::StartGrpcServer(options, {&service});
  if (!server.ok()) {
    spdlog::critical("{}", server.status().ToString());
    return 1;
  }
  auto feed = std::make_unique<chat::message::RoutesFeed>(
      stub.get(), &table, chat::ServiceAuth(absl::GetFlag(FLAGS_service_token)));
  const std::string host = options.listen.substr(0, options.listen.rfind(':'));
  spdlog::info("message-service replica {} on {}:{}, connection-service at {}", replica, host,
               server->port, absl::GetFlag(FLAGS_connection_service));
  std::printf("listening on %s:%d\n", host.c_str(), server->port);
  std::fflush(stdout);

  const int sig = chat::WaitForTerminationSignal();
  spdlog::info("signal {}: shutting down", sig);
  server->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  feed.reset();
  stub.reset();
  chat::ReleaseChannel(std::move(channel), std::chrono::seconds(2));
  return 0;
}
