#ifndef CHAT_TESTS_SUPPORT_REDIS_SERVER_H_
#define CHAT_TESTS_SUPPORT_REDIS_SERVER_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tests/support/process.h"

namespace chat::testing {

// A real redis-server for one test: its own temporary directory (config,
// log) and a free port on 127.0.0.1, nothing persisted (a restart comes back
// empty, like a Redis that lost its memory).
class RedisServer {
 public:
  struct Options {
    int replica_of = 0;  // a primary's port: start as its replica
  };
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start(Options options);
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start() { return Start(Options()); }
  ~RedisServer();  // kills the server, removes its directory

  absl::Status Stop();     // SIGTERM, waits for the exit
  absl::Status Kill();     // SIGKILL, waits for the exit
  absl::Status Restart();  // starts again on the same port, empty
  // SIGSTOP / SIGCONT: a server that hangs (connections accepted by the
  // kernel, nothing answered).
  absl::Status Suspend();
  void Resume();
  bool running() const { return process_ != nullptr; }

  int port() const { return port_; }
  std::string Url() const;  // redis://127.0.0.1:PORT
  // Runs one command; a string, status or integer reply comes back as text,
  // an array as its elements joined by '\n', an error reply as an error.
  absl::StatusOr<std::string> Command(const std::vector<std::string>& argv) const;

 private:
  RedisServer(std::string dir, Options options) : dir_(std::move(dir)), options_(options) {}
  absl::Status Launch();

  std::string dir_;
  Options options_;
  int port_ = 0;
  std::unique_ptr<ChildProcess> process_;
};

// N redis-sentinel processes watching one primary (quorum 2, down after
// 1 s, failover timeout 3 s), each with its own config in a temporary
// directory.
class SentinelGroup {
 public:
  static absl::StatusOr<std::unique_ptr<SentinelGroup>> Start(int primary_port, int count,
                                                              const std::string& master = "chat");
  ~SentinelGroup();

  // redis-sentinel://127.0.0.1:P1,127.0.0.1:P2,.../MASTER
  std::string Url() const;
  // Waits until every Sentinel knows the others and `replicas` replicas:
  // only then can they agree on a failover.
  absl::Status WaitReady(int replicas, std::chrono::milliseconds timeout) const;
  // The primary's port according to the first Sentinel that answers.
  absl::StatusOr<int> PrimaryPort() const;
  // Waits until the Sentinels name a primary other than `old_port` and it
  // says ROLE master; returns its port.
  absl::StatusOr<int> WaitForFailover(int old_port, std::chrono::milliseconds timeout) const;

 private:
  SentinelGroup(std::string dir, std::string master) : dir_(std::move(dir)), master_(master) {}

  std::string dir_;
  std::string master_;
  std::vector<int> ports_;
  std::vector<std::unique_ptr<ChildProcess>> processes_;
};

// Runs one command on 127.0.0.1:`port` (see RedisServer::Command).
absl::StatusOr<std::string> RedisCommand(int port, const std::vector<std::string>& argv);

}  // namespace chat::testing

#endif  // CHAT_TESTS_SUPPORT_REDIS_SERVER_H_
