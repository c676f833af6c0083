// Two edges behind a real HAProxy, configured with the essentials of
// docs/haproxy.cfg: connections spread over both edges, one edge drains on
// SIGTERM while the other keeps its clients, the drained clients come back
// through HAProxy on the survivor without losing an acknowledged message, and
// a replacement edge is put back in rotation by HAProxy's /readyz checks.
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <thread>

#include "tests/e2e/e2e_util.h"
#include "tests/support/haproxy.h"
#include "tests/support/process.h"

namespace chat::testing {
namespace {

using Clock = std::chrono::steady_clock;

long long Millis(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// One chat user through HAProxy, with what reached it live.
struct User {
  std::string name;
  std::unique_ptr<WsClient> ws;
  std::string server;          // hello.server of the current connection
  std::set<std::string> live;  // ids of the `send` frames received
  bool closed = false;
  uint16_t close_code = 0;
};

void Record(User& user, const Frame& frame) {
  if (frame.closed) {
    user.closed = true;
    user.close_code = frame.close_code;
  } else if (Str(frame.json, "action") == "send") {
    user.live.insert(Str(frame.json, "id"));
  }
}

absl::Status ConnectThrough(int port, User& user, std::chrono::milliseconds timeout = 3s) {
  auto ws = std::make_unique<WsClient>();
  HandshakeOptions options;
  options.target = absl::StrCat("/?name=", user.name);
  if (absl::Status s = ws->Connect(port, options, timeout); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(s.message(), " (HTTP ", ws->http_status(), ")"));
  }
  user.ws = std::move(ws);
  user.server = Str(user.ws->hello(), "server");
  user.closed = false;
  user.close_code = 0;
  return absl::OkStatus();
}

// Every message a sender got `sent` for: (recipient, id).
struct Ledger {
  std::vector<std::pair<std::string, std::string>> acked;
  int next_request = 0;
};

// `from` sends `text` to `to` and waits for its `sent`, recording the frames
// that arrive meanwhile; the reply is an error when the send was refused.
absl::Status Send(Ledger& ledger, User& from, const std::string& to, const std::string& text) {
  const std::string request_id = absl::StrCat("r", ++ledger.next_request);
  json::object frame{
      {"action", "send"}, {"send_to", to}, {"message", text}, {"request_id", request_id}};
  if (absl::Status s = from.ws->SendJson(frame); !s.ok()) return s;
  const auto deadline = Clock::now() + 5s;
  while (Clock::now() < deadline) {
    auto reply = from.ws->Read(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now() + 1ms));
    if (!reply.ok()) return reply.status();
    Record(from, *reply);
    if (reply->closed) return absl::UnavailableError(absl::StrCat(from.name, " was closed"));
    if (Str(reply->json, "request_id") != request_id) continue;
    if (Str(reply->json, "action") != "sent") {
      return absl::InternalError(
          absl::StrCat(from.name, " -> ", to, ": ", json::serialize(reply->json)));
    }
    ledger.acked.emplace_back(to, Str(reply->json, "id"));
    return absl::OkStatus();
  }
  return absl::DeadlineExceededError(absl::StrCat("no sent for ", request_id));
}

// Reads `user`'s frames until `id` arrived live (true) or the deadline.
bool WaitLive(User& user, const std::string& id, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  while (user.live.count(id) == 0 && !user.closed && Clock::now() < deadline) {
    auto frame = user.ws->Read(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now() + 1ms));
    if (!frame.ok()) break;
    Record(user, *frame);
  }
  return user.live.count(id) > 0;
}

// The ids of all of `user`'s stored messages (§6.3 sync from 0, every page).
absl::StatusOr<std::set<std::string>> SyncAll(User& user) {
  std::set<std::string> ids;
  int64_t since = 0;
  for (int page = 0; page < 100; ++page) {
    const std::string request_id = absl::StrCat("sync", page);
    if (absl::Status s = user.ws->SendJson(
            {{"action", "sync"}, {"since", since}, {"limit", 500}, {"request_id", request_id}});
        !s.ok()) {
      return s;
    }
    json::object synced;
    while (synced.empty()) {
      auto frame = user.ws->Read(5s);
      if (!frame.ok()) return frame.status();
      Record(user, *frame);
      if (frame->closed) return absl::UnavailableError(absl::StrCat(user.name, " was closed"));
      if (Str(frame->json, "request_id") == request_id) synced = frame->json;
    }
    if (Str(synced, "action") != "synced") {
      return absl::InternalError(absl::StrCat("sync: ", json::serialize(synced)));
    }
    for (const auto& m : synced.at("messages").as_array()) ids.insert(Str(m.as_object(), "id"));
    since = synced.at("useq").as_int64();
    if (!synced.at("more").as_bool()) return ids;
  }
  return absl::InternalError("sync never ended");
}

