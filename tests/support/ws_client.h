#ifndef CHAT_TESTS_SUPPORT_WS_CLIENT_H_
#define CHAT_TESTS_SUPPORT_WS_CLIENT_H_

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ssl/context.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/ssl.hpp"
#include "boost/beast/websocket.hpp"
#include "boost/beast/websocket/ssl.hpp"
#include "boost/json.hpp"

namespace chat::testing {

using namespace std::chrono_literals;

struct Frame {
  bool closed = false;      // the server closed the connection
  uint16_t close_code = 0;  // when closed
  std::string close_reason;
  bool text = true;
  std::string payload;
  boost::json::object json;  // parsed when text and an object
};

struct HandshakeOptions {
  std::string target = "/?name=alice";
  std::vector<std::string> subprotocols;  // Sec-WebSocket-Protocol offer
  std::vector<std::pair<std::string, std::string>> headers;
  bool expect_hello = true;  // read and check the hello frame
  bool start_reader = true;  // false: nothing is read until StartReader()
  // Set: wss:// — TLS first, trusting only the certificates in this PEM file,
  // and the server's certificate must name 127.0.0.1.
  std::string tls_ca_file;
};

// A client TLS context trusting only `ca_file` (PEM), verifying the peer.
absl::StatusOr<std::unique_ptr<boost::asio::ssl::context>> ClientTlsContext(
    const std::string& ca_file);

// A blocking WebSocket client with a deadline on every step, for tests. After
// the handshake a background thread reads continuously into a queue, so a
// read that times out never disturbs the stream.
class WsClient {
 public:
  WsClient();
  ~WsClient();

  absl::Status Connect(int port, const HandshakeOptions& options = {},
                       std::chrono::milliseconds timeout = 5s);
  // When Connect failed at the HTTP level: the status and body the server sent.
  int http_status() const { return http_status_; }
  const std::string& http_body() const { return http_body_; }
  const std::string& accepted_subprotocol() const { return accepted_subprotocol_; }
  const boost::json::object& hello() const { return hello_; }

  absl::Status SendText(const std::string& text);
  absl::Status SendJson(const boost::json::object& obj) {
    return SendText(boost::json::serialize(obj));
  }
  absl::Status SendBinary(const std::string& data);
  // The next frame, or the close; DeadlineExceeded when nothing arrives.
  absl::StatusOr<Frame> Read(std::chrono::milliseconds timeout = 5s);
  // Reads until a JSON frame whose "action" is `action` arrives (others are
  // kept for later reads); error if the connection closes or time runs out.
  absl::StatusOr<boost::json::object> ReadAction(const std::string& action,
                                                 std::chrono::milliseconds timeout = 5s);
  // Reads until the server closes; returns the close code.
  absl::StatusOr<uint16_t> ReadUntilClosed(std::chrono::milliseconds timeout = 5s);
  void Close();
  // Shrinks the socket's receive buffer (a slow consumer); call before
  // StartReader.
  void SetReceiveBuffer(int bytes);
  void StartReader();

 private:
  using PlainWs = boost::beast::websocket::stream<boost::beast::tcp_stream>;
  using TlsWs = boost::beast::websocket::stream<boost::beast::ssl_stream<boost::beast::tcp_stream>>;

  void OnRead(boost::beast::error_code ec);
  absl::Status Write(const std::string& data, bool text);
  // Calls f with whichever websocket stream this client uses.
  template <class F>
  decltype(auto) WithWs(F&& f) {
    return tls_ws_ ? f(*tls_ws_) : f(*plain_ws_);
  }
  boost::beast::tcp_stream& Tcp() {
    return tls_ws_ ? boost::beast::get_lowest_layer(*tls_ws_)
                   : boost::beast::get_lowest_layer(*plain_ws_);
  }
  template <class Ws>
  absl::Status Handshake(Ws& ws, int port, const HandshakeOptions& options,
                         std::chrono::milliseconds timeout);

  boost::asio::io_context ioc_;
  std::unique_ptr<boost::asio::ssl::context> tls_context_;
  std::unique_ptr<PlainWs> plain_ws_;  // exactly one of these two
  std::unique_ptr<TlsWs> tls_ws_;
  boost::beast::flat_buffer buffer_;
  std::vector<Frame> stash_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Frame> incoming_;  // guarded by mu_
  bool reader_done_ = false;    // guarded by mu_
  bool closed_seen_ = false;    // the close frame was handed out (guarded by mu_)
  uint16_t last_close_code_ = 0;
  std::thread thread_;
  int http_status_ = 0;
  std::string http_body_;
  std::string accepted_subprotocol_;
  boost::json::object hello_;
  bool open_ = false;
};

}  // namespace chat::testing

#endif  // CHAT_TESTS_SUPPORT_WS_CLIENT_H_
