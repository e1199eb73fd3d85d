// Shared helpers of the storage tests: records to write, raw RocksDB access (to play corruption,
// tampering and newer versions) and a fixture owning a RocksDbGrantStore in a temp directory.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "storage/rocksdb_grant_store.h"
#include "tests/support/status_matchers.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/storage/fake_random.h"

namespace connectbroker::storage::testing {

inline constexpr int64_t kNowMs = 1'700'000'000'000;

inline KeyRing::Key KeyOf(uint8_t fill) {
  KeyRing::Key key;
  key.fill(fill);
  return key;
}

inline KeyRing RightKeys() { return KeyRing::FromKeys({{"k1", KeyOf(1)}}); }

inline GrantRecord MakeRecord(const std::string& org, const std::string& account_ref = "",
                              GrantStatus status = GRANT_STATUS_ACTIVE, uint64_t generation = 1) {
  GrantRecord record;
  record.set_organization_id(org);
  record.set_organization_name("Name of " + org);
  record.set_account_ref(account_ref);
  record.add_scopes("payments.read");
  record.add_scopes("organizations.read");
  record.set_redirect_uri("https://platform.example/callback");
  record.set_status(status);
  record.set_access_token_expires_at_ms(kNowMs + 3'600'000);
  record.set_generation(generation);
  record.set_created_at_ms(kNowMs);
  return record;
}

inline GrantSecretsPlain Secrets(const std::string& access, const std::string& refresh) {
  return GrantSecretsPlain{SecretString(access), SecretString(refresh)};
}

inline PendingAuthorization MakePending(int64_t expires_at_ms,
                                        const std::string& account_ref = "acct") {
  PendingAuthorization pending;
  pending.set_account_ref(account_ref);
  pending.add_scopes("payments.read");
  pending.set_redirect_uri("https://platform.example/callback");
  pending.set_created_at_ms(kNowMs);
  pending.set_expires_at_ms(expires_at_ms);
  return pending;
}

inline std::vector<std::string> Ids(const ListPage& page) {
  std::vector<std::string> ids;
  for (const GrantRecord& r : page.records) {
    ids.push_back(r.organization_id());
  }
  return ids;
}

// Direct RocksDB access, to play the part of corruption, tampering and newer versions.
class RawDb {
 public:
  // extra_family: a column family to create, as a newer version would.
  explicit RawDb(const std::string& path, const std::string& extra_family = "") {
    rocksdb::DBOptions options;
    options.create_missing_column_families = !extra_family.empty();
    std::vector<std::string> names;
    EXPECT_TRUE(rocksdb::DB::ListColumnFamilies(options, path, &names).ok());
    if (!extra_family.empty()) {
      names.push_back(extra_family);
    }
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const std::string& name : names) {
      descriptors.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    rocksdb::DB* db = nullptr;
    rocksdb::Status s = rocksdb::DB::Open(options, path, descriptors, &handles_, &db);
    EXPECT_TRUE(s.ok()) << s.ToString();
    db_.reset(db);
    names_ = names;
  }
  ~RawDb() {
    for (auto* h : handles_) {
      EXPECT_TRUE(db_->DestroyColumnFamilyHandle(h).ok());
    }
    EXPECT_TRUE(db_->Close().ok());
  }

  rocksdb::ColumnFamilyHandle* Cf(const std::string& name) {
    for (size_t i = 0; i < names_.size(); ++i) {
      if (names_[i] == name) {
        return handles_[i];
      }
    }
    ADD_FAILURE() << "no column family " << name;
    return nullptr;
  }
  std::string Get(const std::string& cf, const std::string& key) {
    std::string value;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), Cf(cf), key, &value);
    EXPECT_TRUE(s.ok()) << cf << "/" << key << ": " << s.ToString();
    return value;
  }
  bool Has(const std::string& cf, const std::string& key) {
    std::string value;
    return db_->Get(rocksdb::ReadOptions(), Cf(cf), key, &value).ok();
  }
  void Put(const std::string& cf, const std::string& key, const std::string& value) {
    EXPECT_TRUE(db_->Put(rocksdb::WriteOptions(), Cf(cf), key, value).ok());
  }
  void Delete(const std::string& cf, const std::string& key) {
    EXPECT_TRUE(db_->Delete(rocksdb::WriteOptions(), Cf(cf), key).ok());
  }
  std::vector<std::string> Keys(const std::string& cf) {
    std::vector<std::string> keys;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), Cf(cf)));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      keys.push_back(it->key().ToString());
    }
    return keys;
  }

 private:
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::vector<std::string> names_;
};

// A store on a fresh data directory, reopenable with other keys.
class StoreFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.File("db");
    absl::StatusOr<std::unique_ptr<RocksDbGrantStore>> store = Open(RightKeys());
    ASSERT_THAT(store, ::connectbroker::testing::IsOk());
    store_ = *std::move(store);
  }

  absl::StatusOr<std::unique_ptr<RocksDbGrantStore>> Open(KeyRing keys) {
    return RocksDbGrantStore::Open({.path = path_}, std::move(keys), random_);
  }

  void Reopen(KeyRing keys = RightKeys()) {
    store_.reset();
    absl::StatusOr<std::unique_ptr<RocksDbGrantStore>> store = Open(std::move(keys));
    ASSERT_THAT(store, ::connectbroker::testing::IsOk());
    store_ = *std::move(store);
  }

  // Every byte of every file under the data directory (WAL, SST, MANIFEST, LOG, OPTIONS).
  std::string AllFileBytes(int* sst_files = nullptr) {
    std::string all;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(path_)) {
      if (!entry.is_regular_file()) {
        continue;
      }
      if (sst_files != nullptr && entry.path().extension() == ".sst") {
        ++*sst_files;
      }
      std::ifstream in(entry.path(), std::ios::binary);
      all.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    return all;
  }

  ::connectbroker::testing::TempDir dir_;
  std::string path_;
  FakeRandom random_;
  std::unique_ptr<RocksDbGrantStore> store_;
};

}  // namespace connectbroker::storage::testing
