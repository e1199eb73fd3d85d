#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "connectbroker/client.h"

namespace connectbroker::client {
namespace {

using std::chrono::seconds;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kNow = 1714564800;  // 2024-05-01T12:00:00Z
const TimePoint now = TimePoint(seconds(kNow));

google::protobuf::Timestamp At(int64_t seconds_since_epoch) {
  google::protobuf::Timestamp t;
  t.set_seconds(seconds_since_epoch);
  return t;
}

v1::Merchant Acme() {
  v1::Merchant m;
  m.set_organization_id("org_123");
  m.set_organization_name("Acme \"Shoes\" B.V.");
  m.set_account_ref("acct-1");
  m.add_scopes("payments.read");
  m.add_scopes("organizations.read");
  m.set_status(v1::GRANT_STATUS_ACTIVE);
  *m.mutable_access_token_expires_at() = At(kNow + 52 * 60 + 10);
  *m.mutable_last_refresh_at() = At(kNow - 300);
  m.set_last_refresh_outcome("ok");
  m.set_refresh_count(12);
  m.set_generation(13);
  return m;
}

v1::Merchant Failing() {
  v1::Merchant m;
  m.set_organization_id("org_9");
  m.set_status(v1::GRANT_STATUS_REFRESH_FAILING);
  *m.mutable_access_token_expires_at() = At(kNow - 3);
  m.set_last_refresh_outcome("timeout");
  m.set_consecutive_failures(2);
  m.set_refresh_count(1);
  return m;
}

TEST(FormatDurationTest, PicksTheLargestWholeUnit) {
  EXPECT_EQ(FormatDuration(seconds(0)), "0s");
  EXPECT_EQ(FormatDuration(seconds(17)), "17s");
  EXPECT_EQ(FormatDuration(seconds(-3)), "-3s");
  EXPECT_EQ(FormatDuration(seconds(59)), "59s");
  EXPECT_EQ(FormatDuration(seconds(60)), "1m");
  EXPECT_EQ(FormatDuration(seconds(52 * 60 + 59)), "52m");
  EXPECT_EQ(FormatDuration(seconds(-125)), "-2m");
  EXPECT_EQ(FormatDuration(seconds(3600)), "1h");
  EXPECT_EQ(FormatDuration(seconds(23 * 3600 + 3599)), "23h");
  EXPECT_EQ(FormatDuration(seconds(3 * 86400 + 5)), "3d");
}

TEST(GrantStatusTest, NamesRoundTrip) {
  for (v1::GrantStatus s : {v1::GRANT_STATUS_ACTIVE, v1::GRANT_STATUS_REFRESH_FAILING,
                            v1::GRANT_STATUS_NEEDS_REAUTHORIZATION, v1::GRANT_STATUS_REVOKED}) {
    EXPECT_EQ(ParseGrantStatus(GrantStatusName(s)), s);
  }
  EXPECT_EQ(GrantStatusName(v1::GRANT_STATUS_NEEDS_REAUTHORIZATION), "needs-reauthorization");
  EXPECT_EQ(GrantStatusName(v1::GRANT_STATUS_UNSPECIFIED), "unspecified");
  EXPECT_FALSE(ParseGrantStatus("unspecified").has_value());
  EXPECT_FALSE(ParseGrantStatus("ACTIVE").has_value());
}

TEST(FormatTimestampTest, Rfc3339OrDash) {
  EXPECT_EQ(FormatTimestamp(At(kNow)), "2024-05-01T12:00:00Z");
  EXPECT_EQ(FormatTimestamp(google::protobuf::Timestamp()), "-");
  EXPECT_EQ(FormatExpiresIn(google::protobuf::Timestamp(), now), "-");
  EXPECT_EQ(FormatExpiresIn(At(kNow + 17), now), "17s");
  EXPECT_EQ(FormatExpiresIn(At(kNow - 3), now), "-3s");
}

TEST(FormatMerchantTableTest, AlignsColumns) {
  std::string table = FormatMerchantTable({Acme(), Failing()}, now);
  EXPECT_EQ(table,
            "ORGANIZATION  NAME               ACCOUNT_REF  STATUS           EXPIRES_IN  "
            "REFRESHES  LAST_REFRESH\n"
            "org_123       Acme \"Shoes\" B.V.  acct-1       active           52m         "
            "12         ok\n"
            "org_9         -                  -            refresh-failing  -3s         "
            "1          timeout (2 consecutive failures)\n");
}

TEST(FormatMerchantTableTest, ControlCharactersInNamesAreShownEscaped) {
  v1::Merchant m = Acme();
  m.set_organization_name("Evil\n<0>x\x1b[31m");
  std::string table = FormatMerchantTable({m}, now);
  EXPECT_THAT(table, HasSubstr("Evil\\x0a<0>x\\x1b[31m"));
  EXPECT_THAT(table, Not(HasSubstr("\x1b")));
  EXPECT_THAT(FormatMerchantDetails(m, now), Not(HasSubstr("\x1b")));
  EXPECT_THAT(FormatMerchantLine(m, now), Not(HasSubstr("\n<0>")));
}

TEST(FormatMerchantTableTest, EmptyListHasHeaderOnly) {
  EXPECT_EQ(FormatMerchantTable({}, now),
            "ORGANIZATION  NAME  ACCOUNT_REF  STATUS  EXPIRES_IN  REFRESHES  LAST_REFRESH\n");
}

TEST(FormatMerchantDetailsTest, KeyValueLines) {
  std::string details = FormatMerchantDetails(Acme(), now);
  EXPECT_THAT(details, HasSubstr("organization_id:          org_123\n"));
  EXPECT_THAT(details, HasSubstr("status:                   active\n"));
  EXPECT_THAT(details, HasSubstr("scopes:                   payments.read organizations.read\n"));
  EXPECT_THAT(details, HasSubstr("access_token_expires_at:  2024-05-01T12:52:10Z (in 52m)\n"));
  EXPECT_THAT(details, HasSubstr("last_refresh_at:          2024-05-01T11:55:00Z (5m ago)\n"));
  EXPECT_THAT(details, HasSubstr("next_refresh_at:          -\n"));
  EXPECT_THAT(details, HasSubstr("refresh_count:            12\n"));
}

TEST(FormatMerchantLineTest, SummarisesStatus) {
  EXPECT_EQ(FormatMerchantLine(Acme(), now),
            "org_123 (Acme \"Shoes\" B.V.) active, token expires in 52m, 12 refreshes, last "
            "refresh: ok");
  EXPECT_EQ(FormatMerchantLine(Failing(), now),
            "org_9 refresh-failing, token expired 3s ago, 1 refreshes, last refresh: timeout (2 "
            "consecutive failures)");
}

TEST(JsonTest, MerchantUsesSnakeCaseKeysAndAllFields) {
  std::string json = MerchantToJson(Failing());
  EXPECT_THAT(json, HasSubstr("\"organization_id\":\"org_9\""));
  EXPECT_THAT(json, HasSubstr("\"status\":\"GRANT_STATUS_REFRESH_FAILING\""));
  EXPECT_THAT(json, HasSubstr("\"access_token_expires_at\":\"2024-05-01T11:59:57Z\""));
  EXPECT_THAT(json, HasSubstr("\"account_ref\":\"\""));  // present even when empty
  EXPECT_THAT(json, HasSubstr("\"consecutive_failures\":2"));
  EXPECT_THAT(json, Not(HasSubstr("organizationId")));
}

TEST(JsonTest, MerchantsIsAnArray) {
  EXPECT_EQ(MerchantsToJson({}), "[]");
  std::string json = MerchantsToJson({Acme(), Failing()});
  EXPECT_EQ(json.front(), '[');
  EXPECT_EQ(json.back(), ']');
  EXPECT_THAT(json, HasSubstr("\"organization_id\":\"org_123\""));
  EXPECT_THAT(json, HasSubstr("},\n  {"));
  EXPECT_THAT(json, HasSubstr("Acme \\\"Shoes\\\" B.V."));
}

TEST(JsonTest, AccessToken) {
  v1::GetAccessTokenResponse r;
  r.set_access_token("access_abc\"def");
  *r.mutable_expires_at() = At(kNow);
  r.add_scopes("payments.read");
  r.add_scopes("refunds.write");
  r.set_organization_id("org_1");
  EXPECT_EQ(AccessTokenToJson(r),
            "{\"token\": \"access_abc\\\"def\", \"expires_at\": \"2024-05-01T12:00:00Z\", "
            "\"scopes\": [\"payments.read\", \"refunds.write\"], \"organization_id\": \"org_1\"}");
  r.clear_expires_at();
  r.clear_scopes();
  EXPECT_THAT(AccessTokenToJson(r), HasSubstr("\"expires_at\": null, \"scopes\": []"));
}

TEST(JsonTest, Authorization) {
  v1::BeginAuthorizationResponse r;
  r.set_authorize_url("https://my.mollie.com/oauth2/authorize?state=s1");
  r.set_state("s1");
  *r.mutable_expires_at() = At(kNow);
  EXPECT_EQ(AuthorizationToJson(r),
            "{\"authorize_url\":\"https://my.mollie.com/oauth2/authorize?state=s1\","
            "\"state\":\"s1\",\"expires_at\":\"2024-05-01T12:00:00Z\"}");
}

v1::Event Revoked() {
  v1::Event e;
  e.set_sequence(42);
  *e.mutable_time() = At(kNow);
  e.mutable_time()->set_nanos(250000000);
  e.set_type(v1::EVENT_TYPE_REVOKED);
  e.set_organization_id("org_123");
  e.set_status(v1::GRANT_STATUS_REVOKED);
  e.set_generation(7);
  e.set_detail("revoked by an administrator");
  return e;
}

TEST(EventTypeNameTest, EveryType) {
  EXPECT_EQ(EventTypeName(v1::EVENT_TYPE_ONBOARDED), "onboarded");
  EXPECT_EQ(EventTypeName(v1::EVENT_TYPE_REFRESHED), "refreshed");
  EXPECT_EQ(EventTypeName(v1::EVENT_TYPE_REFRESH_FAILED), "refresh-failed");
  EXPECT_EQ(EventTypeName(v1::EVENT_TYPE_NEEDS_REAUTHORIZATION), "needs-reauthorization");
  EXPECT_EQ(EventTypeName(v1::EVENT_TYPE_REVOKED), "revoked");
  EXPECT_EQ(EventTypeName(v1::EVENT_TYPE_DELETED), "deleted");
  EXPECT_EQ(EventTypeName(v1::EVENT_TYPE_APP_CREDENTIALS_REJECTED), "app-credentials-rejected");
  EXPECT_EQ(EventTypeName(v1::EVENT_TYPE_MASS_INVALID_GRANT), "mass-invalid-grant");
  EXPECT_EQ(EventTypeName(v1::EVENT_TYPE_UNSPECIFIED), "unspecified");
  EXPECT_EQ(EventTypeName(static_cast<v1::EventType>(99)), "unspecified");
}

TEST(FormatEventLineTest, SequenceTimeTypeOrgStatusDetail) {
  EXPECT_EQ(FormatEventLine(Revoked()),
            "42 2024-05-01T12:00:00.250Z revoked org_123 revoked revoked by an administrator");
}

TEST(FormatEventLineTest, DashesForAppWideEventsAndMissingFields) {
  v1::Event e;
  e.set_sequence(3);
  *e.mutable_time() = At(kNow);
  e.set_type(v1::EVENT_TYPE_APP_CREDENTIALS_REJECTED);
  EXPECT_EQ(FormatEventLine(e), "3 2024-05-01T12:00:00Z app-credentials-rejected - - -");
  v1::Event deleted = Revoked();
  deleted.set_type(v1::EVENT_TYPE_DELETED);
  deleted.clear_status();  // a deleted grant has no status
  deleted.clear_time();
  EXPECT_EQ(FormatEventLine(deleted), "42 - deleted org_123 - revoked by an administrator");
}

TEST(FormatEventLineTest, ControlCharactersAreEscaped) {
  v1::Event e = Revoked();
  e.set_detail("bad\nline\x1b[2J");
  e.set_organization_id("org_\r1");
  const std::string line = FormatEventLine(e);
  EXPECT_THAT(line, HasSubstr("org_\\x0d1"));
  EXPECT_THAT(line, HasSubstr("bad\\x0aline\\x1b[2J"));
  EXPECT_THAT(line, Not(HasSubstr("\n")));
  EXPECT_THAT(line, Not(HasSubstr("\x1b")));
  EXPECT_THAT(line, Not(HasSubstr("\r")));
}

TEST(FormatStatsTest, KeyValueLines) {
  v1::Stats s;
  s.set_grants(12);
  s.set_scheduled(11);
  s.set_refreshes_in_flight(1);
  s.set_refreshes_ok(340);
  s.set_refreshes_failed(2);
  EXPECT_EQ(FormatStats(s),
            "grants:               12\n"
            "scheduled:            11\n"
            "refreshes_in_flight:  1\n"
            "refreshes_ok:         340\n"
            "refreshes_failed:     2\n"
            "refresh_paused:       no\n"
            "pause_reason:         -\n");
  s.set_refresh_paused(true);
  s.set_pause_reason("circuit open\x1b]");
  const std::string text = FormatStats(s);
  EXPECT_THAT(text, HasSubstr("refresh_paused:       yes\n"));
  EXPECT_THAT(text, HasSubstr("pause_reason:         circuit open\\x1b]\n"));
}

TEST(JsonTest, EventIsOneLineWithSnakeCaseKeys) {
  v1::Event e = Revoked();
  e.set_detail("two\nlines");
  const std::string json = EventToJson(e);
  EXPECT_THAT(json, Not(HasSubstr("\n")));
  EXPECT_THAT(json, HasSubstr("\"sequence\":\"42\""));
  EXPECT_THAT(json, HasSubstr("\"time\":\"2024-05-01T12:00:00.250Z\""));
  EXPECT_THAT(json, HasSubstr("\"type\":\"EVENT_TYPE_REVOKED\""));
  EXPECT_THAT(json, HasSubstr("\"organization_id\":\"org_123\""));
  EXPECT_THAT(json, HasSubstr("\"status\":\"GRANT_STATUS_REVOKED\""));
  EXPECT_THAT(json, HasSubstr("\"detail\":\"two\\nlines\""));
  v1::Event app_wide;
  app_wide.set_sequence(1);
  EXPECT_THAT(EventToJson(app_wide), HasSubstr("\"organization_id\":\"\""));
}

TEST(JsonTest, StatsHasAllFields) {
  v1::Stats s;
  s.set_grants(3);
  s.set_refresh_paused(true);
  const std::string json = StatsToJson(s);
  EXPECT_THAT(json, HasSubstr("\"grants\":\"3\""));
  EXPECT_THAT(json, HasSubstr("\"refreshes_failed\":\"0\""));
  EXPECT_THAT(json, HasSubstr("\"refresh_paused\":true"));
  EXPECT_THAT(json, HasSubstr("\"pause_reason\":\"\""));
}

TEST(JsonTest, QuoteEscapes) {
  EXPECT_EQ(JsonQuote("a\"b\\c\nd\x01"), "\"a\\\"b\\\\c\\nd\\u0001\"");
}

}  // namespace
}  // namespace connectbroker::client
