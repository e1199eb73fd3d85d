// Routing, faults, the REST API (/v2/organizations/me) and the shared state helpers.
#include "tests/mollie_sim/simulator.h"

#include <algorithm>
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

// Faults whose request is processed as usual; only the reply is late (delay) or lost.
bool ProcessesNormally(std::string_view mode) {
  return mode == "delay" || mode == "reply_then_drop";
}

void ApplyPassThroughFault(std::string_view mode, int64_t delay_ms, SimResponse& response) {
  if (mode == "delay") {
    response.delay_ms = delay_ms;
    response.log_note = "delayed " + std::to_string(delay_ms) + " ms";
  } else {  // reply_then_drop
    response.action = SimAction::kReset;
    response.log_note = "fault: reply_then_drop";
  }
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
    return TokenEndpoint(request);
  }
  if (path.starts_with("/v2/")) {
    const std::optional<Fault> fault = TakeFault("api", "");
    if (fault && !ProcessesNormally(fault->mode)) {
      return FaultResponse(*fault, "api", "");
    }
    SimResponse response = Api(request, path);
    if (fault) {
      ApplyPassThroughFault(fault->mode, fault->delay_ms, response);
    }
    return response;
  }
  if (path.starts_with("/_sim/")) {
    return Control(request, path);
  }
  return PlainResponse(404, "Not Found");
}

SimResponse Simulator::TokenEndpoint(const SimRequest& request) {
  const bool post = request.method == "POST";
  TokenRequestInfo info;
  if (post) {
    ++stats_.token_requests;
    info = InspectTokenRequest(request);
    if (info.grant_type == "refresh_token") {
      ++stats_.refresh_attempts;
      if (!info.organization_id.empty()) {
        ++stats_.refresh_attempts_by_organization[info.organization_id];
      }
    }
  }
  const std::optional<Fault> fault = TakeFault("token", info.grant_type);
  SimResponse response;
  if (fault && !ProcessesNormally(fault->mode)) {
    response = FaultResponse(*fault, "token", info.grant_type);
  } else {
    response = post ? PostTokens(request) : DeleteTokens(request);
    if (fault) {
      ApplyPassThroughFault(fault->mode, fault->delay_ms, response);
    }
  }
  if (post) {
    // The status decided; for reply_then_drop the one that was never delivered.
    const bool answered =
        response.action == SimAction::kRespond || (fault && fault->mode == "reply_then_drop");
    token_log_.push_back(TokenLogEntry{NowMs(), info.grant_type, info.organization_id,
                                       answered ? response.status : 0,
                                       fault ? fault->mode : "none"});
    if (token_log_.size() > kTokenLogCapacity) {
      token_log_.pop_front();
    }
    response.token_request = true;
    ++token_requests_in_flight_;
    stats_.max_concurrent_token_requests =
        std::max(stats_.max_concurrent_token_requests, token_requests_in_flight_);
  }
  return response;
}

void Simulator::TokenRequestDone() {
  std::lock_guard lock(mu_);
  --token_requests_in_flight_;
}

std::optional<Simulator::Fault> Simulator::TakeFault(std::string_view target,
                                                     std::string_view grant_type) {
  for (auto it = faults_.begin(); it != faults_.end(); ++it) {
    if (it->target != target && it->target != "all") {
      continue;
    }
    if (!it->grant_type.empty() && it->grant_type != grant_type) {
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
    response = HalError(500, "Internal Server Error", "Simulated internal server error");
  } else if (fault.mode == "http_503") {
    response = HalError(503, "Service Unavailable", "Simulated outage, try again later");
  } else if (fault.mode == "http_429") {
    response = HalError(429, "Too Many Requests",
                        "You have exceeded the rate limit. Please slow down your requests.");
    response.headers.emplace_back(
        "Retry-After",
        std::to_string(fault.retry_after_seconds < 0 ? 1 : fault.retry_after_seconds));
  } else if (fault.mode == "http_400_invalid_grant") {
    response = token ? OAuthError(400, "invalid_grant",
                                  grant_type == "authorization_code"
                                      ? "Authorization code doesn't exist or is invalid for the "
                                        "client"
                                      : "Refresh token doesn't exist or is invalid for the client")
                     : HalError(400, "Bad Request", "Simulated invalid_grant");
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

int64_t Simulator::NowMs() const {
  return ToUnixMillis(clock_.Now()) + clock_offset_seconds_ * 1000;
}

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
  return !token.dead && token.successor == kNone && !grants_[token.grant].revoked;
}

bool Simulator::RefreshTokenReplayable(const RefreshToken& token) const {
  return !token.dead && token.successor != kNone && !grants_[token.grant].revoked;
}

size_t Simulator::AddRefreshToken(size_t grant, size_t predecessor) {
  const size_t index = refresh_tokens_.size();
  RefreshToken token{NewToken("refresh_"), grant, false, predecessor, kNone};
  refresh_index_[token.token] = index;
  refresh_tokens_.push_back(std::move(token));
  if (predecessor != kNone) {
    refresh_tokens_[predecessor].successor = index;
  }
  return index;
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
