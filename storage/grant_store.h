// GrantStore: durable home of every merchant grant, pending authorization and key check, and of
// the event log that records grant changes. Synchronous and thread-safe; every write is a RocksDB
// write with a synced WAL, so a call that returned OK survives a crash. Secrets are encrypted at
// rest (AES-256-GCM, organization id as associated data) and decrypted on read; a caller only
// ever sees plaintext GrantSecretsPlain. Events never hold secrets.
// Status codes: NotFound, AlreadyExists (account_ref taken, or insert over an existing grant),
// Aborted (generation mismatch: re-read and retry), DataLoss (corrupt record or failed
// decryption), FailedPrecondition (wrong key, record of a newer schema), InvalidArgument,
// Internal (RocksDB I/O).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/common/clock.h"
#include "daemon/common/redact.h"
#include "storage/records.pb.h"

namespace connectbroker::storage {

// Decrypted secrets of one grant.
struct GrantSecretsPlain {
  SecretString access_token;
  SecretString refresh_token;
};

struct StoredGrant {
  GrantRecord record;  // record.secrets holds the ciphertext as stored
  GrantSecretsPlain secrets;
};

struct ListPage {
  std::vector<GrantRecord> records;  // metadata only; secrets blob left in, never decrypted
  std::string next_page_token;       // empty on the last page
};

class GrantStore {
 public:
  virtual ~GrantStore() = default;

  // Writes `record` with `secrets` encrypted under the active key.
  // expected_generation: nullopt = insert, the grant must not exist (AlreadyExists otherwise);
  // a value = the stored grant's generation must equal it (Aborted otherwise, NotFound if gone).
  // Keeps the account_ref index in step (AlreadyExists if another grant holds the ref).
  // event: when not null, appended to the event log in the same synced batch as the grant, so
  // both or neither are stored. On success the store has set event->sequence (strictly
  // increasing, never reused, also across restarts) and event->schema_version; on any failure
  // nothing is written and event->sequence is 0.
  virtual absl::Status Put(const GrantRecord& record, const GrantSecretsPlain& secrets,
                           std::optional<uint64_t> expected_generation,
                           EventRecord* event = nullptr) = 0;

  virtual absl::StatusOr<StoredGrant> Get(std::string_view organization_id) = 0;

  // Organization id holding this account_ref, or NotFound.
  virtual absl::StatusOr<std::string> FindByAccountRef(std::string_view account_ref) = 0;

  // Every grant, decrypted (start-up).
  virtual absl::StatusOr<std::vector<StoredGrant>> LoadAll() = 0;

  // Grants ordered by organization id, optionally only those in `status` (UNSPECIFIED = all).
  // page_token is opaque (the last id of the previous page).
  virtual absl::StatusOr<ListPage> List(GrantStatus status, int page_size,
                                        std::string_view page_token) = 0;

  // Removes the grant and its index entry. With a value, the generation must match.
  // event: as for Put, appended atomically with the removal.
  virtual absl::Status Delete(std::string_view organization_id,
                              std::optional<uint64_t> expected_generation,
                              EventRecord* event = nullptr) = 0;

  // Event log. The store numbers the events; callers fill in the rest, time_ms included.
  // Appends an event on its own (app-wide events), synced; sets sequence and schema_version as
  // Put does (sequence stays 0 on failure). InvalidArgument for a newer schema_version.
  virtual absl::Status AppendEvent(EventRecord& event) = 0;
  // Events with sequence > after_sequence, oldest first, at most max_events (clamped to
  // 1..10000). Numbers may have gaps. FailedPrecondition for an event of a newer schema.
  virtual absl::StatusOr<std::vector<EventRecord>> ReadEvents(uint64_t after_sequence,
                                                              int max_events) = 0;
  // Sequence of the oldest retained event; 0 when the log is empty.
  virtual absl::StatusOr<uint64_t> OldestEventSequence() = 0;
  // Last sequence ever assigned; 0 when none was. Unchanged by trimming.
  virtual absl::StatusOr<uint64_t> LastEventSequence() = 0;
  // Bounded retention: removes the events beyond the newest keep_last, and the events older than
  // drop_before (time_ms < drop_before). Returns how many were removed. The log is trimmed from
  // its oldest end only, so a reader whose after_sequence is below OldestEventSequence() - 1
  // knows it missed events; an old event behind a newer one (wall clock stepped back) waits.
  virtual absl::StatusOr<int> TrimEvents(size_t keep_last, WallTime drop_before) = 0;

  // Pending authorizations, keyed by the OAuth state (the store keeps only its SHA-256).
  virtual absl::Status PutPending(std::string_view state, const PendingAuthorization& pending) = 0;
  // Single use: returns and deletes it. NotFound when unknown or already used;
  // DeadlineExceeded when past expires_at_ms at `now` (it is deleted as well).
  virtual absl::StatusOr<PendingAuthorization> TakePending(std::string_view state,
                                                           WallTime now) = 0;
  // Deletes pending authorizations expired at `now`; returns how many.
  virtual absl::StatusOr<int> PurgeExpiredPending(WallTime now) = 0;
};

}  // namespace connectbroker::storage
