// connect-broker: the admin CLI of the connect-broker daemon. Blocking gRPC calls through
// BrokerClient; prints tables, key/value lines or JSON. Only `token` prints a token (on stdout).
// Exit status: 0 ok, 1 error from the daemon, 2 usage error, 3 daemon unreachable, 4 (`call`)
// Mollie answered with a non-2xx HTTP status.
#include <cmath>
#include <cstdlib>
#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "cli.h"
#include "connectbroker/client.h"

namespace {

namespace cb = ::connectbroker::client;
namespace v1 = ::connectbroker::v1;

using ::connectbroker::cli::Fail;
using ::connectbroker::cli::Flags;
using ::connectbroker::cli::kExitUsage;

void AddJsonFlag(CLI::App* sub, Flags& f, const std::string& what) {
  sub->add_flag("--json", f.json, "Print " + what + " as JSON");
}

int Run(const std::string& command, const Flags& f) {
  if (connectbroker::cli::IsAdminCommand(command)) {
    return connectbroker::cli::RunAdminCommand(command, f);
  }
  if (command == "call") {
    return connectbroker::cli::RunCallCommand(f);
  }
  cb::BrokerClient client(
      cb::CreateChannel(f.address), f.address,
      std::chrono::milliseconds(static_cast<long long>(f.timeout_seconds * 1000)));
  const auto now = std::chrono::system_clock::now();
  if (command == "merchants") {
    v1::GrantStatus status = v1::GRANT_STATUS_UNSPECIFIED;
    if (!f.status_filter.empty()) {
      status = *cb::ParseGrantStatus(f.status_filter);  // validated by CLI11
    }
    auto merchants = client.ListMerchants(status, f.limit);
    if (!merchants.ok()) {
      return Fail(command, merchants.status());
    }
    std::cout << (f.json ? cb::MerchantsToJson(*merchants) + "\n"
                         : cb::FormatMerchantTable(*merchants, now));
    return 0;
  }
  if (command == "merchant" || command == "refresh" || command == "complete-authorization") {
    auto merchant = command == "merchant"  ? client.GetMerchant(f.org)
                    : command == "refresh" ? client.RefreshMerchant(f.org)
                                           : client.CompleteAuthorization(f.code, f.state);
    if (!merchant.ok()) {
      return Fail(command, merchant.status());
    }
    if (f.json) {
      std::cout << cb::MerchantToJson(*merchant) << "\n";
    } else if (command == "refresh") {
      std::cout << cb::FormatMerchantLine(*merchant, now) << "\n";
    } else {
      std::cout << cb::FormatMerchantDetails(*merchant, now);
    }
    return 0;
  }
  if (command == "token") {
    v1::GetAccessTokenRequest request;
    if (f.by_account_ref) {
      request.set_account_ref(f.org);
    } else {
      request.set_organization_id(f.org);
    }
    request.mutable_min_ttl()->set_seconds(f.min_ttl_seconds);
    auto token = client.GetAccessToken(request);
    if (!token.ok()) {
      return Fail(command, token.status());
    }
    std::cout << (f.json ? cb::AccessTokenToJson(*token) : token->access_token()) << "\n";
    return 0;
  }
  if (command == "authorize-url") {
    v1::BeginAuthorizationRequest request;
    request.set_account_ref(f.account_ref);
    for (const std::string& s : f.scopes) {
      request.add_scopes(s);
    }
    request.set_approval_prompt(f.force ? v1::APPROVAL_PROMPT_FORCE
                                        : v1::APPROVAL_PROMPT_UNSPECIFIED);
    request.set_locale(f.locale);
    request.set_landing_page(f.landing_page == "signup"  ? v1::LANDING_PAGE_SIGNUP
                             : f.landing_page == "login" ? v1::LANDING_PAGE_LOGIN
                                                         : v1::LANDING_PAGE_UNSPECIFIED);
    auto begun = client.BeginAuthorization(request);
    if (!begun.ok()) {
      return Fail(command, begun.status());
    }
    std::cout << (f.json ? cb::AuthorizationToJson(*begun) : begun->authorize_url()) << "\n";
    return 0;
  }
  std::cerr << "connect-broker: unknown command " << command << "\n";
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  f.address = cb::kDefaultAddress;
  CLI::App app{"Administer the connect-broker daemon (Mollie Connect OAuth grants) over gRPC.",
               "connect-broker"};
  app.footer(
      "Exit status: 0 success, 1 error reported by the daemon, 2 usage error, 3 daemon "
      "unreachable, 4 (call only) Mollie answered with an HTTP status other than 2xx.\n"
      "Errors go to stderr as 'connect-broker: COMMAND: GRPC_CODE: message'.\n"
      "Global options (--address, --timeout) may come before or after the subcommand.\n"
      "Only `token` ever prints a token; `import` reads one from a file or stdin, never argv.\n");
  app.require_subcommand(1);
  app.fallthrough();  // global options may also follow the subcommand
  app.add_option("--address", f.address,
                 "Daemon gRPC address: host:port, [ipv6]:port or unix:/path")
      ->envname(cb::kAddressEnvVar)
      ->capture_default_str();
  // A finite number of seconds in (0, 86400]: CLI11's PositiveNumber lets NaN and 1e308 through,
  // and then every call fails at once as if the daemon were unreachable.
  const CLI::Validator seconds(
      [](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (end == text.c_str() || *end != '\0' || !std::isfinite(v) || v <= 0 || v > 86400) {
          return "--timeout must be a number of seconds greater than 0 and at most 86400";
        }
        return "";
      },
      "SECONDS");
  app.add_option("--timeout", f.timeout_seconds, "Deadline for the whole command, in seconds")
      ->check(seconds)
      ->capture_default_str();

  const std::vector<std::string> statuses = {"active", "refresh-failing", "needs-reauthorization",
                                             "revoked"};
  CLI::App* merchants = app.add_subcommand(
      "merchants", "List connected merchants (following all pages); never shows tokens");
  merchants->add_option("--status", f.status_filter, "Only merchants in this grant status")
      ->check(CLI::IsMember(statuses));
  merchants->add_option("--limit", f.limit, "Show at most N merchants (default: all)")
      ->check(CLI::PositiveNumber);
  AddJsonFlag(merchants, f, "an array of merchant objects (snake_case keys)");

  CLI::App* merchant = app.add_subcommand("merchant", "Show one merchant as key: value lines");
  merchant->add_option("ORG", f.org, "Mollie organization id (org_...)")->required();
  AddJsonFlag(merchant, f, "the merchant");

  CLI::App* token = app.add_subcommand(
      "token", "Print a valid access token for a merchant on stdout (and nothing else)");
  token
      ->add_option("ORG", f.org,
                   "Mollie organization id (org_...), or with --account-ref the "
                   "platform's account reference")
      ->required();
  token
      ->add_option("--min-ttl", f.min_ttl_seconds,
                   "The token must stay valid at least this many seconds; the daemon refreshes "
                   "first if needed (default 0: any valid token)")
      ->check(CLI::NonNegativeNumber);
  token->add_flag("--account-ref", f.by_account_ref, "ORG is an account reference");
  AddJsonFlag(token, f, "token, expires_at, scopes and organization_id");

  CLI::App* authorize = app.add_subcommand(
      "authorize-url", "Start onboarding: print the 'Login with Mollie' consent URL");
  authorize->add_option("ACCOUNT_REF", f.account_ref, "The platform's reference for the merchant")
      ->required();
  authorize
      ->add_option("--scope", f.scopes,
                   "Mollie permission, e.g. payments.read; repeat or comma-separate "
                   "(default: the daemon's configured scopes)")
      ->delimiter(',')
      ->allow_extra_args(false);
  authorize->add_flag("--force", f.force,
                      "Always show the consent screen (revokes the merchant's earlier grants)");
  authorize->add_option("--locale", f.locale, "Consent screen language (default: the browser's)")
      ->check(
          CLI::IsMember({"en_US", "nl_NL", "nl_BE", "fr_FR", "fr_BE", "de_DE", "es_ES", "it_IT"}));
  authorize
      ->add_option("--landing-page", f.landing_page, "Mollie page to show first (default login)")
      ->check(CLI::IsMember({"login", "signup"}));
  AddJsonFlag(authorize, f, "authorize_url, state and expires_at");

  CLI::App* complete = app.add_subcommand(
      "complete-authorization",
      "Finish onboarding with the code and state from Mollie's redirect; print the merchant");
  complete->add_option("--code", f.code, "Authorization code from the redirect")->required();
  complete->add_option("--state", f.state, "State from the redirect")->required();
  AddJsonFlag(complete, f, "the merchant");

  CLI::App* refresh =
      app.add_subcommand("refresh", "Refresh a merchant's token now; print one status line");
  refresh->add_option("ORG", f.org, "Mollie organization id (org_...)")->required();
  AddJsonFlag(refresh, f, "the merchant");

  CLI::App* revoke = app.add_subcommand(
      "revoke",
      "Revoke a merchant's grant at Mollie and forget its tokens (the merchant stays listed as "
      "revoked until deleted); print one status line");
  revoke->add_option("ORG", f.org, "Mollie organization id (org_...)")->required();
  AddJsonFlag(revoke, f, "the merchant");

  CLI::App* del = app.add_subcommand(
      "delete",
      "Remove a merchant's grant from the broker without calling Mollie (revoke first to end it "
      "at Mollie too); requires --yes");
  del->add_option("ORG", f.org, "Mollie organization id (org_...)")->required();
  del->add_flag("--yes", f.yes, "Really delete (without it the command refuses, exit 2)");

  CLI::App* import_cmd = app.add_subcommand(
      "import",
      "Adopt an existing refresh token (e.g. from a system being replaced); the daemon refreshes "
      "it once to prove it and learn the organization; print one status line");
  import_cmd
      ->add_option("--refresh-token-file", f.refresh_token_file,
                   "File holding the refresh token ('-': stdin; on a terminal it is not echoed). "
                   "Never on the command line, where ps and the shell history would show it")
      ->required();
  import_cmd->add_option("--redirect-uri", f.redirect_uri,
                         "redirect_uri of the original code exchange (default: the daemon's)");
  import_cmd->add_option("--account-ref", f.account_ref,
                         "The platform's reference for the merchant");
  AddJsonFlag(import_cmd, f, "the merchant");

  CLI::App* events = app.add_subcommand(
      "events",
      "Print grant events, one per line: SEQ TIME TYPE ORG STATUS DETAIL ('-' when empty); "
      "with --follow keep printing live events until Ctrl-C");
  events
      ->add_option("--after", f.after_sequence,
                   "Only events after this sequence number (default 0: from the oldest kept)")
      ->check(CLI::NonNegativeNumber);
  events->add_option("--org", f.org, "Only events of this organization (org_...)");
  events->add_flag("--follow", f.follow,
                   "After the backlog, wait for live events until Ctrl-C (exit 0); --timeout then "
                   "bounds only connecting");
  events->add_flag("--json", f.json, "Print each event as a JSON object on its own line");

  CLI::App* stats = app.add_subcommand(
      "stats", "Show the refresh engine's counters (grants, scheduled, refreshes, pause)");
  AddJsonFlag(stats, f, "the counters");

  CLI::App* call = app.add_subcommand(
      "call",
      "Call Mollie's API for a merchant through the broker, which adds the merchant's access "
      "token (never shown). Prints Mollie's response body exactly as received on stdout; a "
      "status other than 2xx is also reported on stderr and exits 4");
  call->add_option("ORG", f.call.merchant,
                   "Mollie organization id (org_...), or with --account-ref the platform's "
                   "account reference")
      ->required();
  call->add_option("METHOD", f.call.method, "GET, POST, PATCH or DELETE")->required();
  call->add_option("PATH", f.call.path,
                   "Path under https://api.mollie.com, starting with /v2/ (e.g. /v2/payments); "
                   "no query: use --query")
      ->required();
  call->add_flag("--account-ref", f.call.by_account_ref, "ORG is an account reference");
  call->add_option("--query", f.call.query,
                   "Query parameter NAME=VALUE (repeatable; the broker percent-encodes it)")
      ->allow_extra_args(false);
  std::string data_text;
  CLI::Option* data_opt = call->add_option(
      "--data", data_text, "JSON request body (POST, PATCH, DELETE); must be valid JSON");
  call->add_option("--data-file", f.data_file, "Read the JSON request body from FILE ('-': stdin)")
      ->excludes(data_opt);
  call->add_flag("--testmode", f.call.testmode,
                 "Test mode: the broker adds testmode=true (query for GET/DELETE, body for "
                 "POST/PATCH)");
  call->add_option("--idempotency-key", f.call.idempotency_key,
                   "Idempotency-Key for a POST, PATCH or DELETE: Mollie answers a repeat with the "
                   "first result instead of acting twice");
  call->add_option("--header", f.call.headers,
                   "Request header 'Name: value' (repeatable); the broker allows Accept, "
                   "Accept-Language, Content-Type: application/json and X-Request-Id")
      ->allow_extra_args(false);
  call->add_flag("--paged", f.call.paged,
                 "GET a list and follow _links.next: print every item as one JSON line (NDJSON) "
                 "as the pages arrive; a page that is not 2xx ends it (status on stderr, exit 4)");
  call->add_option("--max-items", f.call.max_items,
                   "With --paged: stop after N items (default: all)")
      ->check(CLI::PositiveNumber);
  call->add_flag("--include", f.call.include,
                 "Print the status line and Mollie's response headers before the body");
  call->add_flag("--pretty", f.call.pretty, "Indent a JSON body (default: exactly as received)");
  call->add_flag("--json", f.call.json,
                 "Print {status, headers, body, attempts, token_refreshed} as one JSON object; "
                 "with --paged one object per page: {page_number, status, embedded_key, "
                 "headers, items, body}");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }
  if (data_opt->count() > 0) {
    f.call.data = data_text;
  }
  if (f.address.empty()) {
    std::cerr << "connect-broker: --address must not be empty\n";
    return kExitUsage;
  }
  return Run(app.get_subcommands().front()->get_name(), f);
}
