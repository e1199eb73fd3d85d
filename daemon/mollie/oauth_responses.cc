#include "daemon/mollie/oauth_responses.h"

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <charconv>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "daemon/common/redact.h"
#include "daemon/common/strings.h"
#include "daemon/mollie/string_view_compat.h"

namespace connectbroker::mollie {
namespace {

namespace json = boost::json;

constexpr std::chrono::seconds kMaxRetryAfter{24 * 3600};
// Ten years: anything longer is not a lifetime Mollie would hand out, and it keeps later
// time_point arithmetic far away from overflow.
constexpr int64_t kMaxExpiresInSeconds = int64_t{10} * 365 * 24 * 3600;

// Prefixes of Mollie credentials (tokens, codes, API keys). Text after one of these, up to the
// end of the word, is treated as secret.
constexpr std::array<std::string_view, 5> kSecretPrefixes = {"access_", "refresh_", "auth_",
                                                             "live_", "test_"};

bool IsWordChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
}

// Replaces the body of every word that starts with a secret prefix: "access_abc" becomes
// "access_[redacted]".
std::string RedactSecretLikeWords(std::string text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    bool at_word_start = i == 0 || !IsWordChar(text[i - 1]);
    bool replaced = false;
    if (at_word_start) {
      for (std::string_view prefix : kSecretPrefixes) {
        if (text.compare(i, prefix.size(), prefix) != 0) {
          continue;
        }
        size_t end = i + prefix.size();
        while (end < text.size() && IsWordChar(text[end])) {
          ++end;
        }
        if (end > i + prefix.size()) {
          out.append(prefix);
          out.append("[redacted]");
          i = end;
          replaced = true;
        }
        break;
      }
    }
    if (!replaced) {
      out.push_back(text[i]);
      ++i;
    }
  }
  return out;
}

// What an error body told us, already scrubbed.
struct UpstreamError {
  std::string oauth_error;  // RFC 6749 "error" code, e.g. "invalid_grant"; empty if none
  std::string details;      // human-readable text for the status message; may be empty
};

const json::string* StringField(const json::object& obj, std::string_view key) {
  const json::value* v = obj.if_contains(key);
  return v != nullptr ? v->if_string() : nullptr;
}

UpstreamError ParseErrorBody(std::string_view body, std::span<const std::string_view> secrets) {
  UpstreamError out;
  boost::system::error_code ec;
  json::value root = json::parse(body, ec);
  const json::object* obj = ec ? nullptr : root.if_object();
  if (obj == nullptr) {
    return out;  // not JSON (an HTML error page, a proxy's text): nothing we can safely quote
  }
  std::string text;
  const json::value* error = obj->if_contains("error");
  if (error != nullptr && error->is_string()) {
    // OAuth shape.
    out.oauth_error = ScrubUpstreamText(error->get_string(), secrets, 64);
    if (const json::string* d = StringField(*obj, "error_description")) {
      text = std::string(*d);
    }
  } else if (error != nullptr && error->is_object()) {
    // Legacy v1 shape.
    const json::object& v1 = error->get_object();
    if (const json::string* m = StringField(v1, "message")) {
      text = std::string(*m);
    }
    if (const json::string* f = StringField(v1, "field")) {
      text += StrCat(" (field ", std::string(*f), ")");
    }
  } else {
    // HAL shape.
    const json::string* title = StringField(*obj, "title");
    const json::string* detail = StringField(*obj, "detail");
    if (title != nullptr) {
      text = std::string(*title);
    }
    if (detail != nullptr) {
      text += StrCat(text.empty() ? "" : ": ", std::string(*detail));
    }
    if (const json::string* f = StringField(*obj, "field")) {
      text += StrCat(" (field ", std::string(*f), ")");
    }
  }
  out.details = ScrubUpstreamText(text, secrets);
  return out;
}

std::string Message(std::string_view what, int http_status, const UpstreamError& err) {
  std::string msg = StrCat(what, " (HTTP ", http_status, ")");
  if (!err.oauth_error.empty()) {
    msg += StrCat(": ", err.oauth_error);
  }
  if (!err.details.empty()) {
    msg += StrCat(": ", err.details);
  }
  return msg;
}

absl::Status WithRetryAfter(absl::Status status, std::optional<std::chrono::seconds> retry_after) {
  if (retry_after.has_value()) {
    SetRetryAfter(status, *retry_after);
  }
  return status;
}

