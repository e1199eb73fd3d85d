// HttpsMollieOAuthApi::Create validation. No network: Create only parses and loads files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <fstream>

#include "daemon/mollie/https_mollie_oauth_api.h"
#include "tests/support/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace connectbroker::mollie {
namespace {

using ::connectbroker::testing::IsOk;
using ::connectbroker::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

HttpsMollieOAuthApi::Options Valid() {
  HttpsMollieOAuthApi::Options o;
  o.client_id = "app_test";
  o.client_secret = SecretString("supersecretvalue123");
  return o;
}

TEST(HttpsMollieOAuthApiCreateTest, DefaultsWithSystemCaStore) {
  boost::asio::io_context io;
  EXPECT_THAT(HttpsMollieOAuthApi::Create(io.get_executor(), Valid()), IsOk());
}

TEST(HttpsMollieOAuthApiCreateTest, RejectsNonHttpsBaseUrls) {
  boost::asio::io_context io;
  for (const char* url :
       {"http://api.mollie.com", "api.mollie.com", "", "https://", "https://user:pw@api.mollie.com",
        "https://api.mollie.com/?x=1", "ftp://api.mollie.com"}) {
    HttpsMollieOAuthApi::Options o = Valid();
    o.api_base_url = url;
    EXPECT_THAT(HttpsMollieOAuthApi::Create(io.get_executor(), o),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("api_base_url")))
        << url;
  }
}

TEST(HttpsMollieOAuthApiCreateTest, AcceptsPortsPrefixesAndIpLiterals) {
  boost::asio::io_context io;
  for (const char* url : {"https://127.0.0.1:8443", "https://[::1]:9000/", "https://x.test/api"}) {
    HttpsMollieOAuthApi::Options o = Valid();
    o.api_base_url = url;
    EXPECT_THAT(HttpsMollieOAuthApi::Create(io.get_executor(), o), IsOk()) << url;
  }
}

TEST(HttpsMollieOAuthApiCreateTest, MissingCaFileIsNamed) {
  boost::asio::io_context io;
  HttpsMollieOAuthApi::Options o = Valid();
  o.ca_file = "/nonexistent/dir/ca.pem";
  EXPECT_THAT(HttpsMollieOAuthApi::Create(io.get_executor(), o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("/nonexistent/dir/ca.pem")));
}

TEST(HttpsMollieOAuthApiCreateTest, GarbageCaFileIsNamed) {
  testing::TempDir dir;
  std::string path = dir.File("ca.pem");
  std::ofstream(path) << "-----BEGIN CERTIFICATE-----\nnot base64 at all\n";
  boost::asio::io_context io;
  HttpsMollieOAuthApi::Options o = Valid();
  o.ca_file = path;
  EXPECT_THAT(HttpsMollieOAuthApi::Create(io.get_executor(), o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(path)));
}

TEST(HttpsMollieOAuthApiCreateTest, NeedsCredentialsAndTimeouts) {
  boost::asio::io_context io;
  HttpsMollieOAuthApi::Options o = Valid();
  o.client_id.clear();
  EXPECT_THAT(HttpsMollieOAuthApi::Create(io.get_executor(), o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("client_id")));
  o = Valid();
  o.client_secret = SecretString();
  auto s = HttpsMollieOAuthApi::Create(io.get_executor(), o);
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("client_secret")));
  o = Valid();
  o.request_timeout = std::chrono::milliseconds(0);
  EXPECT_THAT(HttpsMollieOAuthApi::Create(io.get_executor(), o),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace connectbroker::mollie
