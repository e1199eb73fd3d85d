#include "daemon/broker/refresh_queue.h"

#include <algorithm>

namespace connectbroker::broker {

void RefreshQueue::Schedule(const std::string& organization_id, MonoTime due) {
  Remove(organization_id);
  auto it = by_due_.emplace(due, organization_id);
  by_org_[organization_id] = it;
}

void RefreshQueue::Remove(const std::string& organization_id) {
  auto it = by_org_.find(organization_id);
  if (it == by_org_.end()) {
    return;
  }
  by_due_.erase(it->second);
  by_org_.erase(it);
}

std::optional<MonoTime> RefreshQueue::NextDue() const {
  if (by_due_.empty()) {
    return std::nullopt;
  }
  return by_due_.begin()->first;
}

std::optional<MonoTime> RefreshQueue::DueOf(const std::string& organization_id) const {
  auto it = by_org_.find(organization_id);
  if (it == by_org_.end()) {
    return std::nullopt;
  }
  return it->second->first;
}

std::vector<std::string> RefreshQueue::PopDue(MonoTime now, size_t max) {
  std::vector<std::string> out;
  while (out.size() < max && !by_due_.empty() && by_due_.begin()->first <= now) {
    auto it = by_due_.begin();
    out.push_back(it->second);
    by_org_.erase(it->second);
    by_due_.erase(it);
  }
  return out;
}

TokenBucket::TokenBucket(double rate_per_second, int burst, MonoTime now)
    : rate_(rate_per_second), burst_(burst), tokens_(burst), last_(now) {}

void TokenBucket::Refill(MonoTime now) {
  if (now > last_) {
    double elapsed = std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
    last_ = now;
  }
}

bool TokenBucket::TryTake(MonoTime now) {
  Refill(now);
  if (tokens_ >= 1.0) {
    tokens_ -= 1.0;
    return true;
  }
  return false;
}

MonoTime TokenBucket::NextAvailable(MonoTime now) {
  Refill(now);
  if (tokens_ >= 1.0) {
    return now;
  }
  double wait = (1.0 - tokens_) / rate_;
  return now + std::chrono::duration_cast<MonoTime::duration>(std::chrono::duration<double>(wait));
}

}  // namespace connectbroker::broker
