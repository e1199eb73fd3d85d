// The event log of RocksDbGrantStore (storage/rocksdb_event_log.*): atomic with grant changes,
// numbering across restarts and trims, paging, retention, schema checks.
#include "storage/rocksdb_event_log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "storage/record_codec.h"
#include "storage/rocksdb_grant_store.h"
#include "tests/support/status_matchers.h"
#include "tests/unit/storage/store_fixture.h"

namespace connectbroker::storage {
namespace {

using ::connectbroker::storage::testing::kNowMs;
using ::connectbroker::storage::testing::MakeRecord;
using ::connectbroker::storage::testing::RawDb;
using ::connectbroker::storage::testing::Secrets;
using ::connectbroker::testing::IsOk;
using ::connectbroker::testing::IsOkAndHolds;
using ::connectbroker::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr uint64_t kNoGeneration = 0;
const WallTime kNoAgeLimit = FromUnixMillis(0);
constexpr size_t kNoCountLimit = std::numeric_limits<size_t>::max();

EventRecord MakeEvent(EventType type, const std::string& org = "", int64_t time_ms = kNowMs,
                      uint64_t generation = kNoGeneration) {
  EventRecord event;
  event.set_time_ms(time_ms);
  event.set_type(type);
  event.set_organization_id(org);
  event.set_status(org.empty() ? GRANT_STATUS_UNSPECIFIED : GRANT_STATUS_ACTIVE);
  event.set_generation(generation);
  event.set_detail(absl::StrCat("detail of ", EventType_Name(type)));
  return event;
}

std::vector<uint64_t> Sequences(const std::vector<EventRecord>& events) {
  std::vector<uint64_t> out;
  for (const EventRecord& e : events) {
    out.push_back(e.sequence());
  }
  return out;
}

class RocksDbEventLogTest : public ::connectbroker::storage::testing::StoreFixture {
 protected:
  // Appends app-wide events with times first_ms, first_ms + step_ms, ...
  void AppendMany(int n, int64_t first_ms = kNowMs, int64_t step_ms = 0) {
    for (int i = 0; i < n; ++i) {
      EventRecord event = MakeEvent(EVENT_TYPE_MASS_INVALID_GRANT, "", first_ms + i * step_ms);
      ASSERT_THAT(store_->AppendEvent(event), IsOk());
    }
  }

