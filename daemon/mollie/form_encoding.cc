#include "daemon/mollie/form_encoding.h"

#include <boost/url/encode.hpp>
#include <boost/url/encoding_opts.hpp>
#include <boost/url/parse_query.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include "absl/status/status.h"

namespace connectbroker::mollie {

namespace urls = boost::urls;

std::string EncodeFormComponent(std::string_view text, bool space_as_plus) {
  urls::encoding_opts opts(space_as_plus, /*lower_case=*/false, /*disallow_null=*/false);
  // Only the RFC 3986 unreserved set stays literal, so '+', '&', '=', '/' and '?' inside a value
  // can never be misread by the other side.
  return urls::encode(urls::string_view(text.data(), text.size()), urls::unreserved_chars, opts);
}

std::string EncodeForm(std::span<const FormField> fields) {
  std::string out;
  for (const FormField& field : fields) {
    if (!out.empty()) {
      out.push_back('&');
    }
    out += EncodeFormComponent(field.name);
    out.push_back('=');
    out += EncodeFormComponent(field.value);
  }
  return out;
}

std::string EncodeForm(std::initializer_list<FormField> fields) {
  return EncodeForm(std::span<const FormField>(fields.begin(), fields.size()));
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> DecodeForm(std::string_view body) {
  std::vector<std::pair<std::string, std::string>> out;
  if (body.empty()) {
    return out;
  }
  auto parsed = urls::parse_query(urls::string_view(body.data(), body.size()));
  if (!parsed) {
    return absl::InvalidArgumentError("malformed form body");
  }
  urls::encoding_opts opts(/*space_as_plus=*/true, false, false);
  for (const urls::param_pct_view& p : *parsed) {
    out.emplace_back(p.key.decode(opts), p.value.decode(opts));
  }
  return out;
}

}  // namespace connectbroker::mollie
