// HttpsMollieOAuthApi: MollieOAuthApi over HTTPS (HttpsTransport: Boost.Beast + OpenSSL), one TLS
// connection per call ("Connection: close"). Coroutines run on the caller's executor; the sockets live on the executor given
// to Create, which must be the same io_context (or a strand of it). Safe to call concurrently
// from that executor; the object must outlive every call it has started.
// Status codes: as in mollie_oauth_api.h (classification in oauth_responses.h), plus
// InvalidArgument from Create for bad Options, and Cancelled when the calling coroutine is
// cancelled. Messages name the host and step ("connect to api.mollie.com:443 failed: ..."),
// never a token, code or the client secret.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/common/redact.h"
#include "daemon/mollie/mollie_oauth_api.h"

namespace connectbroker::mollie {

class HttpsMollieOAuthApi final : public MollieOAuthApi {
 public:
  struct Options {
    // https://host[:port][/prefix]; token calls go to <base>/oauth2/tokens, the organization
    // call to <base>/v2/organizations/me. Only https is accepted.
    std::string api_base_url = "https://api.mollie.com";
    // PEM bundle of trusted CAs; empty = the system's default verify paths.
    std::string ca_file;
    std::string client_id;  // "app_..."
    SecretString client_secret;
    // Bound on resolve + connect + TLS handshake (each step gets what is left of it).
    std::chrono::milliseconds connect_timeout{5000};
    // Bound on the whole call. A step cut short by it gives DeadlineExceeded; a connect step cut
    // short by connect_timeout gives Unavailable.
    std::chrono::milliseconds request_timeout{15000};
    std::string user_agent = "connect-broker/0.1";
  };

  // Validates `options` (https base URL, client credentials present, positive timeouts) and
  // loads the CA file. InvalidArgument naming the bad field or the CA file otherwise.
  static absl::StatusOr<std::unique_ptr<HttpsMollieOAuthApi>> Create(
      boost::asio::any_io_executor ex, Options options);

  ~HttpsMollieOAuthApi() override;
  HttpsMollieOAuthApi(const HttpsMollieOAuthApi&) = delete;
  HttpsMollieOAuthApi& operator=(const HttpsMollieOAuthApi&) = delete;

  // MollieOAuthApi
  boost::asio::awaitable<absl::StatusOr<TokenResponse>> ExchangeCode(
      SecretString code, std::string redirect_uri) override;
  boost::asio::awaitable<absl::StatusOr<TokenResponse>> Refresh(SecretString refresh_token,
                                                                std::string redirect_uri) override;
  boost::asio::awaitable<absl::Status> RevokeRefreshToken(SecretString refresh_token) override;
  boost::asio::awaitable<absl::StatusOr<Organization>> GetCurrentOrganization(
      SecretString access_token) override;

 private:
  struct Impl;
  explicit HttpsMollieOAuthApi(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace connectbroker::mollie
