// When to refresh, and how long to wait after a failure: pure functions of (times, policy, a
// random sample), so they are tested without clocks or randomness of their own.
#pragma once

#include <chrono>
#include <optional>

#include "daemon/common/clock.h"

namespace connectbroker::broker {

struct RefreshPolicy {
  double margin = 0.25;  // fraction of the lifetime left when we refresh
  double jitter = 0.10;  // +- fraction of the lifetime, uniform
  std::chrono::milliseconds backoff_initial{1000};
  std::chrono::milliseconds backoff_max{300000};
};

// The wall time at which a token issued at `issued_at` and expiring at `expires_at` should be
// refreshed: when margin +- jitter of its lifetime is left. `u` is uniform in [0, 1).
// Never later than expires_at, never earlier than issued_at.
WallTime ComputeRefreshAt(WallTime issued_at, WallTime expires_at, const RefreshPolicy& policy,
                          double u);

// Delay before retry number `attempt` (1 = the first retry) after a transient failure:
// "full jitter" exponential backoff, u * min(backoff_max, backoff_initial * 2^(attempt-1)),
// but at least Mollie's Retry-After when it sent one. `u` is uniform in [0, 1).
std::chrono::milliseconds BackoffDelay(int attempt, const RefreshPolicy& policy, double u,
                                       std::optional<std::chrono::seconds> retry_after);

}  // namespace connectbroker::broker
