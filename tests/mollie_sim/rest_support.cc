#include "tests/mollie_sim/rest_support.h"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/url/parse.hpp>
#include <cctype>
#include <charconv>
#include <ctime>

namespace connectbroker::mollie_sim {
namespace json = boost::json;

namespace {

std::string MediaType(std::string_view content_type) {
  std::string media(content_type.substr(0, content_type.find(';')));
  std::erase_if(media, [](char c) { return std::isspace(static_cast<unsigned char>(c)); });
  std::transform(media.begin(), media.end(), media.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return media;
}

// Sets body[a][b]... = value for a form key "a[b]...".
void SetNested(json::object& body, std::string_view key, std::string_view value) {
  const size_t open = key.find('[');
  if (open == std::string_view::npos || open == 0 || key.back() != ']') {
    body[key] = value;
    return;
  }
  json::object* node = &body;
  std::string_view name = key.substr(0, open);
  std::string_view rest = key.substr(open);
  while (!rest.empty() && rest.front() == '[') {
    const size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      break;
    }
    json::value& child = (*node)[name];
    if (!child.is_object()) {
      child = json::object();
    }
    node = &child.as_object();
    name = rest.substr(1, close - 1);
    rest = rest.substr(close + 1);
  }
  (*node)[name] = value;
}

bool IsDigits(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c));
  });
}

}  // namespace

json::object Link(std::string_view href, std::string_view type) {
  return json::object{{"href", href}, {"type", type}};
}

SimResponse MethodNotAllowed(std::string_view allow) {
  SimResponse response = HalError(405, "The requested method is not allowed on this resource");
  response.headers.emplace_back("Allow", allow);
  return response;
}

std::string_view HalTitle(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Entity";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Error";
  }
}

std::string IsoTime(int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S+00:00", &tm);
  return text;
}

std::optional<FormFields> QueryFields(std::string_view query) { return ParseForm(query); }

std::variant<bool, SimResponse> QueryTestmode(const FormFields& fields) {
  auto it = fields.find("testmode");
  if (it == fields.end() || it->second == "false" || it->second == "0") {
    return false;
  }
  if (it->second == "true" || it->second == "1") {
    return true;
  }
  return HalError(400, "The 'testmode' parameter must be true or false", "testmode");
}

std::variant<PageQuery, SimResponse> ParsePageQuery(std::string_view query) {
  PageQuery page;
  for (std::string_view rest = query; !rest.empty();) {
    const size_t amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    if (pair.empty()) {
      continue;
    }
    const size_t eq = pair.find('=');
    const auto key = PercentDecode(pair.substr(0, eq), true);
    const auto value =
        PercentDecode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true);
    if (!key || !value) {
      return HalError(400, "The query string could not be parsed");
    }
    if (*key == "from") {
      page.from = *value;
    } else if (*key == "limit") {
      int64_t limit = 0;
      auto [end, ec] = std::from_chars(value->data(), value->data() + value->size(), limit);
      if (ec != std::errc() || end != value->data() + value->size() || limit < 1 ||
          limit > kMaxPageLimit) {
        return HalError(400, "The limit must be an integer between 1 and 250", "limit");
      }
      page.limit = limit;
    } else {
      page.rest += (page.rest.empty() ? "" : "&") + std::string(pair);
    }
  }
  return page;
}

std::string PageHref(std::string_view base, std::string_view path, std::string_view from,
                     int64_t limit, std::string_view rest) {
  std::string href = std::string(base) + std::string(path) + "?";
  if (!from.empty()) {
    href += "from=" + FormEncode(from) + "&";
  }
  href += "limit=" + std::to_string(limit);
  if (!rest.empty()) {
    href += "&" + std::string(rest);
  }
  return href;
}

