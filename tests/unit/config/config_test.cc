#include "daemon/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "tests/support/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace connectbroker::config {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::IsOk;
using testing::StatusIs;

constexpr const char* kMinimal = R"(
[mollie]
client_id = "app_test123"
client_secret_file = "secret.txt"
redirect_uri = "https://platform.example/oauth/callback"

[storage]
data_dir = "data"
key_file = "keys.txt"
)";

absl::StatusOr<Config> Parse(const std::string& text) {
  return ParseConfig(text, "test.toml", "/etc/cb");
}

void Write(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::trunc) << content;
}

TEST(ConfigTest, MinimalConfigGetsDocumentedDefaults) {
  auto c = Parse(kMinimal);
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->server.grpc_listen, "127.0.0.1:50051");
  EXPECT_EQ(c->server.http_listen, "127.0.0.1:8080");
  EXPECT_EQ(c->mollie.authorize_base_url, "https://my.mollie.com");
  EXPECT_EQ(c->mollie.api_base_url, "https://api.mollie.com");
  EXPECT_EQ(c->mollie.ca_file, "");
  EXPECT_DOUBLE_EQ(c->refresh.margin, 0.25);
  EXPECT_DOUBLE_EQ(c->refresh.jitter, 0.10);
  EXPECT_EQ(c->onboarding.state_ttl, std::chrono::seconds(600));
  // Relative paths resolve against the config file's directory.
  EXPECT_EQ(c->storage.data_dir, "/etc/cb/data");
  EXPECT_EQ(c->storage.key_file, "/etc/cb/keys.txt");
  EXPECT_EQ(c->mollie.client_secret_file, "/etc/cb/secret.txt");
  EXPECT_TRUE(c->mollie.client_secret.empty());
}

TEST(ConfigTest, EveryKeyCanBeSet) {
  auto c = Parse(R"(
log_level = "debug"
[server]
grpc_listen = "unix:/run/cb/grpc.sock"
http_listen = "127.0.0.1:0"
shutdown_grace_seconds = 3
[mollie]
authorize_base_url = "https://127.0.0.1:9443"
api_base_url = "https://127.0.0.1:9443/prefix"
ca_file = "/etc/ssl/ca.pem"
client_id = "app_x"
client_secret_file = "/run/credentials/secret"
redirect_uri = "http://127.0.0.1:8080/oauth/callback"
connect_timeout_ms = 2000
request_timeout_ms = 9000
[storage]
data_dir = "/var/lib/cb"
key_file = "/run/credentials/keys"
[refresh]
margin = 0.5
jitter = 0.2
min_serve_ttl_seconds = 2
max_min_ttl_seconds = 600
max_concurrent = 4
rate_per_second = 2.5
burst = 7
backoff_initial_ms = 100
backoff_max_ms = 5000
min_on_demand_interval_seconds = 3
breaker_failures = 7
breaker_probe_initial_ms = 100
breaker_probe_max_ms = 900
credentials_pause_ms = 1500
mass_invalid_grant_threshold = 4
mass_invalid_grant_window_seconds = 30
[events]
keep = 500
max_age_hours = 48
[onboarding]
default_scopes = ["payments.read"]
state_ttl_seconds = 120
[proxy]
threads = 3
max_connections = 8
idle_timeout_ms = 5000
request_timeout_ms = 7000
max_attempts = 5
retry_initial_ms = 50
retry_max_ms = 400
max_request_body_bytes = 4096
max_response_body_bytes = 8192
)");
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->log_level, LogLevel::kDebug);
  EXPECT_EQ(c->server.grpc_listen, "unix:/run/cb/grpc.sock");
  EXPECT_EQ(c->server.shutdown_grace, std::chrono::seconds(3));
  EXPECT_EQ(c->mollie.request_timeout, std::chrono::milliseconds(9000));
  EXPECT_EQ(c->refresh.max_concurrent, 4);
  EXPECT_DOUBLE_EQ(c->refresh.rate_per_second, 2.5);
  EXPECT_EQ(c->refresh.burst, 7);
  EXPECT_EQ(c->refresh.backoff_max, std::chrono::milliseconds(5000));
  EXPECT_EQ(c->onboarding.default_scopes, std::vector<std::string>{"payments.read"});
  EXPECT_EQ(c->onboarding.state_ttl, std::chrono::seconds(120));
  EXPECT_EQ(c->refresh.min_on_demand_interval, std::chrono::seconds(3));
  EXPECT_EQ(c->refresh.breaker_failures, 7);
  EXPECT_EQ(c->refresh.breaker_probe_initial, std::chrono::milliseconds(100));
  EXPECT_EQ(c->refresh.breaker_probe_max, std::chrono::milliseconds(900));
  EXPECT_EQ(c->refresh.credentials_pause, std::chrono::milliseconds(1500));
  EXPECT_EQ(c->refresh.mass_invalid_grant_threshold, 4);
  EXPECT_EQ(c->refresh.mass_invalid_grant_window, std::chrono::seconds(30));
  EXPECT_EQ(c->events.keep, 500);
  EXPECT_EQ(c->events.max_age, std::chrono::hours(48));
  EXPECT_EQ(c->proxy.threads, 3);
  EXPECT_EQ(c->proxy.max_connections, 8);
  EXPECT_EQ(c->proxy.idle_timeout, std::chrono::milliseconds(5000));
  EXPECT_EQ(c->proxy.request_timeout, std::chrono::milliseconds(7000));
  EXPECT_EQ(c->proxy.max_attempts, 5);
  EXPECT_EQ(c->proxy.retry_initial, std::chrono::milliseconds(50));
  EXPECT_EQ(c->proxy.retry_max, std::chrono::milliseconds(400));
  EXPECT_EQ(c->proxy.max_request_body_bytes, 4096);
  EXPECT_EQ(c->proxy.max_response_body_bytes, 8192);
}

