// Durable conversations (protocol version 2) against the three real binaries
// with a real store: offline delivery, pushes after hello, sync, history,
// conversations, read marks and receipts, idempotent sends, bad input, and
// crashes of every process, as docs/protocol.md §6 describes them (the §
// numbers below are its sections). Each test gets its own cluster and its own
// empty store; the same suite runs on every store engine.
#include <signal.h>
#include <stdlib.h>

#include <atomic>
#include <deque>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "tests/e2e/e2e_util.h"
#include "tests/support/postgres_server.h"

namespace chat::testing {
namespace {

using Clock = std::chrono::steady_clock;
using Pred = std::function<bool(const json::object&)>;

std::string Dump(const json::object& o) { return json::serialize(o); }
std::string Dump(const std::vector<json::object>& frames) {
  std::string out;
  for (const auto& f : frames) absl::StrAppend(&out, out.empty() ? "" : "\n    ", Dump(f));
  return out.empty() ? "(none)" : out;
}

// An integer field, or -1 when missing or not an integer.
int64_t Int(const json::object& o, const char* key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) return -1;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<int64_t>(v->as_uint64());
  return -1;
}
bool True(const json::object& o, const char* key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_bool() && v->as_bool();
}
// An array field, or an empty one when missing or not an array.
std::vector<json::object> Objects(const json::object& o, const char* key) {
  std::vector<json::object> out;
  const json::value* v = o.if_contains(key);
  if (v == nullptr || !v->is_array()) return out;
  for (const json::value& e : v->as_array()) {
    out.push_back(e.is_object() ? e.as_object() : json::object{{"not_an_object", e}});
  }
  return out;
}
bool IsAction(const json::object& o, const char* action) { return Str(o, "action") == action; }

// One WebSocket connection of a user. Every frame is read in arrival order;
// frames not asked for yet stay pending for later waits.
class Peer {
 public:
  Peer(std::string user, std::unique_ptr<WsClient> ws)
      : user_(std::move(user)), ws_(std::move(ws)) {}
  ~Peer() { ws_->Close(); }

  const std::string& user() const { return user_; }
  const json::object& hello() const { return ws_->hello(); }
  absl::Status Send(const json::object& frame) { return ws_->SendJson(frame); }

  // The first pending or arriving frame that satisfies `pred` (taken out);
  // the error names what was seen meanwhile.
  absl::StatusOr<json::object> Await(const Pred& pred, const std::string& what,
                                     std::chrono::milliseconds timeout = 5s) {
    for (auto it = pending_.begin(); it != pending_.end(); ++it) {
      if (pred(*it)) {
        json::object found = std::move(*it);
        pending_.erase(it);
        return found;
      }
    }
    const auto deadline = Clock::now() + timeout;
    while (!closed_) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) break;
      auto frame = ws_->Read(left);
      if (!frame.ok()) break;
      if (frame->closed) {
        closed_ = true;
        close_code_ = frame->close_code;
        close_ = absl::StrCat("closed with ", frame->close_code, " (", frame->close_reason, ")");
        break;
      }
      json::object obj = frame->json;
      if (obj.empty()) obj = {{"unparsed_frame", frame->payload}};
      if (pred(obj)) return obj;
      pending_.push_back(std::move(obj));
    }
    const std::string seen = absl::StrCat(user_, ": no ", what, " within ", timeout.count(),
                                          " ms; frames pending: ", Dump(Pending()));
    if (closed_) return absl::UnavailableError(absl::StrCat(seen, "; ", close_));
    return absl::DeadlineExceededError(seen);
  }
  // The next frame, whatever it is.
  absl::StatusOr<json::object> Next(std::chrono::milliseconds timeout = 5s) {
    return Await([](const json::object&) { return true; }, "frame", timeout);
  }
  // Sends `request` with a fresh request_id; returns the answer carrying it.
  absl::StatusOr<json::object> Call(json::object request, std::chrono::milliseconds timeout = 5s) {
    const std::string id = absl::StrCat(user_, "-", ++next_id_);
    request["request_id"] = id;
    if (absl::Status s = Send(request); !s.ok()) return s;
    return Await([&](const json::object& o) { return Str(o, "request_id") == id; },
                 absl::StrCat("answer to ", Dump(request)), timeout);
  }
  // Every frame the server sent before it answered a ping sent now (taken out).
  absl::StatusOr<std::vector<json::object>> Flush() {
    auto pong = Call({{"action", "ping"}});
    if (!pong.ok()) return pong.status();
    std::vector<json::object> out = Pending();
    pending_.clear();
    return out;
  }
  std::vector<json::object> Pending() const { return {pending_.begin(), pending_.end()}; }
  void Close() { ws_->Close(); }
  // The server's close code once a wait saw the close, else 0.
  int close_code() const { return close_code_; }

 private:
  std::string user_;
  std::unique_ptr<WsClient> ws_;
  std::deque<json::object> pending_;
  int next_id_ = 0;
  bool closed_ = false;
  std::string close_;
  int close_code_ = 0;
};

// A connection of `name` (hello read), or nullptr and a test failure.
std::unique_ptr<Peer> Open(int port, const std::string& name) {
  auto ws = std::make_unique<WsClient>();
  HandshakeOptions options;
  options.target = absl::StrCat("/?name=", name);
  absl::Status s = ws->Connect(port, options);
  EXPECT_TRUE(s.ok()) << "connecting as " << name << ": " << s;
  if (!s.ok()) return nullptr;
  return std::make_unique<Peer>(name, std::move(ws));
}

// The same, retried while a backend is still coming back (503 meanwhile).
std::unique_ptr<Peer> OpenEventually(int port, const std::string& name,
                                     std::chrono::milliseconds timeout = 10s) {
  std::unique_ptr<Peer> peer;
  std::string last;
  Eventually(
      [&] {
        auto ws = std::make_unique<WsClient>();
        HandshakeOptions options;
        options.target = absl::StrCat("/?name=", name);
        absl::Status s = ws->Connect(port, options);
        if (!s.ok()) {
          last = s.ToString();
          return false;
        }
        peer = std::make_unique<Peer>(name, std::move(ws));
        return true;
      },
      timeout);
  EXPECT_TRUE(peer != nullptr) << "connecting as " << name << ": " << last;
  return peer;
}

// A connection whose hello carries an epoch: one made while message-service
// is still linking may get a hello without it (documented), so retry.
std::unique_ptr<Peer> OpenWithEpoch(int port, const std::string& name) {
  std::unique_ptr<Peer> peer;
  std::string last;
  const bool ok = Eventually(
      [&] {
        peer = OpenEventually(port, name);
        if (!peer) return false;
        last = Dump(peer->hello());
        return peer->hello().contains("epoch");
      },
      10s);
  EXPECT_TRUE(ok) << name << ": no hello with an epoch; last: " << last;
  return ok ? std::move(peer) : nullptr;
}

// The answer to `request`, or {} and a test failure.
json::object Answer(Peer& peer, json::object request, std::chrono::milliseconds timeout = 5s) {
  auto answer = peer.Call(std::move(request), timeout);
  EXPECT_TRUE(answer.ok()) << answer.status();
  return answer.ok() ? *answer : json::object{};
}

json::object SendFrame(const std::string& to, const std::string& text,
                       const std::string& key = "") {
  json::object frame{{"action", "send"}, {"send_to", to}, {"message", text}};
  if (!key.empty()) frame["idempotency_key"] = key;
  return frame;
}

// Sends with a request_id; expects `sent` carrying every number of §6.2.
json::object SendOk(Peer& from, const std::string& to, const std::string& text,
                    const std::string& key = "") {
  json::object sent = Answer(from, SendFrame(to, text, key));
  EXPECT_TRUE(IsAction(sent, "sent")) << from.user() << " -> " << to << ": " << Dump(sent);
  EXPECT_NE(Str(sent, "id"), "<missing>") << Dump(sent);
  EXPECT_NE(Str(sent, "conversation"), "<missing>") << Dump(sent);
  EXPECT_GE(Int(sent, "seq"), 1) << Dump(sent);
  EXPECT_GE(Int(sent, "useq"), 1) << Dump(sent);
  EXPECT_GE(Int(sent, "ts"), 1) << Dump(sent);
  EXPECT_GE(Int(sent, "delivered"), 0) << Dump(sent);
  return sent;
}

// A message object (§6.1) with every field of the right type.
void ExpectMessageObject(const json::object& m) {
  for (const char* key : {"id", "conversation", "sent_by", "send_to", "message"}) {
    EXPECT_NE(Str(m, key), "<missing>") << key << " in " << Dump(m);
  }
  for (const char* key : {"seq", "useq", "ts"})
    EXPECT_GE(Int(m, key), 1) << key << " in " << Dump(m);
}

Pred LiveSendWithId(const std::string& id) {
  return [id](const json::object& o) { return IsAction(o, "send") && Str(o, "id") == id; };
}

// The user's stream after `since`, page by page of `limit`; each page checked.
std::vector<json::object> SyncAll(Peer& peer, int64_t since = 0, int limit = 500) {
  std::vector<json::object> out;
  for (int page = 0; page < 1000; ++page) {
    json::object r = Answer(peer, {{"action", "sync"}, {"since", since}, {"limit", limit}});
    if (!IsAction(r, "synced")) {
      ADD_FAILURE() << peer.user() << " sync since " << since << ": " << Dump(r);
      break;
    }
    const auto messages = Objects(r, "messages");
    EXPECT_LE(messages.size(), static_cast<size_t>(limit)) << Dump(r);
    for (const auto& m : messages) {
      EXPECT_EQ(Int(m, "useq"), since + 1) << peer.user() << ": gap or disorder in " << Dump(r);
      since = Int(m, "useq");
      out.push_back(m);
    }
    EXPECT_EQ(Int(r, "useq"), since) << Dump(r);
    if (!True(r, "more")) break;
    if (messages.empty()) {
      ADD_FAILURE() << "more:true with no message: " << Dump(r);
      break;
    }
  }
  return out;
}

// The whole conversation with `with`, ascending, paged newest first by `limit`.
std::vector<json::object> HistoryAll(Peer& peer, const std::string& with, int limit = 500) {
  std::vector<json::object> out;
  std::optional<int64_t> before;
  for (int page = 0; page < 1000; ++page) {
    json::object request{{"action", "history"}, {"with", with}, {"limit", limit}};
    if (before) request["before"] = *before;
    json::object r = Answer(peer, request);
    if (!IsAction(r, "history")) {
      ADD_FAILURE() << peer.user() << " history with " << with << ": " << Dump(r);
      break;
    }
    auto messages = Objects(r, "messages");
    out.insert(out.begin(), messages.begin(), messages.end());
    if (!True(r, "more")) break;
    if (messages.empty()) {
      ADD_FAILURE() << "more:true with no message: " << Dump(r);
      break;
    }
    before = Int(messages.front(), "seq");
  }
  return out;
}

