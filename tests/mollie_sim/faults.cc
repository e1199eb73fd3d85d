// Fault injection: matching a request to the active faults, the responses of the faults that
// replace processing, and POST/GET /_sim/faults. Called with mu_ held.
#include <algorithm>
#include <boost/json/serialize.hpp>

#include "tests/mollie_sim/control_support.h"
#include "tests/mollie_sim/rest_support.h"
#include "tests/mollie_sim/simulator.h"

namespace connectbroker::mollie_sim {
namespace json = boost::json;

namespace {

constexpr int64_t kDefaultFaultDelayMs = 1000;
constexpr int64_t kMaxFaultDelayMs = 600000;
constexpr int64_t kDefaultOversizedBytes = 3 * 1024 * 1024;
constexpr int64_t kMinOversizedBytes = 64;
constexpr int64_t kMaxOversizedBytes = 64 * 1024 * 1024;

constexpr std::string_view kModes[] = {
    "none",    "http_500",        "http_502",   "http_503",  "http_504",
    "http_429", "http_400_invalid_grant", "garbage", "missing_fields", "invalid_client",
    "reset",   "hang",            "delay",      "reply_then_drop", "truncated",
    "oversized"};

// A 200 JSON body of exactly `size` bytes: {"resource":"padding","padding":"xxx..."}.
std::string OversizedBody(int64_t size) {
  static constexpr std::string_view kHead = R"({"resource":"padding","padding":")";
  static constexpr std::string_view kTail = R"("})";
  std::string body;
  body.reserve(static_cast<size_t>(size));
  body += kHead;
  body.append(static_cast<size_t>(size) - kHead.size() - kTail.size(), 'x');
  body += kTail;
  return body;
}

}  // namespace

std::optional<Simulator::Fault> Simulator::TakeFault(std::string_view target,
                                                     std::string_view grant_type,
                                                     std::string_view method,
                                                     std::string_view path) {
  for (auto it = faults_.begin(); it != faults_.end(); ++it) {
    if (it->target != target && it->target != "all") {
      continue;
    }
    if ((!it->grant_type.empty() && it->grant_type != grant_type) ||
        (!it->method.empty() && it->method != method) ||
        (!it->path_prefix.empty() && !path.starts_with(it->path_prefix))) {
      continue;
    }
    const Fault fault = *it;
    if (it->remaining > 0 && --it->remaining == 0) {
      faults_.erase(it);
    }
    return fault;
  }
  return std::nullopt;
}

SimResponse Simulator::FaultResponse(const Fault& fault, std::string_view target,
                                     std::string_view grant_type) const {
  const bool token = target == "token";
  SimResponse response;
  if (fault.mode == "http_500") {
    response = HalError(500, "Simulated internal server error");
  } else if (fault.mode == "http_502") {
    response = HalError(502, "Simulated bad gateway: the upstream did not answer properly");
  } else if (fault.mode == "http_503") {
    response = HalError(503, "Simulated outage, try again later");
  } else if (fault.mode == "http_504") {
    response = HalError(504, "Simulated gateway timeout: the request took too long");
  } else if (fault.mode == "http_429") {
    response = HalError(429, "You have exceeded the rate limit. Please slow down your requests.");
    response.headers.emplace_back(
        "Retry-After",
        std::to_string(fault.retry_after_seconds < 0 ? 1 : fault.retry_after_seconds));
  } else if (fault.mode == "http_400_invalid_grant") {
    response = token ? OAuthError(400, "invalid_grant",
                                  grant_type == "authorization_code"
                                      ? "Authorization code doesn't exist or is invalid for the "
                                        "client"
                                      : "Refresh token doesn't exist or is invalid for the client")
                     : HalError(400, "Simulated invalid_grant");
  } else if (fault.mode == "garbage") {
    response.status = 200;
    response.headers.emplace_back("Content-Type", "application/json; charset=utf-8");
    response.body = "<html><body>502 Bad Gateway (this is not JSON)</body></html>";
  } else if (fault.mode == "missing_fields") {
    response = token ? JsonResponse(200, json::object{{"token_type", "bearer"},
                                                      {"scope", "organizations.read"}})
                     : JsonResponse(200, json::object{{"resource", "organization"}}, kHalJson);
  } else if (fault.mode == "invalid_client") {
    response = token ? OAuthError(401, "invalid_client", "Client authentication failed")
                     : HalUnauthorized();
  } else if (fault.mode == "oversized") {
    response.status = 200;
    response.headers.emplace_back("Content-Type",
                                  token ? "application/json; charset=utf-8" : kHalJson);
    response.body = OversizedBody(fault.size_bytes);
    response.log_note = "fault: oversized";
  } else if (fault.mode == "reset") {
    response.action = SimAction::kReset;
    response.log_note = "fault: reset";
  } else {  // hang
    response.action = SimAction::kHang;
    response.log_note = "fault: hang";
  }
  if (fault.retry_after_seconds >= 0 && fault.mode != "http_429") {
    response.headers.emplace_back("Retry-After", std::to_string(fault.retry_after_seconds));
  }
  return response;
}

