#include "daemon/mollie/authorize_url.h"

#include <array>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "daemon/common/strings.h"
#include "daemon/mollie/form_encoding.h"
#include "daemon/mollie/string_view_compat.h"

namespace connectbroker::mollie {
namespace {

namespace urls = boost::urls;

constexpr std::array<absl::string_view, 8> kLocales = {"en_US", "nl_NL", "nl_BE", "fr_FR",
                                                       "fr_BE", "de_DE", "es_ES", "it_IT"};

void AppendParam(std::string& query, std::string_view name, std::string_view value) {
  if (!query.empty()) {
    query.push_back('&');
  }
  query += StrCat(name, "=", EncodeFormComponent(value, /*space_as_plus=*/false));
}

bool IsLoopbackHost(urls::url_view url) {
  std::string host = url.host();
  return host == "127.0.0.1" || host == "localhost" || host == "::1" || host == "[::1]";
}

}  // namespace

std::string BuildAuthorizeUrl(const AuthorizeParams& params) {
  auto base = urls::parse_uri(params.base_url);
  if (!base) {
    return "";
  }
  urls::url url(*base);
  url.remove_query();
  url.remove_fragment();
  std::string path(url.encoded_path());
  while (!path.empty() && path.back() == '/') {
    path.pop_back();
  }
  url.set_encoded_path(path + "/oauth2/authorize");

  std::string query;
  AppendParam(query, "client_id", params.client_id);
  if (!params.redirect_uri.empty()) {
    AppendParam(query, "redirect_uri", params.redirect_uri);
  }
  AppendParam(query, "state", params.state);
  AppendParam(query, "scope", absl::StrJoin(params.scopes, " "));
  AppendParam(query, "response_type", "code");
  switch (params.approval_prompt) {
    case ApprovalPrompt::kOmit:
      break;
    case ApprovalPrompt::kAuto:
      AppendParam(query, "approval_prompt", "auto");
      break;
    case ApprovalPrompt::kForce:
      AppendParam(query, "approval_prompt", "force");
      break;
  }
  if (!params.locale.empty()) {
    AppendParam(query, "locale", params.locale);
  }
  switch (params.landing_page) {
    case LandingPage::kOmit:
      break;
    case LandingPage::kLogin:
      AppendParam(query, "landing_page", "login");
      break;
    case LandingPage::kSignup:
      AppendParam(query, "landing_page", "signup");
      break;
  }
  url.set_encoded_query(query);
  return std::string(url.buffer());
}

absl::Status ValidateScope(std::string_view scope) {
  size_t dot = scope.rfind('.');
  bool ok = dot != std::string_view::npos && dot > 0;
  if (ok) {
    for (char c : scope.substr(0, dot)) {
      if (!(absl::ascii_islower(static_cast<unsigned char>(c)) || c == '-')) {
        ok = false;
        break;
      }
    }
    std::string_view access = scope.substr(dot + 1);
    ok = ok && (access == "read" || access == "write");
  }
  if (!ok) {
    return absl::InvalidArgumentError(StrCat("invalid Mollie scope \"",
                                             absl::CEscape(ToAbsl(scope)),
                                             "\" (expected <resource>.read or <resource>.write)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateLocale(std::string_view locale) {
  for (absl::string_view known : kLocales) {
    if (ToAbsl(locale) == known) {
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(StrCat("unsupported Mollie locale \"",
                                           absl::CEscape(ToAbsl(locale)), "\" (expected one of ",
                                           absl::StrJoin(kLocales, " "), ")"));
}

absl::Status ValidateAuthorizeParams(const AuthorizeParams& params) {
  auto base = urls::parse_uri(params.base_url);
  if (!base || base->host().empty()) {
    return absl::InvalidArgumentError(StrCat(
        "authorize base URL \"", absl::CEscape(params.base_url), "\" is not an absolute URL"));
  }
  if (base->scheme_id() != urls::scheme::https &&
      !(base->scheme_id() == urls::scheme::http && IsLoopbackHost(*base))) {
    return absl::InvalidArgumentError(
        StrCat("authorize base URL \"", absl::CEscape(params.base_url), "\" must use https"));
  }
  if (base->has_query() || base->has_fragment() || base->has_userinfo()) {
    return absl::InvalidArgumentError(StrCat("authorize base URL \"",
                                             absl::CEscape(params.base_url),
                                             "\" must not have user info, a query or a fragment"));
  }
  if (params.client_id.empty()) {
    return absl::InvalidArgumentError("authorize URL needs a client_id");
  }
  if (params.state.empty()) {
    return absl::InvalidArgumentError("authorize URL needs a state");
  }
  if (params.scopes.empty()) {
    return absl::InvalidArgumentError("authorize URL needs at least one scope");
  }
  for (const std::string& scope : params.scopes) {
    if (absl::Status s = ValidateScope(scope); !s.ok()) {
      return s;
    }
  }
  if (!params.redirect_uri.empty()) {
    auto redirect = urls::parse_uri(params.redirect_uri);
    if (!redirect || redirect->host().empty() ||
        (redirect->scheme_id() != urls::scheme::https &&
         redirect->scheme_id() != urls::scheme::http) ||
        redirect->has_fragment()) {
      return absl::InvalidArgumentError(
          StrCat("redirect_uri \"", absl::CEscape(params.redirect_uri),
                 "\" is not an absolute http(s) URL without fragment"));
    }
  }
  if (!params.locale.empty()) {
    if (absl::Status s = ValidateLocale(params.locale); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace connectbroker::mollie
