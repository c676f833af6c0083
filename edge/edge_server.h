#ifndef CHAT_EDGE_EDGE_SERVER_H_
#define CHAT_EDGE_EDGE_SERVER_H_

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/ssl/context.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "common/grpc_metrics.h"
#include "common/grpc_tls.h"
#include "common/metrics.h"
#include "edge/directory_client.h"
#include "edge/edge_context.h"
#include "edge/edge_metrics.h"
#include "edge/jwt_identities.h"
#include "edge/jwt_verifier.h"
#include "edge/message_link.h"
#include "edge/static_files.h"

namespace chat::edge {

struct EdgeOptions {
  std::string listen = "127.0.0.1:8080";
  std::string edge_id;  // empty: "<hostname>-<port>"
  std::string connection_service = "127.0.0.1:50051";
  std::vector<std::string> message_services = {"127.0.0.1:50052"};
  std::string web_root;  // empty: no web UI
  LogicConfig logic;
  size_t max_outbound_bytes = 4 << 20;
  // SO_SNDBUF of each accepted socket (0: the kernel's autotuning, which lets
  // a client that does not read hold up to net.ipv4.tcp_wmem's maximum, 4 MB
  // by default, before the outbound queue even starts to fill).
  int socket_send_buffer_bytes = 256 << 10;
  size_t max_connections = 100000;
  std::chrono::seconds handshake_timeout{10};
  std::chrono::milliseconds close_grace{3000};
  std::chrono::milliseconds send_timeout{10000};  // see LinkOptions::answer_timeout
  size_t max_header_bytes = 8192;
  int threads = 2;
  std::string service_token;      // sent to connection- and message-service
  ChannelSecurity grpc_security;  // TLS of the channels to them; default plaintext
  std::vector<std::string> allowed_origins = {"*"};
  int max_connections_per_user = 32;
  // jwt mode when set (docs/protocol.md §1); name mode otherwise.
  std::optional<JwtConfig> jwt;
  // jwt mode: threads checking signatures, and how many handshakes may wait
  // for them (beyond: HTTP 503 with Retry-After).
  int jwt_verify_threads = 2;
  size_t jwt_verify_queue = 256;
  // jwt mode: where a ?name= other than the token's user is looked up (the
  // user's profile at the identity provider); unset: such a ?name= is 403.
  // Set, every name a connection speaks as is claimed for the token's `sub`.
  std::optional<ProfileConfig> profile;
  // jwt mode: a connection outlives its token (true) or closes with 1008 at
  // the token's exp (false).
  bool keep_on_token_expiry = false;
  // Every connection closes with 1001 at this age; zero: never.
  std::chrono::seconds max_connection_age{7200};
  // PEM files. Both set: the listener speaks TLS only (1.2 or later), so
  // clients use wss:// and https://. Both empty: plaintext. One alone is an
  // error at Start().
  std::string tls_cert;  // certificate chain, leaf first
  std::string tls_key;   // private key of the leaf
};

// The server side TLS context for `cert_file`/`key_file` (PEM): TLS 1.2+, the
// key checked against the certificate. An error names the file that failed.
absl::StatusOr<std::unique_ptr<boost::asio::ssl::context>> MakeServerTlsContext(
    const std::string& cert_file, const std::string& key_file);

// The services behind an edge, given to it instead of the gRPC clients it
// would build from EdgeOptions (tests pass fakes). Not owned: they outlive
// the server. Their callbacks may run on any thread; they reach this edge's
// connections through EdgeServer::hub().
struct EdgeBackends {
  DirectoryBackend* directory = nullptr;  // required
  MessageBackend* messages = nullptr;     // required
  NameClaims* claims = nullptr;           // jwt mode with EdgeOptions::profile
};

// The whole edge: listener, sessions, and the clients of the services behind
// it. main() only parses flags into EdgeOptions; tests run it in-process.
class EdgeServer {
 public:
  // Talks to connection- and message-service over gRPC, as `options` say.
  explicit EdgeServer(EdgeOptions options);
  // Talks to `backends` instead; options naming services and their channels
  // are ignored.
  EdgeServer(EdgeOptions options, EdgeBackends backends);
  ~EdgeServer();

  // Binds, connects to the backends and starts serving.
  absl::Status Start();
  int port() const { return port_; }
  const std::string& edge_id() const { return context_.edge_id; }
  // Everything GET /metrics serves.
  const Metrics& metrics() const { return metrics_; }
  // This edge's live connections: what the backends deliver to and kick.
  LocalHub& hub() { return hub_; }

  // Stops accepting, closes every connection with 1001, waits up to `drain`
  // for them to finish and for unregistrations to reach the registry.
  void Shutdown(std::chrono::milliseconds drain);

 private:
  // The gRPC clients of connection- and message-service (and name claims).
  void ConnectGrpcBackends();
  void DoAccept();

  EdgeOptions options_;
  // Set by the second constructor; otherwise Start() builds the gRPC clients.
  const EdgeBackends injected_;
  // Everything sessions point to is declared before ioc_, so it outlives the
  // sessions that die with ioc_'s pending handlers (tls_: their SSL objects).
  std::unique_ptr<boost::asio::ssl::context> tls_;  // null: plaintext
  // Also before ioc_: sessions dying with it still count their close, and
  // the interceptors of a channel released late share the gRPC metrics.
  Metrics metrics_;
  GrpcMetrics grpc_metrics_{metrics_};
  EdgeMetrics edge_metrics_{metrics_.registry()};
  EdgeContext context_;
  LocalHub hub_;
  std::unique_ptr<OriginPolicy> origins_;
  std::unique_ptr<UserConnectionLimit> per_user_;
  std::unique_ptr<TokenVerifier> tokens_;
  std::unique_ptr<ProfileResolver> profiles_;
  std::unique_ptr<NameClaims> claims_;
  std::unique_ptr<JwtIdentities> identities_;
  std::unique_ptr<StaticFiles> static_files_;
  std::unique_ptr<DirectoryClient> directory_;
  std::unique_ptr<MessageLinks> messages_;
  // Every backend channel, released last and on this thread (ReleaseChannel).
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer accept_retry_;
  // Connections share a fixed set of strands, handed out in turn: one
  // strand per connection cost about 110 bytes each (its implementation and
  // the shared_ptr's block). Sharing only serializes the handlers of the
  // connections on one strand, and no handler blocks. After ioc_: a strand
  // must go before its io_context.
  std::vector<boost::asio::strand<boost::asio::io_context::executor_type>> strands_;
  size_t next_strand_ = 0;  // DoAccept's chain only
  std::vector<std::thread> threads_;
  int port_ = 0;
  bool stopped_ = false;
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_EDGE_SERVER_H_
