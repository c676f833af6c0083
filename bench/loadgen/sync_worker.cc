#include "sync_worker.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <string>
#include <vector>

#include "results.h"
#include "synced_page.h"
#include "ws_engine.h"

namespace bench {
namespace {

constexpr int64_t kSecond = 1000000000;

class SyncWorker : public Engine::Handler {
 public:
  SyncWorker(const Options& opts, int ctl_in, int results_out)
      : opts_(opts), results_out_(results_out), engine_(opts, this) {
    engine_.WatchControl(ctl_in);
    const int n = opts_.messages;
    seen_.assign(static_cast<size_t>(n) + 1, false);
    refused_.assign(static_cast<size_t>(n), false);
    send_of_useq_.assign(1, -1);
  }

  int Run() {
    recipient_name_ = opts_.name_prefix + "sr0";
    // The recipient first: it must exist before anyone sends to it.
    receiver_ = &engine_.Add(recipient_name_);
    sender_ = &engine_.Add(opts_.name_prefix + "ss0");
    int64_t deadline = NowNs() + static_cast<int64_t>(opts_.connect_timeout_s * 1e9);
    Open(*receiver_, 0, deadline);
    Open(*sender_, 1, deadline);
    WriteAll(results_out_, "READY " + std::to_string(results_.conns_ok) + " " +
                               std::to_string(results_.conns_failed) + "\n");
    while (go_t0_ < 0 && !quit_) engine_.Poll(NowNs() + kSecond);
    if (quit_) return 1;
    while (NowNs() < go_t0_) engine_.Poll(go_t0_);

    Fill();
    if (!Phase("filled")) return 1;

    // A new device of the recipient: the first connection goes away, and the
    // fresh one starts from nothing.
    engine_.Close(*receiver_);
    catchup_ = &engine_.Add(recipient_name_);
    Open(*catchup_, 2, NowNs() + PhaseTimeout());
    if (!Phase("connected")) return 1;

    Sync();
    if (!Phase("synced")) return 1;
    Finish();
    WriteAll(results_out_, results_.Serialize());
    while (!quit_) engine_.Poll(NowNs() + kSecond);
    for (Conn& c : engine_.conns()) engine_.Close(c);
    return 0;
  }

  void OnOpen(Conn& c, int64_t now) override {
    ++results_.conns_ok;
    opening_ = nullptr;
  }

  void OnClosed(Conn& c, const std::string& why, int64_t now) override {
    ++results_.events[why];
    if (c.opened) {
      ++results_.disconnects;
    } else {
      ++results_.conns_failed;
      opening_ = nullptr;
    }
  }

  void OnMessage(Conn& c, std::string_view payload, int64_t now) override {
    std::string_view action;
    if (!FindStringField(payload, "action", &action)) {
      ++results_.events["unparsed_frame"];
      return;
    }
    if (action == "sent" && &c == sender_) {
      ++acked_;
      if (sent_ < opts_.messages) Send(now);
    } else if (action == "send" && &c == receiver_) {
      ++live_;
    } else if (action == "send" && &c == catchup_) {
      // Pushed after hello: only messages that never reached the first
      // connection are pushed, so this should stay 0.
      ++results_.events["pushed_to_fresh_connection"];
    } else if (action == "synced" && &c == catchup_) {
      OnSynced(payload, now);
    } else if (action == "error") {
      std::string_view code;
      FindStringField(payload, "code", &code);
      ++results_.events["error:" + std::string(code)];
      if (&c == sender_) {
        ++send_errors_;
        // Refused sends store nothing: the later ones take the useqs
        // (request_id is the send's number).
        std::string_view id;
        int64_t k = -1;
        if (FindStringField(payload, "request_id", &id)) {
          std::from_chars(id.data(), id.data() + id.size(), k);
        }
        if (k >= 0 && k < static_cast<int64_t>(refused_.size())) refused_[k] = true;
        if (sent_ < opts_.messages) Send(now);
      } else if (&c == catchup_) {
        sync_failed_ = true;
      }
    } else {
      ++results_.events["unexpected:" + std::string(action)];
    }
  }

