// The test control API under /_sim/ (JSON, no auth): ground truth, stats, run-time config,
// revocation "from Mollie's side", organizations, bulk grants and the clock; faults are in
// faults.cc, payments and the API log in control_payments.cc. Called with mu_ held.
#include <boost/json/parse.hpp>

#include "tests/mollie_sim/control_support.h"
#include "tests/mollie_sim/simulator.h"

namespace connectbroker::mollie_sim {
namespace json = boost::json;

namespace {

constexpr int64_t kMaxClockAdvanceSeconds = 100LL * 365 * 24 * 3600;

}  // namespace

json::object Simulator::ConfigJson() const {
  return json::object{{"access_token_ttl_seconds", options_.access_token_ttl_seconds},
                      {"rotate_refresh_tokens", options_.rotate_refresh_tokens},
                      {"rotation_replay", options_.rotation_replay},
                      {"code_ttl_seconds", options_.code_ttl_seconds},
                      {"client_id", options_.client_id},
                      {"redirect_uri", options_.redirect_uri}};
}

json::object Simulator::StatsJson() const {
  auto counts = [](const std::map<std::string, int64_t>& by_org) {
    json::object out;
    for (const auto& [org, count] : by_org) {
      out[org] = count;
    }
    return out;
  };
  return json::object{
      {"token_requests", stats_.token_requests},
      {"code_exchanges", stats_.code_exchanges},
      {"refreshes", stats_.refreshes},
      {"refreshes_by_organization", counts(stats_.refreshes_by_organization)},
      {"refresh_replays", stats_.refresh_replays},
      {"refresh_attempts", stats_.refresh_attempts},
      {"refresh_attempts_by_organization", counts(stats_.refresh_attempts_by_organization)},
      {"revocations", stats_.revocations},
      {"max_concurrent_token_requests", stats_.max_concurrent_token_requests},
      {"token_requests_in_flight", token_requests_in_flight_},
      {"api_requests", stats_.api_requests},
      {"api_requests_in_flight", api_requests_in_flight_},
      {"max_concurrent_api_requests", stats_.max_concurrent_api_requests}};
}

SimResponse Simulator::BulkGrants(const json::object& body) {
  std::optional<int64_t> count;
  std::optional<std::string> scopes_text;
  std::optional<std::string> redirect_uri;
  std::optional<std::string> prefix;
  if (!ReadInt(body, "count", 0, count) || !ReadString(body, "scopes", scopes_text) ||
      !ReadString(body, "redirect_uri", redirect_uri) || !ReadString(body, "org_prefix", prefix)) {
    return ControlError(400, "bad field type");
  }
  if (!count || *count > kMaxBulkGrants) {
    return ControlError(400, "count (0..20000) is required");
  }
  std::string unknown;
  const auto scopes = ParseScopes(scopes_text.value_or(""), &unknown);
  if (!scopes) {
    return ControlError(400, "unknown scope '" + unknown + "'");
  }
  if (scopes->empty()) {
    return ControlError(400, "scopes (space-separated) is required");
  }
  const std::string org_prefix = prefix.value_or("org_");
  if (!org_prefix.starts_with("org_")) {
    return ControlError(400, "org_prefix must start with org_");
  }
  std::string scope;
  for (const std::string& s : *scopes) {
    scope += (scope.empty() ? "" : " ") + s;
  }
  const std::string exchange_redirect = redirect_uri.value_or(options_.redirect_uri);
  json::array out;
  out.reserve(static_cast<size_t>(*count));
  for (int64_t i = 0; i < *count; ++i) {
    std::string number;
    std::string id;
    do {
      number = std::to_string(next_organization_number_++);
      id = org_prefix + number;
    } while (organizations_.contains(id));
    Organization& org = organizations_[id];
    org = Organization{id, "Merchant " + number, "merchant-" + number + "@example.com", NowMs()};
    const size_t grant = grants_.size();
    grants_.push_back(Grant{id, scope, exchange_redirect, false});
    const size_t refresh = AddRefreshToken(grant, kNone);
    out.push_back(json::object{{"organization_id", id},
                               {"name", org.name},
                               {"refresh_token", refresh_tokens_[refresh].token}});
  }
  return JsonResponse(200, json::object{{"grants", std::move(out)}});
}

SimResponse Simulator::Control(const SimRequest& request, std::string_view path,
                               std::string_view query) {
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
                                     {"valid", RefreshTokenValid(token)},
                                     {"replayable", RefreshTokenReplayable(token)}});
    }
    return JsonResponse(200, json::object{{"now_ms", now},
                                          {"access_tokens", std::move(access)},
                                          {"refresh_tokens", std::move(refresh)}});
  }

  if (path == "/_sim/stats" && get) {
    return JsonResponse(200, StatsJson());
  }

  if (path == "/_sim/stats/reset" && post) {
    stats_ = Stats{};
    stats_.max_concurrent_token_requests = token_requests_in_flight_;
    stats_.max_concurrent_api_requests = api_requests_in_flight_;
    return JsonResponse(200, StatsJson());
  }

  if (path == "/_sim/token_log" && get) {
    json::array entries;
    entries.reserve(token_log_.size());
    for (const TokenLogEntry& entry : token_log_) {
      entries.push_back(json::object{{"time_ms", entry.time_ms},
                                     {"grant_type", entry.grant_type},
                                     {"organization_id", entry.organization_id},
                                     {"status", entry.status},
                                     {"fault", entry.fault}});
    }
    return JsonResponse(200, json::object{{"entries", std::move(entries)}});
  }

  if (path == "/_sim/token_log/clear" && post) {
    const auto cleared = static_cast<int64_t>(token_log_.size());
    token_log_.clear();
    return JsonResponse(200, json::object{{"cleared", cleared}});
  }

  if (path == "/_sim/clock" && (get || post)) {
    std::optional<int64_t> advance;
    if (!ReadInt(body, "advance_seconds", 0, advance) ||
        (advance && *advance > kMaxClockAdvanceSeconds)) {
      return ControlError(400, "advance_seconds must be an integer >= 0 (at most 100 years)");
    }
    if (advance) {
      clock_offset_seconds_ += *advance;
    }
    return JsonResponse(
        200, json::object{{"now_ms", NowMs()}, {"offset_seconds", clock_offset_seconds_}});
  }

  if (path == "/_sim/grants" && post) {
    return BulkGrants(body);
  }

  if (path == "/_sim/config" && (get || post)) {
    std::optional<int64_t> ttl;
    std::optional<int64_t> code_ttl;
    if (!ReadInt(body, "access_token_ttl_seconds", 0, ttl) ||
        !ReadInt(body, "code_ttl_seconds", 0, code_ttl)) {
      return ControlError(400, "ttl values must be integers >= 0");
    }
    const json::value* rotate = body.if_contains("rotate_refresh_tokens");
    const json::value* replay = body.if_contains("rotation_replay");
    if ((rotate != nullptr && !rotate->is_bool()) || (replay != nullptr && !replay->is_bool())) {
      return ControlError(400, "rotate_refresh_tokens and rotation_replay must be booleans");
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
    if (replay != nullptr) {
      options_.rotation_replay = replay->as_bool();
    }
    return JsonResponse(200, ConfigJson());
  }

  if (path == "/_sim/faults" && (get || post)) {
    return FaultsControl(post, body);
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

  if (auto response = PaymentsControl(request, path, query, body)) {
    return *std::move(response);
  }

  static constexpr std::string_view kPaths[] = {
      "/_sim/truth",           "/_sim/stats",  "/_sim/stats/reset",   "/_sim/config",
      "/_sim/faults",          "/_sim/revoke", "/_sim/organizations", "/_sim/token_log",
      "/_sim/token_log/clear", "/_sim/clock",  "/_sim/grants"};
  for (std::string_view known : kPaths) {
    if (path == known) {
      return ControlError(405, "method not allowed");
    }
  }
  return ControlError(404, "unknown control endpoint");
}

}  // namespace connectbroker::mollie_sim
