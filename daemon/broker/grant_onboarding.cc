// Onboarding: the authorization-code flow (BeginAuthorization, the callback's
// CompleteAuthorization) and the import of existing refresh tokens.
#include <algorithm>
#include <set>

#include "daemon/broker/grant_manager.h"
#include "daemon/broker/grant_manager_internal.h"
#include "daemon/common/status_macros.h"
#include "daemon/mollie/authorize_url.h"

namespace connectbroker::broker {

namespace asio = boost::asio;
using storage::GrantRecord;
using storage::GrantSecretsPlain;
using storage::StoredGrant;

namespace {

constexpr const char* kOrganizationsRead = "organizations.read";
constexpr size_t kMaxScopes = 100;

bool IsAllowedRefChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '_' || c == ':' || c == '@' || c == '-';
}

}  // namespace

absl::Status ValidateOrganizationId(std::string_view id) {
  if (id.empty()) {
    return absl::InvalidArgumentError("organization id is empty");
  }
  bool ok = id.size() > 4 && id.size() <= 68 && id.substr(0, 4) == "org_" &&
            std::all_of(id.begin() + 4, id.end(), [](char c) {
              return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
            });
  if (!ok) {
    return absl::InvalidArgumentError(
        "malformed organization id: expected \"org_\" followed by 1-64 letters or digits");
  }
  return absl::OkStatus();
}

absl::Status ValidateAccountRef(std::string_view ref) {
  if (ref.empty() || ref.size() > 128 || !std::all_of(ref.begin(), ref.end(), IsAllowedRefChar)) {
    return absl::InvalidArgumentError(
        "malformed account_ref: expected 1-128 characters of A-Z a-z 0-9 . _ : @ -");
  }
  return absl::OkStatus();
}

absl::StatusOr<BeginAuthorizationResult> GrantManager::BeginAuthorization(
    const BeginAuthorizationParams& p) {
  if (!p.account_ref.empty()) {
    RETURN_IF_ERROR(ValidateAccountRef(p.account_ref));
  }
  if (p.scopes.size() > kMaxScopes) {
    return absl::InvalidArgumentError(StrCat("at most ", kMaxScopes, " scopes"));
  }
  mollie::AuthorizeParams a;
  a.base_url = options_.authorize_base_url;
  a.client_id = options_.client_id;
  a.redirect_uri = options_.redirect_uri;
  // Validated, de-duplicated, in the caller's order.
  std::set<std::string> seen;
  for (const auto& s : p.scopes.empty() ? options_.default_scopes : p.scopes) {
    RETURN_IF_ERROR(mollie::ValidateScope(s));
    if (seen.insert(s).second) {
      a.scopes.push_back(s);
    }
  }
  // The broker learns who connected from GET /v2/organizations/me, which needs this scope.
  if (!seen.count(kOrganizationsRead)) {
    a.scopes.push_back(kOrganizationsRead);
  }
  if (p.approval_prompt == "force") {
    a.approval_prompt = mollie::ApprovalPrompt::kForce;
  } else if (p.approval_prompt == "auto") {
    a.approval_prompt = mollie::ApprovalPrompt::kAuto;
  } else if (!p.approval_prompt.empty()) {
    return absl::InvalidArgumentError("approval_prompt must be auto or force");
  }
  if (!p.locale.empty()) {
    RETURN_IF_ERROR(mollie::ValidateLocale(p.locale));
    a.locale = p.locale;
  }
  if (p.landing_page == "login") {
    a.landing_page = mollie::LandingPage::kLogin;
  } else if (p.landing_page == "signup") {
    a.landing_page = mollie::LandingPage::kSignup;
  } else if (!p.landing_page.empty()) {
    return absl::InvalidArgumentError("landing_page must be login or signup");
  }
  // 256 random bits: unguessable, single use, short-lived (the CSRF defence of the callback).
  a.state = random_.Base64Url(32);
  RETURN_IF_ERROR(mollie::ValidateAuthorizeParams(a));

  WallTime now = clock_.Now();
  storage::PendingAuthorization pending;
  pending.set_schema_version(1);
  pending.set_account_ref(p.account_ref);
  for (const auto& s : a.scopes) {
    pending.add_scopes(s);
  }
  pending.set_redirect_uri(options_.redirect_uri);
  pending.set_created_at_ms(ToUnixMillis(now));
  pending.set_expires_at_ms(ToUnixMillis(now + options_.state_ttl));
  RETURN_IF_ERROR(store_.PutPending(a.state, pending));

  BeginAuthorizationResult result;
  result.authorize_url = mollie::BuildAuthorizeUrl(a);
  result.state = a.state;
  result.expires_at = now + options_.state_ttl;
  return result;
}