// The requester's conversation list item with `with`, or {}.
json::object Item(const json::object& conversations, const std::string& with) {
  for (const auto& item : Objects(conversations, "items")) {
    if (Str(item, "with") == with) return item;
  }
  return {};
}

std::vector<std::string> Withs(const json::object& conversations) {
  std::vector<std::string> out;
  for (const auto& item : Objects(conversations, "items")) out.push_back(Str(item, "with"));
  return out;
}

// Waits until `observer`'s `users` shows `name` with `online`.
void WaitStatus(Peer& observer, const std::string& name, bool online) {
  std::string last;
  const bool seen = Eventually([&] {
    auto users = observer.Call({{"action", "users"}}, 2s);
    if (!users.ok()) return false;
    last = Dump(*users);
    for (const auto& c : Objects(*users, "contacts")) {
      if (Str(c, "name") == name) return True(c, "status") == online;
    }
    return false;
  });
  EXPECT_TRUE(seen) << "expected " << name << " " << (online ? "online" : "offline")
                    << "; last users: " << last;
}

// Makes `peer` a version 2 connection (its first accepted sync).
void BecomeV2(Peer& peer) {
  json::object synced = Answer(peer, {{"action", "sync"}});
  EXPECT_TRUE(IsAction(synced, "synced")) << Dump(synced);
}

// The receipts among `frames`.
std::vector<json::object> Receipts(const std::vector<json::object>& frames) {
  std::vector<json::object> out;
  for (const auto& f : frames) {
    if (IsAction(f, "receipt")) out.push_back(f);
  }
  return out;
}

Pred ReceiptFor(const std::string& user, const char* mark, int64_t value) {
  return [user, mark, value](const json::object& o) {
    return IsAction(o, "receipt") && Str(o, "user") == user && Int(o, mark) == value;
  };
}

// One PostgreSQL server for the whole test process, started on first use
// and stopped at exit; each test drops its tables first.
absl::StatusOr<PostgresServer*> SharedPostgres() {
  static absl::StatusOr<std::unique_ptr<PostgresServer>> server = PostgresServer::Start();
  if (!server.ok()) return server.status();
  return server->get();
}

class DurableTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string templ = (std::filesystem::temp_directory_path() / "chat-durable-XXXXXX").string();
    ASSERT_NE(mkdtemp(templ.data()), nullptr) << "mkdtemp failed";
    data_dir_ = templ;
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    name_ = absl::StrReplaceAll(absl::StrCat("durable-", info->name()), {{"/", "-"}});
    if (GetParam() == "postgresql") {
      auto pg = SharedPostgres();
      ASSERT_TRUE(pg.ok()) << "PostgreSQL did not start: " << pg.status();
      absl::Status reset = (*pg)->Reset();
      ASSERT_TRUE(reset.ok()) << reset;
      options_.message_store = options_.connection_store = (*pg)->Url();
    } else {
      ASSERT_EQ(GetParam(), "sqlite") << "unknown engine";
      options_.message_store = absl::StrCat("sqlite:", data_dir_, "/messages.db");
      options_.connection_store = absl::StrCat("sqlite:", data_dir_, "/users.db");
    }
    options_.edge_flags = {"--messages_per_second=100000", "--rate_burst=100000",
                           "--rate_limit_strikes=100000", "--bad_frames_max=1000",
                           "--send_timeout_ms=3000"};
  }
  void TearDown() override {
    cluster_.reset();
    if (HasFailure()) {
      std::cerr << "data kept in " << data_dir_ << "; logs: " << BinaryDir() << "/test-logs/"
                << name_ << ".*.log\n";
    } else {
      std::error_code ignored;
      std::filesystem::remove_all(data_dir_, ignored);
    }
  }
  // Starts the cluster with `edges` edges (assert with ASSERT_NO_FATAL_FAILURE).
  void StartCluster(int edges = 1) {
    options_.edges = edges;
    cluster_ = std::make_unique<Cluster>(name_, options_);
    absl::Status s = cluster_->Start();
    ASSERT_TRUE(s.ok()) << "cluster did not start: " << s << " (logs: " << BinaryDir()
                        << "/test-logs/" << name_ << ".*.log)";
  }
  int port(int edge = 0) const { return cluster_->edge_port(edge); }
  // A user that exists (connected once) and is offline now, as `observer` sees it.
  void MakeOfflineUser(const std::string& name, Peer& observer) {
    auto peer = Open(port(), name);
    ASSERT_TRUE(peer);
    peer->Close();
    WaitStatus(observer, name, false);
  }

  std::string data_dir_, name_;
  ClusterOptions options_;
  std::unique_ptr<Cluster> cluster_;
};

// 1. §6.2: a send to an offline user is stored and acknowledged; the user's
// next connection (a version 1 client, which never syncs) gets it pushed as a
// live frame right after hello, oldest first, and a second device does not
// get it again.
TEST_P(DurableTest, OfflineRecipientGetsMessagesPushedAfterHello) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  auto alice = Open(port(), "alice");
  ASSERT_TRUE(alice);
  ASSERT_NO_FATAL_FAILURE(MakeOfflineUser("bob", *alice));

  std::vector<json::object> sent;
  for (int i = 1; i <= 3; ++i) {
    sent.push_back(SendOk(*alice, "bob", absl::StrCat("while away ", i)));
    const json::object& s = sent.back();
    EXPECT_EQ(Int(s, "delivered"), 0) << "bob is offline: " << Dump(s);
    EXPECT_EQ(Int(s, "seq"), i) << Dump(s);
    EXPECT_EQ(Int(s, "useq"), i) << "alice's own stream: " << Dump(s);
    EXPECT_EQ(Str(s, "conversation"), Str(sent.front(), "conversation")) << Dump(s);
  }

  auto bob = Open(port(), "bob");
  ASSERT_TRUE(bob);
  for (int i = 1; i <= 3; ++i) {
    auto frame = bob->Next();
    ASSERT_TRUE(frame.ok()) << "push " << i << " after hello: " << frame.status();
    EXPECT_TRUE(IsAction(*frame, "send")) << "frame " << i << " after hello: " << Dump(*frame);
    ExpectMessageObject(*frame);
    EXPECT_EQ(Str(*frame, "id"), Str(sent[i - 1], "id")) << "oldest first: " << Dump(*frame);
    EXPECT_EQ(Str(*frame, "message"), absl::StrCat("while away ", i)) << Dump(*frame);
    EXPECT_EQ(Str(*frame, "sent_by"), "alice");
    EXPECT_EQ(Str(*frame, "send_to"), "bob");
    EXPECT_EQ(Int(*frame, "seq"), i) << Dump(*frame);
    EXPECT_EQ(Int(*frame, "useq"), i) << "bob's stream: " << Dump(*frame);
    EXPECT_EQ(Str(*frame, "conversation"), Str(sent[i - 1], "conversation"));
    EXPECT_EQ(Int(*frame, "ts"), Int(sent[i - 1], "ts"));
  }

  // They reached bob: a second device is not pushed them again; the next
  // frame both devices see is the next live message.
  auto bob2 = Open(port(), "bob");
  ASSERT_TRUE(bob2);
  json::object live = SendOk(*alice, "bob", "live");
  EXPECT_EQ(Int(live, "delivered"), 2) << Dump(live);
  for (Peer* p : {bob.get(), bob2.get()}) {
    auto frame = p->Next();
    ASSERT_TRUE(frame.ok()) << frame.status();
    EXPECT_EQ(Str(*frame, "id"), Str(live, "id"))
        << p->user() << "'s " << (p == bob.get() ? "first" : "second")
        << " connection: expected only the live message, got " << Dump(*frame)
        << " (a message pushed after hello that had already reached bob's first connection)";
  }
}

