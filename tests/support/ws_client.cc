#include "tests/support/ws_client.h"

#include <future>

#include "absl/strings/str_cat.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/ssl/host_name_verification.hpp"
#include "boost/beast/http.hpp"

namespace chat::testing {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace net = boost::asio;
namespace json = boost::json;

WsClient::WsClient() : plain_ws_(std::make_unique<PlainWs>(ioc_)) {}
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

absl::StatusOr<std::unique_ptr<net::ssl::context>> ClientTlsContext(const std::string& ca_file) {
  auto context = std::make_unique<net::ssl::context>(net::ssl::context::tls_client);
  beast::error_code ec;
  context->load_verify_file(ca_file, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat("trust anchor ", ca_file, ": ", ec.message()));
  }
  context->set_verify_mode(net::ssl::verify_peer);
  return context;
}

absl::Status WsClient::Connect(int port, const HandshakeOptions& options,
                               std::chrono::milliseconds timeout) {
  if (!options.tls_ca_file.empty()) {
    auto context = ClientTlsContext(options.tls_ca_file);
    if (!context.ok()) return context.status();
    tls_context_ = std::move(*context);
    tls_ws_ = std::make_unique<TlsWs>(ioc_, *tls_context_);
    tls_ws_->next_layer().set_verify_callback(net::ssl::host_name_verification("127.0.0.1"));
    plain_ws_.reset();
  }
  auto& tcp = Tcp();
  beast::error_code ec;
  tcp.socket().connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
  if (ec) return absl::UnavailableError(absl::StrCat("connect: ", ec.message()));
  if (tls_ws_) {
    bool done = false;
    tls_ws_->next_layer().async_handshake(net::ssl::stream_base::client, [&](beast::error_code e) {
      ec = e;
      done = true;
    });
    if (!RunFor(ioc_, done, timeout, tcp)) {
      return absl::DeadlineExceededError("TLS handshake timed out");
    }
    if (ec) return absl::UnavailableError(absl::StrCat("TLS handshake: ", ec.message()));
  }
  return WithWs([&](auto& ws) { return Handshake(ws, port, options, timeout); });
}

template <class Ws>
absl::Status WsClient::Handshake(Ws& ws, int port, const HandshakeOptions& options,
                                 std::chrono::milliseconds timeout) {
  auto& tcp = beast::get_lowest_layer(ws);
  beast::error_code ec;
  ws.set_option(websocket::stream_base::decorator([options](websocket::request_type& req) {
    if (!options.subprotocols.empty()) {
      std::string offer;
      for (const auto& p : options.subprotocols) offer += (offer.empty() ? "" : ", ") + p;
      req.set(http::field::sec_websocket_protocol, offer);
    }
    for (const auto& [k, v] : options.headers) req.set(k, v);
  }));
  ws.read_message_max(64 << 20);
  websocket::response_type response;
  bool done = false;
  ws.async_handshake(response, "127.0.0.1:" + std::to_string(port), options.target,
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
  if (!options.start_reader) return absl::OkStatus();
  StartReader();
  if (options.expect_hello) {
    auto hello = ReadAction("hello", timeout);
    if (!hello.ok()) return hello.status();
    hello_ = *hello;
  }
  return absl::OkStatus();
}

void WsClient::StartReader() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] {
    auto guard = net::make_work_guard(ioc_);
    ioc_.restart();
    WithWs([this](auto& ws) {
      ws.async_read(buffer_, [this](beast::error_code ec, size_t) { OnRead(ec); });
    });
    ioc_.run();
  });
}

void WsClient::OnRead(beast::error_code ec) {
  Frame f;
  if (ec) {
    f.closed = true;
    const websocket::close_reason reason = WithWs([](auto& ws) { return ws.reason(); });
    f.close_code = reason.code;
    f.close_reason = std::string(reason.reason.data(), reason.reason.size());
    if (ec != websocket::error::closed) {
      f.close_reason = absl::StrCat("(", ec.message(), ") ", f.close_reason);
    }
  } else {
    f.text = WithWs([](auto& ws) { return ws.got_text(); });
    f.payload = beast::buffers_to_string(buffer_.data());
    buffer_.consume(buffer_.size());
    if (f.text) {
      json::error_code jec;
      json::value v = json::parse(f.payload, jec);
      if (!jec && v.is_object()) f.json = v.as_object();
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    incoming_.push_back(std::move(f));
    if (ec) reader_done_ = true;
  }
  cv_.notify_all();
  if (!ec) {
    WithWs([this](auto& ws) {
      ws.async_read(buffer_, [this](beast::error_code e, size_t) { OnRead(e); });
    });
  }
}

absl::Status WsClient::Write(const std::string& data, bool text) {
  if (!thread_.joinable()) return absl::FailedPreconditionError("not connected");
  auto done = std::make_shared<std::promise<beast::error_code>>();
  auto future = done->get_future();
  auto payload = std::make_shared<std::string>(data);
  net::post(ioc_, [this, done, payload, text] {
    WithWs([&](auto& ws) {
      ws.text(text);
      ws.async_write(net::buffer(*payload),
                     [done, payload](beast::error_code ec, size_t) { done->set_value(ec); });
    });
  });
  if (future.wait_for(10s) != std::future_status::ready) {
    return absl::DeadlineExceededError("write timed out (is the server reading?)");
  }
  const beast::error_code ec = future.get();
  if (ec) return absl::UnavailableError(absl::StrCat("write: ", ec.message()));
  return absl::OkStatus();
}

absl::Status WsClient::SendText(const std::string& text) { return Write(text, true); }
absl::Status WsClient::SendBinary(const std::string& data) { return Write(data, false); }

absl::StatusOr<Frame> WsClient::Read(std::chrono::milliseconds timeout) {
  if (!stash_.empty()) {
    Frame f = std::move(stash_.front());
    stash_.erase(stash_.begin());
    return f;
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [this] { return !incoming_.empty() || (reader_done_ && incoming_.empty() && closed_seen_); })) {
    return absl::DeadlineExceededError(absl::StrCat("no frame within ", timeout.count(), " ms"));
  }
  if (incoming_.empty()) {
    Frame f;
    f.closed = true;
    f.close_code = last_close_code_;
    return f;
  }
  Frame f = std::move(incoming_.front());
  incoming_.pop_front();
  if (f.closed) {
    closed_seen_ = true;
    last_close_code_ = f.close_code;
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
  if (!thread_.joinable()) {
    beast::error_code ignored;
    Tcp().socket().close(ignored);
    return;
  }
  auto done = std::make_shared<std::promise<void>>();
  auto future = done->get_future();
  net::post(ioc_, [this, done] {
    WithWs([&](auto& ws) {
      if (!ws.is_open()) {
        done->set_value();
        return;
      }
      ws.async_close(websocket::close_code::normal,
                     [done](beast::error_code) { done->set_value(); });
    });
  });
  future.wait_for(3s);
  net::post(ioc_, [this] {
    beast::error_code ignored;
    Tcp().socket().close(ignored);
  });
  ioc_.stop();
  thread_.join();
}

void WsClient::SetReceiveBuffer(int bytes) {
  beast::error_code ignored;
  Tcp().socket().set_option(net::socket_base::receive_buffer_size(bytes), ignored);
}

}  // namespace chat::testing
