// `call`: argument checks, request building, JSON validation and layout, response formatting.
#include "proxy_call.h"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>
#include <boost/json/stream_parser.hpp>
#include <boost/json/value.hpp>
#include <cctype>
#include <string>
#include <string_view>
#include <utility>

#include "connectbroker/client.h"

namespace connectbroker::cli {
namespace {

namespace json = ::boost::json;

using client::JsonQuote;

// Mollie's documents nest a few levels; this only guards the parser's stack.
constexpr unsigned kMaxJsonDepth = 256;
constexpr size_t kMaxDetailBytes = 300;

absl::Status Invalid(std::string message) { return absl::InvalidArgumentError(std::move(message)); }

bool IsControl(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

bool HasControl(std::string_view s) { return std::any_of(s.begin(), s.end(), IsControl); }

bool IsTokenChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

std::string Upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](char c) {
    return static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  });
  return s;
}

// Control characters as \xNN so that text from Mollie cannot move a terminal's cursor.
std::string Printable(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (IsControl(c)) {
      const auto u = static_cast<unsigned char>(c);
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

// Length of the valid UTF-8 sequence at s[i], or 0 when it is not one (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF).
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    return 1;
  }
  size_t n = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xbf;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    n = 2;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    n = 3;
    lo = b0 == 0xe0 ? 0xa0 : 0x80;
    hi = b0 == 0xed ? 0x9f : 0xbf;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    n = 4;
    lo = b0 == 0xf0 ? 0x90 : 0x80;
    hi = b0 == 0xf4 ? 0x8f : 0xbf;
  } else {
    return 0;
  }
  if (i + n > s.size()) {
    return 0;
  }
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xbf)) {
      return 0;
    }
  }
  return n;
}

// A JSON string literal of arbitrary bytes: invalid UTF-8 becomes U+FFFD.
std::string QuoteBytes(std::string_view s) {
  std::string clean;
  clean.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) {
      clean += "\xef\xbf\xbd";
      ++i;
    } else {
      clean.append(s.substr(i, n));
      i += n;
    }
  }
  return JsonQuote(clean);
}

std::string HeadersToJson(const google::protobuf::RepeatedPtrField<v1::HttpHeader>& headers) {
  std::string out = "[";
  for (const v1::HttpHeader& h : headers) {
    out += (out.size() > 1 ? ", " : "");
    out += "{\"name\": " + QuoteBytes(h.name()) + ", \"value\": " + QuoteBytes(h.value()) + "}";
  }
  return out + "]";
}

// `"body": ...` (and `"body_text"`) members for ProxyResponseToJson and ProxyPageToJson.
std::string BodyMembers(std::string_view body) {
  if (body.empty()) {
    return "\"body\": null";
  }
  if (ValidateJson(body).ok()) {
    return "\"body\": " + ReformatJson(body, 0);
  }
  return "\"body\": null, \"body_text\": " + QuoteBytes(body);
}

}  // namespace