// 2. §6.3: hello carries protocol 2 and the epoch; sync pages the user's
// stream without gaps; a stale epoch or a `since` beyond the end resets.
TEST_P(DurableTest, HelloEpochAndSyncPaging) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  auto alice = Open(port(), "alice");
  auto bob = Open(port(), "bob");
  ASSERT_TRUE(alice && bob);
  EXPECT_EQ(Int(alice->hello(), "protocol"), 2) << Dump(alice->hello());
  const std::string epoch = Str(alice->hello(), "epoch");
  EXPECT_NE(epoch, "<missing>") << Dump(alice->hello());
  EXPECT_FALSE(epoch.empty());
  EXPECT_EQ(Str(bob->hello(), "epoch"), epoch) << "one store, one epoch";

  // 5 from alice, 2 from bob, interleaved: 7 in both users' streams.
  std::vector<json::object> sent;
  for (int i = 0; i < 7; ++i) {
    const bool from_bob = i == 2 || i == 5;
    sent.push_back(from_bob ? SendOk(*bob, "alice", absl::StrCat("m", i))
                            : SendOk(*alice, "bob", absl::StrCat("m", i)));
    EXPECT_EQ(Int(sent.back(), "seq"), i + 1) << Dump(sent.back());
  }
  // bob's live frames carry bob's useq: 1, 2, 4, 5, 7 (3 and 6 are his own).
  for (int i : {0, 1, 3, 4, 6}) {
    auto frame = bob->Await(LiveSendWithId(Str(sent[i], "id")), absl::StrCat("m", i));
    ASSERT_TRUE(frame.ok()) << frame.status();
    EXPECT_EQ(Int(*frame, "useq"), i + 1) << Dump(*frame);
  }

  // Whole stream, default limit.
  json::object all = Answer(*alice, {{"action", "sync"}});
  ASSERT_TRUE(IsAction(all, "synced")) << Dump(all);
  EXPECT_EQ(Str(all, "epoch"), epoch) << Dump(all);
  EXPECT_FALSE(True(all, "more")) << Dump(all);
  EXPECT_FALSE(True(all, "reset")) << Dump(all);
  EXPECT_EQ(Int(all, "useq"), 7) << Dump(all);
  const auto messages = Objects(all, "messages");
  ASSERT_EQ(messages.size(), 7u) << Dump(all);
  for (int i = 0; i < 7; ++i) {
    ExpectMessageObject(messages[i]);
    EXPECT_EQ(Int(messages[i], "useq"), i + 1) << Dump(all);
    EXPECT_EQ(Int(messages[i], "seq"), i + 1) << Dump(all);
    EXPECT_EQ(Str(messages[i], "id"), Str(sent[i], "id")) << Dump(all);
    EXPECT_EQ(Str(messages[i], "message"), absl::StrCat("m", i));
  }

  // Pages of 3: 1-3 more, 4-6 more, 7 done, then nothing new.
  int64_t since = 0;
  for (const auto& [count, more] :
       std::vector<std::pair<size_t, bool>>{{3, true}, {3, true}, {1, false}}) {
    json::object page = Answer(*alice, {{"action", "sync"}, {"since", since}, {"limit", 3}});
    const auto got = Objects(page, "messages");
    ASSERT_EQ(got.size(), count) << "since " << since << ": " << Dump(page);
    EXPECT_EQ(Int(got.front(), "useq"), since + 1) << Dump(page);
    EXPECT_EQ(True(page, "more"), more) << Dump(page);
    EXPECT_EQ(Int(page, "useq"), since + static_cast<int64_t>(count)) << Dump(page);
    EXPECT_EQ(Str(page, "epoch"), epoch) << Dump(page);
    since += static_cast<int64_t>(count);
  }
  json::object none =
      Answer(*alice, {{"action", "sync"}, {"since", 7}, {"limit", 3}, {"epoch", epoch}});
  EXPECT_TRUE(IsAction(none, "synced")) << Dump(none);
  EXPECT_TRUE(Objects(none, "messages").empty()) << Dump(none);
  EXPECT_EQ(Int(none, "useq"), 7) << Dump(none);
  EXPECT_FALSE(True(none, "more")) << Dump(none);
  EXPECT_FALSE(True(none, "reset")) << Dump(none);
  // A limit above the cap is capped, not refused.
  json::object capped = Answer(*alice, {{"action", "sync"}, {"limit", 100000}});
  EXPECT_EQ(Objects(capped, "messages").size(), 7u) << Dump(capped);

  // A stale epoch: from 0 again, reset:true, the current epoch.
  json::object stale =
      Answer(*alice, {{"action", "sync"}, {"since", 5}, {"epoch", "not-" + epoch}});
  ASSERT_TRUE(IsAction(stale, "synced")) << Dump(stale);
  EXPECT_TRUE(True(stale, "reset")) << Dump(stale);
  EXPECT_EQ(Str(stale, "epoch"), epoch) << Dump(stale);
  ASSERT_EQ(Objects(stale, "messages").size(), 7u) << Dump(stale);
  EXPECT_EQ(Int(Objects(stale, "messages").front(), "useq"), 1) << Dump(stale);
  // `since` beyond the last useq: the same.
  json::object beyond = Answer(*alice, {{"action", "sync"}, {"since", 100}, {"limit", 2}});
  ASSERT_TRUE(IsAction(beyond, "synced")) << Dump(beyond);
  EXPECT_TRUE(True(beyond, "reset")) << Dump(beyond);
  ASSERT_EQ(Objects(beyond, "messages").size(), 2u) << Dump(beyond);
  EXPECT_EQ(Int(Objects(beyond, "messages").front(), "useq"), 1) << Dump(beyond);
  EXPECT_TRUE(True(beyond, "more")) << Dump(beyond);
  EXPECT_EQ(Int(beyond, "useq"), 2) << Dump(beyond);

  // bob's stream: the same seven messages, with bob's own useq 1..7.
  const auto bobs = SyncAll(*bob, 0, 2);
  ASSERT_EQ(bobs.size(), 7u) << Dump(bobs);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(Str(bobs[i], "id"), Str(sent[i], "id")) << Dump(bobs);
}

// 3. §6.4: history newest first in pages.
TEST_P(DurableTest, HistoryPagesNewestFirst) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  auto alice = Open(port(), "alice");
  auto bob = Open(port(), "bob");
  auto carol = Open(port(), "carol");
  ASSERT_TRUE(alice && bob && carol);
  std::vector<json::object> sent;
  for (int i = 1; i <= 7; ++i) {
    sent.push_back(i % 3 == 0 ? SendOk(*bob, "alice", absl::StrCat("h", i))
                              : SendOk(*alice, "bob", absl::StrCat("h", i)));
  }
  const std::string conversation = Str(sent.front(), "conversation");

  json::object newest = Answer(*alice, {{"action", "history"}, {"with", "bob"}, {"limit", 3}});
  ASSERT_TRUE(IsAction(newest, "history")) << Dump(newest);
  EXPECT_EQ(Str(newest, "with"), "bob") << Dump(newest);
  EXPECT_EQ(Str(newest, "conversation"), conversation) << Dump(newest);
  EXPECT_TRUE(True(newest, "more")) << Dump(newest);
  auto page = Objects(newest, "messages");
  ASSERT_EQ(page.size(), 3u) << Dump(newest);
  for (int i = 0; i < 3; ++i) {
    ExpectMessageObject(page[i]);
    EXPECT_EQ(Int(page[i], "seq"), 5 + i) << "ascending within the page: " << Dump(newest);
    EXPECT_EQ(Str(page[i], "id"), Str(sent[4 + i], "id")) << Dump(newest);
    EXPECT_EQ(Str(page[i], "message"), absl::StrCat("h", 5 + i));
  }

  json::object older =
      Answer(*alice, {{"action", "history"}, {"with", "bob"}, {"before", 5}, {"limit", 3}});
  page = Objects(older, "messages");
  ASSERT_EQ(page.size(), 3u) << Dump(older);
  EXPECT_EQ(Int(page.front(), "seq"), 2) << Dump(older);
  EXPECT_EQ(Int(page.back(), "seq"), 4) << Dump(older);
  EXPECT_TRUE(True(older, "more")) << Dump(older);

  json::object oldest =
      Answer(*alice, {{"action", "history"}, {"with", "bob"}, {"before", 2}, {"limit", 3}});
  page = Objects(oldest, "messages");
  ASSERT_EQ(page.size(), 1u) << Dump(oldest);
  EXPECT_EQ(Int(page.front(), "seq"), 1) << Dump(oldest);
  EXPECT_FALSE(True(oldest, "more")) << Dump(oldest);

  json::object before_first =
      Answer(*alice, {{"action", "history"}, {"with", "bob"}, {"before", 1}});
  EXPECT_TRUE(IsAction(before_first, "history")) << Dump(before_first);
  EXPECT_TRUE(Objects(before_first, "messages").empty()) << Dump(before_first);
  EXPECT_FALSE(True(before_first, "more")) << Dump(before_first);

  // Defaults: everything (7 < 50), no more.
  json::object whole = Answer(*alice, {{"action", "history"}, {"with", "bob"}});
  EXPECT_EQ(Objects(whole, "messages").size(), 7u) << Dump(whole);
  EXPECT_FALSE(True(whole, "more")) << Dump(whole);

  // The useq in history is the requester's: bob's history carries bob's.
  const auto bobs = HistoryAll(*bob, "alice", 2);
  const auto bob_stream = SyncAll(*bob);
  ASSERT_EQ(bobs.size(), 7u) << Dump(bobs);
  ASSERT_EQ(bob_stream.size(), 7u) << Dump(bob_stream);
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(Str(bobs[i], "id"), Str(bob_stream[i], "id"));
    EXPECT_EQ(Int(bobs[i], "useq"), Int(bob_stream[i], "useq")) << Dump(bobs[i]);
  }

  json::object unknown = Answer(*alice, {{"action", "history"}, {"with", "nobody-ever"}});
  EXPECT_TRUE(IsAction(unknown, "error")) << Dump(unknown);
  EXPECT_EQ(Str(unknown, "code"), "unknown_user") << Dump(unknown);

  json::object unknown_read =
      Answer(*alice, {{"action", "read"}, {"with", "nobody-ever"}, {"seq", 1}});
  EXPECT_EQ(Str(unknown_read, "code"), "unknown_user") << Dump(unknown_read);

  json::object empty = Answer(*alice, {{"action", "history"}, {"with", "carol"}});
  EXPECT_TRUE(IsAction(empty, "history")) << Dump(empty);
  EXPECT_TRUE(Objects(empty, "messages").empty()) << Dump(empty);
  EXPECT_FALSE(True(empty, "more")) << Dump(empty);
}

