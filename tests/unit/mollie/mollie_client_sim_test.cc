// End-to-end: HttpsMollieOAuthApi against the real mollie-sim binary over HTTPS with a test CA.
// Each test starts its own simulator process (port 0, port file) and kills it in TearDown.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "daemon/mollie/authorize_url.h"
#include "daemon/mollie/form_encoding.h"
#include "daemon/mollie/https_mollie_oauth_api.h"
#include "tests/support/status_matchers.h"
#include "tests/support/temp_dir.h"

extern char** environ;

namespace connectbroker::mollie {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using ::connectbroker::testing::IsOk;
using ::connectbroker::testing::StatusIs;
using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;
using ::testing::AnyOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Optional;

constexpr char kClientId[] = "app_x";
constexpr char kClientSecret[] = "simsecret_4f9a2c77e1";
constexpr char kRedirectUri[] = "https://broker.example/oauth/callback";
constexpr char kState[] = "state-Zq81";

void ExpectNoSecrets(const absl::Status& status, const std::vector<std::string>& secrets) {
  for (const std::string& secret : secrets) {
    if (!secret.empty()) {
      EXPECT_THAT(status.ToString(), Not(HasSubstr(secret)));
    }
  }
  EXPECT_THAT(status.ToString(), Not(HasSubstr(kClientSecret)));
}

// Runs a program to completion; returns its exit status (or -1).
int RunProgram(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (std::string& a : args) {
    argv.push_back(a.data());
  }
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) {
    return -1;
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
    return -1;
  }
  return WEXITSTATUS(status);
}

struct RawReply {
  int status = 0;
  std::string body;
  std::string location;
};

class MollieClientSimTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ca_dir_ = new testing::TempDir();
    other_ca_dir_ = new testing::TempDir();
    ASSERT_EQ(RunProgram({GEN_TEST_CA_PATH, ca_dir_->path().string()}), 0);
    ASSERT_EQ(RunProgram({GEN_TEST_CA_PATH, other_ca_dir_->path().string()}), 0);
  }
  static void TearDownTestSuite() {
    delete ca_dir_;
    delete other_ca_dir_;
    ca_dir_ = nullptr;
    other_ca_dir_ = nullptr;
  }

  void SetUp() override { StartSim(); }

  void TearDown() override { StopSim(); }

  void StartSim() {
    const std::string port_file = run_dir_.File("port");
    std::vector<std::string> args = {MOLLIE_SIM_PATH,
                                     "--listen",
                                     "127.0.0.1:0",
                                     "--port-file",
                                     port_file,
                                     "--cert",
                                     ca_dir_->File("server.pem"),
                                     "--key",
                                     ca_dir_->File("server.key"),
                                     "--client-id",
                                     kClientId,
                                     "--client-secret",
                                     kClientSecret,
                                     "--redirect-uri",
                                     kRedirectUri,
                                     "--access-token-ttl",
                                     "3600"};
    std::vector<char*> argv;
    for (std::string& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    const pid_t parent = getpid();
    sim_pid_ = fork();
    ASSERT_GE(sim_pid_, 0) << "fork failed";
    if (sim_pid_ == 0) {
      // The simulator must not outlive a test binary that crashes before TearDown.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) {
        _exit(127);
      }
      execv(argv[0], argv.data());
      _exit(127);
    }
    // Wait (bounded) for the simulator to bind and write its port.
    const auto deadline = steady_clock::now() + seconds(10);
    while (steady_clock::now() < deadline) {
      std::ifstream in(port_file);
      int port = 0;
      if (in >> port && port > 0) {
        port_ = port;
        return;
      }
      int status = 0;
      if (waitpid(sim_pid_, &status, WNOHANG) == sim_pid_) {
        sim_pid_ = -1;
        FAIL() << "mollie-sim exited before writing its port file";
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    FAIL() << "mollie-sim did not write " << port_file << " within 10 s";
  }

  void StopSim() {
    if (sim_pid_ <= 0) {
      return;
    }
    kill(sim_pid_, SIGTERM);
    const auto deadline = steady_clock::now() + seconds(5);
    int status = 0;
    while (waitpid(sim_pid_, &status, WNOHANG) == 0) {
      if (steady_clock::now() > deadline) {
        kill(sim_pid_, SIGKILL);
        waitpid(sim_pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
    sim_pid_ = -1;
  }

  std::string BaseUrl() const { return "https://127.0.0.1:" + std::to_string(port_); }

  HttpsMollieOAuthApi::Options ClientOptions() const {
    HttpsMollieOAuthApi::Options o;
    o.api_base_url = BaseUrl();
    o.ca_file = ca_dir_->File("ca.pem");
    o.client_id = kClientId;
    o.client_secret = SecretString(kClientSecret);
    o.connect_timeout = milliseconds(3000);
    o.request_timeout = milliseconds(5000);
    return o;
  }

  std::unique_ptr<HttpsMollieOAuthApi> Client(HttpsMollieOAuthApi::Options o) {
    auto client = HttpsMollieOAuthApi::Create(io_.get_executor(), std::move(o));
    EXPECT_THAT(client, IsOk());
    return client.ok() ? *std::move(client) : nullptr;
  }
  std::unique_ptr<HttpsMollieOAuthApi> Client() { return Client(ClientOptions()); }

  // Drives one coroutine to completion on io_.
  template <typename T>
  T Run(asio::awaitable<T> op) {
    std::optional<T> out;
    std::exception_ptr error;
    asio::co_spawn(io_, std::move(op), [&](std::exception_ptr e, T value) {
      error = e;
      if (!e) {
        out.emplace(std::move(value));
      }
    });
    io_.restart();
    io_.run();
    if (error) {
      std::rethrow_exception(error);
    }
    return std::move(*out);
  }

  // A plain blocking HTTPS request to the simulator (consent screen and control API).
  RawReply Raw(http::verb verb, const std::string& target, const std::string& body = "") {
    asio::io_context io;
    ssl::context ctx(ssl::context::tls_client);
    ctx.load_verify_file(ca_dir_->File("ca.pem"));
    ctx.set_verify_mode(ssl::verify_peer);
    beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
    stream.set_verify_callback(ssl::host_name_verification("127.0.0.1"));
    beast::get_lowest_layer(stream).connect(
        asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_));
    stream.handshake(ssl::stream_base::client);
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
    }
    req.keep_alive(false);
    req.prepare_payload();
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    beast::error_code ignored;
    stream.shutdown(ignored);
    RawReply reply;
    reply.status = static_cast<int>(res.result_int());
    reply.body = res.body();
    reply.location = std::string(res[http::field::location]);
    return reply;
  }

  // Walks the consent screen (auto-approving) and returns the authorization code.
  std::string Consent(const std::string& org = "org_123", const std::string& name = "Test") {
    AuthorizeParams p;
    p.base_url = BaseUrl();
    p.client_id = kClientId;
    p.redirect_uri = kRedirectUri;
    p.state = kState;
    p.scopes = {"organizations.read", "payments.read"};
    EXPECT_THAT(ValidateAuthorizeParams(p), IsOk());
    const std::string url = BuildAuthorizeUrl(p) + "&sim_org=" + EncodeFormComponent(org) +
                            "&sim_name=" + EncodeFormComponent(name);
    auto parsed = boost::urls::parse_uri(url);
    EXPECT_TRUE(parsed.has_value()) << url;
    if (!parsed) {
      return "";
    }
    RawReply reply = Raw(http::verb::get, std::string(parsed->encoded_target()));
    EXPECT_EQ(reply.status, 302) << reply.body;
    auto location = boost::urls::parse_uri(reply.location);
    EXPECT_TRUE(location.has_value()) << reply.location;
    if (!location) {
      return "";
    }
    EXPECT_TRUE(reply.location.starts_with(std::string(kRedirectUri) + "?")) << reply.location;
    auto fields = DecodeForm(std::string(location->encoded_query()));
    EXPECT_THAT(fields, IsOk());
    std::string code;
    for (const auto& [k, v] : *fields) {
      if (k == "code") {
        code = v;
      }
      if (k == "state") {
        EXPECT_EQ(v, kState);
      }
    }
    EXPECT_TRUE(code.starts_with("auth_")) << reply.location;
    return code;
  }

  void SetFault(const std::string& target, const std::string& mode, int count = 1,
                int retry_after = -1) {
    std::string body = "{\"target\":\"" + target + "\",\"mode\":\"" + mode +
                       "\",\"count\":" + std::to_string(count);
    if (retry_after >= 0) {
      body += ",\"retry_after_seconds\":" + std::to_string(retry_after);
    }
    body += "}";
    RawReply reply = Raw(http::verb::post, "/_sim/faults", body);
    ASSERT_EQ(reply.status, 200) << reply.body;
  }

  // Consent + code exchange: a fresh grant.
  TokenResponse NewGrant(MollieOAuthApi& api) {
    std::string code = Consent();
    auto tokens = Run(api.ExchangeCode(SecretString(code), kRedirectUri));
    EXPECT_THAT(tokens, IsOk());
    return tokens.ok() ? *tokens : TokenResponse{};
  }

  static testing::TempDir* ca_dir_;
  static testing::TempDir* other_ca_dir_;
  testing::TempDir run_dir_;
  pid_t sim_pid_ = -1;
  int port_ = 0;
  asio::io_context io_;
};

testing::TempDir* MollieClientSimTest::ca_dir_ = nullptr;
testing::TempDir* MollieClientSimTest::other_ca_dir_ = nullptr;

TEST_F(MollieClientSimTest, ExchangeOrganizationRefreshRevoke) {
  auto api = Client();
  ASSERT_NE(api, nullptr);
  const std::string code = Consent();
  auto tokens = Run(api->ExchangeCode(SecretString(code), kRedirectUri));
  ASSERT_THAT(tokens, IsOk());
  EXPECT_TRUE(tokens->access_token.Reveal().starts_with("access_"));
  EXPECT_TRUE(tokens->refresh_token.Reveal().starts_with("refresh_"));
  EXPECT_EQ(tokens->expires_in, seconds(3600));
  EXPECT_THAT(tokens->scopes, Contains("organizations.read"));

  auto org = Run(api->GetCurrentOrganization(tokens->access_token));
  ASSERT_THAT(org, IsOk());
  EXPECT_EQ(org->id, "org_123");
  EXPECT_EQ(org->name, "Test");

  auto refreshed = Run(api->Refresh(tokens->refresh_token, kRedirectUri));
  ASSERT_THAT(refreshed, IsOk());
  EXPECT_NE(refreshed->access_token, tokens->access_token);
  EXPECT_FALSE(refreshed->refresh_token.empty());
  SecretString refresh = refreshed->refresh_token;

  auto org2 = Run(api->GetCurrentOrganization(refreshed->access_token));
  EXPECT_THAT(org2, IsOk());

  EXPECT_THAT(Run(api->RevokeRefreshToken(refresh)), IsOk());

  auto after = Run(api->Refresh(refresh, kRedirectUri));
  EXPECT_THAT(after, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("invalid_grant")));
  ExpectNoSecrets(after.status(), {refresh.Reveal(), code});

  auto org3 = Run(api->GetCurrentOrganization(refreshed->access_token));
  EXPECT_THAT(org3, StatusIs(absl::StatusCode::kUnauthenticated));
  ExpectNoSecrets(org3.status(), {refreshed->access_token.Reveal()});
}

TEST_F(MollieClientSimTest, CodeCannotBeExchangedTwice) {
  auto api = Client();
  ASSERT_NE(api, nullptr);
  const std::string code = Consent();
  ASSERT_THAT(Run(api->ExchangeCode(SecretString(code), kRedirectUri)), IsOk());
  auto again = Run(api->ExchangeCode(SecretString(code), kRedirectUri));
  EXPECT_THAT(again, StatusIs(absl::StatusCode::kFailedPrecondition));
  ExpectNoSecrets(again.status(), {code});
}

TEST_F(MollieClientSimTest, WrongClientSecretIsUnauthenticated) {
  HttpsMollieOAuthApi::Options o = ClientOptions();
  o.client_secret = SecretString("wrong_secret_value_123");
  auto api = Client(o);
  ASSERT_NE(api, nullptr);
  const std::string code = Consent();
  auto result = Run(api->ExchangeCode(SecretString(code), kRedirectUri));
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnauthenticated));
  ExpectNoSecrets(result.status(), {code, "wrong_secret_value_123"});
}

