// DirectoryClient against an in-process fake EdgeRegistry: what the edge
// sends connection-service, and how it recovers when the registry loses its
// connections (lease expired, new instance, process restarted on the same
// port). These paths ran before only in end-to-end tests that kill processes.
#include "edge/directory_client.h"

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "chat/v1/chat.grpc.pb.h"
#include "common/grpc_server.h"
#include "common/grpc_status.h"
#include "edge/local_hub.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/grpc/grpc_test_util.h"

namespace chat::edge {
namespace {

namespace v1 = chat::v1;
using ::testing::ElementsAre;

constexpr absl::Duration kWait = absl::Seconds(4);

// Polls `cond` until it holds or `timeout` passes (for state only the client
// knows, like Ready() or a ban; the registry's own state is awaited on its
// mutex).
bool Eventually(const std::function<bool()>& cond, absl::Duration timeout = kWait) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!cond()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

// A server stream the test writes to whenever it likes: messages queue and go
// out one write at a time. Deletes itself when the call ends.
template <typename Msg>
class StreamSet {
 public:
  class Writer final : public grpc::ServerWriteReactor<Msg> {
   public:
    explicit Writer(StreamSet* set) : set_(set) {}
    void Send(const Msg& msg) {
      const Msg* next = nullptr;
      {
        absl::MutexLock lock(&mu_);
        if (ending_) return;
        queue_.push_back(msg);
        if (writing_) return;
        writing_ = true;
        next = &queue_.front();
      }
      this->StartWrite(next);
    }
    void OnWriteDone(bool ok) override {
      const Msg* next = nullptr;
      {
        absl::MutexLock lock(&mu_);
        queue_.pop_front();
        if (!ok || queue_.empty() || ending_) {
          writing_ = false;
          if (!ending_) return;
        } else {
          next = &queue_.front();
        }
      }
      if (next == nullptr) {
        this->Finish(end_status_);
        return;
      }
      this->StartWrite(next);
    }
    // Ends the call with `status` once the writes queued so far went out
    // (as a server that closes its stream).
    void End(grpc::Status status) {
      {
        absl::MutexLock lock(&mu_);
        if (ending_) return;
        ending_ = true;
        end_status_ = std::move(status);
        if (writing_) return;  // OnWriteDone finishes
      }
      this->Finish(end_status_);
    }
    // The client went away or the server is shutting down.
    void OnCancel() override { End(grpc::Status::CANCELLED); }
    void OnDone() override {
      set_->Remove(this);
      delete this;
    }

   private:
    StreamSet* set_;
    absl::Mutex mu_;
    std::deque<Msg> queue_ ABSL_GUARDED_BY(mu_);  // front: being written
    bool writing_ ABSL_GUARDED_BY(mu_) = false;
    bool ending_ ABSL_GUARDED_BY(mu_) = false;
    grpc::Status end_status_;  // set once, before Finish
  };

  // A new stream that starts with `first` (the snapshot).
  Writer* Open(const std::vector<Msg>& first) {
    auto* writer = new Writer(this);
    absl::MutexLock lock(&mu_);
    writers_.insert(writer);
    for (const Msg& msg : first) writer->Send(msg);
    return writer;
  }
  void Broadcast(const Msg& msg) {
    absl::MutexLock lock(&mu_);
    for (Writer* writer : writers_) writer->Send(msg);
  }
  // The server ends every stream, OK, after what was queued.
  void EndAll() {
    absl::MutexLock lock(&mu_);
    for (Writer* writer : writers_) writer->End(grpc::Status::OK);
  }

 private:
  void Remove(Writer* writer) {
    absl::MutexLock lock(&mu_);
    writers_.erase(writer);
  }

  absl::Mutex mu_;
  std::set<Writer*> writers_ ABSL_GUARDED_BY(mu_);
};

// What the fake registry saw and holds.
struct RegistryState {
  std::map<std::string, v1::Connection> table;  // connection id -> connection
  std::vector<v1::RegisterRequest> registers;
  std::vector<v1::UnregisterRequest> unregisters;
  std::vector<v1::HeartbeatRequest> heartbeats;
  std::vector<v1::WatchRoutesRequest> route_watches;
  std::vector<v1::ListUsersRequest> list_requests;
  int presence_watches = 0;
  size_t held = 0;             // Register calls waiting for ReleaseHeld
  size_t held_heartbeats = 0;  // Heartbeat calls waiting for ReleaseHeld