// 4. §6.5: the conversation list: order, unread, marks, paging.
TEST_P(DurableTest, ConversationsListOrderUnreadMarksAndPages) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  auto alice = Open(port(), "alice");
  auto bob = Open(port(), "bob");
  auto carol = Open(port(), "carol");
  ASSERT_TRUE(alice && bob && carol);
  ASSERT_NO_FATAL_FAILURE(MakeOfflineUser("dave", *alice));

  SendOk(*alice, "bob", "a1");                     // alice useq 1, bob conv seq 1
  SendOk(*carol, "alice", "c1");                   // useq 2, carol seq 1
  json::object a2 = SendOk(*alice, "dave", "a2");  // useq 3, dave seq 1 (dave offline)
  json::object b1 = SendOk(*bob, "alice", "b1");   // useq 4, bob seq 2
  EXPECT_EQ(Int(a2, "delivered"), 0) << Dump(a2);

  json::object list = Answer(*alice, {{"action", "conversations"}});
  ASSERT_TRUE(IsAction(list, "conversations")) << Dump(list);
  EXPECT_EQ(Withs(list), (std::vector<std::string>{"bob", "dave", "carol"})) << Dump(list);
  EXPECT_FALSE(list.contains("next")) << Dump(list);
  json::object with_bob = Item(list, "bob");
  EXPECT_EQ(Str(with_bob, "conversation"), Str(b1, "conversation")) << Dump(with_bob);
  ASSERT_TRUE(with_bob.contains("last") && with_bob.at("last").is_object()) << Dump(with_bob);
  const json::object& last = with_bob.at("last").as_object();
  ExpectMessageObject(last);
  EXPECT_EQ(Str(last, "id"), Str(b1, "id")) << Dump(with_bob);
  EXPECT_EQ(Int(last, "useq"), 4) << "alice's useq: " << Dump(with_bob);
  EXPECT_EQ(Int(with_bob, "unread"), 1) << "only bob's message counts: " << Dump(with_bob);
  EXPECT_EQ(Int(with_bob, "read_seq"), 0) << "sending moves no mark: " << Dump(with_bob);
  EXPECT_EQ(Int(with_bob, "peer_read_seq"), 0) << Dump(with_bob);
  EXPECT_EQ(Int(Item(list, "carol"), "unread"), 1) << Dump(list);
  EXPECT_EQ(Int(Item(list, "dave"), "unread"), 0) << Dump(list);
  EXPECT_EQ(Int(Item(list, "dave"), "delivered_seq"), 0) << "dave is offline: " << Dump(list);
  EXPECT_EQ(Int(Item(list, "carol"), "delivered_seq"), 0) << "alice wrote carol nothing";

  // a1 reached bob (online): bob's delivered mark, as alice sees it, is 1.
  std::string seen;
  EXPECT_TRUE(Eventually([&] {
    json::object l = Answer(*alice, {{"action", "conversations"}});
    seen = Dump(l);
    return Int(Item(l, "bob"), "delivered_seq") == 1;
  })) << "expected bob's delivered_seq 1: "
      << seen;

  // carol writes again: carol first now.
  SendOk(*carol, "alice", "c2");  // useq 5, carol seq 2
  list = Answer(*alice, {{"action", "conversations"}});
  EXPECT_EQ(Withs(list), (std::vector<std::string>{"carol", "bob", "dave"})) << Dump(list);
  EXPECT_EQ(Int(Item(list, "carol"), "unread"), 2) << Dump(list);

  // Reading moves read_seq and unread; the peer sees it as peer_read_seq.
  json::object read = Answer(*alice, {{"action", "read"}, {"with", "carol"}, {"seq", 1}});
  EXPECT_TRUE(IsAction(read, "read")) << Dump(read);
  EXPECT_EQ(Int(read, "seq"), 1) << Dump(read);
  EXPECT_EQ(Str(read, "with"), "carol") << Dump(read);
  ASSERT_TRUE(IsAction(Answer(*bob, {{"action", "read"}, {"with", "alice"}, {"seq", 1}}), "read"));
  list = Answer(*alice, {{"action", "conversations"}});
  EXPECT_EQ(Int(Item(list, "carol"), "read_seq"), 1) << Dump(list);
  EXPECT_EQ(Int(Item(list, "carol"), "unread"), 1) << Dump(list);
  EXPECT_EQ(Int(Item(list, "bob"), "peer_read_seq"), 1) << Dump(list);
  EXPECT_EQ(Int(Item(list, "bob"), "read_seq"), 0) << Dump(list);

  // bob's side of the same conversation.
  json::object bobs = Answer(*bob, {{"action", "conversations"}});
  json::object with_alice = Item(bobs, "alice");
  EXPECT_EQ(Withs(bobs), std::vector<std::string>{"alice"}) << Dump(bobs);
  EXPECT_EQ(Int(with_alice, "read_seq"), 1) << Dump(with_alice);
  EXPECT_EQ(Int(with_alice, "unread"), 0) << Dump(with_alice);
  EXPECT_EQ(Int(with_alice, "peer_read_seq"), 0) << Dump(with_alice);
  EXPECT_TRUE(Eventually([&] {
    json::object l = Answer(*bob, {{"action", "conversations"}});
    seen = Dump(l);
    return Int(Item(l, "alice"), "delivered_seq") == 2;
  })) << "b1 reached alice (online): expected delivered_seq 2 in bob's list: "
      << seen;

  // dave comes back: the push reaches him and moves his delivered mark.
  auto dave = Open(port(), "dave");
  ASSERT_TRUE(dave);
  auto pushed = dave->Await(LiveSendWithId(Str(a2, "id")), "the push of a2");
  EXPECT_TRUE(pushed.ok()) << pushed.status();
  EXPECT_TRUE(Eventually([&] {
    json::object l = Answer(*alice, {{"action", "conversations"}});
    seen = Dump(l);
    return Int(Item(l, "dave"), "delivered_seq") == 1;
  })) << "expected dave's delivered_seq 1 after the push: "
      << seen;

  // Pages of 2.
  json::object first = Answer(*alice, {{"action", "conversations"}, {"limit", 2}});
  EXPECT_EQ(Withs(first), (std::vector<std::string>{"carol", "bob"})) << Dump(first);
  ASSERT_NE(Str(first, "next"), "<missing>") << Dump(first);
  json::object second =
      Answer(*alice, {{"action", "conversations"}, {"limit", 2}, {"after", Str(first, "next")}});
  EXPECT_EQ(Withs(second), std::vector<std::string>{"dave"}) << Dump(second);
  EXPECT_FALSE(second.contains("next")) << Dump(second);
  json::object exact = Answer(*alice, {{"action", "conversations"}, {"limit", 3}});
  EXPECT_EQ(Objects(exact, "items").size(), 3u) << Dump(exact);
  EXPECT_FALSE(exact.contains("next")) << "no further item: " << Dump(exact);
}

// 5. §6.6 and §6.3: receipts go to the version 2 connections of both users,
// only when a mark moved; version 1 connections never get receipts nor
// copies of their user's own messages.
TEST_P(DurableTest, ReadMarksAndReceiptsReachOnlyVersion2Connections) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  auto a1 = Open(port(), "alice");  // v2, the sender
  auto a2 = Open(port(), "alice");  // v2, another device
  auto a0 = Open(port(), "alice");  // v1
  auto b1 = Open(port(), "bob");    // v2
  auto b0 = Open(port(), "bob");    // v1
  ASSERT_TRUE(a1 && a2 && a0 && b1 && b0);
  ASSERT_NO_FATAL_FAILURE(MakeOfflineUser("carol", *a0));
  for (Peer* p : {a1.get(), a2.get(), b1.get()}) BecomeV2(*p);

  std::vector<json::object> sent;
  for (int i = 1; i <= 2; ++i) {
    sent.push_back(SendOk(*a1, "bob", absl::StrCat("r", i)));
    const json::object& s = sent.back();
    EXPECT_EQ(Int(s, "delivered"), 2) << "bob's two connections: " << Dump(s);
    for (Peer* p : {b1.get(), b0.get()}) {
      auto got = p->Await(LiveSendWithId(Str(s, "id")), "the live message");
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(Str(*got, "sent_by"), "alice");
    }
    // alice's other version 2 device gets a copy with alice's useq.
    auto copy = a2->Await(LiveSendWithId(Str(s, "id")), "a copy of alice's own message");
    ASSERT_TRUE(copy.ok()) << copy.status();
    EXPECT_EQ(Str(*copy, "sent_by"), "alice") << Dump(*copy);
    EXPECT_EQ(Int(*copy, "useq"), Int(s, "useq")) << "alice's own useq: " << Dump(*copy);
    // It reached bob: a delivered receipt to every v2 connection of both.
    for (Peer* p : {a1.get(), a2.get(), b1.get()}) {
      auto receipt = p->Await(ReceiptFor("bob", "delivered_seq", i),
                              absl::StrCat("receipt bob delivered_seq ", i));
      ASSERT_TRUE(receipt.ok()) << receipt.status();
      EXPECT_EQ(Str(*receipt, "conversation"), Str(s, "conversation")) << Dump(*receipt);
      EXPECT_GE(Int(*receipt, "ts"), 1) << Dump(*receipt);
    }
  }

  // bob reads up to 1: receipts to both users' v2 connections, the reader's too.
  json::object read = Answer(*b1, {{"action", "read"}, {"with", "alice"}, {"seq", 1}});
  EXPECT_TRUE(IsAction(read, "read")) << Dump(read);
  EXPECT_EQ(Int(read, "seq"), 1) << Dump(read);
  for (Peer* p : {a1.get(), a2.get(), b1.get()}) {
    auto receipt = p->Await(ReceiptFor("bob", "read_seq", 1), "receipt bob read_seq 1");
    ASSERT_TRUE(receipt.ok()) << receipt.status();
  }
  // No movement, no receipt: the same seq, then a lower one (answered with the
  // mark as it stands).
  read = Answer(*b1, {{"action", "read"}, {"with", "alice"}, {"seq", 1}});
  EXPECT_EQ(Int(read, "seq"), 1) << Dump(read);
  read = Answer(*b0, {{"action", "read"}, {"with", "alice"}, {"seq", 0}});
  EXPECT_EQ(Int(read, "seq"), 1) << "lower than the mark: no change: " << Dump(read);
  // Beyond the last: taken as the last (2). From a v1 connection: bob's v2
  // connection and alice's get the receipt, the v1 reader does not.
  read = Answer(*b0, {{"action", "read"}, {"with", "alice"}, {"seq", 99}});
  EXPECT_EQ(Int(read, "seq"), 2) << "clamped to the last seq: " << Dump(read);
  for (Peer* p : {a1.get(), a2.get(), b1.get()}) {
    auto receipt = p->Await(ReceiptFor("bob", "read_seq", 2), "receipt bob read_seq 2");
    ASSERT_TRUE(receipt.ok()) << receipt.status();
  }
  read = Answer(*b1, {{"action", "read"}, {"with", "alice"}, {"seq", 2}});
  EXPECT_EQ(Int(read, "seq"), 2) << Dump(read);
  // A third message: the next receipt alice sees is its delivery, not a
  // repeat of a read mark that did not move.
  sent.push_back(SendOk(*a1, "bob", "r3"));
  auto next =
      a1->Await([](const json::object& o) { return IsAction(o, "receipt"); }, "the next receipt");
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_TRUE(ReceiptFor("bob", "delivered_seq", 3)(*next))
      << "expected bob delivered_seq 3 (no receipt for marks that did not move), got "
      << Dump(*next);

  // carol is offline: no delivered receipt until she connects (a v1 client
  // that only gets the push).
  json::object to_carol = SendOk(*a1, "carol", "while away");
  EXPECT_EQ(Int(to_carol, "delivered"), 0) << Dump(to_carol);
  auto before = a1->Flush();
  ASSERT_TRUE(before.ok()) << before.status();
  for (const auto& r : Receipts(*before)) {
    EXPECT_NE(Str(r, "user"), "carol") << "carol has not received anything yet: " << Dump(r);
  }
  auto carol = Open(port(), "carol");
  ASSERT_TRUE(carol);
  ASSERT_TRUE(carol->Await(LiveSendWithId(Str(to_carol, "id")), "the push").ok());
  auto delivered = a1->Await(ReceiptFor("carol", "delivered_seq", 1), "receipt carol delivered 1");
  EXPECT_TRUE(delivered.ok()) << delivered.status();
  EXPECT_EQ(Str(*delivered, "conversation"), Str(to_carol, "conversation")) << Dump(*delivered);

  // Every receipt a v2 connection got moved a mark forward: none repeats.
  auto rest = a2->Flush();
  ASSERT_TRUE(rest.ok()) << rest.status();
  std::map<std::string, int64_t> highest;
  for (const auto& r : Receipts(*rest)) {
    for (const char* mark : {"read_seq", "delivered_seq"}) {
      if (!r.contains(mark)) continue;
      const std::string k = absl::StrCat(Str(r, "user"), "/", mark);
      EXPECT_GT(Int(r, mark), highest[k]) << "a receipt for a mark that did not move: " << Dump(r);
      highest[k] = Int(r, mark);
    }
  }

  // Version 1 connections: no receipt, no copy of their own messages.
  for (Peer* p : {a0.get(), b0.get(), carol.get()}) {
    auto frames = p->Flush();
    ASSERT_TRUE(frames.ok()) << frames.status();
    for (const auto& f : *frames) {
      EXPECT_FALSE(IsAction(f, "receipt")) << p->user() << " (v1) got a receipt: " << Dump(f);
      EXPECT_FALSE(IsAction(f, "send") && Str(f, "sent_by") == p->user())
          << p->user() << " (v1) got a copy of its own message: " << Dump(f);
    }
  }
  // The sending connection gets `sent`, never a copy.
  auto own = a1->Flush();
  ASSERT_TRUE(own.ok());
  for (const auto& f : *own) {
    EXPECT_FALSE(IsAction(f, "send")) << "the sender got a copy: " << Dump(f);
  }
}

