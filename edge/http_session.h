#ifndef CHAT_EDGE_HTTP_SESSION_H_
#define CHAT_EDGE_HTTP_SESSION_H_

#include <memory>
#include <optional>

#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "edge/edge_context.h"

namespace chat::edge {

// One accepted TCP connection until it upgrades: plain GETs (health,
// readiness, the web UI) with keep-alive, or a WebSocket upgrade that is
// authenticated and registered before it is accepted.
class HttpSession final : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(boost::asio::ip::tcp::socket&& socket, EdgeContext* context);
  void Run();

 private:
  using Request = boost::beast::http::request<boost::beast::http::empty_body>;
  void DoRead();
  void OnRead(boost::beast::error_code ec, size_t bytes);
  void HandleUpgrade(Request request);
  // Identity established: limits, registration, then the WebSocket session.
  void Admit(std::shared_ptr<Request> request, Identity identity);
  void HandlePlain(const Request& request);
  void Respond(unsigned version, bool keep_alive, boost::beast::http::status status,
               std::string content_type, std::string body,
               std::vector<std::pair<std::string, std::string>> headers = {}, bool head = false);

  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::empty_body>> parser_;
  EdgeContext* context_;
};

}  // namespace chat::edge

#endif  // CHAT_EDGE_HTTP_SESSION_H_
