#ifndef CHAT_EDGE_HTTP_SESSION_H_
#define CHAT_EDGE_HTTP_SESSION_H_

#include <memory>
#include <optional>

#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "edge/edge_context.h"
#include "edge/transport.h"

namespace chat::edge {

// One accepted TCP connection until it upgrades: plain GETs (health,
// readiness, the web UI) with keep-alive, or a WebSocket upgrade that is
// authenticated and registered before it is accepted. `Stream` is PlainStream
// or TlsStream (transport.h); with TLS, Run() does the server handshake first,
// within the same handshake_timeout as the first request.
template <class Stream>
class HttpSession final : public std::enable_shared_from_this<HttpSession<Stream>> {
 public:
  HttpSession(Stream&& stream, EdgeContext* context);
  void Run();

 private:
  using Request = boost::beast::http::request<boost::beast::http::empty_body>;
  void OnTlsHandshake(boost::beast::error_code ec);
  // reset_deadline false: the first request after a TLS handshake shares its
  // deadline.
  void DoRead(bool reset_deadline = true);
  void OnRead(boost::beast::error_code ec, size_t bytes);
  void HandleUpgrade(Request request);
  // Identity established: limits, registration, then the WebSocket session.
  void Admit(std::shared_ptr<Request> request, Identity identity);
  void HandlePlain(const Request& request);
  void Respond(unsigned version, bool keep_alive, boost::beast::http::status status,
               std::string content_type, std::string body,
               std::vector<std::pair<std::string, std::string>> headers = {}, bool head = false);
  // No more requests on this connection: half-close (plain) or close_notify
  // (TLS, bounded by handshake_timeout).
  void Finish(bool write_failed);

  Stream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::empty_body>> parser_;
  EdgeContext* context_;
  bool upgrade_ = false;  // the request asks for a WebSocket: errors are refusals
};

extern template class HttpSession<PlainStream>;
extern template class HttpSession<TlsStream>;

}  // namespace chat::edge

#endif  // CHAT_EDGE_HTTP_SESSION_H_