absl::StatusOr<std::string> ValidateCallArgs(const CallArgs& args) {
  if (args.merchant.empty()) {
    return Invalid(args.by_account_ref ? "the account reference must not be empty"
                                       : "ORG must not be empty");
  }
  const std::string method = Upper(args.method);
  if (method != "GET" && method != "POST" && method != "PATCH" && method != "DELETE") {
    return Invalid("METHOD must be GET, POST, PATCH or DELETE, not '" + Printable(args.method) +
                   "'");
  }
  const std::string_view path = args.path;
  if (path.substr(0, 4) != "/v2/" || path.size() == 4) {
    return Invalid("PATH must be a path under /v2/ of Mollie's API, e.g. /v2/payments (got '" +
                   Printable(args.path) + "')");
  }
  if (path.find('?') != std::string_view::npos) {
    return Invalid("PATH must not contain a query ('?'): pass it as --query NAME=VALUE");
  }
  if (path.find('#') != std::string_view::npos) {
    return Invalid("PATH must not contain a fragment ('#')");
  }
  if (HasControl(path) || path.find(' ') != std::string_view::npos) {
    return Invalid("PATH must not contain spaces or control characters");
  }
  for (size_t begin = 1; begin <= path.size();) {
    size_t end = path.find('/', begin);
    end = end == std::string_view::npos ? path.size() : end;
    const std::string_view segment = path.substr(begin, end - begin);
    if (segment == "." || segment == "..") {
      return Invalid("PATH must not contain '.' or '..' segments");
    }
    begin = end + 1;
  }
  for (const std::string& q : args.query) {
    if (absl::StatusOr<v1::QueryParam> p = ParseQueryArg(q); !p.ok()) {
      return p.status();
    }
  }
  for (const std::string& h : args.headers) {
    if (absl::StatusOr<v1::HttpHeader> p = ParseHeaderArg(h); !p.ok()) {
      return p.status();
    }
  }
  if (args.data.has_value()) {
    if (method == "GET") {
      return Invalid("--data and --data-file need POST, PATCH or DELETE (a GET has no body)");
    }
    if (absl::Status s = ValidateJson(*args.data); !s.ok()) {
      return Invalid("the body (--data or --data-file) is not valid JSON: " +
                     std::string(s.message()));
    }
  }
  if (!args.idempotency_key.empty()) {
    if (method == "GET") {
      return Invalid("--idempotency-key needs POST, PATCH or DELETE (a GET is idempotent)");
    }
    if (HasControl(args.idempotency_key)) {
      return Invalid("--idempotency-key must not contain control characters");
    }
  }
  if (args.paged) {
    if (method != "GET") {
      return Invalid("--paged follows the pages of a list, so METHOD must be GET");
    }
    if (args.include) {
      return Invalid(
          "--include is not for --paged: use --json for each page's status and "
          "headers");
    }
    if (args.pretty) {
      return Invalid("--pretty is not for --paged: the items are printed one per line");
    }
  } else if (args.max_items != 0) {
    return Invalid("--max-items needs --paged");
  }
  if (args.max_items < 0) {
    return Invalid("--max-items must be at least 1");
  }
  if (args.include && args.json) {
    return Invalid(
        "--include and --json do not mix: --json already carries the status and "
        "headers");
  }
  return method;
}

v1::ProxyRequest BuildProxyRequest(const CallArgs& args) {
  v1::ProxyRequest request;
  if (args.by_account_ref) {
    request.set_account_ref(args.merchant);
  } else {
    request.set_organization_id(args.merchant);
  }
  request.set_method(Upper(args.method));
  request.set_path(args.path);
  for (const std::string& q : args.query) {
    *request.add_query() = *ParseQueryArg(q);
  }
  for (const std::string& h : args.headers) {
    *request.add_headers() = *ParseHeaderArg(h);
  }
  if (args.data.has_value()) {
    request.set_body(*args.data);
  }
  request.set_testmode(args.testmode);
  request.set_idempotency_key(args.idempotency_key);
  return request;
}

v1::ProxyPagedRequest BuildProxyPagedRequest(const CallArgs& args) {
  v1::ProxyPagedRequest request;
  if (args.by_account_ref) {
    request.set_account_ref(args.merchant);
  } else {
    request.set_organization_id(args.merchant);
  }
  request.set_path(args.path);
  for (const std::string& q : args.query) {
    *request.add_query() = *ParseQueryArg(q);
  }
  for (const std::string& h : args.headers) {
    *request.add_headers() = *ParseHeaderArg(h);
  }
  request.set_testmode(args.testmode);
  request.set_max_items(args.max_items);
  return request;
}

