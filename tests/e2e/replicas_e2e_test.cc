// Two message-service replicas on one real PostgreSQL behind two edges: pairs
// chat concurrently with idempotency keys while one replica is SIGKILLed and
// later restarted. Every acknowledged message must be stored once in both
// users' streams, streams and conversations stay gapless, and senders are
// acknowledged again within 10 s of the kill.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "chat/v1/chat.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_util.h"
#include "tests/support/cluster.h"
#include "tests/support/postgres_server.h"
#include "tests/support/ws_client.h"

namespace chat::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kPairs = 8;

bool LogHas(const std::string& path, const std::string& text) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(text) != std::string::npos) return true;
  }
  return false;
}

int64_t Nanos(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// One acknowledged send.
struct Acked {
  std::string key;
  std::string id;
  bool duplicate = false;
};

// One user's client. `acked` is the thread's own until it is joined.
struct UserRun {
  std::string name;
  std::string peer;
  int port = 0;
  std::unique_ptr<WsClient> client;  // connected before anyone sends
  std::vector<Acked> acked;
  std::map<std::string, int> received;  // live frames from the peer, by id
  std::atomic<int64_t> last_ack_ns{0};
  std::atomic<bool> done{false};
};

struct Shared {
  std::atomic<int> acked{0};
  std::atomic<int> retries{0};
  std::atomic<int> duplicates{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> replay{false};  // resend each user's first key once
  std::atomic<int> replays_ok{0};
  // Set: every client stops before its next message until it is cleared.
  std::atomic<int> paused{0};
  std::mutex pause_mu;
  std::condition_variable pause_cv;
  bool pause = false;  // guarded by pause_mu
  void Pause(bool on) {
    {
      std::lock_guard<std::mutex> lock(pause_mu);
      pause = on;
    }
    pause_cv.notify_all();
  }
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::string failure;  // guarded by mu
  void Fail(const std::string& why) {
    std::lock_guard<std::mutex> lock(mu);
    if (!failed.exchange(true)) failure = why;
  }
};

// One user: sends to its peer one message at a time, each with its own
// idempotency key, until told to stop; an unacknowledged send (an error, or
// no answer within 5 s) is sent again with the same key until `sent`
// arrives, so that every key it used ends acknowledged.
void Chat(UserRun* run, Shared* shared) {
  WsClient* client = run->client.get();
  const Clock::time_point deadline = Clock::now() + 50s;
  int request = 0;
  // Sends until `sent` arrives; nullopt when the client failed.
  auto send_until_acked = [&](const std::string& key) -> std::optional<json::object> {
    for (int attempt = 0;; ++attempt) {
      if (Clock::now() > deadline || shared->failed) {
        shared->Fail(absl::StrCat(run->name, ": ", key, " never acknowledged"));
        return std::nullopt;
      }
      if (attempt > 0) shared->retries++;
      const std::string request_id = absl::StrCat("r", ++request);
      json::object send{{"action", "send"},
                        {"send_to", run->peer},
                        {"message", key},
                        {"request_id", request_id},
                        {"idempotency_key", key}};
      if (absl::Status s = client->SendJson(send); !s.ok()) {
        shared->Fail(absl::StrCat(run->name, ": send: ", s.ToString()));
        return std::nullopt;
      }
      // The answer to this request; deliveries from the peer pass by.
      const Clock::time_point answer_by = Clock::now() + 5s;
      std::optional<json::object> answer;
      while (!answer && Clock::now() < answer_by) {
        auto frame = client->Read(
            std::chrono::duration_cast<std::chrono::milliseconds>(answer_by - Clock::now() + 1ms));
        if (!frame.ok()) break;  // no answer in time: send again
        if (frame->closed) {
          shared->Fail(absl::StrCat(run->name, ": connection closed (", frame->close_code,
                                    ") though no edge died"));
          return std::nullopt;
        }
        if (Str(frame->json, "request_id") == request_id) {
          answer = frame->json;
        } else if (Str(frame->json, "action") == "send") {
          ++run->received[Str(frame->json, "id")];
        }
      }
      if (!answer) continue;
      if (Str(*answer, "action") == "sent") return answer;
      if (Str(*answer, "code") != "unavailable" && Str(*answer, "code") != "rate_limited") {
        shared->Fail(absl::StrCat(run->name, ": ", json::serialize(*answer)));
        return std::nullopt;
      }
      // A temporary error: the client's backoff before trying again.
      std::this_thread::sleep_for(std::chrono::milliseconds(20 * std::min(attempt + 1, 10)));
    }
  };
  auto is_duplicate = [](const json::object& sent) {
    const json::value* dup = sent.if_contains("duplicate");
    return dup != nullptr && dup->is_bool() && dup->get_bool();
  };
  bool replayed = false;
  for (int i = 0; !shared->stop && !shared->failed; ++i) {
    {
      std::unique_lock<std::mutex> lock(shared->pause_mu);
      if (shared->pause) {
        shared->paused++;
        shared->pause_cv.wait_until(lock, deadline, [&] { return !shared->pause; });
        shared->paused--;
      }
    }
    if (shared->replay && !replayed && !run->acked.empty()) {
      // The first message again, with its key, now that its conversation's
      // replica may be another: stored once, answered as a duplicate.
      replayed = true;
      std::optional<json::object> again = send_until_acked(run->acked.front().key);
      if (!again) break;
      if (!is_duplicate(*again) || Str(*again, "id") != run->acked.front().id) {
        shared->Fail(absl::StrCat(run->name, ": replayed key answered ", json::serialize(*again)));
        break;
      }
      shared->replays_ok++;
    }
    const std::string key = absl::StrCat(run->name, "-", i);
    std::optional<json::object> sent = send_until_acked(key);
    if (!sent) break;
    const bool duplicate = is_duplicate(*sent);
    if (duplicate) shared->duplicates++;
    run->acked.push_back({key, Str(*sent, "id"), duplicate});
    run->last_ack_ns = Nanos(Clock::now());
    shared->acked++;
  }
  run->done = true;
}

class ReplicasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pg = PostgresServer::Start();
    ASSERT_TRUE(pg.ok()) << "PostgreSQL is required: " << pg.status();
    pg_ = std::move(*pg);
    ClusterOptions options;
    options.message_store = options.connection_store = pg_->Url();
    options.message_services = 2;
    options.edges = 2;
    options.edge_flags = {"--messages_per_second=1000", "--rate_burst=1000"};
    cluster_ = std::make_unique<Cluster>("replicas", options);
    ASSERT_TRUE(cluster_->Start().ok());
    ASSERT_TRUE(cluster_->WaitEdgeReady(1).ok());
    // Both edges linked to both replicas before anyone chats.
    ASSERT_TRUE(Eventually(
        [&] {
          for (const char* log : {"message-service", "message-service2"}) {
            for (const char* edge : {"edge e1 linked", "edge e2 linked"}) {
              if (!LogHas(cluster_->LogPath(log), edge)) return false;
            }
          }
          return true;
        },
        20s));
  }

  std::unique_ptr<PostgresServer> pg_;
  std::unique_ptr<Cluster> cluster_;
};