TEST(HaproxyTest, SpreadsDrainsAndReadmitsEdges) {
  ClusterOptions options;
  options.edges = 2;
  // The survivors' traffic below runs faster than a person types.
  options.edge_flags = {"--drain_timeout_ms=3000", "--messages_per_second=1000",
                        "--rate_burst=1000"};
  Cluster cluster("haproxy", options);
  ASSERT_TRUE(cluster.Start().ok());
  Haproxy haproxy;
  {
    absl::Status s = haproxy.Start({{"e1", cluster.edge_port(0)}, {"e2", cluster.edge_port(1)}},
                                   cluster.LogPath("haproxy"));
    ASSERT_TRUE(s.ok()) << "HAProxy did not start: " << s << " (log " << cluster.LogPath("haproxy")
                        << ")";
  }
  auto status_of = [&](const std::string& server) { return haproxy.ServerStatus()[server]; };
  ASSERT_TRUE(Eventually([&] { return status_of("e1") == "UP" && status_of("e2") == "UP"; }))
      << "e1 " << status_of("e1") << ", e2 " << status_of("e2");

  // 1. Clients spread over both edges, and talk across them.
  std::vector<User> users(8);
  std::map<std::string, int> per_server;
  for (size_t i = 0; i < users.size(); ++i) {
    users[i].name = absl::StrCat("u", i);
    absl::Status s = ConnectThrough(haproxy.port(), users[i]);
    ASSERT_TRUE(s.ok()) << users[i].name << ": " << s;
    ++per_server[users[i].server];
  }
  ASSERT_EQ(per_server.size(), 2u) << "all clients on one edge";
  ASSERT_GE(per_server["e1"], 1);
  ASSERT_GE(per_server["e2"], 1);
  std::vector<User*> survivors, drained;  // on e1 and on e2
  for (User& u : users) (u.server == "e1" ? survivors : drained).push_back(&u);

  Ledger ledger;
  ASSERT_EQ(Send(ledger, *survivors[0], drained[0]->name, "across edges"), absl::OkStatus());
  ASSERT_TRUE(WaitLive(*drained[0], ledger.acked.back().second));
  ASSERT_EQ(Send(ledger, *drained[0], survivors[0]->name, "and back"), absl::OkStatus());
  ASSERT_TRUE(WaitLive(*survivors[0], ledger.acked.back().second));
  for (size_t i = 0; i < users.size(); ++i) {
    ASSERT_EQ(Send(ledger, users[i], users[(i + 1) % users.size()].name, "ring"), absl::OkStatus());
  }

  // 2. e2 drains. Its clients get 1001 and come back through HAProxy on e1;
  // e1's clients are never disconnected and keep talking meanwhile,
  // to each other and to the drained users.
  int round = 0;
  auto survivors_talk = [&] {
    ++round;
    for (size_t i = 0; i < survivors.size(); ++i) {
      const std::string text = absl::StrCat("round ", round);
      for (const std::string& to :
           {survivors[(i + 1) % survivors.size()]->name, drained[i % drained.size()]->name}) {
        if (absl::Status s = Send(ledger, *survivors[i], to, text); !s.ok()) {
          ADD_FAILURE() << "round " << round << ": " << s;
          return false;
        }
      }
    }
    return true;
  };

  const auto sigterm_at = Clock::now();
  cluster.edge(1).Signal(SIGTERM);
  ASSERT_TRUE(survivors_talk());
  for (User* u : drained) {
    const auto deadline = Clock::now() + 10s;
    while (!u->closed && Clock::now() < deadline) {
      auto frame = u->ws->Read(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now() + 1ms));
      if (!frame.ok()) break;
      Record(*u, *frame);
    }
    ASSERT_TRUE(u->closed) << u->name << " not closed by the drain";
    EXPECT_EQ(u->close_code, 1001) << u->name;
  }
  ASSERT_TRUE(survivors_talk());

  std::vector<bool> back(drained.size(), false);
  auto last_back = Clock::now();
  const auto reconnect_deadline = Clock::now() + 15s;
  int attempts = 0;
  std::string last_error;  // of a refused attempt, for the failure message
  while (std::count(back.begin(), back.end(), false) > 0 && Clock::now() < reconnect_deadline) {
    bool failed = false;
    for (size_t i = 0; i < drained.size(); ++i) {
      if (back[i]) continue;
      ++attempts;
      // A fresh connection object: the drained one stays closed.
      auto previous = std::move(drained[i]->ws);
      if (absl::Status s = ConnectThrough(haproxy.port(), *drained[i], 2s); s.ok()) {
        back[i] = true;
        last_back = Clock::now();
        EXPECT_EQ(drained[i]->server, "e1")
            << drained[i]->name << " reconnected to a draining edge";
      } else {
        drained[i]->ws = std::move(previous);
        failed = true;
        last_error = absl::StrCat(drained[i]->name, ": ", s.ToString());
      }
    }
    ASSERT_TRUE(survivors_talk());
    // A client's backoff between refused attempts, bounded by the deadline.
    if (failed) std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(std::count(back.begin(), back.end(), false), 0)
      << "drained clients not back in 15 s; last refusal: " << last_error;
  const long long reconnect_ms = Millis(last_back - sigterm_at);
  std::printf(
      "[haproxy] SIGTERM to the last of %zu drained clients back through HAProxy: %lld ms"
      " (%d connection attempts)\n",
      drained.size(), reconnect_ms, attempts);
  RecordProperty("reconnect_ms", static_cast<int>(reconnect_ms));
  EXPECT_LT(reconnect_ms, 5000);
  ASSERT_TRUE(survivors_talk());

  auto exit_status = cluster.edge(1).Wait(10s);
  ASSERT_TRUE(exit_status.ok()) << exit_status.status();
  EXPECT_TRUE(WIFEXITED(*exit_status) && WEXITSTATUS(*exit_status) == 0)
      << "wait status " << *exit_status;
  // The health checks took the drained edge out of the rotation (it stopped
  // listening); the retries above covered the time until they did.
  ASSERT_TRUE(Eventually([&] { return status_of("e2") == "DOWN"; })) << status_of("e2");
  std::printf("[haproxy] e2 marked DOWN %lld ms after SIGTERM\n",
              Millis(Clock::now() - sigterm_at));

  // Nothing acknowledged is lost: live at the never-disconnected survivors,
  // live or by sync at the drained users.
  std::map<std::string, User*> by_name;
  for (User& u : users) by_name[u.name] = &u;
  std::map<std::string, std::set<std::string>> synced;
  for (User* u : drained) {
    auto ids = SyncAll(*u);
    ASSERT_TRUE(ids.ok()) << u->name << ": " << ids.status();
    synced[u->name] = *ids;
  }
  int checked = 0;
  for (const auto& [to, id] : ledger.acked) {
    User& u = *by_name[to];
    ++checked;
    if (std::find(survivors.begin(), survivors.end(), &u) != survivors.end()) {
      EXPECT_TRUE(WaitLive(u, id)) << "message " << id << " to " << to << " never arrived";
    } else {
      EXPECT_TRUE(u.live.count(id) > 0 || synced[to].count(id) > 0)
          << "message " << id << " to " << to << " lost";
    }
  }
  std::printf("[haproxy] %d acknowledged messages checked at their recipients\n", checked);
  for (User* u : survivors) {
    EXPECT_FALSE(u->closed) << u->name << " on the surviving edge was disconnected";
  }

  // 3. A replacement e2 on the same port: HAProxy's checks put it back in
  // rotation, and (leastconn) the next client lands on the empty edge.
  ASSERT_TRUE(cluster.StartEdge(1).ok());
  const auto restarted_at = Clock::now();
  ASSERT_TRUE(cluster.WaitEdgeReady(1).ok());
  ASSERT_TRUE(Eventually([&] { return status_of("e2") == "UP"; })) << status_of("e2");
  std::printf("[haproxy] replacement e2 marked UP %lld ms after it listened\n",
              Millis(Clock::now() - restarted_at));
  std::vector<User> late(3);
  User* on_e2 = nullptr;
  for (size_t i = 0; i < late.size() && on_e2 == nullptr; ++i) {
    late[i].name = absl::StrCat("late", i);
    absl::Status s = ConnectThrough(haproxy.port(), late[i]);
    ASSERT_TRUE(s.ok()) << late[i].name << ": " << s;
    if (late[i].server == "e2") on_e2 = &late[i];
  }
  ASSERT_NE(on_e2, nullptr) << "no new client landed on the replacement e2";
  ASSERT_EQ(Send(ledger, *on_e2, survivors[0]->name, "from the new e2"), absl::OkStatus());
  EXPECT_TRUE(WaitLive(*survivors[0], ledger.acked.back().second));
  ASSERT_EQ(Send(ledger, *survivors[0], on_e2->name, "to the new e2"), absl::OkStatus());
  EXPECT_TRUE(WaitLive(*on_e2, ledger.acked.back().second));
  for (User* u : survivors) EXPECT_FALSE(u->closed) << u->name;
}

}  // namespace
}  // namespace chat::testing
