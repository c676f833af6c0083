#ifndef CHAT_TESTS_UNIT_EDGE_FAKES_H_
#define CHAT_TESTS_UNIT_EDGE_FAKES_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "edge/backends.h"
#include "edge/connection_logic.h"

// Recording fakes for the edge's interfaces. Single-threaded: the tests call
// everything from their own thread. The Serving* variants at the end wrap
// them for a running EdgeServer, whose I/O threads call them.
namespace chat::edge::testing {

// A local connection that remembers what it was handed.
class FakeLocalConnection : public LocalConnection {
 public:
  void Deliver(std::shared_ptr<const std::string> frame) override {
    frames.push_back(std::move(frame));
  }
  void DeliverStored(std::shared_ptr<const std::string> frame, int64_t useq, bool own_copy,
                     int64_t /*edge_received_us*/) override {
    stored.push_back({*frame, useq, own_copy});
  }
  void DeliverReceipt(std::shared_ptr<const std::string> frame) override {
    receipts.push_back(*frame);
  }
  void Reattach() override { ++reattaches; }
  void Kick(uint16_t close_code, std::string reason) override {
    kicks.emplace_back(close_code, std::move(reason));
  }
  struct Stored {
    std::string frame;
    int64_t useq;
    bool own_copy;
  };
  std::vector<Stored> stored;
  std::vector<std::string> receipts;
  int reattaches = 0;

  std::vector<std::string> texts() const {
    std::vector<std::string> out;
    for (const auto& f : frames) out.push_back(*f);
    return out;
  }

  std::vector<std::shared_ptr<const std::string>> frames;
  std::vector<std::pair<uint16_t, std::string>> kicks;
};

// The WebSocket session as ConnectionLogic sees it. Posted work waits until
// the test runs it, as it would wait for the strand.
class FakeSink : public ClientSink {
 public:
  void SendText(std::shared_ptr<const std::string> frame) override { frames.push_back(*frame); }
  void SendStored(std::shared_ptr<const std::string> frame, int64_t from, int64_t to,
                  int64_t /*edge_received_us*/) override {
    frames.push_back(*frame);
    tags.push_back({from, to});
  }
  size_t QueuedBytes() const override { return queued_bytes; }
  void Close(uint16_t code, std::string reason) override {
    closes.emplace_back(code, std::move(reason));
  }
  void Post(std::function<void()> fn) override { posted.push_back(std::move(fn)); }
  std::weak_ptr<ClientSink> WeakSelf() override { return self_; }
  // Simulates the connection going away: answers arriving later are dropped.
  void Destroy() { self_.reset(); }
  void SetReadPaused(bool paused) override { pauses.push_back(paused); }
  void SetExpiry(int64_t expires_at_ms) override { expiries.push_back(expires_at_ms); }

  // Runs posted work (including work posted by it) until none is left.
  void RunPosted() {
    while (!posted.empty()) {
      auto fn = std::move(posted.front());
      posted.pop_front();
      fn();
    }
  }

  std::vector<std::string> frames;
  std::vector<std::pair<int64_t, int64_t>> tags;  // of the frames sent with SendStored
  size_t queued_bytes = 0;
  std::vector<std::pair<uint16_t, std::string>> closes;
  std::deque<std::function<void()>> posted;
  std::vector<bool> pauses;
  std::vector<int64_t> expiries;

 private:
  std::shared_ptr<ClientSink> self_{this, [](ClientSink*) {}};  // not owning
};

// A message-service whose answers the test gives by hand.
class FakeMessageBackend : public MessageBackend {
 public:
  struct Call {
    OutgoingSend send;
    std::function<void(const SendResult&)> done;
  };
  void Send(OutgoingSend send, std::function<void(const SendResult&)> done) override {
    calls.push_back({std::move(send), std::move(done)});
  }
  bool Ready() const override { return true; }
  void Attach(const std::string& connection_id, const std::string& user, int64_t after_useq,
              Done<AttachInfo> done) override {
    attaches.push_back({connection_id, user, after_useq, std::move(done)});
  }
  void Detach(const std::string& connection_id) override { detaches.push_back(connection_id); }
  void Reached(const std::string& user, int64_t from, int64_t to) override {
    reached.push_back({from, to});
  }
  void Sync(const std::string& user, int64_t since, int limit, const std::string& epoch,
            Done<SyncReply> done) override {
    pages.push_back({"sync", since, limit, epoch, std::move(done)});
  }
  void Unread(const std::string& user, int64_t after, int limit, Done<SyncReply> done) override {
    pages.push_back({"unread", after, limit, "", std::move(done)});
  }
  void History(const std::string& user, const std::string& with, int64_t before, int limit,
               Done<HistoryReply> done) override {
    histories.push_back(std::move(done));
  }
  void Conversations(const std::string& user, int limit, const std::string& after,
                     Done<ConversationsReply> done) override {
    conversations.push_back(std::move(done));
  }
  void MarkRead(const std::string& user, const std::string& with, int64_t seq,
                Done<ReadReply> done) override {
    reads.push_back(std::move(done));
  }

