// connection-service: the registry of users, live connections and presence.
#include <algorithm>
#include <cstdio>
#include <random>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "common/env_flags.h"
#include "common/grpc_metrics.h"
#include "common/grpc_server.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/signals.h"
#include "connection-service/connection_service.h"
#include "connection-service/lease_reaper.h"
#include "connection-service/memory_store.h"
#include "connection-service/redis_registry.h"
#include "connection-service/registry_url.h"
#include "spdlog/spdlog.h"
#include "store/open_store.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051", "gRPC listen address (host:port; port 0 = any)");
ABSL_FLAG(int64_t, lease_timeout_ms, 10000,
          "an edge that has not heartbeated for this long loses all its connections");
ABSL_FLAG(int, max_message_bytes, 16 << 20, "largest gRPC message accepted or sent");
ABSL_FLAG(int, max_concurrent_streams, 1000, "HTTP/2 streams per client connection");
ABSL_FLAG(std::string, registry, "memory",
          "where live connections, edge leases, bans and the change feed are kept: memory "
          "(this process; one replica), redis://HOST:PORT[/DB], or "
          "redis-sentinel://H1:P1,H2:P2,H3:P3/MASTER_NAME (replicas sharing one Redis; any "
          "replica answers any call)");
ABSL_FLAG(std::string, store, "sqlite:data/users.db",
          "durable table of users ever seen: sqlite:PATH (created if missing) or a "
          "postgresql:// URL");
ABSL_FLAG(bool, store_fsync, false,
          "SQLite: fsync every commit (survives power loss; the default survives process "
          "crashes)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9101",
          "Prometheus metrics at http://<this>/metrics (host:port; port 0 = any; empty = off)");
ABSL_FLAG(std::string, service_token, "",
          "internal credential: when set, edges and message-service must send "
          "'authorization: Bearer <token>' on the internal API (EdgeRegistry)");
ABSL_FLAG(std::string, api_token, "",
          "public credential: when set, backends must send 'authorization: Bearer <token>' on the "
          "public API (ConnectionService); empty = the public API takes --service_token");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain (leaf first); with --tls_key the gRPC port serves only TLS");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA certificates: with --tls_cert, clients must present a certificate signed by "
          "one of them (mutual TLS)");

ABSL_FLAG(chat::LogFormat, log_format, chat::LogFormat::kText,
          "stderr log lines: text, or json (one object per line: ts, level, service, msg)");

