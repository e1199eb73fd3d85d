#include "daemon/broker/refresh_policy.h"

#include <algorithm>
#include <cmath>

namespace connectbroker::broker {

WallTime ComputeRefreshAt(WallTime issued_at, WallTime expires_at, const RefreshPolicy& policy,
                          double u) {
  if (expires_at <= issued_at) {
    return issued_at;
  }
  auto lifetime = expires_at - issued_at;
  double left_fraction = policy.margin + (2.0 * u - 1.0) * policy.jitter;
  left_fraction = std::clamp(left_fraction, 0.0, 1.0);
  auto left = std::chrono::duration_cast<WallTime::duration>(
      std::chrono::duration<double, WallTime::period>(static_cast<double>(lifetime.count()) *
                                                      left_fraction));
  return expires_at - left;
}

std::chrono::milliseconds BackoffDelay(int attempt, const RefreshPolicy& policy, double u,
                                       std::optional<std::chrono::seconds> retry_after) {
  attempt = std::max(attempt, 1);
  double cap = static_cast<double>(policy.backoff_max.count());
  double base = static_cast<double>(policy.backoff_initial.count()) *
                std::pow(2.0, std::min(attempt - 1, 62));
  double ceiling = std::min(cap, base);
  auto delay = std::chrono::milliseconds(static_cast<int64_t>(u * ceiling));
  if (retry_after && *retry_after > delay) {
    delay = std::chrono::duration_cast<std::chrono::milliseconds>(*retry_after);
  }
  return delay;
}

}  // namespace connectbroker::broker
