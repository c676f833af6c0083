// Reads what the kernel accounts for a process: CPU time and resident memory.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace bench {

struct ServerProcess {
  std::string label;  // e.g. "edge"; defaults to the PID
  pid_t pid = 0;
};

// utime + stime from /proc/PID/stat, in microseconds; -1 if the process is gone.
int64_t ProcessCpuMicros(pid_t pid);
// VmRSS from /proc/PID/status, in KiB; -1 if the process is gone.
int64_t ProcessRssKib(pid_t pid);
// Parses "edge=12,cs=34" or "12,34".
bool ParseServerProcesses(const std::string& text, std::vector<ServerProcess>* out);

}  // namespace bench