absl::StatusOr<v1::QueryParam> ParseQueryArg(std::string_view arg) {
  const size_t eq = arg.find('=');
  if (eq == std::string_view::npos) {
    return Invalid("--query needs NAME=VALUE, got '" + Printable(arg) + "'");
  }
  if (eq == 0) {
    return Invalid("--query needs a NAME before '=' (got '" + Printable(arg) + "')");
  }
  const std::string_view name = arg.substr(0, eq);
  if (HasControl(name) || name.find(' ') != std::string_view::npos) {
    return Invalid("--query NAME must not contain spaces or control characters");
  }
  v1::QueryParam param;
  param.set_name(std::string(name));
  param.set_value(std::string(arg.substr(eq + 1)));
  return param;
}

absl::StatusOr<v1::HttpHeader> ParseHeaderArg(std::string_view arg) {
  const size_t colon = arg.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Invalid("--header needs 'Name: value', got '" + Printable(arg) + "'");
  }
  const std::string_view name = arg.substr(0, colon);
  if (!std::all_of(name.begin(), name.end(), IsTokenChar)) {
    return Invalid("--header name '" + Printable(name) +
                   "' is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)");
  }
  std::string_view value = arg.substr(colon + 1);
  while (!value.empty() && IsBlank(value.front())) {
    value.remove_prefix(1);
  }
  while (!value.empty() && IsBlank(value.back())) {
    value.remove_suffix(1);
  }
  if (std::any_of(value.begin(), value.end(), [](char c) { return IsControl(c) && c != '\t'; })) {
    return Invalid("--header value of " + std::string(name) +
                   " must not contain line breaks or control characters");
  }
  v1::HttpHeader header;
  header.set_name(std::string(name));
  header.set_value(std::string(value));
  return header;
}

absl::Status ValidateJson(std::string_view text) {
  json::parse_options options;
  options.max_depth = kMaxJsonDepth;
  json::stream_parser parser(json::storage_ptr(), options);
  boost::system::error_code ec;
  const size_t used = parser.write(text.data(), text.size(), ec);
  if (!ec) {
    parser.finish(ec);
    if (ec) {
      return Invalid("incomplete JSON (" + ec.message() + " at the end, byte " +
                     std::to_string(text.size()) + ")");
    }
    return absl::OkStatus();
  }
  return Invalid(ec.message() + " at byte " + std::to_string(used));
}

