#include "daemon/mollie/https_mollie_oauth_api.h"

#include <openssl/evp.h>

#include <boost/system/system_error.hpp>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "daemon/common/log.h"
#include "daemon/common/status_macros.h"
#include "daemon/common/strings.h"
#include "daemon/mollie/form_encoding.h"
#include "daemon/mollie/https_transport.h"
#include "daemon/mollie/oauth_responses.h"

namespace connectbroker::mollie {
namespace {

namespace asio = boost::asio;

constexpr std::string_view kTokensPath = "/oauth2/tokens";
constexpr std::string_view kOrganizationPath = "/v2/organizations/me";
// Mollie's OAuth replies are small JSON documents; anything bigger is not one we want to parse.
constexpr uint64_t kMaxBodyBytes = 1024 * 1024;

MonoTime Now() { return SystemClock().MonotonicNow(); }

std::string Base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

// Maps an exception that reached one of our coroutines. Call only inside a catch block.
absl::Status StatusFromCurrentException(std::string_view what) {
  try {
    throw;
  } catch (const boost::system::system_error& e) {
    // Asio throws this when a cancelled coroutine awaits again (throw_if_cancelled).
    if (e.code() == asio::error::operation_aborted) {
      return absl::CancelledError(StrCat("Mollie ", what, " cancelled"));
    }
    CB_LOG(ERROR) << "Mollie " << what << ": unexpected system_error: " << e.code().message();
  } catch (const std::exception& e) {
    CB_LOG(ERROR) << "Mollie " << what << ": unexpected exception: " << e.what();
  } catch (...) {
    CB_LOG(ERROR) << "Mollie " << what << ": unexpected non-standard exception";
  }
  return absl::InternalError(StrCat("internal error in the Mollie client during ", what));
}

struct HttpReply {
  int status = 0;
  std::string body;
  std::optional<std::chrono::seconds> retry_after;
};

}  // namespace

struct HttpsMollieOAuthApi::Impl {
  // One HTTPS round trip on a fresh connection ("Connection: close"): token calls are rare and
  // a refresh must never ride on a connection of uncertain state.
  asio::awaitable<absl::StatusOr<HttpReply>> Call(std::string_view method, std::string_view path,
                                                  std::string_view authorization,
                                                  std::string_view accept, std::string body) {
    const MonoTime deadline = Now() + options.request_timeout;
    OutgoingRequest req;
    req.method = std::string(method);
    req.target = std::string(path);
    req.headers.emplace_back("Accept", std::string(accept));
    req.headers.emplace_back("Authorization", std::string(authorization));
    if (method != "GET") {
      req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
      req.body = std::move(body);
    }
    req.keep_alive = false;
    absl::StatusOr<IncomingResponse> sent = co_await transport->Send(std::move(req), deadline);
    if (!sent.ok()) {
      // An oversized reply is a malformed one here, not Mollie asking us to slow down.
      if (sent.status().code() == absl::StatusCode::kResourceExhausted) {
        co_return absl::InternalError(sent.status().message());
      }
      co_return sent.status();
    }
    IncomingResponse res = *std::move(sent);
    co_return HttpReply{res.status, std::move(res.body), res.retry_after};
  }

  asio::awaitable<absl::StatusOr<TokenResponse>> TokenCall(
      std::vector<FormField> fields, std::span<const std::string_view> secrets) {
    std::string body = EncodeForm(fields);
    CO_ASSIGN_OR_RETURN(HttpReply reply, co_await Call("POST", kTokensPath, basic_auth.Reveal(),
                                                       "application/json", std::move(body)));
    co_return ParseTokenResponse(reply.status, reply.body, reply.retry_after, secrets);
  }

