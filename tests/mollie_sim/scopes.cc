// Mollie's OAuth scopes: the published list and the parser of space-separated scope strings.
#include <algorithm>
#include <array>

#include "tests/mollie_sim/simulator.h"

namespace connectbroker::mollie_sim {
namespace {

// Mollie's published scopes (API-FACTS section 4).
constexpr std::array<std::string_view, 61> kScopes = {
    "balance-reports.read",
    "balance-transfers.read",
    "balance-transfers.write",
    "balances.read",
    "business-account-draft-transfers.read",
    "business-account-draft-transfers.write",
    "business-account-payee-verifications.write",
    "business-account-transfers.read",
    "business-account-transfers.write",
    "business-accounts.read",
    "clients.read",
    "clients.write",
    "customers.read",
    "customers.write",
    "disputes.read",
    "disputes.write",
    "events.read",
    "external-accounts.read",
    "external-accounts.write",
    "files.read",
    "files.write",
    "invoices.read",
    "mandates.read",
    "mandates.write",
    "onboarding.read",
    "onboarding.write",
    "orders.read",
    "orders.write",
    "organizations.read",
    "organizations.write",
    "payment-links.read",
    "payment-links.write",
    "payments.read",
    "payments.write",
    "payouts.read",
    "payouts.write",
    "persons.read",
    "persons.write",
    "pricing-rates.read",
    "pricing-rates.write",
    "pricing-segments.read",
    "pricing-segments.write",
    "profiles.read",
    "profiles.write",
    "refunds.read",
    "refunds.write",
    "sales-invoices.read",
    "sales-invoices.write",
    "sessions.read",
    "sessions.write",
    "settlements.read",
    "shipments.read",
    "shipments.write",
    "subscriptions.read",
    "subscriptions.write",
    "terminals.read",
    "terminals.write",
    "unmatched-credit-transfers.read",
    "unmatched-credit-transfers.write",
    "webhooks.read",
    "webhooks.write",
};

}  // namespace

std::span<const std::string_view> KnownScopes() { return kScopes; }

std::optional<std::vector<std::string>> ParseScopes(std::string_view text, std::string* unknown) {
  std::vector<std::string> scopes;
  for (std::string_view rest = text; !rest.empty();) {
    const size_t space = rest.find(' ');
    const std::string_view scope = rest.substr(0, space);
    rest = space == std::string_view::npos ? std::string_view() : rest.substr(space + 1);
    if (scope.empty()) {
      continue;
    }
    if (std::find(kScopes.begin(), kScopes.end(), scope) == kScopes.end()) {
      if (unknown != nullptr) {
        *unknown = std::string(scope);
      }
      return std::nullopt;
    }
    if (std::find(scopes.begin(), scopes.end(), scope) == scopes.end()) {
      scopes.emplace_back(scope);
    }
  }
  return scopes;
}

}  // namespace connectbroker::mollie_sim
