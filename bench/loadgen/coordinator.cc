#include "coordinator.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
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

// CPU and voluntary context switches of every server process and, last, CPU
// of all client processes together.
struct CpuSample {
  std::vector<int64_t> server_us;
  std::vector<int64_t> server_vcsw;
  // Per server process (not for trees), switches per thread name.
  std::vector<std::map<std::string, int64_t>> server_vcsw_by_thread;
  int64_t client_us = 0;
  int64_t at_ns = 0;
};

CpuSample SampleCpu(const Options& opts, const std::vector<Child>& children) {
  CpuSample s;
  s.at_ns = NowNs();
  for (const ServerProcess& p : opts.servers) {
    s.server_us.push_back(ServerCpuMicros(p));
    s.server_vcsw.push_back(ServerVoluntarySwitches(p));
    s.server_vcsw_by_thread.push_back(p.tree ? std::map<std::string, int64_t>{}
                                             : VoluntarySwitchesByThreadName(p.pid));
  }
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

// Per-process CPU and voluntary context switches over a window, plus the
// totals, as fields of `top` named with `prefix` ("" or e.g. "fill_").
void CpuJson(const Options& opts, const CpuSample& a, const CpuSample& b, double seconds,
             double per_unit_divisor, const std::string& per_unit_name, Json* top,
             const std::string& prefix = "") {
  Json per, per_vcsw;
  int64_t total = 0, total_vcsw = 0;
  for (size_t i = 0; i < opts.servers.size(); ++i) {
    int64_t d = (a.server_us[i] >= 0 && b.server_us[i] >= 0) ? b.server_us[i] - a.server_us[i] : -1;
    int64_t v =
        (a.server_vcsw[i] >= 0 && b.server_vcsw[i] >= 0) ? b.server_vcsw[i] - a.server_vcsw[i] : -1;
    if (d >= 0) total += d;
    if (v >= 0) total_vcsw += v;
    per.Num(opts.servers[i].label, static_cast<double>(d));
    per_vcsw.Num(opts.servers[i].label, static_cast<double>(v));
    std::printf("  cpu %-18s %9.3f s  %6.1f %% of a core  %9" PRId64 " voluntary switches\n",
                opts.servers[i].label.c_str(), static_cast<double>(d) / 1e6,
                static_cast<double>(d) / 1e4 / seconds, v);
    // Which threads were woken, most first (per unit when there is one).
    std::vector<std::pair<int64_t, std::string>> woken;
    for (const auto& [name, after] : b.server_vcsw_by_thread[i]) {
      auto before = a.server_vcsw_by_thread[i].find(name);
      int64_t n = after - (before == a.server_vcsw_by_thread[i].end() ? 0 : before->second);
      if (n > 0) woken.emplace_back(n, name);
    }
    if (!woken.empty()) {
      std::sort(woken.rbegin(), woken.rend());
      std::printf("      switches by thread:");
      for (const auto& [n, name] : woken) {
        if (per_unit_divisor > 0) {
          std::printf(" %s %.2f/%s", name.c_str(), static_cast<double>(n) / per_unit_divisor,
                      per_unit_name.c_str());
        } else {
          std::printf(" %s %" PRId64, name.c_str(), n);
        }
      }
      std::printf("\n");
    }
  }
  double client = static_cast<double>(b.client_us - a.client_us);
  std::printf("  cpu %-18s %9.3f s  %6.1f %% of a core\n", "(load generator)", client / 1e6,
              client / 1e4 / seconds);
  top->Num(prefix + "server_cpu_us", static_cast<double>(total))
      .Num(prefix + "server_cpu_pct", static_cast<double>(total) / 1e4 / seconds)
      .Num(prefix + "client_cpu_pct", client / 1e4 / seconds)
      .Num(prefix + "server_vcsw", static_cast<double>(total_vcsw));
  if (per_unit_divisor > 0 && !opts.servers.empty()) {
    double cpu_per = static_cast<double>(total) / per_unit_divisor;
    double vcsw_per = static_cast<double>(total_vcsw) / per_unit_divisor;
    std::printf(
        "  server CPU per %s: %.3f us, voluntary context switches per %s: %.2f"
        " (all server processes)\n",
        per_unit_name.c_str(), cpu_per, per_unit_name.c_str(), vcsw_per);
    top->Num(prefix + "cpu_us_per_" + per_unit_name, cpu_per)
        .Num(prefix + "vcsw_per_" + per_unit_name, vcsw_per);
  }
  top->Raw(prefix + "cpu_us_by_process", per.str()).Raw(prefix + "vcsw_by_process", per_vcsw.str());
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
  for (const ServerProcess& p : opts.servers) rss_before.push_back(ServerRssKib(p));

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
  bool verified = true;  // sync: the catch-up was complete and exact
  Json j;
  j.Str("workload", opts.workload).Str("server", opts.label).Num("procs", opts.procs);
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
    CpuJson(opts, a, b, opts.duration_s, static_cast<double>(total.received_in_window), "msg", &j);
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
    for (const ServerProcess& p : opts.servers) rss_after.push_back(ServerRssKib(p));
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
    CpuJson(opts, a, b, opts.hold_s, 0, "", &j);
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
    CpuJson(opts, a, b, elapsed > 0 ? elapsed : 1, static_cast<double>(total.conns_ok), "connect",
            &j);
    PrintEvents(total);
    j.Num("conns", opts.conns)
        .Num("concurrency", opts.concurrency)
        .Num("wait_hello", opts.wait_hello)
        .Num("conns_ok", static_cast<double>(total.conns_ok))
        .Num("conns_failed", static_cast<double>(total.conns_failed))
        .Num("elapsed_s", elapsed)
        .Num("connects_per_s", rate)
        .Raw("latency_us", LatencyJson(total.latency));
  } else if (opts.workload == "sync") {
    // The client announces its phases (filled, connected, synced) and waits for
    // NEXT after each, so each CPU window holds exactly one phase.
    Tell(children, "GO " + std::to_string(t0) + "\n");
    SleepUntil(t0);
    std::vector<CpuSample> marks{SampleCpu(opts, children)};
    char line[256];
    while (marks.size() < 4 && std::fgets(line, sizeof line, children[0].results) &&
           std::strncmp(line, "PHASE ", 6) == 0) {
      marks.push_back(SampleCpu(opts, children));
      Tell(children, "NEXT\n");
    }
    if (marks.size() < 4) {
      std::fprintf(stderr, "loadgen: the sync client stopped before the end of its phases\n");
      Tell(children, "QUIT\n");
      for (Child& c : children) waitpid(c.pid, nullptr, 0);
      return 1;
    }
    read_results();
    Tell(children, "QUIT\n");
    auto value = [&](const char* key) {
      auto it = total.values.find(key);
      return it == total.values.end() ? int64_t{0} : it->second;
    };
    auto seconds = [](const CpuSample& a, const CpuSample& b) {
      return std::max(1e-9, static_cast<double>(b.at_ns - a.at_ns) / 1e9);
    };
    const int64_t acked = value("fill_acked"), synced = value("synced_messages");
    const double fill_s = static_cast<double>(value("fill_ns")) / 1e9;
    const double sync_ms = static_cast<double>(value("sync_ns")) / 1e6;
    verified = value("sync_complete") == 1 && synced == opts.messages &&
               value("missing_useqs") == 0 && value("duplicates") == 0 &&
               value("out_of_order") == 0 && value("text_mismatch") == 0 &&
               value("out_of_range") == 0;
    std::printf("sync on %s: %d messages stored for one user, then synced in pages of %d\n",
                opts.label.c_str(), opts.messages, opts.page);
    std::printf("  connections           %" PRId64
                " opened (sender, recipient, fresh recipient), %" PRId64 " failed\n",
                total.conns_ok, total.conns_failed);
    std::printf("  store: %" PRId64
                " of %d acknowledged in %.3f s = %.0f msgs/s (window %d, "
                "request_id); %" PRId64 " live frames reached the online recipient\n",
                acked, opts.messages, fill_s, fill_s > 0 ? static_cast<double>(acked) / fill_s : 0,
                opts.window, value("fill_live_received"));
    CpuJson(opts, marks[0], marks[1], seconds(marks[0], marks[1]), static_cast<double>(acked),
            "msg", &j, "fill_");
    std::printf("  sync: %" PRId64 " messages in %" PRId64 " pages in %.1f ms; missing %" PRId64
                ", duplicates %" PRId64 ", out of order %" PRId64 ", wrong text %" PRId64
                ", out of range %" PRId64 " (sends refused %" PRId64 "): %s\n",
                synced, value("pages"), sync_ms, value("missing_useqs"), value("duplicates"),
                value("out_of_order"), value("text_mismatch"), value("out_of_range"),
                value("refused_sends"), verified ? "gapless, each once, in order" : "FAILED");
    PrintLatency("page round trip", total.latency);
    CpuJson(opts, marks[2], marks[3], seconds(marks[2], marks[3]), static_cast<double>(synced),
            "msg", &j);
    PrintEvents(total);
    j.Num("messages", opts.messages)
        .Num("page", opts.page)
        .Num("window", opts.window)
        .Num("message_bytes", opts.message_bytes)
        .Num("conns_ok", static_cast<double>(total.conns_ok))
        .Num("conns_failed", static_cast<double>(total.conns_failed))
        .Num("fill_s", fill_s)
        .Num("fill_acked", static_cast<double>(acked))
        .Num("fill_per_s", fill_s > 0 ? static_cast<double>(acked) / fill_s : 0)
        .Num("fill_live_received", static_cast<double>(value("fill_live_received")))
        .Num("sync_ms", sync_ms)
        .Num("pages", static_cast<double>(value("pages")))
        .Num("synced_messages", static_cast<double>(synced))
        .Num("missing_useqs", static_cast<double>(value("missing_useqs")))
        .Num("duplicates", static_cast<double>(value("duplicates")))
        .Num("out_of_order", static_cast<double>(value("out_of_order")))
        .Num("text_mismatch", static_cast<double>(value("text_mismatch")))
        .Num("out_of_range", static_cast<double>(value("out_of_range")))
        .Num("verified", verified ? 1 : 0)
        .Raw("latency_us", LatencyJson(total.latency));
  }
  j.Raw("events", EventsJson(total));

  int status_all = 0;
  for (Child& c : children) {
    int status = 0;
    waitpid(c.pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) status_all = 1;
    close(c.ctl);
    std::fclose(c.results);
  }
  std::printf("%s\n", j.str().c_str());
  return verified ? status_all : 1;
}

}  // namespace bench
