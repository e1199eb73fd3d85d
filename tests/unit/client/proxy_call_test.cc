// The `call` command's pure parts: argument checks, requests built from them, JSON validation
// and layout, and the formatting of responses and pages.
#include "proxy_call.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace connectbroker::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

CallArgs Get(std::string path = "/v2/profiles") {
  CallArgs args;
  args.merchant = "org_123";
  args.method = "GET";
  args.path = std::move(path);
  return args;
}

CallArgs Post(std::string data) {
  CallArgs args = Get("/v2/payments");
  args.method = "POST";
  args.data = std::move(data);
  return args;
}

std::string Error(const CallArgs& args) {
  absl::StatusOr<std::string> method = ValidateCallArgs(args);
  EXPECT_FALSE(method.ok());
  EXPECT_EQ(method.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(method.status().message());
}

TEST(ValidateCallArgsTest, AcceptsTheFourMethodsInAnyCase) {
  for (const char* m : {"GET", "post", "Patch", "DELETE"}) {
    CallArgs args = Get("/v2/payments/tr_1");
    args.method = m;
    absl::StatusOr<std::string> method = ValidateCallArgs(args);
    ASSERT_TRUE(method.ok()) << m << ": " << method.status();
    EXPECT_EQ(*method, std::string(m) == "post" ? "POST" : std::string(m) == "Patch" ? "PATCH" : m);
  }
  CallArgs put = Get();
  put.method = "PUT";
  EXPECT_EQ(Error(put), "METHOD must be GET, POST, PATCH or DELETE, not 'PUT'");
  put.method = "HEAD";
  EXPECT_THAT(Error(put), HasSubstr("not 'HEAD'"));
}

TEST(ValidateCallArgsTest, PathMustBeAnOriginFormPathUnderV2) {
  EXPECT_THAT(Error(Get("v2/payments")), HasSubstr("PATH must be a path under /v2/"));
  EXPECT_THAT(Error(Get("/v1/payments")), HasSubstr("under /v2/"));
  EXPECT_THAT(Error(Get("/v2/")), HasSubstr("under /v2/"));
  EXPECT_THAT(Error(Get("https://api.mollie.com/v2/payments")), HasSubstr("under /v2/"));
  EXPECT_THAT(Error(Get("/v2/payments?limit=5")), HasSubstr("pass it as --query NAME=VALUE"));
  EXPECT_THAT(Error(Get("/v2/payments#x")), HasSubstr("fragment"));
  EXPECT_THAT(Error(Get("/v2/pay ments")), HasSubstr("spaces or control characters"));
  EXPECT_THAT(Error(Get("/v2/payments\r\nHost: x")), HasSubstr("control characters"));
  EXPECT_THAT(Error(Get("/v2/../oauth2/tokens")), HasSubstr("'..' segments"));
  EXPECT_THAT(Error(Get("/v2/payments/./x")), HasSubstr("'.' or '..'"));
  EXPECT_TRUE(ValidateCallArgs(Get("/v2/payments/tr_1/refunds")).ok());
  EXPECT_TRUE(ValidateCallArgs(Get("/v2/payments..x")).ok());  // not a dot segment
}

TEST(ValidateCallArgsTest, MerchantMustBeGiven) {
  CallArgs args = Get();
  args.merchant = "";
  EXPECT_EQ(Error(args), "ORG must not be empty");
  args.by_account_ref = true;
  EXPECT_EQ(Error(args), "the account reference must not be empty");
}

TEST(ValidateCallArgsTest, BodyOnlyWithPostPatchDeleteAndOnlyJson) {
  CallArgs get = Get();
  get.data = "{}";
  EXPECT_THAT(Error(get), HasSubstr("need POST, PATCH or DELETE"));
  EXPECT_TRUE(ValidateCallArgs(Post(R"({"amount":{"currency":"EUR","value":"1.00"}})")).ok());
  CallArgs del = Post(R"({"testmode":true})");
  del.method = "DELETE";
  EXPECT_TRUE(ValidateCallArgs(del).ok());
  EXPECT_THAT(Error(Post("{bad")), HasSubstr("is not valid JSON"));
  EXPECT_THAT(Error(Post("")), HasSubstr("is not valid JSON"));
  EXPECT_THAT(Error(Post("{} {}")), HasSubstr("is not valid JSON"));
  CallArgs none = Post("");
  none.data.reset();
  EXPECT_TRUE(ValidateCallArgs(none).ok());  // a POST without a body is the broker's call
}

TEST(ValidateCallArgsTest, IdempotencyKeyNotWithGet) {
  CallArgs get = Get();
  get.idempotency_key = "k1";
  EXPECT_THAT(Error(get), HasSubstr("--idempotency-key needs POST, PATCH or DELETE"));
  CallArgs post = Post("{}");
  post.idempotency_key = "k1";
  EXPECT_TRUE(ValidateCallArgs(post).ok());
  post.idempotency_key = "k1\r\nX-Evil: 1";
  EXPECT_THAT(Error(post), HasSubstr("control characters"));
}

TEST(ValidateCallArgsTest, PagedOnlyForGetAndWithoutIncludeOrPretty) {
  CallArgs paged = Get("/v2/payments");
  paged.paged = true;
  paged.max_items = 5;
  EXPECT_TRUE(ValidateCallArgs(paged).ok());
  CallArgs post = Post("{}");
  post.paged = true;
  EXPECT_THAT(Error(post), HasSubstr("METHOD must be GET"));
  CallArgs include = paged;
  include.include = true;
  EXPECT_THAT(Error(include), HasSubstr("use --json"));
  CallArgs pretty = paged;
  pretty.pretty = true;
  EXPECT_THAT(Error(pretty), HasSubstr("one per line"));
  CallArgs unpaged = Get();
  unpaged.max_items = 3;
  EXPECT_EQ(Error(unpaged), "--max-items needs --paged");
  CallArgs both = Get();
  both.include = true;
  both.json = true;
  EXPECT_THAT(Error(both), HasSubstr("--include and --json"));
}

TEST(ValidateCallArgsTest, QueryAndHeaderArguments) {
  CallArgs args = Get();
  args.query = {"limit=5", "from="};
  args.headers = {"Accept-Language: nl_NL", "X-Request-Id:abc"};
  EXPECT_TRUE(ValidateCallArgs(args).ok());
  args.query = {"limit"};
  EXPECT_EQ(Error(args), "--query needs NAME=VALUE, got 'limit'");
  args.query = {"=5"};
  EXPECT_THAT(Error(args), HasSubstr("needs a NAME"));
  args.query = {};
  args.headers = {"Accept-Language nl_NL"};
  EXPECT_THAT(Error(args), HasSubstr("needs 'Name: value'"));
  args.headers = {"Bad Name: x"};
  EXPECT_THAT(Error(args), HasSubstr("is not an HTTP header name"));
  args.headers = {"X-Request-Id: a\r\nAuthorization: Bearer x"};
  EXPECT_THAT(Error(args), HasSubstr("must not contain line breaks"));
}

TEST(ParseArgTest, QuerySplitsAtTheFirstEquals) {
  absl::StatusOr<v1::QueryParam> q = ParseQueryArg("description=a=b c");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->name(), "description");
  EXPECT_EQ(q->value(), "a=b c");
  q = ParseQueryArg("from=");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->value(), "");
}