absl::Status GrantManager::AbandonAuthorization(const std::string& state) {
  if (state.empty() || state.size() > 512) {
    return absl::InvalidArgumentError("missing or oversized state");
  }
  auto taken = store_.TakePending(state, clock_.Now());
  if (taken.ok()) {
    return absl::OkStatus();
  }
  if (taken.status().code() == absl::StatusCode::kDeadlineExceeded) {
    return absl::NotFoundError("the authorization request expired");
  }
  return taken.status();
}

void GrantManager::CompleteAuthorization(std::string code, std::string state,
                                         RecordCallback done) {
  asio::co_spawn(loop_, Complete(std::move(code), std::move(state)),
                 [done = std::move(done)](std::exception_ptr e,
                                          absl::StatusOr<GrantRecord> result) {
                   if (e) {
                     internal::LogEscaped(e, "complete authorization");
                     result = absl::InternalError("onboarding failed unexpectedly");
                   }
                   done(std::move(result));
                 });
}

asio::awaitable<absl::StatusOr<GrantRecord>> GrantManager::Complete(std::string code,
                                                                    std::string state) {
  if (state.empty()) {
    co_return absl::InvalidArgumentError("missing state");
  }
  if (code.empty()) {
    co_return absl::InvalidArgumentError("missing code");
  }
  if (state.size() > 512 || code.size() > 512) {
    co_return absl::InvalidArgumentError("oversized code or state");
  }
  // Single use: the state is consumed whatever happens next.
  auto take = [this, state] { return store_.TakePending(state, clock_.Now()); };
  auto pending = co_await Blocking(std::move(take));
  if (!pending.ok()) {
    if (pending.status().code() == absl::StatusCode::kDeadlineExceeded) {
      co_return absl::NotFoundError(
          "the authorization request expired; start the onboarding again");
    }
    if (pending.status().code() == absl::StatusCode::kNotFound) {
      co_return absl::NotFoundError(
          "unknown or already used authorization state; start the onboarding again");
    }
    co_return pending.status();
  }

  const WallTime sent_at = clock_.Now();
  SecretString secret_code(std::move(code));
  auto tokens = co_await mollie_.ExchangeCode(secret_code, pending->redirect_uri());
  if (!tokens.ok()) {
    CB_LOG(WARNING) << "code exchange failed: " << tokens.status();
    if (tokens.status().code() == absl::StatusCode::kFailedPrecondition) {
      co_return absl::FailedPreconditionError(
          StrCat("Mollie rejected the authorization code: ", tokens.status().message()));
    }
    if (tokens.status().code() == absl::StatusCode::kUnauthenticated) {
      co_return absl::UnavailableError(
          "Mollie rejected the app's client credentials (invalid_client)");
    }
    co_return absl::UnavailableError(
        StrCat("code exchange with Mollie failed: ", tokens.status().message()));
  }
  if (tokens->refresh_token.empty()) {
    co_return absl::UnavailableError("Mollie's token reply carried no refresh token");
  }
  std::vector<std::string> requested(pending->scopes().begin(), pending->scopes().end());
  absl::StatusOr<GrantRecord> stored = co_await StoreNewGrant(
      *std::move(tokens), sent_at, pending->redirect_uri(), pending->account_ref(),
      std::move(requested), /*withdraw_if_unused=*/true);
  co_return stored;
}

