#include "daemon/broker/refresh_queue.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/fake_clock.h"

namespace connectbroker::broker {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(RefreshQueueTest, PopsDueGrantsEarliestFirst) {
  testing::FakeClock clock;
  RefreshQueue q;
  MonoTime t0 = clock.MonotonicNow();
  q.Schedule("org_c", t0 + seconds(30));
  q.Schedule("org_a", t0 + seconds(10));
  q.Schedule("org_b", t0 + seconds(20));
  EXPECT_EQ(q.NextDue(), t0 + seconds(10));
  EXPECT_THAT(q.PopDue(clock.MonotonicNow(), 10), IsEmpty());
  clock.Advance(seconds(25));
  EXPECT_THAT(q.PopDue(clock.MonotonicNow(), 10), ElementsAre("org_a", "org_b"));
  EXPECT_EQ(q.size(), 1u);
  clock.Advance(seconds(5));
  EXPECT_THAT(q.PopDue(clock.MonotonicNow(), 10), ElementsAre("org_c"));
  EXPECT_FALSE(q.NextDue().has_value());
}

TEST(RefreshQueueTest, RescheduleReplacesTheEarlierEntry) {
  testing::FakeClock clock;
  RefreshQueue q;
  MonoTime t0 = clock.MonotonicNow();
  q.Schedule("org_a", t0 + seconds(10));
  q.Schedule("org_a", t0 + seconds(100));
  EXPECT_EQ(q.size(), 1u);
  EXPECT_EQ(q.DueOf("org_a"), t0 + seconds(100));
  clock.Advance(seconds(50));
  EXPECT_THAT(q.PopDue(clock.MonotonicNow(), 10), IsEmpty());
}

TEST(RefreshQueueTest, PopRespectsTheLimit) {
  testing::FakeClock clock;
  RefreshQueue q;
  for (int i = 0; i < 5; ++i) {
    q.Schedule("org_" + std::to_string(i), clock.MonotonicNow() + milliseconds(i));
  }
  clock.Advance(seconds(1));
  EXPECT_THAT(q.PopDue(clock.MonotonicNow(), 2), ElementsAre("org_0", "org_1"));
  EXPECT_EQ(q.size(), 3u);
}

TEST(RefreshQueueTest, RemoveForgetsTheGrant) {
  testing::FakeClock clock;
  RefreshQueue q;
  q.Schedule("org_a", clock.MonotonicNow());
  q.Remove("org_a");
  q.Remove("org_unknown");
  EXPECT_EQ(q.size(), 0u);
  EXPECT_FALSE(q.DueOf("org_a").has_value());
  EXPECT_THAT(q.PopDue(clock.MonotonicNow(), 10), IsEmpty());
}

TEST(TokenBucketTest, AllowsABurstThenTheRate) {
  testing::FakeClock clock;
  TokenBucket bucket(/*rate_per_second=*/2, /*burst=*/3, clock.MonotonicNow());
  int taken = 0;
  while (bucket.TryTake(clock.MonotonicNow())) {
    ++taken;
  }
  EXPECT_EQ(taken, 3);
  // 2 per second: the next token comes after 500 ms.
  EXPECT_EQ(bucket.NextAvailable(clock.MonotonicNow()), clock.MonotonicNow() + milliseconds(500));
  clock.Advance(milliseconds(499));
  EXPECT_FALSE(bucket.TryTake(clock.MonotonicNow()));
  clock.Advance(milliseconds(1));
  EXPECT_TRUE(bucket.TryTake(clock.MonotonicNow()));
  EXPECT_FALSE(bucket.TryTake(clock.MonotonicNow()));
}

TEST(TokenBucketTest, NeverHoldsMoreThanTheBurst) {
  testing::FakeClock clock;
  TokenBucket bucket(10, 2, clock.MonotonicNow());
  clock.Advance(seconds(3600));
  EXPECT_TRUE(bucket.TryTake(clock.MonotonicNow()));
  EXPECT_TRUE(bucket.TryTake(clock.MonotonicNow()));
  EXPECT_FALSE(bucket.TryTake(clock.MonotonicNow()));
}

TEST(TokenBucketTest, RateOverTimeMatchesTheBudget) {
  // Simulated 60 s of a scheduler polling every 10 ms with an unlimited backlog: the number of
  // refreshes admitted is burst + rate * 60.
  testing::FakeClock clock;
  TokenBucket bucket(5, 5, clock.MonotonicNow());
  int admitted = 0;
  for (int i = 0; i < 6000; ++i) {
    while (bucket.TryTake(clock.MonotonicNow())) {
      ++admitted;
    }
    clock.Advance(milliseconds(10));
  }
  EXPECT_GE(admitted, 5 + 5 * 60 - 1);
  EXPECT_LE(admitted, 5 + 5 * 60);
}

}  // namespace
}  // namespace connectbroker::broker