// The classes shared by both endpoints; nullopt when the caller must decide.
std::optional<absl::Status> CommonErrorClass(std::string_view endpoint, int http_status,
                                             const UpstreamError& err,
                                             std::optional<std::chrono::seconds> retry_after) {
  if (http_status == 429) {
    return WithRetryAfter(absl::ResourceExhaustedError(Message(
                              StrCat(endpoint, " rate-limited the request"), http_status, err)),
                          retry_after);
  }
  if (http_status >= 500 && http_status <= 599) {
    return WithRetryAfter(
        absl::UnavailableError(Message(StrCat(endpoint, " is unavailable"), http_status, err)),
        retry_after);
  }
  if (http_status == 408) {
    return absl::UnavailableError(
        Message(StrCat(endpoint, " timed out the request"), http_status, err));
  }
  if (http_status < 400 || http_status > 499) {
    // 1xx/3xx: a redirect means a wrong base URL, not something a retry fixes.
    return absl::InternalError(
        Message(StrCat(endpoint, " answered with an unexpected status"), http_status, err));
  }
  return std::nullopt;
}

constexpr std::string_view kTokenEndpoint = "Mollie token endpoint";
constexpr std::string_view kOrgEndpoint = "Mollie organizations endpoint";

absl::Status TokenEndpointError(int http_status, std::string_view body,
                                std::optional<std::chrono::seconds> retry_after,
                                std::span<const std::string_view> secrets) {
  UpstreamError err = ParseErrorBody(body, secrets);
  if (std::optional<absl::Status> s =
          CommonErrorClass(kTokenEndpoint, http_status, err, retry_after)) {
    return *std::move(s);
  }
  if (http_status == 401 || err.oauth_error == "invalid_client") {
    return absl::UnauthenticatedError(
        Message("Mollie rejected the app credentials", http_status, err));
  }
  if (err.oauth_error == "invalid_grant") {
    return absl::FailedPreconditionError(
        Message("Mollie rejected the grant; the merchant must consent again", http_status, err));
  }
  return absl::InvalidArgumentError(
      Message(StrCat(kTokenEndpoint, " rejected the request"), http_status, err));
}

absl::Status Malformed(std::string_view endpoint, std::string_view what) {
  return absl::InternalError(StrCat(endpoint, " returned a malformed reply: ", what));
}

// Reads an optional string field: missing or null -> "", other types -> error text.
bool OptionalString(const json::object& obj, std::string_view key, std::string& out) {
  const json::value* v = obj.if_contains(key);
  if (v == nullptr || v->is_null()) {
    out.clear();
    return true;
  }
  if (const json::string* s = v->if_string()) {
    out = std::string(*s);
    return true;
  }
  return false;
}

absl::StatusOr<json::object> ParseObject(std::string_view endpoint, std::string_view body) {
  boost::system::error_code ec;
  json::value root = json::parse(body, ec);
  if (ec) {
    return Malformed(endpoint, "not JSON");
  }
  if (!root.is_object()) {
    return Malformed(endpoint, "not a JSON object");
  }
  return std::move(root.get_object());
}

}  // namespace

std::string ScrubUpstreamText(std::string_view text, std::span<const std::string_view> secrets,
                              size_t max_len) {
  std::string out(text);
  for (std::string_view secret : secrets) {
    out = RedactSecrets(std::move(out), {secret});
  }
  out = RedactSecretLikeWords(std::move(out));
  if (out.size() > max_len) {
    out.resize(max_len);
    out.append("...");
  }
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      c = ' ';
    }
  }
  return out;
}

std::optional<std::chrono::seconds> ParseRetryAfter(std::string_view value) {
  value = ToStd(absl::StripAsciiWhitespace(ToAbsl(value)));
  if (value.empty() || value.size() > 12) {
    return std::nullopt;
  }
  int64_t seconds = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (ec != std::errc() || end != value.data() + value.size() || seconds < 0) {
    return std::nullopt;
  }
  return std::min(std::chrono::seconds(seconds), kMaxRetryAfter);
}

