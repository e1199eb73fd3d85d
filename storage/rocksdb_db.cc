#include "storage/rocksdb_db.h"

#include <rocksdb/options.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "daemon/common/log.h"
#include "daemon/common/status_macros.h"
#include "daemon/common/strings.h"

namespace connectbroker::storage {
namespace {

constexpr char kGrantsCf[] = "grants";
constexpr char kAccountRefsCf[] = "account_refs";
constexpr char kPendingCf[] = "pending";
constexpr char kMetaCf[] = "meta";
constexpr char kEventsCf[] = "events";

bool IsLockError(const rocksdb::Status& s) {
  if (!s.IsIOError()) {
    return false;
  }
  // PosixEnv::LockFile: fcntl lock held by another process, or by this one.
  std::string text = s.ToString();
  return absl::StrContains(text, "While lock file") ||
         absl::StrContains(text, "lock hold by current process");
}

}  // namespace

absl::Status FromRocks(const rocksdb::Status& s, std::string_view context) {
  if (s.ok()) {
    return absl::OkStatus();
  }
  std::string msg = StrCat(context, ": ", s.ToString());
  switch (s.code()) {
    case rocksdb::Status::kNotFound:
      return absl::NotFoundError(msg);
    case rocksdb::Status::kCorruption:
      return absl::DataLossError(msg);
    case rocksdb::Status::kInvalidArgument:
      return absl::InvalidArgumentError(msg);
    case rocksdb::Status::kNotSupported:
      return absl::UnimplementedError(msg);
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTryAgain:
    case rocksdb::Status::kShutdownInProgress:
      return absl::UnavailableError(msg);
    case rocksdb::Status::kTimedOut:
      return absl::DeadlineExceededError(msg);
    case rocksdb::Status::kAborted:
      return absl::AbortedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::StatusOr<std::unique_ptr<RocksDb>> RocksDb::Open(const std::string& path,
                                                       bool create_if_missing) {
  if (path.empty()) {
    return absl::InvalidArgumentError("storage path is empty");
  }
  // RocksDB defaults otherwise: they are tuned for far larger data than a few thousand grants.
  rocksdb::DBOptions options;
  options.create_if_missing = create_if_missing;
  options.create_missing_column_families = true;
  // A handful of small column families: a modest table cache is plenty and keeps us well
  // inside the default file descriptor limit of a systemd service.
  options.max_open_files = 128;
  options.keep_log_file_num = 10;

  std::vector<std::string> names = {
      rocksdb::kDefaultColumnFamilyName, kGrantsCf, kAccountRefsCf, kPendingCf, kMetaCf, kEventsCf};
  // RocksDB refuses to open a database without naming all its families, so families from a
  // newer version are opened too. Listing fails for a missing database; DB::Open reports that.
  std::vector<std::string> existing;
  if (rocksdb::DB::ListColumnFamilies(options, path, &existing).ok()) {
    for (const std::string& name : existing) {
      if (std::find(names.begin(), names.end(), name) == names.end()) {
        names.push_back(name);
      }
    }
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : names) {
    descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
  }

  std::unique_ptr<RocksDb> db(new RocksDb());
  db->path_ = path;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, path, descriptors, &db->handles_, &raw);
  if (!s.ok()) {
    if (IsLockError(s)) {
      return absl::FailedPreconditionError(
          StrCat("data directory ", path, " is in use by another connect-brokerd (RocksDB lock)"));
    }
    return FromRocks(s, StrCat("opening database at ", path));
  }
  db->db_.reset(raw);
  db->grants_ = db->handles_[1];
  db->account_refs_ = db->handles_[2];
  db->pending_ = db->handles_[3];
  db->meta_ = db->handles_[4];
  db->events_ = db->handles_[5];
  return db;
}

RocksDb::~RocksDb() {
  if (db_ == nullptr) {
    return;
  }
  for (rocksdb::ColumnFamilyHandle* handle : handles_) {
    db_->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
  }
  // Every write was synced already; Close only releases the files and the LOCK.
  rocksdb::Status s = db_->Close();
  if (!s.ok()) {
    CB_LOG(ERROR) << "closing RocksDB at " << path_ << ": " << s.ToString();
  }
}

absl::StatusOr<std::optional<std::string>> RocksDb::Read(rocksdb::ColumnFamilyHandle* cf,
                                                         std::string_view key) {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cf, key, &value);
  if (s.IsNotFound()) {
    return std::nullopt;
  }
  RETURN_IF_ERROR(FromRocks(s, StrCat("reading ", cf->GetName())));
  return value;
}

absl::Status RocksDb::Write(rocksdb::WriteBatch& batch, std::string_view what) {
  // The durability promise of GrantStore: OK means the batch is in a synced WAL.
  rocksdb::WriteOptions options;
  options.sync = true;
  return FromRocks(db_->Write(options, &batch), what);
}

std::unique_ptr<rocksdb::Iterator> RocksDb::NewIterator(rocksdb::ColumnFamilyHandle* cf) {
  return std::unique_ptr<rocksdb::Iterator>(db_->NewIterator(rocksdb::ReadOptions(), cf));
}

absl::Status RocksDb::Flush() {
  return FromRocks(db_->Flush(rocksdb::FlushOptions(), handles_), "flush");
}

}  // namespace connectbroker::storage
