// RocksDb: the RocksDB database behind RocksDbGrantStore, with its column families. Internal to
// storage/ and the only header that includes RocksDB, so no RocksDB type reaches other modules.
// Every write is synced (sync = true: write() then fdatasync()); rocksdb::Status is converted
// to absl::Status here. Thread-safe, like rocksdb::DB. Closes the database on destruction.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace connectbroker::storage {

// IOError maps to Internal, as GrantStore documents; Corruption to DataLoss.
absl::Status FromRocks(const rocksdb::Status& s, std::string_view context);

class RocksDb {
 public:
  // Opens (or creates) the database with the "grants", "account_refs", "pending", "meta" and
  // "events" column families; families it does not know are opened too and left alone. A data
  // directory locked by another process gives FailedPrecondition.
  static absl::StatusOr<std::unique_ptr<RocksDb>> Open(const std::string& path,
                                                       bool create_if_missing);
  ~RocksDb();
  RocksDb(const RocksDb&) = delete;
  RocksDb& operator=(const RocksDb&) = delete;

  const std::string& path() const { return path_; }
  rocksdb::ColumnFamilyHandle* grants() const { return grants_; }
  rocksdb::ColumnFamilyHandle* account_refs() const { return account_refs_; }
  rocksdb::ColumnFamilyHandle* pending() const { return pending_; }
  rocksdb::ColumnFamilyHandle* meta() const { return meta_; }
  rocksdb::ColumnFamilyHandle* events() const { return events_; }

  // nullopt when the key is absent.
  absl::StatusOr<std::optional<std::string>> Read(rocksdb::ColumnFamilyHandle* cf,
                                                  std::string_view key);
  // Applies `batch` atomically with a synced WAL; `what` names the write in errors.
  absl::Status Write(rocksdb::WriteBatch& batch, std::string_view what);
  std::unique_ptr<rocksdb::Iterator> NewIterator(rocksdb::ColumnFamilyHandle* cf);
  // Flushes every column family's memtable to SST files.
  absl::Status Flush();

 private:
  RocksDb() = default;

  std::string path_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // every open family, destroyed first
  rocksdb::ColumnFamilyHandle* grants_ = nullptr;
  rocksdb::ColumnFamilyHandle* account_refs_ = nullptr;
  rocksdb::ColumnFamilyHandle* pending_ = nullptr;
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  rocksdb::ColumnFamilyHandle* events_ = nullptr;
};

}  // namespace connectbroker::storage
