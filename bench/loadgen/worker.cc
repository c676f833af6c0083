#include "worker.h"

#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "results.h"
#include "sync_worker.h"
#include "ws_engine.h"

namespace bench {
namespace {

constexpr int64_t kSecond = 1000000000;

int64_t Seconds(double s) { return static_cast<int64_t>(s * 1e9); }

class Worker : public Engine::Handler {
 public:
  Worker(const Options& opts, int index, int ctl_in, int results_out)
      : opts_(opts), index_(index), results_out_(results_out), engine_(opts, this) {
    engine_.WatchControl(ctl_in);
    concurrency_ = std::max(1, opts_.concurrency / opts_.procs);
  }

  int Run() {
    if (opts_.workload == "dm") {
      CreatePairs();
    } else {
      CreateConns();
    }
    if (opts_.workload != "storm") ConnectAll(NowNs() + Seconds(opts_.connect_timeout_s));
    WriteAll(results_out_, "READY " + std::to_string(results_.conns_ok) + " " +
                               std::to_string(results_.conns_failed) + "\n");
    while (go_t0_ < 0 && !quit_) engine_.Poll(NowNs() + kSecond);
    if (quit_) return 1;
    if (opts_.workload == "dm") {
      RunDm(go_t0_);
    } else if (opts_.workload == "storm") {
      RunStorm(go_t0_);
    }
    if (opts_.workload != "idle") WriteResults();
    while (!quit_) engine_.Poll(NowNs() + kSecond);
    if (opts_.workload == "idle") WriteResults();
    for (Conn& c : engine_.conns()) engine_.Close(c);
    return 0;
  }

  void OnOpen(Conn& c, int64_t now) override {
    ++results_.conns_ok;
    if (opts_.workload == "storm") results_.latency.Record(now - c.t_start);
    results_.t_last = std::max(results_.t_last, now);
    --inflight_;
    PumpConnects();
  }

  void OnClosed(Conn& c, const std::string& why, int64_t now) override {
    ++results_.events[why];
    if (c.opened) {
      ++results_.disconnects;
      return;
    }
    ++results_.conns_failed;
    --inflight_;
    PumpConnects();
  }

  void OnMessage(Conn& c, std::string_view payload, int64_t now) override {
    std::string_view action;
    if (!FindStringField(payload, "action", &action)) {
      ++results_.events["unparsed_frame"];
      return;
    }
    if (action == "send" && c.is_receiver) {
      OnDirectMessage(c, payload, now);
    } else if (action == "error") {
      std::string_view code;
      FindStringField(payload, "code", &code);
      ++results_.events["error:" + std::string(code)];
    } else {
      ++results_.events["unexpected:" + std::string(action)];
    }
  }

  void OnControl(std::string_view line) override {
    if (line.rfind("GO ", 0) == 0) {
      go_t0_ = std::atoll(std::string(line.substr(3)).c_str());
    } else if (line == "QUIT" || line == "EOF") {
      quit_ = true;
    }
  }

 private:
  struct Pair {
    Conn* sender = nullptr;
    Conn* receiver = nullptr;
    int64_t sent = 0;
    int64_t received = 0;
    int64_t next_seq = 0;
    std::string prefix;  // the request up to the message text
  };

  std::string Prefix() const { return opts_.name_prefix; }

  void CreatePairs() {
    int begin = ShareBegin(opts_.pairs, index_, opts_.procs);
    int end = ShareBegin(opts_.pairs, index_ + 1, opts_.procs);
    pairs_.resize(static_cast<size_t>(end - begin));
    for (int i = begin; i < end; ++i) {
      Pair& p = pairs_[static_cast<size_t>(i - begin)];
      std::string receiver = Prefix() + "r" + std::to_string(i);
      p.sender = &engine_.Add(Prefix() + "s" + std::to_string(i));
      p.receiver = &engine_.Add(receiver);
      p.sender->tag = p.receiver->tag = i - begin;
      p.receiver->is_receiver = true;
      p.prefix = R"({"action":"send","send_to":")" + receiver + R"(","message":")";
      // Receivers first: a receiver must be registered before anyone sends to it.
      to_start_.push_back({p.receiver, static_cast<uint32_t>(2 * i)});
    }
    for (Pair& p : pairs_)
      to_start_.push_back({p.sender, static_cast<uint32_t>(2 * (begin + p.sender->tag) + 1)});
  }

  void CreateConns() {
    int begin = ShareBegin(opts_.conns, index_, opts_.procs);
    int end = ShareBegin(opts_.conns, index_ + 1, opts_.procs);
    for (int i = begin; i < end; ++i) {
      Conn& c = engine_.Add(Prefix() + "c" + std::to_string(i));
      to_start_.push_back({&c, static_cast<uint32_t>(i)});
    }
  }

  void PumpConnects() {
    if (pumping_) return;
    pumping_ = true;
    while (inflight_ < concurrency_ && next_start_ < to_start_.size()) {
      ++inflight_;
      auto [conn, source] = to_start_[next_start_++];
      engine_.Start(*conn, source);
    }
    pumping_ = false;
  }

  bool AllSettled() const { return next_start_ == to_start_.size() && inflight_ == 0; }

