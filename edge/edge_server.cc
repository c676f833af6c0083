#include "edge/edge_server.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "boost/asio/post.hpp"
#include "boost/asio/strand.hpp"
#include "common/grpc_server.h"
#include "edge/http_session.h"
#include "edge/name_claims.h"
#include "edge/pooled_verifier.h"
#include "spdlog/spdlog.h"

namespace chat::edge {

namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// OpenSSL's queued errors (the reason a load failed), drained.
std::string OpenSslErrors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    absl::StrAppend(&out, out.empty() ? "" : "; ", buf);
  }
  return out.empty() ? "unknown error" : out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<net::ssl::context>> MakeServerTlsContext(
    const std::string& cert_file, const std::string& key_file) {
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both --tls_cert and --tls_key (PEM files), or neither for plaintext");
  }
  auto context = std::make_unique<net::ssl::context>(net::ssl::context::tls_server);
  context->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                       net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                       net::ssl::context::no_tlsv1_1 | net::ssl::context::single_dh_use);
  ERR_clear_error();
  if (SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_2_VERSION) != 1) {
    return absl::InternalError(absl::StrCat("cannot require TLS 1.2: ", OpenSslErrors()));
  }
  // The usual mistake, said plainly (OpenSSL would say "system lib").
  for (const auto& [flag, file] : {std::pair{"--tls_cert", &cert_file}, {"--tls_key", &key_file}}) {
    if (FILE* f = std::fopen(file->c_str(), "r")) {
      std::fclose(f);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot read ", flag, " '", *file, "': ", std::strerror(errno)));
    }
  }
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(context->native_handle(), cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("cannot load --tls_cert '", cert_file,
                                                   "' (PEM certificate chain): ", OpenSslErrors()));
  }
  ERR_clear_error();
  if (SSL_CTX_use_PrivateKey_file(context->native_handle(), key_file.c_str(), SSL_FILETYPE_PEM) !=
      1) {
    const unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
      ERR_clear_error();
      return absl::InvalidArgumentError(absl::StrCat("--tls_key '", key_file,
                                                     "' does not match --tls_cert '", cert_file,
                                                     "' (not the certificate's private key)"));
    }
    return absl::InvalidArgumentError(absl::StrCat("cannot load --tls_key '", key_file,
                                                   "' (PEM private key): ", OpenSslErrors()));
  }
  if (SSL_CTX_check_private_key(context->native_handle()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("--tls_key '", key_file,
                                                   "' does not match --tls_cert '", cert_file,
                                                   "': ", OpenSslErrors()));
  }
  return context;
}

EdgeServer::EdgeServer(EdgeOptions options) : EdgeServer(std::move(options), EdgeBackends{}) {}

EdgeServer::EdgeServer(EdgeOptions options, EdgeBackends backends)
    : options_(std::move(options)), injected_(backends), acceptor_(ioc_), accept_retry_(ioc_) {}

EdgeServer::~EdgeServer() { Shutdown(std::chrono::milliseconds(0)); }

absl::Status EdgeServer::Start() {
  const size_t colon = options_.listen.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen must be host:port, got '", options_.listen, "'"));
  }
  std::string host = options_.listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  int port = 0;
  if (!absl::SimpleAtoi(options_.listen.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad port in --listen '", options_.listen, "'"));
  }
  if (!options_.tls_cert.empty() || !options_.tls_key.empty()) {
    auto tls = MakeServerTlsContext(options_.tls_cert, options_.tls_key);
    if (!tls.ok()) return tls.status();
    tls_ = std::move(*tls);
  }
  boost::system::error_code ec;
  const auto address = net::ip::make_address(host.empty() ? "0.0.0.0" : host, ec);
  if (ec)
    return absl::InvalidArgumentError(absl::StrCat("bad address '", host, "': ", ec.message()));
  const tcp::endpoint endpoint(address, static_cast<uint16_t>(port));
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.listen, ": ", ec.message()));
  }
  port_ = acceptor_.local_endpoint().port();
  if (options_.jwt.has_value()) {
    const int64_t skew = options_.jwt->clock_skew_s;
    auto verifier = JwtVerifier::Create(*options_.jwt, context_.clock);
    if (!verifier.ok()) return verifier.status();
    tokens_ = std::make_unique<PooledJwtVerifier>(
        std::move(*verifier), skew, options_.jwt_verify_threads, options_.jwt_verify_queue);
    context_.tokens = tokens_.get();
    context_.keep_on_token_expiry = options_.keep_on_token_expiry;
  }
  context_.max_connection_age = options_.max_connection_age;

  context_.edge_id = options_.edge_id;
  if (context_.edge_id.empty()) {
    char hostname[256] = {0};
    gethostname(hostname, sizeof(hostname) - 1);
    context_.edge_id = absl::StrCat(hostname, "-", port_);
  }
  context_.logic = options_.logic;
  context_.logic.server_id = context_.edge_id;
  context_.logic.metrics = &edge_metrics_;
  context_.max_outbound_bytes = options_.max_outbound_bytes;
  context_.max_connections = options_.max_connections;
  context_.handshake_timeout = options_.handshake_timeout;
  context_.close_grace = options_.close_grace;
  context_.max_header_bytes = options_.max_header_bytes;
  context_.hub = &hub_;
  context_.metrics = &edge_metrics_;
  context_.all_metrics = &metrics_;
  origins_ = std::make_unique<OriginPolicy>(options_.allowed_origins);
  per_user_ = std::make_unique<UserConnectionLimit>(options_.max_connections_per_user);
  context_.origins = origins_.get();
  context_.per_user = per_user_.get();
  if (!options_.web_root.empty()) {
    static_files_ = std::make_unique<StaticFiles>(options_.web_root);
    context_.static_files = static_files_.get();
  }
  NameClaims* claims = injected_.claims;
  if (injected_.directory != nullptr || injected_.messages != nullptr) {
    if (injected_.directory == nullptr || injected_.messages == nullptr) {
      return absl::InvalidArgumentError("EdgeBackends needs both a directory and messages");
    }
    context_.directory = injected_.directory;
    context_.messages = injected_.messages;
  } else {
    ConnectGrpcBackends();
    claims = claims_.get();
  }
  if (tokens_ != nullptr) {
    if (options_.profile.has_value()) {
      if (claims == nullptr) {
        return absl::InvalidArgumentError("profiles need name claims (EdgeBackends::claims)");
      }
      const ProfileConfig& profile = *options_.profile;
      profiles_ = std::make_unique<ProfileResolver>(MakeHttpProfileFetcher(profile), context_.clock,
                                                    profile.threads, profile.max_queued,
                                                    profile.max_cached);
    }
    // Profiles and claims go together (JwtIdentities).
    identities_ = std::make_unique<JwtIdentities>(tokens_.get(), profiles_.get(),
                                                  profiles_ != nullptr ? claims : nullptr);
    context_.identities = identities_.get();
  }

  DoAccept();
  for (int i = 0; i < std::max(1, options_.threads); ++i) {
    threads_.emplace_back([this] { ioc_.run(); });
  }
  return absl::OkStatus();
}