// Reads a user's whole stream through the public MessageService API.
std::vector<chat::v1::StoredMessage> SyncAll(chat::v1::MessageService::Stub* stub,
                                             const std::string& user) {
  std::vector<chat::v1::StoredMessage> out;
  int64_t since = 0;
  for (int page = 0; page < 100; ++page) {
    chat::v1::SyncRequest request;
    request.set_user(user);
    request.set_since(since);
    request.set_limit(500);
    chat::v1::SyncResponse response;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    grpc::Status status = stub->Sync(&ctx, request, &response);
    EXPECT_TRUE(status.ok()) << user << ": " << status.error_message();
    if (!status.ok()) break;
    for (const auto& m : response.messages()) out.push_back(m);
    since = response.useq();
    if (!response.more()) break;
  }
  return out;
}

std::vector<chat::v1::StoredMessage> HistoryAll(chat::v1::MessageService::Stub* stub,
                                                const std::string& user, const std::string& with) {
  std::vector<chat::v1::StoredMessage> out;
  int64_t before = 0;
  for (int page = 0; page < 100; ++page) {
    chat::v1::HistoryRequest request;
    request.set_user(user);
    request.set_with(with);
    request.set_before(before);
    request.set_limit(500);
    chat::v1::HistoryResponse response;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    grpc::Status status = stub->History(&ctx, request, &response);
    EXPECT_TRUE(status.ok()) << user << "/" << with << ": " << status.error_message();
    if (!status.ok() || response.messages().empty()) break;
    out.insert(out.begin(), response.messages().begin(), response.messages().end());
    before = response.messages(0).seq();
    if (!response.more()) break;
  }
  return out;
}

