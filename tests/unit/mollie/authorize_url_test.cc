#include "daemon/mollie/authorize_url.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/url/parse.hpp>
#include <string>

#include "daemon/mollie/form_encoding.h"
#include "tests/support/status_matchers.h"

namespace connectbroker::mollie {
namespace {

using ::connectbroker::testing::IsOk;
using ::connectbroker::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pair;

AuthorizeParams Basic() {
  AuthorizeParams p;
  p.client_id = "app_j9Pakf56Ajta6Y65AkdTtAv";
  p.state = "abcde";
  p.scopes = {"payments.read"};
  return p;
}

TEST(BuildAuthorizeUrlTest, MinimalUrlOmitsOptionalParameters) {
  EXPECT_EQ(BuildAuthorizeUrl(Basic()),
            "https://my.mollie.com/oauth2/authorize?client_id=app_j9Pakf56Ajta6Y65AkdTtAv"
            "&state=abcde&scope=payments.read&response_type=code");
}

TEST(BuildAuthorizeUrlTest, AllParameters) {
  AuthorizeParams p = Basic();
  p.redirect_uri = "https://broker.example.com/oauth/callback";
  p.scopes = {"organizations.read", "payments.read", "payments.write"};
  p.approval_prompt = ApprovalPrompt::kForce;
  p.locale = "nl_NL";
  p.landing_page = LandingPage::kSignup;
  EXPECT_EQ(BuildAuthorizeUrl(p),
            "https://my.mollie.com/oauth2/authorize?client_id=app_j9Pakf56Ajta6Y65AkdTtAv"
            "&redirect_uri=https%3A%2F%2Fbroker.example.com%2Foauth%2Fcallback&state=abcde"
            "&scope=organizations.read%20payments.read%20payments.write&response_type=code"
            "&approval_prompt=force&locale=nl_NL&landing_page=signup");
}

TEST(BuildAuthorizeUrlTest, AutoPromptAndLoginLandingPage) {
  AuthorizeParams p = Basic();
  p.approval_prompt = ApprovalPrompt::kAuto;
  p.landing_page = LandingPage::kLogin;
  std::string url = BuildAuthorizeUrl(p);
  EXPECT_THAT(url, HasSubstr("&approval_prompt=auto"));
  EXPECT_THAT(url, HasSubstr("&landing_page=login"));
  EXPECT_THAT(url, Not(HasSubstr("locale=")));
  EXPECT_THAT(url, Not(HasSubstr("redirect_uri=")));
}

TEST(BuildAuthorizeUrlTest, RedirectUriWithQueryAndPlusSurvivesDecoding) {
  AuthorizeParams p = Basic();
  p.redirect_uri = "https://ex.com/cb?a=1&b=2+3 4#frag";
  p.state = "st/ate+=&?";
  std::string url = BuildAuthorizeUrl(p);
  EXPECT_THAT(url,
              HasSubstr("redirect_uri=https%3A%2F%2Fex.com%2Fcb%3Fa%3D1%26b%3D2%2B3%204%23frag"));
  // Decoding the query as a form (where '+' means space) gives back the exact values.
  auto parsed = boost::urls::parse_uri(url);
  ASSERT_TRUE(parsed);
  auto fields = DecodeForm(std::string(parsed->encoded_query()));
  ASSERT_THAT(fields, IsOk());
  EXPECT_THAT(*fields, ::testing::Contains(Pair("redirect_uri", p.redirect_uri)));
  EXPECT_THAT(*fields, ::testing::Contains(Pair("state", p.state)));
}

TEST(BuildAuthorizeUrlTest, BaseUrlWithPortAndPrefix) {
  AuthorizeParams p = Basic();
  p.base_url = "https://127.0.0.1:8443/mollie/";
  EXPECT_THAT(BuildAuthorizeUrl(p),
              ::testing::StartsWith("https://127.0.0.1:8443/mollie/oauth2/authorize?client_id="));
}

TEST(BuildAuthorizeUrlTest, BadBaseGivesEmpty) {
  AuthorizeParams p = Basic();
  p.base_url = "not a url";
  EXPECT_EQ(BuildAuthorizeUrl(p), "");
}

TEST(ValidateScopeTest, AcceptsMollieScopes) {
  for (const char* s : {"payments.read", "payments.write", "payment-links.read",
                        "balance-transfers.write", "organizations.read"}) {
    EXPECT_THAT(ValidateScope(s), IsOk()) << s;
  }
}

TEST(ValidateScopeTest, RejectsOthers) {
  for (const char* s :
       {"", "payments", "payments.delete", "Payments.read", ".read", "payments.read ",
        "pay ments.read", "payments.read.write", "a_b.read", "payments1.read"}) {
    EXPECT_THAT(ValidateScope(s), StatusIs(absl::StatusCode::kInvalidArgument)) << s;
  }
}

TEST(ValidateLocaleTest, TheEightLocales) {
  for (const char* l : {"en_US", "nl_NL", "nl_BE", "fr_FR", "fr_BE", "de_DE", "es_ES", "it_IT"}) {
    EXPECT_THAT(ValidateLocale(l), IsOk()) << l;
  }
  for (const char* l : {"", "en", "en-US", "de_AT", "nl_nl"}) {
    EXPECT_THAT(ValidateLocale(l), StatusIs(absl::StatusCode::kInvalidArgument)) << l;
  }
}

TEST(ValidateAuthorizeParamsTest, Cases) {
  EXPECT_THAT(ValidateAuthorizeParams(Basic()), IsOk());
  AuthorizeParams p = Basic();
  p.base_url = "http://my.mollie.com";
  EXPECT_THAT(ValidateAuthorizeParams(p),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("https")));
  p.base_url = "http://127.0.0.1:8080";
  EXPECT_THAT(ValidateAuthorizeParams(p), IsOk());
  p = Basic();
  p.scopes = {};
  EXPECT_THAT(ValidateAuthorizeParams(p), StatusIs(absl::StatusCode::kInvalidArgument));
  p = Basic();
  p.scopes = {"payments.read", "bogus"};
  EXPECT_THAT(ValidateAuthorizeParams(p),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bogus")));
  p = Basic();
  p.state = "";
  EXPECT_THAT(ValidateAuthorizeParams(p), StatusIs(absl::StatusCode::kInvalidArgument));
  p = Basic();
  p.client_id = "";
  EXPECT_THAT(ValidateAuthorizeParams(p), StatusIs(absl::StatusCode::kInvalidArgument));
  p = Basic();
  p.locale = "xx_XX";
  EXPECT_THAT(ValidateAuthorizeParams(p), StatusIs(absl::StatusCode::kInvalidArgument));
  p = Basic();
  p.redirect_uri = "/relative";
  EXPECT_THAT(ValidateAuthorizeParams(p), StatusIs(absl::StatusCode::kInvalidArgument));
  p.redirect_uri = "https://ok.example/cb";
  EXPECT_THAT(ValidateAuthorizeParams(p), IsOk());
}

TEST(FormEncodingTest, EncodesPerFormRules) {
  EXPECT_EQ(EncodeForm({{"grant_type", "authorization_code"},
                        {"code", "auth_IbyEKUrXmGW1J8hPg6Ciyo4aaU6OAu"},
                        {"redirect_uri", "https://ex.com/cb?x=1&y=a b+c"}}),
            "grant_type=authorization_code&code=auth_IbyEKUrXmGW1J8hPg6Ciyo4aaU6OAu"
            "&redirect_uri=https%3A%2F%2Fex.com%2Fcb%3Fx%3D1%26y%3Da+b%2Bc");
  EXPECT_EQ(EncodeForm({{"a", ""}, {"b c", "~-._"}}), "a=&b+c=~-._");
  EXPECT_EQ(EncodeForm({}), "");
  EXPECT_EQ(EncodeFormComponent("a b", /*space_as_plus=*/false), "a%20b");
  EXPECT_EQ(EncodeFormComponent("\xC3\xA9"), "%C3%A9");
}

TEST(FormEncodingTest, DecodeRoundTrips) {
  std::string body = EncodeForm({{"token", "refresh_x+y z&w=v"}, {"hint", "refresh_token"}});
  auto fields = DecodeForm(body);
  ASSERT_THAT(fields, IsOk());
  EXPECT_THAT(*fields,
              ElementsAre(Pair("token", "refresh_x+y z&w=v"), Pair("hint", "refresh_token")));
  auto spaces = DecodeForm("a=b%20c+d&flag");
  ASSERT_THAT(spaces, IsOk());
  EXPECT_THAT(*spaces, ElementsAre(Pair("a", "b c d"), Pair("flag", "")));
  EXPECT_THAT(DecodeForm("a=%zz"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(DecodeForm(""), IsOk());
}

}  // namespace
}  // namespace connectbroker::mollie