asio::awaitable<absl::StatusOr<GrantRecord>> GrantManager::StoreNewGrant(
    mollie::TokenResponse tokens, WallTime sent_at, std::string redirect_uri,
    std::string account_ref, std::vector<std::string> requested_scopes, bool withdraw_if_unused) {
  auto org = co_await mollie_.GetCurrentOrganization(tokens.access_token);
  if (!org.ok()) {
    CB_LOG(WARNING) << "GET /v2/organizations/me failed: " << org.status();
    if (org.status().code() == absl::StatusCode::kPermissionDenied) {
      // Retrying cannot help: the grant itself lacks the scope.
      co_return absl::FailedPreconditionError(
          StrCat("the grant does not allow GET /v2/organizations/me (it needs the "
                 "organizations.read scope): ",
                 org.status().message()));
    }
    co_return absl::UnavailableError(
        StrCat("could not learn the organization: ", org.status().message()));
  }
  if (absl::Status v = ValidateOrganizationId(org->id); !v.ok()) {
    co_return absl::UnavailableError("Mollie returned a malformed organization id");
  }

  const WallTime now = clock_.Now();
  const WallTime expires = sent_at + tokens.expires_in;
  GrantRecord r;
  r.set_schema_version(1);
  r.set_organization_id(org->id);
  r.set_organization_name(org->name);
  r.set_account_ref(account_ref);
  if (tokens.scopes.empty()) {
    for (const auto& s : requested_scopes) {
      r.add_scopes(s);
    }
  } else {
    for (const auto& s : tokens.scopes) {
      r.add_scopes(s);
    }
  }
  r.set_redirect_uri(redirect_uri);
  r.set_status(storage::GRANT_STATUS_ACTIVE);
  r.set_access_token_issued_at_ms(ToUnixMillis(sent_at));
  r.set_access_token_expires_at_ms(ToUnixMillis(expires));
  r.set_last_refresh_at_ms(ToUnixMillis(now));
  r.set_last_refresh_outcome("ok");
  r.set_next_refresh_at_ms(
      ToUnixMillis(ComputeRefreshAt(sent_at, expires, options_.policy, Jitter())));
  r.set_created_at_ms(ToUnixMillis(now));
  GrantSecretsPlain secrets{tokens.access_token, tokens.refresh_token};

  auto it = grants_.find(org->id);
  absl::Status st;
  GrantPtr g;
  const bool existing = it != grants_.end() && !it->second->deleted;
  if (existing) {
    // Re-onboarding: the new authorization replaces the old grant atomically (CAS). A refresh
    // in flight with the old token loses its CAS and adopts this grant.
    g = it->second;
    r.set_created_at_ms(g->stored.record.created_at_ms());
    r.set_refresh_count(g->stored.record.refresh_count());
    if (r.account_ref().empty()) {
      r.set_account_ref(g->stored.record.account_ref());
    }
    g->unpersisted.reset();
    st = co_await Persist(g, r, secrets, storage::EVENT_TYPE_ONBOARDED, "re-onboarded");
  } else {
    g = std::make_shared<Grant>();
    r.set_generation(1);
    r.set_updated_at_ms(ToUnixMillis(now));
    storage::EventRecord event;
    event.set_time_ms(ToUnixMillis(now));
    event.set_type(storage::EVENT_TYPE_ONBOARDED);
    event.set_organization_id(r.organization_id());
    event.set_status(r.status());
    event.set_generation(1);
    event.set_detail("onboarded");
    auto insert = [this, r, secrets, event]() mutable {
      absl::Status s = store_.Put(r, secrets, std::nullopt, &event);
      return std::make_pair(s, event);
    };
    auto [s, written] = co_await Blocking(std::move(insert));
    st = s;
    if (st.ok()) {
      g->stored = StoredGrant{r, secrets};
      events_.Publish(written);
    }
  }
  if (!st.ok()) {
    CB_LOG(ERROR) << "storing the grant of " << org->id << " failed: " << st;
    if (!existing && withdraw_if_unused) {
      // Nobody will ever use this new authorization: withdraw it at Mollie (best effort) rather
      // than leave a live grant behind. Never for an import: that refresh token is still the
      // one the system it comes from uses (Mollie does not rotate), and a retry must work.
      absl::Status revoked = co_await mollie_.RevokeRefreshToken(secrets.refresh_token);
      if (!revoked.ok()) {
        CB_LOG(WARNING) << "could not withdraw the unused authorization of " << org->id << ": "
                        << revoked;
      }
    }
    if (st.code() == absl::StatusCode::kAlreadyExists) {
      co_return absl::AlreadyExistsError(StrCat("account_ref ", r.account_ref(),
                                                " is already connected to another organization"));
    }
    co_return absl::UnavailableError(StrCat("could not store the grant: ", st.message()));
  }
  grants_[org->id] = g;
  stat_grants_ = grants_.size();
  Publish(*g);
  ScheduleAt(org->id, FromUnixMillis(g->stored.record.next_refresh_at_ms()));
  CB_LOG(NOTICE) << "onboarded " << org->id << " (" << org->name << ")"
                 << (r.account_ref().empty() ? "" : " as account_ref " + r.account_ref());
  co_return g->stored.record;
}

