#include "coordinator.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "proc_stats.h"
#include "results.h"
#include "worker.h"
#include "ws_engine.h"

namespace bench {
namespace {

struct Child {
  pid_t pid = 0;
  int ctl = -1;  // parent writes commands here
  FILE* results = nullptr;
};

void SleepUntil(int64_t t) {
  timespec ts{static_cast<time_t>(t / 1000000000), static_cast<long>(t % 1000000000)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

void Tell(std::vector<Child>& children, const std::string& line) {
  for (Child& c : children) {
    ssize_t n = write(c.ctl, line.data(), line.size());
    (void)n;
  }
}

// CPU of every server process and, last, of all client processes together.
struct CpuSample {
  std::vector<int64_t> server_us;
  int64_t client_us = 0;
};

CpuSample SampleCpu(const Options& opts, const std::vector<Child>& children) {
  CpuSample s;
  for (const ServerProcess& p : opts.servers) s.server_us.push_back(ProcessCpuMicros(p.pid));
  for (const Child& c : children) s.client_us += std::max<int64_t>(0, ProcessCpuMicros(c.pid));
  return s;
}

// A JSON object built field by field; values are numbers or plain strings.
class Json {
 public:
  Json& Num(const std::string& key, double v) {
    char buf[64];
    if (v == static_cast<double>(static_cast<int64_t>(v)) && v < 9e15 && v > -9e15) {
      std::snprintf(buf, sizeof buf, "%" PRId64, static_cast<int64_t>(v));
    } else {
      std::snprintf(buf, sizeof buf, "%.6g", v);
    }
    return Raw(key, buf);
  }
  Json& Str(const std::string& key, const std::string& v) {
    std::string quoted = "\"";
    for (char ch : v) {
      if (ch == '"' || ch == '\\') quoted.push_back('\\');
      quoted.push_back(ch);
    }
    return Raw(key, quoted + "\"");
  }
  Json& Raw(const std::string& key, const std::string& v) {
    body_ += (body_.empty() ? "\"" : ",\"") + key + "\":" + v;
    return *this;
  }
  std::string str() const { return "{" + body_ + "}"; }

 private:
  std::string body_;
};

std::string LatencyJson(const Histogram& h) {
  auto us = [](int64_t ns) { return static_cast<double>(ns) / 1000.0; };
  return Json()
      .Num("count", static_cast<double>(h.count()))
      .Num("p50", us(h.Percentile(0.50)))
      .Num("p90", us(h.Percentile(0.90)))
      .Num("p99", us(h.Percentile(0.99)))
      .Num("p999", us(h.Percentile(0.999)))
      .Num("max", us(h.max()))
      .Num("mean", h.mean() / 1000.0)
      .str();
}

void PrintLatency(const char* what, const Histogram& h) {
  auto ms = [](int64_t ns) { return static_cast<double>(ns) / 1e6; };
  std::printf("  %-22s p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms  (n=%" PRIu64 ")\n",
              what, ms(h.Percentile(0.5)), ms(h.Percentile(0.9)), ms(h.Percentile(0.99)),
              ms(h.Percentile(0.999)), ms(h.max()), h.count());
}

std::string EventsJson(const Results& r) {
  Json j;
  for (const auto& [name, count] : r.events) j.Num(name, static_cast<double>(count));
  return j.str();
}

void PrintEvents(const Results& r) {
  if (r.events.empty()) return;
  std::printf("  events:");
  for (const auto& [name, count] : r.events) std::printf(" %s=%" PRId64, name.c_str(), count);
  std::printf("\n");
}

// Per-process CPU over a window, plus the total.
std::string CpuJson(const Options& opts, const CpuSample& a, const CpuSample& b, double seconds,
                    double per_unit_divisor, const char* per_unit_name, Json* top) {
  Json per;
  int64_t total = 0;
  for (size_t i = 0; i < opts.servers.size(); ++i) {
    int64_t d = (a.server_us[i] >= 0 && b.server_us[i] >= 0) ? b.server_us[i] - a.server_us[i] : -1;
    if (d >= 0) total += d;
    per.Num(opts.servers[i].label, static_cast<double>(d));
    std::printf("  cpu %-18s %9.3f s  %6.1f %% of a core\n", opts.servers[i].label.c_str(),
                static_cast<double>(d) / 1e6, static_cast<double>(d) / 1e4 / seconds);
  }
  double client = static_cast<double>(b.client_us - a.client_us);
  std::printf("  cpu %-18s %9.3f s  %6.1f %% of a core\n", "(load generator)", client / 1e6,
              client / 1e4 / seconds);
  top->Num("server_cpu_us", static_cast<double>(total))
      .Num("server_cpu_pct", static_cast<double>(total) / 1e4 / seconds)
      .Num("client_cpu_pct", client / 1e4 / seconds);
  if (per_unit_divisor > 0 && !opts.servers.empty()) {
    double per = static_cast<double>(total) / per_unit_divisor;
    std::printf("  server CPU per %s: %.3f us (all server processes)\n", per_unit_name, per);
    top->Num(std::string("cpu_us_per_") + per_unit_name, per);
  }
  return per.str();
}

}  // namespace

int RunCoordinator(Options opts) {
  if (opts.workload == "fanout") {
    std::printf("fanout: not implemented (waits for groups in the protocol)\n");
    std::printf("%s\n", Json()
                            .Str("workload", "fanout")
                            .Str("server", opts.label)
                            .Str("error", "not implemented")
                            .str()
                            .c_str());
    return 2;
  }
  if (opts.name_prefix.empty()) {
    opts.name_prefix = "b" + std::to_string(getpid() % 100000) + "t" +
                       std::to_string(time(nullptr) % 100000) + "_";
  }
  std::vector<int64_t> rss_before;
  for (const ServerProcess& p : opts.servers) rss_before.push_back(ProcessRssKib(p.pid));

  std::fflush(stdout);
  std::vector<Child> children;
  for (int i = 0; i < opts.procs; ++i) {
    int ctl[2], res[2];
    if (pipe2(ctl, O_CLOEXEC) != 0 || pipe2(res, O_CLOEXEC) != 0) {
      std::perror("pipe");
      return 1;
    }
    pid_t pid = fork();
    if (pid == 0) {
      close(ctl[1]);
      close(res[0]);
      for (Child& c : children) {
        close(c.ctl);
        std::fclose(c.results);
      }
      _exit(RunWorker(opts, i, ctl[0], res[1]));
    }
    close(ctl[0]);
    close(res[1]);
    children.push_back({pid, ctl[1], fdopen(res[0], "r")});
  }

  int64_t ok = 0, failed = 0;
  for (Child& c : children) {
    char line[256];
    long long a = 0, b = 0;
    if (!std::fgets(line, sizeof line, c.results) ||
        std::sscanf(line, "READY %lld %lld", &a, &b) != 2) {
      std::fprintf(stderr, "loadgen: a client process died before READY\n");
      Tell(children, "QUIT\n");
      return 1;
    }
    ok += a;
    failed += b;
  }

  Results total;
  Json j;
  j.Str("workload", opts.workload).Str("server", opts.label).Num("procs", opts.procs);
  std::string cpu_json;
  int64_t t0 = NowNs() + 20000000;
  auto read_results = [&]() {
    for (Child& c : children) {
      Results r;
      if (!r.Read(c.results)) std::fprintf(stderr, "loadgen: a client process sent no results\n");
      total.Merge(r);
    }
  };

  if (opts.workload == "dm") {
    int64_t meas_start = t0 + static_cast<int64_t>(opts.warmup_s * 1e9);
    int64_t meas_end = meas_start + static_cast<int64_t>(opts.duration_s * 1e9);
    Tell(children, "GO " + std::to_string(t0) + "\n");
    SleepUntil(meas_start);
    CpuSample a = SampleCpu(opts, children);
    SleepUntil(meas_end);
    CpuSample b = SampleCpu(opts, children);
    read_results();
    Tell(children, "QUIT\n");
    double rate = static_cast<double>(total.received_in_window) / opts.duration_s;
    int64_t lost = total.sent - total.received;
    std::printf("dm %s-loop on %s: %d pairs, %s, %d-byte messages, %.1f s measured, %d procs\n",
                opts.mode.c_str(), opts.label.c_str(), opts.pairs,
                opts.mode == "closed"
                    ? ("window " + std::to_string(opts.window)).c_str()
                    : ("offered " + std::to_string(static_cast<int>(opts.rate)) + "/s").c_str(),
                opts.message_bytes, opts.duration_s, opts.procs);
    std::printf("  connections           %" PRId64 " open, %" PRId64 " failed\n", ok, failed);
    std::printf("  sent %" PRId64 "  received %" PRId64 "  lost %" PRId64 "  out-of-order %" PRId64
                "  gaps %" PRId64 "\n",
                total.sent, total.received, lost, total.out_of_order, total.gaps);
    std::printf("  delivered/s           %.0f\n", rate);
    PrintLatency("latency", total.latency);
    cpu_json = CpuJson(opts, a, b, opts.duration_s, static_cast<double>(total.received_in_window),
                       "msg", &j);
    PrintEvents(total);
    j.Str("mode", opts.mode)
        .Num("pairs", opts.pairs)
        .Num("window", opts.window)
        .Num("offered_rate", opts.mode == "open" ? opts.rate : 0)
        .Num("message_bytes", opts.message_bytes)
        .Num("duration_s", opts.duration_s)
        .Num("conns_ok", static_cast<double>(ok))
        .Num("conns_failed", static_cast<double>(failed))
        .Num("sent", static_cast<double>(total.sent))
        .Num("received", static_cast<double>(total.received))
        .Num("delivered_per_s", rate)
        .Num("lost", static_cast<double>(lost))
        .Num("out_of_order", static_cast<double>(total.out_of_order))
        .Raw("latency_us", LatencyJson(total.latency));
  } else if (opts.workload == "idle") {
    int64_t settled = NowNs() + static_cast<int64_t>(opts.settle_s * 1e9);
    Tell(children, "GO " + std::to_string(t0) + "\n");
    SleepUntil(settled);
    std::vector<int64_t> rss_after;
    for (const ServerProcess& p : opts.servers) rss_after.push_back(ProcessRssKib(p.pid));
    CpuSample a = SampleCpu(opts, children);
    SleepUntil(settled + static_cast<int64_t>(opts.hold_s * 1e9));
    CpuSample b = SampleCpu(opts, children);
    Tell(children, "QUIT\n");
    read_results();
    std::printf("idle on %s: %" PRId64 " connections open, %" PRId64
                " failed, held %.1f s, %d procs\n",
                opts.label.c_str(), ok, failed, opts.hold_s, opts.procs);
    Json rss;
    double total_per_conn = 0;
    for (size_t i = 0; i < opts.servers.size(); ++i) {
      double per = ok > 0 ? static_cast<double>(rss_after[i] - rss_before[i]) * 1024.0 /
                                static_cast<double>(ok)
                          : 0;
      total_per_conn += per;
      std::printf("  rss %-18s %8" PRId64 " -> %8" PRId64 " KiB   %8.0f bytes/connection\n",
                  opts.servers[i].label.c_str(), rss_before[i], rss_after[i], per);
      rss.Raw(opts.servers[i].label, Json()
                                         .Num("before_kib", static_cast<double>(rss_before[i]))
                                         .Num("after_kib", static_cast<double>(rss_after[i]))
                                         .Num("bytes_per_conn", per)
                                         .str());
    }
    std::printf("  rss all servers        %8.0f bytes/connection\n", total_per_conn);
    cpu_json = CpuJson(opts, a, b, opts.hold_s, 0, "", &j);
    std::printf("  disconnects during hold %" PRId64 ", pings answered %" PRId64 "\n",
                total.disconnects, total.pings);
    PrintEvents(total);
    j.Num("conns", opts.conns)
        .Num("conns_ok", static_cast<double>(ok))
        .Num("conns_failed", static_cast<double>(failed))
        .Num("hold_s", opts.hold_s)
        .Raw("rss", rss.str())
        .Num("rss_bytes_per_conn_total", total_per_conn)
        .Num("disconnects", static_cast<double>(total.disconnects))
        .Num("pings", static_cast<double>(total.pings));
  } else if (opts.workload == "storm") {
    CpuSample a = SampleCpu(opts, children);
    Tell(children, "GO " + std::to_string(t0) + "\n");
    read_results();
    CpuSample b = SampleCpu(opts, children);
    Tell(children, "QUIT\n");
    double elapsed = static_cast<double>(total.t_last - t0) / 1e9;
    double rate = elapsed > 0 ? static_cast<double>(total.conns_ok) / elapsed : 0;
    std::printf(
        "storm on %s: %d connections, %d concurrent handshakes, %d procs, wait for hello: %s\n",
        opts.label.c_str(), opts.conns, opts.concurrency, opts.procs,
        opts.wait_hello ? "yes" : "no");
    std::printf("  open %" PRId64 "  failed %" PRId64 "  in %.3f s  =  %.0f connects/s\n",
                total.conns_ok, total.conns_failed, elapsed, rate);
    PrintLatency("connect->open", total.latency);
    cpu_json = CpuJson(opts, a, b, elapsed > 0 ? elapsed : 1, static_cast<double>(total.conns_ok),
                       "connect", &j);
    PrintEvents(total);
    j.Num("conns", opts.conns)
        .Num("concurrency", opts.concurrency)
        .Num("wait_hello", opts.wait_hello)
        .Num("conns_ok", static_cast<double>(total.conns_ok))
        .Num("conns_failed", static_cast<double>(total.conns_failed))
        .Num("elapsed_s", elapsed)
        .Num("connects_per_s", rate)
        .Raw("latency_us", LatencyJson(total.latency));
  }
  j.Raw("cpu_us_by_process", cpu_json).Raw("events", EventsJson(total));

  int status_all = 0;
  for (Child& c : children) {
    int status = 0;
    waitpid(c.pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) status_all = 1;
    close(c.ctl);
    std::fclose(c.results);
  }
  std::printf("%s\n", j.str().c_str());
  return status_all;
}

}  // namespace bench
