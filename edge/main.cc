// edge: WebSocket front door of the chat backend.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "common/env_flags.h"
#include "common/grpc_server.h"
#include "common/grpc_tls.h"
#include "common/logging.h"
#include "common/signals.h"
#include "edge/edge_server.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:8080",
          "HTTP/WebSocket listen address (host:port; port 0 = any)");
ABSL_FLAG(std::string, edge_id, "", "unique id of this edge; empty = <hostname>-<port>");
ABSL_FLAG(std::string, connection_service, "127.0.0.1:50051",
          "connection-service address: host:port, a gRPC target (dns:///name:port), or several "
          "replicas as IP:port,IP:port (calls balanced round-robin)");
ABSL_FLAG(std::string, message_service, "127.0.0.1:50052",
          "message-service address, or several replicas as H1:P1,H2:P2: one link to each, "
          "every conversation sent to one replica by rendezvous hashing over the links that "
          "are up (give every edge the same addresses, in any order)");
ABSL_FLAG(std::string, web_root, "",
          "directory of the web UI; empty = look for edge/web next to the binary's source tree "
          "or /usr/share/chat/web");
ABSL_FLAG(int, max_message_bytes, 131072, "largest client frame; larger closes with 1009");
ABSL_FLAG(int, messages_per_second, 50, "per-connection frame rate (token bucket)");
ABSL_FLAG(int, rate_burst, 50, "per-connection burst above the rate");
ABSL_FLAG(int, idle_timeout_s, 600, "close a connection silent (no data, no pong) this long");
ABSL_FLAG(int, bad_frames_max, 10, "more bad frames than this within the window closes with 1008");
ABSL_FLAG(int, bad_frames_window_s, 60, "window for --bad_frames_max");
ABSL_FLAG(int, max_outbound_bytes, 4 << 20,
          "per-connection outbound queue; overflow closes with 4008 (slow consumer)");
ABSL_FLAG(int, socket_send_buffer_bytes, 256 << 10,
          "kernel send buffer per client socket (SO_SNDBUF; 0: kernel autotuning). What a "
          "client does not read sits here first, then in --max_outbound_bytes");
ABSL_FLAG(int, max_connections, 100000, "live WebSocket connections on this edge (503 beyond)");
ABSL_FLAG(int, handshake_timeout_s, 10, "time allowed for the HTTP request and upgrade");
ABSL_FLAG(int, send_timeout_ms, 10000,
          "a message-service link that leaves sends unanswered this long is reset; they fail as "
          "unavailable");
ABSL_FLAG(int, close_grace_ms, 3000,
          "time a closing handshake may take (e.g. a client that stopped reading) before the "
          "socket is cut");
ABSL_FLAG(int, threads, 2, "I/O threads");
ABSL_FLAG(std::string, allowed_origins, "*",
          "comma-separated Origins allowed to open WebSockets from a browser page "
          "(https://chat.example.com,...); * = any. Requests without Origin always pass");
ABSL_FLAG(int, max_connections_per_user, 32,
          "live connections of one user on this edge (HTTP 503 beyond)");
ABSL_FLAG(int, rate_limit_strikes, 50,
          "frames refused as rate_limited within 10 s before the connection is closed with 1008");
ABSL_FLAG(std::string, auth, "name",
          "identity at the handshake: name (?name=, unauthenticated; development) or jwt");
ABSL_FLAG(std::string, jwt_secret, "", "jwt: HS256 shared secret (at least 32 bytes)");
ABSL_FLAG(std::string, jwt_jwks_file, "", "jwt: RS256/ES256 keys from this JWKS file");
ABSL_FLAG(std::string, jwt_jwks_url, "",
          "jwt: RS256/ES256 keys from this JWKS URL (refreshed periodically and on unknown kid)");
ABSL_FLAG(std::string, jwt_issuer, "", "jwt: required iss, when set");
ABSL_FLAG(std::string, jwt_audience, "", "jwt: required aud, when set");
ABSL_FLAG(std::string, jwt_client_id, "", "jwt: required client_id claim (Cognito access tokens)");
ABSL_FLAG(std::string, jwt_user_claim, "sub", "jwt: claim naming the user (username for Cognito)");
ABSL_FLAG(int, jwt_clock_skew_s, 30, "jwt: tolerance for exp/nbf, in seconds");
ABSL_FLAG(int, jwt_verify_threads, 2, "jwt: threads checking token signatures");
ABSL_FLAG(int, jwt_verify_queue, 256,
          "jwt: handshakes that may wait for a signature check; beyond, HTTP 503 with Retry-After");
