// MollieOAuthApi: the calls the broker makes to Mollie's OAuth and organization endpoints.
// Coroutines on the caller's executor (the broker's event loop). An implementation must be safe
// to call concurrently from that executor.
// Status codes (also carried by every fake):
//   Unavailable        network/TLS failure, timeout of a step, HTTP 5xx
//   DeadlineExceeded   the overall request deadline passed
//   ResourceExhausted  HTTP 429; RetryAfter(status) gives Mollie's Retry-After if any
//   FailedPrecondition OAuth "invalid_grant" (code or refresh token no longer valid): the
//                      merchant must consent again; never retried
//   Unauthenticated    OAuth "invalid_client" or HTTP 401 on the token endpoint: our app
//                      credentials were rejected (app-wide problem, not the merchant's)
//   InvalidArgument    other OAuth 4xx errors (invalid_request, unsupported_grant_type, ...)
//   Internal           a 2xx reply that is not the JSON we expect (garbled, missing fields)
// Messages never contain tokens, codes or the client secret.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/common/redact.h"

namespace connectbroker::mollie {

struct TokenResponse {
  SecretString access_token;
  SecretString refresh_token;  // empty when Mollie sent none: keep the old one
  std::chrono::seconds expires_in{0};
  std::vector<std::string> scopes;
};

struct Organization {
  std::string id;  // "org_..."
  std::string name;
  std::string email;
  std::string locale;
};

class MollieOAuthApi {
 public:
  virtual ~MollieOAuthApi() = default;

  // POST /oauth2/tokens grant_type=authorization_code.
  virtual boost::asio::awaitable<absl::StatusOr<TokenResponse>> ExchangeCode(
      SecretString code, std::string redirect_uri) = 0;

  // POST /oauth2/tokens grant_type=refresh_token; redirect_uri resent when non-empty.
  virtual boost::asio::awaitable<absl::StatusOr<TokenResponse>> Refresh(
      SecretString refresh_token, std::string redirect_uri) = 0;

  // DELETE /oauth2/tokens token_type_hint=refresh_token. 204 -> OK.
  virtual boost::asio::awaitable<absl::Status> RevokeRefreshToken(SecretString refresh_token) = 0;

  // GET /v2/organizations/me with the merchant's access token.
  virtual boost::asio::awaitable<absl::StatusOr<Organization>> GetCurrentOrganization(
      SecretString access_token) = 0;
};

// Retry-After (seconds) attached to a ResourceExhausted/Unavailable status, if Mollie sent one.
std::optional<std::chrono::seconds> RetryAfter(const absl::Status& status);
// Attaches a Retry-After value to a status (used by implementations).
void SetRetryAfter(absl::Status& status, std::chrono::seconds retry_after);

// Whether a failed request reached Mollie, as far as the transport knows. May-have-been-sent:
// bytes left (a retry of a non-idempotent request is unsafe). Certainly-not-sent: resolve,
// connect or TLS failed, or no connection came free. Neither: unknown (e.g. an HTTP 5xx).
bool RequestMayHaveBeenSent(const absl::Status& status);
bool RequestCertainlyNotSent(const absl::Status& status);
absl::Status MarkRequestSent(absl::Status status);
absl::Status MarkRequestNotSent(absl::Status status);

}  // namespace connectbroker::mollie
