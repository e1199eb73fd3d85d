#include "storage/record_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/support/status_matchers.h"
#include "tests/unit/storage/fake_random.h"

namespace connectbroker::storage {
namespace {

using ::connectbroker::storage::testing::FakeRandom;
using ::connectbroker::testing::IsOk;
using ::connectbroker::testing::IsOkAndHolds;
using ::connectbroker::testing::StatusIs;
using ::testing::AllOf;
using ::testing::Eq;
using ::testing::HasSubstr;

KeyRing::Key KeyOf(uint8_t fill) {
  KeyRing::Key key;
  key.fill(fill);
  return key;
}

GrantRecord Record(const std::string& org, uint32_t version = kSchemaVersion) {
  GrantRecord record;
  record.set_schema_version(version);
  record.set_organization_id(org);
  return record;
}

TEST(RecordCodecTest, PendingKeyIsSha256Hex) {
  EXPECT_EQ(PendingKey("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(RecordCodecTest, SealAndOpenSecrets) {
  KeyRing keys = KeyRing::FromKeys({{"k1", KeyOf(1)}});
  FakeRandom random;
  GrantRecord record = Record("org_1");
  GrantSecretsPlain secrets{SecretString("access_x"), SecretString("refresh_y")};
  ASSERT_THAT(SealSecrets(keys, random, secrets, record), IsOk());
  EXPECT_EQ(record.secrets().key_id(), "k1");

  absl::StatusOr<GrantSecretsPlain> opened = OpenSecrets(keys, record, "org_1");
  ASSERT_THAT(opened, IsOk());
  EXPECT_EQ(opened->access_token.Reveal(), "access_x");
  EXPECT_EQ(opened->refresh_token.Reveal(), "refresh_y");

  // The organization id is the associated data: the blob does not open for another one.
  EXPECT_THAT(OpenSecrets(keys, record, "org_2"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("org_2")));
}

TEST(RecordCodecTest, DecodeGrantRecordChecksIntegrityAndVersion) {
  EXPECT_THAT(DecodeGrantRecord(Record("org_1").SerializeAsString(), "org_1"), IsOk());
  EXPECT_THAT(DecodeGrantRecord("\xff\xff\xff", "org_1"), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(DecodeGrantRecord("", "org_1"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("no schema_version")));
  EXPECT_THAT(DecodeGrantRecord(Record("org_1", 2).SerializeAsString(), "org_1"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("schema_version 2"), HasSubstr("org_1"))));
  EXPECT_THAT(DecodeGrantRecord(Record("org_1").SerializeAsString(), "org_2"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("names organization 'org_1'")));
}

TEST(RecordCodecTest, DecodePendingChecksVersion) {
  PendingAuthorization pending;
  pending.set_schema_version(1);
  EXPECT_THAT(DecodePending(pending.SerializeAsString()), IsOk());
  pending.set_schema_version(3);
  EXPECT_THAT(DecodePending(pending.SerializeAsString()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("schema_version 3")));
}

TEST(RecordCodecTest, EventKeysSortInSequenceOrder) {
  EXPECT_EQ(EventKey(1), std::string("\0\0\0\0\0\0\0\x01", 8));
  EXPECT_EQ(EventKey(0x0102030405060708), "\x01\x02\x03\x04\x05\x06\x07\x08");
  EXPECT_LT(EventKey(255), EventKey(256));
  EXPECT_LT(EventKey(0x00ffffffffffffff), EventKey(0x0100000000000000));
  for (uint64_t seq : {uint64_t{0}, uint64_t{1}, uint64_t{256}, ~uint64_t{0}}) {
    EXPECT_THAT(ParseEventKey(EventKey(seq)), IsOkAndHolds(Eq(seq)));
  }
  EXPECT_THAT(ParseEventKey("1234567"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("not 8 bytes")));
  EXPECT_THAT(ParseEventKey(""), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(RecordCodecTest, DecodeEventRecordChecksVersionAndSequence) {
  EventRecord event;
  event.set_schema_version(kSchemaVersion);
  event.set_sequence(5);
  event.set_type(EVENT_TYPE_REVOKED);
  absl::StatusOr<EventRecord> decoded = DecodeEventRecord(event.SerializeAsString(), 5);
  ASSERT_THAT(decoded, IsOk());
  EXPECT_EQ(decoded->type(), EVENT_TYPE_REVOKED);
  EXPECT_THAT(DecodeEventRecord(event.SerializeAsString(), 6),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("holds sequence 5")));
  EXPECT_THAT(DecodeEventRecord("\xff\xff\xff", 5), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(DecodeEventRecord("", 0),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("no schema_version")));
  event.set_schema_version(kSchemaVersion + 1);
  EXPECT_THAT(DecodeEventRecord(event.SerializeAsString(), 5),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("event 5"), HasSubstr("newer version"))));
}

TEST(RecordCodecTest, KeyCheck) {
  KeyRing keys = KeyRing::FromKeys({{"k1", KeyOf(1)}, {"k2", KeyOf(2)}});
  FakeRandom random;
  absl::StatusOr<KeyCheck> check = MakeKeyCheck(keys, "k2", random);
  ASSERT_THAT(check, IsOk());
  EXPECT_EQ(check->blob().key_id(), "k2");
  EXPECT_THAT(VerifyKeyCheck(keys, "k2", check->SerializeAsString()), IsOk());

  KeyRing wrong = KeyRing::FromKeys({{"k2", KeyOf(3)}});
  EXPECT_THAT(VerifyKeyCheck(wrong, "k2", check->SerializeAsString()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("encryption key 'k2'"), HasSubstr("does not match"),
                             HasSubstr("refusing to start"))));
  // A check record copied under another key's name is caught, not trusted.
  EXPECT_THAT(VerifyKeyCheck(keys, "k1", check->SerializeAsString()),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(VerifyKeyCheck(keys, "k2", "\xff\xff"), StatusIs(absl::StatusCode::kDataLoss));
}

}  // namespace
}  // namespace connectbroker::storage
