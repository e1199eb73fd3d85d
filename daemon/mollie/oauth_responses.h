// Pure parsers for Mollie's replies: the token endpoint (POST/DELETE /oauth2/tokens) and
// GET /v2/organizations/me. No I/O, no Beast; thread-safe (no shared state).
// They classify a reply (HTTP status, body, Retry-After) into the status codes documented in
// mollie_oauth_api.h. Error bodies are understood in all three shapes Mollie has used:
//   OAuth (RFC 6749)  {"error":"invalid_grant","error_description":"..."}
//   HAL (REST API)    {"status":401,"title":"...","detail":"...","field":"..."}
//   legacy v1         {"error":{"type":"request","message":"...","field":"..."}}
// Messages never echo a 2xx body (it may hold tokens). Text taken from error bodies is cut to a
// bounded length, stripped of control characters and scrubbed of anything that looks like a
// Mollie secret (access_..., refresh_..., auth_...) and of the `secrets` the caller passes.
#pragma once

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/mollie/mollie_oauth_api.h"

namespace connectbroker::mollie {

// Parses a Retry-After header value. Only the delta-seconds form is understood (Mollie sends
// integer seconds); an HTTP-date or garbage gives nullopt. Values above one day are clamped to
// one day so that a broken header cannot park a grant forever.
std::optional<std::chrono::seconds> ParseRetryAfter(std::string_view value);

// Reply of POST /oauth2/tokens (code exchange or refresh).
//   2xx + {access_token (non-empty string), expires_in (positive integer),
//          token_type ("bearer", any case), scope (optional space separated string),
//          refresh_token (optional string)}                  -> TokenResponse
//   2xx with anything else                                   -> Internal ("... malformed reply:
//                                                               missing access_token", ...)
//   401, or error=invalid_client (any 4xx)                   -> Unauthenticated
//   error=invalid_grant (other 4xx)                          -> FailedPrecondition
//   408                                                      -> Unavailable
//   429                                                      -> ResourceExhausted (+RetryAfter)
//   other 4xx                                                -> InvalidArgument
//   5xx                                                      -> Unavailable (+RetryAfter)
//   anything else (1xx, 3xx)                                 -> Internal
// `secrets`: values sent in the request (code, refresh token) to scrub from error text.
absl::StatusOr<TokenResponse> ParseTokenResponse(int http_status, std::string_view body,
                                                 std::optional<std::chrono::seconds> retry_after,
                                                 std::span<const std::string_view> secrets = {});

// Reply of DELETE /oauth2/tokens: any 2xx (Mollie answers 204) -> OK, errors as above.
absl::Status ParseRevokeResponse(int http_status, std::string_view body,
                                 std::optional<std::chrono::seconds> retry_after,
                                 std::span<const std::string_view> secrets = {});

// Reply of GET /v2/organizations/me (made with the merchant's access token).
//   2xx + {id ("org_..."), name (string), email?, locale?}   -> Organization
//   2xx with anything else                                   -> Internal
//   401 -> Unauthenticated("Mollie rejected the access token: ..."). Unlike on the token endpoint
//          this is about the merchant's access token (expired or revoked), not our app
//          credentials: the caller refreshes, or asks for consent again.
//   403 -> PermissionDenied (the grant lacks the organizations.read scope)
//   408 -> Unavailable; 429 -> ResourceExhausted (+RetryAfter); 5xx -> Unavailable (+RetryAfter)
//   other 4xx -> InvalidArgument; anything else -> Internal
// HAL title/detail are included in error messages.
// `secrets`: the access token, scrubbed from error text like the token endpoint's secrets.
absl::StatusOr<Organization> ParseOrganization(int http_status, std::string_view body,
                                               std::optional<std::chrono::seconds> retry_after,
                                               std::span<const std::string_view> secrets = {});

// Makes upstream text safe for a status message or log line: at most `max_len` bytes (cut on a
// character boundary is not guaranteed), control characters replaced by spaces, Mollie-style
// secrets (access_*, refresh_*, auth_*) and the given `secrets` replaced by "[redacted]".
std::string ScrubUpstreamText(std::string_view text, std::span<const std::string_view> secrets,
                              size_t max_len = 300);

}  // namespace connectbroker::mollie