TEST(ParseArgTest, HeaderValueIsTrimmed) {
  absl::StatusOr<v1::HttpHeader> h = ParseHeaderArg("Accept:   application/hal+json \t");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->name(), "Accept");
  EXPECT_EQ(h->value(), "application/hal+json");
  h = ParseHeaderArg("X-Request-Id:");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->value(), "");
  EXPECT_FALSE(ParseHeaderArg(": x").ok());
}

TEST(BuildRequestTest, CallCarriesEveryArgument) {
  CallArgs args = Post(R"({"description":"Order 1"})");
  args.method = "post";
  args.query = {"include=details.qrCode"};
  args.headers = {"X-Request-Id: r1"};
  args.testmode = true;
  args.idempotency_key = "k-1";
  v1::ProxyRequest r = BuildProxyRequest(args);
  EXPECT_EQ(r.organization_id(), "org_123");
  EXPECT_FALSE(r.has_account_ref());
  EXPECT_EQ(r.method(), "POST");
  EXPECT_EQ(r.path(), "/v2/payments");
  ASSERT_EQ(r.query_size(), 1);
  EXPECT_EQ(r.query(0).name(), "include");
  EXPECT_EQ(r.query(0).value(), "details.qrCode");
  ASSERT_EQ(r.headers_size(), 1);
  EXPECT_EQ(r.headers(0).name(), "X-Request-Id");
  EXPECT_EQ(r.headers(0).value(), "r1");
  EXPECT_EQ(r.body(), R"({"description":"Order 1"})");
  EXPECT_TRUE(r.testmode());
  EXPECT_EQ(r.idempotency_key(), "k-1");
  EXPECT_FALSE(r.derive_idempotency_key());
}

