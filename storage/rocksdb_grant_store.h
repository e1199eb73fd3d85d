// RocksDbGrantStore: the GrantStore on a local RocksDB database. Synchronous and thread-safe:
// reads go straight to RocksDB, writes (read-check-write sequences) are serialised by one mutex
// and land as one synced WriteBatch each. Owns the database from Open until destruction; one
// process at a time (RocksDB's LOCK file).
// Open refuses (FailedPrecondition, having written nothing) a key file that does not match the
// database, a database of a newer schema and a data directory in use by another process.
// Column families: "grants" (org id -> GrantRecord), "account_refs" (account_ref -> org id),
// "pending" (SHA-256 hex of the state -> PendingAuthorization), "events" (8-byte big-endian
// sequence -> EventRecord), "meta" ("schema_version", "keycheck/<key_id>" -> KeyCheck,
// "events/last_sequence"). Event numbers are assigned under the write mutex, in the batch of the
// change they describe, and recovered at Open.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "daemon/common/random.h"
#include "storage/grant_store.h"
#include "storage/key_ring.h"

namespace rocksdb {
class WriteBatch;
}  // namespace rocksdb

namespace connectbroker::storage {

class RocksDb;  // storage/rocksdb_db.h, which holds the RocksDB includes

class RocksDbGrantStore final : public GrantStore {
 public:
  struct Options {
    std::string path;  // data directory
    bool create_if_missing = true;
  };

  // `random` supplies the AES-GCM nonces and must outlive the store.
  static absl::StatusOr<std::unique_ptr<RocksDbGrantStore>> Open(const Options& options,
                                                                 KeyRing keys, Random& random);

  ~RocksDbGrantStore() override;
  RocksDbGrantStore(const RocksDbGrantStore&) = delete;
  RocksDbGrantStore& operator=(const RocksDbGrantStore&) = delete;

  // GrantStore
  // (The default arguments are repeated for callers that hold the concrete type.)
  absl::Status Put(const GrantRecord& record, const GrantSecretsPlain& secrets,
                   std::optional<uint64_t> expected_generation,
                   EventRecord* event = nullptr) override;
  absl::StatusOr<StoredGrant> Get(std::string_view organization_id) override;
  absl::StatusOr<std::string> FindByAccountRef(std::string_view account_ref) override;
  absl::StatusOr<std::vector<StoredGrant>> LoadAll() override;
  // page_size is clamped to 1..1000; 0 or less means 100.
  absl::StatusOr<ListPage> List(GrantStatus status, int page_size,
                                std::string_view page_token) override;
  absl::Status Delete(std::string_view organization_id, std::optional<uint64_t> expected_generation,
                      EventRecord* event = nullptr) override;
  // AlreadyExists if the state is already pending (states are random and single use).
  absl::Status PutPending(std::string_view state, const PendingAuthorization& pending) override;
  // Expired means now >= expires_at_ms.
  absl::StatusOr<PendingAuthorization> TakePending(std::string_view state, WallTime now) override;
  // Also removes pending records that no longer parse (they could never be taken).
  absl::StatusOr<int> PurgeExpiredPending(WallTime now) override;
  absl::Status AppendEvent(EventRecord& event) override;
  absl::StatusOr<std::vector<EventRecord>> ReadEvents(uint64_t after_sequence,
                                                      int max_events) override;
  absl::StatusOr<uint64_t> OldestEventSequence() override;
  // After a failed event write this includes the number that write used (never reused).
  absl::StatusOr<uint64_t> LastEventSequence() override;
  // Unparseable events at the old end are removed too (they could never be read).
  absl::StatusOr<int> TrimEvents(size_t keep_last, WallTime drop_before) override;

  // Flushes memtables to SST files, so tests can inspect what reaches them.
  absl::Status FlushForTest();

 private:
  RocksDbGrantStore(std::unique_ptr<RocksDb> db, KeyRing keys, Random& random,
                    uint64_t last_event_sequence);

  // Reads and decodes a grant; nullopt when absent.
  absl::StatusOr<std::optional<GrantRecord>> ReadGrant(std::string_view organization_id);

  // Writes `batch`, with `event` (if any) appended under the next sequence; on success sets the
  // event's sequence and schema_version.
  absl::Status WriteWithEvent(rocksdb::WriteBatch& batch, EventRecord* event, std::string_view what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);

  const std::unique_ptr<RocksDb> db_;
  const KeyRing keys_;
  Random& random_;
  // Serialises every read-check-write sequence (compare-and-set, index upkeep, single-use
  // pending), so checks and the batch that follows see the same state.
  absl::Mutex write_mu_;
  // Last event sequence handed out: written, or burned by a failed write.
  uint64_t last_event_sequence_ ABSL_GUARDED_BY(write_mu_);
};

}  // namespace connectbroker::storage