std::string ReformatJson(std::string_view json, int indent) {
  std::string out;
  out.reserve(json.size() + json.size() / 4);
  int depth = 0;
  auto newline = [&] {
    if (indent > 0) {
      out += '\n';
      out.append(static_cast<size_t>(depth * indent), ' ');
    }
  };
  auto next_significant = [&](size_t from) {
    while (from < json.size() &&
           (json[from] == ' ' || json[from] == '\t' || json[from] == '\n' || json[from] == '\r')) {
      ++from;
    }
    return from;
  };
  bool in_string = false;
  bool escaped = false;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      out += c;
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case ' ':
      case '\t':
      case '\n':
      case '\r':
        break;
      case '"':
        in_string = true;
        out += c;
        break;
      case '{':
      case '[': {
        out += c;
        const size_t next = next_significant(i + 1);
        if (next < json.size() && (json[next] == '}' || json[next] == ']')) {
          out += json[next];  // an empty object or array stays on one line
          i = next;
        } else {
          ++depth;
          newline();
        }
        break;
      }
      case '}':
      case ']':
        --depth;
        newline();
        out += c;
        break;
      case ',':
        out += c;
        newline();
        break;
      case ':':
        out += indent > 0 ? ": " : ":";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string_view ReasonPhrase(int status) {
  static constexpr std::pair<int, std::string_view> kReasons[] = {
      {200, "OK"},
      {201, "Created"},
      {202, "Accepted"},
      {204, "No Content"},
      {301, "Moved Permanently"},
      {302, "Found"},
      {304, "Not Modified"},
      {400, "Bad Request"},
      {401, "Unauthorized"},
      {403, "Forbidden"},
      {404, "Not Found"},
      {405, "Method Not Allowed"},
      {409, "Conflict"},
      {410, "Gone"},
      {413, "Content Too Large"},
      {415, "Unsupported Media Type"},
      {422, "Unprocessable Entity"},
      {429, "Too Many Requests"},
      {500, "Internal Server Error"},
      {502, "Bad Gateway"},
      {503, "Service Unavailable"},
      {504, "Gateway Timeout"},
  };
  for (const auto& [code, reason] : kReasons) {
    if (code == status) {
      return reason;
    }
  }
  return "";
}

bool IsSuccess(int status) { return status >= 200 && status <= 299; }

std::string FormatStatusLine(int status) {
  std::string out = "HTTP/1.1 " + std::to_string(status);
  const std::string_view reason = ReasonPhrase(status);
  if (!reason.empty()) {
    out += " ";
    out += reason;
  }
  return out;
}

std::string FormatResponseHead(int status,
                               const google::protobuf::RepeatedPtrField<v1::HttpHeader>& headers) {
  std::string out = FormatStatusLine(status) + "\n";
  for (const v1::HttpHeader& h : headers) {
    out += Printable(h.name()) + ": " + Printable(h.value()) + "\n";
  }
  return out + "\n";
}

std::string DescribeHttpError(int status, std::string_view body) {
  std::string out = "HTTP " + std::to_string(status);
  const std::string_view reason = ReasonPhrase(status);
  if (!reason.empty()) {
    out += " ";
    out += reason;
  }
  if (body.empty() || !ValidateJson(body).ok()) {
    return out;
  }
  json::parse_options options;
  options.max_depth = kMaxJsonDepth;
  boost::system::error_code ec;
  const json::value doc =
      json::parse(json::string_view(body.data(), body.size()), ec, json::storage_ptr(), options);
  if (ec || !doc.is_object()) {
    return out;
  }
  const json::value* detail = doc.as_object().if_contains("detail");
  if (detail == nullptr || !detail->is_string() || detail->as_string().empty()) {
    return out;
  }
  std::string text(detail->as_string().data(), detail->as_string().size());
  if (text.size() > kMaxDetailBytes) {
    size_t cut = kMaxDetailBytes;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80) {
      --cut;  // do not split a UTF-8 sequence
    }
    text = text.substr(0, cut) + "...";
  }
  return out + ": " + Printable(text);
}

std::string ProxyResponseToJson(const v1::ProxyResponse& response) {
  return "{\"status\": " + std::to_string(response.status()) +
         ", \"headers\": " + HeadersToJson(response.headers()) + ", " +
         BodyMembers(response.body()) + ", \"attempts\": " + std::to_string(response.attempts()) +
         ", \"token_refreshed\": " + (response.token_refreshed() ? "true" : "false") + "}";
}

std::string ProxyPageToJson(const v1::ProxyPage& page, size_t items) {
  std::string list = "[";
  const size_t n = std::min(items, static_cast<size_t>(page.items_size()));
  for (size_t i = 0; i < n; ++i) {
    const std::string& item = page.items(static_cast<int>(i));
    list += (i > 0 ? ", " : "");
    list += ValidateJson(item).ok() ? ReformatJson(item, 0) : QuoteBytes(item);
  }
  list += "]";
  return "{\"page_number\": " + std::to_string(page.page_number()) +
         ", \"status\": " + std::to_string(page.status()) +
         ", \"embedded_key\": " + QuoteBytes(page.embedded_key()) +
         ", \"headers\": " + HeadersToJson(page.headers()) + ", \"items\": " + list + ", " +
         BodyMembers(page.body()) + "}";
}

std::string ItemLine(std::string_view item) {
  if (item.find_first_of("\r\n") == std::string_view::npos) {
    return std::string(item);
  }
  if (ValidateJson(item).ok()) {
    return ReformatJson(item, 0);
  }
  return QuoteBytes(item);  // not JSON (never expected): one line all the same
}

}  // namespace connectbroker::cli
