// Event log of RocksDbGrantStore: the "events" column family (8-byte big-endian sequence ->
// EventRecord) and the "meta" record events/last_sequence. Internal to storage/. Stateless
// functions over the database: reads are safe from any thread; the caller serialises the writes
// and the numbering (RocksDbGrantStore's write mutex).
// Status codes: InvalidArgument (event of a newer schema offered for writing), DataLoss (corrupt
// key or record), FailedPrecondition (stored event of a newer schema), Internal (RocksDB I/O).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/common/clock.h"
#include "storage/records.pb.h"
#include "storage/rocksdb_db.h"

namespace connectbroker::storage {

// ReadEventsAfter returns at most this many events per call.
inline constexpr int kMaxReadEvents = 10000;

// The last sequence ever assigned: the larger of the meta record and the last key; 0 if none.
absl::StatusOr<uint64_t> RecoverLastEventSequence(RocksDb& db);

// InvalidArgument when `event` cannot be written by this version.
absl::Status ValidateEvent(const EventRecord& event);

// Adds `event` under `sequence` (with sequence and schema_version set) and the meta record of the
// last sequence to `batch`.
absl::Status AddEventToBatch(RocksDb& db, const EventRecord& event, uint64_t sequence,
                             rocksdb::WriteBatch& batch);

// Events with sequence > after_sequence, oldest first; max_events is clamped to
// 1..kMaxReadEvents.
absl::StatusOr<std::vector<EventRecord>> ReadEventsAfter(RocksDb& db, uint64_t after_sequence,
                                                         int max_events);

// Sequence of the first event; 0 when the log is empty.
absl::StatusOr<uint64_t> FirstEventSequence(RocksDb& db);

// Removes the longest run of oldest events that are beyond the newest keep_last, older than
// drop_before or unparseable, with one range tombstone in one synced write. Returns how many
// were removed.
absl::StatusOr<int> TrimEventLog(RocksDb& db, size_t keep_last, WallTime drop_before);

}  // namespace connectbroker::storage