void EdgeServer::ConnectGrpcBackends() {
  DirectoryOptions directory_options;
  directory_options.auth = ServiceAuth(options_.service_token);
  channels_.push_back(
      MakeChannel(options_.connection_service, &grpc_metrics_, options_.grpc_security));
  directory_ = std::make_unique<DirectoryClient>(channels_.back(), context_.edge_id, &hub_,
                                                 directory_options);
  if (tokens_ != nullptr && options_.profile.has_value()) {
    claims_ =
        std::make_unique<GrpcNameClaims>(channels_.back(), ServiceAuth(options_.service_token));
  }
  LinkOptions link_options;
  link_options.auth = ServiceAuth(options_.service_token);
  link_options.metrics = &edge_metrics_;
  link_options.answer_timeout = absl::FromChrono(options_.send_timeout);
  std::vector<std::shared_ptr<grpc::Channel>> message_channels;
  for (const auto& target : options_.message_services) {
    message_channels.push_back(MakeChannel(target, &grpc_metrics_, options_.grpc_security));
    channels_.push_back(message_channels.back());
  }
  messages_ = std::make_unique<MessageLinks>(message_channels, context_.edge_id, &hub_,
                                             link_options, options_.message_services);
  context_.directory = directory_.get();
  context_.messages = messages_.get();
}

void EdgeServer::DoAccept() {
  constexpr size_t kStrands = 256;
  if (strands_.empty()) {
    strands_.reserve(kStrands);
    for (size_t i = 0; i < kStrands; ++i) strands_.push_back(net::make_strand(ioc_));
  }
  const auto& strand = strands_[next_strand_++ % kStrands];
  acceptor_.async_accept(strand, [this](boost::system::error_code ec, PlainSocket socket) {
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // Out of file descriptors, most likely: back off instead of spinning.
      spdlog::warn("accept: {}", ec.message());
      accept_retry_.expires_after(std::chrono::milliseconds(100));
      accept_retry_.async_wait([this](boost::system::error_code e) {
        if (!e) DoAccept();
      });
      return;
    }
    socket.set_option(tcp::no_delay(true), ec);
    if (options_.socket_send_buffer_bytes > 0) {
      // Frames are written to the socket as soon as they come: what a slow
      // client does not take sits in the kernel, up to this (Linux doubles
      // it for its own bookkeeping), then in the bounded outbound queue.
      socket.set_option(net::socket_base::send_buffer_size(options_.socket_send_buffer_bytes), ec);
    }
    if (tls_ != nullptr) {
      std::make_shared<HttpSession<TlsStream>>(TlsStream(std::move(socket), *tls_), &context_)
          ->Run();
    } else {
      std::make_shared<HttpSession<PlainStream>>(PlainStream(std::move(socket)), &context_)->Run();
    }
    DoAccept();
  });
}

void EdgeServer::Shutdown(std::chrono::milliseconds drain) {
  if (stopped_) return;
  stopped_ = true;
  if (threads_.empty()) return;
  context_.shutting_down = true;
  net::post(ioc_, [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    accept_retry_.cancel();
  });
  hub_.KickAll(kCloseGoingAway, "server shutting down");
  const auto deadline = std::chrono::steady_clock::now() + drain;
  while (context_.live_connections.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling a counter, bounded
  }
  if (directory_) directory_->Flush(std::max(drain / 2, std::chrono::milliseconds(500)));
  ioc_.stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  // Sessions still closing (a peer that never finished its close) die with
  // ioc_; they must not call the backends reset below.
  context_.stopped = true;
  // Their workers finish what is queued (answers posted to the stopped
  // io_context are dropped with it) before anything they use goes away.
  profiles_.reset();
  tokens_.reset();
  context_.tokens = nullptr;
  messages_.reset();
  directory_.reset();
  claims_.reset();
  for (auto& channel : channels_) ReleaseChannel(std::move(channel), std::chrono::seconds(2));
  channels_.clear();
}

}  // namespace chat::edge
