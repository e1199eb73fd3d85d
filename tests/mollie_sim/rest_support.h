// Helpers shared by the simulator's REST files: HAL links and errors, ISO times, list paging,
// request bodies and amounts, the way Mollie's v2 API spells them. Pure functions, thread-safe.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "tests/mollie_sim/codec.h"
#include "tests/mollie_sim/simulator.h"

namespace connectbroker::mollie_sim {

inline constexpr std::string_view kHalJson = "application/hal+json";
inline constexpr int64_t kDefaultPageLimit = 50;
inline constexpr int64_t kMaxPageLimit = 250;

boost::json::object Link(std::string_view href, std::string_view type = kHalJson);
// 405 HAL with an `Allow` header.
SimResponse MethodNotAllowed(std::string_view allow);
// Mollie's title for an HTTP status ("Unauthorized Request" for 401).
std::string_view HalTitle(int status);
// "2018-07-19T09:49:46+00:00" (UTC).
std::string IsoTime(int64_t unix_ms);

// The decoded query parameters; nullopt on a malformed escape.
std::optional<FormFields> QueryFields(std::string_view query);
// `testmode` of a query: absent/false/0 -> false, true/1 -> true; else a 400 HAL (field testmode).
std::variant<bool, SimResponse> QueryTestmode(const FormFields& fields);

// The paging parameters of a list request.
struct PageQuery {
  std::string from;  // empty: start at the newest
  int64_t limit = kDefaultPageLimit;
  std::string rest;  // every other parameter, encoded as received, '&'-joined, order kept
};
// 400 HAL (field limit) unless `limit` is an integer in 1..250.
std::variant<PageQuery, SimResponse> ParsePageQuery(std::string_view query);
// `<base><path>?from=<from>&limit=<limit>[&<rest>]` (no from= when `from` is empty).
std::string PageHref(std::string_view base, std::string_view path, std::string_view from,
                     int64_t limit, std::string_view rest);

// The body of a POST: a JSON object (Content-Type application/json), or form fields
// (application/x-www-form-urlencoded, or no Content-Type) turned into one: `a[b]=c` nests,
// every value is a string except `testmode=true|false|1|0`, which becomes a boolean.
// Else 400 (bad JSON or form) or 415 HAL.
std::variant<boost::json::object, SimResponse> ParseApiBody(const SimRequest& request);

struct Amount {
  std::string currency;  // ISO 4217, three capitals
  std::string value;     // as given: digits, '.', two decimals
  int64_t cents = 0;
};
// `amount` ({"currency","value"}) of a body, else a 422 HAL naming the field at fault
// (amount, amount.currency, amount.value). A zero amount is below Mollie's minimum.
std::variant<Amount, SimResponse> ParseAmount(const boost::json::object& body);
// 1050 -> "10.50".
std::string FormatCents(int64_t cents);
// An optional string member: nullopt when absent or null, else the string, or a 422 HAL
// (field `name`) when it is not a string (or, with `url`, not an absolute http(s) URL).
std::variant<std::optional<std::string>, SimResponse> OptionalString(const boost::json::object& body,
                                                                     std::string_view name,
                                                                     bool url);

}  // namespace connectbroker::mollie_sim
