#include "storage/rocksdb_grant_store.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "storage/record_codec.h"
#include "tests/support/status_matchers.h"
#include "tests/unit/storage/store_fixture.h"

namespace connectbroker::storage {
namespace {

using ::connectbroker::testing::IsOk;
using ::connectbroker::testing::IsOkAndHolds;
using ::connectbroker::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

using ::connectbroker::storage::testing::Ids;
using ::connectbroker::storage::testing::KeyOf;
using ::connectbroker::storage::testing::kNowMs;
using ::connectbroker::storage::testing::MakePending;
using ::connectbroker::storage::testing::MakeRecord;
using ::connectbroker::storage::testing::RawDb;
using ::connectbroker::storage::testing::RightKeys;
using ::connectbroker::storage::testing::Secrets;

class RocksDbGrantStoreTest : public ::connectbroker::storage::testing::StoreFixture {};

TEST_F(RocksDbGrantStoreTest, PutGetRoundTrip) {
  GrantRecord record = MakeRecord("org_1", "acct_1");
  record.set_last_refresh_outcome("ok");
  ASSERT_THAT(store_->Put(record, Secrets("access_one", "refresh_one"), std::nullopt), IsOk());

  absl::StatusOr<StoredGrant> got = store_->Get("org_1");
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->secrets.access_token.Reveal(), "access_one");
  EXPECT_EQ(got->secrets.refresh_token.Reveal(), "refresh_one");
  EXPECT_EQ(got->record.schema_version(), 1u);
  EXPECT_EQ(got->record.secrets().key_id(), "k1");
  EXPECT_EQ(got->record.secrets().nonce().size(), KeyRing::kNonceSize);
  // Everything but the version and the blob comes back as written.
  GrantRecord expected = record;
  expected.set_schema_version(1);
  *expected.mutable_secrets() = got->record.secrets();
  EXPECT_EQ(got->record.SerializeAsString(), expected.SerializeAsString());
}

TEST_F(RocksDbGrantStoreTest, GetUnknownIsNotFound) {
  EXPECT_THAT(store_->Get("org_none"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("org_none")));
}

TEST_F(RocksDbGrantStoreTest, PutValidatesRecord) {
  EXPECT_THAT(store_->Put(MakeRecord(""), Secrets("a", "r"), std::nullopt),
              StatusIs(absl::StatusCode::kInvalidArgument));
  GrantRecord newer = MakeRecord("org_1");
  newer.set_schema_version(2);
  EXPECT_THAT(store_->Put(newer, Secrets("a", "r"), std::nullopt),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("schema_version 2")));
}

TEST_F(RocksDbGrantStoreTest, InsertTwiceIsAlreadyExists) {
  ASSERT_THAT(store_->Put(MakeRecord("org_1"), Secrets("access_a", "refresh_a"), std::nullopt),
              IsOk());
  EXPECT_THAT(store_->Put(MakeRecord("org_1"), Secrets("access_b", "refresh_b"), std::nullopt),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("org_1")));
  EXPECT_EQ(store_->Get("org_1")->secrets.access_token.Reveal(), "access_a");
}