TEST(BuildRequestTest, PagedCarriesEveryArgument) {
  CallArgs args = Get("/v2/payments");
  args.by_account_ref = true;
  args.merchant = "shop-42";
  args.paged = true;
  args.max_items = 7;
  args.testmode = true;
  args.query = {"limit=3"};
  v1::ProxyPagedRequest r = BuildProxyPagedRequest(args);
  EXPECT_EQ(r.account_ref(), "shop-42");
  EXPECT_FALSE(r.has_organization_id());
  EXPECT_EQ(r.path(), "/v2/payments");
  EXPECT_EQ(r.max_items(), 7);
  EXPECT_TRUE(r.testmode());
  ASSERT_EQ(r.query_size(), 1);
  EXPECT_EQ(r.query(0).value(), "3");
}

TEST(JsonTest, ValidateAcceptsDocumentsAndRejectsEverythingElse) {
  for (const char* ok : {"{}", "[]", "0", "\"x\"", "null", " {\"a\": [1, 2.5e3, true]} \n",
                         "{\"n\": 12345678901234567890123}", "\"\xc3\xa9\""}) {
    EXPECT_TRUE(ValidateJson(ok).ok()) << ok;
  }
  for (const char* bad : {"", "{", "{'a': 1}", "{\"a\": 1,}", "[1] [2]", "{\"a\":1} x", "// c\n{}",
                          "\"\xff\"", "NaN"}) {
    absl::Status s = ValidateJson(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_THAT(ValidateJson("{\"a\": x}").message(), HasSubstr("at byte 6"));
  EXPECT_THAT(ValidateJson("{\"a\": 1").message(), HasSubstr("incomplete"));
  EXPECT_THAT(ValidateJson("{\"secret\": x}").message(), Not(HasSubstr("secret")));
}

TEST(JsonTest, ReformatKeepsValuesExactly) {
  const std::string doc =
      R"({"id":"tr_1","amount":{"value":"10.00","currency":"EUR"},"n":1.50E+2,)"
      R"("big":12345678901234567890,"s":"a, b: {c} [d] \"q\" \\","e":[],"o":{},"l":[1,{"x":null}]})";
  EXPECT_EQ(ReformatJson(doc, 2),
            "{\n"
            "  \"id\": \"tr_1\",\n"
            "  \"amount\": {\n"
            "    \"value\": \"10.00\",\n"
            "    \"currency\": \"EUR\"\n"
            "  },\n"
            "  \"n\": 1.50E+2,\n"
            "  \"big\": 12345678901234567890,\n"
            "  \"s\": \"a, b: {c} [d] \\\"q\\\" \\\\\",\n"
            "  \"e\": [],\n"
            "  \"o\": {},\n"
            "  \"l\": [\n"
            "    1,\n"
            "    {\n"
            "      \"x\": null\n"
            "    }\n"
            "  ]\n"
            "}");
  EXPECT_EQ(ReformatJson(ReformatJson(doc, 2), 0), doc);
  EXPECT_EQ(ReformatJson("{ \"a\" :\n [ 1 , { } ] }", 0), R"({"a":[1,{}]})");
  EXPECT_EQ(ReformatJson("\"x\"", 2), "\"x\"");
}

