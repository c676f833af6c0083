#include "edge/http_session.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/post.hpp"
#include "boost/beast/websocket/rfc6455.hpp"
#include "common/metrics.h"
#include "edge/name_decode.h"
#include "edge/plain_ws_session.h"
#include "edge/static_files.h"
#include "edge/ws_session.h"
#include "spdlog/spdlog.h"

namespace chat::edge {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;

namespace {

bool OffersAuthorization(std::string_view header) {
  for (absl::string_view token :
       absl::StrSplit(absl::string_view(header.data(), header.size()), ',')) {
    if (absl::StripAsciiWhitespace(token) == "authorization") return true;
  }
  return false;
}

std::string Truncate(std::string_view s, size_t n) { return std::string(s.substr(0, n)); }

}  // namespace

template <class Stream>
HttpSession<Stream>::HttpSession(Stream&& stream, EdgeContext* context)
    : stream_(std::move(stream)), context_(context) {}

template <class Stream>
void HttpSession<Stream>::Run() {
  if constexpr (kIsTls<Stream>) {
    net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      // One deadline for the TLS handshake and the first request.
      beast::get_lowest_layer(self->stream_).expires_after(self->context_->handshake_timeout);
      self->stream_.async_handshake(net::ssl::stream_base::server,
                                    beast::bind_front_handler(&HttpSession::OnTlsHandshake, self));
    });
  } else {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&HttpSession::DoRead, this->shared_from_this(), true));
  }
}

template <class Stream>
void HttpSession<Stream>::OnTlsHandshake(beast::error_code ec) {
  if (ec) {
    // Plaintext on the TLS port, a bad client hello, or too slow: OpenSSL
    // has sent its alert if any; the socket closes with this session.
    spdlog::debug("tls handshake: {}", ec.message());
    return;
  }
  DoRead(false);
}

template <class Stream>
void HttpSession<Stream>::DoRead(bool reset_deadline) {
  parser_.emplace();
  parser_->header_limit(static_cast<uint32_t>(context_->max_header_bytes));
  parser_->body_limit(0);
  if (reset_deadline) beast::get_lowest_layer(stream_).expires_after(context_->handshake_timeout);
  http::async_read(stream_, buffer_, *parser_,
                   beast::bind_front_handler(&HttpSession::OnRead, this->shared_from_this()));
}

template <class Stream>
void HttpSession<Stream>::Finish(bool write_failed) {
  auto& tcp = beast::get_lowest_layer(stream_);
  if constexpr (kIsTls<Stream>) {
    beast::error_code ignored;
    if (write_failed) {
      tcp.socket().close(ignored);
      return;
    }
    // close_notify, then wait (bounded) for the peer's before closing.
    tcp.expires_after(context_->handshake_timeout);
    stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) {
      beast::error_code ignored;
      beast::get_lowest_layer(self->stream_).socket().close(ignored);
    });
  } else {
    beast::error_code ignored;
    tcp.socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
  }
}

template <class Stream>
void HttpSession<Stream>::OnRead(beast::error_code ec, size_t) {
  if (ec == http::error::end_of_stream) {
    Finish(false);
    return;
  }
  if (ec == http::error::header_limit) {
    Respond(11, false, http::status::request_header_fields_too_large, "text/plain",
            "request header too large\n");
    return;
  }
  if (ec) return;  // timeout, reset, malformed: nothing useful to answer
  Request request = parser_->release();
  if (websocket::is_upgrade(request)) {
    HandleUpgrade(std::move(request));
  } else {
    HandlePlain(request);
  }
}

template <class Stream>
void HttpSession<Stream>::Respond(unsigned version, bool keep_alive, http::status status,
                                  std::string content_type, std::string body,
                                  std::vector<std::pair<std::string, std::string>> headers,
                                  bool head) {
  if (upgrade_ && static_cast<int>(status) >= 400) {
    context_->metrics->HandshakeRefused(static_cast<int>(status));
  }
  auto response = std::make_shared<http::response<http::string_body>>(status, version);
  response->set(http::field::server, "chat-edge");
  if (!content_type.empty()) response->set(http::field::content_type, content_type);
  for (auto& [name, value] : headers) response->set(name, value);
  response->body() = std::move(body);
  response->keep_alive(keep_alive);
  response->prepare_payload();
  // HEAD: the GET's headers (Content-Length included), no body.
  if (head) response->body().clear();
  http::async_write(
      stream_, *response,
      [self = this->shared_from_this(), response, keep_alive](beast::error_code ec, size_t) {
        if (ec || !keep_alive) {
          self->Finish(static_cast<bool>(ec));
          return;
        }
        self->DoRead();
      });
}