// 6. §6.2: a key makes a send happen once, whatever is retried.
TEST_P(DurableTest, IdempotencyKeyStoresAndDeliversOnce) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  auto alice = Open(port(), "alice");
  auto alice2 = Open(port(), "alice");
  auto bob = Open(port(), "bob");
  auto carol = Open(port(), "carol");
  ASSERT_TRUE(alice && alice2 && bob && carol);

  json::object first = SendOk(*alice, "bob", "once", "key-1");
  EXPECT_EQ(Int(first, "delivered"), 1) << Dump(first);
  EXPECT_FALSE(True(first, "duplicate")) << Dump(first);
  ASSERT_TRUE(bob->Await(LiveSendWithId(Str(first, "id")), "the first message").ok());

  // Same key, other text, even another recipient: the first one's answer.
  for (json::object retry :
       {SendFrame("bob", "once again", "key-1"), SendFrame("carol", "elsewhere", "key-1")}) {
    json::object dup = Answer(*alice, retry);
    EXPECT_TRUE(IsAction(dup, "sent")) << Dump(dup);
    EXPECT_TRUE(True(dup, "duplicate")) << Dump(dup);
    EXPECT_EQ(Int(dup, "delivered"), 0) << Dump(dup);
    for (const char* key : {"id", "conversation"}) EXPECT_EQ(Str(dup, key), Str(first, key)) << key;
    for (const char* key : {"seq", "useq", "ts"}) EXPECT_EQ(Int(dup, key), Int(first, key)) << key;
  }
  // Through another connection of the same user: still the same.
  json::object other = Answer(*alice2, SendFrame("bob", "from the phone", "key-1"));
  EXPECT_TRUE(True(other, "duplicate")) << Dump(other);
  EXPECT_EQ(Str(other, "id"), Str(first, "id")) << Dump(other);
  // Keys are per user: bob's key-1 is his own.
  json::object bobs = SendOk(*bob, "alice", "bob's", "key-1");
  EXPECT_FALSE(True(bobs, "duplicate")) << Dump(bobs);
  EXPECT_NE(Str(bobs, "id"), Str(first, "id"));
  // A refused send records no key.
  json::object refused = Answer(*alice, SendFrame("nobody-ever", "x", "key-2"));
  EXPECT_EQ(Str(refused, "code"), "unknown_user") << Dump(refused);
  json::object after_refusal = SendOk(*alice, "bob", "second", "key-2");
  EXPECT_FALSE(True(after_refusal, "duplicate")) << Dump(after_refusal);
  EXPECT_EQ(Int(after_refusal, "seq"), 3) << Dump(after_refusal);

  // Two sends with one key at once through two connections: one is stored.
  const json::object race = SendFrame("bob", "race", "key-3");
  json::object r1 = race, r2 = race;
  r1["request_id"] = "race-1";
  r2["request_id"] = "race-2";
  ASSERT_TRUE(alice->Send(r1).ok());
  ASSERT_TRUE(alice2->Send(r2).ok());
  auto ans1 = alice->Await([](const json::object& o) { return Str(o, "request_id") == "race-1"; },
                           "answer to race-1");
  auto ans2 = alice2->Await([](const json::object& o) { return Str(o, "request_id") == "race-2"; },
                            "answer to race-2");
  ASSERT_TRUE(ans1.ok() && ans2.ok()) << ans1.status() << " / " << ans2.status();
  EXPECT_TRUE(IsAction(*ans1, "sent") && IsAction(*ans2, "sent"))
      << Dump(*ans1) << " / " << Dump(*ans2);
  EXPECT_EQ(Str(*ans1, "id"), Str(*ans2, "id")) << Dump(*ans1) << " / " << Dump(*ans2);
  EXPECT_EQ(True(*ans1, "duplicate") + True(*ans2, "duplicate"), 1)
      << "exactly one of them is the duplicate: " << Dump(*ans1) << " / " << Dump(*ans2);

  // bob got each message once: the live frames up to a marker, and the store.
  json::object marker = SendOk(*alice, "bob", "marker");
  ASSERT_TRUE(bob->Await(LiveSendWithId(Str(marker, "id")), "the marker").ok());
  std::multiset<std::string> live;
  for (const auto& f : bob->Pending()) {
    if (IsAction(f, "send")) live.insert(Str(f, "id"));
  }
  EXPECT_EQ(live.count(Str(*ans1, "id")), 1u)
      << "the raced message, live: " << Dump(bob->Pending());
  EXPECT_EQ(live.count(Str(first, "id")), 0u) << "delivered again: " << Dump(bob->Pending());
  const auto history = HistoryAll(*bob, "alice");
  std::vector<std::string> texts;
  for (const auto& m : history) texts.push_back(Str(m, "message"));
  EXPECT_EQ(texts, (std::vector<std::string>{"once", "bob's", "second", "race", "marker"}))
      << Dump(history);
  EXPECT_TRUE(HistoryAll(*carol, "alice").empty()) << "the key-1 retry to carol was stored";
}

// 7. §6.2: a send right after a brand-new user's hello succeeds and reaches
// that connection live (the relay before the store answered unknown_user about once in 300).
TEST_P(DurableTest, SendRightAfterANewUsersHelloAlwaysArrives) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  constexpr int kLanes = 3, kPerLane = 100;
  std::mutex mu;
  std::vector<std::string> failures;
  auto lane = [&](int l) {
    auto sender = Open(port(), absl::StrCat("sender", l));
    if (!sender) return;
    for (int i = 0; i < kPerLane; ++i) {
      const std::string name = absl::StrCat("fresh-", l, "-", i);
      auto fresh = Open(port(), name);
      if (!fresh) return;
      auto sent = sender->Call(SendFrame(name, "welcome"));
      std::string failure;
      if (!sent.ok()) {
        failure = sent.status().ToString();
      } else if (!IsAction(*sent, "sent")) {
        failure = absl::StrCat("send right after hello: ", Dump(*sent));
      } else {
        auto got = fresh->Await(LiveSendWithId(Str(*sent, "id")), "the message sent after hello");
        if (!got.ok()) {
          failure = absl::StrCat(Dump(*sent), " never arrived: ", got.status().ToString());
        } else if (Int(*sent, "delivered") != 1) {
          failure = absl::StrCat("arrived but delivered != 1: ", Dump(*sent));
        }
      }
      if (!failure.empty()) {
        std::lock_guard<std::mutex> lock(mu);
        failures.push_back(absl::StrCat(name, ": ", failure));
      }
    }
  };
  std::vector<std::thread> threads;
  for (int l = 0; l < kLanes; ++l) threads.emplace_back(lane, l);
  for (auto& t : threads) t.join();
  EXPECT_TRUE(failures.empty()) << failures.size() << " of " << kLanes * kPerLane
                                << " failed, e.g.:\n  "
                                << absl::StrJoin(
                                       failures.begin(),
                                       failures.begin() + std::min<size_t>(5, failures.size()),
                                       "\n  ");
}

// 8. §6.3 ranges and §6.7: every new action refuses missing or ill-typed
// fields with bad_request, and the connection stays usable. A refused sync
// does not make a connection version 2.
TEST_P(DurableTest, IllFormedRequestsAreBadRequestsAndTheConnectionStays) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  auto alice = Open(port(), "alice");
  auto phone = Open(port(), "alice");
  auto bob = Open(port(), "bob");
  ASSERT_TRUE(alice && phone && bob);
  SendOk(*phone, "bob", "hi");
  const std::string long_key(65, 'k');
  const std::vector<std::string> frames = {
      R"({"action":"sync","since":-1})",
      R"({"action":"sync","since":"3"})",
      R"({"action":"sync","since":1.5})",
      R"({"action":"sync","since":true})",
      R"({"action":"sync","limit":0})",
      R"({"action":"sync","limit":-5})",
      R"({"action":"sync","limit":"x"})",
      R"({"action":"sync","limit":1.5})",
      R"({"action":"sync","epoch":5})",
      R"({"action":"history"})",
      R"({"action":"history","with":5})",
      R"({"action":"history","with":["bob"]})",
      R"({"action":"history","with":"bob","before":-1})",
      R"({"action":"history","with":"bob","before":"9"})",
      R"({"action":"history","with":"bob","limit":0})",
      R"({"action":"history","with":"bob","limit":1.5})",
      R"({"action":"read","seq":1})",
      R"({"action":"read","with":"bob"})",
      R"({"action":"read","with":"bob","seq":-1})",
      R"({"action":"read","with":"bob","seq":"1"})",
      R"({"action":"read","with":"bob","seq":1.5})",
      R"({"action":"read","with":7,"seq":1})",
      R"({"action":"conversations","limit":1.5})",
      R"({"action":"conversations","limit":0})",
      R"({"action":"conversations","limit":"10"})",
      R"({"action":"conversations","after":5})",
      R"({"action":"send","send_to":"bob","message":"x","idempotency_key":""})",
      R"({"action":"send","send_to":"bob","message":"x","idempotency_key":7})",
      absl::StrCat(R"({"action":"send","send_to":"bob","message":"x","idempotency_key":")",
                   long_key, R"("})"),
  };
  for (const std::string& text : frames) {
    json::object answer = Answer(*alice, Parse(text));
    EXPECT_TRUE(IsAction(answer, "error")) << text << " -> " << Dump(answer);
    EXPECT_EQ(Str(answer, "code"), "bad_request") << text << " -> " << Dump(answer);
    EXPECT_FALSE(True(answer, "temporary")) << text << " -> " << Dump(answer);
  }
  // Nothing was stored by the refused sends.
  const auto stream = SyncAll(*bob);
  EXPECT_EQ(stream.size(), 1u) << Dump(stream);

  // Still usable, every action.
  for (const char* action : {"sync", "conversations", "ping", "users"}) {
    json::object answer = Answer(*alice, {{"action", action}});
    EXPECT_FALSE(IsAction(answer, "error")) << action << " -> " << Dump(answer);
  }
  EXPECT_TRUE(IsAction(Answer(*alice, {{"action", "history"}, {"with", "bob"}}), "history"));
  EXPECT_TRUE(IsAction(Answer(*alice, {{"action", "read"}, {"with", "bob"}, {"seq", 0}}), "read"));
  SendOk(*alice, "bob", "still here");

  // phone only sent refused syncs: still version 1, so no copy of alice's
  // own message sent from elsewhere.
  for (const char* text : {R"({"action":"sync","since":-1})", R"({"action":"sync","limit":0})"}) {
    EXPECT_EQ(Str(Answer(*phone, Parse(text)), "code"), "bad_request");
  }
  SendOk(*alice, "bob", "not for the phone");
  auto frames_on_phone = phone->Flush();
  ASSERT_TRUE(frames_on_phone.ok()) << frames_on_phone.status();
  for (const auto& f : *frames_on_phone) {
    EXPECT_FALSE(IsAction(f, "send")) << "a refused sync made the phone v2: " << Dump(f);
  }
}

