// GrantStore: durable home of every merchant grant, pending authorization and key check.
// Synchronous and thread-safe; every write is a RocksDB write with a synced WAL, so a call that
// returned OK survives a crash. Secrets are encrypted at rest (AES-256-GCM, organization id as
// associated data) and decrypted on read; a caller only ever sees plaintext GrantSecretsPlain.
// Status codes: NotFound, AlreadyExists (account_ref taken, or insert over an existing grant),
// Aborted (generation mismatch: re-read and retry), DataLoss (corrupt record or failed
// decryption), FailedPrecondition (wrong key), Internal (RocksDB I/O).
#pragma once

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
  virtual absl::Status Put(const GrantRecord& record, const GrantSecretsPlain& secrets,
                           std::optional<uint64_t> expected_generation) = 0;

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
  virtual absl::Status Delete(std::string_view organization_id,
                              std::optional<uint64_t> expected_generation) = 0;

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