absl::StatusOr<TokenResponse> ParseTokenResponse(int http_status, std::string_view body,
                                                 std::optional<std::chrono::seconds> retry_after,
                                                 std::span<const std::string_view> secrets) {
  if (http_status < 200 || http_status > 299) {
    return TokenEndpointError(http_status, body, retry_after, secrets);
  }
  // From here on the body holds tokens: never quote it.
  absl::StatusOr<json::object> parsed = ParseObject(kTokenEndpoint, body);
  if (!parsed.ok()) {
    return parsed.status();
  }
  const json::object& obj = *parsed;
  TokenResponse out;

  const json::value* access = obj.if_contains("access_token");
  if (access == nullptr) {
    return Malformed(kTokenEndpoint, "missing access_token");
  }
  if (!access->is_string()) {
    return Malformed(kTokenEndpoint, "access_token is not a string");
  }
  if (access->get_string().empty()) {
    return Malformed(kTokenEndpoint, "access_token is empty");
  }
  out.access_token = SecretString(std::string(access->get_string()));

  const json::value* expires = obj.if_contains("expires_in");
  if (expires == nullptr) {
    return Malformed(kTokenEndpoint, "missing expires_in");
  }
  int64_t expires_in = 0;
  if (expires->is_int64()) {
    expires_in = expires->get_int64();
  } else if (expires->is_uint64()) {
    return Malformed(kTokenEndpoint, "expires_in is out of range");
  } else {
    return Malformed(kTokenEndpoint, "expires_in is not an integer");
  }
  if (expires_in <= 0) {
    return Malformed(kTokenEndpoint, "expires_in is not positive");
  }
  if (expires_in > kMaxExpiresInSeconds) {
    return Malformed(kTokenEndpoint, "expires_in is out of range");
  }
  out.expires_in = std::chrono::seconds(expires_in);

  const json::value* type = obj.if_contains("token_type");
  if (type == nullptr) {
    return Malformed(kTokenEndpoint, "missing token_type");
  }
  if (!type->is_string()) {
    return Malformed(kTokenEndpoint, "token_type is not a string");
  }
  if (!absl::EqualsIgnoreCase(ToAbsl(type->get_string()), "bearer")) {
    return Malformed(kTokenEndpoint,
                     StrCat("unsupported token_type \"",
                            ScrubUpstreamText(type->get_string(), secrets, 32), "\""));
  }

  std::string scope;
  if (!OptionalString(obj, "scope", scope)) {
    return Malformed(kTokenEndpoint, "scope is not a string");
  }
  for (absl::string_view s : absl::StrSplit(scope, ' ', absl::SkipEmpty())) {
    out.scopes.emplace_back(s);
  }

  std::string refresh;
  if (!OptionalString(obj, "refresh_token", refresh)) {
    return Malformed(kTokenEndpoint, "refresh_token is not a string");
  }
  out.refresh_token = SecretString(std::move(refresh));
  return out;
}

absl::Status ParseRevokeResponse(int http_status, std::string_view body,
                                 std::optional<std::chrono::seconds> retry_after,
                                 std::span<const std::string_view> secrets) {
  if (http_status >= 200 && http_status <= 299) {
    return absl::OkStatus();
  }
  return TokenEndpointError(http_status, body, retry_after, secrets);
}

absl::StatusOr<Organization> ParseOrganization(int http_status, std::string_view body,
                                               std::optional<std::chrono::seconds> retry_after,
                                               std::span<const std::string_view> secrets) {
  if (http_status < 200 || http_status > 299) {
    UpstreamError err = ParseErrorBody(body, secrets);
    if (std::optional<absl::Status> s =
            CommonErrorClass(kOrgEndpoint, http_status, err, retry_after)) {
      return *std::move(s);
    }
    if (http_status == 401) {
      return absl::UnauthenticatedError(
          Message("Mollie rejected the access token", http_status, err));
    }
    if (http_status == 403) {
      return absl::PermissionDeniedError(
          Message("Mollie refused access to the organization (is organizations.read granted?)",
                  http_status, err));
    }
    return absl::InvalidArgumentError(
        Message(StrCat(kOrgEndpoint, " rejected the request"), http_status, err));
  }
  absl::StatusOr<json::object> parsed = ParseObject(kOrgEndpoint, body);
  if (!parsed.ok()) {
    return parsed.status();
  }
  const json::object& obj = *parsed;
  Organization out;
  const json::value* id = obj.if_contains("id");
  if (id == nullptr) {
    return Malformed(kOrgEndpoint, "missing id");
  }
  if (!id->is_string()) {
    return Malformed(kOrgEndpoint, "id is not a string");
  }
  if (!absl::StartsWith(ToAbsl(id->get_string()), "org_") || id->get_string().size() <= 4) {
    return Malformed(kOrgEndpoint, "id is not an organization id (org_...)");
  }
  out.id = std::string(id->get_string());
  const json::value* name = obj.if_contains("name");
  if (name == nullptr) {
    return Malformed(kOrgEndpoint, "missing name");
  }
  if (!name->is_string()) {
    return Malformed(kOrgEndpoint, "name is not a string");
  }
  out.name = std::string(name->get_string());
  if (!OptionalString(obj, "email", out.email)) {
    return Malformed(kOrgEndpoint, "email is not a string");
  }
  if (!OptionalString(obj, "locale", out.locale)) {
    return Malformed(kOrgEndpoint, "locale is not a string");
  }
  return out;
}

}  // namespace connectbroker::mollie
