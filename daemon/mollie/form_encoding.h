// application/x-www-form-urlencoded bodies (the token endpoint's request format), built on
// Boost.URL's percent-encoding. Pure functions, thread-safe.
// Encoding follows the WHATWG URL standard's serializer closely enough for any form parser:
// everything but ALPHA / DIGIT / "-" / "." / "_" / "~" is percent-encoded, and a space becomes
// "+". Decoding accepts both "+" and "%20" for a space.
#pragma once

#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace connectbroker::mollie {

struct FormField {
  std::string_view name;
  std::string_view value;
};

// "a=1&b=x+y". Fields are emitted in the given order; an empty value still gives "name=".
std::string EncodeForm(std::span<const FormField> fields);
std::string EncodeForm(std::initializer_list<FormField> fields);

// Percent-encodes one component for a form body or a query string (space as "+" when
// `space_as_plus`, else "%20").
std::string EncodeFormComponent(std::string_view text, bool space_as_plus = true);

// Parses a form body into (name, value) pairs in order. InvalidArgument on a malformed
// percent-escape. A field without "=" gets an empty value.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> DecodeForm(std::string_view body);

}  // namespace connectbroker::mollie
