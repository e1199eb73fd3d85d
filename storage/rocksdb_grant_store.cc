#include "storage/rocksdb_grant_store.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "daemon/common/log.h"
#include "daemon/common/status_macros.h"
#include "daemon/common/strings.h"
#include "storage/record_codec.h"
#include "storage/rocksdb_db.h"
#include "storage/rocksdb_event_log.h"

namespace connectbroker::storage {
namespace {

// Debian's abseil has its own absl::string_view, which std::string_view does not convert to.
std::string CHexEscape(std::string_view s) {
  return absl::CHexEscape(absl::string_view(s.data(), s.size()));
}

constexpr char kSchemaVersionKey[] = "schema_version";
constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;

std::string Quoted(std::string_view id) { return StrCat("'", CHexEscape(id), "'"); }

// Checks the schema version and every key check before writing anything: with a wrong key file
// the daemon must refuse to start and leave the database as it found it. (RocksDB itself still
// rotates its LOG and MANIFEST on open; no record changes.)
absl::Status PrepareMeta(RocksDb& db, const KeyRing& keys, Random& random) {
  ASSIGN_OR_RETURN(std::optional<std::string> version, db.Read(db.meta(), kSchemaVersionKey));
  if (version.has_value()) {
    uint32_t v = 0;
    if (!absl::SimpleAtoi(*version, &v)) {
      return absl::DataLossError(
          StrCat("database at ", db.path(), " has an unreadable schema version"));
    }
    if (v > kSchemaVersion) {
      return absl::FailedPreconditionError(
          StrCat("database at ", db.path(), " has schema version ", v,
                 ", but this connect-broker supports up to ", kSchemaVersion,
                 " (written by a newer version?); refusing to start"));
    }
  }

  std::vector<std::string> db_key_ids;
  bool any_key_known = false;
  std::unique_ptr<rocksdb::Iterator> it = db.NewIterator(db.meta());
  for (it->Seek(kKeyCheckPrefix); it->Valid() && it->key().starts_with(kKeyCheckPrefix);
       it->Next()) {
    std::string key_id = it->key().ToString().substr(kKeyCheckPrefix.size());
    if (keys.Contains(key_id)) {
      RETURN_IF_ERROR(VerifyKeyCheck(keys, key_id, it->value().ToStringView()));
      any_key_known = true;
    }
    db_key_ids.push_back(std::move(key_id));
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading key checks"));
  it.reset();
  if (!db_key_ids.empty() && !any_key_known) {
    return absl::FailedPreconditionError(
        StrCat("none of the encryption keys in the key file was used for the database at ",
               db.path(), "; key ids in database: ", CHexEscape(absl::StrJoin(db_key_ids, ",")),
               "; in key file: ", absl::StrJoin(keys.key_ids(), ","), "; refusing to start"));
  }

  // All checks passed; from here on we may write.
  rocksdb::WriteBatch batch;
  if (!version.has_value()) {
    RETURN_IF_ERROR(
        FromRocks(batch.Put(db.meta(), kSchemaVersionKey, StrCat(kSchemaVersion)), "batch"));
  }
  for (const std::string& key_id : keys.key_ids()) {
    if (std::find(db_key_ids.begin(), db_key_ids.end(), key_id) != db_key_ids.end()) {
      continue;
    }
    ASSIGN_OR_RETURN(KeyCheck check, MakeKeyCheck(keys, key_id, random));
    RETURN_IF_ERROR(
        FromRocks(batch.Put(db.meta(), KeyCheckKey(key_id), check.SerializeAsString()), "batch"));
  }
  for (const std::string& key_id : db_key_ids) {
    if (!keys.Contains(key_id)) {
      CB_LOG(WARNING) << "encryption key " << Quoted(key_id) << " was used for the database at "
                      << db.path() << " but is not in the key file; records still encrypted "
                      << "under it cannot be read";
    }
  }
  if (batch.Count() > 0) {
    RETURN_IF_ERROR(db.Write(batch, "writing schema version and key checks"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<RocksDbGrantStore>> RocksDbGrantStore::Open(const Options& options,
                                                                           KeyRing keys,
                                                                           Random& random) {
  ASSIGN_OR_RETURN(std::unique_ptr<RocksDb> db,
                   RocksDb::Open(options.path, options.create_if_missing));
  // Read-only, so a corrupt event log refuses start-up before PrepareMeta writes anything.
  ASSIGN_OR_RETURN(uint64_t last_event_sequence, RecoverLastEventSequence(*db));
  RETURN_IF_ERROR(PrepareMeta(*db, keys, random));
  return std::unique_ptr<RocksDbGrantStore>(
      new RocksDbGrantStore(std::move(db), std::move(keys), random, last_event_sequence));
}

RocksDbGrantStore::RocksDbGrantStore(std::unique_ptr<RocksDb> db, KeyRing keys, Random& random,
                                     uint64_t last_event_sequence)
    : db_(std::move(db)),
      keys_(std::move(keys)),
      random_(random),
      last_event_sequence_(last_event_sequence) {}

RocksDbGrantStore::~RocksDbGrantStore() = default;

absl::StatusOr<std::optional<GrantRecord>> RocksDbGrantStore::ReadGrant(
    std::string_view organization_id) {
  ASSIGN_OR_RETURN(std::optional<std::string> value, db_->Read(db_->grants(), organization_id));
  if (!value.has_value()) {
    return std::nullopt;
  }
  return DecodeGrantRecord(*value, organization_id);
}

absl::Status RocksDbGrantStore::WriteWithEvent(rocksdb::WriteBatch& batch, EventRecord* event,
                                               std::string_view what) {
  if (event == nullptr) {
    return db_->Write(batch, what);
  }
  if (last_event_sequence_ == std::numeric_limits<uint64_t>::max()) {
    return absl::FailedPreconditionError("event sequence numbers are exhausted");
  }
  const uint64_t sequence = last_event_sequence_ + 1;
  RETURN_IF_ERROR(AddEventToBatch(*db_, *event, sequence, batch));
  absl::Status written = db_->Write(batch, what);
  // Burned even when the write failed: a failed synced write may still have reached the WAL,
  // and a number that may be on disk is never handed out again.
  last_event_sequence_ = sequence;
  RETURN_IF_ERROR(written);
  event->set_sequence(sequence);
  event->set_schema_version(kSchemaVersion);
  return absl::OkStatus();
}

absl::Status RocksDbGrantStore::Put(const GrantRecord& record, const GrantSecretsPlain& secrets,
                                    std::optional<uint64_t> expected_generation,
                                    EventRecord* event) {
  if (event != nullptr) {
    event->set_sequence(0);
    RETURN_IF_ERROR(ValidateEvent(*event));
  }
  const std::string& org = record.organization_id();
  if (org.empty()) {
    return absl::InvalidArgumentError("grant has no organization_id");
  }
  if (record.schema_version() > kSchemaVersion) {
    return absl::InvalidArgumentError(StrCat("grant for organization ", Quoted(org),
                                             " has schema_version ", record.schema_version(),
                                             ", newer than ", kSchemaVersion));
  }
  GrantRecord stored = record;
  stored.set_schema_version(kSchemaVersion);

  absl::MutexLock lock(&write_mu_);
  ASSIGN_OR_RETURN(std::optional<GrantRecord> current, ReadGrant(org));
  if (!expected_generation.has_value() && current.has_value()) {
    return absl::AlreadyExistsError(
        StrCat("grant for organization ", Quoted(org), " already exists"));
  }
  if (expected_generation.has_value()) {
    if (!current.has_value()) {
      return absl::NotFoundError(StrCat("no grant for organization ", Quoted(org)));
    }
    if (current->generation() != *expected_generation) {
      return absl::AbortedError(StrCat("grant for organization ", Quoted(org), " is at generation ",
                                       current->generation(), ", expected ", *expected_generation,
                                       "; re-read and retry"));
    }
  }

  rocksdb::WriteBatch batch;
  const std::string& new_ref = stored.account_ref();
  if (!new_ref.empty()) {
    ASSIGN_OR_RETURN(std::optional<std::string> owner, db_->Read(db_->account_refs(), new_ref));
    if (owner.has_value() && *owner != org) {
      return absl::AlreadyExistsError(
          StrCat("account_ref ", Quoted(new_ref), " is already used by another grant"));
    }
    RETURN_IF_ERROR(FromRocks(batch.Put(db_->account_refs(), new_ref, org), "batch"));
  }
  if (current.has_value() && !current->account_ref().empty() && current->account_ref() != new_ref) {
    RETURN_IF_ERROR(FromRocks(batch.Delete(db_->account_refs(), current->account_ref()), "batch"));
  }
  // Sealed under the lock: the injected Random need not be thread-safe.
  RETURN_IF_ERROR(SealSecrets(keys_, random_, secrets, stored));
  RETURN_IF_ERROR(FromRocks(batch.Put(db_->grants(), org, stored.SerializeAsString()), "batch"));
  return WriteWithEvent(batch, event, StrCat("writing grant for organization ", Quoted(org)));
}

absl::StatusOr<StoredGrant> RocksDbGrantStore::Get(std::string_view organization_id) {
  ASSIGN_OR_RETURN(std::optional<GrantRecord> record, ReadGrant(organization_id));
  if (!record.has_value()) {
    return absl::NotFoundError(StrCat("no grant for organization ", Quoted(organization_id)));
  }
  ASSIGN_OR_RETURN(GrantSecretsPlain secrets, OpenSecrets(keys_, *record, organization_id));
  return StoredGrant{std::move(*record), std::move(secrets)};
}

absl::StatusOr<std::string> RocksDbGrantStore::FindByAccountRef(std::string_view account_ref) {
  ASSIGN_OR_RETURN(std::optional<std::string> org, db_->Read(db_->account_refs(), account_ref));
  if (!org.has_value()) {
    return absl::NotFoundError(StrCat("no grant with account_ref ", Quoted(account_ref)));
  }
  return *std::move(org);
}

absl::StatusOr<std::vector<StoredGrant>> RocksDbGrantStore::LoadAll() {
  std::vector<StoredGrant> out;
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(db_->grants());
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    std::string_view org = it->key().ToStringView();
    ASSIGN_OR_RETURN(GrantRecord record, DecodeGrantRecord(it->value().ToStringView(), org));
    ASSIGN_OR_RETURN(GrantSecretsPlain secrets, OpenSecrets(keys_, record, org));
    out.push_back(StoredGrant{std::move(record), std::move(secrets)});
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading grants"));
  return out;
}

absl::StatusOr<ListPage> RocksDbGrantStore::List(GrantStatus status, int page_size,
                                                 std::string_view page_token) {
  if (page_size <= 0) {
    page_size = kDefaultPageSize;
  }
  page_size = std::min(page_size, kMaxPageSize);

  ListPage page;
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(db_->grants());
  if (page_token.empty()) {
    it->SeekToFirst();
  } else {
    // The token is the last id already returned: resume strictly after it, even if that grant
    // has been deleted since.
    it->Seek(page_token);
    if (it->Valid() && it->key() == page_token) {
      it->Next();
    }
  }
  for (; it->Valid(); it->Next()) {
    ASSIGN_OR_RETURN(GrantRecord record,
                     DecodeGrantRecord(it->value().ToStringView(), it->key().ToStringView()));
    if (status != GRANT_STATUS_UNSPECIFIED && record.status() != status) {
      continue;
    }
    if (static_cast<int>(page.records.size()) == page_size) {
      // One more match exists, so there is a next page.
      page.next_page_token = page.records.back().organization_id();
      break;
    }
    page.records.push_back(std::move(record));
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "listing grants"));
  return page;
}

absl::Status RocksDbGrantStore::Delete(std::string_view organization_id,
                                       std::optional<uint64_t> expected_generation,
                                       EventRecord* event) {
  if (event != nullptr) {
    event->set_sequence(0);
    RETURN_IF_ERROR(ValidateEvent(*event));
  }
  absl::MutexLock lock(&write_mu_);
  ASSIGN_OR_RETURN(std::optional<GrantRecord> current, ReadGrant(organization_id));
  if (!current.has_value()) {
    return absl::NotFoundError(StrCat("no grant for organization ", Quoted(organization_id)));
  }
  if (expected_generation.has_value() && current->generation() != *expected_generation) {
    return absl::AbortedError(StrCat("grant for organization ", Quoted(organization_id),
                                     " is at generation ", current->generation(), ", expected ",
                                     *expected_generation, "; re-read and retry"));
  }
  rocksdb::WriteBatch batch;
  RETURN_IF_ERROR(FromRocks(batch.Delete(db_->grants(), organization_id), "batch"));
  if (!current->account_ref().empty()) {
    ASSIGN_OR_RETURN(std::optional<std::string> owner,
                     db_->Read(db_->account_refs(), current->account_ref()));
    if (owner.has_value() && *owner == organization_id) {
      RETURN_IF_ERROR(
          FromRocks(batch.Delete(db_->account_refs(), current->account_ref()), "batch"));
    }
  }
  return WriteWithEvent(batch, event,
                        StrCat("deleting grant for organization ", Quoted(organization_id)));
}

absl::Status RocksDbGrantStore::PutPending(std::string_view state,
                                           const PendingAuthorization& pending) {
  if (state.empty()) {
    return absl::InvalidArgumentError("pending authorization has an empty state");
  }
  if (pending.schema_version() > kSchemaVersion) {
    return absl::InvalidArgumentError(StrCat("pending authorization has schema_version ",
                                             pending.schema_version(), ", newer than ",
                                             kSchemaVersion));
  }
  PendingAuthorization stored = pending;
  stored.set_schema_version(kSchemaVersion);
  const std::string key = PendingKey(state);

  absl::MutexLock lock(&write_mu_);
  ASSIGN_OR_RETURN(std::optional<std::string> existing, db_->Read(db_->pending(), key));
  if (existing.has_value()) {
    return absl::AlreadyExistsError("an authorization with this state is already pending");
  }
  rocksdb::WriteBatch batch;
  RETURN_IF_ERROR(FromRocks(batch.Put(db_->pending(), key, stored.SerializeAsString()), "batch"));
  return db_->Write(batch, "writing pending authorization");
}

absl::StatusOr<PendingAuthorization> RocksDbGrantStore::TakePending(std::string_view state,
                                                                    WallTime now) {
  const std::string key = PendingKey(state);
  absl::MutexLock lock(&write_mu_);
  ASSIGN_OR_RETURN(std::optional<std::string> value, db_->Read(db_->pending(), key));
  if (!value.has_value()) {
    return absl::NotFoundError("unknown or already used authorization state");
  }
  ASSIGN_OR_RETURN(PendingAuthorization pending, DecodePending(*value));
  // Deleted before it is returned, and also when expired: a state is used at most once.
  rocksdb::WriteBatch batch;
  RETURN_IF_ERROR(FromRocks(batch.Delete(db_->pending(), key), "batch"));
  RETURN_IF_ERROR(db_->Write(batch, "deleting pending authorization"));
  if (ToUnixMillis(now) >= pending.expires_at_ms()) {
    return absl::DeadlineExceededError(
        StrCat("authorization state expired at ", pending.expires_at_ms(), " ms since the epoch"));
  }
  return pending;
}

absl::StatusOr<int> RocksDbGrantStore::PurgeExpiredPending(WallTime now) {
  const int64_t now_ms = ToUnixMillis(now);
  absl::MutexLock lock(&write_mu_);
  rocksdb::WriteBatch batch;
  int purged = 0;
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(db_->pending());
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    // Parsed without the schema check: a newer record's expiry still says when it is dead.
    PendingAuthorization pending;
    bool parsed = pending.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()));
    if (!parsed) {
      CB_LOG(WARNING) << "removing a pending authorization that does not parse";
    }
    if (!parsed || now_ms >= pending.expires_at_ms()) {
      RETURN_IF_ERROR(FromRocks(batch.Delete(db_->pending(), it->key()), "batch"));
      ++purged;
    }
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading pending authorizations"));
  it.reset();
  if (purged > 0) {
    RETURN_IF_ERROR(db_->Write(batch, "purging pending authorizations"));
  }
  return purged;
}

absl::Status RocksDbGrantStore::AppendEvent(EventRecord& event) {
  event.set_sequence(0);
  RETURN_IF_ERROR(ValidateEvent(event));
  absl::MutexLock lock(&write_mu_);
  rocksdb::WriteBatch batch;
  return WriteWithEvent(batch, &event, "appending an event");
}

absl::StatusOr<std::vector<EventRecord>> RocksDbGrantStore::ReadEvents(uint64_t after_sequence,
                                                                       int max_events) {
  return ReadEventsAfter(*db_, after_sequence, max_events);
}

absl::StatusOr<uint64_t> RocksDbGrantStore::OldestEventSequence() {
  return FirstEventSequence(*db_);
}

absl::StatusOr<uint64_t> RocksDbGrantStore::LastEventSequence() {
  absl::MutexLock lock(&write_mu_);
  return last_event_sequence_;
}

absl::StatusOr<int> RocksDbGrantStore::TrimEvents(size_t keep_last, WallTime drop_before) {
  // Under the write mutex like every other write, though appends land after the trimmed run.
  absl::MutexLock lock(&write_mu_);
  return TrimEventLog(*db_, keep_last, drop_before);
}

absl::Status RocksDbGrantStore::FlushForTest() { return db_->Flush(); }

}  // namespace connectbroker::storage
