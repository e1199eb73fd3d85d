// The test control API under /_sim/ (JSON, no auth): ground truth, stats, run-time config,
// fault injection, revocation "from Mollie's side" and organizations. Called with mu_ held.
#include <boost/json/parse.hpp>

#include "tests/mollie_sim/simulator.h"

namespace connectbroker::mollie_sim {
namespace json = boost::json;

namespace {

SimResponse ControlError(int status, std::string_view message) {
  return JsonResponse(status, json::object{{"error", message}});
}

bool IsKnownFaultMode(std::string_view mode) {
  for (std::string_view known : {"none", "http_500", "http_503", "http_429", "garbage",
                                 "missing_fields", "invalid_client", "reset", "hang"}) {
    if (mode == known) {
      return true;
    }
  }
  return false;
}

// Reads an optional integer member. False when present but not an integer >= `min`.
bool ReadInt(const json::object& body, std::string_view key, int64_t min,
             std::optional<int64_t>& out) {
  const json::value* value = body.if_contains(key);
  if (value == nullptr) {
    return true;
  }
  if (value->is_int64() && value->as_int64() >= min) {
    out = value->as_int64();
    return true;
  }
  if (value->is_uint64() && value->as_uint64() < (uint64_t{1} << 62)) {
    out = static_cast<int64_t>(value->as_uint64());
    return true;
  }
  return false;
}

bool ReadString(const json::object& body, std::string_view key, std::optional<std::string>& out) {
  const json::value* value = body.if_contains(key);
  if (value == nullptr) {
    return true;
  }
  if (!value->is_string()) {
    return false;
  }
  out = std::string(value->as_string());
  return true;
}

}  // namespace

json::object Simulator::ConfigJson() const {
  return json::object{{"access_token_ttl_seconds", options_.access_token_ttl_seconds},
                      {"rotate_refresh_tokens", options_.rotate_refresh_tokens},
                      {"code_ttl_seconds", options_.code_ttl_seconds},
                      {"client_id", options_.client_id},
                      {"redirect_uri", options_.redirect_uri}};
}

SimResponse Simulator::Control(const SimRequest& request, std::string_view path) {
  const bool get = request.method == "GET";
  const bool post = request.method == "POST";
  json::object body;
  if (post) {
    boost::system::error_code ec;
    json::value parsed = json::parse(request.body.empty() ? "{}" : request.body, ec);
    if (ec || !parsed.is_object()) {
      return ControlError(400, "the body must be a JSON object");
    }
    body = std::move(parsed.as_object());
  }

  if (path == "/_sim/truth" && get) {
    const int64_t now = NowMs();
    json::array access;
    for (const AccessToken& token : access_tokens_) {
      access.push_back(json::object{{"token", token.token},
                                    {"organization_id", grants_[token.grant].organization_id},
                                    {"expires_at_ms", token.expires_at_ms},
                                    {"valid", AccessTokenValid(token, now)}});
    }
    json::array refresh;
    for (const RefreshToken& token : refresh_tokens_) {
      refresh.push_back(json::object{{"token", token.token},
                                     {"organization_id", grants_[token.grant].organization_id},
                                     {"valid", RefreshTokenValid(token)}});
    }
    return JsonResponse(200, json::object{{"now_ms", now},
                                          {"access_tokens", std::move(access)},
                                          {"refresh_tokens", std::move(refresh)}});
  }

  if (path == "/_sim/stats" && get) {
    json::object by_org;
    for (const auto& [org, count] : stats_.refreshes_by_organization) {
      by_org[org] = count;
    }
    return JsonResponse(200, json::object{{"token_requests", stats_.token_requests},
                                          {"code_exchanges", stats_.code_exchanges},
                                          {"refreshes", stats_.refreshes},
                                          {"refreshes_by_organization", std::move(by_org)},
                                          {"revocations", stats_.revocations}});
  }

  if (path == "/_sim/config" && (get || post)) {
    std::optional<int64_t> ttl;
    std::optional<int64_t> code_ttl;
    if (!ReadInt(body, "access_token_ttl_seconds", 0, ttl) ||
        !ReadInt(body, "code_ttl_seconds", 0, code_ttl)) {
      return ControlError(400, "ttl values must be integers >= 0");
    }
    const json::value* rotate = body.if_contains("rotate_refresh_tokens");
    if (rotate != nullptr && !rotate->is_bool()) {
      return ControlError(400, "rotate_refresh_tokens must be a boolean");
    }
    if (ttl) {
      options_.access_token_ttl_seconds = *ttl;
    }
    if (code_ttl) {
      options_.code_ttl_seconds = *code_ttl;
    }
    if (rotate != nullptr) {
      options_.rotate_refresh_tokens = rotate->as_bool();
    }
    return JsonResponse(200, ConfigJson());
  }

  if (path == "/_sim/faults" && (get || post)) {
    if (post) {
      std::optional<std::string> target;
      std::optional<std::string> mode;
      std::optional<int64_t> count;
      std::optional<int64_t> retry_after;
      if (!ReadString(body, "target", target) || !ReadString(body, "mode", mode) ||
          !ReadInt(body, "count", -1, count) ||
          !ReadInt(body, "retry_after_seconds", 0, retry_after)) {
        return ControlError(400, "bad field type");
      }
      const std::string t = target.value_or("all");
      if (t != "token" && t != "api" && t != "all") {
        return ControlError(400, "target must be token, api or all");
      }
      if (!mode || !IsKnownFaultMode(*mode)) {
        return ControlError(400, "unknown or missing mode");
      }
      // A new fault replaces the one for the same target; mode none clears (all: everything).
      std::erase_if(faults_, [&](const Fault& f) { return f.target == t || t == "all"; });
      if (*mode != "none" && count.value_or(1) != 0) {
        faults_.push_back(Fault{t, *mode, count.value_or(1), retry_after.value_or(-1)});
      }
    }
    json::array list;
    for (const Fault& fault : faults_) {
      list.push_back(json::object{{"target", fault.target},
                                  {"mode", fault.mode},
                                  {"count", fault.remaining},
                                  {"retry_after_seconds", fault.retry_after_seconds}});
    }
    return JsonResponse(200, json::object{{"faults", std::move(list)}});
  }

  if (path == "/_sim/revoke" && post) {
    std::optional<std::string> org;
    if (!ReadString(body, "organization_id", org) || !org) {
      return ControlError(400, "organization_id is required");
    }
    int64_t grants = 0;
    for (const Grant& grant : grants_) {
      grants += grant.organization_id == *org && !grant.revoked ? 1 : 0;
    }
    RevokeGrantsOf(*org);
    return JsonResponse(200, json::object{{"organization_id", *org}, {"revoked_grants", grants}});
  }

  if (path == "/_sim/organizations" && (get || post)) {
    if (post) {
      std::optional<std::string> id;
      std::optional<std::string> name;
      std::optional<std::string> email;
      if (!ReadString(body, "id", id) || !ReadString(body, "name", name) ||
          !ReadString(body, "email", email) || !id || !id->starts_with("org_") || id->size() == 4) {
        return ControlError(400, "id (org_...) is required; name and email are strings");
      }
      Organization& org = OrganizationFor(*id);
      if (name) {
        org.name = *name;
      }
      if (email) {
        org.email = *email;
      }
      return JsonResponse(200,
                          json::object{{"id", org.id}, {"name", org.name}, {"email", org.email}});
    }
    json::array list;
    for (const auto& [id, org] : organizations_) {
      list.push_back(json::object{{"id", org.id}, {"name", org.name}, {"email", org.email}});
    }
    return JsonResponse(200, json::object{{"organizations", std::move(list)}});
  }

  static constexpr std::string_view kPaths[] = {"/_sim/truth",  "/_sim/stats",
                                                "/_sim/config", "/_sim/faults",
                                                "/_sim/revoke", "/_sim/organizations"};
  for (std::string_view known : kPaths) {
    if (path == known) {
      return ControlError(405, "method not allowed");
    }
  }
  return ControlError(404, "unknown control endpoint");
}

}  // namespace connectbroker::mollie_sim
