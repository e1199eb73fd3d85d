// TokenCache: the hot path's read-mostly view of every grant's current access token.
// Readers (gRPC threads) take a shard's reader lock just long enough to copy a shared_ptr to an
// immutable snapshot; the GrantManager publishes a new snapshot after the durable write.
// Thread-safe.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "daemon/common/clock.h"
#include "daemon/common/redact.h"
#include "storage/records.pb.h"

namespace connectbroker::broker {

struct TokenSnapshot {
  std::string organization_id;
  std::string account_ref;
  SecretString access_token;
  WallTime expires_at;
  std::vector<std::string> scopes;
  uint64_t generation = 0;
  storage::GrantStatus status = storage::GRANT_STATUS_UNSPECIFIED;
};
using TokenSnapshotPtr = std::shared_ptr<const TokenSnapshot>;

class TokenCache {
 public:
  TokenSnapshotPtr Find(const std::string& organization_id) const;
  std::optional<std::string> FindOrganization(const std::string& account_ref) const;
  // Publishes (replaces) the snapshot of snapshot->organization_id, and its account_ref mapping.
  void Publish(TokenSnapshotPtr snapshot);
  void Remove(const std::string& organization_id);
  size_t size() const;

 private:
  static constexpr size_t kShards = 32;
  template <typename V>
  struct Shard {
    mutable std::shared_mutex mu;
    std::unordered_map<std::string, V> map;
  };
  static size_t ShardOf(const std::string& key);

  std::array<Shard<TokenSnapshotPtr>, kShards> tokens_;
  std::array<Shard<std::string>, kShards> refs_;
};

}  // namespace connectbroker::broker
