// RefreshQueue: which grant is due for a refresh when, ordered by due time (monotonic clock).
// Plain data structure, not thread-safe: owned by the GrantManager on its event loop.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "daemon/common/clock.h"

namespace connectbroker::broker {

class RefreshQueue {
 public:
  // Schedules (or reschedules) `organization_id` at `due`.
  void Schedule(const std::string& organization_id, MonoTime due);
  // Removes it if scheduled.
  void Remove(const std::string& organization_id);
  // Earliest due time, if any.
  std::optional<MonoTime> NextDue() const;
  // Removes and returns up to `max` grants due at or before `now`, earliest first.
  std::vector<std::string> PopDue(MonoTime now, size_t max);
  std::optional<MonoTime> DueOf(const std::string& organization_id) const;
  size_t size() const { return by_org_.size(); }

 private:
  std::multimap<MonoTime, std::string> by_due_;
  std::unordered_map<std::string, std::multimap<MonoTime, std::string>::iterator> by_org_;
};

// A token bucket for the refresh rate toward Mollie: `rate` per second, up to `burst` at once.
class TokenBucket {
 public:
  TokenBucket(double rate_per_second, int burst, MonoTime now);
  // Takes one token if available at `now`.
  bool TryTake(MonoTime now);
  // When the next token will be available (now if one is).
  MonoTime NextAvailable(MonoTime now);

 private:
  void Refill(MonoTime now);
  double rate_;
  double burst_;
  double tokens_;
  MonoTime last_;
};

}  // namespace connectbroker::broker