  std::set<std::string> ids() const {
    std::set<std::string> out;
    for (const auto& [id, c] : table) out.insert(id);
    return out;
  }
  // Connection ids in Register calls from the `from`th on.
  std::set<std::string> registered_since(size_t from) const {
    std::set<std::string> out;
    for (size_t i = from; i < registers.size(); ++i) {
      for (const auto& c : registers[i].connections()) out.insert(c.connection_id());
    }
    return out;
  }
};

// EdgeRegistry as connection-service serves it, reduced to what the edge's
// DirectoryClient uses, with knobs for the failures the client must survive.
class FakeRegistry final : public v1::EdgeRegistry::CallbackService {
 public:
  explicit FakeRegistry(std::string instance) : instance_(std::move(instance)) {
    route_snapshot_.set_reset(true);  // an empty snapshot until a test sets one
    route_snapshot_.set_snapshot_done(true);
  }

  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* ctx,
                                     const v1::RegisterRequest* request,
                                     v1::RegisterResponse* response) override {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    std::function<void()> finish;
    {
      absl::MutexLock lock(&mu_);
      state_.registers.push_back(*request);
      if (store_away_) {
        finish = [reactor] { reactor->Finish(StoreAwayStatus()); };
      } else if (failures_left_ > 0) {
        --failures_left_;
        finish = [reactor, code = failure_code_] {
          reactor->Finish(grpc::Status(code, "fake registry refused"));
        };
      } else {
        finish = [this, reactor, request, response, held = hold_] {
          {
            absl::MutexLock lock(&mu_);
            for (v1::Connection c : request->connections()) {
              c.set_edge_id(request->edge_id());
              state_.table[c.connection_id()] = c;
            }
            response->set_instance_id(instance_);
            if (held) --state_.held;
          }
          reactor->Finish(grpc::Status::OK);
        };
        if (hold_) {
          ++state_.held;
          held_.push_back(std::move(finish));
          return reactor;
        }
      }
    }
    finish();
    return reactor;
  }

