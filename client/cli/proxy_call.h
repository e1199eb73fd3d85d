// The `call` command's pure parts: its arguments checked and turned into ProxyService requests,
// JSON validation and re-indentation, and the formatting of responses and pages. No I/O, no
// threads; every function is safe to call from any thread. Errors are INVALID_ARGUMENT with a
// message for the user (never quoting a body). Nothing here sees a token: the broker injects it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "connectbroker/v1/proxy.pb.h"

namespace connectbroker::cli {

// `connect-broker call [--account-ref] ORG METHOD PATH ...` as parsed from the command line.
struct CallArgs {
  std::string merchant;  // ORG positional: organization id, or account ref with by_account_ref
  bool by_account_ref = false;
  std::string method;
  std::string path;
  std::vector<std::string> query;    // "NAME=VALUE", in order
  std::vector<std::string> headers;  // "Name: value", in order
  std::optional<std::string> data;   // the JSON body (--data, or --data-file's contents)
  bool testmode = false;
  std::string idempotency_key;
  bool paged = false;
  int64_t max_items = 0;  // 0: all
  bool include = false;
  bool pretty = false;
  bool json = false;
};

// Checks everything that can be checked without the daemon: METHOD (GET, POST, PATCH or
// DELETE; lower case accepted), PATH (under /v2/, no query, no whitespace or control
// characters), --query, --header, --data (valid JSON, not with GET), --idempotency-key (not with
// GET), --paged (GET only; not with --include or --pretty), --max-items (only with --paged),
// --include with --json. Returns METHOD in upper case.
absl::StatusOr<std::string> ValidateCallArgs(const CallArgs& args);
// The request of a validated `call` (not --paged).
v1::ProxyRequest BuildProxyRequest(const CallArgs& args);
// The request of a validated `call --paged`.
v1::ProxyPagedRequest BuildProxyPagedRequest(const CallArgs& args);

// "NAME=VALUE" (split at the first '='; VALUE may be empty or contain '=').
absl::StatusOr<v1::QueryParam> ParseQueryArg(std::string_view arg);
// "Name: value": an HTTP token, a colon, the value without surrounding blanks (no CR, LF or
// other control characters).
absl::StatusOr<v1::HttpHeader> ParseHeaderArg(std::string_view arg);

// OK when `text` is one complete JSON document (RFC 8259, UTF-8); else INVALID_ARGUMENT saying
// what is wrong and where (byte offset), without quoting the text.
absl::Status ValidateJson(std::string_view text);
// `json` (which must be valid) re-laid out without parsing its values, so numbers and strings
// keep their exact spelling: indent > 0 puts every member and element on its own line,
// indented by that many spaces per level; indent 0 removes all insignificant whitespace.
std::string ReformatJson(std::string_view json, int indent);

// "OK", "Created", "Not Found", "Unprocessable Entity", ...; "" for statuses it does not know.
std::string_view ReasonPhrase(int status);
bool IsSuccess(int status);
// "HTTP/1.1 404 Not Found" (no newline).
std::string FormatStatusLine(int status);
// The status line and one "Name: value" line per header, then an empty line (curl -i style).
// Control characters in names and values are shown as \xNN.
std::string FormatResponseHead(int status,
                               const google::protobuf::RepeatedPtrField<v1::HttpHeader>& headers);
// "HTTP 422 Unprocessable Entity", plus ": <detail>" when the body is a Mollie error (HAL JSON
// with a string "detail"), control characters as \xNN, cut to 300 bytes. One line, no newline.
std::string DescribeHttpError(int status, std::string_view body);

// One line: {"status", "headers": [{"name", "value"}], "body", "attempts", "token_refreshed"}.
// "body" is the body itself when it is JSON, null when empty; a body that is not JSON is
// "body": null plus "body_text" (a JSON string; bytes that are not UTF-8 become U+FFFD).
std::string ProxyResponseToJson(const v1::ProxyResponse& response);
// One line: {"page_number", "status", "embedded_key", "headers", "items": [...], "body"}, items
// and body as in ProxyResponseToJson. `items` may be fewer than the page's (--max-items).
std::string ProxyPageToJson(const v1::ProxyPage& page, size_t items);
// An item as one NDJSON line (no newline): as sent when it has no line break, else compacted.
std::string ItemLine(std::string_view item);

}  // namespace connectbroker::cli
