// Routing, the /v2/ wrapper (faults, API log, in-flight counts), the response helpers and the
// shared state helpers.
#include "tests/mollie_sim/simulator.h"

#include <algorithm>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>

#include "tests/mollie_sim/rest_support.h"

namespace connectbroker::mollie_sim {
namespace json = boost::json;

namespace {

SimResponse PlainResponse(int status, std::string_view text) {
  SimResponse response;
  response.status = status;
  response.headers.emplace_back("Content-Type", "text/plain; charset=utf-8");
  response.body = std::string(text) + "\n";
  return response;
}

// Faults whose request is processed as usual; only the reply is late (delay), lost
// (reply_then_drop) or cut short (truncated).
bool ProcessesNormally(std::string_view mode) {
  return mode == "delay" || mode == "reply_then_drop" || mode == "truncated";
}

void ApplyPassThroughFault(std::string_view mode, int64_t delay_ms, SimResponse& response) {
  if (mode == "delay") {
    response.delay_ms = delay_ms;
    response.log_note = "delayed " + std::to_string(delay_ms) + " ms";
  } else if (mode == "truncated") {
    response.action = SimAction::kTruncate;
    response.log_note = "fault: truncated";
  } else {  // reply_then_drop
    response.action = SimAction::kReset;
    response.log_note = "fault: reply_then_drop";
  }
}

// The status a log entry records: the one decided, also when it was never (fully) delivered;
// 0 when no response was produced.
int LoggedStatus(const SimResponse& response, const std::optional<std::string>& fault_mode) {
  const bool answered = response.action == SimAction::kRespond ||
                        response.action == SimAction::kTruncate ||
                        (fault_mode && *fault_mode == "reply_then_drop");
  return answered ? response.status : 0;
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

SimResponse HalError(int status, std::string_view detail, std::string_view field) {
  json::object body{{"status", status}, {"title", HalTitle(status)}, {"detail", detail}};
  if (!field.empty()) {
    body["field"] = field;
  }
  body["_links"] = {
      {"documentation", Link("https://docs.mollie.com/overview/handling-errors", "text/html")}};
  return JsonResponse(status, body, kHalJson);
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
    return ApiEndpoint(request, path, query);
  }
  if (path.starts_with("/_sim/")) {
    return Control(request, path, query);
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
    const std::optional<std::string> mode =
        fault ? std::optional<std::string>(fault->mode) : std::nullopt;
    token_log_.push_back(TokenLogEntry{NowMs(), info.grant_type, info.organization_id,
                                       LoggedStatus(response, mode), mode.value_or("none")});
    if (token_log_.size() > kTokenLogCapacity) {
      token_log_.pop_front();
    }
    response.on_finished = [this] { TokenRequestDone(); };
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

SimResponse Simulator::ApiEndpoint(const SimRequest& request, std::string_view path,
                                   std::string_view query) {
  ++stats_.api_requests;
  ApiCall call{request, path, query,
               "https://" + (request.host.empty() ? std::string("api.mollie.com") : request.host) +
                   "/v2/"};
  // The bearer token is looked at before faults, so that the log names the organization of
  // faulted requests too.
  if (StartsWithIgnoreCase(request.authorization, "Bearer ")) {
    std::string_view value = request.authorization;
    value.remove_prefix(7);
    while (!value.empty() && value.front() == ' ') {
      value.remove_prefix(1);
    }
    auto it = access_index_.find(std::string(value));
    if (it != access_index_.end() && AccessTokenValid(access_tokens_[it->second], NowMs())) {
      call.grant = access_tokens_[it->second].grant;
      call.organization_id = grants_[call.grant].organization_id;
    }
  }
  const int64_t arrived_ms = NowMs();
  const std::optional<Fault> fault = TakeFault("api", "", request.method, path);
  SimResponse response;
  if (fault && !ProcessesNormally(fault->mode)) {
    response = FaultResponse(*fault, "api", "");
  } else {
    response = Api(call);
    if (fault) {
      ApplyPassThroughFault(fault->mode, fault->delay_ms, response);
    }
  }
  const std::optional<std::string> mode =
      fault ? std::optional<std::string>(fault->mode) : std::nullopt;
  api_log_.push_back(ApiLogEntry{arrived_ms, request.method, std::string(path),
                                 std::string(query), call.organization_id,
                                 LoggedStatus(response, mode), mode.value_or("none"),
                                 request.idempotency_key, call.replayed});
  if (api_log_.size() > kApiLogCapacity) {
    api_log_.pop_front();
  }
  response.on_finished = [this, slot = std::move(call.idempotency_slot),
                          serial = call.idempotency_serial] { ApiRequestDone(slot, serial); };
  ++api_requests_in_flight_;
  stats_.max_concurrent_api_requests =
      std::max(stats_.max_concurrent_api_requests, api_requests_in_flight_);
  return response;
}

void Simulator::ApiRequestDone(const std::string& idempotency_slot, uint64_t serial) {
  std::lock_guard lock(mu_);
  --api_requests_in_flight_;
  if (serial == 0) {
    return;
  }
  // The entry may have expired (and been replaced) meanwhile; only finish our own.
  auto it = idempotency_.find(idempotency_slot);
  if (it != idempotency_.end() && it->second.serial == serial) {
    it->second.in_flight = false;
  }
}

int64_t Simulator::NowMs() const {
  return ToUnixMillis(clock_.Now()) + clock_offset_seconds_ * 1000;
}

Simulator::Organization& Simulator::OrganizationFor(const std::string& id) {
  auto [it, inserted] = organizations_.try_emplace(id);
  if (inserted) {
    const std::string number = id.substr(4);  // after "org_"
    it->second =
        Organization{id, "Merchant " + number, "merchant-" + number + "@example.com", NowMs()};
  }
  return it->second;
}

std::string Simulator::ProfileIdOf(std::string_view organization_id) {
  return "pfl_" + std::string(organization_id.substr(4));  // after "org_"
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
