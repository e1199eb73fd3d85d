// Secrets in memory. SecretString holds a token, code or client secret; it prints as
// "[redacted]" so that it cannot reach a log line or error message by accident. Use Reveal()
// only where the secret leaves on purpose (the Authorization header, the encrypted blob, the
// GetAccessToken response).
#pragma once

#include <ostream>
#include <string>
#include <string_view>
#include <utility>

namespace connectbroker {

class SecretString {
 public:
  SecretString() = default;
  explicit SecretString(std::string value) : value_(std::move(value)) {}

  const std::string& Reveal() const { return value_; }
  bool empty() const { return value_.empty(); }
  bool operator==(const SecretString& other) const = default;

  // Safe for logs: the prefix up to '_' ("access_", "refresh_", "auth_") and nothing else.
  std::string Masked() const;

 private:
  std::string value_;
};

inline std::ostream& operator<<(std::ostream& os, const SecretString& s) {
  return os << s.Masked();
}

inline std::string SecretString::Masked() const {
  if (value_.empty()) {
    return "[empty]";
  }
  auto underscore = value_.find('_');
  if (underscore != std::string::npos && underscore < 16) {
    return value_.substr(0, underscore + 1) + "[redacted]";
  }
  return "[redacted]";
}

// Replaces every occurrence of the given secrets in `text` with "[redacted]" (for upstream bodies
// that might echo a token back into an error message).
std::string RedactSecrets(std::string text, std::initializer_list<std::string_view> secrets);

inline std::string RedactSecrets(std::string text,
                                 std::initializer_list<std::string_view> secrets) {
  for (std::string_view s : secrets) {
    if (s.size() < 4) {
      continue;
    }
    for (auto pos = text.find(s); pos != std::string::npos; pos = text.find(s, pos)) {
      text.replace(pos, s.size(), "[redacted]");
    }
  }
  return text;
}

}  // namespace connectbroker
