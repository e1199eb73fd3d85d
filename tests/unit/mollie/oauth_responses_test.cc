#include "daemon/mollie/oauth_responses.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/status_matchers.h"

namespace connectbroker::mollie {
namespace {

using ::connectbroker::testing::IsOk;
using ::connectbroker::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Optional;

constexpr char kAccess[] = "access_46EUJ6x8jFJZZeAvhNH4JVeybOgUs";
constexpr char kRefresh[] = "refresh_FS4xc3Mgci2xQ5s5DzaLXh3HhbOgUs";

std::string Fixture(const std::string& name) {
  std::ifstream in(std::string(CB_TESTDATA_DIR) + "/mollie/" + name);
  EXPECT_TRUE(in.good()) << "missing fixture " << name;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The status message (and its string form, payloads included) must not leak any of `secrets`.
void ExpectNoSecrets(const absl::Status& status, std::vector<std::string> secrets) {
  for (const std::string& secret : secrets) {
    EXPECT_THAT(std::string(status.message()), Not(HasSubstr(secret)));
    EXPECT_THAT(status.ToString(), Not(HasSubstr(secret)));
  }
}

// A valid token body with one field replaced (or removed when `value` is empty).
std::string TokenBodyWith(const std::string& field, const std::string& value) {
  std::vector<std::pair<std::string, std::string>> fields = {
      {"access_token", std::string("\"") + kAccess + "\""},
      {"refresh_token", std::string("\"") + kRefresh + "\""},
      {"expires_in", "3600"},
      {"token_type", "\"bearer\""},
      {"scope", "\"organizations.read payments.read\""}};
  std::string out = "{";
  for (const auto& [name, json] : fields) {
    std::string v = name == field ? value : json;
    if (v.empty()) {
      continue;
    }
    if (out.size() > 1) {
      out += ",";
    }
    out += "\"" + name + "\":" + v;
  }
  return out + "}";
}

TEST(ParseTokenResponseTest, ParsesFixture) {
  auto result = ParseTokenResponse(200, Fixture("token_single.json"), std::nullopt);
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->access_token.Reveal(), kAccess);
  EXPECT_EQ(result->refresh_token.Reveal(), kRefresh);
  EXPECT_EQ(result->expires_in, std::chrono::seconds(3600));
  EXPECT_THAT(result->scopes, ElementsAre("organizations.read"));
}

TEST(ParseTokenResponseTest, SplitsScopesAndAcceptsUppercaseBearer) {
  auto result = ParseTokenResponse(200, TokenBodyWith("token_type", "\"Bearer\""), std::nullopt);
  ASSERT_THAT(result, IsOk());
  EXPECT_THAT(result->scopes, ElementsAre("organizations.read", "payments.read"));
}

TEST(ParseTokenResponseTest, MissingScopeAndRefreshTokenAreFine) {
  auto result = ParseTokenResponse(
      200, "{\"access_token\":\"access_x1\",\"expires_in\":60,\"token_type\":\"bearer\"}",
      std::nullopt);
  ASSERT_THAT(result, IsOk());
  EXPECT_THAT(result->scopes, IsEmpty());
  EXPECT_TRUE(result->refresh_token.empty());
  EXPECT_EQ(result->expires_in, std::chrono::seconds(60));
}

TEST(ParseTokenResponseTest, NullRefreshTokenMeansNone) {
  auto result = ParseTokenResponse(200, TokenBodyWith("refresh_token", "null"), std::nullopt);
  ASSERT_THAT(result, IsOk());
  EXPECT_TRUE(result->refresh_token.empty());
}

struct MalformedCase {
  const char* name;
  std::string body;
  const char* expected;
};

class MalformedTokenTest : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(MalformedTokenTest, IsInternalAndQuotesNoToken) {
  const MalformedCase& c = GetParam();
  auto result = ParseTokenResponse(200, c.body, std::nullopt);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kInternal, HasSubstr(c.expected)));
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("malformed reply"));
  ExpectNoSecrets(result.status(), {kAccess, kRefresh, "access_46EUJ", "refresh_FS4x"});
  EXPECT_FALSE(RetryAfter(result.status()).has_value());
}