template <class Stream>
void HttpSession<Stream>::HandlePlain(const Request& request) {
  const unsigned version = request.version();
  const bool keep_alive = request.keep_alive();
  const std::string_view target(request.target().data(), request.target().size());
  const std::string_view path = target.substr(0, target.find('?'));
  if (request.method() != http::verb::get && request.method() != http::verb::head) {
    Respond(version, keep_alive, http::status::method_not_allowed, "text/plain",
            "only GET and WebSocket upgrades are served\n", {{"Allow", "GET, HEAD"}});
    return;
  }
  if (path == "/healthz") {
    Respond(version, keep_alive, http::status::ok, "text/plain", "ok\n");
    return;
  }
  if (path == "/readyz") {
    const bool directory = context_->directory->Ready();
    const bool messages = context_->messages->Ready();
    const bool ready = directory && messages && !context_->shutting_down;
    Respond(version, keep_alive, ready ? http::status::ok : http::status::service_unavailable,
            "application/json",
            absl::StrCat("{\"ready\":", ready ? "true" : "false",
                         ",\"connection_service\":", directory ? "true" : "false",
                         ",\"message_service\":", messages ? "true" : "false",
                         ",\"connections\":", context_->live_connections.load(), "}\n"));
    return;
  }
  if (path == "/metrics") {
    context_->metrics->SetBackendsReady(context_->directory->Ready(), context_->messages->Ready());
    Respond(version, keep_alive, http::status::ok, kMetricsContentType,
            context_->all_metrics->Text(), {{"Cache-Control", "no-store"}},
            request.method() == http::verb::head);
    return;
  }
  if (path == "/config.json") {
    Respond(version, keep_alive, http::status::ok, "application/json",
            absl::StrCat("{\"auth\":\"", context_->tokens != nullptr ? "jwt" : "name",
                         "\",\"protocol\":2,\"max_message_bytes\":",
                         context_->logic.max_message_bytes, "}\n"),
            {{"Cache-Control", "no-cache"}});
    return;
  }
  if (context_->static_files != nullptr) {
    const auto inm = request[http::field::if_none_match];
    StaticResponse file =
        context_->static_files->Get(target, std::string_view(inm.data(), inm.size()));
    auto response = file.headers;
    Respond(version, keep_alive, static_cast<http::status>(file.status), "", std::move(file.body),
            std::move(response), request.method() == http::verb::head);
    return;
  }
  Respond(version, keep_alive, http::status::not_found, "text/plain", "not found\n");
}

namespace {

// What a banned user's handshake is answered (403).
constexpr char kBannedBody[] = "this user is banned from connecting for now\n";

// The protocol's token carriers, in order: `Sec-WebSocket-Protocol:
// authorization, <jwt>` (the old app), `?token=`, `Authorization: Bearer`.
std::optional<std::string> FindToken(const http::request<http::empty_body>& request) {
  const auto protocols = request[http::field::sec_websocket_protocol];
  std::vector<absl::string_view> offered =
      absl::StrSplit(absl::string_view(protocols.data(), protocols.size()), ',');
  for (size_t i = 0; i + 1 < offered.size(); ++i) {
    if (absl::StripAsciiWhitespace(offered[i]) == "authorization") {
      return std::string(absl::StripAsciiWhitespace(offered[i + 1]));
    }
  }
  const std::string_view target(request.target().data(), request.target().size());
  if (auto raw = FindQueryParam(target, "token")) {
    if (auto decoded = DecodeFormValue(*raw); decoded.ok() && !decoded->empty()) return *decoded;
  }
  const auto auth = request[http::field::authorization];
  absl::string_view header(auth.data(), auth.size());
  if (absl::StartsWithIgnoreCase(header, "Bearer ")) {
    return std::string(absl::StripAsciiWhitespace(header.substr(7)));
  }
  return std::nullopt;
}

}  // namespace

template <class Stream>
void HttpSession<Stream>::HandleUpgrade(Request request) {
  upgrade_ = true;
  const unsigned version = request.version();
  if (context_->shutting_down) {
    Respond(version, false, http::status::service_unavailable, "text/plain",
            "edge is shutting down; reconnect elsewhere\n", {{"Retry-After", "1"}});
    return;
  }
  const auto origin = request[http::field::origin];
  if (!context_->origins->Allows(std::string_view(origin.data(), origin.size()))) {
    Respond(version, false, http::status::forbidden, "text/plain",
            "origin not allowed to open WebSocket connections here\n");
    return;
  }
  const std::string_view target(request.target().data(), request.target().size());
  if (context_->tokens == nullptr) {
    absl::StatusOr<std::string> user = UserFromTarget(target);
    if (!user.ok()) {
      Respond(version, false, http::status::bad_request, "text/plain",
              absl::StrCat(user.status().message(), "\n"));
      return;
    }
    Admit(std::make_shared<Request>(std::move(request)), Identity{*user, 0, ""});
    return;
  }
  std::optional<std::string> token = FindToken(request);
  if (!token.has_value()) {
    Respond(version, false, http::status::unauthorized, "text/plain",
            "a token is required: Sec-WebSocket-Protocol: authorization, <jwt>; or ?token=; or "
            "Authorization: Bearer\n",
            {{"WWW-Authenticate", "Bearer"}});
    return;
  }
  std::optional<std::string> requested_name;
  if (FindQueryParam(target, "name").has_value()) {
    absl::StatusOr<std::string> named = UserFromTarget(target);
    requested_name = named.ok() ? *std::move(named) : "";
  }
  auto req = std::make_shared<Request>(std::move(request));
  context_->identities->Resolve(
      std::move(*token), std::move(requested_name),
      [self = this->shared_from_this(), req](absl::StatusOr<Identity> identity) {
        net::post(self->stream_.get_executor(), [self, req, identity = std::move(identity)] {
          if (identity.ok()) {
            self->Admit(req, *identity);
            return;
          }
          const unsigned version = req->version();
          const std::string body = absl::StrCat(identity.status().message(), "\n");
          switch (HttpStatusForRefusal(identity.status())) {
            case 401:
              self->Respond(version, false, http::status::unauthorized, "text/plain", body,
                            {{"WWW-Authenticate", "Bearer error=\"invalid_token\""}});
              return;
            case 403:
              self->Respond(version, false, http::status::forbidden, "text/plain", body);
              return;
            default:
              spdlog::debug("handshake refused (503): {}", identity.status().ToString());
              self->Respond(version, false, http::status::service_unavailable, "text/plain",
                            absl::StrCat("cannot authenticate now: ", body),
                            {{"Retry-After", "2"}});
          }
        });
      });
}