struct BadCase {
  const char* name;
  std::string text;
  const char* expected;  // substring of the error
};

class ConfigBadInputTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConfigBadInputTest, IsRejectedNamingTheProblem) {
  auto c = Parse(GetParam().text);
  EXPECT_THAT(c, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(GetParam().expected)));
  EXPECT_THAT(c, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("test.toml")));
}

std::string With(const std::string& section_line, const std::string& extra) {
  std::string t = kMinimal;
  auto pos = t.find(section_line);
  t.insert(pos + section_line.size(), "\n" + extra);
  return t;
}

INSTANTIATE_TEST_SUITE_P(
    All, ConfigBadInputTest,
    ::testing::Values(
        BadCase{"syntax", "[mollie\nclient_id = 1", "test.toml:"},
        BadCase{"unknown_top", "foo = 1\n" + std::string(kMinimal), "unknown key(s) foo"},
        BadCase{"unknown_in_storage", std::string(kMinimal) + "\nfoo = 1\n", "storage.foo"},
        BadCase{"unknown_in_table", With("[storage]", "dat_dir = \"x\""), "storage.dat_dir"},
        BadCase{"unknown_table", std::string(kMinimal) + "\n[metrics]\nport = 1\n", "metrics"},
        BadCase{"secret_inline", With("[mollie]", "client_secret = \"s3cr3t\""),
                "secrets never go in the config file"},
        BadCase{"missing_client_id",
                "[mollie]\nclient_secret_file=\"s\"\nredirect_uri=\"https://x/cb\"\n"
                "[storage]\nkey_file=\"k\"\n",
                "mollie.client_id is required"},
        BadCase{"client_id_prefix", "[mollie]\nclient_id=\"xyz\"\nclient_secret_file=\"s\"\n"
                                    "redirect_uri=\"https://x/cb\"\n[storage]\nkey_file=\"k\"\n",
                "must start with \"app_\""},
        BadCase{"missing_secret_file",
                "[mollie]\nclient_id=\"app_x\"\nredirect_uri=\"https://x/cb\"\n"
                "[storage]\nkey_file=\"k\"\n",
                "mollie.client_secret_file is required"},
        BadCase{"missing_redirect",
                "[mollie]\nclient_id=\"app_x\"\nclient_secret_file=\"s\"\n"
                "[storage]\nkey_file=\"k\"\n",
                "mollie.redirect_uri is required"},
        BadCase{"redirect_not_url",
                "[mollie]\nclient_id=\"app_x\"\nclient_secret_file=\"s\"\n"
                "redirect_uri=\"ftp://x/cb\"\n[storage]\nkey_file=\"k\"\n",
                "mollie.redirect_uri must be an http(s):// URL"},
        BadCase{"missing_key_file",
                "[mollie]\nclient_id=\"app_x\"\nclient_secret_file=\"s\"\n"
                "redirect_uri=\"https://x/cb\"\n",
                "storage.key_file is required"},
        BadCase{"http_api", With("[mollie]", "api_base_url = \"http://api.mollie.com\""),
                "mollie.api_base_url must be an https:// URL"},
        BadCase{"api_with_query", With("[mollie]", "api_base_url = \"https://a.b/?x=1\""),
                "without spaces, query or fragment"},
        BadCase{"grpc_listen_int", "[server]\ngrpc_listen = 5\n" + std::string(kMinimal),
                "server.grpc_listen must be a string"},
        BadCase{"grpc_listen_empty", "[server]\ngrpc_listen = \"\"\n" + std::string(kMinimal),
                "server.grpc_listen must not be empty"},
        BadCase{"grpc_port_range", "[server]\ngrpc_listen = \"127.0.0.1:99999\"\n" +
                                       std::string(kMinimal),
                "server.grpc_listen needs a port between 0 and 65535"},
        BadCase{"http_port_missing", "[server]\nhttp_listen = \"127.0.0.1\"\n" +
                                         std::string(kMinimal),
                "server.http_listen must be host:port"},
        BadCase{"http_unix", "[server]\nhttp_listen = \"unix:/run/x.sock\"\n" +
                                 std::string(kMinimal),
                "server.http_listen must be host:port"},
        BadCase{"grpc_unix_relative", "[server]\ngrpc_listen = \"unix:x.sock\"\n" +
                                          std::string(kMinimal),
                "must be unix:/absolute/path"},
        BadCase{"grpc_port_text", "[server]\ngrpc_listen = \"localhost:http\"\n" +
                                      std::string(kMinimal),
                "needs a port between 0 and 65535"},
        BadCase{"probe_order",
                "[refresh]\nbreaker_probe_initial_ms = 5000\nbreaker_probe_max_ms = 100\n" +
                    std::string(kMinimal),
                "breaker_probe_max_ms must not be smaller"},
        BadCase{"breaker_zero", "[refresh]\nbreaker_failures = 0\n" + std::string(kMinimal),
                "refresh.breaker_failures must be between 1"},
        BadCase{"events_negative", "[events]\nkeep = -1\n" + std::string(kMinimal),
                "events.keep must be between 0"},
        BadCase{"events_unknown", "[events]\nkeep_days = 3\n" + std::string(kMinimal),
                "events.keep_days"},
        BadCase{"margin_range", "[refresh]\nmargin = 1.5\n" + std::string(kMinimal),
                "refresh.margin must be between"},
        BadCase{"margin_type", "[refresh]\nmargin = \"a lot\"\n" + std::string(kMinimal),
                "refresh.margin must be a number"},
        BadCase{"jitter_over_margin",
                "[refresh]\nmargin = 0.1\njitter = 0.2\n" + std::string(kMinimal),
                "refresh.jitter must be smaller than refresh.margin"},
        BadCase{"concurrency_zero", "[refresh]\nmax_concurrent = 0\n" + std::string(kMinimal),
                "refresh.max_concurrent must be between 1"},
        BadCase{"concurrency_float", "[refresh]\nmax_concurrent = 1.5\n" + std::string(kMinimal),
                "refresh.max_concurrent must be an integer"},
        BadCase{"backoff_order",
                "[refresh]\nbackoff_initial_ms = 5000\nbackoff_max_ms = 100\n" +
                    std::string(kMinimal),
                "backoff_max_ms must not be smaller"},
        BadCase{"scopes_not_list", "[onboarding]\ndefault_scopes = \"payments.read\"\n" +
                                       std::string(kMinimal),
                "onboarding.default_scopes must be an array of strings"},
        BadCase{"scopes_empty", "[onboarding]\ndefault_scopes = []\n" + std::string(kMinimal),
                "must name at least one scope"},
        BadCase{"state_ttl", "[onboarding]\nstate_ttl_seconds = 5\n" + std::string(kMinimal),
                "onboarding.state_ttl_seconds must be between"},
        BadCase{"log_level", "log_level = \"loud\"\n" + std::string(kMinimal),
                "log_level must be one of"},
        BadCase{"table_as_value", "server = 3\n" + std::string(kMinimal),
                "[server] must be a table"},
        BadCase{"api_port_zero", With("[mollie]", "api_base_url = \"https://127.0.0.1:0\""),
                "needs a port between 1 and 65535"},
        BadCase{"api_port_text", With("[mollie]", "api_base_url = \"https://a.b:http\""),
                "needs a port between 1 and 65535"},
        BadCase{"api_credentials",
                With("[mollie]", "api_base_url = \"https://user:pw@api.mollie.com\""),
                "must not carry credentials"},
        BadCase{"api_with_v2", With("[mollie]", "api_base_url = \"https://api.mollie.com/v2\""),
                "adds /v2/ and /oauth2/ itself"},
        BadCase{"authorize_no_host", With("[mollie]", "authorize_base_url = \"https://:443\""),
                "has no host"},
        BadCase{"proxy_threads_zero", "[proxy]\nthreads = 0\n" + std::string(kMinimal),
                "proxy.threads must be between 1"},
        BadCase{"proxy_connections_text",
                "[proxy]\nmax_connections = \"many\"\n" + std::string(kMinimal),
                "proxy.max_connections must be an integer"},
        BadCase{"proxy_attempts_range", "[proxy]\nmax_attempts = 11\n" + std::string(kMinimal),
                "proxy.max_attempts must be between 1 and 10"},
        BadCase{"proxy_retry_order",
                "[proxy]\nretry_initial_ms = 500\nretry_max_ms = 100\n" + std::string(kMinimal),
                "retry_max_ms must not be smaller"},
        BadCase{"proxy_body_tiny",
                "[proxy]\nmax_request_body_bytes = 10\n" + std::string(kMinimal),
                "proxy.max_request_body_bytes must be between 1024"},
        BadCase{"proxy_response_huge",
                "[proxy]\nmax_response_body_bytes = 999999999999\n" + std::string(kMinimal),
                "proxy.max_response_body_bytes must be between"},
        BadCase{"proxy_timeout_negative",
                "[proxy]\nrequest_timeout_ms = -5\n" + std::string(kMinimal),
                "proxy.request_timeout_ms must be between"},
        BadCase{"proxy_unknown", "[proxy]\nmax_conections = 3\n" + std::string(kMinimal),
                "proxy.max_conections"},
        BadCase{"proxy_not_table", "proxy = true\n" + std::string(kMinimal),
                "[proxy] must be a table"}),
    [](const ::testing::TestParamInfo<BadCase>& info) { return std::string(info.param.name); });