INSTANTIATE_TEST_SUITE_P(
    Bodies, MalformedTokenTest,
    ::testing::Values(
        MalformedCase{"MissingExpiresIn", TokenBodyWith("expires_in", ""), "missing expires_in"},
        MalformedCase{"ExpiresInString", TokenBodyWith("expires_in", "\"3600\""),
                      "expires_in is not an integer"},
        MalformedCase{"ExpiresInFloat", TokenBodyWith("expires_in", "3600.5"),
                      "expires_in is not an integer"},
        MalformedCase{"ExpiresInNegative", TokenBodyWith("expires_in", "-5"),
                      "expires_in is not positive"},
        MalformedCase{"ExpiresInZero", TokenBodyWith("expires_in", "0"),
                      "expires_in is not positive"},
        MalformedCase{"ExpiresInHuge", TokenBodyWith("expires_in", "18446744073709551615"),
                      "expires_in is out of range"},
        MalformedCase{"MissingAccessToken", TokenBodyWith("access_token", ""),
                      "missing access_token"},
        MalformedCase{"EmptyAccessToken", TokenBodyWith("access_token", "\"\""),
                      "access_token is empty"},
        MalformedCase{"AccessTokenNumber", TokenBodyWith("access_token", "42"),
                      "access_token is not a string"},
        MalformedCase{"TokenTypeMac", TokenBodyWith("token_type", "\"mac\""),
                      "unsupported token_type \"mac\""},
        MalformedCase{"MissingTokenType", TokenBodyWith("token_type", ""), "missing token_type"},
        MalformedCase{"ScopeArray", TokenBodyWith("scope", "[\"a.read\"]"),
                      "scope is not a string"},
        MalformedCase{"RefreshTokenNumber", TokenBodyWith("refresh_token", "7"),
                      "refresh_token is not a string"},
        MalformedCase{"NotJson", std::string("access_token=") + kAccess, "not JSON"},
        MalformedCase{"TruncatedJson",
                      std::string("{\"access_token\":\"") + kAccess + "\",\"expires_in\":36",
                      "not JSON"},
        MalformedCase{"JsonArray", std::string("[\"") + kAccess + "\"]", "not a JSON object"},
        MalformedCase{"Empty", "", "not JSON"}),
    [](const ::testing::TestParamInfo<MalformedCase>& info) { return info.param.name; });

TEST(ParseTokenResponseTest, InvalidGrantFixtureIsFailedPrecondition) {
  auto result = ParseTokenResponse(400, Fixture("error_bad_request.json"), std::nullopt);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kFailedPrecondition,
                               HasSubstr("Authorization code doesn't exist or is invalid")));
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("invalid_grant"));
}

TEST(ParseTokenResponseTest, InvalidGrantDescriptionIsScrubbed) {
  const std::string body = std::string(R"({"error":"invalid_grant","error_description":)") +
                           "\"refresh token " + kRefresh + " was revoked; code auth_abc123\"}";
  const std::string_view secrets[] = {"auth_abc123"};
  auto result = ParseTokenResponse(400, body, std::nullopt, secrets);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("was revoked")));
  ExpectNoSecrets(result.status(), {kRefresh, "auth_abc123", "FS4xc3Mgci2xQ5s5"});
}

TEST(ParseTokenResponseTest, CallerSecretsAreScrubbedEvenWithoutPrefix) {
  const std::string body =
      R"({"error":"invalid_request","error_description":"bad token s3cr3tvalue"})";
  const std::string_view secrets[] = {"s3cr3tvalue"};
  auto result = ParseTokenResponse(400, body, std::nullopt, secrets);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("[redacted]")));
  ExpectNoSecrets(result.status(), {"s3cr3tvalue"});
}

TEST(ParseTokenResponseTest, InvalidClientIsUnauthenticated) {
  auto result = ParseTokenResponse(
      400, R"({"error":"invalid_client","error_description":"Client authentication failed"})",
      std::nullopt);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnauthenticated,
                               HasSubstr("Client authentication failed")));
}

TEST(ParseTokenResponseTest, Http401HalIsUnauthenticated) {
  auto result = ParseTokenResponse(401, Fixture("error_unauthorized.json"), std::nullopt);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnauthenticated,
                               HasSubstr("Unauthorized Request: Missing authentication")));
}

TEST(ParseTokenResponseTest, Http401WithoutBodyIsUnauthenticated) {
  EXPECT_THAT(ParseTokenResponse(401, "", std::nullopt),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("HTTP 401")));
}

