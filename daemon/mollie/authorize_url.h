// The consent URL the merchant's browser is sent to (GET <base>/oauth2/authorize), and the
// validation of what goes into it. Pure functions, thread-safe.
// Validation failures are InvalidArgument with a message naming the offending value (none of
// these values is secret; the OAuth `state` is never quoted anyway).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace connectbroker::mollie {

enum class ApprovalPrompt { kOmit, kAuto, kForce };
enum class LandingPage { kOmit, kLogin, kSignup };

struct AuthorizeParams {
  // Scheme, host, optional port and optional path prefix; "/oauth2/authorize" is appended.
  std::string base_url = "https://my.mollie.com";
  std::string client_id;            // "app_..."
  std::string redirect_uri;         // omitted when empty (Mollie then uses the registered one)
  std::string state;                // CSRF token, echoed on the redirect
  std::vector<std::string> scopes;  // joined with spaces
  ApprovalPrompt approval_prompt = ApprovalPrompt::kOmit;
  std::string locale;  // omitted when empty; else one of the Mollie locales
  LandingPage landing_page = LandingPage::kOmit;
};

// Builds the URL. Query values are percent-encoded strictly (only RFC 3986 unreserved characters
// stay literal; a space is "%20"), so a redirect URI with its own query survives intact.
// Parameters in order: client_id, redirect_uri, state, scope, response_type=code,
// approval_prompt, locale, landing_page. Returns "" when base_url is not an absolute URL; call
// ValidateAuthorizeParams first.
std::string BuildAuthorizeUrl(const AuthorizeParams& params);

// OK for "<resource>.read" / "<resource>.write" with resource matching [a-z-]+.
absl::Status ValidateScope(std::string_view scope);

// OK for the locales Mollie's consent screen knows: en_US nl_NL nl_BE fr_FR fr_BE de_DE es_ES
// it_IT.
absl::Status ValidateLocale(std::string_view locale);

// Everything BuildAuthorizeUrl needs: an https (or http for loopback hosts, for tests) absolute
// base URL without query or fragment, a non-empty client_id, a non-empty state, at least one
// valid scope, an absolute http(s) redirect_uri when given, a valid locale when given.
absl::Status ValidateAuthorizeParams(const AuthorizeParams& params);

}  // namespace connectbroker::mollie