struct Ack {
  std::string id;
  int64_t seq = 0, useq = 0;
};

// One sender of the flood: `n` messages to `to`, each with its own key, at
// most `window` unanswered; every temporary error is retried with the same
// key until acknowledged (or the deadline). Problems are collected, not
// asserted (this runs on its own thread).
struct FloodSender {
  std::unique_ptr<Peer> peer;
  std::vector<std::optional<Ack>> acks;
  std::vector<std::string> problems;
  int retries = 0;
  int duplicates = 0;  // acknowledged as duplicate: an earlier attempt was stored

  void Run(const std::string& to, int n, std::atomic<int>& total_acked,
           Clock::time_point deadline) {
    constexpr size_t kWindow = 16;
    acks.assign(n, std::nullopt);
    std::deque<int> ready;
    for (int j = 0; j < n; ++j) ready.push_back(j);
    std::vector<std::pair<Clock::time_point, int>> later;
    std::map<std::string, std::pair<int, Clock::time_point>> inflight;
    int acked = 0, attempt = 0;
    const std::string user = peer->user();
    while (acked < n) {
      const auto now = Clock::now();
      if (now > deadline) {
        problems.push_back(absl::StrCat(user, ": gave up with ", n - acked, " unacknowledged"));
        return;
      }
      for (auto it = later.begin(); it != later.end();) {
        if (it->first <= now) {
          ready.push_back(it->second);
          it = later.erase(it);
        } else {
          ++it;
        }
      }
      while (inflight.size() < kWindow && !ready.empty()) {
        const int j = ready.front();
        ready.pop_front();
        const std::string rid = absl::StrCat(user, "/", j, "/", ++attempt);
        json::object frame =
            SendFrame(to, absl::StrCat(user, " #", j), absl::StrCat(user, "-key-", j));
        frame["request_id"] = rid;
        if (absl::Status s = peer->Send(frame); !s.ok()) {
          problems.push_back(absl::StrCat(user, ": write failed: ", s.ToString()));
          return;
        }
        inflight[rid] = {j, now};
      }
      auto answer = peer->Await(
          [&](const json::object& o) { return inflight.count(Str(o, "request_id")) > 0; },
          "an answer", 100ms);
      if (!answer.ok()) {
        if (answer.status().code() != absl::StatusCode::kDeadlineExceeded) {
          problems.push_back(absl::StrCat(user, ": ", answer.status().ToString()));
          return;
        }
        for (auto it = inflight.begin(); it != inflight.end();) {
          if (Clock::now() - it->second.second > 15s) {
            problems.push_back(absl::StrCat(user, ": no answer to ", it->first, " in 15 s"));
            ready.push_back(it->second.first);
            it = inflight.erase(it);
          } else {
            ++it;
          }
        }
        continue;
      }
      const std::string rid = Str(*answer, "request_id");
      const int j = inflight[rid].first;
      inflight.erase(rid);
      if (IsAction(*answer, "sent")) {
        if (acks[j]) {
          problems.push_back(absl::StrCat(user, ": key ", j, " acknowledged twice"));
          continue;
        }
        acks[j] = Ack{Str(*answer, "id"), Int(*answer, "seq"), Int(*answer, "useq")};
        if (True(*answer, "duplicate")) ++duplicates;
        ++acked;
        ++total_acked;
      } else if (IsAction(*answer, "error") && True(*answer, "temporary")) {
        ++retries;
        later.emplace_back(Clock::now() + 50ms, j);
      } else {
        problems.push_back(absl::StrCat(user, ": unexpected answer ", Dump(*answer)));
        ++retries;
        later.emplace_back(Clock::now() + 50ms, j);
      }
    }
  }
};

// 9. §6.1/§6.2: SIGKILL message-service in the middle of a flood of keyed
// sends; senders retry what was not acknowledged with the same key. Every
// acknowledged message is then stored exactly once, without gaps, and the
// online recipient got every one live.
TEST_P(DurableTest, KilledMessageServiceDuringAFloodLosesAndDuplicatesNothing) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  constexpr int kSenders = 4, kPerSender = 250, kTotal = kSenders * kPerSender;
  auto recipient = Open(port(), "rita");
  ASSERT_TRUE(recipient);
  std::vector<FloodSender> senders(kSenders);
  for (int i = 0; i < kSenders; ++i) {
    senders[i].peer = Open(port(), absl::StrCat("flooder", i));
    ASSERT_TRUE(senders[i].peer);
  }
  std::atomic<int> total_acked{0};
  const auto deadline = Clock::now() + 30s;
  std::vector<std::thread> threads;
  for (auto& s : senders) {
    threads.emplace_back(
        [&, sender = &s] { sender->Run("rita", kPerSender, total_acked, deadline); });
  }
  // Kill once a fifth is acknowledged.
  const bool started = Eventually([&] { return total_acked >= kTotal / 5; }, 15s);
  const int acked_at_kill = total_acked;
  auto killed = cluster_->Stop(cluster_->message_service(), SIGKILL);
  absl::Status restarted = cluster_->StartMessageService();
  for (auto& t : threads) t.join();
  ASSERT_TRUE(started) << "the flood never got going";
  ASSERT_TRUE(killed.ok()) << killed.status();
  ASSERT_TRUE(restarted.ok()) << restarted;
  EXPECT_LT(acked_at_kill, kTotal) << "the flood ended before the kill: nothing was tested";
  int retries = 0, duplicates = 0;
  for (auto& s : senders) {
    EXPECT_TRUE(s.problems.empty()) << absl::StrJoin(s.problems, "\n");
    retries += s.retries;
    duplicates += s.duplicates;
  }
  ASSERT_EQ(total_acked, kTotal);
  std::cerr << "acknowledged " << acked_at_kill << " before the kill, " << retries
            << " retries after temporary errors, " << duplicates
            << " answered as duplicates (stored, answer lost)\n";

  // Each sender's conversation and stream: every key once, gapless.
  std::set<std::string> all_ids;
  for (auto& s : senders) {
    const std::string user = s.peer->user();
    std::map<std::string, Ack> by_text;
    for (int j = 0; j < kPerSender; ++j) by_text[absl::StrCat(user, " #", j)] = *s.acks[j];
    const auto history = HistoryAll(*s.peer, "rita", 100);
    ASSERT_EQ(history.size(), static_cast<size_t>(kPerSender))
        << user << ": expected each of " << kPerSender << " keys stored once";
    std::set<std::string> texts;
    for (size_t k = 0; k < history.size(); ++k) {
      const json::object& m = history[k];
      EXPECT_EQ(Int(m, "seq"), static_cast<int64_t>(k) + 1) << user << ": seq gap at " << Dump(m);
      EXPECT_TRUE(texts.insert(Str(m, "message")).second) << user << ": stored twice: " << Dump(m);
      auto ack = by_text.find(Str(m, "message"));
      ASSERT_NE(ack, by_text.end()) << user << ": never sent: " << Dump(m);
      EXPECT_EQ(Str(m, "id"), ack->second.id) << "acknowledged with another id: " << Dump(m);
      EXPECT_EQ(Int(m, "seq"), ack->second.seq) << Dump(m);
      EXPECT_EQ(Int(m, "useq"), ack->second.useq) << Dump(m);
      all_ids.insert(Str(m, "id"));
    }
    const auto stream = SyncAll(*s.peer, 0, 100);
    EXPECT_EQ(stream.size(), static_cast<size_t>(kPerSender)) << user << "'s stream";
    std::set<std::string> ids;
    for (const auto& m : stream) EXPECT_TRUE(ids.insert(Str(m, "id")).second) << Dump(m);
    for (const auto& [text, ack] : by_text) EXPECT_EQ(ids.count(ack.id), 1u) << text;
  }
  ASSERT_EQ(all_ids.size(), static_cast<size_t>(kTotal));
  const auto rita_stream = SyncAll(*recipient, 0, 500);
  EXPECT_EQ(rita_stream.size(), static_cast<size_t>(kTotal)) << "rita's stream (gapless checked)";
  std::set<std::string> rita_ids;
  for (const auto& m : rita_stream) rita_ids.insert(Str(m, "id"));
  EXPECT_EQ(rita_ids, all_ids);

  // rita stayed online (version 1: she never syncs... until the checks
  // above): every message reached her live, at least once.
  std::set<std::string> live;
  std::vector<json::object> pending = recipient->Pending();
  for (const auto& f : pending) {
    if (IsAction(f, "send")) live.insert(Str(f, "id"));
  }
  const auto until = Clock::now() + 10s;
  while (live.size() < all_ids.size() && Clock::now() < until) {
    auto f = recipient->Await([](const json::object& o) { return IsAction(o, "send"); },
                              "a live message", 1s);
    if (f.ok()) live.insert(Str(*f, "id"));
  }
  std::vector<std::string> missing;
  for (const auto& id : all_ids) {
    if (!live.count(id)) missing.push_back(id);
  }
  EXPECT_TRUE(missing.empty()) << missing.size()
                               << " acknowledged messages never reached rita live, e.g. "
                               << missing.front();
}

