#include "proc_stats.h"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace bench {
namespace {

struct StatFields {
  pid_t ppid = 0;
  long long utime = 0, stime = 0, cutime = 0, cstime = 0;  // clock ticks
};

bool ReadStat(pid_t pid, StatFields* out) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  // The command name may contain spaces and parentheses: fields start after the last ')'.
  size_t close = line.rfind(')');
  if (close == std::string::npos || close + 2 > line.size()) return false;
  std::istringstream fields(line.substr(close + 2));
  std::string field;
  // Field 3 (state) is the first after ')'; ppid is 4, utime..cstime are 14..17.
  for (int i = 3; i <= 17 && fields >> field; ++i) {
    long long v = std::atoll(field.c_str());
    if (i == 4) out->ppid = static_cast<pid_t>(v);
    if (i == 14) out->utime = v;
    if (i == 15) out->stime = v;
    if (i == 16) out->cutime = v;
    if (i == 17) out->cstime = v;
  }
  return true;
}

int64_t TicksToMicros(long long ticks) {
  static const long hz = sysconf(_SC_CLK_TCK);
  return ticks * 1000000LL / hz;
}

// The root followed by every live process whose parent is the root.
std::vector<pid_t> TreeMembers(pid_t root) {
  std::vector<pid_t> out{root};
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return out;
  while (dirent* e = readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0' || pid == root) continue;
    StatFields f;
    if (ReadStat(static_cast<pid_t>(pid), &f) && f.ppid == root)
      out.push_back(static_cast<pid_t>(pid));
  }
  closedir(proc);
  return out;
}

// A "Key:   123 kB" style field of a /proc status-like file; -1 if absent.
int64_t ReadField(const std::string& path, const char* key) {
  std::ifstream in(path);
  std::string line;
  size_t n = std::strlen(key);
  while (std::getline(in, line)) {
    if (line.compare(0, n, key) == 0) return std::atoll(line.c_str() + n);
  }
  return -1;
}

int64_t ThreadsVoluntarySwitches(pid_t pid) {
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* tasks = opendir(dir.c_str());
  if (tasks == nullptr) return -1;
  int64_t total = 0;
  while (dirent* e = readdir(tasks)) {
    if (e->d_name[0] == '.') continue;
    int64_t v = ReadField(dir + "/" + e->d_name + "/status", "voluntary_ctxt_switches:");
    if (v > 0) total += v;
  }
  closedir(tasks);
  return total;
}

}  // namespace

std::map<std::string, int64_t> VoluntarySwitchesByThreadName(pid_t pid) {
  std::map<std::string, int64_t> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* tasks = opendir(dir.c_str());
  if (tasks == nullptr) return out;
  while (dirent* e = readdir(tasks)) {
    if (e->d_name[0] == '.') continue;
    const std::string task = dir + "/" + e->d_name;
    int64_t v = ReadField(task + "/status", "voluntary_ctxt_switches:");
    if (v < 0) continue;
    std::ifstream comm(task + "/comm");
    std::string name;
    std::getline(comm, name);
    out[name.empty() ? "?" : name] += v;
  }
  closedir(tasks);
  return out;
}

int64_t ProcessCpuMicros(pid_t pid) {
  StatFields f;
  if (!ReadStat(pid, &f)) return -1;
  return TicksToMicros(f.utime + f.stime);
}

int64_t ServerCpuMicros(const ServerProcess& p) {
  if (!p.tree) return ProcessCpuMicros(p.pid);
  StatFields root;
  if (!ReadStat(p.pid, &root)) return -1;
  long long ticks = 0;
  for (pid_t pid : TreeMembers(p.pid)) {
    StatFields f;
    if (ReadStat(pid, &f)) ticks += f.utime + f.stime + f.cutime + f.cstime;
  }
  return TicksToMicros(ticks);
}

int64_t ServerRssKib(const ServerProcess& p) {
  if (!p.tree) return ReadField("/proc/" + std::to_string(p.pid) + "/status", "VmRSS:");
  if (kill(p.pid, 0) != 0) return -1;
  int64_t total = 0;
  for (pid_t pid : TreeMembers(p.pid)) {
    int64_t v = ReadField("/proc/" + std::to_string(pid) + "/smaps_rollup", "Pss:");
    if (v > 0) total += v;
  }
  return total;
}

int64_t ServerVoluntarySwitches(const ServerProcess& p) {
  if (!p.tree) return ThreadsVoluntarySwitches(p.pid);
  if (kill(p.pid, 0) != 0) return -1;
  int64_t total = 0;
  for (pid_t pid : TreeMembers(p.pid)) {
    int64_t v = ThreadsVoluntarySwitches(pid);
    if (v > 0) total += v;
  }
  return total;
}

bool ParseServerProcesses(const std::string& text, std::vector<ServerProcess>* out) {
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    ServerProcess p;
    size_t eq = item.find('=');
    std::string pid_text = eq == std::string::npos ? item : item.substr(eq + 1);
    if (pid_text.rfind("tree:", 0) == 0) {
      p.tree = true;
      pid_text = pid_text.substr(5);
    }
    char* end = nullptr;
    long pid = std::strtol(pid_text.c_str(), &end, 10);
    if (pid <= 0 || *end != '\0') return false;
    p.pid = static_cast<pid_t>(pid);
    p.label = eq == std::string::npos ? pid_text : item.substr(0, eq);
    out->push_back(p);
  }
  return true;
}

}  // namespace bench
