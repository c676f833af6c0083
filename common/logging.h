#ifndef CHAT_COMMON_LOGGING_H_
#define CHAT_COMMON_LOGGING_H_

#include <cstdlib>
#include <string>

#include "absl/synchronization/mutex.h"
#include "common/log_format.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace chat {

// Logs go to stderr: stdout carries only the "listening on" line that scripts
// and tests wait for. LOG_LEVEL (debug, info, warn, error) sets the level;
// `format` the shape of a line (log_format.h).
inline void InitLogging(const std::string& name, LogFormat format = LogFormat::kText) {
  auto logger = spdlog::stderr_color_mt(name);
  if (format == LogFormat::kJson) logger->set_formatter(std::make_unique<JsonLogFormatter>());
  spdlog::set_default_logger(logger);
  if (const char* level = std::getenv("LOG_LEVEL")) {
    spdlog::set_level(spdlog::level::from_str(level));
  }
}

// Process-wide set-up every binary's main() does first: logging, and no
// absl::Mutex deadlock detection (Debian's Abseil is built with it on; it
// keeps a lock graph updated on every lock, a few % of the hot path). Lock
// order is checked by the sanitizer builds and by the tests instead.
inline void InitProcess(const std::string& name, LogFormat format = LogFormat::kText) {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  InitLogging(name, format);
}

}  // namespace chat

#endif  // CHAT_COMMON_LOGGING_H_