// 10. §6.2: an online version 1 recipient gets what was committed while its
// path was broken, live, without reconnecting.
TEST_P(DurableTest, OnlineRecipientGetsMessagesAfterAMessageServiceCrashWithoutReconnecting) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(/*edges=*/2));
  auto bob = Open(port(0), "bob");      // the recipient, on edge 1
  auto alice = Open(port(1), "alice");  // the sender, on edge 2
  ASSERT_TRUE(alice && bob);
  json::object before = SendOk(*alice, "bob", "before the crash");
  ASSERT_TRUE(bob->Await(LiveSendWithId(Str(before, "id")), "the first message").ok());

  auto killed = cluster_->Stop(cluster_->message_service(), SIGKILL);
  ASSERT_TRUE(killed.ok()) << killed.status();
  ASSERT_TRUE(cluster_->StartMessageService().ok());
  // Send as soon as alice's path is back, which may be before bob's is.
  std::vector<json::object> sent;
  for (int i = 0; i < 5; ++i) {
    json::object answer;
    const std::string key = absl::StrCat("after-", i);
    const bool ok = Eventually(
        [&] {
          answer = Answer(*alice, SendFrame("bob", key, key));
          return IsAction(answer, "sent");
        },
        10s);
    ASSERT_TRUE(ok) << "never acknowledged after the restart: " << Dump(answer);
    sent.push_back(answer);
  }
  for (const auto& s : sent) {
    auto got = bob->Await(LiveSendWithId(Str(s, "id")), "a message sent after the restart", 5s);
    EXPECT_TRUE(got.ok()) << got.status();
  }
}

// 11. users ever seen outlive a SIGKILL of connection-service.
TEST_P(DurableTest, UsersSurviveAConnectionServiceCrash) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  auto alice = Open(port(), "alice");
  auto bob = Open(port(), "bob");
  ASSERT_TRUE(alice && bob);
  for (const char* gone : {"carol", "dave", "erin"})
    ASSERT_NO_FATAL_FAILURE(MakeOfflineUser(gone, *alice));

  auto killed = cluster_->Stop(cluster_->connection_service(), SIGKILL);
  ASSERT_TRUE(killed.ok()) << killed.status();
  ASSERT_TRUE(cluster_->StartConnectionService().ok());
  auto frank = OpenEventually(port(), "frank");
  ASSERT_TRUE(frank);
  std::string last;
  const std::map<std::string, bool> expected = {{"alice", true}, {"bob", true},   {"carol", false},
                                                {"dave", false}, {"erin", false}, {"frank", true}};
  EXPECT_TRUE(Eventually([&] {
    auto users = frank->Call({{"action", "users"}}, 2s);
    if (!users.ok()) return false;
    last = Dump(*users);
    std::map<std::string, bool> seen;
    for (const auto& c : Objects(*users, "contacts")) seen[Str(c, "name")] = True(c, "status");
    return seen == expected;
  })) << "expected everyone ever seen (alice, bob, frank online); last: "
      << last;
  // And a send to a user only the durable table knows is stored, not refused.
  json::object to_carol = SendOk(*frank, "carol", "are you there?");
  EXPECT_EQ(Int(to_carol, "delivered"), 0) << Dump(to_carol);
}

// 12. Everything killed and restarted on the same data: nothing lost.
TEST_P(DurableTest, RestartOfEverythingKeepsHistoryConversationsAndUsers) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  std::string epoch;
  std::vector<json::object> history_before, conversations_before;
  json::object to_carol;
  {
    auto alice = Open(port(), "alice");
    auto bob = Open(port(), "bob");
    ASSERT_TRUE(alice && bob);
    epoch = Str(alice->hello(), "epoch");
    ASSERT_NO_FATAL_FAILURE(MakeOfflineUser("carol", *alice));
    for (int i = 1; i <= 4; ++i) {
      SendOk(i % 2 ? *alice : *bob, i % 2 ? "bob" : "alice", absl::StrCat("kept ", i));
    }
    to_carol = SendOk(*alice, "carol", "waiting for you");
    ASSERT_TRUE(
        IsAction(Answer(*bob, {{"action", "read"}, {"with", "alice"}, {"seq", 3}}), "read"));
    std::string seen;
    ASSERT_TRUE(Eventually([&] {
      json::object l = Answer(*alice, {{"action", "conversations"}});
      seen = Dump(l);
      return Int(Item(l, "bob"), "delivered_seq") == 3 && Int(Item(l, "bob"), "peer_read_seq") == 3;
    })) << "marks before the restart: "
        << seen;
    history_before = HistoryAll(*alice, "bob");
    ASSERT_EQ(history_before.size(), 4u);
    conversations_before = Objects(Answer(*alice, {{"action", "conversations"}}), "items");
    ASSERT_EQ(conversations_before.size(), 2u);

    for (ChildProcess* p :
         {&cluster_->edge(0), &cluster_->message_service(), &cluster_->connection_service()}) {
      auto killed = cluster_->Stop(*p, SIGKILL);
      ASSERT_TRUE(killed.ok()) << killed.status();
    }
  }
  absl::Status s = cluster_->Start();
  ASSERT_TRUE(s.ok()) << "restart: " << s;

  auto alice = OpenWithEpoch(port(), "alice");
  ASSERT_TRUE(alice);
  EXPECT_EQ(Str(alice->hello(), "epoch"), epoch) << "same database, same epoch";
  const auto history_after = HistoryAll(*alice, "bob");
  ASSERT_EQ(history_after.size(), history_before.size()) << Dump(history_after);
  for (size_t i = 0; i < history_after.size(); ++i) {
    EXPECT_EQ(Dump(history_after[i]), Dump(history_before[i]));
  }
  const auto conversations_after = Objects(Answer(*alice, {{"action", "conversations"}}), "items");
  EXPECT_EQ(Dump(conversations_after), Dump(conversations_before));
  json::object users = Answer(*alice, {{"action", "users"}});
  std::vector<std::string> names;
  for (const auto& c : Objects(users, "contacts")) names.push_back(Str(c, "name"));
  EXPECT_EQ(names, (std::vector<std::string>{"alice", "bob", "carol"})) << Dump(users);
  // Numbering goes on; the message stored for carol is pushed when she comes.
  json::object next = SendOk(*alice, "bob", "after the restart");
  EXPECT_EQ(Int(next, "seq"), 5) << Dump(next);
  auto carol = Open(port(), "carol");
  ASSERT_TRUE(carol);
  auto pushed = carol->Next();
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  EXPECT_EQ(Str(*pushed, "id"), Str(to_carol, "id")) << Dump(*pushed);
}

// Sends `n` messages of `bytes` bytes each to `to`, at most 32 unanswered;
// expects every one acknowledged and returns the answers in order.
std::vector<json::object> SendMany(Peer& from, const std::string& to, int n, size_t bytes,
                                   const std::string& tag) {
  std::vector<json::object> answers(n);
  std::map<std::string, int> inflight;
  int next = 0, answered = 0;
  while (answered < n) {
    while (next < n && inflight.size() < 32) {
      std::string text = absl::StrCat(tag, " ", next, " ");
      text.resize(std::max(bytes, text.size()), 'x');
      json::object frame = SendFrame(to, text);
      const std::string rid = absl::StrCat(tag, "-", next);
      frame["request_id"] = rid;
      if (absl::Status s = from.Send(frame); !s.ok()) {
        ADD_FAILURE() << s;
        return answers;
      }
      inflight[rid] = next++;
    }
    auto answer =
        from.Await([&](const json::object& o) { return inflight.count(Str(o, "request_id")) > 0; },
                   "an answer to a send", 10s);
    if (!answer.ok()) {
      ADD_FAILURE() << answer.status();
      return answers;
    }
    const auto it = inflight.find(Str(*answer, "request_id"));
    EXPECT_TRUE(IsAction(*answer, "sent")) << Dump(*answer);
    answers[it->second] = *answer;
    inflight.erase(it);
    ++answered;
  }
  return answers;
}

// 13. §6.2: the push after hello delivers a backlog far larger than the
// connection's outbound queue, all of it, oldest first, without a 4008; a
// live message sent meanwhile comes after it. The queue is 64 KiB here (as in
// the chat suite): smaller than a page of pushed messages can be.
TEST_P(DurableTest, BacklogLargerThanTheOutboundQueueIsPushedWholeThenLiveFrames) {
  options_.edge_flags.push_back("--max_outbound_bytes=65536");
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  auto alice = Open(port(), "alice");
  ASSERT_TRUE(alice);
  ASSERT_NO_FATAL_FAILURE(MakeOfflineUser("bob", *alice));
  constexpr int kBacklog = 1500;  // ~1 MB of frames for a 64 KiB queue
  const auto sent = SendMany(*alice, "bob", kBacklog, 600, "backlog");
  ASSERT_FALSE(HasFailure());

  auto bob = Open(port(), "bob");
  ASSERT_TRUE(bob);
  json::object live = SendOk(*alice, "bob", "live while pushing");
  EXPECT_EQ(Int(live, "seq"), kBacklog + 1) << Dump(live);
  for (int i = 0; i <= kBacklog; ++i) {
    auto frame = bob->Next(10s);
    ASSERT_TRUE(frame.ok()) << "frame " << i + 1 << " of " << kBacklog + 1 << ": "
                            << frame.status();
    ASSERT_TRUE(IsAction(*frame, "send")) << Dump(*frame);
    ASSERT_EQ(Int(*frame, "seq"), i + 1)
        << "pushed frames in seq order, then the live one: " << Dump(*frame);
    ASSERT_EQ(Str(*frame, "id"), Str(i < kBacklog ? sent[i] : live, "id"));
  }
  // Still open and usable.
  auto pong = bob->Call({{"action", "ping"}});
  EXPECT_TRUE(pong.ok() && IsAction(*pong, "pong")) << pong.status();
}

