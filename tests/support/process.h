#ifndef CHAT_TESTS_SUPPORT_PROCESS_H_
#define CHAT_TESTS_SUPPORT_PROCESS_H_

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace chat::testing {

// A child process whose stdout is watched for the "listening on host:port"
// line every binary prints once it serves. stderr goes to a log file.
class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  // Starts `argv` with `env` added to this process's environment.
  absl::Status Start(const std::vector<std::string>& argv, const std::vector<std::string>& env = {},
                     const std::string& log_path = "");
  // Waits for the "listening on" line; returns the port.
  absl::StatusOr<int> WaitListening(std::chrono::milliseconds timeout);
  void Signal(int sig);
  // SIGSTOP, then waits until the whole process has stopped. kill() returns
  // before a multi-threaded process's group stop completes: until the thread
  // picked to take the signal gets a CPU, the others keep running (under CPU
  // load, long enough to answer a request sent "after" the stop).
  absl::Status Suspend(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  void Resume() { Signal(SIGCONT); }
  // Waits for exit; returns the raw wait status, or an error on timeout.
  absl::StatusOr<int> Wait(std::chrono::milliseconds timeout);
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string buffered_;
};

// A loopback port free right now (it could be bound, then was released),
// below the kernel's ephemeral range and never the same twice in one process,
// for a server that reads its port from a configuration file instead of
// taking 0. Another process may still take it before it is used: callers
// retry on a clash. 0 when none could be had.
int FreeLoopbackPort();

// The directory holding the built binaries (set by CMake).
std::string BinaryDir();
std::string SourceDir();

}  // namespace chat::testing

#endif  // CHAT_TESTS_SUPPORT_PROCESS_H_
