#include "daemon/proxy/request_validation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/status_matchers.h"

namespace connectbroker::proxy {
namespace {

using ::testing::HasSubstr;
using ::connectbroker::testing::IsOk;
using ::connectbroker::testing::StatusIs;
constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;

TEST(ParseMethodTest, OnlyTheFourMollieMethods) {
  EXPECT_EQ(*ParseMethod("GET"), Method::kGet);
  EXPECT_EQ(*ParseMethod("POST"), Method::kPost);
  EXPECT_EQ(*ParseMethod("PATCH"), Method::kPatch);
  EXPECT_EQ(*ParseMethod("DELETE"), Method::kDelete);
  for (const char* bad : {"", "get", "PUT", "HEAD", "CONNECT", "TRACE", "GET ", "G\r\nET",
                          "OPTIONS"}) {
    EXPECT_THAT(ParseMethod(bad), StatusIs(kInvalid)) << bad;
  }
  EXPECT_THAT(ParseMethod("BREW").status().message(), HasSubstr("BREW"));
}

TEST(ValidatePathTest, AcceptsMollieRestPaths) {
  for (const char* ok : {"/v2/payments", "/v2/payments/tr_WDqYK6vllg", "/v2/payments/tr_1/refunds",
                         "/v2/organizations/me", "/v2/permissions/payments.read",
                         "/v2/profiles/", "/v2/customers/cst_8wmqcHMN4U/mandates",
                         "/v2/a%20b", "/v2/balances/bal_1/report"}) {
    EXPECT_THAT(ValidatePath(ok), IsOk()) << ok;
  }
}

TEST(ValidatePathTest, RejectsPathTricks) {
  struct Case {
    const char* path;
    const char* why;
  };
  for (const Case& c : {
           Case{"", "required"},
           Case{"v2/payments", "origin-form"},
           Case{"https://evil.example/v2/payments", "origin-form"},
           Case{"//evil.example/v2/payments", "network-path"},
           Case{"/oauth2/tokens", "/v2/"},
           Case{"/v2", "/v2/"},
           Case{"/v2/", "/v2/"},
           Case{"/v1/payments", "/v2/"},
           Case{"/V2/payments", "/v2/"},
           Case{"/v2/../oauth2/tokens", "\"..\""},
           Case{"/v2/payments/..", "\"..\""},
           Case{"/v2/./payments", "\".\""},
           Case{"/v2//payments", "empty segment"},
           Case{"/v2/payments%2F..%2Foauth2", "percent-encode"},
           Case{"/v2/payments%2f", "percent-encode"},
           Case{"/v2/%2e%2e/oauth2/tokens", "percent-encode"},
           Case{"/v2/payments%5Cx", "percent-encode"},
           Case{"/v2/payments%00", "percent-encode"},
           Case{"/v2/payments%0d%0aHost:x", "percent-encode"},
           Case{"/v2/payments%252F", "percent-encode"},
           Case{"/v2/payments%", "truncated"},
           Case{"/v2/payments%4", "truncated"},
           Case{"/v2/payments%zz", "malformed"},
           Case{"/v2/payments?testmode=true", "'?'"},
           Case{"/v2/payments#x", "'?'"},
           Case{"/v2/payments\\..\\oauth2", "backslash"},
           Case{"/v2/pay ments", "percent-encoded"},
           Case{"/v2/payments\r\nHost: evil", "control"},
           Case{"/v2/pay\tments", "control"},
           Case{"/v2/pa\"yments", "percent-encoded"},
           Case{"/v2/payments/..;/oauth2", "';'"},
           Case{"/v2/payments;jsessionid=x", "';'"},
       }) {
    absl::Status s = ValidatePath(c.path);
    EXPECT_THAT(s, StatusIs(kInvalid)) << c.path;
    EXPECT_THAT(s.message(), HasSubstr(c.why)) << c.path;
  }
  EXPECT_THAT(ValidatePath("/v2/" + std::string(kMaxPathBytes, 'a')), StatusIs(kInvalid));
}

TEST(BuildQueryTest, EncodesAndAddsTestmode) {
  EXPECT_EQ(*BuildQuery({}, false), "");
  EXPECT_EQ(*BuildQuery({}, true), "?testmode=true");
  EXPECT_EQ(*BuildQuery({{"limit", "5"}, {"from", "tr_1"}}, false), "?limit=5&from=tr_1");
  EXPECT_EQ(*BuildQuery({{"limit", "5"}}, true), "?limit=5&testmode=true");
  EXPECT_EQ(*BuildQuery({{"q", "a b&c=d"}}, false), "?q=a%20b%26c%3Dd");
  EXPECT_EQ(*BuildQuery({{"testmode", "false"}}, false), "?testmode=false");
}

TEST(BuildQueryTest, RejectsBadParameters) {
  EXPECT_THAT(BuildQuery({{"", "x"}}, false), StatusIs(kInvalid));
  EXPECT_THAT(BuildQuery({{"a", "x\r\ny"}}, false), StatusIs(kInvalid));
  EXPECT_THAT(BuildQuery({{"a\n", "x"}}, false), StatusIs(kInvalid));
  EXPECT_THAT(BuildQuery({{"testmode", "true"}}, true), StatusIs(kInvalid));
  EXPECT_THAT(BuildQuery({{"testmode", "yes"}}, false), StatusIs(kInvalid));
  std::vector<std::pair<std::string, std::string>> many(kMaxQueryParams + 1, {"a", "b"});
  EXPECT_THAT(BuildQuery(many, false), StatusIs(kInvalid));
}

TEST(FilterRequestHeadersTest, AllowListOnly) {
  auto ok = FilterRequestHeaders({{"Accept", "application/hal+json"},
                                  {"accept-language", "nl_NL"},
                                  {"Content-Type", "application/json; charset=utf-8"},
                                  {"X-Request-Id", "req-1"}});
  ASSERT_THAT(ok, IsOk());
  EXPECT_EQ(ok->size(), 4u);
  for (const char* name : {"Authorization", "authorization", "Host", "Cookie", "Connection",
                           "Transfer-Encoding", "Keep-Alive", "Upgrade", "TE", "Trailer",
                           "Proxy-Authorization", "Content-Length"}) {
    auto s = FilterRequestHeaders({{name, "Bearer access_stolen"}});
    EXPECT_THAT(s, StatusIs(kInvalid)) << name;
    EXPECT_THAT(s.status().message(), HasSubstr("may not be set")) << name;
    EXPECT_THAT(s.status().message(), ::testing::Not(HasSubstr("access_stolen")));
  }
  EXPECT_THAT(FilterRequestHeaders({{"X-Evil", "1"}}), StatusIs(kInvalid));
  EXPECT_THAT(FilterRequestHeaders({{"Idempotency-Key", "k"}}), StatusIs(kInvalid));
  EXPECT_THAT(FilterRequestHeaders({{"Content-Type", "text/plain"}}), StatusIs(kInvalid));
  EXPECT_THAT(FilterRequestHeaders({{"Content-Type", "application/jsonp"}}), StatusIs(kInvalid));
  EXPECT_THAT(FilterRequestHeaders({{"Content-Type", "application/json;charset=utf-8"}}), IsOk());
  auto twice = FilterRequestHeaders({{"X-Request-Id", "a"}, {"x-request-id", "b"}});
  EXPECT_THAT(twice, StatusIs(kInvalid));
  EXPECT_THAT(twice.status().message(), HasSubstr("more than once"));
  mollie::HeaderList many(10000, {"Accept", "application/json"});
  EXPECT_THAT(FilterRequestHeaders(many), StatusIs(kInvalid));
}

TEST(FilterRequestHeadersTest, RejectsCrlfAndControlCharacters) {
  EXPECT_THAT(FilterRequestHeaders({{"Accept", "a\r\nAuthorization: Bearer x"}}),
              StatusIs(kInvalid));
  EXPECT_THAT(FilterRequestHeaders({{"Accept\r\nX", "a"}}), StatusIs(kInvalid));
  EXPECT_THAT(FilterRequestHeaders({{"Accept: x", "a"}}), StatusIs(kInvalid));
  EXPECT_THAT(FilterRequestHeaders({{"", "a"}}), StatusIs(kInvalid));
  EXPECT_THAT(FilterRequestHeaders({{"Accept", std::string(1, '\0')}}), StatusIs(kInvalid));
  EXPECT_THAT(FilterRequestHeaders({{"Accept", std::string(kMaxHeaderValueBytes + 1, 'a')}}),
              StatusIs(kInvalid));
}

TEST(FilterResponseHeadersTest, PassesUsefulHeadersOnly) {
  auto out = FilterResponseHeaders({{"Content-Type", "application/hal+json"},
                                    {"Set-Cookie", "session=1"},
                                    {"Idempotent-Replayed", "true"},
                                    {"Retry-After", "3"},
                                    {"Location", "https://api.mollie.com/v2/payments/tr_1"},
                                    {"X-Mollie-Trace", "t"},
                                    {"Server", "nginx"},
                                    {"Connection", "keep-alive"}});
  std::vector<std::string> names;
  for (const auto& h : out) {
    names.push_back(h.first);
  }
  EXPECT_THAT(names, ::testing::ElementsAre("Content-Type", "Idempotent-Replayed", "Retry-After",
                                            "Location", "X-Mollie-Trace"));
}

TEST(PrepareBodyTest, JsonOnlyAndTestmodeInTheBody) {
  EXPECT_EQ(*PrepareBody(Method::kGet, "", false, 1024), "");
  EXPECT_THAT(PrepareBody(Method::kGet, "{}", false, 1024), StatusIs(kInvalid));
  EXPECT_EQ(*PrepareBody(Method::kPost, "", false, 1024), "");
  EXPECT_EQ(*PrepareBody(Method::kPost, "", true, 1024), "{\"testmode\":true}");
  EXPECT_EQ(*PrepareBody(Method::kPost, "{\"a\":1}", false, 1024), "{\"a\":1}");
  EXPECT_EQ(*PrepareBody(Method::kPatch, "{\"a\":1}", true, 1024), "{\"a\":1,\"testmode\":true}");
  EXPECT_EQ(*PrepareBody(Method::kPost, "{\"testmode\":false}", true, 1024),
            "{\"testmode\":true}");
  // DELETE carries testmode in the query, not the body.
  EXPECT_EQ(*PrepareBody(Method::kDelete, "", true, 1024), "");
  EXPECT_THAT(PrepareBody(Method::kPost, "not json", false, 1024), StatusIs(kInvalid));
  EXPECT_THAT(PrepareBody(Method::kPost, "{\"a\":", false, 1024), StatusIs(kInvalid));
  EXPECT_THAT(PrepareBody(Method::kPost, "[1,2]", true, 1024), StatusIs(kInvalid));
  EXPECT_THAT(PrepareBody(Method::kPost, "{\"testmode\":\"yes\"}", true, 1024),
              StatusIs(kInvalid));
  auto big = PrepareBody(Method::kPost, "\"" + std::string(2000, 'a') + "\"", false, 1024);
  EXPECT_THAT(big, StatusIs(kInvalid));
  EXPECT_THAT(big.status().message(), HasSubstr("max_request_body_bytes"));
}

TEST(IdempotencyKeyTest, ValidationAndDerivation) {
  EXPECT_THAT(ValidateIdempotencyKey("order-42-payment"), IsOk());
  EXPECT_THAT(ValidateIdempotencyKey(""), StatusIs(kInvalid));
  EXPECT_THAT(ValidateIdempotencyKey("has space"), StatusIs(kInvalid));
  EXPECT_THAT(ValidateIdempotencyKey("a\r\nb"), StatusIs(kInvalid));
  EXPECT_THAT(ValidateIdempotencyKey(std::string(256, 'k')), StatusIs(kInvalid));
  const std::string k = DeriveIdempotencyKey("org_1", "req-7");
  EXPECT_EQ(k.size(), 43u);
  EXPECT_EQ(k.substr(0, 3), "cb-");
  EXPECT_EQ(k, DeriveIdempotencyKey("org_1", "req-7"));
  EXPECT_NE(k, DeriveIdempotencyKey("org_2", "req-7"));
  EXPECT_NE(DeriveIdempotencyKey("org_1", "2:x"), DeriveIdempotencyKey("org_1:2", "x"));
  EXPECT_THAT(ValidateIdempotencyKey(k), IsOk());
}

TEST(NextPageTargetTest, FollowsOnlyLinksOnTheApiHost) {
  EXPECT_EQ(*NextPageTarget("https://api.mollie.com/v2/payments?from=tr_2&limit=5",
                            "https://api.mollie.com", ""),
            "/v2/payments?from=tr_2&limit=5");
  EXPECT_EQ(*NextPageTarget("https://127.0.0.1:8443/v2/payments?from=tr_2&testmode=true",
                            "https://127.0.0.1:8443", ""),
            "/v2/payments?from=tr_2&testmode=true");
  EXPECT_EQ(*NextPageTarget("https://gw.example/mollie/v2/payments?from=tr_2",
                            "https://gw.example", "/mollie"),
            "/v2/payments?from=tr_2");
  constexpr auto kInternal = absl::StatusCode::kInternal;
  EXPECT_THAT(NextPageTarget("https://evil.example/v2/payments", "https://api.mollie.com", ""),
              StatusIs(kInternal));
  EXPECT_THAT(NextPageTarget("http://api.mollie.com/v2/payments", "https://api.mollie.com", ""),
              StatusIs(kInternal));
  EXPECT_THAT(NextPageTarget("https://api.mollie.com:444/v2/payments", "https://api.mollie.com",
                             ""),
              StatusIs(kInternal));
  EXPECT_THAT(NextPageTarget("https://api.mollie.com/oauth2/tokens", "https://api.mollie.com", ""),
              StatusIs(kInternal));
  EXPECT_THAT(NextPageTarget("https://api.mollie.com/v2/../oauth2/tokens",
                             "https://api.mollie.com", ""),
              StatusIs(kInternal));
  EXPECT_THAT(NextPageTarget("/v2/payments?from=x", "https://api.mollie.com", ""),
              StatusIs(kInternal));
  EXPECT_THAT(NextPageTarget("https://user@api.mollie.com/v2/payments", "https://api.mollie.com",
                             ""),
              StatusIs(kInternal));
}

}  // namespace
}  // namespace connectbroker::proxy