TEST_F(MollieClientSimTest, UnknownAccessTokenIsUnauthenticated) {
  auto api = Client();
  ASSERT_NE(api, nullptr);
  auto org = Run(api->GetCurrentOrganization(SecretString("access_doesnotexist123")));
  EXPECT_THAT(org, StatusIs(absl::StatusCode::kUnauthenticated,
                            HasSubstr("Mollie rejected the access token")));
  ExpectNoSecrets(org.status(), {"access_doesnotexist123"});
}

struct FaultCase {
  const char* mode;
  int retry_after;
  absl::StatusCode code;
  std::optional<seconds> expected_retry_after;
};

class MollieClientSimFaultTest : public MollieClientSimTest,
                                 public ::testing::WithParamInterface<FaultCase> {};

TEST_P(MollieClientSimFaultTest, TokenFaultGivesTheRightCode) {
  const FaultCase& c = GetParam();
  auto api = Client();
  ASSERT_NE(api, nullptr);
  TokenResponse grant = NewGrant(*api);
  ASSERT_FALSE(grant.refresh_token.empty());

  SetFault("token", c.mode, 1, c.retry_after);
  auto result = Run(api->Refresh(grant.refresh_token, kRedirectUri));
  EXPECT_THAT(result, StatusIs(c.code)) << c.mode;
  EXPECT_EQ(RetryAfter(result.status()), c.expected_retry_after) << result.status();
  ExpectNoSecrets(result.status(), {grant.refresh_token.Reveal(), grant.access_token.Reveal()});

  // The fault was for one request only: the grant still works.
  EXPECT_THAT(Run(api->Refresh(grant.refresh_token, kRedirectUri)), IsOk());
}

