// Reads what the kernel accounts for a process: CPU time, resident memory and
// voluntary context switches. A "tree" server process (PostgreSQL) also counts
// every process whose parent is it: the postmaster forks one backend per
// connection, and their work is the server's work.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace bench {

struct ServerProcess {
  std::string label;  // e.g. "edge"; defaults to the PID
  pid_t pid = 0;
  bool tree = false;  // "label=tree:PID": the process and its children
};

// utime + stime from /proc/PID/stat, in microseconds; -1 if the process is gone.
// For a tree: the root's and each child's utime + stime + cutime + cstime, so a
// child that exited (and was reaped by the root) still counts.
int64_t ServerCpuMicros(const ServerProcess& p);
// VmRSS from /proc/PID/status, in KiB; -1 if the process is gone. For a tree:
// the sum of Pss (shared pages divided among their users) over its processes,
// because backends share the postmaster's buffers.
int64_t ServerRssKib(const ServerProcess& p);
// voluntary_ctxt_switches summed over every thread (/proc/PID/task/*/status)
// of the process, or of every process of the tree; -1 if the process is gone.
int64_t ServerVoluntarySwitches(const ServerProcess& p);

// voluntary_ctxt_switches of one process's threads, summed per thread name
// (/proc/PID/task/*/comm: "edge", "nexting_thread", ...): which threads are
// woken. Empty if the process is gone; a thread that ended is not counted.
std::map<std::string, int64_t> VoluntarySwitchesByThreadName(pid_t pid);

// utime + stime of one process, in microseconds; -1 if it is gone.
int64_t ProcessCpuMicros(pid_t pid);
// Parses "edge=12,cs=34,postgres=tree:56" or "12,34".
bool ParseServerProcesses(const std::string& text, std::vector<ServerProcess>* out);

}  // namespace bench