TEST(ConfigTest, SectionWithOnlyDefaultsIsFine) {
  EXPECT_THAT(Parse(With("[storage]", "")), IsOk());
}

TEST(LoadConfigTest, MissingFileIsNamed) {
  auto c = LoadConfig("/nonexistent/connect-brokerd.toml");
  EXPECT_THAT(c, StatusIs(absl::StatusCode::kNotFound,
                          HasSubstr("/nonexistent/connect-brokerd.toml does not exist")));
}

TEST(LoadConfigTest, ReadsTheSecretFileRelativeToTheConfig) {
  testing::TempDir dir;
  Write(dir.File("cb.toml"), kMinimal);
  Write(dir.File("secret.txt"), "s3cr3t-value\n");
  auto c = LoadConfig(dir.File("cb.toml"));
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->mollie.client_secret.Reveal(), "s3cr3t-value");
}

TEST(LoadConfigTest, MissingSecretFileIsNamedWithoutContent) {
  testing::TempDir dir;
  Write(dir.File("cb.toml"), kMinimal);
  auto c = LoadConfig(dir.File("cb.toml"));
  EXPECT_THAT(c, StatusIs(absl::StatusCode::kNotFound, HasSubstr("secret.txt does not exist")));
}

TEST(LoadConfigTest, EmptyOrMultiValueSecretFileIsRejected) {
  testing::TempDir dir;
  Write(dir.File("cb.toml"), kMinimal);
  Write(dir.File("secret.txt"), "\n");
  EXPECT_THAT(LoadConfig(dir.File("cb.toml")),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("is empty")));
  Write(dir.File("secret.txt"), "two words\n");
  auto c = LoadConfig(dir.File("cb.toml"));
  EXPECT_THAT(c, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("one value")));
  EXPECT_THAT(std::string(c.status().message()), Not(HasSubstr("words")));
}