  struct AttachCall {
    std::string connection_id;
    std::string user;
    int64_t after_useq;
    Done<AttachInfo> done;
  };
  struct PageCall {
    std::string kind;  // "sync" or "unread"
    int64_t from;
    int limit;
    std::string epoch;
    Done<SyncReply> done;
  };
  std::vector<Call> calls;
  std::vector<AttachCall> attaches;
  std::vector<std::string> detaches;
  std::vector<std::pair<int64_t, int64_t>> reached;
  std::vector<PageCall> pages;
  std::vector<Done<HistoryReply>> histories;
  std::vector<Done<ConversationsReply>> conversations;
  std::vector<Done<ReadReply>> reads;
};

// A connection-service whose ListUsers answers the test gives by hand.
class FakeDirectory : public DirectoryBackend {
 public:
  struct ListCall {
    bool online_only;
    int limit;
    std::string after;
    std::function<void(absl::StatusOr<UserPage>)> done;
  };
  void ListUsers(bool online_only, int limit, const std::string& after,
                 std::function<void(absl::StatusOr<UserPage>)> done) override {
    list_calls.push_back({online_only, limit, after, std::move(done)});
  }
  void Register(NewConnection connection, std::function<void(absl::Status)> done) override {
    registered.push_back(std::move(connection));
    done(absl::OkStatus());
  }
  void Unregister(const std::string& connection_id) override {
    unregistered.push_back(connection_id);
  }
  bool Ready() const override { return true; }

  std::vector<ListCall> list_calls;
  std::vector<NewConnection> registered;
  std::vector<std::string> unregistered;
};

// What the Serving* fakes share: the lock over their records, and a wait
// for a condition on them (signalled on every call).
class CallLog {
 public:
  // Waits until `pred` (run under `mu`) holds; false when `timeout` passed.
  template <typename Pred>
  bool WaitFor(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, timeout, pred);
  }
  // Runs `fn` under `mu`, for reading the records.
  template <typename Fn>
  auto Locked(Fn fn) {
    std::lock_guard<std::mutex> lock(mu);
    return fn();
  }

  std::mutex mu;

 protected:
  // Records under the lock, then wakes waiters.
  template <typename Fn>
  void Record(Fn fn) {
    {
      std::lock_guard<std::mutex> lock(mu);
      fn();
    }
    cv.notify_all();
  }

 private:
  std::condition_variable cv;
};

// FakeMessageBackend for a running EdgeServer: thread-safe, and it answers
// attaches by itself (with `attach_info`) so connections reach their hello.
// Sends wait for the test (AnswerSend) unless `send_answer` is set.
class ServingMessageBackend : public FakeMessageBackend, public CallLog {
 public:
  void Send(OutgoingSend send, std::function<void(const SendResult&)> done) override {
    std::optional<SendResult> answer;
    Record([&] {
      answer = send_answer;
      FakeMessageBackend::Send(std::move(send), answer ? nullptr : done);
    });
    if (answer) done(*answer);
  }
  // Answers send `i` (in arrival order) outside the lock, as the link would.
  void AnswerSend(size_t i, const SendResult& result) {
    auto done = Locked([&] { return std::move(calls.at(i).done); });
    done(result);
  }
  bool Ready() const override { return ready.load(); }
  void Attach(const std::string& connection_id, const std::string& user, int64_t after_useq,
              Done<AttachInfo> done) override {
    AttachInfo info;
    Record([&] {
      info = attach_info;
      attaches.push_back({connection_id, user, after_useq, nullptr});
    });
    done(info);
  }
  void Detach(const std::string& connection_id) override {
    Record([&] { FakeMessageBackend::Detach(connection_id); });
  }
  void Reached(const std::string& user, int64_t from, int64_t to) override {
    Record([&] { FakeMessageBackend::Reached(user, from, to); });
  }
  void Sync(const std::string& user, int64_t since, int limit, const std::string& epoch,
            Done<SyncReply> done) override {
    Record([&] { FakeMessageBackend::Sync(user, since, limit, epoch, std::move(done)); });
  }
  void Unread(const std::string& user, int64_t after, int limit, Done<SyncReply> done) override {
    Record([&] { FakeMessageBackend::Unread(user, after, limit, std::move(done)); });
  }
  void History(const std::string& user, const std::string& with, int64_t before, int limit,
               Done<HistoryReply> done) override {
    Record([&] { FakeMessageBackend::History(user, with, before, limit, std::move(done)); });
  }
  void Conversations(const std::string& user, int limit, const std::string& after,
                     Done<ConversationsReply> done) override {
    Record([&] { FakeMessageBackend::Conversations(user, limit, after, std::move(done)); });
  }
  void MarkRead(const std::string& user, const std::string& with, int64_t seq,
                Done<ReadReply> done) override {
    Record([&] { FakeMessageBackend::MarkRead(user, with, seq, std::move(done)); });
  }

  std::atomic<bool> ready{true};
  AttachInfo attach_info{"epoch-1", 0, 0};  // guarded by mu
  std::optional<SendResult> send_answer;    // guarded by mu
};

// FakeDirectory for a running EdgeServer: thread-safe; Register answers
// `register_status` at once.
class ServingDirectory : public FakeDirectory, public CallLog {
 public:
  void ListUsers(bool online_only, int limit, const std::string& after,
                 std::function<void(absl::StatusOr<UserPage>)> done) override {
    Record([&] { FakeDirectory::ListUsers(online_only, limit, after, std::move(done)); });
  }
  void Register(NewConnection connection, std::function<void(absl::Status)> done) override {
    absl::Status status;
    Record([&] {
      status = register_status;
      registered.push_back(std::move(connection));
    });
    done(status);
  }
  void Unregister(const std::string& connection_id) override {
    Record([&] { FakeDirectory::Unregister(connection_id); });
  }
  bool Ready() const override { return ready.load(); }

  std::atomic<bool> ready{true};
  absl::Status register_status;  // guarded by mu
};

}  // namespace chat::edge::testing

#endif  // CHAT_TESTS_UNIT_EDGE_FAKES_H_
