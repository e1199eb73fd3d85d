// What a caller may ask the proxy to send to Mollie, checked before anything leaves: method,
// path, query, headers, body, idempotency key; and the response headers handed back. Pure
// functions, thread-safe. Every rejection is InvalidArgument with a message naming the field and
// the problem (never echoing a header value that might be a credential).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/mollie/https_transport.h"

namespace connectbroker::proxy {

enum class Method { kGet, kPost, kPatch, kDelete };

std::string_view MethodName(Method m);
// "GET", "POST", "PATCH", "DELETE" (upper case only).
absl::StatusOr<Method> ParseMethod(std::string_view method);

inline constexpr size_t kMaxPathBytes = 2048;
inline constexpr size_t kMaxQueryParams = 100;
inline constexpr size_t kMaxHeaderValueBytes = 4096;
inline constexpr size_t kMaxIdempotencyKeyBytes = 255;

// An origin-form path under /v2/: segments of RFC 3986 pchar; no "." or ".." segments, no empty
// segment, no percent-encoded '/', '\', '.' or control characters, no query or fragment, no
// absolute URL, at most kMaxPathBytes. /oauth2/ (Mollie's token endpoint) is never reachable.
absl::Status ValidatePath(std::string_view path);

// "?a=1&b=x%20y" (empty when there are no parameters); names and values are percent-encoded
// here. With `testmode`, "testmode=true" is added (a caller's own testmode parameter is refused
// then, as is one that is not "true"/"false").
absl::StatusOr<std::string> BuildQuery(const std::vector<std::pair<std::string, std::string>>& query,
                                       bool testmode);

// The caller's headers that may go to Mollie: Accept, Accept-Language, Content-Type
// (application/json only) and X-Request-Id. Authorization, Host, Cookie, hop-by-hop and any other
// header are refused, as are names or values with CR, LF or other control characters.
absl::StatusOr<mollie::HeaderList> FilterRequestHeaders(const mollie::HeaderList& headers);

// The headers of Mollie's reply that reach the caller: Content-Type, Location, Retry-After,
// Idempotent-Replayed, X-Request-Id, Request-Id, Link, Deprecation, Sunset and X-Mollie-*.
mollie::HeaderList FilterResponseHeaders(const mollie::HeaderList& headers);

// The body to send: empty for GET (a body there is refused); otherwise the caller's JSON (must
// parse; at most `max_bytes`), with "testmode": true added to the top-level object when asked
// (a body that is not an object is refused then; an empty POST/PATCH body becomes
// {"testmode":true}).
absl::StatusOr<std::string> PrepareBody(Method method, std::string body, bool testmode,
                                        size_t max_bytes);

// 1..255 visible ASCII characters.
absl::Status ValidateIdempotencyKey(std::string_view key);
// A stable key for (organization, request_id): "cb-" + 40 hex digits of SHA-256.
std::string DeriveIdempotencyKey(std::string_view organization_id, std::string_view request_id);

// The origin-form target of a list's `_links.next.href`: it must be an absolute https URL on
// `origin` ("https://host[:port]"), under `path_prefix` + "/v2/", and pass ValidatePath.
// Returns the target without `path_prefix` (the transport adds it back).
absl::StatusOr<std::string> NextPageTarget(std::string_view href, std::string_view origin,
                                           std::string_view path_prefix);

}  // namespace connectbroker::proxy