TEST(LoadConfigTest, ConfigThatIsADirectoryIsNamed) {
  testing::TempDir dir;
  EXPECT_THAT(LoadConfig(dir.path().string()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("is a directory")));
}

TEST(LoadConfigTest, SecretFileThatIsADirectoryIsRejected) {
  testing::TempDir dir;
  Write(dir.File("cb.toml"), kMinimal);
  std::filesystem::create_directory(dir.File("secret.txt"));
  EXPECT_THAT(LoadConfig(dir.File("cb.toml")),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a regular file")));
}

}  // namespace
}  // namespace connectbroker::config

namespace connectbroker::config {
namespace {

TEST(ExampleConfigTest, DeployExampleParsesWithTheDocumentedDefaults) {
  std::ifstream in(CB_EXAMPLE_CONFIG);
  ASSERT_TRUE(in) << CB_EXAMPLE_CONFIG;
  std::stringstream ss;
  ss << in.rdbuf();
  auto c = ParseConfig(ss.str(), CB_EXAMPLE_CONFIG, "/etc/connect-broker");
  ASSERT_THAT(c, testing::IsOk());
  Config defaults;
  EXPECT_EQ(c->server.grpc_listen, defaults.server.grpc_listen);
  EXPECT_DOUBLE_EQ(c->refresh.margin, defaults.refresh.margin);
  EXPECT_EQ(c->refresh.breaker_failures, defaults.refresh.breaker_failures);
  EXPECT_EQ(c->refresh.credentials_pause, defaults.refresh.credentials_pause);
  EXPECT_EQ(c->events.keep, defaults.events.keep);
  EXPECT_EQ(c->onboarding.default_scopes, defaults.onboarding.default_scopes);
  EXPECT_EQ(c->proxy.threads, defaults.proxy.threads);
  EXPECT_EQ(c->proxy.max_connections, defaults.proxy.max_connections);
  EXPECT_EQ(c->proxy.idle_timeout, defaults.proxy.idle_timeout);
  EXPECT_EQ(c->proxy.request_timeout, defaults.proxy.request_timeout);
  EXPECT_EQ(c->proxy.max_attempts, defaults.proxy.max_attempts);
  EXPECT_EQ(c->proxy.retry_initial, defaults.proxy.retry_initial);
  EXPECT_EQ(c->proxy.retry_max, defaults.proxy.retry_max);
  EXPECT_EQ(c->proxy.max_request_body_bytes, defaults.proxy.max_request_body_bytes);
  EXPECT_EQ(c->proxy.max_response_body_bytes, defaults.proxy.max_response_body_bytes);
}

}  // namespace
}  // namespace connectbroker::config