void GrantManager::ImportGrant(SecretString refresh_token, std::string redirect_uri,
                               std::string account_ref, RecordCallback done) {
  asio::co_spawn(loop_, Import(std::move(refresh_token), std::move(redirect_uri),
                               std::move(account_ref)),
                 [done = std::move(done)](std::exception_ptr e,
                                          absl::StatusOr<GrantRecord> result) {
                   if (e) {
                     internal::LogEscaped(e, "import");
                     result = absl::InternalError("import failed unexpectedly");
                   }
                   done(std::move(result));
                 });
}

asio::awaitable<absl::StatusOr<GrantRecord>> GrantManager::Import(SecretString refresh_token,
                                                                  std::string redirect_uri,
                                                                  std::string account_ref) {
  if (refresh_token.empty() || refresh_token.Reveal().size() > 512) {
    co_return absl::InvalidArgumentError("missing or oversized refresh_token");
  }
  if (!account_ref.empty()) {
    CO_RETURN_IF_ERROR(ValidateAccountRef(account_ref));
  }
  if (redirect_uri.empty()) {
    redirect_uri = options_.redirect_uri;
  }
  if (redirect_uri.size() > 2048) {
    co_return absl::InvalidArgumentError("oversized redirect_uri");
  }
  // Validated against Mollie: a refresh proves the token and gives us a current access token.
  const WallTime sent_at = clock_.Now();
  auto tokens = co_await mollie_.Refresh(refresh_token, redirect_uri);
  if (!tokens.ok()) {
    if (tokens.status().code() == absl::StatusCode::kFailedPrecondition) {
      co_return absl::FailedPreconditionError(
          StrCat("Mollie rejected the refresh token: ", tokens.status().message()));
    }
    co_return absl::UnavailableError(
        StrCat("could not validate the refresh token with Mollie: ", tokens.status().message()));
  }
  if (tokens->refresh_token.empty()) {
    tokens->refresh_token = refresh_token;
  }
  std::vector<std::string> no_requested_scopes;  // named: see Revoke on GCC 12's temporaries
  absl::StatusOr<GrantRecord> stored = co_await StoreNewGrant(
      *std::move(tokens), sent_at, std::move(redirect_uri), std::move(account_ref),
      std::move(no_requested_scopes), /*withdraw_if_unused=*/false);
  co_return stored;
}

}  // namespace connectbroker::broker
