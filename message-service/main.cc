// message-service: stores chat messages and delivers them through the edges.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <thread>

#include "absl/flags/flag.h"
#include "common/env_flags.h"
#include "common/grpc_metrics.h"
#include "common/grpc_server.h"
#include "common/grpc_tls.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/signals.h"
#include "message-service/dispatcher.h"
#include "message-service/message_service.h"
#include "message-service/store_metrics.h"
#include "message-service/store_worker.h"
#include "message-service/user_lookup.h"
#include "spdlog/spdlog.h"
#include "store/open_store.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50052", "gRPC listen address (host:port; port 0 = any)");
ABSL_FLAG(std::string, connection_service, "127.0.0.1:50051",
          "connection-service address: host:port, a gRPC target (dns:///name:port), or several "
          "replicas as IP:port,IP:port (calls balanced round-robin)");
ABSL_FLAG(std::string, store, "sqlite:data/messages.db",
          "message store: sqlite:PATH (created if missing) or a postgresql:// URL");
ABSL_FLAG(bool, store_fsync, false,
          "SQLite: fsync every commit (survives power loss; the default survives process "
          "crashes)");
ABSL_FLAG(int, retention_days, 0, "delete stored messages older than this; 0 = keep forever");
ABSL_FLAG(int, max_store_queue, 100000,
          "operations waiting for the store; beyond it sends fail as unavailable");
ABSL_FLAG(int, replica_id, -1,
          "0..65535, part of every message id; -1 = random (unique enough for a few replicas)");
ABSL_FLAG(int, max_message_bytes, 131072, "largest chat message text accepted");
ABSL_FLAG(int, max_link_pending_mib, 64,
          "per edge: deliveries queued beyond this are refused (the edge is not keeping up)");
ABSL_FLAG(int, max_grpc_message_bytes, 16 << 20, "largest gRPC message accepted or sent");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9102",
          "Prometheus metrics at http://<this>/metrics (host:port; port 0 = any; empty = off)");
ABSL_FLAG(std::string, service_token, "",
          "internal credential: when set, edges must send 'authorization: Bearer <token>' on the "
          "internal API (EdgeGateway); also presented to connection-service");
ABSL_FLAG(std::string, api_token, "",
          "public credential: when set, backends must send 'authorization: Bearer <token>' on the "
          "public API (MessageService); empty = the public API takes --service_token");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain (leaf first); with --tls_key the gRPC port serves only TLS");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA certificates: with --tls_cert, clients must present a certificate signed by "
          "one of them (mutual TLS)");
ABSL_FLAG(std::string, grpc_ca, "",
          "PEM CA certificates that connection-service's gRPC certificate must chain to; set: "
          "that connection uses TLS");
ABSL_FLAG(std::string, grpc_cert, "",
          "PEM client certificate chain for connection-service (with --grpc_key), for a "
          "connection-service started with --tls_client_ca");
ABSL_FLAG(std::string, grpc_key, "", "PEM private key for --grpc_cert");
ABSL_FLAG(std::string, grpc_server_name, "",
          "name checked in connection-service's certificate instead of the host of its address");

ABSL_FLAG(chat::LogFormat, log_format, chat::LogFormat::kText,
          "stderr log lines: text, or json (one object per line: ts, level, service, msg)");