std::variant<json::object, SimResponse> ParseApiBody(const SimRequest& request) {
  const std::string media = MediaType(request.content_type);
  if (media == "application/json" || media.ends_with("+json")) {
    if (request.body.empty()) {
      return json::object();
    }
    boost::system::error_code ec;
    json::value body = json::parse(request.body, ec);
    if (ec) {
      return HalError(400, "The JSON body could not be parsed: " + ec.message());
    }
    if (!body.is_object()) {
      return HalError(400, "The JSON body must be an object");
    }
    return std::move(body.as_object());
  }
  if (!media.empty() && media != "application/x-www-form-urlencoded") {
    return HalError(415, "The Content-Type '" + media +
                             "' is not supported; send application/json or "
                             "application/x-www-form-urlencoded");
  }
  const auto fields = ParseForm(request.body);
  if (!fields) {
    return HalError(400, "The form-encoded body could not be parsed");
  }
  json::object body;
  for (const auto& [key, value] : *fields) {
    if (key == "testmode" && (value == "true" || value == "1")) {
      body["testmode"] = true;
    } else if (key == "testmode" && (value == "false" || value == "0")) {
      body["testmode"] = false;
    } else {
      SetNested(body, key, value);
    }
  }
  return body;
}

std::variant<Amount, SimResponse> ParseAmount(const json::object& body) {
  const json::value* amount = body.if_contains("amount");
  if (amount == nullptr || amount->is_null()) {
    return HalError(422, "The amount is missing", "amount");
  }
  if (!amount->is_object()) {
    return HalError(422, "The amount must be an object with a currency and a value", "amount");
  }
  const json::value* currency = amount->as_object().if_contains("currency");
  if (currency == nullptr || !currency->is_string() || currency->as_string().size() != 3 ||
      !std::all_of(currency->as_string().begin(), currency->as_string().end(),
                   [](char c) { return c >= 'A' && c <= 'Z'; })) {
    return HalError(422, "The currency is missing or not an ISO 4217 code such as \"EUR\"",
                    "amount.currency");
  }
  const json::value* value = amount->as_object().if_contains("value");
  std::string_view text = value != nullptr && value->is_string()
                              ? std::string_view(value->as_string())
                              : std::string_view();
  const size_t dot = text.find('.');
  if (dot == std::string_view::npos || dot > 10 || !IsDigits(text.substr(0, dot)) ||
      text.size() != dot + 3 || !IsDigits(text.substr(dot + 1))) {
    return HalError(422,
                    "The amount value must be a string with two decimals, such as \"10.00\"",
                    "amount.value");
  }
  int64_t units = 0;
  int64_t decimals = 0;
  std::from_chars(text.data(), text.data() + dot, units);
  std::from_chars(text.data() + dot + 1, text.data() + text.size(), decimals);
  Amount out{std::string(currency->as_string()), std::string(text), units * 100 + decimals};
  if (out.cents == 0) {
    return HalError(422, "The amount is lower than the minimum", "amount");
  }
  return out;
}

std::string FormatCents(int64_t cents) {
  std::string decimals = std::to_string(cents % 100);
  return std::to_string(cents / 100) + "." + (decimals.size() == 1 ? "0" : "") + decimals;
}

std::variant<std::optional<std::string>, SimResponse> OptionalString(const json::object& body,
                                                                     std::string_view name,
                                                                     bool url) {
  const json::value* value = body.if_contains(name);
  if (value == nullptr || value->is_null()) {
    return std::optional<std::string>();
  }
  if (!value->is_string()) {
    return HalError(422, "The '" + std::string(name) + "' field must be a string", name);
  }
  std::string text(value->as_string());
  if (url) {
    auto parsed = boost::urls::parse_absolute_uri(text);
    if (!parsed || (parsed->scheme() != "https" && parsed->scheme() != "http") ||
        parsed->encoded_host().empty()) {
      return HalError(422, "The '" + std::string(name) + "' field must be an absolute URL",
                      name);
    }
  }
  return std::optional<std::string>(std::move(text));
}

}  // namespace connectbroker::mollie_sim
