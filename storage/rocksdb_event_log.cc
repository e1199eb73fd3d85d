#include "storage/rocksdb_event_log.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "daemon/common/log.h"
#include "daemon/common/status_macros.h"
#include "daemon/common/strings.h"
#include "storage/record_codec.h"

namespace connectbroker::storage {

absl::StatusOr<uint64_t> RecoverLastEventSequence(RocksDb& db) {
  uint64_t last = 0;
  ASSIGN_OR_RETURN(std::optional<std::string> stored, db.Read(db.meta(), kEventsLastSequenceKey));
  if (stored.has_value() && !absl::SimpleAtoi(*stored, &last)) {
    return absl::DataLossError(
        StrCat("database at ", db.path(), " has an unreadable last event sequence"));
  }
  // Both are written in the same batch; the newest key also covers a lost meta record.
  std::unique_ptr<rocksdb::Iterator> it = db.NewIterator(db.events());
  it->SeekToLast();
  if (it->Valid()) {
    ASSIGN_OR_RETURN(uint64_t newest, ParseEventKey(it->key().ToStringView()));
    last = std::max(last, newest);
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading the event log"));
  return last;
}

absl::Status ValidateEvent(const EventRecord& event) {
  if (event.schema_version() > kSchemaVersion) {
    return absl::InvalidArgumentError(StrCat("event has schema_version ", event.schema_version(),
                                             ", newer than ", kSchemaVersion));
  }
  return absl::OkStatus();
}

absl::Status AddEventToBatch(RocksDb& db, const EventRecord& event, uint64_t sequence,
                             rocksdb::WriteBatch& batch) {
  EventRecord stored = event;
  stored.set_schema_version(kSchemaVersion);
  stored.set_sequence(sequence);
  RETURN_IF_ERROR(
      FromRocks(batch.Put(db.events(), EventKey(sequence), stored.SerializeAsString()), "batch"));
  return FromRocks(batch.Put(db.meta(), kEventsLastSequenceKey, StrCat(sequence)), "batch");
}

absl::StatusOr<std::vector<EventRecord>> ReadEventsAfter(RocksDb& db, uint64_t after_sequence,
                                                         int max_events) {
  const size_t limit = static_cast<size_t>(std::clamp(max_events, 1, kMaxReadEvents));
  std::vector<EventRecord> events;
  if (after_sequence == std::numeric_limits<uint64_t>::max()) {
    return events;
  }
  std::unique_ptr<rocksdb::Iterator> it = db.NewIterator(db.events());
  for (it->Seek(EventKey(after_sequence + 1)); it->Valid() && events.size() < limit; it->Next()) {
    ASSIGN_OR_RETURN(uint64_t sequence, ParseEventKey(it->key().ToStringView()));
    ASSIGN_OR_RETURN(EventRecord event, DecodeEventRecord(it->value().ToStringView(), sequence));
    events.push_back(std::move(event));
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading the event log"));
  return events;
}

absl::StatusOr<uint64_t> FirstEventSequence(RocksDb& db) {
  std::unique_ptr<rocksdb::Iterator> it = db.NewIterator(db.events());
  it->SeekToFirst();
  RETURN_IF_ERROR(FromRocks(it->status(), "reading the event log"));
  if (!it->Valid()) {
    return 0;
  }
  return ParseEventKey(it->key().ToStringView());
}

absl::StatusOr<int> TrimEventLog(RocksDb& db, size_t keep_last, WallTime drop_before) {
  const int64_t drop_before_ms = ToUnixMillis(drop_before);
  std::unique_ptr<rocksdb::Iterator> it = db.NewIterator(db.events());

  // Events below keep_from are beyond the newest keep_last. Found by stepping back from the
  // newest, so the cost is bounded by keep_last rather than by the length of the log.
  const bool drop_all = keep_last == 0;
  uint64_t keep_from = 0;
  if (!drop_all) {
    it->SeekToLast();
    for (size_t i = 1; it->Valid() && i < keep_last; ++i) {
      it->Prev();
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "reading the event log"));
    if (it->Valid()) {
      ASSIGN_OR_RETURN(keep_from, ParseEventKey(it->key().ToStringView()));
    }
  }

  // Only a prefix goes, so the log stays contiguous and OldestEventSequence tells a reader
  // whether it missed anything.
  int removed = 0;
  uint64_t first = 0;
  uint64_t last = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    ASSIGN_OR_RETURN(uint64_t sequence, ParseEventKey(it->key().ToStringView()));
    bool drop = drop_all || sequence < keep_from;
    if (!drop) {
      // Parsed without the schema check: a newer event's time still says how old it is.
      EventRecord event;
      if (!event.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        CB_LOG(WARNING) << "removing event " << sequence << ", which does not parse";
        drop = true;
      } else {
        drop = event.time_ms() < drop_before_ms;
      }
    }
    if (!drop) {
      break;
    }
    if (removed == 0) {
      first = sequence;
    }
    last = sequence;
    ++removed;
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading the event log"));
  it.reset();
  if (removed == 0) {
    return 0;
  }
  // One range tombstone instead of one per event. DeleteRange's end is exclusive and `last` may
  // be the largest key there is, so `last` is deleted on its own.
  rocksdb::WriteBatch batch;
  if (first < last) {
    RETURN_IF_ERROR(
        FromRocks(batch.DeleteRange(db.events(), EventKey(first), EventKey(last)), "batch"));
  }
  RETURN_IF_ERROR(FromRocks(batch.Delete(db.events(), EventKey(last)), "batch"));
  RETURN_IF_ERROR(db.Write(batch, "trimming the event log"));
  return removed;
}

}  // namespace connectbroker::storage
