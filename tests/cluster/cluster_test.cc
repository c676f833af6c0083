// The replicated deployment on loopback, with real engines as processes:
// PostgreSQL (initdb/pg_ctl), a Redis primary with one replica watched by
// three redis-sentinel, HAProxy in front of three edges, two
// connection-service replicas on Redis (through Sentinel) and PostgreSQL,
// two message-service replicas on the same PostgreSQL.
//
// Users chat in pairs through HAProxy the whole time (some speak protocol
// version 2 with idempotency keys and sync, some version 1). Scenarios run
// one at a time, each a test of its own, in order, each followed by a
// restart of what it killed: SIGKILL an edge, a message-service, a
// connection-service, the Redis primary (Sentinel promotes the replica), and
// SIGTERM (drain) an edge. During each one the test asserts that clients on
// surviving processes stay connected, every sender is acknowledged again
// within 10 s, a killed edge's users go offline within the lease and come
// back online within 5 s, and afterwards that no acknowledged message was
// lost or duplicated and no useq/seq has a gap. It prints the failover
// timings it measured.
//
// CLUSTER_REGISTRY=memory runs one connection-service on the in-memory
// registry instead (no Redis scenario then).
#include "tests/support/cluster.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "tests/support/haproxy.h"
#include "tests/support/postgres_server.h"
#include "tests/support/process.h"
#include "tests/support/redis_server.h"
#include "tests/support/ws_client.h"