ABSL_FLAG(std::string, jwt_profile, "none",
          "jwt: where a ?name= other than the token's user is looked up: none (such a ?name= is "
          "403), cognito (GetUser at --cognito_endpoint) or userinfo (--userinfo_url); names are "
          "then claimed by the token's sub");
ABSL_FLAG(
    std::string, cognito_endpoint, "",
    "jwt_profile=cognito: the user pool's endpoint, https://cognito-idp.<region>.amazonaws.com/");
ABSL_FLAG(std::string, userinfo_url, "", "jwt_profile=userinfo: the OIDC userinfo URL");
ABSL_FLAG(std::string, jwt_profile_name_attribute, "name",
          "jwt: the profile attribute (Cognito) or claim (userinfo) holding the user's name");
ABSL_FLAG(int, jwt_profile_timeout_ms, 5000,
          "jwt: a profile lookup slower than this fails the handshake with HTTP 503");
ABSL_FLAG(std::string, on_token_expiry, "close",
          "jwt: what a live connection does when its token expires: close (1008) or keep (until "
          "--max_connection_age_s, like API Gateway)");
ABSL_FLAG(int, max_connection_age_s, 7200,
          "connections older than this are closed with 1001 (going away); 0 = no limit");
ABSL_FLAG(int, drain_timeout_ms, 5000, "on SIGTERM, time allowed for connections to close");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain (leaf first); with --tls_key the listener serves only TLS "
          "(wss://, https://; TLS 1.2+)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key for --tls_cert");
ABSL_FLAG(std::string, service_token, "",
          "credential presented to connection-service and message-service (their --service_token)");
ABSL_FLAG(std::string, grpc_ca, "",
          "PEM CA certificates that connection-service's and message-service's gRPC certificates "
          "must chain to; set: those connections use TLS");
ABSL_FLAG(std::string, grpc_cert, "",
          "PEM client certificate chain for those connections (with --grpc_key), for services "
          "started with --tls_client_ca");
ABSL_FLAG(std::string, grpc_key, "", "PEM private key for --grpc_cert");
ABSL_FLAG(std::string, grpc_server_name, "",
          "name checked in the gRPC servers' certificates instead of the host of their address");

namespace {

std::string DefaultWebRoot(const char* argv0) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<fs::path> candidates;
#ifdef CHAT_SOURCE_WEB_ROOT
  candidates.emplace_back(CHAT_SOURCE_WEB_ROOT);
#endif
  candidates.emplace_back(fs::path(argv0).parent_path() / "web");
  candidates.emplace_back("/usr/share/chat/web");
  for (const auto& c : candidates) {
    if (fs::exists(c / "index.html", ec)) return c.string();
  }
  return "";
}

}  // namespace

ABSL_FLAG(chat::LogFormat, log_format, chat::LogFormat::kText,
          "stderr log lines: text, or json (one object per line: ts, level, service, msg)");

