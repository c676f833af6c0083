#include "tests/support/ws_client.h"

#include "absl/strings/str_cat.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/beast/http.hpp"

namespace chat::testing {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
namespace json = boost::json;

WsClient::WsClient() : ws_(ioc_) {}
WsClient::~WsClient() { Close(); }

namespace {
// Runs the io_context until `done` or the timeout; on timeout cancels the
// socket and lets the handler finish so nothing dangles.
bool RunFor(net::io_context& ioc, const bool& done, std::chrono::milliseconds timeout,
            beast::tcp_stream& stream) {
  ioc.restart();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done && std::chrono::steady_clock::now() < deadline) {
    ioc.run_one_for(deadline - std::chrono::steady_clock::now());
  }
  if (done) return true;
  stream.socket().cancel();
  ioc.restart();
  while (!done) ioc.run_one();
  return false;
}
}  // namespace

absl::Status WsClient::Connect(int port, const HandshakeOptions& options,
                               std::chrono::milliseconds timeout) {
  auto& tcp = beast::get_lowest_layer(ws_);
  beast::error_code ec;
  tcp.socket().connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
  if (ec) return absl::UnavailableError(absl::StrCat("connect: ", ec.message()));
  ws_.set_option(websocket::stream_base::decorator([options](websocket::request_type& req) {
    if (!options.subprotocols.empty()) {
      std::string offer;
      for (const auto& p : options.subprotocols) offer += (offer.empty() ? "" : ", ") + p;
      req.set(http::field::sec_websocket_protocol, offer);
    }
    for (const auto& [k, v] : options.headers) req.set(k, v);
  }));
  ws_.read_message_max(64 << 20);
  websocket::response_type response;
  bool done = false;
  ws_.async_handshake(response, "127.0.0.1:" + std::to_string(port), options.target,
                      [&](beast::error_code e) {
                        ec = e;
                        done = true;
                      });
  if (!RunFor(ioc_, done, timeout, tcp)) return absl::DeadlineExceededError("handshake timed out");
  http_status_ = response.result_int();
  http_body_ = response.body();
  if (ec) return absl::UnavailableError(absl::StrCat("handshake: ", ec.message(), " (HTTP ",
                                                     http_status_, ": ", http_body_, ")"));
  accepted_subprotocol_ = std::string(response[http::field::sec_websocket_protocol]);
  open_ = true;
  if (options.expect_hello) {
    auto hello = ReadAction("hello", timeout);
    if (!hello.ok()) return hello.status();
    hello_ = *hello;
  }
  return absl::OkStatus();
}

absl::Status WsClient::SendText(const std::string& text) {
  ws_.text(true);
  beast::error_code ec;
  bool done = false;
  ws_.async_write(net::buffer(text), [&](beast::error_code e, size_t) {
    ec = e;
    done = true;
  });
  if (!RunFor(ioc_, done, 5s, beast::get_lowest_layer(ws_))) {
    return absl::DeadlineExceededError("write timed out");
  }
  if (ec) return absl::UnavailableError(absl::StrCat("write: ", ec.message()));
  return absl::OkStatus();
}

absl::Status WsClient::SendBinary(const std::string& data) {
  ws_.binary(true);
  beast::error_code ec;
  bool done = false;
  ws_.async_write(net::buffer(data), [&](beast::error_code e, size_t) {
    ec = e;
    done = true;
  });
  RunFor(ioc_, done, 5s, beast::get_lowest_layer(ws_));
  ws_.text(true);
  if (ec) return absl::UnavailableError(absl::StrCat("write: ", ec.message()));
  return absl::OkStatus();
}

absl::StatusOr<Frame> WsClient::Read(std::chrono::milliseconds timeout) {
  if (!stash_.empty()) {
    Frame f = std::move(stash_.front());
    stash_.erase(stash_.begin());
    return f;
  }
  if (!open_) {
    Frame f;
    f.closed = true;
    f.close_code = ws_.reason().code;
    return f;
  }
  beast::error_code ec;
  bool done = false;
  ws_.async_read(buffer_, [&](beast::error_code e, size_t) {
    ec = e;
    done = true;
  });
  if (!RunFor(ioc_, done, timeout, beast::get_lowest_layer(ws_))) {
    return absl::DeadlineExceededError(
        absl::StrCat("no frame within ", timeout.count(), " ms"));
  }
  Frame f;
  if (ec) {
    open_ = false;
    f.closed = true;
    f.close_code = ws_.reason().code;
    f.close_reason = std::string(ws_.reason().reason.data(), ws_.reason().reason.size());
    if (ec != websocket::error::closed) {
      f.close_reason = absl::StrCat("(", ec.message(), ") ", f.close_reason);
    }
    return f;
  }
  f.text = ws_.got_text();
  f.payload = beast::buffers_to_string(buffer_.data());
  buffer_.consume(buffer_.size());
  if (f.text) {
    json::error_code jec;
    json::value v = json::parse(f.payload, jec);
    if (!jec && v.is_object()) f.json = v.as_object();
  }
  return f;
}

absl::StatusOr<json::object> WsClient::ReadAction(const std::string& action,
                                                  std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<Frame> skipped;
  absl::StatusOr<json::object> result = absl::DeadlineExceededError(
      absl::StrCat("no '", action, "' frame within ", timeout.count(), " ms"));
  // Look at stashed frames first.
  for (auto it = stash_.begin(); it != stash_.end(); ++it) {
    const json::value* a = it->json.if_contains("action");
    if (a != nullptr && a->is_string() && a->get_string() == action) {
      json::object obj = it->json;
      stash_.erase(it);
      return obj;
    }
  }
  std::vector<Frame> old_stash = std::move(stash_);
  stash_.clear();
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    auto frame = Read(left);
    if (!frame.ok()) break;
    if (frame->closed) {
      result = absl::UnavailableError(absl::StrCat("closed with ", frame->close_code, " (",
                                                   frame->close_reason, ") while waiting for '",
                                                   action, "'"));
      skipped.push_back(std::move(*frame));
      break;
    }
    const json::value* a = frame->json.if_contains("action");
    if (a != nullptr && a->is_string() && a->get_string() == action) {
      result = frame->json;
      break;
    }
    skipped.push_back(std::move(*frame));
  }
  stash_ = std::move(old_stash);
  for (auto& f : skipped) stash_.push_back(std::move(f));
  return result;
}

absl::StatusOr<uint16_t> WsClient::ReadUntilClosed(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return absl::DeadlineExceededError("connection not closed in time");
    auto frame = Read(left);
    if (!frame.ok()) return frame.status();
    if (frame->closed) return frame->close_code;
  }
}

void WsClient::Close() {
  if (!open_) {
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
    return;
  }
  open_ = false;
  bool done = false;
  ws_.async_close(websocket::close_code::normal, [&](beast::error_code) { done = true; });
  RunFor(ioc_, done, 2s, beast::get_lowest_layer(ws_));
  beast::error_code ignored;
  beast::get_lowest_layer(ws_).socket().close(ignored);
}

void WsClient::SetReceiveBuffer(int bytes) {
  beast::error_code ignored;
  beast::get_lowest_layer(ws_).socket().set_option(net::socket_base::receive_buffer_size(bytes),
                                                   ignored);
}

}  // namespace chat::testing
