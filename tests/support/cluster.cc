#include "tests/support/cluster.h"

#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/ssl/host_name_verification.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "boost/beast/ssl.hpp"
#include "tests/support/ws_client.h"

namespace chat::testing {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;

namespace {
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

// One GET on a connected `stream` (plain or TLS) driven by `ioc`.
template <class Stream>
absl::StatusOr<HttpResult> Get(net::io_context& ioc, Stream& stream, int port,
                               const std::string& target,
                               const std::vector<std::pair<std::string, std::string>>& headers,
                               std::chrono::milliseconds timeout) {
  auto& tcp = beast::get_lowest_layer(stream);
  beast::error_code ec;
  http::request<http::empty_body> req(http::verb::get, target, 11);
  req.set(http::field::host, absl::StrCat("127.0.0.1:", port));
  for (const auto& [k, v] : headers) req.set(k, v);
  bool done = false;
  http::async_write(stream, req, [&](beast::error_code e, size_t) {
    ec = e;
    done = true;
  });
  if (!RunFor(ioc, done, timeout, tcp) || ec) return absl::UnavailableError("write failed");
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  done = false;
  http::async_read(stream, buffer, res, [&](beast::error_code e, size_t) {
    ec = e;
    done = true;
  });
  if (!RunFor(ioc, done, timeout, tcp)) return absl::DeadlineExceededError("read timed out");
  if (ec) return absl::UnavailableError(absl::StrCat("read: ", ec.message()));
  HttpResult result;
  result.status = res.result_int();
  for (const auto& field : res) {
    result.headers[absl::AsciiStrToLower(std::string(field.name_string()))] =
        std::string(field.value());
  }
  result.body = res.body();
  return result;
}

absl::Status ConnectLoopback(net::ip::tcp::socket& socket, int port) {
  beast::error_code ec;
  socket.connect({net::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port)}, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("connect: ", ec.message()));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<HttpResult> HttpGet(int port, const std::string& target,
                                   const std::vector<std::pair<std::string, std::string>>& headers,
                                   std::chrono::milliseconds timeout) {
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  if (absl::Status s = ConnectLoopback(stream.socket(), port); !s.ok()) return s;
  beast::error_code ec;
  return Get(ioc, stream, port, target, headers, timeout);
}

absl::StatusOr<HttpResult> HttpsGet(int port, const std::string& target, const std::string& ca_file,
                                    const std::vector<std::pair<std::string, std::string>>& headers,
                                    std::chrono::milliseconds timeout) {
  auto context = ClientTlsContext(ca_file);
  if (!context.ok()) return context.status();
  net::io_context ioc;
  beast::ssl_stream<beast::tcp_stream> stream(ioc, **context);
  stream.set_verify_callback(net::ssl::host_name_verification("127.0.0.1"));
  auto& tcp = beast::get_lowest_layer(stream);
  if (absl::Status s = ConnectLoopback(tcp.socket(), port); !s.ok()) return s;
  beast::error_code ec;
  bool done = false;
  stream.async_handshake(net::ssl::stream_base::client, [&](beast::error_code e) {
    ec = e;
    done = true;
  });
  if (!RunFor(ioc, done, timeout, tcp))
    return absl::DeadlineExceededError("TLS handshake timed out");
  if (ec) return absl::UnavailableError(absl::StrCat("TLS handshake: ", ec.message()));
  return Get(ioc, stream, port, target, headers, timeout);
}

absl::StatusOr<std::string> RawRequest(int port, const std::string& request,
                                       std::chrono::milliseconds timeout) {
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  if (absl::Status s = ConnectLoopback(stream.socket(), port); !s.ok()) return s;
  beast::error_code ec;
  bool done = false;
  net::async_write(stream, net::buffer(request), [&](beast::error_code e, size_t) {
    ec = e;
    done = true;
  });
  if (!RunFor(ioc, done, timeout, stream)) return absl::DeadlineExceededError("write timed out");
  std::string out;
  char buf[4096];
  while (true) {
    done = false;
    size_t n = 0;
    stream.socket().async_read_some(net::buffer(buf), [&](beast::error_code e, size_t got) {
      ec = e;
      n = got;
      done = true;
    });
    if (!RunFor(ioc, done, timeout, stream)) break;
    if (ec) break;
    out.append(buf, n);
  }
  return out;
}

namespace {

// The port of the last "metrics on host:port/metrics" log line of a service
// (logged before "listening on", so present once that was seen; text or JSON
// logs); 0 when there is none (metrics turned off).
int MetricsPortFromLog(const std::string& log_path) {
  std::ifstream in(log_path);
  std::string line;
  int port = 0;
  while (std::getline(in, line)) {
    const size_t at = line.find("metrics on ");
    if (at == std::string::npos) continue;
    const size_t end = line.find("/metrics", at);
    const size_t colon = line.rfind(':', end);
    int p = 0;
    if (end != std::string::npos && colon != std::string::npos && colon > at &&
        absl::SimpleAtoi(line.substr(colon + 1, end - colon - 1), &p)) {
      port = p;
    }
  }
  return port;
}

}  // namespace

bool Eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(20ms);  // polling interval, bounded by the deadline
  }
  return condition();
}

