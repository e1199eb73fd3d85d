#include "daemon/broker/refresh_policy.h"

#include <gtest/gtest.h>

#include "tests/support/fake_clock.h"

namespace connectbroker::broker {
namespace {

using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

class RefreshPolicyTest : public ::testing::Test {
 protected:
  testing::FakeClock clock_;
  RefreshPolicy policy_;  // margin 0.25, jitter 0.10
};

TEST_F(RefreshPolicyTest, RefreshesWhenAQuarterOfTheLifetimeIsLeftWithoutJitter) {
  WallTime issued = clock_.Now();
  WallTime expires = issued + minutes(60);
  // u = 0.5 is the middle of the jitter range: exactly the margin.
  EXPECT_EQ(ComputeRefreshAt(issued, expires, policy_, 0.5), expires - minutes(15));
}

TEST_F(RefreshPolicyTest, JitterSpreadsWithinPlusMinusTenPercentOfTheLifetime) {
  WallTime issued = clock_.Now();
  WallTime expires = issued + minutes(60);
  EXPECT_EQ(ComputeRefreshAt(issued, expires, policy_, 0.0), expires - minutes(9));
  WallTime latest_u = ComputeRefreshAt(issued, expires, policy_, 0.999999);
  EXPECT_LE(latest_u, expires - minutes(20));
  EXPECT_GT(latest_u, expires - minutes(21) - seconds(1));
}

TEST_F(RefreshPolicyTest, NeverOutsideTheLifetime) {
  WallTime issued = clock_.Now();
  RefreshPolicy wide{.margin = 0.9, .jitter = 0.5};
  WallTime expires = issued + seconds(20);
  for (double u : {0.0, 0.25, 0.5, 0.75, 0.999}) {
    WallTime at = ComputeRefreshAt(issued, expires, wide, u);
    EXPECT_GE(at, issued);
    EXPECT_LE(at, expires);
  }
}

TEST_F(RefreshPolicyTest, AlreadyExpiredTokenIsDueAtIssue) {
  WallTime t = clock_.Now();
  EXPECT_EQ(ComputeRefreshAt(t, t - seconds(1), policy_, 0.5), t);
}

TEST_F(RefreshPolicyTest, BackoffGrowsExponentiallyUpToTheCap) {
  RefreshPolicy p{.backoff_initial = milliseconds(1000), .backoff_max = milliseconds(8000)};
  // u just below 1 gives the ceiling of each step.
  const double u = 0.9999999;
  EXPECT_NEAR(BackoffDelay(1, p, u, std::nullopt).count(), 1000, 1);
  EXPECT_NEAR(BackoffDelay(2, p, u, std::nullopt).count(), 2000, 1);
  EXPECT_NEAR(BackoffDelay(3, p, u, std::nullopt).count(), 4000, 1);
  EXPECT_NEAR(BackoffDelay(4, p, u, std::nullopt).count(), 8000, 1);
  EXPECT_NEAR(BackoffDelay(50, p, u, std::nullopt).count(), 8000, 1);
  EXPECT_NEAR(BackoffDelay(1000, p, u, std::nullopt).count(), 8000, 1);
}

TEST_F(RefreshPolicyTest, BackoffIsFullJitter) {
  RefreshPolicy p{.backoff_initial = milliseconds(1000), .backoff_max = milliseconds(8000)};
  EXPECT_EQ(BackoffDelay(3, p, 0.0, std::nullopt), milliseconds(0));
  EXPECT_EQ(BackoffDelay(3, p, 0.5, std::nullopt), milliseconds(2000));
}

TEST_F(RefreshPolicyTest, RetryAfterIsAFloor) {
  RefreshPolicy p{.backoff_initial = milliseconds(1000), .backoff_max = milliseconds(8000)};
  EXPECT_EQ(BackoffDelay(1, p, 0.5, seconds(30)), milliseconds(30000));
  // A Retry-After shorter than the backoff does not shorten it.
  EXPECT_EQ(BackoffDelay(4, p, 0.5, seconds(1)), milliseconds(4000));
}

TEST_F(RefreshPolicyTest, AttemptZeroOrNegativeCountsAsFirst) {
  RefreshPolicy p{.backoff_initial = milliseconds(1000), .backoff_max = milliseconds(8000)};
  EXPECT_EQ(BackoffDelay(0, p, 0.5, std::nullopt), milliseconds(500));
  EXPECT_EQ(BackoffDelay(-3, p, 0.5, std::nullopt), milliseconds(500));
}

}  // namespace
}  // namespace connectbroker::broker