  void ConnectAll(int64_t deadline) {
    PumpConnects();
    while (!AllSettled() && !quit_) {
      int64_t now = NowNs();
      if (now >= deadline) break;
      engine_.Poll(std::min(deadline, now + kSecond));
    }
    // Whatever has not opened by the deadline counts as failed, once.
    for (auto& [conn, source] : to_start_) {
      if (conn->state == ConnState::kIdle) {
        ++results_.conns_failed;
        ++results_.events["not_started"];
      } else if (conn->state != ConnState::kOpen && conn->state != ConnState::kClosed) {
        engine_.Close(*conn);
        ++results_.conns_failed;
        ++results_.events["connect_timeout"];
      }
    }
    next_start_ = to_start_.size();
    inflight_ = 0;
  }

  void RunStorm(int64_t t0) {
    while (NowNs() < t0) engine_.Poll(t0);
    results_.t_first = t0;
    ConnectAll(t0 + Seconds(opts_.connect_timeout_s));
  }

  void SendDm(Pair& p, int64_t ts) {
    if (p.sender->state != ConnState::kOpen || p.receiver->state != ConnState::kOpen) {
      ++results_.events["send_on_closed"];
      return;
    }
    std::string& m = scratch_;
    m.assign(p.prefix);
    char num[24];
    m.append(num, std::to_chars(num, num + sizeof num, ts).ptr);
    m.push_back(':');
    m.append(num, std::to_chars(num, num + sizeof num, p.sent).ptr);
    m.push_back(':');
    size_t text = m.size() - p.prefix.size();
    if (text < static_cast<size_t>(opts_.message_bytes)) m.append(opts_.message_bytes - text, 'x');
    m.append("\"}");
    engine_.SendText(*p.sender, m);
    ++p.sent;
    ++results_.sent;
  }

  void OnDirectMessage(Conn& c, std::string_view payload, int64_t now) {
    std::string_view text;
    int64_t ts = 0, seq = 0;
    if (!FindStringField(payload, "message", &text)) {
      ++results_.events["unparsed_message"];
      return;
    }
    const char* p = text.data();
    const char* end = p + text.size();
    auto r1 = std::from_chars(p, end, ts);
    auto r2 = r1.ptr < end ? std::from_chars(r1.ptr + 1, end, seq) : r1;
    if (r1.ec != std::errc() || r2.ec != std::errc()) {
      ++results_.events["unparsed_message"];
      return;
    }
    Pair& pair = pairs_[static_cast<size_t>(c.tag)];
    ++pair.received;
    ++results_.received;
    if (now >= meas_start_ && now < meas_end_) ++results_.received_in_window;
    if (ts >= meas_start_ && ts < meas_end_) results_.latency.Record(now - ts);
    if (seq == pair.next_seq) {
      ++pair.next_seq;
    } else if (seq > pair.next_seq) {
      results_.gaps += seq - pair.next_seq;
      pair.next_seq = seq + 1;
    } else {
      ++results_.out_of_order;
    }
    if (closed_loop_ && now < meas_end_ && pair.sent - pair.received < opts_.window)
      SendDm(pair, now);
  }

  void RunDm(int64_t t0) {
    meas_start_ = t0 + Seconds(opts_.warmup_s);
    meas_end_ = meas_start_ + Seconds(opts_.duration_s);
    int64_t drain_end = meas_end_ + Seconds(opts_.drain_s);
    while (NowNs() < t0) engine_.Poll(t0);
    results_.t_first = t0;
    if (pairs_.empty()) return;
    if (opts_.mode == "closed") {
      closed_loop_ = true;
      for (int w = 0; w < opts_.window; ++w) {
        int64_t now = NowNs();
        for (Pair& p : pairs_) SendDm(p, now);
      }
      while (NowNs() < meas_end_ && !quit_) engine_.Poll(meas_end_);
    } else {
      // Message k is due at t0 + k * period, whatever happened to message k-1:
      // latency counts from that intended time, so a stalled server is charged
      // for the whole queue it caused (no coordinated omission).
      double local_rate = opts_.rate * static_cast<double>(pairs_.size()) / opts_.pairs;
      double period = 1e9 / local_rate;
      int64_t k = 0;
      while (!quit_) {
        int64_t now = NowNs();
        if (now >= meas_end_) break;
        int64_t due;
        while ((due = t0 + static_cast<int64_t>(static_cast<double>(k) * period)) <= now &&
               due < meas_end_) {
          SendDm(pairs_[static_cast<size_t>(k % static_cast<int64_t>(pairs_.size()))], due);
          ++k;
        }
        engine_.Poll(std::min(due, meas_end_));
      }
    }
    while (results_.received < results_.sent && NowNs() < drain_end && !quit_)
      engine_.Poll(drain_end);
  }

  void WriteResults() {
    results_.pings = static_cast<int64_t>(engine_.pings());
    WriteAll(results_out_, results_.Serialize());
  }

  const Options& opts_;
  int index_;
  int results_out_;
  Engine engine_;
  int concurrency_ = 1;
  std::vector<std::pair<Conn*, uint32_t>> to_start_;
  size_t next_start_ = 0;
  int inflight_ = 0;
  bool pumping_ = false;
  std::vector<Pair> pairs_;
  Results results_;
  std::string scratch_;
  int64_t go_t0_ = -1;
  bool quit_ = false;
  bool closed_loop_ = false;
  int64_t meas_start_ = 0;
  int64_t meas_end_ = 0;
};

}  // namespace

int RunWorker(const Options& opts, int index, int ctl_in, int results_out) {
  // Open-loop sends are due at exact times; the default 50 us timer slack would blur them.
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  if (opts.workload == "sync") return RunSyncWorker(opts, ctl_in, results_out);
  Worker worker(opts, index, ctl_in, results_out);
  return worker.Run();
}

}  // namespace bench