// 14. §6.2: a message to yourself is one message with one useq, delivered to
// every connection of yours, the sending one included; its conversation has
// no unread, every mark at the last seq, and no receipts.
TEST_P(DurableTest, MessageToYourselfIsOneMessageWithoutReceipts) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  auto a1 = Open(port(), "alice");  // v2, the sender
  auto a2 = Open(port(), "alice");  // v1
  ASSERT_TRUE(a1 && a2);
  BecomeV2(*a1);
  json::object sent = SendOk(*a1, "alice", "note to self");
  EXPECT_EQ(Int(sent, "delivered"), 2)
      << "both connections, the sending one included: " << Dump(sent);
  EXPECT_EQ(Int(sent, "seq"), 1) << Dump(sent);
  for (Peer* p : {a1.get(), a2.get()}) {
    auto got = p->Await(LiveSendWithId(Str(sent, "id")), "the message to self");
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(Int(*got, "useq"), Int(sent, "useq")) << "one message, one useq: " << Dump(*got);
  }
  const auto stream = SyncAll(*a1);
  ASSERT_EQ(stream.size(), 1u) << "stored once: " << Dump(stream);
  EXPECT_EQ(Str(stream.front(), "id"), Str(sent, "id"));
  EXPECT_EQ(HistoryAll(*a1, "alice").size(), 1u);

  std::string seen;
  EXPECT_TRUE(Eventually([&] {
    json::object list = Answer(*a1, {{"action", "conversations"}});
    seen = Dump(list);
    const json::object item = Item(list, "alice");
    return Objects(list, "items").size() == 1 && Int(item, "unread") == 0 &&
           Int(item, "read_seq") == 1 && Int(item, "peer_read_seq") == 1 &&
           Int(item, "delivered_seq") == 1;
  })) << "expected one item, unread 0 and every mark at seq 1: "
      << seen;
  json::object read = Answer(*a1, {{"action", "read"}, {"with", "alice"}, {"seq", 1}});
  EXPECT_EQ(Int(read, "seq"), 1) << Dump(read);
  auto frames = a1->Flush();
  ASSERT_TRUE(frames.ok()) << frames.status();
  EXPECT_TRUE(Receipts(*frames).empty()) << "no receipts in a self-conversation: " << Dump(*frames);
}

// 15. §6.3: synced, history and conversations replies stay under 1 MiB
// (always at least one item) and say there is more.
TEST_P(DurableTest, RepliesStayUnderOneMebibyteAndPageOn) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  constexpr size_t kMiB = 1 << 20, kBig = 100000;
  constexpr int kPeers = 11;  // 12 conversations and 22 messages of 100 kB each
  auto alice = Open(port(), "alice");
  auto bob = Open(port(), "bob");
  ASSERT_TRUE(alice && bob);
  for (int i = 0; i < kPeers; ++i) {
    ASSERT_NO_FATAL_FAILURE(MakeOfflineUser(absl::StrCat("peer", i), *alice));
  }
  SendMany(*alice, "bob", kPeers, kBig, "to bob");
  for (int i = 0; i < kPeers; ++i) SendMany(*alice, absl::StrCat("peer", i), 1, kBig, "to peer");
  ASSERT_FALSE(HasFailure());

  json::object synced = Answer(*alice, {{"action", "sync"}});
  EXPECT_LE(Dump(synced).size(), kMiB);
  EXPECT_FALSE(Objects(synced, "messages").empty()) << "at least one message";
  EXPECT_TRUE(True(synced, "more")) << "22 messages of 100 kB cannot fit";
  EXPECT_EQ(SyncAll(*alice).size(), 2u * kPeers);

  json::object history = Answer(*alice, {{"action", "history"}, {"with", "bob"}});
  EXPECT_LE(Dump(history).size(), kMiB);
  EXPECT_FALSE(Objects(history, "messages").empty());
  EXPECT_TRUE(True(history, "more")) << "11 messages of 100 kB cannot fit";
  EXPECT_EQ(HistoryAll(*alice, "bob").size(), static_cast<size_t>(kPeers));

  std::set<std::string> withs;
  int pages = 0;
  json::object request{{"action", "conversations"}};
  for (int page = 0; page < 20; ++page) {
    json::object list = Answer(*alice, request);
    ASSERT_TRUE(IsAction(list, "conversations")) << Dump(list).substr(0, 300);
    EXPECT_LE(Dump(list).size(), kMiB);
    EXPECT_FALSE(Objects(list, "items").empty());
    for (const auto& w : Withs(list)) EXPECT_TRUE(withs.insert(w).second) << "twice: " << w;
    ++pages;
    if (!list.contains("next")) break;
    request["after"] = Str(list, "next");
  }
  EXPECT_GE(pages, 2) << "12 last messages of 100 kB cannot fit one page";
  EXPECT_EQ(withs.size(), static_cast<size_t>(kPeers + 1));
}

// The store's engine stopped under a running cluster: only PostgreSQL can be
// stopped from outside, so this suite runs on it alone.
class DurableOutageTest : public DurableTest {};

// 16. §6.2/§6.7: with the store unreachable, sends and reads answer
// `unavailable` (temporary) and nothing is half-stored; when it returns the
// service recovers by itself, and a retry with the same key stores the
// message once.
TEST_P(DurableOutageTest, StoreOutageIsUnavailableThenRecoversByItself) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  auto alice = Open(port(), "alice");
  auto bob = Open(port(), "bob");
  ASSERT_TRUE(alice && bob);
  json::object before = SendOk(*alice, "bob", "before", "key-before");
  ASSERT_TRUE(bob->Await(LiveSendWithId(Str(before, "id")), "the first message").ok());

  auto pg = SharedPostgres();
  ASSERT_TRUE(pg.ok()) << pg.status();
  ASSERT_TRUE((*pg)->Stop().ok());
  const json::object during = SendFrame("bob", "during", "key-during");
  json::object refused = Answer(*alice, during, 15s);
  EXPECT_EQ(Str(refused, "code"), "unavailable") << Dump(refused);
  EXPECT_TRUE(True(refused, "temporary")) << Dump(refused);
  for (json::object read :
       std::vector<json::object>{{{"action", "sync"}},
                                 {{"action", "history"}, {"with", "bob"}},
                                 {{"action", "conversations"}},
                                 {{"action", "read"}, {"with", "bob"}, {"seq", 1}}}) {
    json::object answer = Answer(*alice, read, 15s);
    EXPECT_EQ(Str(answer, "code"), "unavailable") << Dump(read) << " -> " << Dump(answer);
    EXPECT_TRUE(True(answer, "temporary")) << Dump(answer);
  }
  // Other actions do not need the store.
  EXPECT_TRUE(IsAction(Answer(*alice, {{"action", "ping"}}), "pong"));

  absl::Status restarted = (*pg)->Restart();
  ASSERT_TRUE(restarted.ok()) << restarted;
  json::object sent;
  EXPECT_TRUE(Eventually(
      [&] {
        sent = Answer(*alice, during, 15s);
        return IsAction(sent, "sent");
      },
      20s))
      << "never recovered: " << Dump(sent);
  EXPECT_EQ(Int(sent, "seq"), 2) << "nothing half-stored: " << Dump(sent);
  auto live = bob->Await(LiveSendWithId(Str(sent, "id")), "the message after the outage");
  EXPECT_TRUE(live.ok()) << live.status();
  const auto history = HistoryAll(*alice, "bob");
  std::vector<std::string> texts;
  for (const auto& m : history) texts.push_back(Str(m, "message"));
  EXPECT_EQ(texts, (std::vector<std::string>{"before", "during"})) << Dump(history);
}

// 17. §6.3: a new database (the store replaced under running edges) has a new
// epoch: in the hello of new connections, and a sync with the old one resets.
TEST_P(DurableTest, ANewDatabaseChangesTheEpochAndSyncResets) {
  ASSERT_NO_FATAL_FAILURE(StartCluster());
  auto alice = Open(port(), "alice");
  auto bob = Open(port(), "bob");
  ASSERT_TRUE(alice && bob);
  const std::string old_epoch = Str(alice->hello(), "epoch");
  for (int i = 0; i < 3; ++i) SendOk(*alice, "bob", absl::StrCat("old ", i));
  json::object synced = Answer(*alice, {{"action", "sync"}, {"epoch", old_epoch}});
  ASSERT_EQ(Int(synced, "useq"), 3) << Dump(synced);

  for (ChildProcess* p : {&cluster_->message_service(), &cluster_->connection_service()}) {
    auto killed = cluster_->Stop(*p, SIGKILL);
    ASSERT_TRUE(killed.ok()) << killed.status();
  }
  if (GetParam() == "postgresql") {
    auto pg = SharedPostgres();
    ASSERT_TRUE(pg.ok()) << pg.status();
    absl::Status reset = (*pg)->Reset();
    ASSERT_TRUE(reset.ok()) << reset;
  } else {
    for (const auto& entry : std::filesystem::directory_iterator(data_dir_)) {
      std::filesystem::remove(entry.path());
    }
  }
  ASSERT_TRUE(cluster_->StartConnectionService().ok());
  ASSERT_TRUE(cluster_->StartMessageService().ok());

  auto alice2 = OpenWithEpoch(port(), "alice");
  ASSERT_TRUE(alice2);
  const std::string new_epoch = Str(alice2->hello(), "epoch");
  EXPECT_NE(new_epoch, old_epoch) << "a new database kept the epoch";
  // The client reconnected and syncs with the epoch it holds: reset.
  json::object after = Answer(*alice2, {{"action", "sync"}, {"since", 3}, {"epoch", old_epoch}});
  EXPECT_TRUE(IsAction(after, "synced")) << Dump(after);
  EXPECT_TRUE(True(after, "reset")) << Dump(after);
  EXPECT_EQ(Str(after, "epoch"), new_epoch) << Dump(after);
  EXPECT_TRUE(Objects(after, "messages").empty()) << "the new database is empty: " << Dump(after);
  EXPECT_EQ(Int(after, "useq"), 0) << Dump(after);
  // The connection that stayed open either resets the same way or was
  // closed with 1012, which docs/protocol.md §4 gives for a replaced store.
  auto old = alice->Call({{"action", "sync"}, {"since", 3}, {"epoch", old_epoch}});
  if (old.ok()) {
    EXPECT_TRUE(True(*old, "reset")) << Dump(*old);
  } else {
    // The request may have failed on the closed socket: read up to the close.
    while (alice->close_code() == 0 && alice->Next(2s).ok()) {
    }
    EXPECT_EQ(alice->close_code(), 1012) << old.status();
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, DurableTest,
                         ::testing::Values(std::string("sqlite"), std::string("postgresql")),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

INSTANTIATE_TEST_SUITE_P(Postgresql, DurableOutageTest,
                         ::testing::Values(std::string("postgresql")),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace chat::testing
