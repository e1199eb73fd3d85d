// The OAuth endpoints: GET /oauth2/authorize (the consent screen, auto-approving), and
// POST / DELETE /oauth2/tokens. Called by Simulator::Route with mu_ held.
#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>
#include <cctype>

#include "tests/mollie_sim/simulator.h"

namespace connectbroker::mollie_sim {
namespace json = boost::json;

namespace {

constexpr std::string_view kBadCode =
    "Authorization code doesn't exist or is invalid for the client";
constexpr std::string_view kBadRefreshToken =
    "Refresh token doesn't exist or is invalid for the client";

std::optional<std::string> Get(const FormFields& fields, std::string_view name) {
  auto it = fields.find(name);
  if (it == fields.end()) {
    return std::nullopt;
  }
  return it->second;
}

// Mollie shows an error page and does not redirect when the client or redirect URI is wrong.
SimResponse HtmlError(std::string_view message) {
  SimResponse response;
  response.status = 400;
  response.headers.emplace_back("Content-Type", "text/html; charset=utf-8");
  response.body =
      "<!DOCTYPE html>\n<html><head><title>Mollie: authorization failed</title></head>\n"
      "<body><h1>Something went wrong</h1><p>" +
      HtmlEscape(message) + "</p></body></html>\n";
  return response;
}

// `base` plus form-encoded `params` appended to its query; the fragment is dropped.
std::string RedirectUrl(std::string_view base,
                        const std::vector<std::pair<std::string, std::string>>& params) {
  boost::urls::url url(*boost::urls::parse_uri_reference(base));
  std::string query(url.encoded_query());
  for (const auto& [key, value] : params) {
    if (!query.empty()) {
      query += '&';
    }
    query += FormEncode(key) + "=" + FormEncode(value);
  }
  url.set_encoded_query(query);
  url.remove_fragment();
  return std::string(url.buffer());
}

SimResponse Redirect(std::string location) {
  SimResponse response;
  response.status = 302;
  response.headers.emplace_back("Location", location);
  response.headers.emplace_back("Cache-Control", "no-store");
  response.headers.emplace_back("Content-Type", "text/html; charset=utf-8");
  response.body = "<!DOCTYPE html>\n<html><body><a href=\"" + HtmlEscape(location) +
                  "\">Continue</a></body></html>\n";
  return response;
}

// Form body, or JSON object body when the Content-Type says JSON. Scalars become strings and
// null counts as absent. nullopt when the body cannot be parsed.
std::optional<FormFields> ParseBody(const SimRequest& request) {
  std::string media = request.content_type.substr(0, request.content_type.find(';'));
  std::erase_if(media, [](char c) { return std::isspace(static_cast<unsigned char>(c)); });
  std::transform(media.begin(), media.end(), media.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (media != "application/json") {
    return ParseForm(request.body);
  }
  boost::system::error_code ec;
  json::value body = json::parse(request.body, ec);
  if (ec || !body.is_object()) {
    return std::nullopt;
  }
  FormFields fields;
  for (const auto& [key, value] : body.as_object()) {
    const std::string name(key);
    if (value.is_string()) {
      fields[name] = std::string(value.as_string());
    } else if (value.is_int64() || value.is_uint64()) {
      fields[name] = json::serialize(value);
    } else if (value.is_bool()) {
      fields[name] = value.as_bool() ? "true" : "false";
    } else if (!value.is_null()) {
      return std::nullopt;
    }
  }
  return fields;
}

SimResponse MissingField(std::string_view name) {
  return OAuthError(400, "invalid_request",
                    "You need to provide the '" + std::string(name) + "' field");
}

}  // namespace

SimResponse Simulator::Authorize(std::string_view query) {
  const auto params = ParseForm(query);
  if (!params) {
    return HtmlError("The request could not be read.");
  }
  const auto client_id = Get(*params, "client_id");
  if (!client_id || *client_id != options_.client_id) {
    return HtmlError("The app (client_id) is unknown.");
  }
  const std::string given_redirect = Get(*params, "redirect_uri").value_or("");
  if (!given_redirect.empty() && !options_.redirect_uri.empty() &&
      given_redirect != options_.redirect_uri) {
    return HtmlError("The redirect_uri does not match the redirect URL registered for the app.");
  }
  const std::string redirect =
      options_.redirect_uri.empty() ? given_redirect : options_.redirect_uri;
  if (redirect.empty() || !boost::urls::parse_absolute_uri(redirect)) {
    return HtmlError("The app has no valid redirect URL.");
  }

  const auto state = Get(*params, "state");
  auto fail = [&](std::string_view error, std::string_view description) {
    std::vector<std::pair<std::string, std::string>> out = {
        {"error", std::string(error)}, {"error_description", std::string(description)}};
    if (state) {
      out.emplace_back("state", *state);
    }
    return Redirect(RedirectUrl(redirect, out));
  };
  const auto response_type = Get(*params, "response_type");
  if (!response_type || response_type->empty()) {
    return fail("invalid_request", "The 'response_type' parameter is missing");
  }
  if (*response_type != "code") {
    return fail("unsupported_response_type", "Only response_type=code is supported");
  }
  if (!state || state->empty()) {
    return fail("invalid_request", "The 'state' parameter is missing");
  }
  std::string unknown_scope;
  const auto parsed_scopes = ParseScopes(Get(*params, "scope").value_or(""), &unknown_scope);
  if (!parsed_scopes) {
    return fail("invalid_scope", "The scope '" + unknown_scope + "' is unknown");
  }
  const std::vector<std::string>& scopes = *parsed_scopes;
  if (scopes.empty()) {
    return fail("invalid_request", "The 'scope' parameter is missing");
  }
  const std::string prompt = Get(*params, "approval_prompt").value_or("auto");
  if (prompt != "auto" && prompt != "force") {
    return fail("invalid_request", "approval_prompt must be 'auto' or 'force'");
  }

  // Simulation-only parameters: who logs in and what they decide.
  const std::string decision = Get(*params, "sim_decision").value_or("approve");
  if (decision != "approve" && decision != "deny") {
    return HtmlError("sim_decision must be 'approve' or 'deny'.");
  }
  const auto sim_org = Get(*params, "sim_org");
  if (sim_org && (!sim_org->starts_with("org_") || sim_org->size() == 4)) {
    return HtmlError("sim_org must look like org_...");
  }
  if (decision == "deny") {
    return fail("access_denied", "The user denied access to your application");
  }
  Organization& org = sim_org ? OrganizationFor(*sim_org) : NewOrganization();
  if (const auto name = Get(*params, "sim_name"); name && !name->empty()) {
    org.name = *name;
  }

  std::string scope_text;
  for (const std::string& scope : scopes) {
    scope_text += (scope_text.empty() ? "" : " ") + scope;
  }
  const std::string code = NewToken("auth_");
  codes_[code] = AuthCode{org.id,
                          scope_text,
                          given_redirect,
                          *client_id,
                          NowMs() + options_.code_ttl_seconds * 1000,
                          prompt == "force",
                          false};
  return Redirect(RedirectUrl(redirect, {{"code", code}, {"state", *state}}));
}

std::optional<SimResponse> Simulator::AuthenticateClient(const SimRequest& request,
                                                         const FormFields& fields) {
  std::string id;
  std::string secret;
  const bool basic = StartsWithIgnoreCase(request.authorization, "Basic ");
  if (basic) {
    std::string_view encoded = request.authorization;
    encoded.remove_prefix(6);
    while (!encoded.empty() && encoded.front() == ' ') {
      encoded.remove_prefix(1);
    }
    const auto decoded = Base64Decode(encoded);
    const size_t colon = decoded ? decoded->find(':') : std::string::npos;
    if (colon != std::string::npos) {
      id = decoded->substr(0, colon);
      secret = decoded->substr(colon + 1);
      // RFC 6749 2.3.1 form-encodes both before base64; accept either spelling.
      if (id != options_.client_id) {
        id = PercentDecode(id, true).value_or(id);
      }
      if (secret != options_.client_secret) {
        secret = PercentDecode(secret, true).value_or(secret);
      }
    }
  } else {
    id = Get(fields, "client_id").value_or("");
    secret = Get(fields, "client_secret").value_or("");
  }
  if (!id.empty() && id == options_.client_id && secret == options_.client_secret) {
    return std::nullopt;
  }
  SimResponse response =
      OAuthError(401, "invalid_client",
                 id.empty() ? "No client authentication included" : "Client authentication failed");
  if (basic) {
    response.headers.emplace_back("WWW-Authenticate", "Basic realm=\"Mollie\"");
  }
  return response;
}

SimResponse Simulator::PostTokens(const SimRequest& request) {
  const auto fields = ParseBody(request);
  if (!fields) {
    return OAuthError(400, "invalid_request", "The request body could not be parsed");
  }
  if (auto failure = AuthenticateClient(request, *fields)) {
    return *failure;
  }
  const auto grant_type = Get(*fields, "grant_type");
  if (!grant_type || grant_type->empty()) {
    return MissingField("grant_type");
  }
  if (*grant_type == "authorization_code") {
    return CodeGrant(*fields);
  }
  if (*grant_type == "refresh_token") {
    return RefreshGrant(*fields);
  }
  return OAuthError(400, "unsupported_grant_type",
                    "The authorization grant type is not supported by the authorization server");
}

SimResponse Simulator::CodeGrant(const FormFields& fields) {
  const auto code = Get(fields, "code");
  if (!code || code->empty()) {
    return MissingField("code");
  }
  auto it = codes_.find(*code);
  if (it == codes_.end() || it->second.used || it->second.client_id != options_.client_id ||
      NowMs() >= it->second.expires_at_ms) {
    return OAuthError(400, "invalid_grant", kBadCode);
  }
  AuthCode& auth = it->second;
  const auto redirect = Get(fields, "redirect_uri");
  if (!auth.redirect_uri.empty() && !redirect) {
    return MissingField("redirect_uri");
  }
  const std::string& expected =
      auth.redirect_uri.empty() ? options_.redirect_uri : auth.redirect_uri;
  if (redirect && *redirect != expected) {
    return OAuthError(400, "invalid_grant",
                      "The redirect_uri doesn't match the one of the authorization request");
  }
  auth.used = true;
  if (auth.force) {
    // approval_prompt=force: the new authorization replaces the organization's earlier ones.
    RevokeGrantsOf(auth.organization_id);
  }
  const size_t grant = grants_.size();
  grants_.push_back(Grant{auth.organization_id, auth.scope, redirect.value_or(""), false});
  const size_t refresh = AddRefreshToken(grant, kNone);
  ++stats_.code_exchanges;
  return IssueTokens(grant, refresh_tokens_[refresh].token);
}

SimResponse Simulator::RefreshGrant(const FormFields& fields) {
  const auto token = Get(fields, "refresh_token");
  if (!token || token->empty()) {
    return MissingField("refresh_token");
  }
  auto it = refresh_index_.find(*token);
  if (it == refresh_index_.end()) {
    return OAuthError(400, "invalid_grant", kBadRefreshToken);
  }
  const size_t presented = it->second;
  const bool replay = RefreshTokenReplayable(refresh_tokens_[presented]);
  if (!replay && !RefreshTokenValid(refresh_tokens_[presented])) {
    return OAuthError(400, "invalid_grant", kBadRefreshToken);
  }
  const size_t grant = refresh_tokens_[presented].grant;
  const auto redirect = Get(fields, "redirect_uri");
  const std::string exchange_redirect = grants_[grant].exchange_redirect_uri;
  if (!exchange_redirect.empty() && !redirect) {
    return MissingField("redirect_uri");
  }
  const std::string& expected =
      exchange_redirect.empty() ? options_.redirect_uri : exchange_redirect;
  if (redirect && !expected.empty() && *redirect != expected) {
    return OAuthError(400, "invalid_grant",
                      "The redirect_uri doesn't match the one of the original token request");
  }
  size_t answer = presented;
  if (replay) {
    // The predecessor of the current token, presented again before the current one was used
    // (e.g. the client lost our reply): answer the current token again, revoke nothing.
    answer = refresh_tokens_[presented].successor;
    ++stats_.refresh_replays;
  } else {
    // The current token was used: its predecessor can no longer be replayed.
    if (const size_t before = refresh_tokens_[presented].predecessor; before != kNone) {
      refresh_tokens_[before].dead = true;
    }
    if (options_.rotate_refresh_tokens) {
      answer = AddRefreshToken(grant, presented);
      if (!options_.rotation_replay) {
        refresh_tokens_[presented].dead = true;
      }
    }
  }
  ++stats_.refreshes;
  ++stats_.refreshes_by_organization[grants_[grant].organization_id];
  return IssueTokens(grant, refresh_tokens_[answer].token);
}

Simulator::TokenRequestInfo Simulator::InspectTokenRequest(const SimRequest& request) const {
  TokenRequestInfo info;
  const auto fields = ParseBody(request);
  if (!fields) {
    return info;
  }
  info.grant_type = Get(*fields, "grant_type").value_or("");
  if (info.grant_type == "authorization_code") {
    if (auto it = codes_.find(Get(*fields, "code").value_or("")); it != codes_.end()) {
      info.organization_id = it->second.organization_id;
    }
  } else if (info.grant_type == "refresh_token") {
    auto it = refresh_index_.find(Get(*fields, "refresh_token").value_or(""));
    if (it != refresh_index_.end()) {
      info.organization_id = grants_[refresh_tokens_[it->second].grant].organization_id;
    }
  }
  return info;
}

SimResponse Simulator::DeleteTokens(const SimRequest& request) {
  const auto fields = ParseBody(request);
  if (!fields) {
    return OAuthError(400, "invalid_request", "The request body could not be parsed");
  }
  if (auto failure = AuthenticateClient(request, *fields)) {
    return *failure;
  }
  const auto token = Get(*fields, "token");
  if (!token || token->empty()) {
    return MissingField("token");
  }
  const auto hint = Get(*fields, "token_type_hint");
  if (!hint || hint->empty()) {
    return MissingField("token_type_hint");
  }
  if (*hint != "access_token" && *hint != "refresh_token") {
    return OAuthError(400, "invalid_request",
                      "The 'token_type_hint' field must be 'access_token' or 'refresh_token'");
  }
  // Revoke by what the token is; unknown tokens are accepted silently (RFC 7009 2.2).
  if (auto refresh = refresh_index_.find(*token); refresh != refresh_index_.end()) {
    grants_[refresh_tokens_[refresh->second].grant].revoked = true;
  } else if (auto access = access_index_.find(*token); access != access_index_.end()) {
    access_tokens_[access->second].revoked = true;
  }
  ++stats_.revocations;
  SimResponse response;
  response.status = 204;
  return response;
}

}  // namespace connectbroker::mollie_sim