  Options options;
  std::unique_ptr<HttpsTransport> transport;
  SecretString basic_auth;  // "Basic base64(client_id:client_secret)"
};

absl::StatusOr<std::unique_ptr<HttpsMollieOAuthApi>> HttpsMollieOAuthApi::Create(
    asio::any_io_executor ex, Options options) {
  if (options.client_id.empty()) {
    return absl::InvalidArgumentError("client_id is empty");
  }
  if (options.client_secret.empty()) {
    return absl::InvalidArgumentError("client_secret is empty");
  }
  if (options.connect_timeout.count() <= 0 || options.request_timeout.count() <= 0) {
    return absl::InvalidArgumentError("connect_timeout and request_timeout must be positive");
  }
  HttpsTransportOptions t;
  t.base_url = options.api_base_url;
  t.ca_file = options.ca_file;
  t.connect_timeout = options.connect_timeout;
  t.max_response_body_bytes = kMaxBodyBytes;
  t.user_agent = options.user_agent;
  auto transport = HttpsTransport::Create(std::move(ex), std::move(t));
  if (!transport.ok()) {
    return transport.status();
  }
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->transport = *std::move(transport);
  // RFC 6749 2.3.1 asks for form-encoding before Base64; Mollie's ids and secrets are
  // alphanumeric with '_', which encoding leaves alone, and Mollie's own examples (curl -u) do
  // not encode. So we do not either.
  impl->basic_auth = SecretString(StrCat(
      "Basic ", Base64(StrCat(impl->options.client_id, ":", impl->options.client_secret.Reveal()))));
  return std::unique_ptr<HttpsMollieOAuthApi>(new HttpsMollieOAuthApi(std::move(impl)));
}

HttpsMollieOAuthApi::HttpsMollieOAuthApi(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpsMollieOAuthApi::~HttpsMollieOAuthApi() = default;

asio::awaitable<absl::StatusOr<TokenResponse>> HttpsMollieOAuthApi::ExchangeCode(
    SecretString code, std::string redirect_uri) {
  try {
    std::vector<FormField> fields = {{"grant_type", "authorization_code"}, {"code", code.Reveal()}};
    if (!redirect_uri.empty()) {
      fields.push_back({"redirect_uri", redirect_uri});
    }
    const std::string_view secrets[] = {code.Reveal()};
    co_return co_await impl_->TokenCall(std::move(fields), secrets);
  } catch (...) {
    co_return StatusFromCurrentException("code exchange");
  }
}

asio::awaitable<absl::StatusOr<TokenResponse>> HttpsMollieOAuthApi::Refresh(
    SecretString refresh_token, std::string redirect_uri) {
  try {
    std::vector<FormField> fields = {{"grant_type", "refresh_token"},
                                     {"refresh_token", refresh_token.Reveal()}};
    if (!redirect_uri.empty()) {
      fields.push_back({"redirect_uri", redirect_uri});
    }
    const std::string_view secrets[] = {refresh_token.Reveal()};
    co_return co_await impl_->TokenCall(std::move(fields), secrets);
  } catch (...) {
    co_return StatusFromCurrentException("token refresh");
  }
}

asio::awaitable<absl::Status> HttpsMollieOAuthApi::RevokeRefreshToken(SecretString refresh_token) {
  try {
    std::string body =
        EncodeForm({{"token_type_hint", "refresh_token"}, {"token", refresh_token.Reveal()}});
    CO_ASSIGN_OR_RETURN(HttpReply reply, co_await impl_->Call("DELETE", kTokensPath,
                                                              impl_->basic_auth.Reveal(),
                                                              "application/json", std::move(body)));
    const std::string_view secrets[] = {refresh_token.Reveal()};
    co_return ParseRevokeResponse(reply.status, reply.body, reply.retry_after, secrets);
  } catch (...) {
    co_return StatusFromCurrentException("token revocation");
  }
}

asio::awaitable<absl::StatusOr<Organization>> HttpsMollieOAuthApi::GetCurrentOrganization(
    SecretString access_token) {
  try {
    std::string authorization = StrCat("Bearer ", access_token.Reveal());
    CO_ASSIGN_OR_RETURN(
        HttpReply reply,
        co_await impl_->Call("GET", kOrganizationPath, authorization,
                             "application/hal+json, application/json", std::string()));
    const std::string_view secrets[] = {access_token.Reveal()};
    co_return ParseOrganization(reply.status, reply.body, reply.retry_after, secrets);
  } catch (...) {
    co_return StatusFromCurrentException("organization lookup");
  }
}

}  // namespace connectbroker::mollie