TEST(ParseTokenResponseTest, OtherOAuthErrorIsInvalidArgument) {
  auto result = ParseTokenResponse(
      400, R"({"error":"unsupported_grant_type","error_description":"nope"})", std::nullopt);
  EXPECT_THAT(result,
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unsupported_grant_type")));
}

TEST(ParseTokenResponseTest, LegacyV1ErrorIsUnderstood) {
  auto result = ParseTokenResponse(400, Fixture("v1_api_error.json"), std::nullopt);
  EXPECT_THAT(result,
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Invalid API version")));
}

TEST(ParseTokenResponseTest, Hal422IsInvalidArgumentWithField) {
  auto result = ParseTokenResponse(
      422,
      R"({"status":422,"title":"Unprocessable Entity","detail":"The code is invalid","field":"code"})",
      std::nullopt);
  EXPECT_THAT(result,
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("Unprocessable Entity: The code is invalid (field code)")));
}

TEST(ParseTokenResponseTest, Http500IsUnavailable) {
  auto result = ParseTokenResponse(500, "<html>oops</html>", std::nullopt);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("HTTP 500")));
  EXPECT_THAT(std::string(result.status().message()), Not(HasSubstr("oops")));
  EXPECT_FALSE(RetryAfter(result.status()).has_value());
}

TEST(ParseTokenResponseTest, Http503CarriesRetryAfter) {
  auto result = ParseTokenResponse(
      503, R"({"status":503,"title":"Service Unavailable","detail":"try later"})",
      std::chrono::seconds(30));
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("try later")));
  EXPECT_THAT(RetryAfter(result.status()), Optional(std::chrono::seconds(30)));
}

TEST(ParseTokenResponseTest, Http429IsResourceExhaustedWithRetryAfter) {
  auto result = ParseTokenResponse(
      429,
      R"({"status":429,"title":"Too Many Requests","detail":"You have exceeded the rate limit."})",
      std::chrono::seconds(2));
  EXPECT_THAT(result,
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("exceeded the rate limit")));
  EXPECT_THAT(RetryAfter(result.status()), Optional(std::chrono::seconds(2)));
}

TEST(ParseTokenResponseTest, Http429WithoutRetryAfter) {
  auto result = ParseTokenResponse(429, "", std::nullopt);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_FALSE(RetryAfter(result.status()).has_value());
}

TEST(ParseTokenResponseTest, RedirectIsInternal) {
  EXPECT_THAT(ParseTokenResponse(302, "", std::nullopt),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("HTTP 302")));
}

TEST(ParseTokenResponseTest, Http408IsUnavailable) {
  EXPECT_THAT(ParseTokenResponse(408, "", std::nullopt), StatusIs(absl::StatusCode::kUnavailable));
}

TEST(ParseTokenResponseTest, HugeDescriptionIsTruncatedAndControlCharsRemoved) {
  std::string body = R"({"error":"invalid_request","error_description":")" +
                     std::string(5000, 'x') + R"(\n\u0007"})";
  auto result = ParseTokenResponse(400, body, std::nullopt);
  ASSERT_THAT(result, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_LT(result.status().message().size(), 500u);
  EXPECT_EQ(std::string(result.status().message()).find('\n'), std::string::npos);
}

TEST(ParseRevokeResponseTest, NoContentAndOkAreOk) {
  EXPECT_THAT(ParseRevokeResponse(204, Fixture("revoke_token.json"), std::nullopt), IsOk());
  EXPECT_THAT(ParseRevokeResponse(200, "", std::nullopt), IsOk());
}

TEST(ParseRevokeResponseTest, ErrorsAreClassified) {
  EXPECT_THAT(
      ParseRevokeResponse(
          400,
          R"({"error":"invalid_request","error_description":"You need to provide the 'token' field"})",
          std::nullopt),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'token' field")));
  EXPECT_THAT(ParseRevokeResponse(401, "", std::nullopt),
              StatusIs(absl::StatusCode::kUnauthenticated));
  absl::Status s = ParseRevokeResponse(503, "", std::chrono::seconds(9));
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(RetryAfter(s), Optional(std::chrono::seconds(9)));
}

TEST(ParseOrganizationTest, ParsesFixture) {
  auto result = ParseOrganization(200, Fixture("organization_current.json"), std::nullopt);
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->id, "org_12345678");
  EXPECT_EQ(result->name, "Mollie B.V.");
  EXPECT_EQ(result->email, "info@mollie.com");
  EXPECT_EQ(result->locale, "nl_NL");
}

