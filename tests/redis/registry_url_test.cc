#include "connection-service/registry_url.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chat::connection {
namespace {

using ::testing::HasSubstr;

TEST(RegistryUrlTest, Memory) {
  absl::StatusOr<RegistryUrl> url = ParseRegistryUrl("memory");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->kind, RegistryUrl::Kind::kMemory);
}

TEST(RegistryUrlTest, Redis) {
  absl::StatusOr<RegistryUrl> url = ParseRegistryUrl("redis://10.0.0.5:6379");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->kind, RegistryUrl::Kind::kRedis);
  EXPECT_EQ(url->address.host, "10.0.0.5");
  EXPECT_EQ(url->address.port, 6379);
  EXPECT_EQ(url->db, 0);
}

TEST(RegistryUrlTest, RedisWithDatabase) {
  absl::StatusOr<RegistryUrl> url = ParseRegistryUrl("redis://redis:6380/3");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->address.host, "redis");
  EXPECT_EQ(url->address.port, 6380);
  EXPECT_EQ(url->db, 3);
}

TEST(RegistryUrlTest, RedisIpv6) {
  absl::StatusOr<RegistryUrl> url = ParseRegistryUrl("redis://[::1]:6379");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->address.host, "::1");
  EXPECT_EQ(url->address.port, 6379);
}

TEST(RegistryUrlTest, Sentinel) {
  absl::StatusOr<RegistryUrl> url =
      ParseRegistryUrl("redis-sentinel://s1:26379,s2:26380,10.1.1.1:26381/chat-primary");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->kind, RegistryUrl::Kind::kSentinel);
  ASSERT_EQ(url->sentinels.size(), 3u);
  EXPECT_EQ(url->sentinels[0].host, "s1");
  EXPECT_EQ(url->sentinels[0].port, 26379);
  EXPECT_EQ(url->sentinels[2].host, "10.1.1.1");
  EXPECT_EQ(url->sentinels[2].port, 26381);
  EXPECT_EQ(url->master_name, "chat-primary");
}

TEST(RegistryUrlTest, BadFormsSayWhatIsWrong) {
  const struct {
    const char* url;
    const char* why;
  } cases[] = {
      {"", "unknown form"},
      {"Memory", "unknown form"},
      {"redis:/h:1", "unknown form"},
      {"rediss://h:1", "unknown form"},
      {"redis://", "HOST:PORT"},
      {"redis://host", "HOST:PORT"},
      {"redis://:6379", "no host"},
      {"redis://host:0", "1-65535"},
      {"redis://host:65536", "1-65535"},
      {"redis://host:port", "1-65535"},
      {"redis://host:6379/", "database"},
      {"redis://host:6379/x", "database"},
      {"redis://host:6379/-1", "database"},
      {"redis://user@host:6379", "may not contain"},
      {"redis-sentinel://s1:26379,s2:26379", "MASTER_NAME"},
      {"redis-sentinel://s1:26379/", "master name is empty"},
      {"redis-sentinel:///chat", "HOST:PORT"},
      {"redis-sentinel://s1:26379,,s2:1/chat", "HOST:PORT"},
      {"redis-sentinel://s1,s2:1/chat", "HOST:PORT"},
  };
  for (const auto& c : cases) {
    absl::StatusOr<RegistryUrl> url = ParseRegistryUrl(c.url);
    ASSERT_FALSE(url.ok()) << c.url;
    EXPECT_EQ(url.status().code(), absl::StatusCode::kInvalidArgument) << c.url;
    EXPECT_THAT(url.status().message(), HasSubstr(c.why)) << c.url;
    EXPECT_THAT(url.status().message(), HasSubstr("--registry")) << c.url;
  }
}

}  // namespace
}  // namespace chat::connection