TEST(FormatTest, StatusLineAndHead) {
  EXPECT_EQ(FormatStatusLine(200), "HTTP/1.1 200 OK");
  EXPECT_EQ(FormatStatusLine(422), "HTTP/1.1 422 Unprocessable Entity");
  EXPECT_EQ(FormatStatusLine(599), "HTTP/1.1 599");
  EXPECT_TRUE(IsSuccess(204));
  EXPECT_FALSE(IsSuccess(199));
  EXPECT_FALSE(IsSuccess(300));
  v1::ProxyResponse r;
  auto* h = r.add_headers();
  h->set_name("Content-Type");
  h->set_value("application/hal+json");
  h = r.add_headers();
  h->set_name("X-Odd");
  h->set_value("a\x1b[2Jb");
  EXPECT_EQ(FormatResponseHead(201, r.headers()),
            "HTTP/1.1 201 Created\nContent-Type: application/hal+json\nX-Odd: a\\x1b[2Jb\n\n");
}

TEST(FormatTest, DescribeHttpErrorUsesMollieDetail) {
  EXPECT_EQ(DescribeHttpError(404, ""), "HTTP 404 Not Found");
  EXPECT_EQ(DescribeHttpError(
                422, R"({"status":422,"title":"Unprocessable Entity","detail":"The amount is )"
                     R"(lower than the minimum","field":"amount","_links":{}})"),
            "HTTP 422 Unprocessable Entity: The amount is lower than the minimum");
  EXPECT_EQ(DescribeHttpError(500, "<html>oops</html>"), "HTTP 500 Internal Server Error");
  EXPECT_EQ(DescribeHttpError(418, R"({"detail":"line1\nline2"})"), "HTTP 418: line1\\x0aline2");
  const std::string long_detail(1000, 'x');
  EXPECT_EQ(DescribeHttpError(400, "{\"detail\":\"" + long_detail + "\"}").size(),
            std::string("HTTP 400 Bad Request: ").size() + 300 + 3);
}

TEST(FormatTest, ResponseJson) {
  v1::ProxyResponse r;
  r.set_status(201);
  r.set_body("{\n  \"id\": \"tr_1\"\n}");
  r.set_attempts(2);
  r.set_token_refreshed(true);
  auto* h = r.add_headers();
  h->set_name("Location");
  h->set_value("https://api.mollie.com/v2/payments/tr_1");
  EXPECT_EQ(ProxyResponseToJson(r),
            R"({"status": 201, "headers": [{"name": "Location", "value": )"
            R"("https://api.mollie.com/v2/payments/tr_1"}], "body": {"id":"tr_1"}, )"
            R"("attempts": 2, "token_refreshed": true})");
  r.clear_headers();
  r.set_body("");
  EXPECT_THAT(ProxyResponseToJson(r), HasSubstr(R"("body": null, "attempts")"));
  r.set_body("not json \xff");
  EXPECT_THAT(ProxyResponseToJson(r),
              HasSubstr("\"body\": null, \"body_text\": \"not json \xef\xbf\xbd\""));
  EXPECT_TRUE(ValidateJson(ProxyResponseToJson(r)).ok());
}

TEST(FormatTest, PageJsonAndItemLines) {
  v1::ProxyPage page;
  page.set_page_number(2);
  page.set_status(200);
  page.set_embedded_key("payments");
  page.add_items(R"({"id":"tr_3"})");
  page.add_items("{\n\"id\": \"tr_4\"\n}");
  const std::string all = ProxyPageToJson(page, 2);
  EXPECT_EQ(all, R"({"page_number": 2, "status": 200, "embedded_key": "payments", "headers": [], )"
                 R"("items": [{"id":"tr_3"}, {"id":"tr_4"}], "body": null})");
  EXPECT_TRUE(ValidateJson(all).ok());
  EXPECT_THAT(ProxyPageToJson(page, 1), HasSubstr(R"("items": [{"id":"tr_3"}], )"));
  EXPECT_EQ(ItemLine(page.items(0)), R"({"id":"tr_3"})");
  EXPECT_EQ(ItemLine(page.items(1)), R"({"id":"tr_4"})");
  v1::ProxyPage error;
  error.set_page_number(3);
  error.set_status(429);
  error.set_body(R"({"status":429,"title":"Too Many Requests"})");
  EXPECT_EQ(ProxyPageToJson(error, 0),
            R"({"page_number": 3, "status": 429, "embedded_key": "", "headers": [], )"
            R"("items": [], "body": {"status":429,"title":"Too Many Requests"}})");
}

}  // namespace
}  // namespace connectbroker::cli
