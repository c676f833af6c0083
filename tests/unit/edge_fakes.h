#ifndef CHAT_TESTS_UNIT_EDGE_FAKES_H_
#define CHAT_TESTS_UNIT_EDGE_FAKES_H_

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "edge/backends.h"
#include "edge/connection_logic.h"

// Recording fakes for the edge's interfaces. Single-threaded: the tests call
// everything from their own thread.
namespace chat::edge::testing {

// A local connection that remembers what it was handed.
class FakeLocalConnection : public LocalConnection {
 public:
  void Deliver(std::shared_ptr<const std::string> frame) override {
    frames.push_back(std::move(frame));
  }
  void Kick(uint16_t close_code, std::string reason) override {
    kicks.emplace_back(close_code, std::move(reason));
  }

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

  std::vector<Call> calls;
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

}  // namespace chat::edge::testing

#endif  // CHAT_TESTS_UNIT_EDGE_FAKES_H_
