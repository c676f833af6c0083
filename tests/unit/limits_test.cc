#include "edge/limits.h"

#include "gtest/gtest.h"

namespace chat::edge {
namespace {

// How many of `attempts` takes at `now_ms` succeed.
int Takes(TokenBucket& bucket, int attempts, int64_t now_ms) {
  int ok = 0;
  for (int i = 0; i < attempts; ++i) ok += bucket.TryTake(now_ms) ? 1 : 0;
  return ok;
}

TEST(TokenBucketTest, StartsFullAndRefusesBeyondTheBurst) {
  TokenBucket bucket(/*rate=*/5, /*burst=*/10, /*now_ms=*/1000);
  EXPECT_EQ(Takes(bucket, 20, 1000), 10);
}

TEST(TokenBucketTest, RefillsAtTheRate) {
  TokenBucket bucket(/*rate=*/50, /*burst=*/50, 0);
  ASSERT_EQ(Takes(bucket, 50, 0), 50);
  EXPECT_FALSE(bucket.TryTake(10)) << "10 ms at 50/s is half a token";
  EXPECT_TRUE(bucket.TryTake(20)) << "20 ms at 50/s is one token";
  EXPECT_FALSE(bucket.TryTake(20));
  EXPECT_EQ(Takes(bucket, 100, 1020), 50) << "one second later: exactly 50 more";
}

TEST(TokenBucketTest, NeverSavesMoreThanTheBurst) {
  TokenBucket bucket(/*rate=*/10, /*burst=*/3, 0);
  ASSERT_EQ(Takes(bucket, 3, 0), 3);
  EXPECT_EQ(Takes(bucket, 100, 3'600'000), 3) << "an idle hour still allows only the burst";
}

TEST(TokenBucketTest, ClockGoingBackwardsAddsNothing) {
  TokenBucket bucket(/*rate=*/1, /*burst=*/1, 10'000);
  ASSERT_TRUE(bucket.TryTake(10'000));
  EXPECT_FALSE(bucket.TryTake(5'000));
  EXPECT_FALSE(bucket.TryTake(10'500)) << "the earlier timestamp must not have reset the refill";
  EXPECT_TRUE(bucket.TryTake(11'000));
}

TEST(WindowCounterTest, OverOnlyAfterMoreThanMaxInTheWindow) {
  WindowCounter counter(/*max=*/3, /*window_ms=*/1000);
  EXPECT_FALSE(counter.AddAndCheck(0));
  EXPECT_FALSE(counter.AddAndCheck(100));
  EXPECT_FALSE(counter.AddAndCheck(200)) << "exactly max is allowed";
  EXPECT_TRUE(counter.AddAndCheck(300)) << "the 4th in 1 s is over a max of 3";
}

TEST(WindowCounterTest, OldEventsLeaveTheWindow) {
  WindowCounter counter(/*max=*/2, /*window_ms=*/1000);
  EXPECT_FALSE(counter.AddAndCheck(0));
  EXPECT_FALSE(counter.AddAndCheck(500));
  EXPECT_FALSE(counter.AddAndCheck(1000)) << "the event at 0 is a full window old";
  EXPECT_TRUE(counter.AddAndCheck(1001)) << "500, 1000, 1001 are within 1 s";
  EXPECT_FALSE(counter.AddAndCheck(5000)) << "after a quiet period the count starts over";
}

TEST(WindowCounterTest, SteadyTrickleBelowTheLimitIsNeverOver) {
  WindowCounter counter(/*max=*/10, /*window_ms=*/60'000);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_FALSE(counter.AddAndCheck(i * 6'001)) << "event " << i << " (one per 6.001 s)";
  }
}

}  // namespace
}  // namespace chat::edge