template <class Stream>
void HttpSession<Stream>::Admit(std::shared_ptr<Request> req, Identity identity) {
  const unsigned version = req->version();
  if (context_->shutting_down) {  // the drain began while the token was checked
    Respond(version, false, http::status::service_unavailable, "text/plain",
            "edge is shutting down; reconnect elsewhere\n", {{"Retry-After", "1"}});
    return;
  }
  // An operator banned this user (Disconnect with a ban; every edge holds
  // the bans from its route stream).
  if (context_->directory->BannedUntil(identity.user) > context_->clock->NowMs()) {
    Respond(version, false, http::status::forbidden, "text/plain", kBannedBody);
    return;
  }
  if (absl::Status s = context_->per_user->Reserve(identity.user); !s.ok()) {
    Respond(version, false, http::status::service_unavailable, "text/plain",
            absl::StrCat(s.message(), "\n"), {{"Retry-After", "5"}});
    return;
  }
  if (context_->live_connections.fetch_add(1) >= context_->max_connections) {
    context_->per_user->Release(identity.user);
    context_->live_connections.fetch_sub(1);
    Respond(version, false, http::status::service_unavailable, "text/plain",
            "edge is at its connection limit; try another edge or later\n", {{"Retry-After", "5"}});
    return;
  }
  const auto protocols = (*req)[http::field::sec_websocket_protocol];
  const bool answer_authorization =
      OffersAuthorization(std::string_view(protocols.data(), protocols.size()));

  NewConnection connection;
  connection.connection_id =
      absl::StrCat(context_->edge_id, "-", absl::Hex(context_->next_connection.fetch_add(1)));
  connection.user = identity.user;
  connection.connected_at_ms = context_->clock->NowMs();
  const auto agent = (*req)[http::field::user_agent];
  connection.user_agent = Truncate(std::string_view(agent.data(), agent.size()), 256);
  beast::error_code ec;
  auto remote = beast::get_lowest_layer(stream_).socket().remote_endpoint(ec);
  if (!ec) connection.ip = remote.address().to_string();

  std::string connection_id = connection.connection_id;
  context_->directory->Register(std::move(connection), [self = this->shared_from_this(), req,
                                                        identity = std::move(identity),
                                                        connection_id, answer_authorization](
                                                           absl::Status status) mutable {
    net::post(self->stream_.get_executor(), [self, req, identity = std::move(identity),
                                             connection_id = std::move(connection_id),
                                             answer_authorization, status]() mutable {
      if (!status.ok()) {
        self->context_->live_connections.fetch_sub(1);
        self->context_->per_user->Release(identity.user);
        spdlog::warn("registration of {} failed: {}", connection_id, status.ToString());
        self->Respond(req->version(), false, http::status::service_unavailable, "text/plain",
                      "connection registry unavailable; retry shortly\n", {{"Retry-After", "2"}});
        return;
      }
      // A ban that arrived while this registration was on its way (the
      // operator's kick could not see a connection not yet registered).
      if (self->context_->directory->BannedUntil(identity.user) > self->context_->clock->NowMs()) {
        self->context_->live_connections.fetch_sub(1);
        self->context_->per_user->Release(identity.user);
        self->context_->directory->Unregister(connection_id);
        self->Respond(req->version(), false, http::status::forbidden, "text/plain", kBannedBody);
        return;
      }
      if constexpr (kIsTls<Stream>) {
        auto session = std::make_shared<WsSession<Stream>>(
            std::move(self->stream_), self->context_, std::move(identity), std::move(connection_id),
            answer_authorization);
        session->Run(std::move(*req));
      } else {
        // Plain connections drop tcp_stream (its timers) for the bare socket
        // and frame with the codec (plain_ws_session.h).
        auto session = std::make_shared<PlainWsSession>(
            self->stream_.release_socket(), self->context_, std::move(identity),
            std::move(connection_id), answer_authorization);
        session->Run(*req);
      }
    });
  });
}

template class HttpSession<PlainStream>;
template class HttpSession<TlsStream>;

}  // namespace chat::edge
