// Record codec: RocksDB values <-> storage records. Checks schema versions and record integrity,
// seals and opens grant secrets with the key ring, and names the keys under which records live.
// Pure functions over their arguments; safe from any thread.
// Status codes: DataLoss (unparseable or inconsistent record, failed decryption),
// FailedPrecondition (record written by a newer schema, key not in the ring, key check mismatch),
// Internal (OpenSSL failure).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/common/random.h"
#include "storage/grant_store.h"
#include "storage/key_ring.h"
#include "storage/records.pb.h"

namespace connectbroker::storage {

// The record schema this code reads and writes. Records and databases with a higher version were
// written by a newer connect-broker and are refused rather than misread.
inline constexpr uint32_t kSchemaVersion = 1;

// Encrypts `secrets` under the active key with record.organization_id as associated data and
// stores the blob in record.secrets.
absl::Status SealSecrets(const KeyRing& keys, Random& random, const GrantSecretsPlain& secrets,
                         GrantRecord& record);

// Decrypts record.secrets with `organization_id` (the key the record was read under) as
// associated data, so a record moved to another organization's key does not open.
absl::StatusOr<GrantSecretsPlain> OpenSecrets(const KeyRing& keys, const GrantRecord& record,
                                              std::string_view organization_id);

// Parses a value of the "grants" column family stored under `organization_id`.
absl::StatusOr<GrantRecord> DecodeGrantRecord(std::string_view value,
                                              std::string_view organization_id);
// Parses a value of the "pending" column family.
absl::StatusOr<PendingAuthorization> DecodePending(std::string_view value);

// Parses a value of the "events" column family stored under `sequence`.
absl::StatusOr<EventRecord> DecodeEventRecord(std::string_view value, uint64_t sequence);

// "events" key of a sequence: 8 bytes big-endian, so that RocksDB's bytewise order is sequence
// order.
std::string EventKey(uint64_t sequence);
// Inverse of EventKey; DataLoss for a key that is not 8 bytes.
absl::StatusOr<uint64_t> ParseEventKey(std::string_view key);
// "meta" key of the last sequence ever assigned (decimal), written in every batch that appends
// an event, so that trimming the whole log does not let numbers be reused after a restart.
inline constexpr std::string_view kEventsLastSequenceKey = "events/last_sequence";

// "pending" key of an OAuth state: lowercase hex SHA-256, so the state itself is never stored.
std::string PendingKey(std::string_view state);

// Key checks ("keycheck/<key_id>" in "meta"): a known plaintext under each key of the ring, so a
// wrong key file is caught at start-up.
std::string KeyCheckKey(std::string_view key_id);
inline constexpr std::string_view kKeyCheckPrefix = "keycheck/";
absl::StatusOr<KeyCheck> MakeKeyCheck(const KeyRing& keys, std::string_view key_id, Random& random);
// OK when `value` (stored under KeyCheckKey(key_id)) decrypts to the known plaintext with the
// ring's key of that id; FailedPrecondition("... does not match ...; refusing to start")
// otherwise.
absl::Status VerifyKeyCheck(const KeyRing& keys, std::string_view key_id, std::string_view value);

}  // namespace connectbroker::storage