Cluster::Cluster(std::string name, ClusterOptions options)
    : name_(std::move(name)), options_(std::move(options)) {
  edges_.resize(options_.edges);
  edge_ports_.resize(options_.edges, 0);
  messages_.resize(std::max(1, options_.message_services));
  message_ports_.resize(messages_.size(), 0);
  message_metrics_ports_.resize(messages_.size(), 0);
  std::filesystem::create_directories(BinaryDir() + "/test-logs");
  if (options_.message_store.empty() || options_.connection_store.empty()) {
    // Each cluster its own data: tests run in parallel and must not see each
    // other's users or messages.
    std::string dir_template =
        (std::filesystem::temp_directory_path() / "chat-cluster-XXXXXX").string();
    if (mkdtemp(dir_template.data()) != nullptr) data_dir_ = dir_template;
    if (options_.message_store.empty())
      options_.message_store = "sqlite:" + data_dir_ + "/messages.db";
    if (options_.connection_store.empty())
      options_.connection_store = "sqlite:" + data_dir_ + "/users.db";
  }
}

Cluster::~Cluster() {
  edges_.clear();
  messages_.clear();
  connection_.reset();
  if (!data_dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(data_dir_, ignored);
  }
}

std::string Cluster::LogPath(const std::string& process) const {
  return absl::StrCat(BinaryDir(), "/test-logs/", name_, ".", process, ".log");
}

absl::Status Cluster::StartConnectionService() {
  connection_ = std::make_unique<ChildProcess>();
  std::vector<std::string> argv = {BinaryDir() + "/connection-service/connection-service",
                                   absl::StrCat("--listen=127.0.0.1:", connection_port_)};
  if (!options_.connection_store.empty()) argv.push_back("--store=" + options_.connection_store);
  argv.push_back("--metrics_listen=127.0.0.1:0");  // tests run side by side: no fixed port
  argv.insert(argv.end(), options_.connection_flags.begin(), options_.connection_flags.end());
  if (auto s = connection_->Start(argv, {}, LogPath("connection-service")); !s.ok()) return s;
  auto port = connection_->WaitListening(10s);
  if (!port.ok()) return port.status();
  connection_port_ = *port;
  connection_metrics_port_ = MetricsPortFromLog(LogPath("connection-service"));
  return absl::OkStatus();
}

absl::Status Cluster::StartMessageService(int index) {
  auto& process = messages_[index];
  process = std::make_unique<ChildProcess>();
  const std::string log =
      index == 0 ? LogPath("message-service") : LogPath(absl::StrCat("message-service", index + 1));
  std::vector<std::string> argv = {
      BinaryDir() + "/message-service/message-service",
      absl::StrCat("--listen=127.0.0.1:", message_ports_[index]),
      absl::StrCat("--connection_service=127.0.0.1:", connection_port_)};
  if (!options_.message_store.empty()) argv.push_back("--store=" + options_.message_store);
  argv.push_back("--metrics_listen=127.0.0.1:0");
  argv.insert(argv.end(), options_.message_flags.begin(), options_.message_flags.end());
  if (auto s = process->Start(argv, {}, log); !s.ok()) return s;
  auto port = process->WaitListening(10s);
  if (!port.ok()) return port.status();
  message_ports_[index] = *port;
  message_metrics_ports_[index] = MetricsPortFromLog(log);
  return absl::OkStatus();
}

absl::Status Cluster::StartEdge(int index) {
  edges_[index] = std::make_unique<ChildProcess>();
  std::vector<std::string> argv = {
      BinaryDir() + "/edge/edge", absl::StrCat("--listen=127.0.0.1:", edge_ports_[index]),
      absl::StrCat("--connection_service=127.0.0.1:", connection_port_),
      "--message_service=" + absl::StrJoin(message_ports_, ",",
                                           [](std::string* out, int port) {
                                             absl::StrAppend(out, "127.0.0.1:", port);
                                           }),
      absl::StrCat("--edge_id=e", index + 1)};
  argv.insert(argv.end(), options_.edge_flags.begin(), options_.edge_flags.end());
  if (auto s = edges_[index]->Start(argv, {}, LogPath(absl::StrCat("edge", index + 1))); !s.ok()) {
    return s;
  }
  auto port = edges_[index]->WaitListening(10s);
  if (!port.ok()) return port.status();
  edge_ports_[index] = *port;
  return absl::OkStatus();
}

absl::Status Cluster::WaitEdgeReady(int index, std::chrono::milliseconds timeout) {
  const bool ready = Eventually(
      [&] {
        auto r = options_.edge_tls_ca.empty()
                     ? HttpGet(edge_ports_[index], "/readyz", {}, 1s)
                     : HttpsGet(edge_ports_[index], "/readyz", options_.edge_tls_ca, {}, 1s);
        return r.ok() && r->status == 200;
      },
      timeout);
  return ready ? absl::OkStatus() : absl::DeadlineExceededError("edge never became ready");
}

absl::Status Cluster::Start() {
  if (auto s = StartConnectionService(); !s.ok()) return s;
  for (size_t i = 0; i < messages_.size(); ++i) {
    if (auto s = StartMessageService(static_cast<int>(i)); !s.ok()) return s;
  }
  for (int i = 0; i < options_.edges; ++i) {
    if (auto s = StartEdge(i); !s.ok()) return s;
  }
  for (int i = 0; i < options_.edges; ++i) {
    if (auto s = WaitEdgeReady(i); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<int> Cluster::Stop(ChildProcess& process, int sig,
                                  std::chrono::milliseconds timeout) {
  process.Signal(sig);
  return process.Wait(timeout);
}

}  // namespace chat::testing