TEST(ParseOrganizationTest, MinimalBody) {
  auto result = ParseOrganization(200, R"({"id":"org_1","name":"X"})", std::nullopt);
  ASSERT_THAT(result, IsOk());
  EXPECT_EQ(result->id, "org_1");
  EXPECT_TRUE(result->email.empty());
}

TEST(ParseOrganizationTest, MalformedBodiesAreInternal) {
  EXPECT_THAT(ParseOrganization(200, R"({"name":"X"})", std::nullopt),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("missing id")));
  EXPECT_THAT(ParseOrganization(200, R"({"id":"pfl_1","name":"X"})", std::nullopt),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("org_")));
  EXPECT_THAT(ParseOrganization(200, R"({"id":"org_","name":"X"})", std::nullopt),
              StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(ParseOrganization(200, R"({"id":"org_1"})", std::nullopt),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("missing name")));
  EXPECT_THAT(ParseOrganization(200, R"({"id":"org_1","name":"X","email":3})", std::nullopt),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("email")));
  EXPECT_THAT(ParseOrganization(200, "garbage", std::nullopt),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("not JSON")));
  EXPECT_THAT(ParseOrganization(200, "[]", std::nullopt),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("not a JSON object")));
}

TEST(ParseOrganizationTest, Http401IsUnauthenticatedWithHalDetail) {
  const std::string_view secrets[] = {kAccess};
  auto result = ParseOrganization(401, Fixture("error_unauthorized.json"), std::nullopt, secrets);
  EXPECT_THAT(result,
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("Mollie rejected the access token (HTTP 401): Unauthorized "
                                 "Request: Missing authentication, or failed to authenticate")));
  ExpectNoSecrets(result.status(), {kAccess});
}

TEST(ParseOrganizationTest, Http403IsPermissionDenied) {
  auto result = ParseOrganization(
      403, R"({"status":403,"title":"Forbidden","detail":"Missing scope organizations.read"})",
      std::nullopt);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kPermissionDenied,
                               HasSubstr("Missing scope organizations.read")));
}

TEST(ParseOrganizationTest, RateLimitAndOutages) {
  auto limited = ParseOrganization(429, "", std::chrono::seconds(4));
  EXPECT_THAT(limited, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(RetryAfter(limited.status()), Optional(std::chrono::seconds(4)));
  EXPECT_THAT(ParseOrganization(502, "", std::nullopt), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(
      ParseOrganization(404, R"({"status":404,"title":"Not Found","detail":"x"})", std::nullopt),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Not Found")));
}

TEST(ParseOrganizationTest, TokenEchoedInErrorIsScrubbed) {
  const std::string body = std::string(R"({"status":401,"title":"Unauthorized Request",)") +
                           "\"detail\":\"Token " + kAccess + " expired\"}";
  auto result = ParseOrganization(401, body, std::nullopt);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("access_[redacted]")));
  ExpectNoSecrets(result.status(), {kAccess});
}

TEST(ParseRetryAfterTest, Values) {
  EXPECT_THAT(ParseRetryAfter("120"), Optional(std::chrono::seconds(120)));
  EXPECT_THAT(ParseRetryAfter(" 0 "), Optional(std::chrono::seconds(0)));
  EXPECT_THAT(ParseRetryAfter("99999999"), Optional(std::chrono::seconds(24 * 3600)));
  EXPECT_EQ(ParseRetryAfter(""), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("-1"), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("1.5"), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT"), std::nullopt);
}

TEST(RetryAfterPayloadTest, RoundTrips) {
  absl::Status s = absl::UnavailableError("x");
  EXPECT_EQ(RetryAfter(s), std::nullopt);
  SetRetryAfter(s, std::chrono::seconds(17));
  EXPECT_THAT(RetryAfter(s), Optional(std::chrono::seconds(17)));
  absl::Status ok;
  SetRetryAfter(ok, std::chrono::seconds(1));
  EXPECT_EQ(RetryAfter(ok), std::nullopt);
}

TEST(ScrubUpstreamTextTest, RedactsTokenLikeWordsOnly) {
  EXPECT_EQ(ScrubUpstreamText("use access_abc and refresh_x-y, not oauth_thing or access_", {}),
            "use access_[redacted] and refresh_[redacted], not oauth_thing or access_");
  EXPECT_EQ(ScrubUpstreamText("key live_abc test_def auth_Q1", {}),
            "key live_[redacted] test_[redacted] auth_[redacted]");
}

}  // namespace
}  // namespace connectbroker::mollie