  void OnControl(std::string_view line) override {
    if (line.rfind("GO ", 0) == 0) {
      go_t0_ = std::atoll(std::string(line.substr(3)).c_str());
    } else if (line == "NEXT") {
      next_ = true;
    } else if (line == "QUIT" || line == "EOF") {
      quit_ = true;
    }
  }

 private:
  int64_t PhaseTimeout() const { return static_cast<int64_t>(opts_.phase_timeout_s * 1e9); }

  // Connects one connection and waits until it is open (hello) or failed.
  void Open(Conn& c, uint32_t source, int64_t deadline) {
    opening_ = &c;
    engine_.Start(c, source);
    while (opening_ != nullptr && !quit_ && NowNs() < deadline) engine_.Poll(deadline);
    if (opening_ != nullptr) {
      engine_.Close(c);
      ++results_.conns_failed;
      ++results_.events["connect_timeout"];
      opening_ = nullptr;
    }
  }

  // Tells the parent where we are; it samples the servers and answers NEXT.
  bool Phase(const char* name) {
    next_ = false;
    WriteAll(results_out_, std::string("PHASE ") + name + "\n");
    while (!next_ && !quit_) engine_.Poll(NowNs() + kSecond);
    return next_;
  }

  void Send(int64_t now) {
    std::string& m = scratch_;
    m.assign(R"({"action":"send","send_to":")");
    m.append(recipient_name_);
    m.append(R"(","message":")");
    size_t text_start = m.size();
    char num[24];
    m.append(num, std::to_chars(num, num + sizeof num, sent_).ptr);
    m.push_back(':');
    size_t text = m.size() - text_start;
    if (text < static_cast<size_t>(opts_.message_bytes)) m.append(opts_.message_bytes - text, 'x');
    m.append(R"(","request_id":")");
    m.append(num, std::to_chars(num, num + sizeof num, sent_).ptr);
    m.append(R"("})");
    engine_.SendText(*sender_, m);
    ++sent_;
  }

  void Fill() {
    const int64_t start = NowNs();
    const int64_t deadline = start + PhaseTimeout();
    if (sender_->state == ConnState::kOpen && receiver_->state == ConnState::kOpen) {
      for (int w = 0; w < opts_.window && sent_ < opts_.messages; ++w) Send(start);
      while (!quit_ && NowNs() < deadline &&
             (acked_ + send_errors_ < opts_.messages || live_ < acked_)) {
        if (sender_->state != ConnState::kOpen || receiver_->state != ConnState::kOpen) break;
        engine_.Poll(deadline);
      }
    }
    results_.values["fill_ns"] = NowNs() - start;
    results_.values["fill_acked"] = acked_;
    results_.values["fill_live_received"] = live_;
    results_.sent = sent_;
  }