int main(int argc, char** argv) {
  chat::BlockTerminationSignals();
  chat::ParseFlagsWithEnv(argc, argv,
                          "edge: WebSocket front door of the chat backend.\nUsage: edge "
                          "[--listen=127.0.0.1:8080] [flags]");
  chat::InitProcess("edge", absl::GetFlag(FLAGS_log_format));
  chat::edge::EdgeOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.edge_id = absl::GetFlag(FLAGS_edge_id);
  options.connection_service = absl::GetFlag(FLAGS_connection_service);
  if (absl::StatusOr<std::string> target = chat::ChannelTarget(options.connection_service);
      !target.ok()) {
    std::fprintf(stderr, "--connection_service: %s\n",
                 std::string(target.status().message()).c_str());
    return 2;
  }
  options.message_services =
      absl::StrSplit(absl::GetFlag(FLAGS_message_service), ',', absl::SkipWhitespace());
  if (options.message_services.empty()) {
    std::fprintf(stderr, "--message_service must name at least one address\n");
    return 2;
  }
  options.web_root = absl::GetFlag(FLAGS_web_root);
  if (options.web_root.empty()) options.web_root = DefaultWebRoot(argv[0]);
  options.logic.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  options.logic.messages_per_second = absl::GetFlag(FLAGS_messages_per_second);
  options.logic.rate_burst = absl::GetFlag(FLAGS_rate_burst);
  options.logic.idle_timeout_s = absl::GetFlag(FLAGS_idle_timeout_s);
  options.logic.bad_frames_max = absl::GetFlag(FLAGS_bad_frames_max);
  options.logic.bad_frames_window_ms = absl::GetFlag(FLAGS_bad_frames_window_s) * 1000LL;
  options.max_outbound_bytes = absl::GetFlag(FLAGS_max_outbound_bytes);
  options.socket_send_buffer_bytes = absl::GetFlag(FLAGS_socket_send_buffer_bytes);
  options.max_connections = absl::GetFlag(FLAGS_max_connections);
  options.handshake_timeout = std::chrono::seconds(absl::GetFlag(FLAGS_handshake_timeout_s));
  options.close_grace = std::chrono::milliseconds(absl::GetFlag(FLAGS_close_grace_ms));
  options.send_timeout = std::chrono::milliseconds(absl::GetFlag(FLAGS_send_timeout_ms));
  options.threads = absl::GetFlag(FLAGS_threads);
  options.service_token = absl::GetFlag(FLAGS_service_token);
  options.allowed_origins =
      absl::StrSplit(absl::GetFlag(FLAGS_allowed_origins), ',', absl::SkipWhitespace());
  options.max_connections_per_user = absl::GetFlag(FLAGS_max_connections_per_user);
  options.logic.rate_limit_strikes = absl::GetFlag(FLAGS_rate_limit_strikes);
  options.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key = absl::GetFlag(FLAGS_tls_key);
  auto grpc_security = chat::LoadChannelSecurity(
      {absl::GetFlag(FLAGS_grpc_ca), absl::GetFlag(FLAGS_grpc_cert), absl::GetFlag(FLAGS_grpc_key),
       absl::GetFlag(FLAGS_grpc_server_name)});
  if (!grpc_security.ok()) {
    std::fprintf(stderr, "gRPC client TLS (--grpc_ca, --grpc_cert, --grpc_key): %s\n",
                 std::string(grpc_security.status().message()).c_str());
    return 2;
  }
  options.grpc_security = *std::move(grpc_security);
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    std::fprintf(stderr,
                 "--tls_cert and --tls_key go together: give both (PEM files) for TLS, or "
                 "neither for plaintext\n");
    return 2;
  }
  const std::string auth = absl::GetFlag(FLAGS_auth);
  if (auth == "jwt") {
    chat::edge::JwtConfig jwt;
    jwt.hs256_secret = absl::GetFlag(FLAGS_jwt_secret);
    jwt.jwks_file = absl::GetFlag(FLAGS_jwt_jwks_file);
    jwt.jwks_url = absl::GetFlag(FLAGS_jwt_jwks_url);
    jwt.issuer = absl::GetFlag(FLAGS_jwt_issuer);
    jwt.audience = absl::GetFlag(FLAGS_jwt_audience);
    jwt.client_id = absl::GetFlag(FLAGS_jwt_client_id);
    jwt.user_claim = absl::GetFlag(FLAGS_jwt_user_claim);
    jwt.clock_skew_s = absl::GetFlag(FLAGS_jwt_clock_skew_s);
    if (jwt.hs256_secret.empty() && jwt.jwks_file.empty() && jwt.jwks_url.empty()) {
      std::fprintf(stderr, "--auth=jwt needs --jwt_secret, --jwt_jwks_file or --jwt_jwks_url\n");
      return 2;
    }
    options.jwt = std::move(jwt);
    options.jwt_verify_threads = absl::GetFlag(FLAGS_jwt_verify_threads);
    const int verify_queue = absl::GetFlag(FLAGS_jwt_verify_queue);
    if (options.jwt_verify_threads < 1 || options.jwt_verify_threads > 64 || verify_queue < 1) {
      std::fprintf(stderr, "need 1<=--jwt_verify_threads<=64 and --jwt_verify_queue>=1\n");
      return 2;
    }
    options.jwt_verify_queue = static_cast<size_t>(verify_queue);
    const std::string profile = absl::GetFlag(FLAGS_jwt_profile);
    if (profile == "cognito" || profile == "userinfo") {
      chat::edge::ProfileConfig config;
      config.kind = profile == "cognito" ? chat::edge::ProfileConfig::Kind::kCognito
                                         : chat::edge::ProfileConfig::Kind::kUserinfo;
      config.url =
          absl::GetFlag(profile == "cognito" ? FLAGS_cognito_endpoint : FLAGS_userinfo_url);
      config.name_attribute = absl::GetFlag(FLAGS_jwt_profile_name_attribute);
      config.timeout = absl::Milliseconds(absl::GetFlag(FLAGS_jwt_profile_timeout_ms));
      if (config.url.empty() || config.name_attribute.empty() ||
          config.timeout < absl::Milliseconds(100)) {
        std::fprintf(stderr,
                     "--jwt_profile=%s needs %s, a non-empty --jwt_profile_name_attribute and "
                     "--jwt_profile_timeout_ms>=100\n",
                     profile.c_str(),
                     profile == "cognito" ? "--cognito_endpoint" : "--userinfo_url");
        return 2;
      }
      options.profile = std::move(config);
    } else if (profile != "none") {
      std::fprintf(stderr, "--jwt_profile must be none, cognito or userinfo, got '%s'\n",
                   profile.c_str());
      return 2;
    }
    const std::string on_expiry = absl::GetFlag(FLAGS_on_token_expiry);
    if (on_expiry != "close" && on_expiry != "keep") {
      std::fprintf(stderr, "--on_token_expiry must be close or keep, got '%s'\n",
                   on_expiry.c_str());
      return 2;
    }
    options.keep_on_token_expiry = on_expiry == "keep";
  } else if (auth != "name") {
    std::fprintf(stderr, "--auth must be name or jwt, got '%s'\n", auth.c_str());
    return 2;
  }
  if (options.socket_send_buffer_bytes < 0) {
    std::fprintf(stderr, "--socket_send_buffer_bytes must be >= 0 (0 = kernel autotuning)\n");
    return 2;
  }
  if (absl::GetFlag(FLAGS_max_connection_age_s) < 0) {
    std::fprintf(stderr, "--max_connection_age_s must be >= 0 (0 = no limit)\n");
    return 2;
  }
  options.max_connection_age = std::chrono::seconds(absl::GetFlag(FLAGS_max_connection_age_s));
  if (options.logic.max_message_bytes < 1024 || options.logic.messages_per_second < 1 ||
      options.logic.idle_timeout_s < 1 || options.max_outbound_bytes < 1024 ||
      options.max_connections_per_user < 1 || options.close_grace.count() < 1 ||
      options.send_timeout.count() < 100 || options.logic.rate_limit_strikes < 1 ||
      options.logic.rate_limit_strikes > 100000 || options.logic.bad_frames_max < 0 ||
      options.logic.bad_frames_max > 100000) {
    std::fprintf(stderr,
                 "limits out of range: --max_message_bytes>=1024, --messages_per_second>=1, "
                 "--idle_timeout_s>=1, --max_outbound_bytes>=1024, "
                 "--max_connections_per_user>=1, --close_grace_ms>=1, --send_timeout_ms>=100, "
                 "1<=--rate_limit_strikes<=100000, 0<=--bad_frames_max<=100000\n");
    return 2;
  }

  chat::edge::EdgeServer server(options);
  if (absl::Status s = server.Start(); !s.ok()) {
    spdlog::critical("{}", s.ToString());
    return 1;
  }
  const std::string host = options.listen.substr(0, options.listen.rfind(':'));
  if (!options.jwt.has_value()) {
    spdlog::warn("identities are unauthenticated (--auth=name): anyone can connect as anyone");
  }
  spdlog::info("edge {} on {}:{} ({}); connection-service {}, message-service {}; web UI {}",
               server.edge_id(), host, server.port(),
               options.tls_cert.empty() ? "plaintext: ws://, http://" : "TLS: wss://, https://",
               options.connection_service, absl::GetFlag(FLAGS_message_service),
               options.web_root.empty() ? "(none)" : options.web_root);
  std::printf("listening on %s:%d\n", host.c_str(), server.port());
  std::fflush(stdout);

  const int sig = chat::WaitForTerminationSignal();
  spdlog::info("signal {}: closing connections (1001) and draining", sig);
  server.Shutdown(std::chrono::milliseconds(absl::GetFlag(FLAGS_drain_timeout_ms)));
  return 0;
}
