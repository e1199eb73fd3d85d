#include "daemon/proxy/request_validation.h"

#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/url/parse.hpp>
#include <cctype>

#include "daemon/common/strings.h"

namespace connectbroker::proxy {
namespace {

namespace json = boost::json;

bool IsUnreserved(unsigned char c) {
  return std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

// RFC 3986 pchar without '%' (handled separately) and without ':' '@' oddities being special.
bool IsPathChar(unsigned char c) {
  if (IsUnreserved(c)) {
    return true;
  }
  switch (c) {
    case '!': case '$': case '&': case '\'': case '(': case ')': case '*': case '+':
    case ',': case ';': case '=': case ':': case '@':
      return true;
    default:
      return false;
  }
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (IsUnreserved(c)) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool HasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
}

absl::Status Invalid(std::string_view what) {
  return absl::InvalidArgumentError(std::string(what));
}

}  // namespace

std::string_view MethodName(Method m) {
  switch (m) {
    case Method::kGet: return "GET";
    case Method::kPost: return "POST";
    case Method::kPatch: return "PATCH";
    case Method::kDelete: return "DELETE";
  }
  return "GET";
}

absl::StatusOr<Method> ParseMethod(std::string_view method) {
  if (method == "GET") return Method::kGet;
  if (method == "POST") return Method::kPost;
  if (method == "PATCH") return Method::kPatch;
  if (method == "DELETE") return Method::kDelete;
  if (method.empty()) {
    return Invalid("method is required (GET, POST, PATCH or DELETE)");
  }
  if (HasControl(method) || method.size() > 16) {
    return Invalid("method is not one of GET, POST, PATCH, DELETE");
  }
  return Invalid(StrCat("method \"", method, "\" is not one of GET, POST, PATCH, DELETE"));
}

absl::Status ValidatePath(std::string_view path) {
  if (path.empty()) {
    return Invalid("path is required, e.g. /v2/payments");
  }
  if (path.size() > kMaxPathBytes) {
    return Invalid(StrCat("path is longer than ", kMaxPathBytes, " bytes"));
  }
  if (HasControl(path)) {
    return Invalid("path contains control characters (CR, LF, NUL, ...)");
  }
  if (path.front() != '/') {
    return Invalid("path must be an origin-form path starting with /v2/, not an absolute URL");
  }
  if (path.starts_with("//")) {
    return Invalid("path must not start with // (a network-path reference)");
  }
  if (path.find('?') != std::string_view::npos || path.find('#') != std::string_view::npos) {
    return Invalid("path must not contain '?' or '#': pass query parameters in `query`");
  }
  if (path.find('\\') != std::string_view::npos) {
    return Invalid("path must not contain a backslash");
  }
  if (!path.starts_with("/v2/") || path.size() == 4) {
    return Invalid("path must be under /v2/ (the Mollie REST API); /oauth2/ is never proxied");
  }
  // Segment by segment: pchar only, percent escapes well-formed and never '/', '\', '.' or a
  // control character, no empty, "." or ".." segment.
  size_t start = 1;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) {
      end = path.size();
    }
    std::string_view seg = path.substr(start, end - start);
    if (seg.empty()) {
      if (end == path.size()) {
        break;  // a trailing slash is fine
      }
      return Invalid("path must not contain an empty segment (//)");
    }
    if (seg == "." || seg == "..") {
      return Invalid("path must not contain \".\" or \"..\" segments");
    }
    for (size_t i = 0; i < seg.size(); ++i) {
      unsigned char c = static_cast<unsigned char>(seg[i]);
      if (c == '%') {
        if (i + 2 >= seg.size()) {
          return Invalid("path has a truncated percent escape");
        }
        int hi = HexValue(seg[i + 1]);
        int lo = HexValue(seg[i + 2]);
        if (hi < 0 || lo < 0) {
          return Invalid("path has a malformed percent escape");
        }
        int decoded = hi * 16 + lo;
        if (decoded == '/' || decoded == '\\' || decoded == '.' || decoded < 0x20 ||
            decoded == 0x7f || decoded == '%') {
          return Invalid("path must not percent-encode '/', '\\', '.', '%' or control characters");
        }
        i += 2;
        continue;
      }
      if (c == ';') {
        return Invalid("path must not contain ';' (path parameters are not part of Mollie's API)");
      }
      if (!IsPathChar(c)) {
        return Invalid(StrCat("path contains a character that must be percent-encoded (byte 0x",
                              std::string(1, "0123456789abcdef"[c >> 4]),
                              std::string(1, "0123456789abcdef"[c & 15]), ")"));
      }
    }
    start = end + 1;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> BuildQuery(
    const std::vector<std::pair<std::string, std::string>>& query, bool testmode) {
  if (query.size() > kMaxQueryParams) {
    return Invalid(StrCat("at most ", kMaxQueryParams, " query parameters"));
  }
  std::string out;
  size_t total = 0;
  for (const auto& [name, value] : query) {
    if (name.empty()) {
      return Invalid("query parameter with an empty name");
    }
    if (HasControl(name) || HasControl(value)) {
      return Invalid(StrCat("query parameter ", PercentEncode(name),
                            " contains control characters"));
    }
    if (name == "testmode") {
      if (testmode) {
        return Invalid("set testmode either as the request's testmode field or as a query "
                       "parameter, not both");
      }
      if (value != "true" && value != "false") {
        return Invalid("query parameter testmode must be true or false");
      }
    }
    total += name.size() + value.size();
    out += out.empty() ? "?" : "&";
    out += PercentEncode(name);
    out += "=";
    out += PercentEncode(value);
  }
  if (total > kMaxPathBytes * 4) {
    return Invalid(StrCat("query is longer than ", kMaxPathBytes * 4, " bytes"));
  }
  if (testmode) {
    out += out.empty() ? "?testmode=true" : "&testmode=true";
  }
  return out;
}

absl::StatusOr<mollie::HeaderList> FilterRequestHeaders(const mollie::HeaderList& headers) {
  static constexpr std::array<std::string_view, 4> kAllowed = {"accept", "accept-language",
                                                               "content-type", "x-request-id"};
  static constexpr std::array<std::string_view, 12> kForbidden = {
      "authorization", "proxy-authorization", "host", "cookie", "connection", "keep-alive",
      "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection", "content-length"};
  if (headers.size() > kAllowed.size()) {
    return Invalid(StrCat("at most ", kAllowed.size(), " headers (each allowed one once)"));
  }
  mollie::HeaderList out;
  std::vector<std::string> seen;
  for (const auto& [name, value] : headers) {
    if (name.empty()) {
      return Invalid("header with an empty name");
    }
    if (HasControl(name) || name.find_first_of(" :") != std::string::npos) {
      return Invalid("header name contains CR, LF, ':', space or control characters");
    }
    if (HasControl(value)) {
      return Invalid(StrCat("header ", name, ": value contains CR, LF or control characters"));
    }
    if (value.size() > kMaxHeaderValueBytes) {
      return Invalid(StrCat("header ", name, ": value longer than ", kMaxHeaderValueBytes));
    }
    const std::string lower = Lower(name);
    if (std::find(kForbidden.begin(), kForbidden.end(), lower) != kForbidden.end()) {
      return Invalid(StrCat("header ", name,
                            " may not be set by the caller (credentials, cookies, Host and "
                            "hop-by-hop headers are the broker's)"));
    }
    if (std::find(seen.begin(), seen.end(), lower) != seen.end()) {
      return Invalid(StrCat("header ", name, " is given more than once"));
    }
    seen.push_back(lower);
    if (lower == "idempotency-key") {
      return Invalid("pass the Idempotency-Key as the request's idempotency_key field");
    }
    if (std::find(kAllowed.begin(), kAllowed.end(), lower) == kAllowed.end()) {
      return Invalid(StrCat("header ", name,
                            " is not allowed (allowed: Accept, Accept-Language, Content-Type, "
                            "X-Request-Id)"));
    }
    if (lower == "content-type") {
      const std::string v = Lower(value);
      if (v != "application/json" && !v.starts_with("application/json;")) {
        return Invalid("header Content-Type must be application/json (a charset may follow)");
      }
    }
    out.emplace_back(name, value);
  }
  return out;
}

mollie::HeaderList FilterResponseHeaders(const mollie::HeaderList& headers) {
  static constexpr std::array<std::string_view, 9> kPassed = {
      "content-type", "location", "retry-after", "idempotent-replayed", "x-request-id",
      "request-id", "link", "deprecation", "sunset"};
  mollie::HeaderList out;
  for (const auto& [name, value] : headers) {
    const std::string lower = Lower(name);
    if (std::find(kPassed.begin(), kPassed.end(), lower) != kPassed.end() ||
        lower.starts_with("x-mollie-")) {
      out.emplace_back(name, value);
    }
  }
  return out;
}

absl::StatusOr<std::string> PrepareBody(Method method, std::string body, bool testmode,
                                        size_t max_bytes) {
  if (body.size() > max_bytes) {
    return Invalid(StrCat("body is ", body.size(), " bytes; the limit is ", max_bytes,
                          " (proxy.max_request_body_bytes)"));
  }
  if (method == Method::kGet) {
    if (!body.empty()) {
      return Invalid("a GET request has no body");
    }
    return std::string();
  }
  const bool testmode_in_body = testmode && method != Method::kDelete;
  if (body.empty() && !testmode_in_body) {
    return std::string();
  }
  json::value doc;
  if (body.empty()) {
    doc = json::object();
  } else {
    boost::system::error_code ec;
    doc = json::parse(body, ec);
    if (ec) {
      return Invalid(StrCat("body is not valid JSON: ", ec.message()));
    }
  }
  if (!testmode_in_body) {
    return body;
  }
  if (!doc.is_object()) {
    return Invalid("with testmode the body must be a JSON object");
  }
  json::object& obj = doc.as_object();
  if (auto it = obj.find("testmode"); it != obj.end() && !it->value().is_bool()) {
    return Invalid("body field testmode must be a boolean");
  }
  obj["testmode"] = true;
  std::string out = json::serialize(doc);
  if (out.size() > max_bytes) {
    return Invalid(StrCat("body with testmode is larger than ", max_bytes, " bytes"));
  }
  return out;
}

absl::Status ValidateIdempotencyKey(std::string_view key) {
  if (key.empty() || key.size() > kMaxIdempotencyKeyBytes) {
    return Invalid(StrCat("idempotency_key must be 1 to ", kMaxIdempotencyKeyBytes,
                          " characters"));
  }
  for (unsigned char c : key) {
    if (c <= 0x20 || c >= 0x7f) {
      return Invalid("idempotency_key must be visible ASCII (no spaces or control characters)");
    }
  }
  return absl::OkStatus();
}

std::string DeriveIdempotencyKey(std::string_view organization_id, std::string_view request_id) {
  // Length-prefixed so that ("org_a", "bc") and ("org_ab", "c") differ.
  std::string input = StrCat(organization_id.size(), ":", organization_id, ":", request_id);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "cb-";
  for (int i = 0; i < 20; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

absl::StatusOr<std::string> NextPageTarget(std::string_view href, std::string_view origin,
                                           std::string_view path_prefix) {
  auto url = boost::urls::parse_absolute_uri(href);
  if (!url) {
    return absl::InternalError("Mollie's _links.next is not an absolute URL");
  }
  std::string href_origin = std::string(url->scheme()) + "://" + std::string(url->encoded_authority());
  // Mollie spells its own links with the default port left out.
  if (Lower(href_origin) != Lower(origin)) {
    return absl::InternalError(
        StrCat("Mollie's _links.next points to ", href_origin, ", not to ", origin,
               "; not following it"));
  }
  const std::string full_path(url->encoded_path());
  std::string_view path = full_path;
  if (!path_prefix.empty()) {
    if (!path.starts_with(path_prefix)) {
      return absl::InternalError("Mollie's _links.next is outside the API base path");
    }
    path.remove_prefix(path_prefix.size());
  }
  if (absl::Status s = ValidatePath(path); !s.ok()) {
    return absl::InternalError(StrCat("Mollie's _links.next is not a safe path: ", s.message()));
  }
  if (url->has_fragment()) {
    return absl::InternalError("Mollie's _links.next has a fragment");
  }
  std::string target(path);
  if (url->has_query()) {
    const std::string q(url->encoded_query());
    if (HasControl(q)) {
      return absl::InternalError("Mollie's _links.next has control characters in its query");
    }
    target += "?";
    target += q;
  }
  return target;
}

}  // namespace connectbroker::proxy
