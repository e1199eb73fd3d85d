#include "daemon/broker/token_cache.h"

#include <functional>
#include <mutex>

namespace connectbroker::broker {

size_t TokenCache::ShardOf(const std::string& key) {
  return std::hash<std::string>{}(key) % kShards;
}

TokenSnapshotPtr TokenCache::Find(const std::string& organization_id) const {
  const auto& shard = tokens_[ShardOf(organization_id)];
  std::shared_lock lock(shard.mu);
  auto it = shard.map.find(organization_id);
  return it == shard.map.end() ? nullptr : it->second;
}

std::optional<std::string> TokenCache::FindOrganization(const std::string& account_ref) const {
  const auto& shard = refs_[ShardOf(account_ref)];
  std::shared_lock lock(shard.mu);
  auto it = shard.map.find(account_ref);
  if (it == shard.map.end()) {
    return std::nullopt;
  }
  return it->second;
}

void TokenCache::Publish(TokenSnapshotPtr snapshot) {
  const std::string& org = snapshot->organization_id;
  std::string old_ref;
  {
    auto& shard = tokens_[ShardOf(org)];
    std::unique_lock lock(shard.mu);
    auto& slot = shard.map[org];
    if (slot) {
      old_ref = slot->account_ref;
    }
    slot = snapshot;
  }
  if (!old_ref.empty() && old_ref != snapshot->account_ref) {
    auto& shard = refs_[ShardOf(old_ref)];
    std::unique_lock lock(shard.mu);
    auto it = shard.map.find(old_ref);
    if (it != shard.map.end() && it->second == org) {
      shard.map.erase(it);
    }
  }
  if (!snapshot->account_ref.empty()) {
    auto& shard = refs_[ShardOf(snapshot->account_ref)];
    std::unique_lock lock(shard.mu);
    shard.map[snapshot->account_ref] = org;
  }
}

void TokenCache::Remove(const std::string& organization_id) {
  std::string ref;
  {
    auto& shard = tokens_[ShardOf(organization_id)];
    std::unique_lock lock(shard.mu);
    auto it = shard.map.find(organization_id);
    if (it == shard.map.end()) {
      return;
    }
    ref = it->second->account_ref;
    shard.map.erase(it);
  }
  if (!ref.empty()) {
    auto& shard = refs_[ShardOf(ref)];
    std::unique_lock lock(shard.mu);
    auto it = shard.map.find(ref);
    if (it != shard.map.end() && it->second == organization_id) {
      shard.map.erase(it);
    }
  }
}

size_t TokenCache::size() const {
  size_t n = 0;
  for (const auto& shard : tokens_) {
    std::shared_lock lock(shard.mu);
    n += shard.map.size();
  }
  return n;
}

}  // namespace connectbroker::broker
