#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "daemon/http/http_server.h"
#include "tests/support/status_matchers.h"

namespace connectbroker::http {
namespace {

using ::connectbroker::testing::IsOkAndHolds;
using ::connectbroker::testing::StatusIs;
using ::testing::Eq;
using ::testing::HasSubstr;

TEST(ParseHostPortTest, AcceptsIpv4Ipv6AndNames) {
  EXPECT_THAT(ParseHostPort("127.0.0.1:8080"),
              IsOkAndHolds(Eq(std::make_pair(std::string("127.0.0.1"), 8080))));
  EXPECT_THAT(ParseHostPort("[::1]:0"), IsOkAndHolds(Eq(std::make_pair(std::string("::1"), 0))));
  EXPECT_THAT(ParseHostPort("localhost:80"),
              IsOkAndHolds(Eq(std::make_pair(std::string("localhost"), 80))));
  EXPECT_THAT(ParseHostPort("0.0.0.0:65535"),
              IsOkAndHolds(Eq(std::make_pair(std::string("0.0.0.0"), 65535))));
}

TEST(ParseHostPortTest, RejectsBadInput) {
  for (const char* bad :
       {"", "127.0.0.1", "127.0.0.1:", ":8080", "localhost:http", "localhost:-1", "localhost:+80",
        "localhost:65536", "localhost:999999", "::1:80", "[::1]", "[::1]80", "[::1:80", "[]:80",
        "[nothost]:80", "bad host:80", "host/x:80", "localhost:80 "}) {
    EXPECT_THAT(ParseHostPort(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
}

TEST(ParseHostPortTest, ErrorsNameTheAddressAndTheProblem) {
  EXPECT_THAT(ParseHostPort("localhost:70000"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr("localhost:70000"), HasSubstr("range"))));
  EXPECT_THAT(ParseHostPort("localhost"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("missing port")));
}

}  // namespace
}  // namespace connectbroker::http