INSTANTIATE_TEST_SUITE_P(
    Faults, MollieClientSimFaultTest,
    ::testing::Values(FaultCase{"http_503", 7, absl::StatusCode::kUnavailable, seconds(7)},
                      FaultCase{"http_500", -1, absl::StatusCode::kUnavailable, std::nullopt},
                      FaultCase{"http_429", 3, absl::StatusCode::kResourceExhausted, seconds(3)},
                      FaultCase{"garbage", -1, absl::StatusCode::kInternal, std::nullopt},
                      FaultCase{"missing_fields", -1, absl::StatusCode::kInternal, std::nullopt},
                      FaultCase{"invalid_client", -1, absl::StatusCode::kUnauthenticated,
                                std::nullopt},
                      FaultCase{"reset", -1, absl::StatusCode::kUnavailable, std::nullopt}),
    [](const ::testing::TestParamInfo<FaultCase>& info) { return std::string(info.param.mode); });

TEST_F(MollieClientSimTest, ApiFaultOnOrganization) {
  auto api = Client();
  ASSERT_NE(api, nullptr);
  TokenResponse grant = NewGrant(*api);
  SetFault("api", "http_429", 1, 5);
  auto org = Run(api->GetCurrentOrganization(grant.access_token));
  EXPECT_THAT(org, StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(RetryAfter(org.status()), Optional(seconds(5)));
  SetFault("api", "missing_fields");
  EXPECT_THAT(Run(api->GetCurrentOrganization(grant.access_token)),
              StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(Run(api->GetCurrentOrganization(grant.access_token)), IsOk());
}

TEST_F(MollieClientSimTest, TheTransportSaysWhetherTheRequestLeft) {
  auto api = Client();
  ASSERT_NE(api, nullptr);
  TokenResponse grant = NewGrant(*api);
  // Reset after the request arrived: it may have been processed.
  SetFault("token", "reset");
  auto reset = Run(api->Refresh(grant.refresh_token, kRedirectUri));
  EXPECT_THAT(reset, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(RequestMayHaveBeenSent(reset.status()));
  EXPECT_FALSE(RequestCertainlyNotSent(reset.status()));
  // An HTTP 503 is an answer: neither flag.
  SetFault("token", "http_503");
  auto answered = Run(api->Refresh(grant.refresh_token, kRedirectUri));
  EXPECT_FALSE(RequestMayHaveBeenSent(answered.status()));
  EXPECT_FALSE(RequestCertainlyNotSent(answered.status()));
  // Nothing listens on port 1 of loopback: refused before anything was sent.
  HttpsMollieOAuthApi::Options o = ClientOptions();
  o.api_base_url = "https://127.0.0.1:1";
  auto closed = Client(o);
  ASSERT_NE(closed, nullptr);
  auto refused = Run(closed->Refresh(grant.refresh_token, kRedirectUri));
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(RequestCertainlyNotSent(refused.status()));
  EXPECT_FALSE(RequestMayHaveBeenSent(refused.status()));
}

TEST_F(MollieClientSimTest, HangEndsWithinTheRequestTimeout) {
  HttpsMollieOAuthApi::Options o = ClientOptions();
  o.request_timeout = milliseconds(700);
  auto api = Client(o);
  ASSERT_NE(api, nullptr);
  TokenResponse grant = NewGrant(*api);
  SetFault("token", "hang");
  const auto start = steady_clock::now();
  auto result = Run(api->Refresh(grant.refresh_token, kRedirectUri));
  const auto elapsed = steady_clock::now() - start;
  EXPECT_THAT(result, AnyOf(StatusIs(absl::StatusCode::kDeadlineExceeded),
                            StatusIs(absl::StatusCode::kUnavailable)));
  EXPECT_GE(elapsed, milliseconds(600));
  EXPECT_LT(elapsed, milliseconds(2500));
  ExpectNoSecrets(result.status(), {grant.refresh_token.Reveal()});
}

TEST_F(MollieClientSimTest, WrongCaFailsCertificateVerification) {
  HttpsMollieOAuthApi::Options o = ClientOptions();
  o.ca_file = other_ca_dir_->File("ca.pem");
  auto api = Client(o);
  ASSERT_NE(api, nullptr);
  auto result = Run(api->ExchangeCode(SecretString("auth_whatever123"), kRedirectUri));
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("certificate verify")));
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("TLS handshake"));
}

