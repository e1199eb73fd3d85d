// The REST API under /v2/ (after ApiEndpoint has taken faults): bearer authentication,
// Idempotency-Key, routing with 404/405, per-endpoint scopes (403), and the organization,
// profile, permission and onboarding endpoints. Payments and refunds are in rest_payments.cc.
// Called with mu_ held.
#include <algorithm>
#include <cctype>
#include <map>

#include "tests/mollie_sim/rest_support.h"
#include "tests/mollie_sim/simulator.h"

namespace connectbroker::mollie_sim {
namespace json = boost::json;

namespace {

constexpr std::string_view kApiKeyOnly =
    "This API endpoint is only available with an API key and cannot be accessed with an OAuth "
    "access token.";

std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> parts;
  for (;;) {
    const size_t slash = path.find('/');
    parts.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) {
      return parts;
    }
    path.remove_prefix(slash + 1);
  }
}

SimResponse MissingScope(std::string_view scope) {
  return HalError(403, "The access token is missing the required permission '" +
                           std::string(scope) + "'");
}

SimResponse InvalidCursor() { return HalError(400, "Invalid cursor value", "from"); }

// Mollie's description of a permission; the ones Mollie's docs show, else a generic one.
std::string PermissionDescription(std::string_view scope) {
  static const std::map<std::string_view, std::string_view> kKnown = {
      {"payments.read", "View your payments"},
      {"payments.write", "Create new payments"},
      {"refunds.read", "View your refunds"},
      {"refunds.write", "Create or cancel refunds"},
      {"customers.read", "View your customers"},
      {"customers.write", "Manage your customers"},
      {"mandates.read", "View your mandates"},
      {"mandates.write", "Manage your mandates"},
      {"subscriptions.read", "View your subscriptions"},
      {"subscriptions.write", "Manage your subscriptions"},
      {"profiles.read", "View your website profiles"},
      {"profiles.write", "Manage your website profiles"},
      {"invoices.read", "View your invoices"},
      {"settlements.read", "View your settlements"},
      {"orders.read", "View your orders"},
      {"orders.write", "Manage your orders"},
      {"organizations.read", "View your organizational details"},
      {"organizations.write", "Change your organizational details"},
      {"onboarding.read", "View your onboarding status"},
      {"onboarding.write", "Submit onboarding data"},
  };
  if (auto it = kKnown.find(scope); it != kKnown.end()) {
    return std::string(it->second);
  }
  const size_t dot = scope.find('.');
  std::string resource(scope.substr(0, dot));
  std::replace(resource.begin(), resource.end(), '-', ' ');
  return (scope.substr(dot + 1) == "read" ? "View your " : "Manage your ") + resource;
}

}  // namespace

SimResponse Simulator::Api(ApiCall& call) {
  if (call.grant == kNone) {
    return HalUnauthorized();
  }
  if (auto early = IdempotencyCheck(call)) {
    return *std::move(early);
  }
  SimResponse response = ApiRoute(call);
  RememberIdempotent(call, response);
  return response;
}

bool Simulator::GrantHasScope(size_t grant, std::string_view scope) const {
  return (" " + grants_[grant].scope + " ").find(" " + std::string(scope) + " ") !=
         std::string::npos;
}