int main(int argc, char** argv) {
  chat::BlockTerminationSignals();
  chat::ParseFlagsWithEnv(argc, argv,
                          "connection-service: who is online, on which edge.\nUsage: "
                          "connection-service [--listen=127.0.0.1:50051] [flags]");
  chat::InitProcess("connection-service", absl::GetFlag(FLAGS_log_format));
  const int64_t lease_ms = absl::GetFlag(FLAGS_lease_timeout_ms);
  if (lease_ms <= 0) {
    std::fprintf(stderr, "--lease_timeout_ms must be positive\n");
    return 2;
  }
  absl::StatusOr<chat::connection::RegistryUrl> registry_url =
      chat::connection::ParseRegistryUrl(absl::GetFlag(FLAGS_registry));
  if (!registry_url.ok()) {
    std::fprintf(stderr, "%s\n", std::string(registry_url.status().message()).c_str());
    return 2;
  }
  std::random_device rd;
  const std::string instance_id = absl::StrFormat("%08x%08x", rd(), rd());

  chat::Metrics metrics;
  chat::GrpcMetrics grpc_metrics(metrics);
  chat::connection::RegistryMetrics registry_metrics(metrics.registry());
  chat::store::StoreOptions store_options;
  store_options.fsync = absl::GetFlag(FLAGS_store_fsync);
  auto users = chat::store::OpenUserStore(absl::GetFlag(FLAGS_store), store_options);
  if (!users.ok()) {
    spdlog::critical("--store={}: {}", absl::GetFlag(FLAGS_store), users.status().ToString());
    return 1;
  }
  // Users ever seen come back from the store; live connections are rebuilt
  // by the edges (they re-register when they see a new instance id).
  auto memory = std::make_unique<chat::connection::MemoryStore>();
  absl::StatusOr<std::vector<std::string>> known = (*users)->AllUsers();
  if (!known.ok()) {
    spdlog::critical("--store={}: {}", absl::GetFlag(FLAGS_store), known.status().ToString());
    return 1;
  }
  for (const std::string& name : *known) memory->AddUser(name);
  spdlog::info("{} users loaded from {}", known->size(), absl::GetFlag(FLAGS_store));
  chat::connection::RegistryOptions registry_options;
  registry_options.lease_timeout_ms = lease_ms;
  // This process may replace one that just stopped: its edges re-register
  // within a heartbeat, one lease period at most, so presence snapshots wait
  // that long (nobody looks offline merely because the registry restarted).
  // An empty user store proves a first start: every registered connection's
  // user is committed there first, so no edge can hold connections to
  // re-register, and snapshots need not wait.
  registry_options.presence_warmup_ms = known->empty() ? 0 : lease_ms;
  // Replicas share Redis; this one mirrors it (the users come from --store,
  // the rest from Redis's snapshot and feed).
  std::unique_ptr<chat::connection::RedisRegistryMetrics> redis_metrics;
  std::unique_ptr<chat::connection::RedisRegistry> shared;
  if (registry_url->kind != chat::connection::RegistryUrl::Kind::kMemory) {
    redis_metrics = std::make_unique<chat::connection::RedisRegistryMetrics>(metrics.registry());
    chat::connection::RedisRegistryOptions redis_options;
    redis_options.target = *registry_url;
    redis_options.metrics = redis_metrics.get();
    redis_options.lease_timeout_ms = lease_ms;
    shared = std::make_unique<chat::connection::RedisRegistry>(redis_options);
    registry_options.shared = shared.get();
    spdlog::info("live registry shared in {}", absl::GetFlag(FLAGS_registry));
  }
  chat::connection::Registry registry(std::move(memory), chat::SystemClock::Get(), registry_options,
                                      &registry_metrics, users->get());
  // Who owns each name (edges claim names resolved from users' profiles),
  // kept with the users, over a connection of its own.
  auto owners = chat::store::OpenUserStore(absl::GetFlag(FLAGS_store), store_options);
  if (!owners.ok()) {
    spdlog::critical("--store={}: {}", absl::GetFlag(FLAGS_store), owners.status().ToString());
    return 1;
  }
  chat::connection::NameClaims claims(
      std::make_unique<chat::connection::UserStoreNameOwners>(*std::move(owners)),
      chat::SystemClock::Get());
  const chat::ServiceAuth auth(absl::GetFlag(FLAGS_service_token), absl::GetFlag(FLAGS_api_token));
  chat::connection::ConnectionServiceImpl service(&registry, instance_id, auth);
  chat::connection::EdgeRegistryImpl edge_registry(&registry, instance_id, auth, &claims);
  // With Redis, mutations block on it (and on the feed): off gRPC's threads,
  // so that reads from the mirror keep answering. Destroyed after the server.
  std::unique_ptr<chat::connection::BlockingCalls> blocking_calls;
  if (shared != nullptr) {
    blocking_calls = std::make_unique<chat::connection::BlockingCalls>(16, 10'000);
    service.set_blocking_calls(blocking_calls.get());
    edge_registry.set_blocking_calls(blocking_calls.get());
  }
  chat::GrpcServerOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  options.metrics = &grpc_metrics;
  auto server = chat::StartGrpcServer(options, {&service, &edge_registry});
  if (!server.ok()) {
    spdlog::critical("{}", server.status().ToString());
    return 1;
  }
  // A quarter lease, at most 500 ms: presence snapshots held back after the
  // start go out within that of the warm-up's end.
  chat::connection::LeaseReaper reaper(
      &registry, absl::Milliseconds(std::clamp<int64_t>(lease_ms / 4, 10, 500)));
  if (absl::Status s = chat::ServeMetricsIfAsked(metrics, absl::GetFlag(FLAGS_metrics_listen));
      !s.ok()) {
    spdlog::critical("{}", s.ToString());
    return 1;
  }
  const std::string host = options.listen.substr(0, options.listen.rfind(':'));
  spdlog::info("connection-service {} on {}:{} (lease {} ms)", instance_id, host, server->port,
               lease_ms);
  std::printf("listening on %s:%d\n", host.c_str(), server->port);
  std::fflush(stdout);

  const int sig = chat::WaitForTerminationSignal();
  spdlog::info("signal {}: shutting down", sig);
  server->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return 0;
}
