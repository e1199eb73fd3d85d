// Small text codecs for the Mollie simulator: form encoding, percent-decoding, Basic-auth
// base64, HTML escaping and random identifiers. Pure functions, no I/O; thread-safe except
// RandomAlnum, which is as thread-safe as the Random it is given (CryptoRandom is).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "daemon/common/random.h"

namespace connectbroker::mollie_sim {

// Decoded `application/x-www-form-urlencoded` fields ('+' is a space). Later duplicates win.
using FormFields = std::map<std::string, std::string, std::less<>>;

// Parses "a=1&b=two+words". nullopt on a malformed percent escape.
std::optional<FormFields> ParseForm(std::string_view text);

// Percent-decodes `text`; with `plus_is_space`, '+' becomes ' '. nullopt on a bad escape.
std::optional<std::string> PercentDecode(std::string_view text, bool plus_is_space);

// Form-encodes one value: unreserved characters stay, ' ' becomes '+', the rest is %XX.
std::string FormEncode(std::string_view value);

// Standard base64 (with or without padding). nullopt on invalid input.
std::optional<std::string> Base64Decode(std::string_view text);

// Escapes &, <, >, " and ' for HTML text and attribute values.
std::string HtmlEscape(std::string_view text);

// `n` characters from [A-Za-z0-9], uniformly distributed.
std::string RandomAlnum(Random& random, size_t n);

// Case-insensitive ASCII prefix test, for header values such as "Basic ..." or "Bearer ...".
bool StartsWithIgnoreCase(std::string_view text, std::string_view prefix);

}  // namespace connectbroker::mollie_sim
