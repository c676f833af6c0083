#include "common/grpc_server.h"

#include <arpa/inet.h>

#include <thread>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/grpc_metrics.h"
#include "common/reflection_v1.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/ext/health_check_service_server_builder_option.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace chat {

absl::StatusOr<StartedServer> StartGrpcServer(const GrpcServerOptions& options,
                                              const std::vector<grpc::Service*>& services) {
  auto credentials = LoadServerCredentials(options.tls);
  if (!credentials.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("gRPC server TLS: ", credentials.status().message()));
  }
  if (options.health_on_queue && !options.completion_queue) {
    return absl::InvalidArgumentError("health_on_queue needs a completion queue");
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  InitReflectionV1ServerBuilderPlugin();
  grpc::ServerBuilder builder;
  StartedServer started;
  builder.AddListeningPort(options.listen, *credentials, &started.port);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options.max_concurrent_streams);
  // gRPC sets SO_REUSEPORT by default: a second process started on the same
  // port (a replica misconfigured, or HAProxy) would then silently take half
  // of this one's connections. Without it, the second one fails to start.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Edges keep long-lived streams; let them ping so dead peers are noticed.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  for (grpc::Service* service : services) builder.RegisterService(service);
  if (options.health_on_queue) {
    // Null: no default health service on this server; ours instead.
    builder.SetOption(std::make_unique<grpc::HealthCheckServiceServerBuilderOption>(nullptr));
    started.health = std::make_unique<AsyncHealthService>();
    builder.RegisterService(started.health.get());
  }
  if (options.completion_queue) started.completion_queue = builder.AddCompletionQueue();
  if (options.metrics != nullptr) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(options.metrics->ServerInterceptors());
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
  started.server = builder.BuildAndStart();
  if (started.server == nullptr || started.port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  if (started.health != nullptr) {
    started.health->Serve(options.health_services, started.completion_queue.get());
  } else {
    started.server->GetHealthCheckService()->SetServingStatus(true);
  }
  return started;
}

namespace {

// "1.2.3.4:50051" -> 4, "[::1]:50051" -> 6, anything else (names, no port) -> 0.
int IpFamily(absl::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos || colon + 1 == address.size()) return 0;
  for (char c : address.substr(colon + 1)) {
    if (c < '0' || c > '9') return 0;
  }
  absl::string_view host = address.substr(0, colon);
  unsigned char buffer[sizeof(in6_addr)];
  if (absl::ConsumePrefix(&host, "[") && absl::ConsumeSuffix(&host, "]")) {
    return inet_pton(AF_INET6, std::string(host).c_str(), buffer) == 1 ? 6 : 0;
  }
  return inet_pton(AF_INET, std::string(host).c_str(), buffer) == 1 ? 4 : 0;
}

}  // namespace

absl::StatusOr<std::string> ChannelTarget(const std::string& flag) {
  if (flag.find(',') == std::string::npos) {
    if (flag.empty()) return absl::InvalidArgumentError("empty service address");
    return flag;
  }
  if (flag.find(':') != std::string::npos &&
      (absl::StartsWith(flag, "ipv4:") || absl::StartsWith(flag, "ipv6:") ||
       flag.find(":///") != std::string::npos)) {
    return flag;  // already a gRPC URI
  }
  std::vector<std::string> addresses;
  for (absl::string_view part : absl::StrSplit(flag, ',', absl::SkipWhitespace())) {
    addresses.emplace_back(absl::StripAsciiWhitespace(part));
  }
  int family = 0;
  for (const std::string& address : addresses) {
    const int f = IpFamily(address);
    if (f == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("a list of addresses takes IP:port entries (", address.substr(0, 64),
                       " is not one); for host names use dns:///<name>:<port>"));
    }
    if (family != 0 && f != family) {
      return absl::InvalidArgumentError("a list of addresses cannot mix IPv4 and IPv6");
    }
    family = f;
  }
  if (addresses.empty()) return absl::InvalidArgumentError("empty service address list");
  return absl::StrCat(family == 4 ? "ipv4:" : "ipv6:", absl::StrJoin(addresses, ","));
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target, const GrpcMetrics* metrics,
                                           const ChannelSecurity& security) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Reconnect quickly after a backend restart; our own backoff sits on top.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
  args.SetLoadBalancingPolicyName("round_robin");
  if (!security.server_name.empty()) args.SetSslTargetNameOverride(security.server_name);
  const std::shared_ptr<grpc::ChannelCredentials> credentials =
      security.credentials != nullptr ? security.credentials : grpc::InsecureChannelCredentials();
  // An address list the flag checks refused at start cannot get here; keep
  // the text as given otherwise (gRPC then reports it on every call).
  absl::StatusOr<std::string> uri = ChannelTarget(target);
  const std::string& resolved = uri.ok() ? *uri : target;
  if (metrics == nullptr) return grpc::CreateCustomChannel(resolved, credentials, args);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> creators;
  creators.push_back(metrics->ClientInterceptors());
  return grpc::experimental::CreateCustomChannelWithInterceptors(resolved, credentials, args,
                                                                 std::move(creators));
}

void ReleaseChannel(std::shared_ptr<grpc::Channel> channel, std::chrono::milliseconds timeout) {
  if (channel == nullptr) return;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // Polls a reference count, bounded: gRPC offers no notification for it.
  while (channel.use_count() > 1 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (channel.use_count() > 1) {
    new std::shared_ptr<grpc::Channel>(std::move(channel));  // leaked on purpose, see header
  }
}

}  // namespace chat