TEST_F(RocksDbGrantStoreTest, UpdateIsCompareAndSetOnGeneration) {
  ASSERT_THAT(store_->Put(MakeRecord("org_1", "", GRANT_STATUS_ACTIVE, 1),
                          Secrets("access_1", "refresh_1"), std::nullopt),
              IsOk());
  ASSERT_THAT(store_->Put(MakeRecord("org_1", "", GRANT_STATUS_ACTIVE, 2),
                          Secrets("access_2", "refresh_2"), 1),
              IsOk());
  // A writer that read generation 1 lost the race.
  EXPECT_THAT(store_->Put(MakeRecord("org_1", "", GRANT_STATUS_ACTIVE, 2),
                          Secrets("access_stale", "refresh_stale"), 1),
              StatusIs(absl::StatusCode::kAborted,
                       AllOf(HasSubstr("generation 2"), HasSubstr("expected 1"))));
  absl::StatusOr<StoredGrant> got = store_->Get("org_1");
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->record.generation(), 2u);
  EXPECT_EQ(got->secrets.access_token.Reveal(), "access_2");

  EXPECT_THAT(store_->Put(MakeRecord("org_2"), Secrets("a", "r"), 1),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(RocksDbGrantStoreTest, ConcurrentCompareAndSetLosesNoUpdate) {
  ASSERT_THAT(
      store_->Put(MakeRecord("org_1", "", GRANT_STATUS_ACTIVE, 0), Secrets("a", "r"), std::nullopt),
      IsOk());
  // FakeRandom is only touched under the store's write mutex, so sharing it is fine.
  std::atomic<int> won{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        absl::StatusOr<StoredGrant> got = store_->Get("org_1");
        ASSERT_THAT(got, IsOk());
        GrantRecord next = got->record;
        uint64_t seen = next.generation();
        next.set_generation(seen + 1);
        absl::Status s = store_->Put(next, Secrets("a", "r"), seen);
        if (s.ok()) {
          ++won;
        } else {
          EXPECT_THAT(s, StatusIs(absl::StatusCode::kAborted));
        }
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  EXPECT_GT(won.load(), 0);
  EXPECT_EQ(store_->Get("org_1")->record.generation(), static_cast<uint64_t>(won.load()));
}

TEST_F(RocksDbGrantStoreTest, DeleteChecksGeneration) {
  ASSERT_THAT(store_->Put(MakeRecord("org_1", "acct_1", GRANT_STATUS_ACTIVE, 5), Secrets("a", "r"),
                          std::nullopt),
              IsOk());
  EXPECT_THAT(store_->Delete("org_1", 4), StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(store_->Get("org_1"), IsOk());
  EXPECT_THAT(store_->Delete("org_1", 5), IsOk());
  EXPECT_THAT(store_->Get("org_1"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->FindByAccountRef("acct_1"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->Delete("org_1", std::nullopt), StatusIs(absl::StatusCode::kNotFound));

  ASSERT_THAT(store_->Put(MakeRecord("org_2"), Secrets("a", "r"), std::nullopt), IsOk());
  EXPECT_THAT(store_->Delete("org_2", std::nullopt), IsOk());
  EXPECT_THAT(store_->Get("org_2"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(RocksDbGrantStoreTest, AccountRefIsUniqueAndIndexed) {
  ASSERT_THAT(store_->Put(MakeRecord("org_1", "acct_1"), Secrets("access_sec1", "refresh_sec1"),
                          std::nullopt),
              IsOk());
  EXPECT_THAT(store_->FindByAccountRef("acct_1"), IsOkAndHolds(Eq("org_1")));
  EXPECT_THAT(store_->FindByAccountRef("acct_x"), StatusIs(absl::StatusCode::kNotFound));

  absl::Status taken = store_->Put(MakeRecord("org_2", "acct_1"),
                                   Secrets("access_sec2", "refresh_sec2"), std::nullopt);
  EXPECT_THAT(taken, StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("acct_1")));
  EXPECT_THAT(taken.message(), Not(HasSubstr("sec")));
  EXPECT_THAT(store_->Get("org_2"), StatusIs(absl::StatusCode::kNotFound));

  // Re-writing the same grant with its own ref is fine.
  ASSERT_THAT(
      store_->Put(MakeRecord("org_1", "acct_1", GRANT_STATUS_ACTIVE, 2), Secrets("a", "r"), 1),
      IsOk());
  EXPECT_THAT(store_->FindByAccountRef("acct_1"), IsOkAndHolds(Eq("org_1")));
}

TEST_F(RocksDbGrantStoreTest, ChangingAccountRefMovesTheIndexEntry) {
  ASSERT_THAT(store_->Put(MakeRecord("org_1", "acct_old"), Secrets("a", "r"), std::nullopt),
              IsOk());
  ASSERT_THAT(
      store_->Put(MakeRecord("org_1", "acct_new", GRANT_STATUS_ACTIVE, 2), Secrets("a", "r"), 1),
      IsOk());
  EXPECT_THAT(store_->FindByAccountRef("acct_old"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->FindByAccountRef("acct_new"), IsOkAndHolds(Eq("org_1")));
  // The freed ref can go to another grant.
  EXPECT_THAT(store_->Put(MakeRecord("org_2", "acct_old"), Secrets("a", "r"), std::nullopt),
              IsOk());
  // Clearing the ref removes the entry.
  ASSERT_THAT(store_->Put(MakeRecord("org_1", "", GRANT_STATUS_ACTIVE, 3), Secrets("a", "r"), 2),
              IsOk());
  EXPECT_THAT(store_->FindByAccountRef("acct_new"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(RocksDbGrantStoreTest, DeleteRemovesIndexEntry) {
  ASSERT_THAT(store_->Put(MakeRecord("org_1", "acct_1"), Secrets("a", "r"), std::nullopt), IsOk());
  ASSERT_THAT(store_->Delete("org_1", std::nullopt), IsOk());
  EXPECT_THAT(store_->FindByAccountRef("acct_1"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->Put(MakeRecord("org_2", "acct_1"), Secrets("a", "r"), std::nullopt), IsOk());
  EXPECT_THAT(store_->FindByAccountRef("acct_1"), IsOkAndHolds(Eq("org_2")));
}

TEST_F(RocksDbGrantStoreTest, ListPagesInOrderWithFilter) {
  const GrantStatus statuses[] = {GRANT_STATUS_ACTIVE, GRANT_STATUS_REVOKED, GRANT_STATUS_ACTIVE,
                                  GRANT_STATUS_ACTIVE, GRANT_STATUS_REVOKED, GRANT_STATUS_ACTIVE};
  // Inserted out of order: List orders by organization id.
  for (int i : {3, 0, 5, 1, 4, 2}) {
    ASSERT_THAT(store_->Put(MakeRecord("org_" + std::to_string(i), "", statuses[i]),
                            Secrets("a", "r"), std::nullopt),
                IsOk());
  }

  absl::StatusOr<ListPage> page = store_->List(GRANT_STATUS_UNSPECIFIED, 4, "");
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(Ids(*page), ElementsAre("org_0", "org_1", "org_2", "org_3"));
  ASSERT_EQ(page->next_page_token, "org_3");
  page = store_->List(GRANT_STATUS_UNSPECIFIED, 4, page->next_page_token);
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(Ids(*page), ElementsAre("org_4", "org_5"));
  EXPECT_THAT(page->next_page_token, IsEmpty());

  // Filtered, with a page that exactly fits the remaining matches: no empty extra page.
  page = store_->List(GRANT_STATUS_ACTIVE, 2, "");
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(Ids(*page), ElementsAre("org_0", "org_2"));
  page = store_->List(GRANT_STATUS_ACTIVE, 2, page->next_page_token);
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(Ids(*page), ElementsAre("org_3", "org_5"));
  EXPECT_THAT(page->next_page_token, IsEmpty());

  page = store_->List(GRANT_STATUS_REVOKED, 0, "");
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(Ids(*page), ElementsAre("org_1", "org_4"));

  // Resuming after a grant that has since been deleted still works.
  page = store_->List(GRANT_STATUS_UNSPECIFIED, 1, "");
  ASSERT_THAT(page, IsOk());
  ASSERT_THAT(store_->Delete("org_0", std::nullopt), IsOk());
  page = store_->List(GRANT_STATUS_UNSPECIFIED, 1, page->next_page_token);
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(Ids(*page), ElementsAre("org_1"));
}

TEST_F(RocksDbGrantStoreTest, ListDefaultsAndLargePageSizes) {
  for (int i = 0; i < 120; ++i) {
    ASSERT_THAT(
        store_->Put(MakeRecord(absl::StrCat("org_", 1000 + i)), Secrets("a", "r"), std::nullopt),
        IsOk());
  }
  absl::StatusOr<ListPage> page = store_->List(GRANT_STATUS_UNSPECIFIED, 0, "");
  ASSERT_THAT(page, IsOk());
  EXPECT_EQ(page->records.size(), 100u);
  page = store_->List(GRANT_STATUS_UNSPECIFIED, -5, "");
  ASSERT_THAT(page, IsOk());
  EXPECT_EQ(page->records.size(), 100u);
  page = store_->List(GRANT_STATUS_UNSPECIFIED, 5000, "");
  ASSERT_THAT(page, IsOk());
  EXPECT_EQ(page->records.size(), 120u);
  EXPECT_THAT(page->next_page_token, IsEmpty());
}

TEST_F(RocksDbGrantStoreTest, LoadAllDecryptsEverything) {
  ASSERT_THAT(store_->Put(MakeRecord("org_a"), Secrets("access_a", "refresh_a"), std::nullopt),
              IsOk());
  ASSERT_THAT(store_->Put(MakeRecord("org_b"), Secrets("access_b", "refresh_b"), std::nullopt),
              IsOk());
  absl::StatusOr<std::vector<StoredGrant>> all = store_->LoadAll();
  ASSERT_THAT(all, IsOk());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].record.organization_id(), "org_a");
  EXPECT_EQ((*all)[0].secrets.refresh_token.Reveal(), "refresh_a");
  EXPECT_EQ((*all)[1].secrets.access_token.Reveal(), "access_b");
}

TEST_F(RocksDbGrantStoreTest, PendingIsSingleUse) {
  ASSERT_THAT(store_->PutPending("state_1", MakePending(kNowMs + 600'000)), IsOk());
  EXPECT_THAT(store_->PutPending("state_1", MakePending(kNowMs + 600'000)),
              StatusIs(absl::StatusCode::kAlreadyExists));
  absl::StatusOr<PendingAuthorization> taken =
      store_->TakePending("state_1", FromUnixMillis(kNowMs + 1000));
  ASSERT_THAT(taken, IsOk());
  EXPECT_EQ(taken->account_ref(), "acct");
  EXPECT_EQ(taken->schema_version(), 1u);
  EXPECT_THAT(store_->TakePending("state_1", FromUnixMillis(kNowMs + 1000)),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->TakePending("state_unknown", FromUnixMillis(kNowMs)),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->PutPending("", MakePending(kNowMs)),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(RocksDbGrantStoreTest, ExpiredPendingIsDeadlineExceededAndGone) {
  ASSERT_THAT(store_->PutPending("state_1", MakePending(kNowMs + 600'000)), IsOk());
  EXPECT_THAT(store_->TakePending("state_1", FromUnixMillis(kNowMs + 600'000)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_THAT(store_->TakePending("state_1", FromUnixMillis(kNowMs)),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(RocksDbGrantStoreTest, PurgeRemovesOnlyExpiredPending) {
  ASSERT_THAT(store_->PutPending("state_old1", MakePending(kNowMs - 1)), IsOk());
  ASSERT_THAT(store_->PutPending("state_old2", MakePending(kNowMs)), IsOk());
  ASSERT_THAT(store_->PutPending("state_live", MakePending(kNowMs + 1)), IsOk());
  EXPECT_THAT(store_->PurgeExpiredPending(FromUnixMillis(kNowMs)), IsOkAndHolds(Eq(2)));
  EXPECT_THAT(store_->PurgeExpiredPending(FromUnixMillis(kNowMs)), IsOkAndHolds(Eq(0)));
  EXPECT_THAT(store_->TakePending("state_old1", FromUnixMillis(kNowMs - 10)),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->TakePending("state_live", FromUnixMillis(kNowMs)), IsOk());
}

TEST_F(RocksDbGrantStoreTest, PendingIsKeyedByStateHash) {
  ASSERT_THAT(store_->PutPending("state_secret_xyz", MakePending(kNowMs + 1)), IsOk());
  store_.reset();
  RawDb raw(path_);
  EXPECT_THAT(raw.Keys("pending"), ElementsAre(PendingKey("state_secret_xyz")));
}

TEST_F(RocksDbGrantStoreTest, ReopenPreservesEverything) {
  ASSERT_THAT(store_->Put(MakeRecord("org_1", "acct_1", GRANT_STATUS_REFRESH_FAILING, 7),
                          Secrets("access_keep", "refresh_keep"), std::nullopt),
              IsOk());
  ASSERT_THAT(store_->PutPending("state_keep", MakePending(kNowMs + 600'000)), IsOk());
  Reopen();
  absl::StatusOr<StoredGrant> got = store_->Get("org_1");
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->record.generation(), 7u);
  EXPECT_EQ(got->record.status(), GRANT_STATUS_REFRESH_FAILING);
  EXPECT_EQ(got->secrets.refresh_token.Reveal(), "refresh_keep");
  EXPECT_THAT(store_->FindByAccountRef("acct_1"), IsOkAndHolds(Eq("org_1")));
  EXPECT_THAT(store_->TakePending("state_keep", FromUnixMillis(kNowMs)), IsOk());
  // And the CAS state carries over too.
  EXPECT_THAT(store_->Put(MakeRecord("org_1", "acct_1"), Secrets("a", "r"), 6),
              StatusIs(absl::StatusCode::kAborted));
}

TEST_F(RocksDbGrantStoreTest, WrongKeyOnReopenRefusesAndWritesNothing) {
  ASSERT_THAT(store_->Put(MakeRecord("org_1"), Secrets("access_1", "refresh_1"), std::nullopt),
              IsOk());
  store_.reset();

  // Same id, other bytes; plus a new key whose key check must not be written.
  EXPECT_THAT(Open(KeyRing::FromKeys({{"k1", KeyOf(99)}})),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("encryption key 'k1'"), HasSubstr("does not match"),
                             HasSubstr("refusing to start"))));
  EXPECT_THAT(Open(KeyRing::FromKeys({{"k2", KeyOf(2)}, {"k1", KeyOf(99)}})),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("'k1'")));
  // Only unknown keys: refused, naming the ids on both sides.
  EXPECT_THAT(Open(KeyRing::FromKeys({{"k2", KeyOf(2)}})),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("key ids in database: k1"), HasSubstr("in key file: k2"))));
  {
    RawDb raw(path_);
    EXPECT_THAT(raw.Keys("meta"), ElementsAre("keycheck/k1", "schema_version"));
  }

  Reopen();
  absl::StatusOr<StoredGrant> got = store_->Get("org_1");
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->secrets.access_token.Reveal(), "access_1");
}

TEST_F(RocksDbGrantStoreTest, KeyRotationAtOpen) {
  ASSERT_THAT(store_->Put(MakeRecord("org_old"), Secrets("access_o", "refresh_o"), std::nullopt),
              IsOk());
  // New active key in front, old one kept for decryption.
  Reopen(KeyRing::FromKeys({{"k2", KeyOf(2)}, {"k1", KeyOf(1)}}));
  EXPECT_EQ(store_->Get("org_old")->secrets.access_token.Reveal(), "access_o");
  ASSERT_THAT(store_->Put(MakeRecord("org_new"), Secrets("access_n", "refresh_n"), std::nullopt),
              IsOk());
  EXPECT_EQ(store_->Get("org_new")->record.secrets().key_id(), "k2");

  // The old key dropped too early: start-up works (k2 checks out), old records do not open.
  Reopen(KeyRing::FromKeys({{"k2", KeyOf(2)}}));
  EXPECT_THAT(store_->Get("org_new"), IsOk());
  EXPECT_THAT(store_->Get("org_old"), StatusIs(absl::StatusCode::kFailedPrecondition,
                                               HasSubstr("key id 'k1' is not in the key file")));
  EXPECT_THAT(store_->LoadAll(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(RocksDbGrantStoreTest, SecondOpenInProcessIsRefused) {
  EXPECT_THAT(Open(RightKeys()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(path_), HasSubstr("in use by another connect-brokerd"))));
}

TEST_F(RocksDbGrantStoreTest, DataDirectoryLockedByAnotherProcess) {
  store_.reset();
  int ready[2];
  int release[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(release), 0);
  const std::string lock_path = path_ + "/LOCK";
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Child: only async-signal-safe calls. Take the same POSIX lock RocksDB takes.
    int fd = ::open(lock_path.c_str(), O_RDWR);
    struct flock fl = {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    char c = (fd >= 0 && ::fcntl(fd, F_SETLK, &fl) == 0) ? 'y' : 'n';
    (void)!::write(ready[1], &c, 1);
    (void)!::read(release[0], &c, 1);
    ::_exit(0);
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  EXPECT_EQ(c, 'y');
  EXPECT_THAT(Open(RightKeys()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("is in use by another connect-brokerd (RocksDB lock)")));
  ASSERT_EQ(::write(release[1], "x", 1), 1);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
  for (int fd : {ready[0], ready[1], release[0], release[1]}) {
    ::close(fd);
  }
  // Released: opens again.
  EXPECT_THAT(Open(RightKeys()), IsOk());
}

TEST_F(RocksDbGrantStoreTest, MissingDatabaseWithoutCreateIsAnError) {
  EXPECT_THAT(RocksDbGrantStore::Open({.path = dir_.File("absent"), .create_if_missing = false},
                                      RightKeys(), random_),
              Not(IsOk()));
  EXPECT_FALSE(std::filesystem::exists(dir_.File("absent") + "/CURRENT"));
}

TEST_F(RocksDbGrantStoreTest, NoPlaintextSecretsInDataFiles) {
  const std::vector<std::string> secrets = {"access_MARKERaccess1", "refresh_MARKERrefresh1",
                                            "access_MARKERaccess2", "refresh_MARKERrefresh2",
                                            "access_MARKERaccess3", "state_MARKERstate1",
                                            "state_MARKERstate2"};
  ASSERT_THAT(
      store_->Put(MakeRecord("org_files_one"), Secrets(secrets[0], secrets[1]), std::nullopt),
      IsOk());
  ASSERT_THAT(store_->PutPending(secrets[5], MakePending(kNowMs + 1)), IsOk());

  // Still open: everything sits in the WAL.
  // (find, not HasSubstr: a failure should not print every byte of the database)
  std::string bytes = AllFileBytes();
  EXPECT_NE(bytes.find("org_files_one"), std::string::npos);  // the scan does see record bytes
  for (const std::string& s : secrets) {
    EXPECT_EQ(bytes.find(s), std::string::npos) << s << " is in the WAL";
  }

  ASSERT_THAT(store_->FlushForTest(), IsOk());
  ASSERT_THAT(
      store_->Put(MakeRecord("org_files_two"), Secrets(secrets[2], secrets[3]), std::nullopt),
      IsOk());
  ASSERT_THAT(store_->Put(MakeRecord("org_files_one", "", GRANT_STATUS_ACTIVE, 2),
                          Secrets(secrets[4], secrets[1]), 1),
              IsOk());
  ASSERT_THAT(store_->PutPending(secrets[6], MakePending(kNowMs + 1)), IsOk());
  store_.reset();

  int sst_files = 0;
  bytes = AllFileBytes(&sst_files);
  EXPECT_GT(sst_files, 0);
  EXPECT_NE(bytes.find("org_files_one"), std::string::npos);
  EXPECT_NE(bytes.find("org_files_two"), std::string::npos);
  for (const std::string& s : secrets) {
    EXPECT_EQ(bytes.find(s), std::string::npos) << s << " is in the data files";
  }
}

TEST_F(RocksDbGrantStoreTest, RecordCopiedToAnotherOrganizationIsDataLoss) {
  ASSERT_THAT(store_->Put(MakeRecord("org_a"), Secrets("access_a", "refresh_a"), std::nullopt),
              IsOk());
  store_.reset();
  {
    RawDb raw(path_);
    std::string value = raw.Get("grants", "org_a");
    raw.Put("grants", "org_b", value);  // verbatim copy
    GrantRecord forged;
    ASSERT_TRUE(forged.ParseFromString(value));
    forged.set_organization_id("org_c");  // copy with the id rewritten to match
    raw.Put("grants", "org_c", forged.SerializeAsString());
  }
  Reopen();
  EXPECT_THAT(store_->Get("org_b"), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(store_->Get("org_c"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("wrong key or tampered record")));
  EXPECT_THAT(store_->LoadAll(), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(store_->Get("org_a"), IsOk());
}

TEST_F(RocksDbGrantStoreTest, TamperedCiphertextIsDataLoss) {
  ASSERT_THAT(store_->Put(MakeRecord("org_a"), Secrets("access_a", "refresh_a"), std::nullopt),
              IsOk());
  store_.reset();
  {
    RawDb raw(path_);
    GrantRecord record;
    ASSERT_TRUE(record.ParseFromString(raw.Get("grants", "org_a")));
    (*record.mutable_secrets()->mutable_ciphertext())[3] ^= 0x04;
    raw.Put("grants", "org_a", record.SerializeAsString());
  }
  Reopen();
  EXPECT_THAT(store_->Get("org_a"), StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(RocksDbGrantStoreTest, NewerDatabaseSchemaIsRefused) {
  store_.reset();
  {
    RawDb raw(path_);
    raw.Put("meta", "schema_version", "2");
  }
  EXPECT_THAT(Open(RightKeys()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("schema version 2")));
}

TEST_F(RocksDbGrantStoreTest, NewerRecordSchemaIsRefused) {
  ASSERT_THAT(store_->Put(MakeRecord("org_a"), Secrets("access_a", "refresh_a"), std::nullopt),
              IsOk());
  store_.reset();
  {
    RawDb raw(path_);
    GrantRecord record;
    ASSERT_TRUE(record.ParseFromString(raw.Get("grants", "org_a")));
    record.set_schema_version(2);
    raw.Put("grants", "org_a", record.SerializeAsString());
    PendingAuthorization pending = MakePending(kNowMs + 1);
    pending.set_schema_version(2);
    raw.Put("pending", PendingKey("state_v2"), pending.SerializeAsString());
  }
  Reopen();
  EXPECT_THAT(store_->Get("org_a"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("schema_version 2")));
  EXPECT_THAT(store_->List(GRANT_STATUS_UNSPECIFIED, 10, ""),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  // Not overwritten or deleted by an older writer.
  EXPECT_THAT(store_->Put(MakeRecord("org_a"), Secrets("a", "r"), 1),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(store_->Delete("org_a", std::nullopt),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(store_->TakePending("state_v2", FromUnixMillis(kNowMs)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("schema_version 2")));
}

TEST_F(RocksDbGrantStoreTest, UnknownColumnFamilyIsKeptAndIgnored) {
  store_.reset();
  {
    RawDb raw(path_, /*extra_family=*/"future_family");
    raw.Put("future_family", "f1", "from a newer version");
  }
  Reopen();
  store_.reset();
  RawDb raw(path_);
  EXPECT_EQ(raw.Get("future_family", "f1"), "from a newer version");
}

}  // namespace
}  // namespace connectbroker::storage