SimResponse Simulator::ApiRoute(ApiCall& call) {
  const std::string& method = call.request.method;
  const std::vector<std::string_view> parts = Segments(call.path.substr(4));  // after "/v2/"
  const size_t n = parts.size();
  // nullopt when `method` is one of `allow` and the grant holds `scope` (none when empty).
  auto gate = [&](std::string_view allow,
                  std::string_view scope) -> std::optional<SimResponse> {
    bool allowed = false;
    for (std::string_view rest = allow; !rest.empty();) {
      const size_t comma = rest.find(", ");
      allowed = allowed || rest.substr(0, comma) == method;
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 2);
    }
    if (!allowed) {
      return MethodNotAllowed(allow);
    }
    if (!scope.empty() && !GrantHasScope(call.grant, scope)) {
      return MissingScope(scope);
    }
    return std::nullopt;
  };
  const bool get = method == "GET";

  if (n == 2 && parts[0] == "organizations" && parts[1] == "me") {
    auto denied = gate("GET", "organizations.read");
    return denied ? *std::move(denied) : OrganizationMe(call);
  }
  if (parts[0] == "payments" && n == 1) {
    auto denied = gate("GET, POST", get ? "payments.read" : "payments.write");
    return denied ? *std::move(denied) : get ? ListPayments(call) : CreatePayment(call);
  }
  if (parts[0] == "payments" && n == 2 && !parts[1].empty()) {
    auto denied = gate("GET", "payments.read");
    return denied ? *std::move(denied) : GetPayment(call, parts[1]);
  }
  if (parts[0] == "payments" && n == 3 && !parts[1].empty() && parts[2] == "refunds") {
    auto denied = gate("POST", "refunds.write");
    return denied ? *std::move(denied) : CreateRefund(call, parts[1]);
  }
  if (parts[0] == "profiles" && n == 1) {
    auto denied = gate("GET", "profiles.read");
    return denied ? *std::move(denied) : ListProfiles(call);
  }
  if (parts[0] == "profiles" && n == 2 && parts[1] == "me") {
    auto denied = gate("GET", "");
    return denied ? *std::move(denied) : HalError(403, kApiKeyOnly);
  }
  if (parts[0] == "profiles" && n == 2 && !parts[1].empty()) {
    auto denied = gate("GET", "profiles.read");
    return denied ? *std::move(denied) : GetProfile(call, parts[1]);
  }
  if (parts[0] == "permissions" && n == 1) {
    auto denied = gate("GET", "");
    return denied ? *std::move(denied) : ListPermissions(call);
  }
  if (parts[0] == "permissions" && n == 2 && !parts[1].empty()) {
    auto denied = gate("GET", "");
    return denied ? *std::move(denied) : GetPermission(call, parts[1]);
  }
  if (n == 2 && parts[0] == "onboarding" && parts[1] == "me") {
    auto denied = gate("GET", "onboarding.read");
    return denied ? *std::move(denied) : OnboardingMe(call);
  }
  return HalError(404, "No API endpoint exists at " + std::string(call.path));
}