  std::vector<uint64_t> AllSequences() {
    absl::StatusOr<std::vector<EventRecord>> events = store_->ReadEvents(0, kMaxReadEvents);
    EXPECT_THAT(events, IsOk());
    return events.ok() ? Sequences(*events) : std::vector<uint64_t>{};
  }
};

TEST_F(RocksDbEventLogTest, EmptyLog) {
  EXPECT_THAT(store_->ReadEvents(0, 10), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(store_->OldestEventSequence(), IsOkAndHolds(Eq(0u)));
  EXPECT_THAT(store_->LastEventSequence(), IsOkAndHolds(Eq(0u)));
  EXPECT_THAT(store_->TrimEvents(0, FromUnixMillis(kNowMs)), IsOkAndHolds(Eq(0)));
  // Writes without an event leave the log alone.
  ASSERT_THAT(store_->Put(MakeRecord("org_1"), Secrets("a", "r"), std::nullopt), IsOk());
  ASSERT_THAT(store_->Delete("org_1", std::nullopt), IsOk());
  EXPECT_THAT(store_->LastEventSequence(), IsOkAndHolds(Eq(0u)));
}

TEST_F(RocksDbEventLogTest, PutWithEventStoresBoth) {
  EventRecord onboarded = MakeEvent(EVENT_TYPE_ONBOARDED, "org_1", kNowMs, 1);
  ASSERT_THAT(store_->Put(MakeRecord("org_1", "acct_1"), Secrets("access_1", "refresh_1"),
                          std::nullopt, &onboarded),
              IsOk());
  EXPECT_EQ(onboarded.sequence(), 1u);
  EXPECT_EQ(onboarded.schema_version(), kSchemaVersion);

  EventRecord refreshed = MakeEvent(EVENT_TYPE_REFRESHED, "org_1", kNowMs + 1000, 2);
  ASSERT_THAT(store_->Put(MakeRecord("org_1", "acct_1", GRANT_STATUS_ACTIVE, 2),
                          Secrets("access_2", "refresh_2"), 1, &refreshed),
              IsOk());
  EXPECT_EQ(refreshed.sequence(), 2u);

  absl::StatusOr<std::vector<EventRecord>> events = store_->ReadEvents(0, 10);
  ASSERT_THAT(events, IsOk());
  ASSERT_THAT(*events, SizeIs(2));
  EXPECT_EQ((*events)[0].SerializeAsString(), onboarded.SerializeAsString());
  EXPECT_EQ((*events)[1].SerializeAsString(), refreshed.SerializeAsString());
  EXPECT_EQ((*events)[1].detail(), "detail of EVENT_TYPE_REFRESHED");
  EXPECT_THAT(store_->OldestEventSequence(), IsOkAndHolds(Eq(1u)));
  EXPECT_THAT(store_->LastEventSequence(), IsOkAndHolds(Eq(2u)));
  EXPECT_EQ(store_->Get("org_1")->secrets.access_token.Reveal(), "access_2");
}

TEST_F(RocksDbEventLogTest, FailedPutWritesNoEvent) {
  EventRecord first = MakeEvent(EVENT_TYPE_ONBOARDED, "org_1");
  ASSERT_THAT(store_->Put(MakeRecord("org_1", "acct_1"), Secrets("a1", "r1"), std::nullopt, &first),
              IsOk());
  ASSERT_THAT(store_->Put(MakeRecord("org_2", "acct_2"), Secrets("a2", "r2"), std::nullopt),
              IsOk());

  // A stale generation: the CAS fails, and neither grant nor event is written.
  EventRecord event = MakeEvent(EVENT_TYPE_REFRESHED, "org_1");
  event.set_sequence(77);  // left over from an earlier use of the same message
  EXPECT_THAT(store_->Put(MakeRecord("org_1", "acct_1", GRANT_STATUS_ACTIVE, 3),
                          Secrets("a_stale", "r_stale"), 2, &event),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(event.sequence(), 0u);
  // Insert over an existing grant, update of a missing one, account_ref held by another grant.
  EXPECT_THAT(store_->Put(MakeRecord("org_1"), Secrets("a", "r"), std::nullopt, &event),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(store_->Put(MakeRecord("org_9"), Secrets("a", "r"), 1, &event),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->Put(MakeRecord("org_1", "acct_2", GRANT_STATUS_ACTIVE, 2), Secrets("a", "r"),
                          1, &event),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("acct_2")));
  EXPECT_EQ(event.sequence(), 0u);
  // An event this version cannot write: refused before the grant is written.
  EventRecord newer = MakeEvent(EVENT_TYPE_ONBOARDED, "org_3");
  newer.set_schema_version(kSchemaVersion + 1);
  EXPECT_THAT(store_->Put(MakeRecord("org_3"), Secrets("a", "r"), std::nullopt, &newer),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("schema_version")));
  EXPECT_EQ(newer.sequence(), 0u);
  EXPECT_THAT(store_->Get("org_3"), StatusIs(absl::StatusCode::kNotFound));

  EXPECT_THAT(AllSequences(), ElementsAre(1u));
  EXPECT_THAT(store_->LastEventSequence(), IsOkAndHolds(Eq(1u)));
  absl::StatusOr<StoredGrant> got = store_->Get("org_1");
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(got->record.generation(), 1u);
  EXPECT_EQ(got->secrets.access_token.Reveal(), "a1");

  // Failed attempts consume no numbers.
  ASSERT_THAT(store_->Put(MakeRecord("org_1", "acct_1", GRANT_STATUS_ACTIVE, 2), Secrets("a", "r"),
                          1, &event),
              IsOk());
  EXPECT_EQ(event.sequence(), 2u);
}

TEST_F(RocksDbEventLogTest, DeleteWithEvent) {
  ASSERT_THAT(store_->Put(MakeRecord("org_1", "acct_1", GRANT_STATUS_REVOKED, 4), Secrets("a", "r"),
                          std::nullopt),
              IsOk());
  EventRecord deleted = MakeEvent(EVENT_TYPE_DELETED, "org_1", kNowMs, 4);
  EXPECT_THAT(store_->Delete("org_1", 3, &deleted), StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(deleted.sequence(), 0u);
  EXPECT_THAT(store_->Get("org_1"), IsOk());
  EXPECT_THAT(AllSequences(), IsEmpty());

  ASSERT_THAT(store_->Delete("org_1", 4, &deleted), IsOk());
  EXPECT_EQ(deleted.sequence(), 1u);
  EXPECT_THAT(store_->Get("org_1"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->FindByAccountRef("acct_1"), StatusIs(absl::StatusCode::kNotFound));

  EventRecord again = MakeEvent(EVENT_TYPE_DELETED, "org_1");
  EXPECT_THAT(store_->Delete("org_1", std::nullopt, &again), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(again.sequence(), 0u);

  absl::StatusOr<std::vector<EventRecord>> events = store_->ReadEvents(0, 10);
  ASSERT_THAT(events, IsOk());
  ASSERT_THAT(*events, SizeIs(1));
  EXPECT_EQ((*events)[0].type(), EVENT_TYPE_DELETED);
  EXPECT_EQ((*events)[0].organization_id(), "org_1");
  EXPECT_EQ((*events)[0].generation(), 4u);
}

TEST_F(RocksDbEventLogTest, AppendEventOnItsOwn) {
  EventRecord event = MakeEvent(EVENT_TYPE_APP_CREDENTIALS_REJECTED);
  ASSERT_THAT(store_->AppendEvent(event), IsOk());
  EXPECT_EQ(event.sequence(), 1u);
  EXPECT_EQ(event.schema_version(), kSchemaVersion);

  EventRecord newer = MakeEvent(EVENT_TYPE_MASS_INVALID_GRANT);
  newer.set_schema_version(kSchemaVersion + 1);
  EXPECT_THAT(store_->AppendEvent(newer), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(newer.sequence(), 0u);

  absl::StatusOr<std::vector<EventRecord>> events = store_->ReadEvents(0, 10);
  ASSERT_THAT(events, IsOk());
  ASSERT_THAT(*events, SizeIs(1));
  EXPECT_EQ((*events)[0].type(), EVENT_TYPE_APP_CREDENTIALS_REJECTED);
  EXPECT_THAT((*events)[0].organization_id(), IsEmpty());
}

TEST_F(RocksDbEventLogTest, EventLogSurvivesReopen) {
  EventRecord onboarded = MakeEvent(EVENT_TYPE_ONBOARDED, "org_1", kNowMs, 1);
  ASSERT_THAT(store_->Put(MakeRecord("org_1"), Secrets("a", "r"), std::nullopt, &onboarded),
              IsOk());
  EventRecord app = MakeEvent(EVENT_TYPE_APP_CREDENTIALS_REJECTED, "", kNowMs + 5);
  ASSERT_THAT(store_->AppendEvent(app), IsOk());
  Reopen();
  absl::StatusOr<std::vector<EventRecord>> events = store_->ReadEvents(0, 10);
  ASSERT_THAT(events, IsOk());
  ASSERT_THAT(*events, SizeIs(2));
  EXPECT_EQ((*events)[0].SerializeAsString(), onboarded.SerializeAsString());
  EXPECT_EQ((*events)[1].SerializeAsString(), app.SerializeAsString());
}

TEST_F(RocksDbEventLogTest, SequencesStrictlyIncreaseAcrossReopen) {
  AppendMany(3);
  Reopen();
  EXPECT_THAT(store_->LastEventSequence(), IsOkAndHolds(Eq(3u)));
  EventRecord event = MakeEvent(EVENT_TYPE_ONBOARDED, "org_1");
  ASSERT_THAT(store_->Put(MakeRecord("org_1"), Secrets("a", "r"), std::nullopt, &event), IsOk());
  EXPECT_EQ(event.sequence(), 4u);
  Reopen();
  AppendMany(1);
  EXPECT_THAT(AllSequences(), ElementsAre(1u, 2u, 3u, 4u, 5u));
}

TEST_F(RocksDbEventLogTest, SequencesNeverReusedAfterTrimmingEverything) {
  AppendMany(3);
  EXPECT_THAT(store_->TrimEvents(0, kNoAgeLimit), IsOkAndHolds(Eq(3)));
  EXPECT_THAT(AllSequences(), IsEmpty());
  EXPECT_THAT(store_->OldestEventSequence(), IsOkAndHolds(Eq(0u)));
  EXPECT_THAT(store_->LastEventSequence(), IsOkAndHolds(Eq(3u)));

  Reopen();
  EXPECT_THAT(store_->OldestEventSequence(), IsOkAndHolds(Eq(0u)));
  EXPECT_THAT(store_->LastEventSequence(), IsOkAndHolds(Eq(3u)));
  EventRecord event = MakeEvent(EVENT_TYPE_REVOKED);
  ASSERT_THAT(store_->AppendEvent(event), IsOk());
  EXPECT_EQ(event.sequence(), 4u);
  EXPECT_THAT(AllSequences(), ElementsAre(4u));
}

TEST_F(RocksDbEventLogTest, LastSequenceRecoveredFromKeysWithoutMetaRecord) {
  AppendMany(3);
  store_.reset();
  {
    RawDb raw(path_);
    EXPECT_EQ(raw.Get("meta", std::string(kEventsLastSequenceKey)), "3");
    raw.Delete("meta", std::string(kEventsLastSequenceKey));
  }
  Reopen();
  EXPECT_THAT(store_->LastEventSequence(), IsOkAndHolds(Eq(3u)));
  AppendMany(1);
  EXPECT_THAT(AllSequences(), ElementsAre(1u, 2u, 3u, 4u));
}

TEST_F(RocksDbEventLogTest, ReadEventsPagesAndClamps) {
  AppendMany(25);
  absl::StatusOr<std::vector<EventRecord>> page = store_->ReadEvents(0, 10);
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(Sequences(*page), ElementsAre(1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u, 9u, 10u));
  page = store_->ReadEvents(page->back().sequence(), 10);
  ASSERT_THAT(page, IsOk());
  EXPECT_EQ(page->front().sequence(), 11u);
  EXPECT_EQ(page->back().sequence(), 20u);
  page = store_->ReadEvents(page->back().sequence(), 10);
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(Sequences(*page), ElementsAre(21u, 22u, 23u, 24u, 25u));
  EXPECT_THAT(store_->ReadEvents(25, 10), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(store_->ReadEvents(1000, 10), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(store_->ReadEvents(std::numeric_limits<uint64_t>::max(), 10),
              IsOkAndHolds(IsEmpty()));

  // Below 1: one event.
  page = store_->ReadEvents(0, 0);
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(Sequences(*page), ElementsAre(1u));
  page = store_->ReadEvents(4, -7);
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(Sequences(*page), ElementsAre(5u));
}

TEST_F(RocksDbEventLogTest, ReadEventsReturnsAtMostTenThousand) {
  store_.reset();
  {
    // Written directly (unsynced, so the test stays fast), without the meta record.
    RawDb raw(path_);
    for (uint64_t seq = 1; seq <= 10'005; ++seq) {
      EventRecord event = MakeEvent(EVENT_TYPE_REFRESHED, "org_1");
      event.set_schema_version(kSchemaVersion);
      event.set_sequence(seq);
      raw.Put("events", EventKey(seq), event.SerializeAsString());
    }
  }
  Reopen();
  EXPECT_THAT(store_->LastEventSequence(), IsOkAndHolds(Eq(10'005u)));
  absl::StatusOr<std::vector<EventRecord>> page =
      store_->ReadEvents(0, std::numeric_limits<int>::max());
  ASSERT_THAT(page, IsOk());
  ASSERT_THAT(*page, SizeIs(10'000));
  EXPECT_EQ(page->front().sequence(), 1u);
  EXPECT_EQ(page->back().sequence(), 10'000u);
  page = store_->ReadEvents(10'000, 20'000);
  ASSERT_THAT(page, IsOk());
  EXPECT_THAT(*page, SizeIs(5));
}

TEST_F(RocksDbEventLogTest, TrimEventsByCount) {
  AppendMany(10);
  EXPECT_THAT(store_->TrimEvents(4, kNoAgeLimit), IsOkAndHolds(Eq(6)));
  EXPECT_THAT(AllSequences(), ElementsAre(7u, 8u, 9u, 10u));
  EXPECT_THAT(store_->OldestEventSequence(), IsOkAndHolds(Eq(7u)));
  EXPECT_THAT(store_->TrimEvents(4, kNoAgeLimit), IsOkAndHolds(Eq(0)));
  EXPECT_THAT(store_->TrimEvents(100, kNoAgeLimit), IsOkAndHolds(Eq(0)));
  EXPECT_THAT(store_->TrimEvents(1, kNoAgeLimit), IsOkAndHolds(Eq(3)));
  EXPECT_THAT(AllSequences(), ElementsAre(10u));
  EXPECT_THAT(store_->LastEventSequence(), IsOkAndHolds(Eq(10u)));
  // Reading from before the oldest simply starts at the oldest.
  EXPECT_THAT(store_->ReadEvents(2, 10), IsOkAndHolds(SizeIs(1)));
}

TEST_F(RocksDbEventLogTest, TrimEventsByAge) {
  // Sequence n has time kNowMs + (n - 1) * 1000.
  AppendMany(10, kNowMs, 1000);
  // Strictly older than drop_before goes; an event at exactly drop_before stays.
  EXPECT_THAT(store_->TrimEvents(kNoCountLimit, FromUnixMillis(kNowMs + 3000)),
              IsOkAndHolds(Eq(3)));
  EXPECT_THAT(store_->OldestEventSequence(), IsOkAndHolds(Eq(4u)));
  // Both limits apply, each on its own: here age removes more (4..6) than count (4)...
  EXPECT_THAT(store_->TrimEvents(6, FromUnixMillis(kNowMs + 6000)), IsOkAndHolds(Eq(3)));
  EXPECT_THAT(store_->OldestEventSequence(), IsOkAndHolds(Eq(7u)));
  // ...and here count removes more (7, 8) than age (7).
  EXPECT_THAT(store_->TrimEvents(2, FromUnixMillis(kNowMs + 7000)), IsOkAndHolds(Eq(2)));
  EXPECT_THAT(AllSequences(), ElementsAre(9u, 10u));
  Reopen();
  EXPECT_THAT(AllSequences(), ElementsAre(9u, 10u));
}

TEST_F(RocksDbEventLogTest, TrimByAgeOnlyRemovesFromTheOldestEnd) {
  // The wall clock stepped back between event 2 and event 3.
  for (int64_t t : {1000, 5000, 2000, 6000}) {
    EventRecord event = MakeEvent(EVENT_TYPE_REFRESHED, "org_1", kNowMs + t);
    ASSERT_THAT(store_->AppendEvent(event), IsOk());
  }
  EXPECT_THAT(store_->TrimEvents(kNoCountLimit, FromUnixMillis(kNowMs + 3000)),
              IsOkAndHolds(Eq(1)));
  EXPECT_THAT(AllSequences(), ElementsAre(2u, 3u, 4u));
}

TEST_F(RocksDbEventLogTest, EventOfNewerSchemaIsRefused) {
  AppendMany(3, kNowMs, 1000);
  store_.reset();
  {
    RawDb raw(path_);
    EventRecord event;
    ASSERT_TRUE(event.ParseFromString(raw.Get("events", EventKey(2))));
    event.set_schema_version(kSchemaVersion + 1);
    raw.Put("events", EventKey(2), event.SerializeAsString());
  }
  Reopen();
  EXPECT_THAT(store_->ReadEvents(0, 10),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat("schema_version ", kSchemaVersion + 1))));
  EXPECT_THAT(store_->ReadEvents(0, 1), IsOk());  // stops before it
  EXPECT_THAT(store_->ReadEvents(2, 10), IsOk());
  // Its age is still readable, so retention still works.
  EXPECT_THAT(store_->TrimEvents(kNoCountLimit, FromUnixMillis(kNowMs + 500)), IsOkAndHolds(Eq(1)));
  EXPECT_THAT(store_->ReadEvents(0, 10), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(store_->TrimEvents(kNoCountLimit, FromUnixMillis(kNowMs + 1500)),
              IsOkAndHolds(Eq(1)));
  EXPECT_THAT(AllSequences(), ElementsAre(3u));
}

TEST_F(RocksDbEventLogTest, CorruptEventsAreDataLoss) {
  AppendMany(3, kNowMs, 1000);
  store_.reset();
  {
    RawDb raw(path_);
    raw.Put("events", EventKey(1), "\xff\xff\xff");
    EventRecord moved;
    ASSERT_TRUE(moved.ParseFromString(raw.Get("events", EventKey(3))));
    raw.Put("events", EventKey(2), moved.SerializeAsString());  // holds sequence 3
  }
  Reopen();
  EXPECT_THAT(store_->ReadEvents(0, 10), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(store_->ReadEvents(1, 10),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("holds sequence 3")));
  // Retention clears an unreadable event at the old end.
  EXPECT_THAT(store_->TrimEvents(kNoCountLimit, kNoAgeLimit), IsOkAndHolds(Eq(1)));
  EXPECT_THAT(store_->OldestEventSequence(), IsOkAndHolds(Eq(2u)));
}

TEST_F(RocksDbEventLogTest, MalformedEventKeyRefusesOpen) {
  store_.reset();
  {
    RawDb raw(path_);
    raw.Put("events", "bad", "x");
  }
  EXPECT_THAT(Open(::connectbroker::storage::testing::RightKeys()),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("not 8 bytes")));
}

TEST_F(RocksDbEventLogTest, ConcurrentWritersGetDistinctIncreasingSequences) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 10;
  std::vector<std::vector<uint64_t>> seen(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string org = absl::StrCat("org_", t);
      for (int i = 0; i < kPerThread; ++i) {
        EventRecord event = MakeEvent(EVENT_TYPE_REFRESHED, org, kNowMs, i + 1);
        absl::Status status = i == 0 ? store_->Put(MakeRecord(org, "", GRANT_STATUS_ACTIVE, 1),
                                                   Secrets("a", "r"), std::nullopt, &event)
                                     : store_->AppendEvent(event);
        ASSERT_THAT(status, IsOk());
        seen[t].push_back(event.sequence());
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  std::set<uint64_t> all;
  for (const std::vector<uint64_t>& s : seen) {
    // Each writer sees its own numbers rise.
    EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
    all.insert(s.begin(), s.end());
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
  std::vector<uint64_t> expected;
  for (uint64_t seq = 1; seq <= kThreads * kPerThread; ++seq) {
    expected.push_back(seq);
  }
  EXPECT_EQ(AllSequences(), expected);
}

}  // namespace
}  // namespace connectbroker::storage
