// ParseHostPort: "host:port" for listen options. No transport code here (see http_server.cc).
#include <arpa/inet.h>

#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/http/http_server.h"

namespace connectbroker::http {
namespace {

bool IsHostNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

absl::Status Invalid(std::string_view address, std::string_view why) {
  return absl::InvalidArgumentError("invalid listen address \"" + std::string(address) +
                                    "\": " + std::string(why));
}

}  // namespace

absl::StatusOr<std::pair<std::string, int>> ParseHostPort(std::string_view address) {
  std::string host;
  std::string_view rest;
  if (!address.empty() && address.front() == '[') {
    auto close = address.find(']');
    if (close == std::string_view::npos) {
      return Invalid(address, "missing ']'");
    }
    host = std::string(address.substr(1, close - 1));
    in6_addr unused;
    if (host.empty() || inet_pton(AF_INET6, host.c_str(), &unused) != 1) {
      return Invalid(address, "bad IPv6 address");
    }
    rest = address.substr(close + 1);
    if (rest.empty() || rest.front() != ':') {
      return Invalid(address, "missing port");
    }
    rest.remove_prefix(1);
  } else {
    auto colon = address.rfind(':');
    if (colon == std::string_view::npos) {
      return Invalid(address, "missing port (want host:port)");
    }
    host = std::string(address.substr(0, colon));
    rest = address.substr(colon + 1);
    if (host.empty()) {
      return Invalid(address, "missing host");
    }
    if (host.find(':') != std::string::npos) {
      return Invalid(address, "IPv6 addresses need brackets, e.g. [::1]:8080");
    }
    for (char c : host) {
      if (!IsHostNameChar(c)) {
        return Invalid(address, "bad character in host");
      }
    }
  }
  if (rest.empty()) {
    return Invalid(address, "missing port");
  }
  if (rest.size() > 5) {
    return Invalid(address, "port out of range");
  }
  int port = 0;
  for (char c : rest) {
    if (c < '0' || c > '9') {
      return Invalid(address, "port is not a number");
    }
    port = port * 10 + (c - '0');
  }
  if (port > 65535) {
    return Invalid(address, "port out of range");
  }
  return std::make_pair(std::move(host), port);
}

}  // namespace connectbroker::http
