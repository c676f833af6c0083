// loadgen: protocol-v1 load generator for chat servers. Flags only; the work
// is in coordinator.cc (parent) and worker.cc (client processes).
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "coordinator.h"
#include "options.h"

namespace {

constexpr char kUsage[] = R"(usage: loadgen WORKLOAD --url=ws://127.0.0.1:PORT/[,ws://...] [flags]
workloads: dm | idle | storm | sync | fanout
common:  --label=NAME  --server-pids=edge=PID,cs=PID,...,db=tree:PID (PID and its children)
         --procs=N  --source-addrs=16
         --wait-hello=1|0 (0 for servers that send no hello)  --connect-timeout=60  --prefix=NAME
dm:      --mode=closed|open  --pairs=100  --window=16  --rate=5000 (open, total msgs/s)
         --bytes=64  --warmup=1  --duration=5  --drain=2
idle:    --conns=1000  --concurrency=200  --settle=1  --hold=5
storm:   --conns=1000  --concurrency=200
sync:    --messages=10000  --page=500  --window=16 (sends in flight while storing)  --bytes=64
         --phase-timeout=120 (servers with a store only; one client process)
)";

// "ws://127.0.0.1:8080/path,ws://127.0.0.1:8081/" (IPv4 literals only).
bool ParseUrls(const std::string& list, bench::Options* o) {
  const std::string scheme = "ws://";
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    std::string url =
        list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    start = comma == std::string::npos ? list.size() + 1 : comma + 1;
    if (url.rfind(scheme, 0) != 0) return false;
    std::string rest = url.substr(scheme.size());
    size_t slash = rest.find('/');
    std::string hostport = rest.substr(0, slash);
    size_t colon = hostport.rfind(':');
    if (colon == std::string::npos) return false;
    bench::Options::Target t;
    t.path = slash == std::string::npos ? "/" : rest.substr(slash);
    t.host = hostport.substr(0, colon);
    t.port = std::atoi(hostport.c_str() + colon + 1);
    if (t.port <= 0) return false;
    o->targets.push_back(t);
  }
  return !o->targets.empty();
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  bench::Options o;
  if (argc < 2 || argv[1][0] == '-') {
    std::fputs(kUsage, stderr);
    return 2;
  }
  o.workload = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    size_t eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) {
      std::fprintf(stderr, "bad argument %s\n%s", arg.c_str(), kUsage);
      return 2;
    }
    std::string key = arg.substr(2, eq - 2), v = arg.substr(eq + 1);
    double d = std::atof(v.c_str());
    int n = std::atoi(v.c_str());
    bool ok = true;
    if (key == "url")
      ok = ParseUrls(v, &o);
    else if (key == "label")
      o.label = v;
    else if (key == "prefix")
      o.name_prefix = v;
    else if (key == "server-pids")
      ok = bench::ParseServerProcesses(v, &o.servers);
    else if (key == "procs")
      o.procs = n;
    else if (key == "source-addrs")
      o.source_addrs = n;
    else if (key == "wait-hello")
      o.wait_hello = v == "1" || v == "true" || v == "yes";
    else if (key == "connect-timeout")
      o.connect_timeout_s = d;
    else if (key == "mode")
      o.mode = v;
    else if (key == "pairs")
      o.pairs = n;
    else if (key == "window")
      o.window = n;
    else if (key == "rate")
      o.rate = d;
    else if (key == "bytes")
      o.message_bytes = n;
    else if (key == "warmup")
      o.warmup_s = d;
    else if (key == "duration")
      o.duration_s = d;
    else if (key == "drain")
      o.drain_s = d;
    else if (key == "conns")
      o.conns = n;
    else if (key == "concurrency")
      o.concurrency = n;
    else if (key == "settle")
      o.settle_s = d;
    else if (key == "hold")
      o.hold_s = d;
    else if (key == "messages")
      o.messages = n;
    else if (key == "page")
      o.page = n;
    else if (key == "phase-timeout")
      o.phase_timeout_s = d;
    else
      ok = false;
    if (!ok) {
      std::fprintf(stderr, "bad argument %s\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }
  if (o.targets.empty() && o.workload != "fanout") {
    std::fprintf(stderr, "--url is required\n%s", kUsage);
    return 2;
  }
  if (o.procs < 1 || (o.mode != "closed" && o.mode != "open") || o.pairs < 1 || o.window < 1 ||
      o.rate <= 0 || o.conns < 1 || o.concurrency < 1 || o.messages < 1 || o.page < 1 ||
      (o.workload == "sync" && o.procs != 1)) {
    std::fprintf(stderr, "bad flag values\n%s", kUsage);
    return 2;
  }
  if (o.label.empty() && !o.targets.empty())
    o.label = o.targets[0].host + ":" + std::to_string(o.targets[0].port);
  return bench::RunCoordinator(o);
}