TEST_F(MollieClientSimTest, HostNameMismatchFailsVerification) {
  // The test certificate names localhost, 127.0.0.1 and ::1, and nothing else.
  HttpsMollieOAuthApi::Options o = ClientOptions();
  o.api_base_url = "https://127.0.0.2:" + std::to_string(port_);
  auto api = Client(o);
  ASSERT_NE(api, nullptr);
  auto result = Run(api->ExchangeCode(SecretString("auth_whatever123"), kRedirectUri));
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(MollieClientSimTest, LocalhostNameWorksWithSni) {
  HttpsMollieOAuthApi::Options o = ClientOptions();
  o.api_base_url = "https://localhost:" + std::to_string(port_);
  auto api = Client(o);
  ASSERT_NE(api, nullptr);
  auto result = Run(api->GetCurrentOrganization(SecretString("access_unknown1234")));
  // Reaching Mollie's 401 proves TLS (SNI + host name check for "localhost") succeeded.
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_F(MollieClientSimTest, ConnectionRefusedIsUnavailable) {
  const int port = port_;
  StopSim();
  HttpsMollieOAuthApi::Options o = ClientOptions();
  o.api_base_url = "https://127.0.0.1:" + std::to_string(port);
  auto api = Client(o);
  ASSERT_NE(api, nullptr);
  auto result = Run(api->RevokeRefreshToken(SecretString("refresh_abcdef123")));
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnavailable,
                               HasSubstr("connect to 127.0.0.1:" + std::to_string(port))));
  ExpectNoSecrets(result, {"refresh_abcdef123"});
}

}  // namespace
}  // namespace connectbroker::mollie