  grpc::ServerUnaryReactor* Unregister(grpc::CallbackServerContext* ctx,
                                       const v1::UnregisterRequest* request,
                                       v1::UnregisterResponse* response) override {
    {
      absl::MutexLock lock(&mu_);
      state_.unregisters.push_back(*request);
      for (const auto& id : request->connection_ids()) state_.table.erase(id);
      response->set_instance_id(instance_);
    }
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override {
    {
      absl::MutexLock lock(&mu_);
      state_.heartbeats.push_back(*request);
      if (store_away_) {
        grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
        reactor->Finish(StoreAwayStatus());
        return reactor;
      }
      response->set_instance_id(instance_);
      // As the real registry: a heartbeat (re)creates the lease it reports.
      response->set_lease_known(lease_known_);
      response->set_lease_timeout_ms(lease_timeout_ms_);
      lease_known_ = true;
      if (hold_heartbeats_) {
        grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
        ++state_.held_heartbeats;
        held_.push_back([reactor] { reactor->Finish(grpc::Status::OK); });
        return reactor;
      }
    }
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  // Two users a page; the token is the last name of the page.
  grpc::ServerUnaryReactor* ListUsers(grpc::CallbackServerContext* ctx,
                                      const v1::ListUsersRequest* request,
                                      v1::ListUsersResponse* response) override {
    {
      absl::MutexLock lock(&mu_);
      state_.list_requests.push_back(*request);
      for (const char* name : {"amy", "bob", "cat"}) {
        if (response->users_size() == 2) {
          response->set_next_page_token(response->users(1).name());
          break;
        }
        if (name <= request->page_token()) continue;
        auto* user = response->add_users();
        user->set_name(name);
        user->set_online(std::string(name) != "bob");
      }
    }
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerWriteReactor<v1::RouteUpdate>* WatchRoutes(
      grpc::CallbackServerContext*, const v1::WatchRoutesRequest* request) override {
    std::vector<v1::RouteUpdate> snapshot;
    {
      absl::MutexLock lock(&mu_);
      state_.route_watches.push_back(*request);
      snapshot.push_back(route_snapshot_);
    }
    return routes_.Open(snapshot);
  }

  grpc::ServerWriteReactor<v1::PresenceEvent>* WatchPresence(
      grpc::CallbackServerContext*, const v1::WatchPresenceRequest*) override {
    std::vector<v1::PresenceEvent> snapshot;
    {
      absl::MutexLock lock(&mu_);
      ++state_.presence_watches;
      for (const auto& user : online_) {
        v1::PresenceEvent e;
        e.set_name(user);
        e.set_online(true);
        e.set_snapshot(true);
        e.set_instance_id(instance_);
        snapshot.push_back(e);
      }
      v1::PresenceEvent end;
      end.set_snapshot_end(true);
      end.set_instance_id(instance_);
      snapshot.push_back(end);
    }
    return presence_.Open(snapshot);
  }

  // Waits until `pred` holds for what the registry saw.
  bool WaitUntil(const std::function<bool(const RegistryState&)>& pred,
                 absl::Duration timeout = kWait) {
    absl::MutexLock lock(&mu_);
    auto holds = [&] { return pred(state_); };
    return mu_.AwaitWithTimeout(absl::Condition(&holds), timeout);
  }
  RegistryState state() {
    absl::MutexLock lock(&mu_);
    return state_;
  }

  // The registry lost this edge's connections and lease (it expired): the
  // next heartbeat answers lease_known = false.
  void ForgetEdge() {
    absl::MutexLock lock(&mu_);
    state_.table.clear();
    lease_known_ = false;
  }
  // The registry lost everything and says so only through a new instance id.
  void LoseTableAs(std::string instance) {
    absl::MutexLock lock(&mu_);
    state_.table.clear();
    instance_ = std::move(instance);
  }
  // As connection-service answers while its Redis is out of reach: Register
  // and Heartbeat fail UNAVAILABLE with the reason REGISTRY_UNAVAILABLE.
  void SetStoreAway(bool away) {
    absl::MutexLock lock(&mu_);
    store_away_ = away;
  }
  static grpc::Status StoreAwayStatus() {
    return ToGrpcStatus(
        WithReason(absl::UnavailableError("registry unavailable"), "REGISTRY_UNAVAILABLE"));
  }
  void SetLeaseTimeoutMs(int64_t ms) {
    absl::MutexLock lock(&mu_);
    lease_timeout_ms_ = ms;
  }
  // The next `n` Register calls fail with `code`.
  void FailRegisters(int n, grpc::StatusCode code) {
    absl::MutexLock lock(&mu_);
    failures_left_ = n;
    failure_code_ = code;
  }
  // Register calls wait (unanswered) until ReleaseHeld.
  void HoldRegisters() {
    absl::MutexLock lock(&mu_);
    hold_ = true;
  }
  // Heartbeat calls wait (unanswered) until ReleaseHeld.
  void HoldHeartbeats() {
    absl::MutexLock lock(&mu_);
    hold_heartbeats_ = true;
  }
  // Answers the held calls and stops holding.
  void ReleaseHeld() {
    std::vector<std::function<void()>> held;
    {
      absl::MutexLock lock(&mu_);
      hold_ = false;
      hold_heartbeats_ = false;
      held.swap(held_);
    }
    for (auto& finish : held) finish();
  }
  void SetRouteSnapshot(v1::RouteUpdate snapshot) {
    absl::MutexLock lock(&mu_);
    route_snapshot_ = std::move(snapshot);
  }
  void SetOnline(std::set<std::string> users) {
    absl::MutexLock lock(&mu_);
    online_ = std::move(users);
  }
  void SendRoutes(const v1::RouteUpdate& update) { routes_.Broadcast(update); }
  // Ends the route and presence streams (OK) without going away.
  void EndStreams() {
    routes_.EndAll();
    presence_.EndAll();
  }

 private:
  absl::Mutex mu_;
  RegistryState state_ ABSL_GUARDED_BY(mu_);
  std::string instance_ ABSL_GUARDED_BY(mu_);
  bool lease_known_ ABSL_GUARDED_BY(mu_) = false;  // a new registry knows no lease
  int failures_left_ ABSL_GUARDED_BY(mu_) = 0;
  bool store_away_ ABSL_GUARDED_BY(mu_) = false;
  int64_t lease_timeout_ms_ ABSL_GUARDED_BY(mu_) = 10000;
  grpc::StatusCode failure_code_ ABSL_GUARDED_BY(mu_) = grpc::StatusCode::UNAVAILABLE;
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_heartbeats_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::function<void()>> held_ ABSL_GUARDED_BY(mu_);
  v1::RouteUpdate route_snapshot_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> online_ ABSL_GUARDED_BY(mu_);
  StreamSet<v1::RouteUpdate> routes_;
  StreamSet<v1::PresenceEvent> presence_;
};

// A local connection recording kicks and frames; thread-safe (the client
// calls it from gRPC's threads, where its stream readers' callbacks run).
class RecordingConnection final : public LocalConnection {
 public:
  void Deliver(std::shared_ptr<const std::string> frame) override {
    absl::MutexLock lock(&mu_);
    frames_.push_back(*frame);
  }
  void DeliverStored(std::shared_ptr<const std::string>, int64_t, bool, int64_t) override {}
  void DeliverReceipt(std::shared_ptr<const std::string>) override {}
  void Reattach() override {}
  void Kick(uint16_t close_code, std::string reason) override {
    absl::MutexLock lock(&mu_);
    kicks_.emplace_back(close_code, std::move(reason));
  }
  std::vector<std::pair<uint16_t, std::string>> kicks() {
    absl::MutexLock lock(&mu_);
    return kicks_;
  }
  std::vector<std::string> frames() {
    absl::MutexLock lock(&mu_);
    return frames_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::pair<uint16_t, std::string>> kicks_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> frames_ ABSL_GUARDED_BY(mu_);
};

NewConnection Conn(int n, const std::string& user = "alice") {
  NewConnection c;
  c.connection_id = absl::StrCat("e1-", n);
  c.user = user;
  c.connected_at_ms = 1000 + n;
  c.user_agent = "test-agent";
  c.ip = "127.0.0.1";
  return c;
}

v1::RouteChange Ban(const std::string& user, int64_t until_ms) {
  v1::RouteChange change;
  change.set_kind(v1::RouteChange::BANNED);
  change.mutable_connection()->set_user(user);
  change.set_ban_until_ms(until_ms);
  return change;
}

v1::RouteUpdate SnapshotWithBans(const std::vector<v1::RouteChange>& bans) {
  v1::RouteUpdate update;
  update.set_reset(true);
  update.set_snapshot_done(true);
  for (const auto& ban : bans) *update.add_changes() = ban;
  return update;
}

v1::RouteUpdate Kick(const std::string& connection_id, int code, const std::string& reason) {
  v1::RouteUpdate update;
  auto* change = update.add_changes();
  change->set_kind(v1::RouteChange::REMOVED);
  change->set_reason(v1::RouteChange::KICKED);
  change->mutable_connection()->set_connection_id(connection_id);
  change->set_close_code(code);
  change->set_close_reason(reason);
  return update;
}

// A Register's outcome, once its callback ran.
class Outcome {
 public:
  std::function<void(absl::Status)> Callback() {
    return [this](absl::Status status) {
      status_ = std::move(status);
      done_.Notify();
    };
  }
  // The status, or DeadlineExceeded when the callback did not run in time.
  absl::Status Wait(absl::Duration timeout = kWait) {
    if (!done_.WaitForNotificationWithTimeout(timeout)) {
      return absl::DeadlineExceededError("the Register callback never ran");
    }
    return status_;
  }
  bool HasRun() const { return done_.HasBeenNotified(); }

 private:
  absl::Notification done_;
  absl::Status status_;
};

class DirectoryClientTest : public ::testing::Test {
 protected:
  // Heartbeats every 50 ms unless a test needs them (nearly) off.
  static DirectoryOptions FastOptions() {
    DirectoryOptions options;
    options.rpc_deadline = std::chrono::milliseconds(2000);
    options.heartbeat_interval = std::chrono::milliseconds(50);
    return options;
  }

  // `configure` runs before the server starts, so the client never sees the
  // registry unconfigured.
  void StartRegistry(const std::string& instance,
                     const std::function<void(FakeRegistry&)>& configure = nullptr) {
    registry_ = std::make_unique<FakeRegistry>(instance);
    if (configure) configure(*registry_);
    StartServer();
  }
  void StartServer() {
    GrpcServerOptions options;
    options.listen = absl::StrCat("127.0.0.1:", port_);
    auto started = StartGrpcServer(options, {registry_.get()});
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = std::move(started->server);
    port_ = started->port;
    if (channel_ == nullptr) channel_ = MakeChannel(absl::StrCat("127.0.0.1:", port_));
  }
  // Ends every call, streams included, and forgets the registry.
  void StopRegistry() {
    if (registry_ != nullptr) registry_->ReleaseHeld();
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
      server_->Wait();
      server_.reset();
    }
    registry_.reset();
  }
  // The same port, a new process: an empty table and a new instance id.
  void RestartRegistry(const std::string& instance,
                       const std::function<void(FakeRegistry&)>& configure = nullptr) {
    StopRegistry();
    StartRegistry(instance, configure);
  }

  // With fast heartbeats, returns once the first one was answered and acted
  // on (the second began): a new registry answers it lease_known = false,
  // and the re-registration that follows must not race the test's own calls.
  void StartClient(DirectoryOptions options) {
    client_ = std::make_unique<DirectoryClient>(channel_, "e1", &hub_, options);
    if (options.heartbeat_interval < std::chrono::seconds(1)) {
      ASSERT_TRUE(
          registry_->WaitUntil([](const RegistryState& s) { return s.heartbeats.size() >= 2; }));
    }
  }

  absl::Status RegisterNow(NewConnection connection) {
    Outcome outcome;
    client_->Register(std::move(connection), outcome.Callback());
    return outcome.Wait();
  }

  void TearDown() override {
    if (registry_ != nullptr) registry_->ReleaseHeld();
    client_.reset();
    StopRegistry();
    if (channel_ != nullptr) ReleaseChannel(std::move(channel_), std::chrono::seconds(5));
  }

  int port_ = 0;
  std::unique_ptr<FakeRegistry> registry_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  LocalHub hub_;
  std::unique_ptr<DirectoryClient> client_;
};

std::set<std::string> Ids(std::initializer_list<int> ns) {
  std::set<std::string> out;
  for (int n : ns) out.insert(absl::StrCat("e1-", n));
  return out;
}

// One call in flight; what arrives meanwhile goes up in batches of at most
// max_batch, and every registration gets its own answer.
TEST_F(DirectoryClientTest, RegistrationsAreBatchedAndEachAnswered) {
  StartRegistry("i1");
  DirectoryOptions options = FastOptions();
  options.max_batch = 4;
  StartClient(options);

  registry_->HoldRegisters();
  std::vector<std::unique_ptr<Outcome>> outcomes;
  for (int n = 0; n < 10; ++n) {
    outcomes.push_back(std::make_unique<Outcome>());
    client_->Register(Conn(n), outcomes.back()->Callback());
    if (n == 0) {
      ASSERT_TRUE(registry_->WaitUntil([](const RegistryState& s) { return s.held == 1; }));
    }
  }
  registry_->ReleaseHeld();
  for (auto& outcome : outcomes) EXPECT_TRUE(outcome->Wait().ok()) << outcome->Wait();

  const RegistryState state = registry_->state();
  ASSERT_EQ(state.registers.size(), 4u) << "1 + 9 queued in batches of 4";
  EXPECT_EQ(state.registers[0].connections_size(), 1);
  std::vector<int> sizes;
  for (size_t i = 1; i < state.registers.size(); ++i) {
    sizes.push_back(state.registers[i].connections_size());
  }
  EXPECT_THAT(sizes, ElementsAre(4, 4, 1));
  const std::string incarnation = state.registers[0].incarnation();
  EXPECT_FALSE(incarnation.empty());
  for (const auto& r : state.registers) {
    EXPECT_EQ(r.edge_id(), "e1");
    EXPECT_EQ(r.incarnation(), incarnation) << "one incarnation per process";
  }
  ASSERT_EQ(state.table.size(), 10u);
  const v1::Connection& c7 = state.table.at("e1-7");
  EXPECT_EQ(c7.user(), "alice");
  EXPECT_EQ(c7.connected_at_ms(), 1007);
  EXPECT_EQ(c7.user_agent(), "test-agent");
  EXPECT_EQ(c7.ip(), "127.0.0.1");
  // In order: a batch is the queue's front.
  std::vector<std::string> order;
  for (const auto& r : state.registers) {
    for (const auto& c : r.connections()) order.push_back(c.connection_id());
  }
  for (int n = 0; n < 10; ++n) EXPECT_EQ(order[n], absl::StrCat("e1-", n));
}

TEST_F(DirectoryClientTest, UnregisterRemovesTheConnection) {
  StartRegistry("i1");
  StartClient(FastOptions());
  ASSERT_TRUE(RegisterNow(Conn(1)).ok());
  ASSERT_TRUE(RegisterNow(Conn(2)).ok());
  client_->Unregister("e1-1");
  ASSERT_TRUE(registry_->WaitUntil([](const RegistryState& s) { return s.ids() == Ids({2}); }))
      << "the registry still holds e1-1";
  const RegistryState state = registry_->state();
  ASSERT_EQ(state.unregisters.size(), 1u);
  EXPECT_EQ(state.unregisters[0].edge_id(), "e1");
  EXPECT_EQ(state.unregisters[0].incarnation(), state.registers[0].incarnation());
  EXPECT_THAT(state.unregisters[0].connection_ids(), ElementsAre("e1-1"));
  client_->Flush(std::chrono::milliseconds(2000));
}

TEST_F(DirectoryClientTest, HeartbeatsRenewTheLeaseAndMakeItReady) {
  StartRegistry("i1");
  StartClient(FastOptions());
  ASSERT_TRUE(registry_->WaitUntil([](const RegistryState& s) { return s.heartbeats.size() >= 4; }))
      << "heartbeats every 50 ms";
  EXPECT_TRUE(Eventually([&] { return client_->Ready(); }));
  const RegistryState state = registry_->state();
  for (const auto& h : state.heartbeats) {
    EXPECT_EQ(h.edge_id(), "e1");
    EXPECT_EQ(h.incarnation(), state.heartbeats[0].incarnation());
  }
  EXPECT_FALSE(state.heartbeats[0].incarnation().empty());
}

// lease_known = false: the registry forgot us (our lease expired). Every live
// connection is registered again, and only those.
TEST_F(DirectoryClientTest, LeaseUnknownReRegistersEveryLiveConnection) {
  StartRegistry("i1");
  StartClient(FastOptions());
  for (int n = 1; n <= 3; ++n) ASSERT_TRUE(RegisterNow(Conn(n)).ok());
  client_->Unregister("e1-2");
  ASSERT_TRUE(registry_->WaitUntil([](const RegistryState& s) { return s.ids() == Ids({1, 3}); }));

  const size_t mark = registry_->state().registers.size();
  registry_->ForgetEdge();
  ASSERT_TRUE(registry_->WaitUntil([](const RegistryState& s) {
    return s.ids() == Ids({1, 3});
  })) << "live connections were not registered again";
  EXPECT_EQ(registry_->state().registered_since(mark), Ids({1, 3}))
      << "a closed connection came back";
}

// A heartbeat answering with a new instance id: the registry restarted behind
// the same address and knows nothing of us.
TEST_F(DirectoryClientTest, NewInstanceInAHeartbeatReRegistersEverything) {
  StartRegistry("i1");
  StartClient(FastOptions());
  ASSERT_TRUE(RegisterNow(Conn(1)).ok());
  ASSERT_TRUE(RegisterNow(Conn(2)).ok());
  registry_->LoseTableAs("i2");  // lease_known stays true: only the instance tells
  ASSERT_TRUE(registry_->WaitUntil([](const RegistryState& s) { return s.ids() == Ids({1, 2}); }));
}

// Same, learnt from a Register's answer (heartbeats nearly off).
TEST_F(DirectoryClientTest, NewInstanceInARegisterAnswerReRegistersEverything) {
  StartRegistry("i1");
  DirectoryOptions options = FastOptions();
  options.heartbeat_interval = std::chrono::seconds(60);
  StartClient(options);
  ASSERT_TRUE(RegisterNow(Conn(1)).ok());
  ASSERT_TRUE(RegisterNow(Conn(2)).ok());
  registry_->LoseTableAs("i2");
  ASSERT_TRUE(RegisterNow(Conn(3)).ok());
  ASSERT_TRUE(registry_->WaitUntil([](const RegistryState& s) {
    return s.ids() == Ids({1, 2, 3});
  }));
  EXPECT_EQ(registry_->state().heartbeats.size(), 1u) << "only the first heartbeat ran";
}

// A refused Register reaches its caller (the edge answers the handshake with
// 503 and Retry-After); the next one goes through.
TEST_F(DirectoryClientTest, RefusedRegisterIsReportedAndTheNextOneWorks) {
  StartRegistry("i1");
  StartClient(FastOptions());
  registry_->FailRegisters(1, grpc::StatusCode::UNAVAILABLE);
  const absl::Status refused = RegisterNow(Conn(1));
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
  EXPECT_TRUE(RegisterNow(Conn(2)).ok());
  ASSERT_TRUE(registry_->WaitUntil([](const RegistryState& s) { return s.ids() == Ids({2}); }));
  // A refused connection is never registered later (the edge closed it).
  EXPECT_EQ(registry_->state().ids(), Ids({2}));
}

// A registry started with a lease shorter than three heartbeat intervals:
// the edge heartbeats three times per lease instead, so it never expires.
TEST_F(DirectoryClientTest, HeartbeatsFollowAShortLease) {
  StartRegistry("i1");
  registry_->SetLeaseTimeoutMs(600);
  DirectoryOptions options = FastOptions();
  options.heartbeat_interval = std::chrono::seconds(60);
  StartClient(options);
  // 60 s apart they would take minutes; at 200 ms, about a second.
  ASSERT_TRUE(registry_->WaitUntil([](const RegistryState& s) { return s.heartbeats.size() >= 5; }))
      << "heartbeats did not follow the 600 ms lease";
}

// The heartbeat is an alarm and an async call, not a thread: destroying the
// client between two heartbeats cancels the alarm, and none follows.
TEST_F(DirectoryClientTest, NoHeartbeatFollowsTheClientsDestruction) {
  StartRegistry("i1");
  StartClient(FastOptions());
  ASSERT_TRUE(
      registry_->WaitUntil([](const RegistryState& s) { return s.heartbeats.size() >= 4; }));
  client_.reset();
  const size_t seen = registry_->state().heartbeats.size();
  // Six intervals: at 50 ms, a heartbeat still scheduled would show.
  EXPECT_FALSE(
      registry_->WaitUntil([seen](const RegistryState& s) { return s.heartbeats.size() > seen; },
                           absl::Milliseconds(300)))
      << "a heartbeat was sent after the client was destroyed";
}

// Destroying the client while a heartbeat waits for its answer cancels the
// call instead of waiting out its deadline.
TEST_F(DirectoryClientTest, DestructionCancelsTheHeartbeatInFlight) {
  StartRegistry("i1");
  DirectoryOptions options = FastOptions();
  options.rpc_deadline = std::chrono::seconds(30);
  StartClient(options);
  registry_->HoldHeartbeats();
  ASSERT_TRUE(registry_->WaitUntil([](const RegistryState& s) { return s.held_heartbeats == 1; }));
  const absl::Time start = absl::Now();
  client_.reset();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5)) << "the destructor waited for the deadline";
  const size_t seen = registry_->state().heartbeats.size();
  EXPECT_FALSE(
      registry_->WaitUntil([seen](const RegistryState& s) { return s.heartbeats.size() > seen; },
                           absl::Milliseconds(300)));
}

// connection-service ends the presence and route streams without going away
// (it does so to a watcher that fell behind): both start again by themselves,
// and their new snapshots are applied.
TEST_F(DirectoryClientTest, StreamsTheRegistryEndsStartAgain) {
  auto watcher = std::make_shared<RecordingConnection>();
  hub_.Add("e1-1", watcher);
  hub_.SetWatch("e1-1", {"bob", "carol"});
  StartRegistry("i1", [](FakeRegistry& r) {
    r.SetOnline({"bob"});
    r.SetRouteSnapshot(SnapshotWithBans({Ban("mallory", 4'000'000'000'000)}));
  });
  StartClient(FastOptions());
  auto heard = [&](const std::string& user) {
    const std::string needle = absl::StrCat("\"name\":\"", user, "\",\"status\":true");
    for (const auto& frame : watcher->frames()) {
      if (frame.find(needle) != std::string::npos) return true;
    }
    return false;
  };
  ASSERT_TRUE(Eventually([&] { return heard("bob"); }));
  ASSERT_TRUE(Eventually([&] { return client_->BannedUntil("mallory") == 4'000'000'000'000; }));

  registry_->SetOnline({"bob", "carol"});
  registry_->SetRouteSnapshot(SnapshotWithBans({Ban("trent", 4'200'000'000'000)}));
  registry_->EndStreams();
  ASSERT_TRUE(registry_->WaitUntil([](const RegistryState& s) {
    return s.presence_watches >= 2 && s.route_watches.size() >= 2;
  })) << "the streams were not started again";
  EXPECT_TRUE(Eventually([&] { return heard("carol"); })) << "the new presence snapshot";
  EXPECT_TRUE(Eventually([&] { return client_->BannedUntil("trent") == 4'200'000'000'000; }));
  EXPECT_EQ(client_->BannedUntil("mallory"), 0);
}

// connection-service is up but its shared registry (Redis) is not: the edge
// stays ready, so a load balancer keeps sending it clients, and it refuses
// their handshakes itself (the failing Register becomes 503 + Retry-After);
// its live connections stay, and registrations work again once Redis is back.
TEST_F(DirectoryClientTest, RegistryStoreAwayKeepsTheEdgeReadyAndRefusesRegistrations) {
  StartRegistry("i1");
  StartClient(FastOptions());
  ASSERT_TRUE(RegisterNow(Conn(1)).ok());
  ASSERT_TRUE(Eventually([&] { return client_->Ready(); }));
  registry_->SetStoreAway(true);
  const size_t mark = registry_->state().heartbeats.size();
  ASSERT_TRUE(registry_->WaitUntil(
      [mark](const RegistryState& s) { return s.heartbeats.size() >= mark + 3; }));
  EXPECT_TRUE(client_->Ready()) << "a registry without Redis made the edge unready";
  const absl::Status refused = RegisterNow(Conn(2));
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
  EXPECT_EQ(ReasonOf(refused), "REGISTRY_UNAVAILABLE");
  EXPECT_TRUE(client_->Ready());
  registry_->SetStoreAway(false);
  EXPECT_TRUE(RegisterNow(Conn(3)).ok());
  ASSERT_TRUE(registry_->WaitUntil([](const RegistryState& s) { return s.ids() == Ids({1, 3}); }));
}

// connection-service dies and comes back on the same port with an empty
// table: while it is away the edge is not ready and refuses registrations;
// once back, every live connection is registered again without help.
TEST_F(DirectoryClientTest, RegistryRestartedOnTheSamePort) {
  StartRegistry("i1");
  StartClient(FastOptions());
  ASSERT_TRUE(RegisterNow(Conn(1)).ok());
  ASSERT_TRUE(RegisterNow(Conn(2)).ok());
  ASSERT_TRUE(Eventually([&] { return client_->Ready(); }));

  StopRegistry();
  EXPECT_TRUE(Eventually([&] { return !client_->Ready(); })) << "still ready with no registry";
  const absl::Status down = RegisterNow(Conn(3));
  EXPECT_EQ(down.code(), absl::StatusCode::kUnavailable) << down;

  RestartRegistry("i2");
  ASSERT_TRUE(registry_->WaitUntil([](const RegistryState& s) {
    return s.ids() == Ids({1, 2});
  })) << "live connections were not registered with the new registry";
  EXPECT_TRUE(Eventually([&] { return client_->Ready(); }));
  ASSERT_TRUE(RegisterNow(Conn(4)).ok());
  EXPECT_TRUE(registry_->WaitUntil([](const RegistryState& s) {
    return s.ids() == Ids({1, 2, 4});
  }));
}

// Kicks and bans come down WatchRoutes; the stream comes back after the
// registry restarts, and its new snapshot replaces the bans.
TEST_F(DirectoryClientTest, RouteStreamKicksBansAndResumesAfterRestart) {
  auto one = std::make_shared<RecordingConnection>();
  auto two = std::make_shared<RecordingConnection>();
  hub_.Add("e1-1", one);
  hub_.Add("e1-2", two);
  StartRegistry("i1", [](FakeRegistry& r) {
    r.SetRouteSnapshot(SnapshotWithBans({Ban("mallory", 4'000'000'000'000)}));
  });
  StartClient(FastOptions());
  ASSERT_TRUE(Eventually([&] { return client_->BannedUntil("mallory") == 4'000'000'000'000; }))
      << "the snapshot's ban never arrived";
  ASSERT_TRUE(
      registry_->WaitUntil([](const RegistryState& s) { return !s.route_watches.empty(); }));
  EXPECT_EQ(registry_->state().route_watches[0].edge_id(), "e1") << "only this edge's routes";

  registry_->SendRoutes(Kick("e1-1", 4001, "bye"));
  ASSERT_TRUE(Eventually([&] { return !one->kicks().empty(); }));
  EXPECT_EQ(one->kicks()[0], std::make_pair(uint16_t{4001}, std::string("bye")));
  v1::RouteUpdate ban;
  *ban.add_changes() = Ban("eve", 4'100'000'000'000);
  registry_->SendRoutes(ban);
  ASSERT_TRUE(Eventually([&] { return client_->BannedUntil("eve") == 4'100'000'000'000; }));

  RestartRegistry("i2", [](FakeRegistry& r) {
    r.SetRouteSnapshot(SnapshotWithBans({Ban("trent", 4'200'000'000'000)}));
  });
  ASSERT_TRUE(Eventually([&] { return client_->BannedUntil("trent") == 4'200'000'000'000; }))
      << "the route stream did not come back";
  EXPECT_EQ(client_->BannedUntil("mallory"), 0) << "the new snapshot lists every ban in force";
  EXPECT_EQ(client_->BannedUntil("eve"), 0);

  registry_->SendRoutes(Kick("e1-2", 0, ""));  // a registry from before close codes
  ASSERT_TRUE(Eventually([&] { return !two->kicks().empty(); }));
  EXPECT_EQ(two->kicks()[0],
            std::make_pair(uint16_t{4000}, std::string("disconnected by an operator")));
  EXPECT_EQ(one->kicks().size(), 1u);
}

// Presence watchers hear, after a restart, only the changes they missed.
TEST_F(DirectoryClientTest, PresenceStreamResumesWithTheChangesMissed) {
  auto watcher = std::make_shared<RecordingConnection>();
  hub_.Add("e1-1", watcher);
  hub_.SetWatch("e1-1", {"bob", "carol", "dave"});
  StartRegistry("i1", [](FakeRegistry& r) { r.SetOnline({"bob", "dave"}); });
  StartClient(FastOptions());
  auto heard = [&](const std::string& user, bool online) {
    const std::string needle =
        absl::StrCat("\"name\":\"", user, "\",\"status\":", online ? "true" : "false");
    for (const auto& frame : watcher->frames()) {
      if (frame.find(needle) != std::string::npos) return true;
    }
    return false;
  };
  ASSERT_TRUE(Eventually([&] { return heard("bob", true) && heard("dave", true); }))
      << "frames: " << watcher->frames().size();

  RestartRegistry("i2", [](FakeRegistry& r) { r.SetOnline({"carol", "dave"}); });
  ASSERT_TRUE(Eventually([&] { return heard("bob", false) && heard("carol", true); }))
      << "the presence stream did not come back, or its snapshot was not compared";
  EXPECT_FALSE(heard("dave", false));
  int dave_online = 0;
  for (const auto& frame : watcher->frames()) {
    if (frame.find("\"name\":\"dave\"") != std::string::npos) ++dave_online;
  }
  EXPECT_EQ(dave_online, 1) << "dave stayed online: nothing to tell";
}

// The `users` action's pages, and the error when the registry is away.
TEST_F(DirectoryClientTest, ListUsersPagesAndReportsErrors) {
  StartRegistry("i1");
  StartClient(FastOptions());
  // Shared with the callback: it may outlive a wait that timed out.
  struct Answer {
    absl::Notification done;
    absl::StatusOr<UserPage> page;
  };
  auto list = [&](const std::string& after) -> absl::StatusOr<UserPage> {
    auto answer = std::make_shared<Answer>();
    client_->ListUsers(true, 2, after, [answer](absl::StatusOr<UserPage> page) {
      answer->page = std::move(page);
      answer->done.Notify();
    });
    if (!answer->done.WaitForNotificationWithTimeout(kWait)) {
      return absl::DeadlineExceededError("ListUsers never answered");
    }
    return answer->page;
  };
  auto first = list("");
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->users.size(), 2u);
  EXPECT_EQ(first->users[0].name, "amy");
  EXPECT_TRUE(first->users[0].online);
  EXPECT_EQ(first->users[1].name, "bob");
  EXPECT_FALSE(first->users[1].online);
  EXPECT_EQ(first->next, "bob");
  auto second = list(first->next);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_EQ(second->users.size(), 1u);
  EXPECT_EQ(second->users[0].name, "cat");
  EXPECT_EQ(second->next, "");
  const RegistryState state = registry_->state();
  ASSERT_EQ(state.list_requests.size(), 2u);
  EXPECT_TRUE(state.list_requests[0].online_only());
  EXPECT_EQ(state.list_requests[0].page_size(), 2);
  EXPECT_EQ(state.list_requests[1].page_token(), "bob");