SimResponse Simulator::OrganizationMe(const ApiCall& call) {
  const Organization& org = OrganizationFor(grants_[call.grant].organization_id);
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

json::object Simulator::ProfileJson(const Organization& org, const std::string& base) const {
  const std::string id = ProfileIdOf(org.id);
  std::string host;
  for (const char c : org.id.substr(4)) {
    host.push_back(std::isalnum(static_cast<unsigned char>(c)) ? c : '-');
  }
  return json::object{
      {"resource", "profile"},
      {"id", id},
      {"mode", "live"},
      {"name", org.name + " shop"},
      {"website", "https://shop-" + host + ".example.com"},
      {"email", org.email},
      {"phone", "+31208202070"},
      {"categoryCode", 5399},
      {"businessCategory", "OTHER_MERCHANDISE"},
      {"status", "verified"},
      {"review", nullptr},
      {"createdAt", IsoTime(org.created_at_ms)},
      {"_links",
       {{"self", Link(base + "profiles/" + id)},
        {"dashboard",
         Link("https://my.mollie.com/dashboard/" + org.id + "/settings/profiles/" + id,
              "text/html")},
        {"chargebacks", Link(base + "chargebacks?profileId=" + id)},
        {"methods", Link(base + "methods?profileId=" + id)},
        {"payments", Link(base + "payments?profileId=" + id)},
        {"refunds", Link(base + "refunds?profileId=" + id)},
        {"checkoutPreviewUrl",
         Link("https://www.mollie.com/checkout/preview/" + id, "text/html")},
        {"documentation",
         Link("https://docs.mollie.com/reference/v2/profiles-api/get-profile", "text/html")}}}};
}

SimResponse Simulator::ListProfiles(const ApiCall& call) {
  auto parsed = ParsePageQuery(call.query);
  if (auto* error = std::get_if<SimResponse>(&parsed)) {
    return *std::move(error);
  }
  const PageQuery& page = std::get<PageQuery>(parsed);
  const Organization& org = OrganizationFor(call.organization_id);
  if (!page.from.empty() && page.from != ProfileIdOf(org.id)) {
    return InvalidCursor();
  }
  // One profile per organization: always a single page.
  return JsonResponse(
      200,
      json::object{
          {"count", 1},
          {"_embedded", {{"profiles", json::array{ProfileJson(org, call.base)}}}},
          {"_links",
           {{"self", Link(PageHref(call.base, "profiles", page.from, page.limit, page.rest))},
            {"previous", nullptr},
            {"next", nullptr},
            {"documentation",
             Link("https://docs.mollie.com/reference/v2/profiles-api/list-profiles",
                  "text/html")}}}},
      kHalJson);
}

SimResponse Simulator::GetProfile(const ApiCall& call, std::string_view id) {
  const Organization& org = OrganizationFor(call.organization_id);
  if (id != ProfileIdOf(org.id)) {
    return HalError(404, "No profile exists with token " + std::string(id) + ".");
  }
  return JsonResponse(200, ProfileJson(org, call.base), kHalJson);
}

SimResponse Simulator::ListPermissions(const ApiCall& call) {
  json::array list;
  for (std::string_view scope : KnownScopes()) {
    list.push_back(json::object{
        {"resource", "permission"},
        {"id", scope},
        {"description", PermissionDescription(scope)},
        {"granted", GrantHasScope(call.grant, scope)},
        {"_links", {{"self", Link(call.base + "permissions/" + std::string(scope))}}}});
  }
  const auto count = static_cast<int64_t>(list.size());
  return JsonResponse(
      200,
      json::object{
          {"_embedded", {{"permissions", std::move(list)}}},
          {"count", count},
          {"_links",
           {{"documentation",
             Link("https://docs.mollie.com/reference/v2/permissions-api/list-permissions",
                  "text/html")},
            {"self", Link(call.base + "permissions")}}}},
      kHalJson);
}

SimResponse Simulator::GetPermission(const ApiCall& call, std::string_view id) {
  const auto scopes = KnownScopes();
  if (std::find(scopes.begin(), scopes.end(), id) == scopes.end()) {
    return HalError(404, "No permission exists with id " + std::string(id) + ".");
  }
  return JsonResponse(
      200,
      json::object{
          {"resource", "permission"},
          {"id", id},
          {"description", PermissionDescription(id)},
          {"granted", GrantHasScope(call.grant, id)},
          {"_links",
           {{"self", Link(call.base + "permissions/" + std::string(id))},
            {"documentation",
             Link("https://docs.mollie.com/reference/v2/permissions-api/get-permission",
                  "text/html")}}}},
      kHalJson);
}

SimResponse Simulator::OnboardingMe(const ApiCall& call) {
  const Organization& org = OrganizationFor(call.organization_id);
  return JsonResponse(
      200,
      json::object{
          {"resource", "onboarding"},
          {"name", org.name},
          {"signedUpAt", IsoTime(org.created_at_ms)},
          {"status", "completed"},
          {"canReceivePayments", true},
          {"canReceiveSettlements", true},
          {"_links",
           {{"self", Link(call.base + "onboarding/me")},
            {"onboarding", Link("https://www.mollie.com/dashboard/onboarding", "text/html")},
            {"organization", Link(call.base + "organizations/" + org.id)},
            {"documentation",
             Link("https://docs.mollie.com/reference/v2/onboarding-api/get-onboarding-status",
                  "text/html")}}}},
      kHalJson);
}

}  // namespace connectbroker::mollie_sim