// Each user's delivered mark in the conversation with their peer (the seq
// up to which their own messages reached the peer) catches up with their
// last message within `timeout`; returns the users still behind.
std::vector<std::string> MarksBehind(chat::v1::MessageService::Stub* stub,
                                     const std::vector<std::pair<std::string, std::string>>& pairs,
                                     std::chrono::milliseconds timeout) {
  std::map<std::string, int64_t> last_own_seq;
  for (const auto& [user, peer] : pairs) {
    for (const auto& m : HistoryAll(stub, user, peer)) {
      if (m.sent_by() == user) last_own_seq[user] = std::max(last_own_seq[user], m.seq());
    }
  }
  std::map<std::string, int64_t> delivered;
  auto behind = [&] {
    std::vector<std::string> out;
    for (const auto& [user, peer] : pairs) {
      if (delivered[user] == last_own_seq[user]) continue;
      chat::v1::ConversationsRequest request;
      request.set_user(user);
      chat::v1::ConversationsResponse response;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + 5s);
      if (stub->Conversations(&ctx, request, &response).ok()) {
        for (const auto& item : response.items()) {
          if (item.with() == peer) delivered[user] = item.delivered_seq();
        }
      }
      if (delivered[user] != last_own_seq[user]) {
        out.push_back(absl::StrCat(user, " at ", delivered[user], " of ", last_own_seq[user]));
      }
    }
    return out;
  };
  Eventually([&] { return behind().empty(); }, timeout);
  return behind();
}