SimResponse Simulator::FaultsControl(bool post, const json::object& body) {
  if (post) {
    std::optional<std::string> target;
    std::optional<std::string> mode;
    std::optional<int64_t> count;
    std::optional<int64_t> retry_after;
    std::optional<int64_t> delay_ms;
    std::optional<std::string> grant_type;
    std::optional<std::string> method;
    std::optional<std::string> path_prefix;
    std::optional<int64_t> size_bytes;
    if (!ReadString(body, "target", target) || !ReadString(body, "mode", mode) ||
        !ReadInt(body, "count", -1, count) ||
        !ReadInt(body, "retry_after_seconds", 0, retry_after) ||
        !ReadInt(body, "delay_ms", 0, delay_ms) || !ReadString(body, "grant_type", grant_type) ||
        !ReadString(body, "method", method) || !ReadString(body, "path_prefix", path_prefix) ||
        !ReadInt(body, "size_bytes", 0, size_bytes)) {
      return ControlError(400, "bad field type");
    }
    const std::string t = target.value_or("all");
    if (t != "token" && t != "api" && t != "all") {
      return ControlError(400, "target must be token, api or all");
    }
    if (!mode || std::find(std::begin(kModes), std::end(kModes), *mode) == std::end(kModes)) {
      return ControlError(400, "unknown or missing mode");
    }
    if (delay_ms && *delay_ms > kMaxFaultDelayMs) {
      return ControlError(400, "delay_ms must be at most 600000");
    }
    if (size_bytes && (*size_bytes < kMinOversizedBytes || *size_bytes > kMaxOversizedBytes)) {
      return ControlError(400, "size_bytes must be 64..67108864");
    }
    const std::string g = grant_type.value_or("");
    if (!g.empty() && g != "refresh_token" && g != "authorization_code") {
      return ControlError(400, "grant_type must be refresh_token or authorization_code");
    }
    if (!g.empty() && t != "token") {
      return ControlError(400, "grant_type needs target token");
    }
    const std::string m = method.value_or("");
    if (!m.empty() && !std::all_of(m.begin(), m.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
      return ControlError(400, "method must be an upper-case HTTP method such as GET or POST");
    }
    const std::string p = path_prefix.value_or("");
    if (!p.empty() && !p.starts_with("/v2")) {
      return ControlError(400, "path_prefix must start with /v2");
    }
    if ((!m.empty() || !p.empty()) && t != "api") {
      return ControlError(400, "method and path_prefix need target api");
    }
    // A new fault replaces the ones it overlaps for the same target: an unrestricted one
    // replaces all, a restricted one (grant_type, method, path_prefix) the unrestricted one and
    // the one with its own restriction; mode none clears the same way; target all: everything.
    const bool restricted = !g.empty() || !m.empty() || !p.empty();
    std::erase_if(faults_, [&](const Fault& f) {
      const bool f_restricted = !f.grant_type.empty() || !f.method.empty() || !f.path_prefix.empty();
      return t == "all" ||
             (f.target == t && (!restricted || !f_restricted ||
                                (f.grant_type == g && f.method == m && f.path_prefix == p)));
    });
    if (*mode != "none" && count.value_or(1) != 0) {
      faults_.push_back(Fault{t, *mode, count.value_or(1), retry_after.value_or(-1),
                              *mode == "delay" ? delay_ms.value_or(kDefaultFaultDelayMs) : 0, g,
                              m, p,
                              *mode == "oversized" ? size_bytes.value_or(kDefaultOversizedBytes)
                                                   : 0});
    }
  }
  json::array list;
  for (const Fault& fault : faults_) {
    list.push_back(json::object{{"target", fault.target},
                                {"mode", fault.mode},
                                {"count", fault.remaining},
                                {"retry_after_seconds", fault.retry_after_seconds},
                                {"delay_ms", fault.delay_ms},
                                {"grant_type", fault.grant_type},
                                {"method", fault.method},
                                {"path_prefix", fault.path_prefix},
                                {"size_bytes", fault.size_bytes}});
  }
  return JsonResponse(200, json::object{{"faults", std::move(list)}});
}

}  // namespace connectbroker::mollie_sim