  StopRegistry();
  auto away = list("");
  EXPECT_EQ(away.status().code(), absl::StatusCode::kUnavailable) << away.status();
}

// Registrations beyond max_queued_ops fail at once instead of waiting.
TEST_F(DirectoryClientTest, TooManyRegistrationsWaitingFailAtOnce) {
  StartRegistry("i1");
  DirectoryOptions options = FastOptions();
  options.max_queued_ops = 3;
  StartClient(options);
  registry_->HoldRegisters();
  std::vector<std::unique_ptr<Outcome>> outcomes;
  for (int n = 0; n < 5; ++n) {
    outcomes.push_back(std::make_unique<Outcome>());
    client_->Register(Conn(n), outcomes.back()->Callback());
    if (n == 0) {
      ASSERT_TRUE(registry_->WaitUntil([](const RegistryState& s) { return s.held == 1; }));
    }
  }
  // One in flight, three queued: the fifth is refused before Register returns.
  ASSERT_TRUE(outcomes[4]->HasRun());
  const absl::Status refused = outcomes[4]->Wait();
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
  EXPECT_EQ(refused.message(), "too many registrations waiting");
  for (int n = 0; n < 4; ++n) EXPECT_FALSE(outcomes[n]->HasRun());

  registry_->ReleaseHeld();
  for (int n = 0; n < 4; ++n) EXPECT_TRUE(outcomes[n]->Wait().ok()) << n;
  EXPECT_EQ(registry_->state().ids(), Ids({0, 1, 2, 3}));
  EXPECT_TRUE(RegisterNow(Conn(5)).ok()) << "room again once the queue drained";
}

// A re-registration that fails (the registry is still starting) is retried:
// otherwise the connections stay missing from the registry for good, since
// the next heartbeat finds the lease known and the instance unchanged.
TEST_F(DirectoryClientTest, FailedReRegistrationIsRetried) {
  StartRegistry("i1");
  StartClient(FastOptions());
  ASSERT_TRUE(RegisterNow(Conn(1)).ok());
  ASSERT_TRUE(RegisterNow(Conn(2)).ok());
  registry_->FailRegisters(1, grpc::StatusCode::UNAVAILABLE);
  registry_->ForgetEdge();
  ASSERT_TRUE(registry_->WaitUntil([](const RegistryState& s) {
    return s.ids() == Ids({1, 2});
  })) << "the failed re-registration was dropped";
}

// A connection that closes while its re-registration is on its way is not
// brought back by the answer: the next re-registration must not send it.
TEST_F(DirectoryClientTest, ConnectionClosedDuringReRegistrationStaysGone) {
  StartRegistry("i1");
  StartClient(FastOptions());
  ASSERT_TRUE(RegisterNow(Conn(1)).ok());
  ASSERT_TRUE(RegisterNow(Conn(2)).ok());

  registry_->HoldRegisters();
  registry_->ForgetEdge();
  ASSERT_TRUE(registry_->WaitUntil([](const RegistryState& s) { return s.held == 1; }));
  client_->Unregister("e1-1");
  registry_->ReleaseHeld();
  ASSERT_TRUE(registry_->WaitUntil(
      [](const RegistryState& s) { return s.ids() == Ids({2}) && !s.unregisters.empty(); }));

  const size_t mark = registry_->state().registers.size();
  registry_->ForgetEdge();
  ASSERT_TRUE(registry_->WaitUntil(
      [mark](const RegistryState& s) { return !s.registered_since(mark).empty(); }));
  client_->Flush(std::chrono::milliseconds(2000));
  EXPECT_EQ(registry_->state().registered_since(mark), Ids({2}))
      << "a closed connection was registered again";
  EXPECT_EQ(registry_->state().ids(), Ids({2}));
}

}  // namespace
}  // namespace chat::edge