TEST_F(ReplicasTest, KillingAReplicaLosesNoAcknowledgedMessageAndDuplicatesNone) {
  // Pairs a<i>/b<i>, the two users of a pair on different edges.
  std::vector<std::unique_ptr<UserRun>> runs;
  for (int p = 0; p < kPairs; ++p) {
    for (int side = 0; side < 2; ++side) {
      auto run = std::make_unique<UserRun>();
      run->name = absl::StrCat(side == 0 ? "a" : "b", p);
      run->peer = absl::StrCat(side == 0 ? "b" : "a", p);
      run->port = cluster_->edge_port(side);
      // Everyone connects first: a name is known once its user connected.
      run->client = std::make_unique<WsClient>();
      HandshakeOptions options;
      options.target = "/?name=" + run->name;
      ASSERT_TRUE(run->client->Connect(run->port, options).ok()) << run->name;
      runs.push_back(std::move(run));
    }
  }
  Shared shared;
  std::vector<std::thread> threads;
  for (auto& run : runs) threads.emplace_back(Chat, run.get(), &shared);
  auto join = [&] {
    shared.stop = true;
    for (auto& t : threads) t.join();
    threads.clear();
  };
  // Whatever assertion ends the test, the clients stop first.
  struct JoinAtExit {
    std::function<void()> join;
    ~JoinAtExit() { join(); }
  } join_at_exit{join};
  // Every client acknowledged after `since` (or stopped).
  auto all_acked_after = [&](Clock::time_point since) {
    for (const auto& run : runs) {
      if (!run->done && run->last_ack_ns < Nanos(since)) return false;
    }
    return true;
  };

  // Chatting on both replicas...
  const Clock::time_point started = Clock::now();
  bool warm = Eventually([&] { return shared.acked >= 300 || shared.failed; }, 20s);
  if (!warm || shared.failed) {
    join();
    for (int i = 0; i < 2; ++i) {
      absl::StatusOr<int> exited = cluster_->message_service(i).Wait(100ms);
      if (exited.ok()) ADD_FAILURE() << "message-service " << i + 1 << " exited: " << *exited;
    }
  }
  ASSERT_TRUE(warm) << "only " << shared.acked << " acknowledged";
  ASSERT_FALSE(shared.failed) << shared.failure;
  EXPECT_TRUE(all_acked_after(started));

  // A pause: with nothing in flight, every reached mark catches up although
  // a user's own messages were committed by one replica and their reached
  // reports went to another (the user's).
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", cluster_->message_port(0)),
                                     grpc::InsecureChannelCredentials());
  auto stub = chat::v1::MessageService::NewStub(channel);
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const auto& run : runs) pairs.emplace_back(run->name, run->peer);
  shared.Pause(true);
  ASSERT_TRUE(Eventually([&] { return shared.paused == static_cast<int>(runs.size()); }, 15s));
  const Clock::time_point pause_at = Clock::now();
  const std::vector<std::string> behind = MarksBehind(stub.get(), pairs, 10s);
  EXPECT_TRUE(behind.empty()) << "delivered marks behind: " << absl::StrJoin(behind, ", ");
  std::printf("[replicas] paused at %d acknowledged: delivered marks caught up in %.0f ms\n",
              shared.acked.load(),
              std::chrono::duration<double, std::milli>(Clock::now() - pause_at).count());
  shared.Pause(false);
  const int acked_at_resume = shared.acked;
  ASSERT_TRUE(
      Eventually([&] { return shared.acked >= acked_at_resume + 100 || shared.failed; }, 15s));

  // ...replica 2 dies mid-run.
  const Clock::time_point killed_at = Clock::now();
  const int acked_at_kill = shared.acked;
  cluster_->message_service(1).Signal(SIGKILL);
  const bool recovered =
      Eventually([&] { return all_acked_after(killed_at) || shared.failed; }, 15s);
  const auto recovery = Clock::now() - killed_at;
  if (!recovered || shared.failed) join();
  ASSERT_FALSE(shared.failed) << shared.failure;
  ASSERT_TRUE(recovered) << "some senders were not acknowledged within 15 s of the kill";
  const double recovery_ms = std::chrono::duration<double, std::milli>(recovery).count();
  std::printf(
      "[replicas] every sender acknowledged again %.0f ms after the SIGKILL "
      "(%d acknowledged before it)\n",
      recovery_ms, acked_at_kill);
  EXPECT_LE(recovery_ms, 10000) << "senders must be acknowledged again within 10 s of the kill";
  ASSERT_TRUE(cluster_->message_service(1).Wait(10s).ok());

  // With one replica left, every conversation is on it: each user's first
  // key, committed before the kill (on either replica), is sent again.
  shared.replay = true;
  const bool replayed = Eventually(
      [&] { return shared.replays_ok == static_cast<int>(runs.size()) || shared.failed; }, 15s);
  if (!replayed || shared.failed) join();
  ASSERT_FALSE(shared.failed) << shared.failure;
  ASSERT_TRUE(replayed) << shared.replays_ok << " replays answered";

  // The replica comes back on its port and gets its conversations back.
  ASSERT_TRUE(cluster_->StartMessageService(1).ok());
  const Clock::time_point restarted = Clock::now();
  const int acked_at_restart = shared.acked;
  const bool after_restart = Eventually(
      [&] {
        return (all_acked_after(restarted) && shared.acked >= acked_at_restart + 300) ||
               shared.failed;
      },
      20s);
  join();
  ASSERT_FALSE(shared.failed) << shared.failure;
  ASSERT_TRUE(after_restart) << "chatting did not go on after the restart";
  std::printf("[replicas] %d acknowledged in all, %d retries, %d answered as duplicates\n",
              shared.acked.load(), shared.retries.load(), shared.duplicates.load());

  // Live delivery held through the kill: every acknowledged message reached
  // its recipient's socket (those the dead replica had not handed down were
  // caught up from the store), a few perhaps twice.
  const Clock::time_point drain_by = Clock::now() + 10s;
  int repeated = 0;
  for (size_t i = 0; i < runs.size(); ++i) {
    UserRun& run = *runs[i];
    const UserRun& peer = *runs[i ^ 1];
    auto missing = [&] {
      std::vector<std::string> out;
      for (const Acked& a : peer.acked) {
        if (run.received.count(a.id) == 0) out.push_back(a.key);
      }
      return out;
    };
    while (!missing().empty() && Clock::now() < drain_by) {
      auto frame = run.client->Read(
          std::chrono::duration_cast<std::chrono::milliseconds>(drain_by - Clock::now() + 1ms));
      if (!frame.ok() || frame->closed) break;
      if (Str(frame->json, "action") == "send") ++run.received[Str(frame->json, "id")];
    }
    const std::vector<std::string> never = missing();
    EXPECT_TRUE(never.empty()) << run.name << " never received live: " << absl::StrJoin(never, ",");
    for (const auto& [id, n] : run.received) repeated += n - 1;
  }
  std::printf("[replicas] %d live frames repeated (allowed after a crash)\n", repeated);

  // Every acknowledged message is in both users' streams and in the
  // conversation exactly once; no useq or seq is skipped.
  std::map<std::string, std::vector<chat::v1::StoredMessage>> streams;
  for (const auto& run : runs) {
    std::vector<chat::v1::StoredMessage> stream = SyncAll(stub.get(), run->name);
    for (size_t i = 0; i < stream.size(); ++i) {
      ASSERT_EQ(stream[i].useq(), static_cast<int64_t>(i + 1)) << run->name << ": useq gap";
    }
    streams[run->name] = std::move(stream);
  }
  for (const auto& run : runs) {
    // The user's keys: each acknowledged, each stored once per stream.
    std::map<std::string, std::string> id_of_key;
    for (const Acked& a : run->acked) {
      auto [it, added] = id_of_key.emplace(a.key, a.id);
      EXPECT_TRUE(added) << run->name << ": " << a.key << " acknowledged twice";
    }
    for (const std::string& who : {run->name, run->peer}) {
      std::map<std::string, int> copies;  // key -> count in who's stream
      for (const auto& m : streams[who]) {
        if (m.sent_by() == run->name) ++copies[m.message()];
      }
      for (const auto& [key, id] : id_of_key) {
        EXPECT_EQ(copies[key], 1) << key << " in " << who << "'s stream";
      }
      EXPECT_EQ(copies.size(), id_of_key.size())
          << who << "'s stream has messages of " << run->name << " nobody acknowledged";
    }
    if (run->name[0] != 'a') continue;  // each conversation once
    std::vector<chat::v1::StoredMessage> history = HistoryAll(stub.get(), run->name, run->peer);
    std::set<std::string> ids;
    for (size_t i = 0; i < history.size(); ++i) {
      ASSERT_EQ(history[i].seq(), static_cast<int64_t>(i + 1)) << run->name << ": seq gap";
      EXPECT_TRUE(ids.insert(history[i].id()).second) << "message stored twice";
    }
  }
  // After the kill too: the edges hand the reached reports the dead replica
  // may not have stored to the users' new replica, so no mark stays behind.
  const Clock::time_point end_at = Clock::now();
  const std::vector<std::string> behind_after = MarksBehind(stub.get(), pairs, 10s);
  EXPECT_TRUE(behind_after.empty())
      << "delivered marks behind after the kill: " << absl::StrJoin(behind_after, ", ");
  std::printf("[replicas] after the kill and restart: delivered marks caught up in %.0f ms\n",
              std::chrono::duration<double, std::milli>(Clock::now() - end_at).count());

  // Both directions of every conversation in its history, and nothing else.
  size_t acked_total = 0;
  for (const auto& run : runs) acked_total += run->acked.size();
  size_t stored_total = 0;
  for (const auto& [user, stream] : streams) stored_total += stream.size();
  EXPECT_EQ(stored_total, 2 * acked_total) << "each message is in two streams";
}

}  // namespace
}  // namespace chat::testing