int main(int argc, char** argv) {
  chat::BlockTerminationSignals();
  chat::ParseFlagsWithEnv(argc, argv,
                          "message-service: stores chat messages and routes them to the edges.\n"
                          "Usage: message-service [--listen=127.0.0.1:50052] [flags]");
  chat::InitProcess("message-service", absl::GetFlag(FLAGS_log_format));
  int replica = absl::GetFlag(FLAGS_replica_id);
  if (replica < -1 || replica > 65535) {
    std::fprintf(stderr, "--replica_id must be -1 or 0..65535\n");
    return 2;
  }
  if (replica < 0) replica = static_cast<int>(std::random_device{}() & 0xFFFF);
  if (absl::GetFlag(FLAGS_retention_days) < 0 || absl::GetFlag(FLAGS_max_store_queue) < 1) {
    std::fprintf(stderr, "--retention_days must be >= 0 and --max_store_queue >= 1\n");
    return 2;
  }

  chat::store::StoreOptions store_options;
  store_options.fsync = absl::GetFlag(FLAGS_store_fsync);
  auto store = chat::store::OpenMessageStore(absl::GetFlag(FLAGS_store), store_options);
  // A replica starting next to live ones may lose a lock conflict on the
  // schema check (PostgreSQL answers a deadlock by failing one side): a
  // transient failure is tried again for a while.
  for (int attempt = 1;
       !store.ok() && store.status().code() == absl::StatusCode::kUnavailable && attempt < 10;
       ++attempt) {
    spdlog::warn("--store: {}; trying again", store.status().ToString());
    std::this_thread::sleep_for(std::chrono::milliseconds(250 * std::min(attempt, 4)));
    store = chat::store::OpenMessageStore(absl::GetFlag(FLAGS_store), store_options);
  }
  if (!store.ok()) {
    spdlog::critical("--store={}: {}", absl::GetFlag(FLAGS_store), store.status().ToString());
    return 1;
  }
  const std::string epoch = (*store)->Epoch();

  const chat::ServiceAuth auth(absl::GetFlag(FLAGS_service_token), absl::GetFlag(FLAGS_api_token));
  chat::Metrics metrics;
  chat::GrpcMetrics grpc_metrics(metrics);
  chat::message::StoreMetrics store_metrics(metrics.registry());
  auto grpc_security = chat::LoadChannelSecurity(
      {absl::GetFlag(FLAGS_grpc_ca), absl::GetFlag(FLAGS_grpc_cert), absl::GetFlag(FLAGS_grpc_key),
       absl::GetFlag(FLAGS_grpc_server_name)});
  if (!grpc_security.ok()) {
    spdlog::critical("gRPC client TLS (--grpc_ca, --grpc_cert, --grpc_key): {}",
                     std::string(grpc_security.status().message()));
    return 2;
  }
  if (absl::StatusOr<std::string> target =
          chat::ChannelTarget(absl::GetFlag(FLAGS_connection_service));
      !target.ok()) {
    spdlog::critical("--connection_service: {}", std::string(target.status().message()));
    return 2;
  }
  auto channel =
      chat::MakeChannel(absl::GetFlag(FLAGS_connection_service), &grpc_metrics, *grpc_security);
  auto stub = chat::v1::EdgeRegistry::NewStub(channel);
  chat::message::GrpcUserLookup lookup(stub.get(), auth);
  chat::message::IdGenerator ids(static_cast<uint16_t>(replica));
  chat::message::Dispatcher dispatcher(chat::SystemClock::Get(), epoch);

  chat::message::StoreWorker::Options worker_options;
  worker_options.max_queue = static_cast<size_t>(absl::GetFlag(FLAGS_max_store_queue));
  worker_options.retention_ms = int64_t{absl::GetFlag(FLAGS_retention_days)} * 24 * 3600 * 1000;
  auto worker = std::make_unique<chat::message::StoreWorker>(std::move(*store), worker_options,
                                                             &lookup, &store_metrics);
  worker->SetMarkHooks(
      {[&dispatcher](chat::store::MessageStore* s) { return dispatcher.TakeMovedMarks(s); },
       [&dispatcher](const absl::StatusOr<std::vector<chat::store::MarkChange>>& changes) {
         dispatcher.MarksSaved(changes);
       }});

  chat::message::MessageServiceOptions service_options;
  service_options.max_link_pending_bytes =
      static_cast<size_t>(absl::GetFlag(FLAGS_max_link_pending_mib)) << 20;
  service_options.max_message_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_message_bytes));
  service_options.auth = auth;
  chat::message::MessageServiceImpl service(worker.get(), &dispatcher, &ids,
                                            chat::SystemClock::Get(), service_options, &lookup);
  chat::message::MessageServiceApi api(&service);
  chat::message::EdgeGatewayImpl gateway(&service);

  // Before the server: once it runs, every way out is the shutdown below.
  if (absl::Status s = chat::ServeMetricsIfAsked(metrics, absl::GetFlag(FLAGS_metrics_listen));
      !s.ok()) {
    spdlog::critical("{}", s.ToString());
    return 1;
  }
  chat::GrpcServerOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_grpc_message_bytes);
  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  options.metrics = &grpc_metrics;
  // Every call of this server completes on one queue, driven by the store
  // worker's thread (health included): no other thread polls its sockets.
  options.completion_queue = true;
  options.health_on_queue = true;
  options.health_services = {chat::v1::MessageService::service_full_name(),
                             chat::v1::EdgeGateway::service_full_name()};
  auto server = chat::StartGrpcServer(options, {&api, &gateway});
  if (!server.ok()) {
    spdlog::critical("{}", server.status().ToString());
    return 1;
  }
  grpc::ServerCompletionQueue* queue = server->completion_queue.get();
  lookup.UseQueue(queue);
  worker->Start(std::move(server->completion_queue));
  api.Serve(queue);
  gateway.Serve(queue);
  const std::string host = options.listen.substr(0, options.listen.rfind(':'));
  spdlog::info("message-service replica {} on {}:{}, store {} (epoch {}), connection-service at {}",
               replica, host, server->port, absl::GetFlag(FLAGS_store), epoch,
               absl::GetFlag(FLAGS_connection_service));
  std::printf("listening on %s:%d\n", host.c_str(), server->port);
  std::fflush(stdout);

  const int sig = chat::WaitForTerminationSignal();
  spdlog::info("signal {}: shutting down", sig);
  // The worker's thread keeps handling the links' events while the server
  // ends their calls; then it finishes what was queued and shuts the queue
  // down and drains it, which must happen before the server is destroyed
  // (the server's pending requests complete there and refer to it).
  server->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  worker.reset();
  stub.reset();
  chat::ReleaseChannel(std::move(channel), std::chrono::seconds(2));
  return 0;
}
