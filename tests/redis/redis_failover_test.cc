// A connection-service replica on Redis behind Sentinel: SIGKILL the
// primary, Sentinel promotes the replica, and the registry writes again
// without a restart.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "common/clock.h"
#include "connection-service/memory_store.h"
#include "connection-service/redis_client.h"
#include "connection-service/redis_registry.h"
#include "connection-service/registry.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/redis_server.h"

namespace chat::connection {
namespace {

using Clock = std::chrono::steady_clock;

ConnectionInfo Conn(const std::string& id, const std::string& user) {
  return {id, user, "", 1700000000000, "ua", "127.0.0.1"};
}

bool Online(Registry& registry, const std::string& user) {
  absl::StatusOr<UserDetails> u = registry.GetUser(user);
  return u.ok() && !u->connections.empty();
}

TEST(RedisFailoverTest, RegistryFollowsSentinelToThePromotedReplica) {
  auto primary = testing::RedisServer::Start();
  ASSERT_TRUE(primary.ok()) << primary.status();
  auto replica = testing::RedisServer::Start({(*primary)->port()});
  ASSERT_TRUE(replica.ok()) << replica.status();
  auto sentinels = testing::SentinelGroup::Start((*primary)->port(), 3);
  ASSERT_TRUE(sentinels.ok()) << sentinels.status();
  ASSERT_TRUE((*sentinels)->WaitReady(1, std::chrono::seconds(20)).ok());

  RedisRegistryOptions options;
  absl::StatusOr<RegistryUrl> url = ParseRegistryUrl((*sentinels)->Url());
  ASSERT_TRUE(url.ok()) << url.status();
  options.target = *url;
  options.lease_timeout_ms = 10'000;
  options.new_epoch_warmup_ms = 0;
  RedisRegistry shared(options);
  RegistryOptions registry_options;
  registry_options.shared = &shared;
  Registry registry(std::make_unique<MemoryStore>(), SystemClock::Get(), registry_options);

  ASSERT_TRUE(registry.Register("e1", "i1", {Conn("e1-1", "alice")}).ok());
  const std::string epoch = registry.instance_id();
  ASSERT_FALSE(epoch.empty());
  // The replica has everything so far (replication is asynchronous).
  bool acked = false;
  for (int i = 0; i < 10 && !acked; ++i) {
    absl::StatusOr<std::string> replicas = (*primary)->Command({"WAIT", "1", "1000"});
    acked = replicas.ok() && *replicas == "1";
  }
  ASSERT_TRUE(acked) << "the replica did not acknowledge the writes";

  // Answered just before the primary dies: the registry waited for the
  // replica to have it (WAIT 1), so the failover does not lose it.
  ASSERT_TRUE(registry.Register("e1", "i1", {Conn("e1-3", "carol")}).ok());
  ASSERT_TRUE((*primary)->Kill().ok());
  const auto killed = Clock::now();
  // Writes fail (UNAVAILABLE, quickly) until the replica is promoted, then work.
  int attempts = 0;
  absl::Status written;
  while (Clock::now() - killed < std::chrono::seconds(30)) {
    ++attempts;
    written = registry.Register("e1", "i1", {Conn("e1-2", "bob")});
    if (written.ok()) break;
    EXPECT_EQ(written.code(), absl::StatusCode::kUnavailable) << written;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(written.ok()) << written;
  const auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - killed).count();
  std::printf(
      "[ timing ] primary SIGKILLed -> first successful registry write: %lld ms "
      "(%d attempts)\n",
      static_cast<long long>(took), attempts);
  absl::StatusOr<int> promoted = (*sentinels)->PrimaryPort();
  ASSERT_TRUE(promoted.ok());
  EXPECT_EQ(*promoted, (*replica)->port());
  // Same epoch (it was replicated): edges see no restart, and the state
  // written before the failover is still there.
  EXPECT_EQ(registry.instance_id(), epoch);
  EXPECT_TRUE(Online(registry, "alice"));
  EXPECT_TRUE(Online(registry, "bob"));
  EXPECT_TRUE(Online(registry, "carol"));
  absl::StatusOr<HeartbeatResult> beat = registry.Heartbeat("e1", "i1");
  ASSERT_TRUE(beat.ok()) << beat.status();
  EXPECT_TRUE(beat->lease_known);
  absl::StatusOr<std::string> on_new = (*replica)->Command({"HEXISTS", "chat:conns", "e1-2"});
  ASSERT_TRUE(on_new.ok());
  EXPECT_EQ(*on_new, "1");
  EXPECT_LT(took, 10'000);
}

TEST(RedisFailoverTest, AHungPrimaryIsLeftForThePromotedReplicaSoonAfterTheFailover) {
  // SIGSTOP rather than SIGKILL: no socket closes, every connection to the
  // old primary only times out. Writes must work again soon after Sentinel
  // promoted the replica, which needs this replica's feed to follow it too.
  auto primary = testing::RedisServer::Start();
  ASSERT_TRUE(primary.ok()) << primary.status();
  auto replica = testing::RedisServer::Start({(*primary)->port()});
  ASSERT_TRUE(replica.ok()) << replica.status();
  auto sentinels = testing::SentinelGroup::Start((*primary)->port(), 3);
  ASSERT_TRUE(sentinels.ok()) << sentinels.status();
  ASSERT_TRUE((*sentinels)->WaitReady(1, std::chrono::seconds(20)).ok());

  RedisRegistryOptions options;
  absl::StatusOr<RegistryUrl> url = ParseRegistryUrl((*sentinels)->Url());
  ASSERT_TRUE(url.ok()) << url.status();
  options.target = *url;
  options.lease_timeout_ms = 10'000;
  options.new_epoch_warmup_ms = 0;
  RedisRegistry shared(options);
  RegistryOptions registry_options;
  registry_options.shared = &shared;
  Registry registry(std::make_unique<MemoryStore>(), SystemClock::Get(), registry_options);
  ASSERT_TRUE(registry.Register("e1", "i1", {Conn("e1-1", "alice")}).ok());
  bool acked = false;
  for (int i = 0; i < 10 && !acked; ++i) {
    absl::StatusOr<std::string> replicas = (*primary)->Command({"WAIT", "1", "1000"});
    acked = replicas.ok() && *replicas == "1";
  }
  ASSERT_TRUE(acked) << "the replica did not acknowledge the writes";

  ASSERT_TRUE((*primary)->Suspend().ok());
  const auto stopped = Clock::now();
  absl::StatusOr<int> promoted =
      (*sentinels)->WaitForFailover((*primary)->port(), std::chrono::seconds(30));
  ASSERT_TRUE(promoted.ok()) << promoted.status();
  const auto failed_over = Clock::now();
  absl::Status written;
  while (Clock::now() - failed_over < std::chrono::seconds(30)) {
    written = registry.Register("e1", "i1", {Conn("e1-2", "bob")});
    if (written.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const auto ms = [](Clock::duration d) {
    return static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
  };
  std::printf(
      "[ timing ] primary SIGSTOPped -> promoted after %lld ms, first write %lld ms after that\n",
      ms(failed_over - stopped), ms(Clock::now() - failed_over));
  (*primary)->Resume();
  ASSERT_TRUE(written.ok()) << written;
  // What operators are promised: registrations work again well within 10 s
  // of the promotion (measured ~1 s here; the figure is printed above).
  EXPECT_LT(ms(Clock::now() - failed_over), 10'000);
  EXPECT_TRUE(Online(registry, "alice"));
  EXPECT_TRUE(Online(registry, "bob"));
}

// "cmdstat_wait:calls=N,..." from INFO commandstats (0 when never called).
int WaitCalls(const testing::RedisServer& server) {
  absl::StatusOr<std::string> info = server.Command({"INFO", "commandstats"});
  if (!info.ok()) return -1;
  const size_t at = info->find("cmdstat_wait:calls=");
  return at == std::string::npos ? 0 : std::atoi(info->c_str() + at + 19);
}

TEST(RedisFailoverTest, WritesWaitForAReplicaThatAttachedAfterTheConnection) {
  // After a failover the new primary has no replica until the old one comes
  // back as one; registrations answered after that must still wait for it,
  // or the next failover loses them.
  auto primary = testing::RedisServer::Start();
  ASSERT_TRUE(primary.ok()) << primary.status();
  RedisRegistryOptions options;
  options.target = *ParseRegistryUrl((*primary)->Url());
  options.new_epoch_warmup_ms = 0;
  RedisRegistry shared(options);
  RegistryOptions registry_options;
  registry_options.shared = &shared;
  Registry registry(std::make_unique<MemoryStore>(), SystemClock::Get(), registry_options);
  ASSERT_TRUE(registry.Register("e1", "i1", {Conn("e1-1", "alice")}).ok());
  EXPECT_EQ(WaitCalls(**primary), 0);  // no replica: nothing to wait for

  auto replica = testing::RedisServer::Start({(*primary)->port()});
  ASSERT_TRUE(replica.ok()) << replica.status();
  bool acked = false;
  for (int i = 0; i < 20 && !acked; ++i) {
    absl::StatusOr<std::string> replicas = (*primary)->Command({"WAIT", "1", "1000"});
    acked = replicas.ok() && *replicas == "1";
  }
  ASSERT_TRUE(acked) << "the replica did not attach";
  const int before = WaitCalls(**primary);
  // Registrations until one waited (the replica is looked for again at most
  // once a second per connection).
  const auto start = Clock::now();
  int n = 2;
  while (WaitCalls(**primary) == before && Clock::now() - start < std::chrono::seconds(5)) {
    const std::string id = "e1-" + std::to_string(n++);
    ASSERT_TRUE(registry.Register("e1", "i1", {Conn(id, "bob")}).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_GT(WaitCalls(**primary), before) << "no registration waited for the replica";
}

TEST(RedisFailoverTest, AReplicaIsNotWrittenTo) {
  auto primary = testing::RedisServer::Start();
  ASSERT_TRUE(primary.ok()) << primary.status();
  auto replica = testing::RedisServer::Start({(*primary)->port()});
  ASSERT_TRUE(replica.ok()) << replica.status();
  RedisPool pool(*ParseRegistryUrl((*replica)->Url()), RedisTimeouts(), 1);
  absl::StatusOr<RedisReply> reply = pool.Command({"SET", "k", "v"});
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(reply.status().message()), ::testing::HasSubstr("not a primary"));
  RedisPool to_primary(*ParseRegistryUrl((*primary)->Url()), RedisTimeouts(), 1);
  reply = to_primary.Command({"SET", "k", "v"});
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->str, "OK");
}

}  // namespace
}  // namespace chat::connection