namespace chat::testing {
namespace {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

// Users chatting in pairs: every third one speaks version 1.
constexpr int kUsers = 16;
// Between two messages of one user: a fast typist, about 100 messages/s in
// all.
constexpr auto kPace = 150ms;
// The edges renew their lease every 3 s: twice that keeps a live edge's
// lease from lapsing under load, and is short enough for the test.
constexpr int kLeaseMs = 6000;
// A killed process counts as back this long after its restart for
// duplicate live frames (a version 1 client may see one only then).
constexpr auto kDuplicateGrace = 10s;

long long Millis(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

std::string Str(const json::object& obj, const char* key) {
  const json::value* v = obj.if_contains(key);
  if (v == nullptr || !v->is_string()) return "";
  return std::string(v->get_string());
}

int64_t Int(const json::object& obj, const char* key) {
  const json::value* v = obj.if_contains(key);
  return v != nullptr && v->is_int64() ? v->get_int64() : -1;
}

bool Bool(const json::object& obj, const char* key) {
  const json::value* v = obj.if_contains(key);
  return v != nullptr && v->is_bool() && v->get_bool();
}

std::string LogPath(const std::string& process) {
  return absl::StrCat(BinaryDir(), "/test-logs/cluster.", process, ".log");
}

// ---------------------------------------------------------------------------
// The processes.

// One of our binaries. It first listens on a port of its choosing; restarts
// take the same port, since the others were told its address.
struct Service {
  std::string name;  // also its log's name
  std::vector<std::string> argv;
  int port = 0;
  std::unique_ptr<ChildProcess> process;

  std::string Address() const { return absl::StrCat("127.0.0.1:", port); }
};

std::string Addresses(const std::vector<Service>& services) {
  std::vector<std::string> out;
  for (const Service& s : services) out.push_back(s.Address());
  return absl::StrJoin(out, ",");
}

class Deployment {
 public:
  explicit Deployment(bool redis) : redis_(redis) {}
  ~Deployment() {
    haproxy_.reset();
    edges_.clear();
    messages_.clear();
    connections_.clear();
    sentinels_.reset();
    for (auto& r : redis_servers_) r.reset();
  }

  absl::Status Start() {
    std::filesystem::create_directories(BinaryDir() + "/test-logs");
    auto pg = PostgresServer::Start();
    if (!pg.ok()) return Annotate(pg.status(), "PostgreSQL");
    postgres_ = std::move(*pg);
    std::string registry;  // empty: the default, memory
    if (redis_) {
      auto primary = RedisServer::Start();
      if (!primary.ok()) return Annotate(primary.status(), "redis-server");
      RedisServer::Options replica_options;
      replica_options.replica_of = (*primary)->port();
      auto replica = RedisServer::Start(replica_options);
      if (!replica.ok()) return Annotate(replica.status(), "redis-server replica");
      redis_servers_[0] = std::move(*primary);
      redis_servers_[1] = std::move(*replica);
      auto sentinels = SentinelGroup::Start(redis_servers_[0]->port(), 3);
      if (!sentinels.ok()) return Annotate(sentinels.status(), "redis-sentinel");
      sentinels_ = std::move(*sentinels);
      if (absl::Status s = sentinels_->WaitReady(1, 30s); !s.ok()) {
        return Annotate(s, "Sentinels never saw each other and the replica");
      }
      registry = sentinels_->Url();
    }
    const std::string bin = BinaryDir();
    connections_.resize(redis_ ? 2 : 1);
    for (size_t i = 0; i < connections_.size(); ++i) {
      Service& s = connections_[i];
      s.name = absl::StrCat("cs", i + 1);
      s.argv = {bin + "/connection-service/connection-service", "--store=" + postgres_->Url(),
                absl::StrCat("--lease_timeout_ms=", kLeaseMs), "--metrics_listen=127.0.0.1:0"};
      if (!registry.empty()) s.argv.push_back("--registry=" + registry);
      if (absl::Status st = StartService(s); !st.ok()) return st;
    }
    messages_.resize(2);
    for (size_t i = 0; i < messages_.size(); ++i) {
      Service& s = messages_[i];
      s.name = absl::StrCat("ms", i + 1);
      s.argv = {bin + "/message-service/message-service", "--store=" + postgres_->Url(),
                "--connection_service=" + Addresses(connections_),
                absl::StrCat("--replica_id=", i + 1), "--metrics_listen=127.0.0.1:0"};
      if (absl::Status st = StartService(s); !st.ok()) return st;
    }
    edges_.resize(3);
    for (size_t i = 0; i < edges_.size(); ++i) {
      Service& s = edges_[i];
      s.name = absl::StrCat("e", i + 1);
      s.argv = {bin + "/edge/edge", "--edge_id=" + s.name,
                "--connection_service=" + Addresses(connections_),
                "--message_service=" + Addresses(messages_),
                // The test's users type faster than people.
                "--messages_per_second=1000", "--rate_burst=1000", "--drain_timeout_ms=2000",
                "--send_timeout_ms=4000"};
      if (absl::Status st = StartService(s); !st.ok()) return st;
    }
    for (size_t i = 0; i < edges_.size(); ++i) {
      if (absl::Status s = WaitEdgeReady(i, 15s); !s.ok()) return s;
    }
    haproxy_ = std::make_unique<Haproxy>();
    std::vector<std::pair<std::string, int>> servers;
    for (const Service& e : edges_) servers.emplace_back(e.name, e.port);
    if (absl::Status s = haproxy_->Start(servers, LogPath("haproxy")); !s.ok()) {
      return Annotate(s, "HAProxy");
    }
    for (size_t i = 0; i < edges_.size(); ++i) {
      if (absl::Status s = WaitEdgeInRotation(i, 15s); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status StartService(Service& s) {
    s.process = std::make_unique<ChildProcess>();
    std::vector<std::string> argv = s.argv;
    argv.push_back(absl::StrCat("--listen=127.0.0.1:", s.port));
    if (absl::Status st = s.process->Start(argv, {}, LogPath(s.name)); !st.ok()) {
      return Annotate(st, s.name);
    }
    auto port = s.process->WaitListening(20s);
    if (!port.ok()) return Annotate(port.status(), s.name + " (see " + LogPath(s.name) + ")");
    s.port = *port;
    return absl::OkStatus();
  }

  // Sends `sig` and waits for the exit; returns the wait status.
  absl::StatusOr<int> Stop(Service& s, int sig, std::chrono::milliseconds timeout = 10s) {
    s.process->Signal(sig);
    return s.process->Wait(timeout);
  }

  absl::Status WaitEdgeReady(size_t i, std::chrono::milliseconds timeout) {
    const bool ready = Eventually(
        [&] {
          auto r = HttpGet(edges_[i].port, "/readyz", {}, 1s);
          return r.ok() && r->status == 200;
        },
        timeout);
    return ready ? absl::OkStatus()
                 : absl::DeadlineExceededError(absl::StrCat(edges_[i].name, " never ready"));
  }

  // Until HAProxy's checks put edge `i` in rotation.
  absl::Status WaitEdgeInRotation(size_t i, std::chrono::milliseconds timeout) {
    std::string status;
    const bool up = Eventually(
        [&] {
          status = haproxy_->ServerStatus()[edges_[i].name];
          return status == "UP";
        },
        timeout);
    return up ? absl::OkStatus()
              : absl::DeadlineExceededError(
                    absl::StrCat("HAProxy never marked ", edges_[i].name, " UP: ", status));
  }

  int port() const { return haproxy_->port(); }
  std::vector<Service>& edges() { return edges_; }
  std::vector<Service>& messages() { return messages_; }
  std::vector<Service>& connections() { return connections_; }
  Haproxy& haproxy() { return *haproxy_; }
  bool redis() const { return redis_; }
  SentinelGroup& sentinels() { return *sentinels_; }
  // The RedisServer listening on `port` (one of the two).
  RedisServer* RedisOn(int port) {
    for (auto& r : redis_servers_) {
      if (r != nullptr && r->port() == port) return r.get();
    }
    return nullptr;
  }

 private:
  static absl::Status Annotate(const absl::Status& s, const std::string& what) {
    return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
  }

  bool redis_;
  std::unique_ptr<PostgresServer> postgres_;
  std::unique_ptr<RedisServer> redis_servers_[2];
  std::unique_ptr<SentinelGroup> sentinels_;
  std::vector<Service> connections_, messages_, edges_;
  std::unique_ptr<Haproxy> haproxy_;
};

// ---------------------------------------------------------------------------
// The users.

struct Ack {
  std::string id, text, to;
  Clock::time_point attempt_started, acked;
  bool duplicate = false;
};

struct Disconnect {
  Clock::time_point at;
  std::string server;
  uint16_t code = 0;
};

struct UserState {
  bool connected = false;
  std::string server;  // of the current (or last) connection
  std::vector<std::pair<Clock::time_point, std::string>> connects;  // hello time, server
  std::vector<Disconnect> disconnects;
  std::vector<Ack> acks;
  std::map<std::string, int> live;  // ids of the `send` frames received live, and how often
  std::vector<std::pair<Clock::time_point, std::string>> live_duplicates;
  std::vector<std::string> failures;     // answers that must never happen
  std::map<std::string, int> temporary;  // temporary error codes, counted
  int unanswered = 0;                    // sends that got no answer in time
  int refused_handshakes = 0;
  bool idle = true;  // paused, and no send in flight
  int64_t max_useq = 0;
};

// What every user's thread looks at before each message.
struct Traffic {
  std::atomic<bool> paused{false};
  std::atomic<bool> stop{false};
  // Every user sends again as soon as `sent` arrives: sends are always in
  // flight (a kill catches some of them).
  std::atomic<bool> flood{false};
};

// A chat user through HAProxy, on a thread of its own: it connects (and
// reconnects, at once, after any close, unless held), then sends its
// partner a message every kPace and waits for `sent`. A version 2 user gives
// every message an idempotency key and retries an unacknowledged one with
// the same key (after `unavailable`, or after reconnecting); a version 1
// user never retries (the message's fate is unknown) and never syncs.
class ChatUser {
 public:
  ChatUser(std::string name, std::string partner, int version, int port, Traffic* traffic)
      : name_(std::move(name)),
        partner_(std::move(partner)),
        version_(version),
        port_(port),
        traffic_(traffic) {}
  ~ChatUser() { Join(); }

  void Start() {
    thread_ = std::thread([this] { Run(); });
  }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }

  // While held, a user who lost its connection stays away.
  void Hold(bool hold) { held_ = hold; }

  template <class F>
  auto With(F f) const {
    std::lock_guard<std::mutex> lock(mu_);
    return f(state_);
  }
  const std::string& name() const { return name_; }
  const std::string& partner() const { return partner_; }
  int version() const { return version_; }

 private:
  struct Pending {
    std::string text, key;
  };

  template <class F>
  void Update(F f) {
    std::lock_guard<std::mutex> lock(mu_);
    f(state_);
  }

  void Run() {
    while (!traffic_->stop) {
      const bool paused = traffic_->paused;
      if (paused) Update([](UserState& s) { s.idle = true; });
      if (ws_ == nullptr && !held_ && !Connect()) {
        // A client's reconnect backoff (short: the test measures how soon
        // HAProxy gets it back in).
        std::this_thread::sleep_for(50ms);
        continue;
      }
      if (paused || ws_ == nullptr) {
        if (ws_ != nullptr) {
          Pump(50ms);
        } else {
          std::this_thread::sleep_for(20ms);  // held away: the test lets it back
        }
        continue;
      }
      Update([](UserState& s) { s.idle = false; });
      SendNext();
      if (ws_ != nullptr && !traffic_->flood) Pump(kPace);
    }
    if (ws_ != nullptr) ws_->Close();
  }

  bool Connect() {
    auto ws = std::make_unique<WsClient>();
    HandshakeOptions options;
    options.target = absl::StrCat("/?name=", name_);
    if (!ws->Connect(port_, options, 3s).ok()) {
      Update([](UserState& s) { ++s.refused_handshakes; });
      return false;
    }
    const std::string server = Str(ws->hello(), "server");
    ws_ = std::move(ws);
    int64_t since = 0;
    Update([&](UserState& s) {
      s.connected = true;
      s.server = server;
      s.connects.emplace_back(Clock::now(), server);
      since = s.max_useq;
    });
    if (version_ == 2) {
      // Catch up (the reply is read with everything else); this also makes
      // the connection a version 2 one.
      (void)ws_->SendJson(
          {{"action", "sync"}, {"since", since}, {"limit", 100}, {"request_id", "catch-up"}});
    }
    return true;
  }

  void Lost(uint16_t code) {
    Update([&](UserState& s) {
      s.connected = false;
      s.disconnects.push_back({Clock::now(), s.server, code});
    });
    ws_.reset();
    // A version 1 client does not know whether its message was stored: it
    // moves on to the next one.
    if (version_ == 1) pending_.reset();
  }

  // Handles one frame that is not the awaited reply.
  void Record(const Frame& frame) {
    if (frame.closed) return;
    const std::string action = Str(frame.json, "action");
    if (action == "send") {
      const std::string id = Str(frame.json, "id");
      const int64_t useq = Int(frame.json, "useq");
      Update([&](UserState& s) {
        if (++s.live[id] == 2) s.live_duplicates.emplace_back(Clock::now(), id);
        s.max_useq = std::max(s.max_useq, useq);
      });
    } else if (action == "synced") {
      const int64_t useq = Int(frame.json, "useq");
      Update([&](UserState& s) { s.max_useq = std::max(s.max_useq, useq); });
    }
  }

  // A write failed: the edge may have closed first. The client's reader
  // answers a close frame and tears the stream down before this thread has
  // read the frame, so the write fails while the frame (with its code)
  // still waits: read what is left, up to the close. 0: none came.
  uint16_t CloseCodeAfterFailedWrite() {
    for (;;) {
      auto frame = ws_->Read(2s);
      if (!frame.ok()) return 0;
      if (frame->closed) return frame->close_code;
      Record(*frame);
    }
  }

  // Reads frames for `duration`, or until the connection closes.
  void Pump(Clock::duration duration) {
    const auto until = Clock::now() + duration;
    while (ws_ != nullptr && Clock::now() < until) {
      auto frame = ws_->Read(
          std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()) + 1ms);
      if (!frame.ok()) return;  // nothing more in time
      if (frame->closed) {
        Lost(frame->close_code);
        return;
      }
      Record(*frame);
    }
  }

  void SendNext() {
    if (!pending_) {
      ++counter_;
      pending_ = Pending{absl::StrCat(name_, " to ", partner_, " #", counter_),
                         version_ == 2 ? absl::StrCat(name_, "-", counter_) : ""};
    }
    const std::string request_id = absl::StrCat("s", ++requests_);
    json::object frame{{"action", "send"},
                       {"send_to", partner_},
                       {"message", pending_->text},
                       {"request_id", request_id}};
    if (!pending_->key.empty()) frame["idempotency_key"] = pending_->key;
    const auto started = Clock::now();
    if (!ws_->SendJson(frame).ok()) {
      Lost(CloseCodeAfterFailedWrite());
      return;
    }
    // The edge answers within its --send_timeout_ms (4 s) even when a
    // message-service died with the send; beyond this the connection is
    // taken for dead.
    const auto deadline = started + 8s;
    while (true) {
      const auto left = deadline - Clock::now();
      auto reply =
          left <= Clock::duration::zero()
              ? absl::StatusOr<Frame>(absl::DeadlineExceededError(""))
              : ws_->Read(std::chrono::duration_cast<std::chrono::milliseconds>(left) + 1ms);
      if (!reply.ok()) {
        Update([](UserState& s) { ++s.unanswered; });
        ws_->Close();
        Lost(0);
        return;
      }
      if (reply->closed) {
        Lost(reply->close_code);
        return;
      }
      if (Str(reply->json, "request_id") != request_id) {
        Record(*reply);
        continue;
      }
      const std::string action = Str(reply->json, "action");
      if (action == "sent") {
        Ack ack{Str(reply->json, "id"),        pending_->text, partner_, started, Clock::now(),
                Bool(reply->json, "duplicate")};
        const int64_t useq = Int(reply->json, "useq");
        Update([&](UserState& s) {
          s.acks.push_back(ack);
          s.max_useq = std::max(s.max_useq, useq);
        });
        pending_.reset();
        return;
      }
      const std::string code = Str(reply->json, "code");
      if (action == "error" && Bool(reply->json, "temporary")) {
        Update([&](UserState& s) { ++s.temporary[code]; });
        // Version 2 retries the same message (same key) after the pace;
        // version 1 gives it up.
        if (version_ == 1) pending_.reset();
        return;
      }
      Update([&](UserState& s) {
        s.failures.push_back(absl::StrCat(name_, ": ", json::serialize(reply->json)));
      });
      pending_.reset();
      return;
    }
  }

  const std::string name_, partner_;
  const int version_;
  const int port_;
  Traffic* const traffic_;
  std::atomic<bool> held_{false};
  std::thread thread_;
  // Only the user's thread touches these.
  std::unique_ptr<WsClient> ws_;
  std::optional<Pending> pending_;
  int counter_ = 0;
  int requests_ = 0;

  mutable std::mutex mu_;
  UserState state_;
};

// A WebSocket connected directly to one edge, asking `users` for presence.
class Observer {
 public:
  explicit Observer(int edge_port) : port_(edge_port) {}

  // Every user's online status, or an error (to be retried).
  absl::StatusOr<std::map<std::string, bool>> Presence() {
    if (ws_ == nullptr) {
      auto ws = std::make_unique<WsClient>();
      HandshakeOptions options;
      options.target = "/?name=observer";
      if (absl::Status s = ws->Connect(port_, options, 2s); !s.ok()) return s;
      ws_ = std::move(ws);
    }
    const std::string request_id = absl::StrCat("u", ++requests_);
    if (absl::Status s = ws_->SendJson({{"action", "users"}, {"request_id", request_id}});
        !s.ok()) {
      ws_.reset();
      return s;
    }
    while (true) {
      auto frame = ws_->Read(2s);
      if (!frame.ok() || frame->closed) {
        ws_.reset();
        return absl::UnavailableError("observer lost its connection");
      }
      if (Str(frame->json, "request_id") != request_id) continue;
      if (Str(frame->json, "action") != "users") {
        return absl::UnavailableError(json::serialize(frame->json));
      }
      std::map<std::string, bool> result;
      for (const auto& c : frame->json.at("contacts").as_array()) {
        result[Str(c.as_object(), "name")] = Bool(c.as_object(), "status");
      }
      return result;
    }
  }

  // Waits until every one of `names` has `online`; false at the deadline.
  bool WaitFor(const std::vector<std::string>& names, bool online, Clock::time_point deadline) {
    while (Clock::now() < deadline) {
      auto presence = Presence();
      if (presence.ok() && std::all_of(names.begin(), names.end(), [&](const std::string& n) {
            auto it = presence->find(n);
            return it != presence->end() && it->second == online;
          })) {
        return true;
      }
      std::this_thread::sleep_for(50ms);  // polling period, bounded by the deadline
    }
    return false;
  }

 private:
  int port_;
  std::unique_ptr<WsClient> ws_;
  int requests_ = 0;
};

// A new user handshake through HAProxy succeeds, within `timeout`.
// `refusals` (when given) counts the HTTP status of each refusal (0: no
// answer in time).
bool Handshake(int port, std::chrono::milliseconds timeout,
               std::map<int, int>* refusals = nullptr) {
  WsClient ws;
  HandshakeOptions options;
  options.target = "/?name=probe";
  if (!ws.Connect(port, options, timeout).ok()) {
    if (refusals != nullptr) ++(*refusals)[ws.http_status()];
    return false;
  }
  ws.Close();
  return true;
}

std::string Describe(const std::map<int, int>& refusals) {
  std::string out;
  for (const auto& [status, n] : refusals) {
    absl::StrAppend(&out, out.empty() ? "" : ", ", n, " x ",
                    status == 0 ? "no answer" : absl::StrCat("HTTP ", status));
  }
  return out.empty() ? "none" : out;
}

// ---------------------------------------------------------------------------
// The fixture: one deployment and its users for the whole suite; each test
// is one scenario, run in order.

struct Totals {
  int disconnects = 0, connects = 0, refused_handshakes = 0, unanswered = 0, live_duplicates = 0,
      live_duplicates_v1 = 0, duplicate_acks = 0;
  std::map<std::string, int> temporary;
};

struct Window {
  std::string scenario;
  Clock::time_point from, to;  // the kill, and the restart + grace
};

class ClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* registry = getenv("CLUSTER_REGISTRY");
    const bool redis = registry == nullptr || std::string(registry) != "memory";
    deployment_ = new Deployment(redis);
    const auto started = Clock::now();
    setup_ = deployment_->Start();
    if (!setup_.ok()) return;
    std::printf("[cluster] started %s, 2 message-services, 3 edges, HAProxy in %lld ms\n",
                redis ? "PostgreSQL, Redis + replica + 3 Sentinels, 2 connection-services"
                      : "PostgreSQL, 1 connection-service (memory registry)",
                Millis(Clock::now() - started));
    traffic_ = new Traffic;
    for (int i = 0; i < kUsers; ++i) {
      const int partner = i ^ 1;
      users_.push_back(std::make_unique<ChatUser>(
          absl::StrFormat("user%02d", i), absl::StrFormat("user%02d", partner), i % 3 == 2 ? 1 : 2,
          deployment_->port(), traffic_));
    }
    // Everyone connects once before anyone sends: a user who never
    // connected does not exist (a send to them is unknown_user).
    traffic_->paused = true;
    for (auto& u : users_) u->Start();
    const bool connected = Eventually(
        [] {
          return std::all_of(users_.begin(), users_.end(), [](const auto& u) {
            return u->With([](const UserState& s) { return !s.connects.empty(); });
          });
        },
        20s);
    if (!connected) setup_ = absl::DeadlineExceededError("users did not all connect in 20 s");
    traffic_->paused = false;
  }

  static void TearDownTestSuite() {
    if (traffic_ != nullptr) traffic_->stop = true;
    users_.clear();  // joins the threads
    delete traffic_;
    traffic_ = nullptr;
    delete deployment_;
    deployment_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(setup_.ok()) << "the deployment did not start: " << setup_;
    scenario_start_ = Clock::now();
  }

  static Deployment& d() { return *deployment_; }

  // Users whose current connection is on `edge`.
  static std::vector<ChatUser*> UsersOn(const std::string& edge) {
    std::vector<ChatUser*> out;
    for (auto& u : users_) {
      if (u->With([&](const UserState& s) { return s.connected && s.server == edge; })) {
        out.push_back(u.get());
      }
    }
    return out;
  }

  // Until every user got `sent` for a message whose (last) attempt started
  // after `since`, except `except`; returns the latest such first
  // acknowledgement, measured from `since`, or nullopt at `timeout`.
  static std::optional<Clock::duration> AllAckedAfter(Clock::time_point since,
                                                      std::chrono::milliseconds timeout,
                                                      const std::set<ChatUser*>& except = {}) {
    std::optional<Clock::duration> worst;
    const bool all = Eventually(
        [&] {
          worst = Clock::duration::zero();
          for (auto& u : users_) {
            if (except.count(u.get()) > 0) continue;
            auto first = u->With([&](const UserState& s) -> std::optional<Clock::time_point> {
              for (const Ack& a : s.acks) {
                if (a.attempt_started >= since) return a.acked;
              }
              return std::nullopt;
            });
            if (!first) return false;
            worst = std::max(*worst, *first - since);
          }
          return true;
        },
        std::chrono::duration_cast<std::chrono::milliseconds>(since + timeout - Clock::now()));
    if (!all) return std::nullopt;
    return worst;
  }

  // Every user still connected since `since`, except on `lost_edge`.
  static void ExpectNoDisconnects(Clock::time_point since, const std::string& lost_edge = "") {
    for (auto& u : users_) {
      u->With([&](const UserState& s) {
        for (const Disconnect& d : s.disconnects) {
          if (d.at >= since && d.server != lost_edge) {
            ADD_FAILURE() << u->name() << " on " << d.server << " was disconnected (code " << d.code
                          << ") " << Millis(d.at - since) << " ms into the scenario";
          }
        }
      });
    }
  }

  // Presence agrees with the sockets after the scenario: every user is
  // online (asked through e1, which is never killed).
  static void ExpectAllOnline(const std::string& scenario) {
    std::vector<std::string> names;
    for (auto& u : users_) names.push_back(u->name());
    Observer observer(d().edges()[0].port);
    const auto from = Clock::now();
    EXPECT_TRUE(observer.WaitFor(names, true, from + 10s))
        << scenario << ": some connected users not online 10 s after the scenario";
    Print(scenario, "every user shown online afterwards", Clock::now() - from);
  }

  // Waits until every user has been acknowledged at least once after now:
  // traffic flows everywhere before a scenario starts.
  static void ExpectTrafficFlows() {
    auto flowing = AllAckedAfter(Clock::now(), 15s);
    ASSERT_TRUE(flowing.has_value()) << "some users never got a message through";
  }

  // Stops the traffic, checks what the store holds against what the users
  // were told, and lets the traffic go on.
  static void Verify(const std::string& scenario);

  void Drain(const std::string& scenario, size_t index);

  static void Print(const std::string& scenario, const std::string& what, Clock::duration d) {
    std::printf("[cluster] %-28s %-62s %6lld ms\n", scenario.c_str(), what.c_str(), Millis(d));
    std::fflush(stdout);
  }

  static Deployment* deployment_;
  static absl::Status setup_;
  static Traffic* traffic_;
  static std::vector<std::unique_ptr<ChatUser>> users_;
  static std::vector<Window> windows_;
  static Totals totals_;
  static std::map<std::string, std::pair<size_t, size_t>> reported_;  // failures, duplicates
  Clock::time_point scenario_start_;
};

Deployment* ClusterTest::deployment_ = nullptr;
absl::Status ClusterTest::setup_;
Traffic* ClusterTest::traffic_ = nullptr;
std::vector<std::unique_ptr<ChatUser>> ClusterTest::users_;
std::vector<Window> ClusterTest::windows_;
Totals ClusterTest::totals_;
std::map<std::string, std::pair<size_t, size_t>> ClusterTest::reported_;

// What the store holds for one user, read on a connection of its own.
struct Stored {
  std::vector<json::object> stream;   // sync from 0, every page
  std::vector<json::object> history;  // the conversation with the partner, every page
};

// One request on `ws` and its reply (matched by request_id).
absl::StatusOr<json::object> Ask(WsClient& ws, json::object request, const std::string& id) {
  request["request_id"] = id;
  if (absl::Status s = ws.SendJson(request); !s.ok()) return s;
  while (true) {
    auto frame = ws.Read(10s);
    if (!frame.ok()) return frame.status();
    if (frame->closed) return absl::UnavailableError("closed during the check");
    if (Str(frame->json, "request_id") == id) return frame->json;
  }
}

absl::StatusOr<Stored> ReadStored(int edge_port, const std::string& user,
                                  const std::string& partner) {
  WsClient ws;
  HandshakeOptions options;
  options.target = absl::StrCat("/?name=", user);
  if (absl::Status s = ws.Connect(edge_port, options, 5s); !s.ok()) return s;
  Stored stored;
  int64_t since = 0;
  for (int page = 0;; ++page) {
    if (page == 1000) return absl::InternalError("sync never ended");
    auto synced =
        Ask(ws, {{"action", "sync"}, {"since", since}, {"limit", 500}}, absl::StrCat("sync", page));
    if (!synced.ok()) return synced.status();
    if (Str(*synced, "action") != "synced") {
      return absl::InternalError(absl::StrCat("sync: ", json::serialize(*synced)));
    }
    for (const auto& m : synced->at("messages").as_array()) stored.stream.push_back(m.as_object());
    since = Int(*synced, "useq");
    if (!Bool(*synced, "more")) break;
  }
  int64_t before = 0;  // newest first
  for (int page = 0;; ++page) {
    if (page == 1000) return absl::InternalError("history never ended");
    json::object request{{"action", "history"}, {"with", partner}, {"limit", 500}};
    if (before > 0) request["before"] = before;
    auto history = Ask(ws, request, absl::StrCat("history", page));
    if (!history.ok()) return history.status();
    if (Str(*history, "action") != "history") {
      return absl::InternalError(absl::StrCat("history: ", json::serialize(*history)));
    }
    const auto& messages = history->at("messages").as_array();
    for (const auto& m : messages) stored.history.push_back(m.as_object());
    if (!Bool(*history, "more") || messages.empty()) break;
    before = Int(messages.front().as_object(), "seq");
  }
  ws.Close();
  return stored;
}

void ClusterTest::Verify(const std::string& scenario) {
  traffic_->paused = true;
  // The traffic goes on after the check, even a failed one (the next
  // scenario reports its own failures).
  struct Resume {
    ~Resume() { traffic_->paused = false; }
  } resume;
  const bool idle = Eventually(
      [&] {
        return std::all_of(users_.begin(), users_.end(), [](const auto& u) {
          return u->With([](const UserState& s) { return s.idle; });
        });
      },
      20s);
  ASSERT_TRUE(idle) << "users still busy 20 s after the pause";
  const auto started = Clock::now();
  // e1 is never killed.
  const int edge_port = d().edges()[0].port;
  std::map<std::string, std::vector<json::object>> streams, histories;
  for (auto& u : users_) {
    auto stored = ReadStored(edge_port, u->name(), u->partner());
    ASSERT_TRUE(stored.ok()) << u->name() << ": " << stored.status();
    streams[u->name()] = std::move(stored->stream);
    histories[u->name()] = std::move(stored->history);
  }
  int acked = 0, v1_unknown_fate = 0;
  for (auto& u : users_) {
    const auto& stream = streams[u->name()];
    // useq: 1, 2, 3... without gaps; seq per conversation likewise.
    std::map<std::string, std::vector<int64_t>> seqs;  // per conversation
    std::map<std::string, int> texts;
    std::set<std::string> ids;
    for (size_t i = 0; i < stream.size(); ++i) {
      const json::object& m = stream[i];
      EXPECT_EQ(Int(m, "useq"), static_cast<int64_t>(i + 1))
          << scenario << ": gap in " << u->name() << "'s useq at " << json::serialize(m);
      seqs[Str(m, "conversation")].push_back(Int(m, "seq"));
      EXPECT_EQ(++texts[Str(m, "message")], 1)
          << scenario << ": stored twice: " << json::serialize(m);
      ids.insert(Str(m, "id"));
    }
    // Each conversation's seq: 1, 2, 3... without gaps (two replicas may
    // commit a conversation's messages in another order than the user's).
    for (auto& [conversation, numbers] : seqs) {
      std::sort(numbers.begin(), numbers.end());
      for (size_t i = 0; i < numbers.size(); ++i) {
        if (numbers[i] != static_cast<int64_t>(i + 1)) {
          ADD_FAILURE() << scenario << ": " << u->name() << "'s conversation " << conversation
                        << " has seq " << numbers[i] << " at position " << i + 1;
          break;
        }
      }
    }
    // Every acknowledged message, sent or received, is in the stream.
    u->With([&](const UserState& s) {
      for (const Ack& a : s.acks) {
        ++acked;
        EXPECT_EQ(ids.count(a.id), 1u)
            << scenario << ": " << u->name() << "'s acknowledged '" << a.text << "' (" << a.id
            << ") missing from its own stream";
      }
    });
    for (auto& other : users_) {
      if (other->name() != u->partner()) continue;
      other->With([&](const UserState& s) {
        for (const Ack& a : s.acks) {
          EXPECT_EQ(ids.count(a.id), 1u)
              << scenario << ": '" << a.text << "' (" << a.id << "), acknowledged to "
              << other->name() << ", missing from " << u->name() << "'s stream";
        }
      });
    }
    // The history of the conversation with the partner holds the same
    // messages (the users write to nobody else), seq 1, 2, 3... without gaps.
    std::set<std::string> history_ids;
    std::vector<int64_t> history_seqs;
    for (const json::object& m : histories[u->name()]) {
      history_ids.insert(Str(m, "id"));
      history_seqs.push_back(Int(m, "seq"));
    }
    std::sort(history_seqs.begin(), history_seqs.end());
    for (size_t i = 0; i < history_seqs.size(); ++i) {
      if (history_seqs[i] != static_cast<int64_t>(i + 1)) {
        ADD_FAILURE() << scenario << ": " << u->name() << "'s history with " << u->partner()
                      << " has seq " << history_seqs[i] << " at position " << i + 1;
        break;
      }
    }
    EXPECT_EQ(history_seqs.size(), history_ids.size())
        << scenario << ": an id twice in " << u->name() << "'s history";
    std::vector<std::string> differ;
    std::set_symmetric_difference(ids.begin(), ids.end(), history_ids.begin(), history_ids.end(),
                                  std::back_inserter(differ));
    EXPECT_TRUE(differ.empty()) << scenario << ": " << differ.size() << " messages (first "
                                << differ.front() << ") in only one of " << u->name()
                                << "'s stream and its history with " << u->partner();
    // Version 1 messages that got an error instead of `sent` may or may not
    // be stored: count them for the report.
    u->With([&](const UserState& s) {
      for (const auto& [code, n] : s.temporary) {
        if (u->version() == 1) v1_unknown_fate += n;
      }
      // Each failure and duplicate is reported by the check that follows it.
      auto& [failures_seen, duplicates_seen] = reported_[u->name()];
      for (; failures_seen < s.failures.size(); ++failures_seen) {
        ADD_FAILURE() << scenario << ": " << s.failures[failures_seen];
      }
      // A version 1 client sees a live frame twice only around a crash
      // (version 2 clients tell repeats by id and useq).
      int unexcused = 0;
      std::string first;
      for (; duplicates_seen < s.live_duplicates.size(); ++duplicates_seen) {
        const auto& [at, id] = s.live_duplicates[duplicates_seen];
        if (u->version() != 1) continue;
        const bool excused = std::any_of(windows_.begin(), windows_.end(), [&](const Window& w) {
          return at >= w.from && at <= w.to;
        });
        if (!excused && unexcused++ == 0) first = id;
      }
      EXPECT_EQ(unexcused, 0) << scenario << ": " << u->name() << " (version 1) got " << unexcused
                              << " messages live twice outside any crash window, first " << first;
    });
  }
  std::printf(
      "[cluster] %-28s checked %d acknowledged messages in %zu streams and histories in %lld ms\n",
      scenario.c_str(), acked, streams.size(), Millis(Clock::now() - started));
  // What the clients went through since the last check.
  Totals now;
  for (auto& u : users_) {
    u->With([&](const UserState& s) {
      now.disconnects += s.disconnects.size();
      now.connects += s.connects.size();
      now.refused_handshakes += s.refused_handshakes;
      now.unanswered += s.unanswered;
      (u->version() == 1 ? now.live_duplicates_v1 : now.live_duplicates) +=
          s.live_duplicates.size();
      for (const auto& [code, n] : s.temporary) now.temporary[code] += n;
      for (const Ack& a : s.acks) now.duplicate_acks += a.duplicate ? 1 : 0;
    });
  }
  std::string temporary;
  for (const auto& [code, n] : now.temporary) {
    if (n > totals_.temporary[code]) {
      absl::StrAppend(&temporary, " ", code, "=", n - totals_.temporary[code]);
    }
  }
  std::printf(
      "[cluster] %-28s clients: %d reconnects, %d refused handshakes, %d sends unanswered, "
      "temporary errors:%s, %d retries answered duplicate:true, live frames twice: %d "
      "(version 1) + %d (version 2); %d version 1 sends of unknown fate so far\n",
      scenario.c_str(), now.connects - totals_.connects,
      now.refused_handshakes - totals_.refused_handshakes, now.unanswered - totals_.unanswered,
      temporary.empty() ? " none" : temporary.c_str(), now.duplicate_acks - totals_.duplicate_acks,
      now.live_duplicates_v1 - totals_.live_duplicates_v1,
      now.live_duplicates - totals_.live_duplicates, v1_unknown_fate);
  totals_ = now;
  std::fflush(stdout);
}

TEST_F(ClusterTest, Steady) {
  ExpectTrafficFlows();
  std::map<std::string, int> per_edge;
  for (auto& u : users_) ++per_edge[u->With([](const UserState& s) { return s.server; })];
  std::printf("[cluster] users per edge:");
  for (const auto& [edge, n] : per_edge) std::printf(" %s=%d", edge.c_str(), n);
  std::printf("\n");
  EXPECT_EQ(per_edge.size(), 3u) << "HAProxy did not spread the users over the three edges";
  ExpectNoDisconnects(scenario_start_);
  ExpectAllOnline("steady");
  Verify("steady");
}

TEST_F(ClusterTest, EdgeSigkill) {
  const std::string scenario = "edge SIGKILL";
  ExpectTrafficFlows();
  Service& victim = d().edges()[1];
  std::vector<ChatUser*> on_victim = UsersOn(victim.name);
  ASSERT_GE(on_victim.size(), 3u) << "too few users on " << victim.name;
  // Two of them stay away until they have gone offline; the others
  // reconnect at once.
  std::set<ChatUser*> away = {on_victim[0], on_victim[1]};
  std::vector<std::string> away_names;
  for (ChatUser* u : away) {
    u->Hold(true);
    away_names.push_back(u->name());
  }
  Observer observer(d().edges()[0].port);
  ASSERT_TRUE(observer.WaitFor(away_names, true, Clock::now() + 5s));

  const auto killed = Clock::now();
  auto status = d().Stop(victim, SIGKILL);
  ASSERT_TRUE(status.ok()) << status.status();

  // The others are back through HAProxy, on the surviving edges.
  Clock::duration reconnect{};
  for (ChatUser* u : on_victim) {
    if (away.count(u) > 0) continue;
    std::optional<Clock::time_point> back;
    ASSERT_TRUE(Eventually(
        [&] {
          back = u->With([&](const UserState& s) -> std::optional<Clock::time_point> {
            for (const auto& [at, server] : s.connects) {
              if (at > killed) return at;
            }
            return std::nullopt;
          });
          return back.has_value();
        },
        10s))
        << u->name() << " did not reconnect through HAProxy within 10 s";
    reconnect = std::max(reconnect, *back - killed);
    EXPECT_NE(u->With([](const UserState& s) { return s.server; }), victim.name);
  }
  Print(scenario,
        absl::StrCat("killed edge's ", on_victim.size() - away.size(),
                     " clients reconnected through HAProxy"),
        reconnect);
  auto acked = AllAckedAfter(killed, 10s, away);
  ASSERT_TRUE(acked.has_value()) << "some senders got no `sent` within 10 s of the kill";
  Print(scenario, "every sender acknowledged again", *acked);

  // The ones who stayed away go offline within the lease + 5 s.
  ASSERT_TRUE(
      observer.WaitFor(away_names, false, killed + std::chrono::milliseconds(kLeaseMs) + 5s))
      << absl::StrJoin(away_names, ", ") << " still online " << kLeaseMs << " ms + 5 s after "
      << victim.name << " died";
  Print(scenario, absl::StrCat("users who stayed away offline (lease ", kLeaseMs, " ms)"),
        Clock::now() - killed);

  // Restart the edge; HAProxy puts it back in rotation.
  ASSERT_TRUE(d().StartService(victim).ok());
  ASSERT_TRUE(d().WaitEdgeReady(1, 10s).ok());
  ASSERT_TRUE(d().WaitEdgeInRotation(1, 10s).ok());
  const auto restarted = Clock::now();
  windows_.push_back({scenario, killed, restarted + kDuplicateGrace});

  // Those who stayed away come back and are online within 5 s.
  const auto release = Clock::now();
  for (ChatUser* u : away) u->Hold(false);
  Clock::time_point last_hello = release;
  ASSERT_TRUE(Eventually(
      [&] {
        for (ChatUser* u : away) {
          auto at = u->With([&](const UserState& s) -> std::optional<Clock::time_point> {
            if (!s.connected || s.connects.empty() || s.connects.back().first < release) {
              return std::nullopt;
            }
            return s.connects.back().first;
          });
          if (!at) return false;
          last_hello = std::max(last_hello, *at);
        }
        return true;
      },
      10s));
  ASSERT_TRUE(observer.WaitFor(away_names, true, last_hello + 5s))
      << "users back from away not online within 5 s";
  Print(scenario, "returning users online after their hello", Clock::now() - last_hello);

  ExpectNoDisconnects(scenario_start_, victim.name);
  ExpectAllOnline(scenario);
  Verify(scenario);
}

TEST_F(ClusterTest, MessageServiceSigkill) {
  const std::string scenario = "message-service SIGKILL";
  // Sends back to back, so that the kill catches some in flight on the
  // dead replica (unavailable, then retried with the same key).
  traffic_->flood = true;
  struct Unflood {
    ~Unflood() { traffic_->flood = false; }
  } unflood;
  ExpectTrafficFlows();
  Service& victim = d().messages()[0];
  const auto killed = Clock::now();
  auto status = d().Stop(victim, SIGKILL);
  ASSERT_TRUE(status.ok()) << status.status();
  auto acked = AllAckedAfter(killed, 10s);
  ASSERT_TRUE(acked.has_value()) << "some senders got no `sent` within 10 s of the kill";
  Print(scenario, "every sender acknowledged again", *acked);

  ASSERT_TRUE(d().StartService(victim).ok());
  const auto restarted = Clock::now();
  windows_.push_back({scenario, killed, restarted + kDuplicateGrace});
  auto again = AllAckedAfter(restarted, 10s);
  ASSERT_TRUE(again.has_value()) << "some senders stuck after the restart";
  Print(scenario, "every sender acknowledged after the restart", *again);
  ExpectNoDisconnects(scenario_start_);
  ExpectAllOnline(scenario);
  Verify(scenario);
}

TEST_F(ClusterTest, ConnectionServiceSigkill) {
  const std::string scenario = "connection-service SIGKILL";
  ExpectTrafficFlows();
  Service& victim = d().connections()[0];
  const bool alone = d().connections().size() == 1;
  const auto killed = Clock::now();
  auto status = d().Stop(victim, SIGKILL);
  ASSERT_TRUE(status.ok()) << status.status();
  std::optional<Clock::time_point> restarted;
  if (alone) {
    // Nothing else answers: restart it at once, as a supervisor would.
    ASSERT_TRUE(d().StartService(victim).ok());
    restarted = Clock::now();
  }
  std::map<int, int> refusals;
  ASSERT_TRUE(Eventually([&] { return Handshake(d().port(), 1s, &refusals); }, 30s))
      << "no new handshake within 30 s";
  Print(scenario,
        absl::StrCat(alone ? "first new handshake (the only replica restarted at once)"
                           : "first new handshake",
                     " (refused before: ", Describe(refusals), ")"),
        Clock::now() - killed);
  auto acked = AllAckedAfter(killed, 10s);
  ASSERT_TRUE(acked.has_value()) << "some senders got no `sent` within 10 s of the kill";
  Print(scenario, "every sender acknowledged again", *acked);
  if (!restarted) {
    ASSERT_TRUE(d().StartService(victim).ok());
    restarted = Clock::now();
  }
  windows_.push_back({scenario, killed, *restarted + kDuplicateGrace});
  ASSERT_TRUE(Eventually([&] { return Handshake(d().port(), 1s); }, 10s));
  ExpectNoDisconnects(scenario_start_);
  ExpectAllOnline(scenario);
  Verify(scenario);
}

TEST_F(ClusterTest, RedisPrimarySigkill) {
  const std::string scenario = "Redis primary SIGKILL";
  ASSERT_TRUE(d().redis()) << "CLUSTER_REGISTRY=memory: no Redis to kill";
  ExpectTrafficFlows();
  auto primary_port = d().sentinels().PrimaryPort();
  ASSERT_TRUE(primary_port.ok()) << primary_port.status();
  RedisServer* primary = d().RedisOn(*primary_port);
  ASSERT_NE(primary, nullptr);
  const auto killed = Clock::now();
  ASSERT_TRUE(primary->Kill().ok());
  std::map<int, int> refusals;
  ASSERT_TRUE(Eventually([&] { return Handshake(d().port(), 1s, &refusals); }, 30s))
      << "no new handshake within 30 s of the Redis primary's death";
  Print(scenario, absl::StrCat("first new handshake (refused before: ", Describe(refusals), ")"),
        Clock::now() - killed);
  // While the registry cannot be reached the edge itself refuses handshakes
  // with 503 (and Retry-After), and stays in HAProxy's rotation.
  for (const auto& [status, n] : refusals) {
    EXPECT_TRUE(status == 503 || status == 0) << n << " handshakes refused with HTTP " << status;
  }
  auto promoted = d().sentinels().WaitForFailover(*primary_port, 30s);
  ASSERT_TRUE(promoted.ok()) << promoted.status();
  Print(scenario, "Sentinel promoted the replica", Clock::now() - killed);
  auto acked = AllAckedAfter(killed, 10s);
  ASSERT_TRUE(acked.has_value()) << "some senders got no `sent` within 10 s of the kill";
  Print(scenario, "every sender acknowledged again", *acked);

  // The old primary comes back empty; Sentinel makes it the new replica.
  ASSERT_TRUE(primary->Restart().ok());
  windows_.push_back({scenario, killed, Clock::now() + kDuplicateGrace});
  ASSERT_TRUE(d().sentinels().WaitReady(1, 30s).ok())
      << "the old primary did not come back as a replica";
  ASSERT_TRUE(Eventually([&] { return Handshake(d().port(), 1s); }, 10s));
  ExpectNoDisconnects(scenario_start_);
  ExpectAllOnline(scenario);
  Verify(scenario);
}

// SIGTERM to edge `index`: its clients get 1001 and come back through
// HAProxy on the others; the edge exits 0 and is started again.
void ClusterTest::Drain(const std::string& scenario, size_t index) {
  ExpectTrafficFlows();
  Service& victim = d().edges()[index];
  std::vector<ChatUser*> on_victim = UsersOn(victim.name);
  ASSERT_FALSE(on_victim.empty()) << "nobody on " << victim.name;
  const auto drained = Clock::now();
  victim.process->Signal(SIGTERM);
  Clock::duration reconnect{};
  for (ChatUser* u : on_victim) {
    std::optional<Clock::time_point> back;
    ASSERT_TRUE(Eventually(
        [&] {
          back = u->With([&](const UserState& s) -> std::optional<Clock::time_point> {
            for (const auto& [at, server] : s.connects) {
              if (at > drained) return at;
            }
            return std::nullopt;
          });
          return back.has_value();
        },
        10s))
        << u->name() << " did not reconnect through HAProxy within 10 s";
    reconnect = std::max(reconnect, *back - drained);
    u->With([&](const UserState& s) {
      for (const Disconnect& d : s.disconnects) {
        if (d.at >= drained) {
          EXPECT_EQ(d.code, 1001) << u->name() << " closed by the drain";
        }
      }
    });
  }
  Print(scenario,
        absl::StrCat("drained edge's ", on_victim.size(), " clients reconnected through HAProxy"),
        reconnect);
  auto acked = AllAckedAfter(drained, 10s);
  ASSERT_TRUE(acked.has_value()) << "some senders got no `sent` within 10 s of the drain";
  Print(scenario, "every sender acknowledged again", *acked);
  auto exit_status = victim.process->Wait(10s);
  ASSERT_TRUE(exit_status.ok()) << exit_status.status();
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0)
      << "wait status " << *exit_status;
  ASSERT_TRUE(d().StartService(victim).ok());
  ASSERT_TRUE(d().WaitEdgeReady(index, 10s).ok());
  ASSERT_TRUE(d().WaitEdgeInRotation(index, 10s).ok());
  ExpectNoDisconnects(scenario_start_, victim.name);
  ExpectAllOnline(scenario);
  Verify(scenario);
}

TEST_F(ClusterTest, EdgeSigtermDrain) { Drain("edge SIGTERM (drain)", 2); }

// A drain is no crash: no client may see a live frame twice because of it
// (docs/protocol.md §6.2: a repeated frame can only follow a crash). This
// one starts once the grace after the crashes is over, and after 10 s of
// chatting since the last check (whose sync counted as reaching everything).
// With two message-service replicas this once failed: the drained edge's
// clients were pushed again what they had received live, because reached
// reports went to the conversation's replica instead of the user's.
TEST_F(ClusterTest, CleanDrainRepeatsNoFrame) {
  Clock::time_point quiet = Clock::now() + 10s;  // traffic to repeat, if it would be
  for (const Window& w : windows_) quiet = std::max(quiet, w.to);
  std::this_thread::sleep_until(quiet);
  const auto started = Clock::now();
  Drain("edge SIGTERM, no crash nearby", 1);
  for (auto& u : users_) {
    u->With([&](const UserState& s) {
      const auto repeated = std::count_if(s.live_duplicates.begin(), s.live_duplicates.end(),
                                          [&](const auto& d) { return d.first >= started; });
      EXPECT_EQ(repeated, 0) << u->name() << " (version " << u->version() << ") got " << repeated
                             << " messages live twice after a clean drain";
    });
  }
}

}  // namespace
}  // namespace chat::testing
