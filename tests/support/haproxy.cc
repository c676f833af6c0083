#include "tests/support/haproxy.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/support/cluster.h"

namespace chat::testing {

namespace {
constexpr char kHaproxy[] = "/usr/sbin/haproxy";
}  // namespace

Haproxy::~Haproxy() {
  process_.reset();  // SIGKILL, then reaped
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

absl::Status Haproxy::Start(const std::vector<std::pair<std::string, int>>& servers,
                            const std::string& log_path, Options options) {
  if (access(kHaproxy, X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(kHaproxy, " is missing: run scripts/install-deps.sh (Debian's haproxy)"));
  }
  if (dir_.empty()) {
    std::string dir_template =
        (std::filesystem::temp_directory_path() / "chat-haproxy-XXXXXX").string();
    if (mkdtemp(dir_template.data()) == nullptr) return absl::InternalError("mkdtemp failed");
    dir_ = dir_template;
  }
  absl::Status last = absl::UnknownError("not started");
  // The ports are free when picked but not reserved: another test may take
  // one before HAProxy binds it, so a failed start is retried on new ones.
  for (int attempt = 0; attempt < 3; ++attempt) {
    port_ = FreeLoopbackPort();
    stats_port_ = FreeLoopbackPort();
    const std::string config = dir_ + "/haproxy.cfg";
    std::ofstream(config) << Config(servers, options);
    process_ = std::make_unique<ChildProcess>();
    last = process_->Start({kHaproxy, "-db", "-f", config}, {}, log_path);
    if (!last.ok()) return last;
    last = WaitServing();
    if (last.ok()) return last;
  }
  return last;
}

std::map<std::string, std::string> Haproxy::ServerStatus() const {
  std::map<std::string, std::string> result;
  auto page = HttpGet(stats_port_, "/stats;csv", {}, 1s);
  if (!page.ok() || page->status != 200) return result;
  std::vector<std::string> lines = absl::StrSplit(page->body, '\n');
  if (lines.empty() || lines[0].rfind("# ", 0) != 0) return result;
  const std::vector<std::string> header = absl::StrSplit(lines[0].substr(2), ',');
  int status_column = -1;
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i] == "status") status_column = static_cast<int>(i);
  }
  if (status_column < 0) return result;
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::vector<std::string> row = absl::StrSplit(lines[i], ',');
    if (row.size() <= static_cast<size_t>(status_column) || row[0] != "edges") continue;
    if (row[1] == "BACKEND") continue;
    result[row[1]] = row[status_column];
  }
  return result;
}

std::string Haproxy::Config(const std::vector<std::pair<std::string, int>>& servers,
                            const Options& options) const {
  std::string config = absl::StrCat(
      "global\n"
      "  maxconn 4096\n"
      // The port was picked free earlier: without SO_REUSEPORT a process
      // that took it in between makes the start fail instead of splitting
      // that process's connections with HAProxy.
      "  noreuseport\n"
      "defaults\n"
      "  mode http\n"
      "  timeout connect 1s\n"
      "  timeout client 30s\n"
      "  timeout server 30s\n"
      // A WebSocket is a tunnel once upgraded: idle chats must outlive the
      // HTTP timeouts.
      "  timeout tunnel 1h\n"
      // A draining or dead edge refuses connections before the checks mark
      // it down: retry those on another edge.
      "  retries 3\n"
      "  option redispatch 1\n"
      "frontend chat\n"
      "  bind 127.0.0.1:",
      port_,
      "\n"
      "  default_backend edges\n"
      "backend edges\n"
      "  balance leastconn\n"
      "  option httpchk GET /readyz\n"
      "  http-check expect status 200\n"
      "  default-server inter ",
      options.check_interval.count(), "ms fall ", options.fall, " rise ", options.rise, "\n");
  for (const auto& [name, port] : servers) {
    absl::StrAppend(&config, "  server ", name, " 127.0.0.1:", port, " check\n");
  }
  absl::StrAppend(&config,
                  "listen stats\n"
                  "  bind 127.0.0.1:",
                  stats_port_,
                  "\n"
                  "  stats enable\n"
                  "  stats uri /stats\n");
  return config;
}

absl::Status Haproxy::WaitServing() {
  const bool serving = Eventually(
      [&] {
        if (auto exited = process_->Wait(0ms); exited.ok()) return true;  // reported below
        auto page = HttpGet(stats_port_, "/stats;csv", {}, 1s);
        return page.ok() && page->status == 200 && HttpGet(port_, "/healthz", {}, 1s).ok();
      },
      10s);
  if (!process_->running()) return absl::UnavailableError("haproxy exited (see its log)");
  return serving ? absl::OkStatus() : absl::DeadlineExceededError("haproxy never served");
}

}  // namespace chat::testing
