#include "message-service/id_generator.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace chat::message {
namespace {

constexpr char kCrockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
constexpr int64_t kNow = 1764050000123;

// The millisecond time in the first 10 characters, as in a ULID.
int64_t UlidTime(const std::string& id) {
  int64_t t = 0;
  for (char c : id.substr(0, 10)) t = t * 32 + (std::string(kCrockford).find(c));
  return t;
}

TEST(IdGeneratorTest, IdsAre26CrockfordCharacters) {
  IdGenerator ids(3);
  for (int i = 0; i < 1000; ++i) {
    const std::string id = ids.Next(kNow + i);
    ASSERT_EQ(id.size(), 26u) << id;
    ASSERT_EQ(id.find_first_not_of(kCrockford), std::string::npos)
        << id << " has a character outside the Crockford base32 alphabet (no I, L, O, U)";
  }
}

TEST(IdGeneratorTest, TheFirstTenCharactersAreTheTimeAsInAUlid) {
  IdGenerator ids(65535);
  EXPECT_EQ(UlidTime(ids.Next(kNow)), kNow);
  EXPECT_EQ(UlidTime(ids.Next(281474976710655)), 281474976710655) << "the largest 48-bit time";
}

TEST(IdGeneratorTest, StrictlyIncreasingAsTheClockAdvances) {
  IdGenerator ids(1);
  std::string previous = ids.Next(kNow);
  for (int i = 1; i < 2000; ++i) {
    std::string id = ids.Next(kNow + i);
    ASSERT_LT(previous, id) << "at step " << i;
    previous = std::move(id);
  }
}

TEST(IdGeneratorTest, StrictlyIncreasingWhenTheClockRepeats) {
  IdGenerator ids(1);
  std::string previous = ids.Next(kNow);
  for (int i = 0; i < 100000; ++i) {
    std::string id = ids.Next(kNow);
    ASSERT_LT(previous, id) << "at step " << i << " within one millisecond";
    previous = std::move(id);
  }
}

TEST(IdGeneratorTest, StrictlyIncreasingWhenTheClockStepsBack) {
  IdGenerator ids(1);
  std::string previous = ids.Next(kNow);
  for (int64_t t : {kNow - 1, kNow - 60'000, int64_t{0}, kNow, kNow + 1, kNow - 5}) {
    std::string id = ids.Next(t);
    EXPECT_LT(previous, id) << "after the clock read " << t;
    EXPECT_GE(UlidTime(id), kNow) << "the id's time must not go back either";
    previous = std::move(id);
  }
}

TEST(IdGeneratorTest, DifferentReplicasNeverCollide) {
  // Worst case for a collision: every replica issues its ids in the same
  // millisecond. Each replica starts its sequence at a random point, so equal
  // sequences are likely across replicas; the replica id must keep them apart.
  absl::flat_hash_set<std::string> seen;
  constexpr int kPerReplica = 50000;
  for (uint16_t replica : {0, 1, 2, 255, 256, 65535}) {
    IdGenerator ids(replica);
    for (int i = 0; i < kPerReplica; ++i) {
      std::string id = ids.Next(kNow);
      ASSERT_TRUE(seen.insert(id).second) << "duplicate " << id << " from replica " << replica;
    }
  }
}

TEST(IdGeneratorTest, TwoGeneratorsWithTheSameReplicaIdStillDiffer) {
  // Two processes misconfigured with one replica id: the random starting
  // sequence keeps them apart in practice.
  IdGenerator a(9);
  IdGenerator b(9);
  EXPECT_NE(a.Next(kNow), b.Next(kNow));
}

TEST(IdGeneratorTest, ConcurrentCallersGetUniqueIds) {
  IdGenerator ids(4);
  constexpr int kThreads = 4;
  constexpr int kEach = 20000;
  std::vector<std::vector<std::string>> out(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) out[t].push_back(ids.Next(kNow));
    });
  }
  for (auto& t : threads) t.join();
  absl::flat_hash_set<std::string> seen;
  for (const auto& v : out) {
    for (size_t i = 0; i < v.size(); ++i) {
      ASSERT_TRUE(seen.insert(v[i]).second) << "duplicate " << v[i];
      if (i > 0) {
        ASSERT_LT(v[i - 1], v[i]) << "one caller's ids went backwards";
      }
    }
  }
}

}  // namespace
}  // namespace chat::message
