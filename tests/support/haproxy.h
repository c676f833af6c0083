#ifndef CHAT_TESTS_SUPPORT_HAPROXY_H_
#define CHAT_TESTS_SUPPORT_HAPROXY_H_

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "tests/support/process.h"

namespace chat::testing {

// A real HAProxy (Debian's /usr/sbin/haproxy) in the foreground (-db), with a
// configuration written to a temporary directory holding the essentials of
// docs/haproxy.cfg: a frontend and a stats page on free loopback ports, the
// edges as one leastconn backend checked on /readyz, a WebSocket tunnel
// timeout, and retries on another edge while one drains.
class Haproxy {
 public:
  struct Options {
    // Health checks: every `check_interval`, `fall` failures mark an edge
    // down and `rise` successes up. Tests check often to react quickly.
    std::chrono::milliseconds check_interval = std::chrono::milliseconds(200);
    int fall = 2;
    int rise = 1;
  };

  Haproxy() = default;
  Haproxy(const Haproxy&) = delete;
  Haproxy& operator=(const Haproxy&) = delete;
  ~Haproxy();  // SIGKILL, then the directory is removed

  // `servers`: (name, port) of each edge on 127.0.0.1. Fails (never skips)
  // when haproxy is not installed or does not serve within 10 s.
  absl::Status Start(const std::vector<std::pair<std::string, int>>& servers,
                     const std::string& log_path, Options options);
  absl::Status Start(const std::vector<std::pair<std::string, int>>& servers,
                     const std::string& log_path) {
    return Start(servers, log_path, Options());
  }

  int port() const { return port_; }
  int stats_port() const { return stats_port_; }

  // The status HAProxy's stats give each server of the backend ("UP",
  // "DOWN", "UP 1/2" while a state change is under way...); empty when the
  // stats cannot be read.
  std::map<std::string, std::string> ServerStatus() const;

 private:
  std::string Config(const std::vector<std::pair<std::string, int>>& servers,
                     const Options& options) const;
  // Until the stats page answers (HAProxy parsed its configuration and bound
  // its ports), or HAProxy exits.
  absl::Status WaitServing();

  std::unique_ptr<ChildProcess> process_;
  std::string dir_;
  int port_ = 0;
  int stats_port_ = 0;
};

}  // namespace chat::testing

#endif  // CHAT_TESTS_SUPPORT_HAPROXY_H_