  void RequestPage() {
    std::string request = R"({"action":"sync","since":)" + std::to_string(since_) + R"(,"limit":)" +
                          std::to_string(opts_.page) + R"(,"request_id":"p)" +
                          std::to_string(pages_) + R"("})";
    page_sent_at_ = NowNs();
    engine_.SendText(*catchup_, request);
  }

  void OnSynced(std::string_view payload, int64_t now) {
    results_.latency.Record(now - page_sent_at_);
    ++pages_;
    SyncedPage page;
    if (!ParseSyncedPage(payload, &page)) {
      ++results_.events["unparsed_synced"];
      sync_failed_ = true;
      return;
    }
    if (page.epoch.empty()) ++results_.events["synced_without_epoch"];
    if (page.reset) ++results_.events["synced_reset"];
    for (const SyncedPage::Message& m : page.messages) {
      ++synced_;
      if (m.useq < 1 || m.useq >= static_cast<int64_t>(send_of_useq_.size())) {
        ++out_of_range_;
        continue;
      }
      if (seen_[static_cast<size_t>(m.useq)]) {
        ++duplicates_;
        continue;
      }
      seen_[static_cast<size_t>(m.useq)] = true;
      if (m.useq != last_useq_ + 1) ++out_of_order_;
      last_useq_ = m.useq;
      // The sender's k-th message (text "k:...") that was not refused.
      int64_t k = -1;
      std::from_chars(m.text.data(), m.text.data() + m.text.size(), k);
      if (k != send_of_useq_[static_cast<size_t>(m.useq)]) ++text_mismatch_;
    }
    if (page.more && !page.messages.empty() && page.useq > since_) {
      since_ = page.useq;
      RequestPage();
    } else {
      if (page.more) ++results_.events["more_without_progress"];
      sync_done_ = true;
    }
  }

  void Sync() {
    // What the recipient's stream holds: the sends not refused, in order.
    send_of_useq_.assign(1, -1);
    for (int64_t k = 0; k < sent_; ++k) {
      if (!refused_[static_cast<size_t>(k)]) send_of_useq_.push_back(k);
    }
    const int64_t start = NowNs();
    const int64_t deadline = start + PhaseTimeout();
    if (catchup_->state == ConnState::kOpen) {
      RequestPage();
      while (!sync_done_ && !sync_failed_ && !quit_ && NowNs() < deadline &&
             catchup_->state == ConnState::kOpen)
        engine_.Poll(deadline);
    }
    results_.values["sync_ns"] = NowNs() - start;
    results_.t_first = start;
    results_.t_last = NowNs();
  }

  void Finish() {
    int64_t distinct = 0;
    for (size_t u = 1; u < seen_.size(); ++u) distinct += seen_[u] ? 1 : 0;
    auto& v = results_.values;
    v["sync_complete"] = sync_done_ && !sync_failed_ ? 1 : 0;
    v["pages"] = pages_;
    v["synced_messages"] = synced_;
    v["distinct_useqs"] = distinct;
    const int64_t stored = static_cast<int64_t>(send_of_useq_.size()) - 1;
    v["refused_sends"] = sent_ - stored;
    v["missing_useqs"] = stored - distinct;
    v["duplicates"] = duplicates_;
    v["out_of_range"] = out_of_range_;
    v["out_of_order"] = out_of_order_;
    v["text_mismatch"] = text_mismatch_;
    v["last_useq"] = last_useq_;
    results_.received = synced_;
    results_.out_of_order = out_of_order_;
    results_.gaps = stored - distinct;
  }

  const Options& opts_;
  int results_out_;
  Engine engine_;
  Results results_;
  std::string recipient_name_;
  std::string scratch_;
  Conn* sender_ = nullptr;
  Conn* receiver_ = nullptr;  // online while the messages are stored
  Conn* catchup_ = nullptr;   // the fresh connection that syncs
  Conn* opening_ = nullptr;
  int64_t go_t0_ = -1;
  bool next_ = false;
  bool quit_ = false;
  // Filling.
  int64_t sent_ = 0, acked_ = 0, send_errors_ = 0, live_ = 0;
  // Syncing.
  int64_t since_ = 0, pages_ = 0, synced_ = 0, page_sent_at_ = 0, last_useq_ = 0;
  int64_t duplicates_ = 0, out_of_range_ = 0, out_of_order_ = 0, text_mismatch_ = 0;
  bool sync_done_ = false, sync_failed_ = false;
  std::vector<bool> seen_;     // by useq
  std::vector<bool> refused_;  // by send number: answered with an error
  // The recipient's useq -> the number of the send it holds ([0] unused).
  std::vector<int64_t> send_of_useq_;
};

}  // namespace

int RunSyncWorker(const Options& opts, int ctl_in, int results_out) {
  SyncWorker worker(opts, ctl_in, results_out);
  return worker.Run();
}

}  // namespace bench
