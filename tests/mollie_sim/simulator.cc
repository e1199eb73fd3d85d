// Routing, faults, the REST API (/v2/organizations/me) and the shared state helpers.
#include "tests/mollie_sim/simulator.h"

#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>

namespace connectbroker::mollie_sim {
namespace json = boost::json;

namespace {

constexpr std::string_view kHalJson = "application/hal+json";

json::object Link(std::string_view href, std::string_view type = "application/hal+json") {
  return json::object{{"href", href}, {"type", type}};
}

SimResponse PlainResponse(int status, std::string_view text) {
  SimResponse response;
  response.status = status;
  response.headers.emplace_back("Content-Type", "text/plain; charset=utf-8");
  response.body = std::string(text) + "\n";
  return response;
}

SimResponse MethodNotAllowed(std::string_view allow) {
  SimResponse response =
      HalError(405, "Method Not Allowed", "The requested method is not allowed on this resource");
  response.headers.emplace_back("Allow", allow);
  return response;
}

}  // namespace

SimResponse JsonResponse(int status, const json::value& body, std::string_view content_type) {
  SimResponse response;
  response.status = status;
  response.headers.emplace_back("Content-Type", content_type);
  response.body = json::serialize(body);
  return response;
}

SimResponse OAuthError(int status, std::string_view error, std::string_view description) {
  SimResponse response =
      JsonResponse(status, json::object{{"error", error}, {"error_description", description}});
  response.headers.emplace_back("Cache-Control", "no-store");
  return response;
}

SimResponse HalError(int status, std::string_view title, std::string_view detail) {
  return JsonResponse(
      status,
      json::object{{"status", status},
                   {"title", title},
                   {"detail", detail},
                   {"_links",
                    {{"documentation",
                      Link("https://docs.mollie.com/overview/handling-errors", "text/html")}}}},
      kHalJson);
}

SimResponse HalUnauthorized() {
  // Exactly tests/testdata/mollie/error_unauthorized.json, key order included.
  return JsonResponse(
      401,
      json::object{
          {"_links",
           {{"documentation", Link("https://docs.mollie.com/guides/authentication", "text/html")}}},
          {"detail", "Missing authentication, or failed to authenticate"},
          {"status", 401},
          {"title", "Unauthorized Request"}},
      kHalJson);
}

Simulator::Simulator(SimOptions options, const Clock& clock, Random& random)
    : clock_(clock), random_(random), options_(std::move(options)) {}

SimResponse Simulator::Handle(const SimRequest& request) {
  auto target = boost::urls::parse_origin_form(request.target);
  if (!target) {
    return PlainResponse(400, "Bad request target");
  }
  const std::string path(target->encoded_path());
  const std::string query(target->encoded_query());
  std::lock_guard lock(mu_);
  return Route(request, path, query);
}

SimResponse Simulator::Route(const SimRequest& request, std::string_view path,
                             std::string_view query) {
  if (path == "/oauth2/authorize") {
    if (request.method != "GET") {
      return PlainResponse(405, "Method Not Allowed");
    }
    return Authorize(query);
  }
  if (path == "/oauth2/tokens") {
    if (request.method != "POST" && request.method != "DELETE") {
      return MethodNotAllowed("POST, DELETE");
    }
    if (request.method == "POST") {
      ++stats_.token_requests;
    }
    if (auto fault = TakeFault("token")) {
      return *fault;
    }
    return request.method == "POST" ? PostTokens(request) : DeleteTokens(request);
  }
  if (path.starts_with("/v2/")) {
    if (auto fault = TakeFault("api")) {
      return *fault;
    }
    return Api(request, path);
  }
  if (path.starts_with("/_sim/")) {
    return Control(request, path);
  }
  return PlainResponse(404, "Not Found");
}

std::optional<SimResponse> Simulator::TakeFault(std::string_view target) {
  for (auto it = faults_.begin(); it != faults_.end(); ++it) {
    if (it->target != target && it->target != "all") {
      continue;
    }
    const Fault fault = *it;
    if (it->remaining > 0 && --it->remaining == 0) {
      faults_.erase(it);
    }
    const bool token = target == "token";
    SimResponse response;
    if (fault.mode == "http_500") {
      response = HalError(500, "Internal Server Error", "Simulated internal server error");
    } else if (fault.mode == "http_503") {
      response = HalError(503, "Service Unavailable", "Simulated outage, try again later");
    } else if (fault.mode == "http_429") {
      response = HalError(429, "Too Many Requests",
                          "You have exceeded the rate limit. Please slow down your requests.");
      response.headers.emplace_back(
          "Retry-After",
          std::to_string(fault.retry_after_seconds < 0 ? 1 : fault.retry_after_seconds));
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
    } else if (fault.mode == "reset") {
      response.action = SimAction::kReset;
    } else {  // hang
      response.action = SimAction::kHang;
    }
    if (fault.retry_after_seconds >= 0 && fault.mode != "http_429") {
      response.headers.emplace_back("Retry-After", std::to_string(fault.retry_after_seconds));
    }
    return response;
  }
  return std::nullopt;
}

SimResponse Simulator::Api(const SimRequest& request, std::string_view path) {
  const AccessToken* token = nullptr;
  if (StartsWithIgnoreCase(request.authorization, "Bearer ")) {
    std::string_view value = request.authorization;
    value.remove_prefix(7);
    while (!value.empty() && value.front() == ' ') {
      value.remove_prefix(1);
    }
    auto it = access_index_.find(std::string(value));
    if (it != access_index_.end() && AccessTokenValid(access_tokens_[it->second], NowMs())) {
      token = &access_tokens_[it->second];
    }
  }
  if (token == nullptr) {
    return HalUnauthorized();
  }
  if (path != "/v2/organizations/me") {
    return HalError(404, "Not Found", "The simulator only implements /v2/organizations/me");
  }
  if (request.method != "GET") {
    return MethodNotAllowed("GET");
  }
  const Grant& grant = grants_[token->grant];
  if ((" " + grant.scope + " ").find(" organizations.read ") == std::string::npos) {
    return HalError(403, "Forbidden",
                    "The access token is missing the required permission "
                    "'organizations.read'");
  }
  const Organization& org = OrganizationFor(grant.organization_id);
  const std::string api = "https://api.mollie.com/v2/";
  return JsonResponse(
      200,
      json::object{
          {"resource", "organization"},
          {"id", org.id},
          {"name", org.name},
          {"email", org.email},
          {"locale", "nl_NL"},
          {"address",
           {{"streetAndNumber", "Keizersgracht 313"},
            {"postalCode", "1016 EE"},
            {"city", "Amsterdam"},
            {"country", "NL"}}},
          {"registrationNumber", "30204462"},
          {"vatNumber", "NL815839091B01"},
          {"vatRegulation", "dutch"},
          {"_links",
           {{"self", Link(api + "organizations/me")},
            {"chargebacks", Link(api + "chargebacks")},
            {"customers", Link(api + "customers")},
            {"invoices", Link(api + "invoices")},
            {"payments", Link(api + "payments")},
            {"profiles", Link(api + "profiles")},
            {"refunds", Link(api + "refunds")},
            {"settlements", Link(api + "settlements")},
            {"dashboard", Link("https://mollie.com/dashboard/" + org.id, "text/html")},
            {"documentation",
             Link("https://docs.mollie.com/reference/v2/organizations-api/current-organization",
                  "text/html")}}}},
      kHalJson);
}

int64_t Simulator::NowMs() const { return ToUnixMillis(clock_.Now()); }

Simulator::Organization& Simulator::OrganizationFor(const std::string& id) {
  auto [it, inserted] = organizations_.try_emplace(id);
  if (inserted) {
    const std::string number = id.substr(4);  // after "org_"
    it->second = Organization{id, "Merchant " + number, "merchant-" + number + "@example.com"};
  }
  return it->second;
}

Simulator::Organization& Simulator::NewOrganization() {
  std::string id;
  do {
    id = "org_" + std::to_string(next_organization_number_++);
  } while (organizations_.contains(id));
  return OrganizationFor(id);
}

SimResponse Simulator::IssueTokens(size_t grant, const std::string& refresh_token) {
  const int64_t ttl = options_.access_token_ttl_seconds;
  AccessToken access{NewToken("access_"), grant, NowMs() + ttl * 1000, false};
  access_index_[access.token] = access_tokens_.size();
  access_tokens_.push_back(access);
  SimResponse response = JsonResponse(200, json::object{{"access_token", access.token},
                                                        {"refresh_token", refresh_token},
                                                        {"expires_in", ttl},
                                                        {"token_type", "bearer"},
                                                        {"scope", grants_[grant].scope}});
  response.headers.emplace_back("Cache-Control", "no-store");
  response.headers.emplace_back("Pragma", "no-cache");
  return response;
}

void Simulator::RevokeGrantsOf(const std::string& organization_id) {
  for (Grant& grant : grants_) {
    if (grant.organization_id == organization_id) {
      grant.revoked = true;
    }
  }
}

bool Simulator::AccessTokenValid(const AccessToken& token, int64_t now_ms) const {
  return !token.revoked && !grants_[token.grant].revoked && now_ms < token.expires_at_ms;
}

bool Simulator::RefreshTokenValid(const RefreshToken& token) const {
  return !token.dead && !grants_[token.grant].revoked;
}

std::string Simulator::NewToken(std::string_view prefix) {
  for (;;) {
    std::string token = std::string(prefix) + RandomAlnum(random_, 30);
    if (!codes_.contains(token) && !access_index_.contains(token) &&
        !refresh_index_.contains(token)) {
      return token;
    }
  }
}

}  // namespace connectbroker::mollie_sim
