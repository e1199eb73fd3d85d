#include "daemon/broker/grant_manager.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <atomic>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "daemon/common/strings.h"
#include "absl/strings/str_join.h"
#include "daemon/common/check.h"
#include "daemon/common/log.h"
#include "daemon/common/status_macros.h"
#include "daemon/mollie/authorize_url.h"

namespace connectbroker::broker {

namespace asio = boost::asio;
using storage::GrantRecord;
using storage::GrantSecretsPlain;
using storage::StoredGrant;

struct GrantManager::Flight {
  bool scheduled = false;
  std::vector<FlightWaiter> waiters;
};

struct GrantManager::Grant {
  StoredGrant stored;
  std::shared_ptr<Flight> flight;
  // New tokens Mollie gave us that the store refused to take (disk full, I/O error). They are
  // the only copy of a possibly rotated refresh token, so they are kept here and written before
  // any further call to Mollie. Never served until written.
  std::optional<StoredGrant> unpersisted;
  bool deleted = false;
};

namespace {

// Logs an exception that escaped a coroutine: a bug, but the daemon keeps serving.
void LogEscaped(std::exception_ptr e, const char* what) {
  if (!e) {
    return;
  }
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    CB_LOG(ERROR) << what << ": unexpected exception: " << ex.what();
  } catch (...) {
    CB_LOG(ERROR) << what << ": unexpected exception";
  }
}

constexpr const char* kOrganizationsRead = "organizations.read";

bool IsAllowedRefChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '_' || c == ':' || c == '@' || c == '-';
}

// The grant cannot be refreshed by the broker any more: someone must act first.
bool IsTerminal(storage::GrantStatus s) {
  return s == storage::GRANT_STATUS_NEEDS_REAUTHORIZATION || s == storage::GRANT_STATUS_REVOKED;
}

absl::Status TerminalError(const GrantRecord& r) {
  if (r.status() == storage::GRANT_STATUS_REVOKED) {
    return absl::FailedPreconditionError(
        StrCat("merchant ", r.organization_id(), " was revoked"));
  }
  return absl::FailedPreconditionError(StrCat(
      "merchant ", r.organization_id(),
      " needs to reauthorize (Mollie rejected the refresh token: ", r.last_refresh_outcome(),
      ")"));
}

// Short, secret-free outcome text for the record.
std::string Outcome(const absl::Status& s) {
  std::string text = StrCat(absl::StatusCodeToString(s.code()), ": ", s.message());
  if (text.size() > 300) {
    text.resize(300);
  }
  return text;
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

GrantManager::GrantManager(asio::io_context& loop, asio::thread_pool& blocking,
                           storage::GrantStore& store, mollie::MollieOAuthApi& mollie,
                           TokenCache& cache, const Clock& clock, Random& random,
                           GrantManagerOptions options)
    : loop_(loop),
      blocking_(blocking),
      store_(store),
      mollie_(mollie),
      cache_(cache),
      clock_(clock),
      random_(random),
      options_(std::move(options)),
      bucket_(options_.rate_per_second, options_.burst, clock.MonotonicNow()),
      timer_(loop) {}

GrantManager::~GrantManager() = default;

template <typename F>
asio::awaitable<std::invoke_result_t<F&>> GrantManager::Blocking(F&& fn) {
  using R = std::invoke_result_t<F&>;
  // Runs fn on the blocking pool; the awaiting coroutine resumes on its own executor (the loop).
  // GCC 12 destroys a lambda temporary that lives across a co_await twice (PR 100611), so call
  // sites name their lambda and pass it by reference; it is moved into co_spawn's frame here.
  return asio::co_spawn(
      blocking_,
      [fn = std::forward<F>(fn)]() mutable -> asio::awaitable<R> { co_return fn(); },
      asio::use_awaitable);
}

double GrantManager::Jitter() { return random_.Uniform01(); }

absl::Status GrantManager::Start() {
  ASSIGN_OR_RETURN(std::vector<StoredGrant> all, store_.LoadAll());
  // Overdue grants (after downtime) are all due "now"; ordering them by their planned refresh
  // time refreshes the most urgent first, under the rate limit.
  WallTime now = clock_.Now();
  size_t overdue = 0;
  for (auto& sg : all) {
    auto g = std::make_shared<Grant>();
    g->stored = std::move(sg);
    const GrantRecord& r = g->stored.record;
    Publish(*g);
    if (!IsTerminal(r.status())) {
      WallTime when = FromUnixMillis(r.next_refresh_at_ms());
      if (when <= now) {
        ++overdue;
      }
      ScheduleAt(r.organization_id(), when);
    }
    grants_[r.organization_id()] = std::move(g);
  }
  stat_grants_ = grants_.size();
  CB_LOG(INFO) << "loaded " << grants_.size() << " grant(s); " << overdue
               << " overdue for refresh";
  asio::co_spawn(loop_, SchedulerLoop(),
                 [](std::exception_ptr e) { LogEscaped(e, "refresh scheduler"); });
  return absl::OkStatus();
}

void GrantManager::Stop(std::function<void()> drained) {
  asio::post(loop_, [this, drained = std::move(drained)]() mutable {
    stopping_ = true;
    timer_.cancel();
    if (flights_ == 0) {
      drained();
    } else {
      drained_ = std::move(drained);
    }
  });
}

void GrantManager::Publish(const Grant& g) {
  const GrantRecord& r = g.stored.record;
  auto snap = std::make_shared<TokenSnapshot>();
  snap->organization_id = r.organization_id();
  snap->account_ref = r.account_ref();
  snap->access_token = g.stored.secrets.access_token;
  snap->expires_at = FromUnixMillis(r.access_token_expires_at_ms());
  snap->scopes.assign(r.scopes().begin(), r.scopes().end());
  snap->generation = r.generation();
  snap->status = r.status();
  cache_.Publish(std::move(snap));
}

void GrantManager::ScheduleAt(const std::string& org, WallTime when) {
  // Scheduling runs on the monotonic clock: a wall-clock jump after this point does not move
  // the refresh (persisted times are wall-clock so that they survive restarts).
  WallTime now = clock_.Now();
  MonoTime due = clock_.MonotonicNow() + std::max(WallTime::duration::zero(), when - now);
  auto before = queue_.NextDue();
  queue_.Schedule(org, due);
  stat_scheduled_ = queue_.size();
  if (!before || due < *before) {
    Kick();
  }
}

void GrantManager::Kick() { timer_.cancel(); }

asio::awaitable<void> GrantManager::SchedulerLoop() {
  while (!stopping_) {
    MonoTime now = clock_.MonotonicNow();
    std::optional<MonoTime> wake;
    while (scheduled_in_flight_ < options_.max_concurrent) {
      auto next = queue_.NextDue();
      if (!next) {
        break;
      }
      if (*next > now) {
        wake = *next;
        break;
      }
      if (!bucket_.TryTake(now)) {
        wake = bucket_.NextAvailable(now);
        break;
      }
      auto due = queue_.PopDue(now, 1);
      stat_scheduled_ = queue_.size();
      StartRefresh(due.front(), /*scheduled=*/true, nullptr);
    }
    // With the concurrency cap reached, a finishing refresh kicks the timer.
    if (wake) {
      timer_.expires_after(*wake - now);
    } else {
      timer_.expires_at(asio::steady_timer::time_point::max());
    }
    co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

void GrantManager::StartRefresh(const std::string& org, bool scheduled, FlightWaiter waiter) {
  auto it = grants_.find(org);
  if (it == grants_.end() || it->second->deleted) {
    if (waiter) {
      waiter(absl::NotFoundError(StrCat("unknown merchant ", org)));
    }
    return;
  }
  GrantPtr g = it->second;
  if (g->flight) {
    // Single flight: join the call already on its way.
    if (waiter) {
      g->flight->waiters.push_back(std::move(waiter));
    }
    return;
  }
  if (IsTerminal(g->stored.record.status()) && !g->unpersisted) {
    if (waiter) {
      waiter(TerminalError(g->stored.record));
    }
    return;
  }
  auto flight = std::make_shared<Flight>();
  flight->scheduled = scheduled;
  if (waiter) {
    flight->waiters.push_back(std::move(waiter));
  }
  g->flight = flight;
  queue_.Remove(org);
  stat_scheduled_ = queue_.size();
  ++flights_;
  stat_in_flight_ = flights_;
  if (scheduled) {
    ++scheduled_in_flight_;
  }
  asio::co_spawn(
      loop_, RunRefresh(g),
      [this, g, flight](std::exception_ptr e, absl::Status result) {
        if (e) {
          LogEscaped(e, "refresh");
          result = absl::InternalError("refresh failed unexpectedly");
        }
        g->flight.reset();
        --flights_;
        stat_in_flight_ = flights_;
        if (flight->scheduled) {
          --scheduled_in_flight_;
          Kick();
        }
        for (auto& w : flight->waiters) {
          w(result);
        }
        if (stopping_ && flights_ == 0 && drained_) {
          auto drained = std::move(drained_);
          drained_ = nullptr;
          drained();
        }
      });
}

asio::awaitable<absl::Status> GrantManager::Persist(GrantPtr g, GrantRecord record,
                                                    GrantSecretsPlain secrets) {
  uint64_t expected = g->stored.record.generation();
  record.set_generation(expected + 1);
  record.set_updated_at_ms(ToUnixMillis(clock_.Now()));
  auto put = [this, record, secrets, expected] { return store_.Put(record, secrets, expected); };
  absl::Status st = co_await Blocking(std::move(put));
  if (st.ok()) {
    g->stored.record = std::move(record);
    g->stored.secrets = std::move(secrets);
  }
  co_return st;
}

asio::awaitable<absl::Status> GrantManager::RunRefresh(GrantPtr g) {
  const std::string org = g->stored.record.organization_id();

  // Tokens from an earlier refresh that could not be written go to disk before anything else.
  if (g->unpersisted) {
    StoredGrant pending = *g->unpersisted;
    absl::Status st = co_await Persist(g, pending.record, pending.secrets);
    if (!st.ok()) {
      CB_LOG(ERROR) << "refresh " << org << ": store still refuses the new tokens: " << st;
      ScheduleAt(org, clock_.Now() + BackoffDelay(2, options_.policy, Jitter(), std::nullopt));
      co_return absl::UnavailableError("storage is failing; new tokens not yet durable");
    }
    g->unpersisted.reset();
    Publish(*g);
    ScheduleAt(org, FromUnixMillis(g->stored.record.next_refresh_at_ms()));
    co_return absl::OkStatus();
  }

  const StoredGrant before = g->stored;
  // Expiry counts from when the request was sent, not when the answer arrived.
  const WallTime sent_at = clock_.Now();
  absl::StatusOr<mollie::TokenResponse> reply =
      co_await mollie_.Refresh(before.secrets.refresh_token, before.record.redirect_uri());
  if (g->deleted) {
    co_return absl::NotFoundError(StrCat("merchant ", org, " was deleted"));
  }

  if (reply.ok()) {
    const WallTime now = clock_.Now();
    GrantRecord r = before.record;
    WallTime expires = sent_at + reply->expires_in;
    r.set_status(storage::GRANT_STATUS_ACTIVE);
    r.set_access_token_issued_at_ms(ToUnixMillis(sent_at));
    r.set_access_token_expires_at_ms(ToUnixMillis(expires));
    r.set_last_refresh_at_ms(ToUnixMillis(now));
    r.set_last_refresh_outcome("ok");
    r.set_consecutive_failures(0);
    r.set_refresh_count(r.refresh_count() + 1);
    if (!reply->scopes.empty()) {
      r.clear_scopes();
      for (auto& s : reply->scopes) {
        r.add_scopes(s);
      }
    }
    r.set_next_refresh_at_ms(
        ToUnixMillis(ComputeRefreshAt(sent_at, expires, options_.policy, Jitter())));
    GrantSecretsPlain secrets;
    secrets.access_token = reply->access_token;
    // Mollie returns the same refresh token today; whatever comes back is what we keep.
    secrets.refresh_token =
        reply->refresh_token.empty() ? before.secrets.refresh_token : reply->refresh_token;

    absl::Status st = co_await Persist(g, r, secrets);
    if (st.code() == absl::StatusCode::kAborted || st.code() == absl::StatusCode::kNotFound) {
      // Someone else wrote the grant meanwhile (re-onboarding, admin). Theirs wins; re-read.
      auto get = [this, org] { return store_.Get(org); };
      auto fresh = co_await Blocking(std::move(get));
      if (fresh.ok()) {
        g->stored = *std::move(fresh);
        Publish(*g);
        if (!IsTerminal(g->stored.record.status())) {
          ScheduleAt(org, FromUnixMillis(g->stored.record.next_refresh_at_ms()));
        }
      }
      co_return absl::OkStatus();
    }
    if (!st.ok()) {
      // Durable before visible: keep serving the old token, hold the new ones in memory and
      // write them before anything else happens to this grant.
      CB_LOG(ERROR) << "refresh " << org << ": Mollie issued new tokens but the store failed: "
                    << st << "; retrying the write";
      ++stat_failed_;
      StoredGrant pending{r, secrets};
      g->unpersisted = std::move(pending);
      ScheduleAt(org, now + BackoffDelay(1, options_.policy, Jitter(), std::nullopt));
      co_return absl::UnavailableError("storage failed; new tokens not yet durable");
    }
    ++stat_ok_;
    Publish(*g);
    ScheduleAt(org, FromUnixMillis(r.next_refresh_at_ms()));
    CB_LOG(INFO) << "refreshed " << org << " (generation " << g->stored.record.generation()
                 << ", expires in "
                 << std::chrono::duration_cast<std::chrono::seconds>(expires - now).count()
                 << "s)";
    co_return absl::OkStatus();
  }

  ++stat_failed_;
  const absl::Status& err = reply.status();
  GrantRecord r = before.record;
  const WallTime now = clock_.Now();
  r.set_last_refresh_at_ms(ToUnixMillis(now));
  r.set_last_refresh_outcome(Outcome(err));

  if (err.code() == absl::StatusCode::kFailedPrecondition) {
    // invalid_grant. A racing writer may have stored a newer grant (re-onboarding): only if the
    // store still holds the refresh token we used is the merchant really lost.
    auto get = [this, org] { return store_.Get(org); };
    auto fresh = co_await Blocking(std::move(get));
    if (fresh.ok() && fresh->record.generation() != before.record.generation()) {
      g->stored = *std::move(fresh);
      Publish(*g);
      if (!IsTerminal(g->stored.record.status())) {
        ScheduleAt(org, FromUnixMillis(g->stored.record.next_refresh_at_ms()));
      }
      co_return absl::OkStatus();
    }
    r.set_status(storage::GRANT_STATUS_NEEDS_REAUTHORIZATION);
    r.set_consecutive_failures(r.consecutive_failures() + 1);
    r.set_next_refresh_at_ms(0);
    CB_LOG(WARNING) << "merchant " << org
                    << " needs to reauthorize: Mollie rejected its refresh token (" << err.message()
                    << ")";
    absl::Status st = co_await Persist(g, r, before.secrets);
    if (!st.ok()) {
      CB_LOG(ERROR) << "refresh " << org << ": could not record NEEDS_REAUTHORIZATION: " << st;
      g->stored.record.set_status(storage::GRANT_STATUS_NEEDS_REAUTHORIZATION);
      g->stored.record.set_last_refresh_outcome(Outcome(err));
    }
    Publish(*g);
    co_return TerminalError(g->stored.record);
  }

  // Transient (network, 5xx, 429, garbled reply) or app-wide (invalid_client): keep the grant
  // and its current tokens, back off, try again. Never mark the merchant lost for these.
  if (err.code() == absl::StatusCode::kUnauthenticated) {
    CB_LOG(ERROR) << "Mollie rejected the app's client credentials (invalid_client) while "
                     "refreshing "
                  << org << "; check mollie.client_id and the client secret file";
  } else {
    CB_LOG(WARNING) << "refresh " << org << " failed: " << err;
  }
  uint32_t failures = r.consecutive_failures() + 1;
  r.set_consecutive_failures(failures);
  r.set_status(storage::GRANT_STATUS_REFRESH_FAILING);
  WallTime retry_at = now + BackoffDelay(static_cast<int>(failures), options_.policy, Jitter(),
                                         mollie::RetryAfter(err));
  r.set_next_refresh_at_ms(ToUnixMillis(retry_at));
  absl::Status st = co_await Persist(g, r, before.secrets);
  if (!st.ok()) {
    CB_LOG(WARNING) << "refresh " << org << ": could not record the failure: " << st;
  }
  Publish(*g);
  ScheduleAt(org, retry_at);
  co_return absl::UnavailableError(StrCat("refresh of ", org, " failed: ", err.message()));
}

void GrantManager::GetAccessToken(const MerchantKey& key, std::chrono::milliseconds min_ttl,
                                  TokenCallback done) {
  std::string org = key.organization_id;
  if (org.empty()) {
    auto found = cache_.FindOrganization(key.account_ref);
    if (!found) {
      done(absl::NotFoundError(StrCat("no merchant with account_ref ", key.account_ref)));
      return;
    }
    org = *found;
  }
  TokenSnapshotPtr snap = cache_.Find(org);
  if (!snap) {
    done(absl::NotFoundError(StrCat("unknown merchant ", org)));
    return;
  }
  if (IsTerminal(snap->status)) {
    GrantRecord r;
    r.set_organization_id(org);
    r.set_status(snap->status);
    r.set_last_refresh_outcome("invalid_grant");
    done(TerminalError(r));
    return;
  }
  const auto required =
      std::max<std::chrono::milliseconds>(min_ttl, options_.min_serve_ttl);
  if (snap->expires_at - clock_.Now() >= required) {
    done(std::move(snap));  // the hot path: no loop hop, no store read
    return;
  }
  // Needs a fresh token: join (or start) the refresh on the loop.
  asio::post(loop_, [this, org, required, done = std::move(done)]() mutable {
    StartRefresh(org, false, [this, org, required, done = std::move(done)](absl::Status s) {
      TokenSnapshotPtr now_snap = cache_.Find(org);
      if (now_snap && IsTerminal(now_snap->status)) {
        done(s.ok() ? absl::FailedPreconditionError(StrCat(
                          "merchant ", org, " needs to reauthorize"))
                    : s);
        return;
      }
      auto left = now_snap ? now_snap->expires_at - clock_.Now() : WallTime::duration::zero();
      if (now_snap && left >= required) {
        done(std::move(now_snap));
        return;
      }
      if (s.ok()) {
        done(absl::UnavailableError(StrCat(
            "Mollie issued a token for ", org, " that lives shorter than the requested min_ttl")));
        return;
      }
      if (s.code() == absl::StatusCode::kFailedPrecondition ||
          s.code() == absl::StatusCode::kNotFound) {
        done(s);
        return;
      }
      done(absl::UnavailableError(StrCat("no access token valid long enough for ", org,
                                               ": ", s.message())));
    });
  });
}

void GrantManager::RefreshNow(const std::string& org, RecordCallback done) {
  asio::post(loop_, [this, org, done = std::move(done)]() mutable {
    StartRefresh(org, false, [this, org, done = std::move(done)](absl::Status s) {
      auto it = grants_.find(org);
      if (!s.ok()) {
        done(s);
      } else if (it == grants_.end()) {
        done(absl::NotFoundError(StrCat("unknown merchant ", org)));
      } else {
        done(it->second->stored.record);
      }
    });
  });
}

absl::StatusOr<BeginAuthorizationResult> GrantManager::BeginAuthorization(
    const BeginAuthorizationParams& p) {
  if (!p.account_ref.empty()) {
    RETURN_IF_ERROR(ValidateAccountRef(p.account_ref));
  }
  mollie::AuthorizeParams a;
  a.base_url = options_.authorize_base_url;
  a.client_id = options_.client_id;
  a.redirect_uri = options_.redirect_uri;
  a.scopes = p.scopes.empty() ? options_.default_scopes : p.scopes;
  for (const auto& s : a.scopes) {
    RETURN_IF_ERROR(mollie::ValidateScope(s));
  }
  // The broker learns who connected from GET /v2/organizations/me, which needs this scope.
  if (std::find(a.scopes.begin(), a.scopes.end(), kOrganizationsRead) == a.scopes.end()) {
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
  // Opportunistic clean-up of abandoned consents.
  (void)store_.PurgeExpiredPending(now);

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
                     LogEscaped(e, "complete authorization");
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
      co_return absl::FailedPreconditionError(StrCat(
          "Mollie rejected the authorization code: ", tokens.status().message()));
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
  auto org = co_await mollie_.GetCurrentOrganization(tokens->access_token);
  if (!org.ok()) {
    CB_LOG(WARNING) << "GET /v2/organizations/me after code exchange failed: " << org.status();
    co_return absl::UnavailableError(
        StrCat("could not learn the organization: ", org.status().message()));
  }
  if (absl::Status v = ValidateOrganizationId(org->id); !v.ok()) {
    co_return absl::UnavailableError("Mollie returned a malformed organization id");
  }

  const WallTime now = clock_.Now();
  const WallTime expires = sent_at + tokens->expires_in;
  GrantRecord r;
  r.set_schema_version(1);
  r.set_organization_id(org->id);
  r.set_organization_name(org->name);
  r.set_account_ref(pending->account_ref());
  if (tokens->scopes.empty()) {
    *r.mutable_scopes() = pending->scopes();
  } else {
    for (const auto& s : tokens->scopes) {
      r.add_scopes(s);
    }
  }
  r.set_redirect_uri(pending->redirect_uri());
  r.set_status(storage::GRANT_STATUS_ACTIVE);
  r.set_access_token_issued_at_ms(ToUnixMillis(sent_at));
  r.set_access_token_expires_at_ms(ToUnixMillis(expires));
  r.set_last_refresh_at_ms(ToUnixMillis(now));
  r.set_last_refresh_outcome("ok");
  r.set_next_refresh_at_ms(
      ToUnixMillis(ComputeRefreshAt(sent_at, expires, options_.policy, Jitter())));
  r.set_created_at_ms(ToUnixMillis(now));
  GrantSecretsPlain secrets{tokens->access_token, tokens->refresh_token};

  auto it = grants_.find(org->id);
  absl::Status st;
  GrantPtr g;
  if (it != grants_.end() && !it->second->deleted) {
    // Re-onboarding: the new authorization replaces the old grant atomically (CAS).
    g = it->second;
    r.set_created_at_ms(g->stored.record.created_at_ms());
    r.set_refresh_count(g->stored.record.refresh_count());
    if (r.account_ref().empty()) {
      r.set_account_ref(g->stored.record.account_ref());
    }
    g->unpersisted.reset();
    st = co_await Persist(g, r, secrets);
  } else {
    g = std::make_shared<Grant>();
    r.set_generation(1);
    r.set_updated_at_ms(ToUnixMillis(now));
    auto insert = [this, r, secrets] { return store_.Put(r, secrets, std::nullopt); };
    st = co_await Blocking(std::move(insert));
    if (st.ok()) {
      g->stored = StoredGrant{r, secrets};
    }
  }
  if (!st.ok()) {
    CB_LOG(ERROR) << "storing the grant of " << org->id << " failed: " << st;
    if (st.code() == absl::StatusCode::kAlreadyExists) {
      co_return absl::AlreadyExistsError(StrCat(
          "account_ref ", r.account_ref(), " is already connected to another organization"));
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

absl::StatusOr<GrantRecord> GrantManager::GetMerchant(const std::string& org) {
  ASSIGN_OR_RETURN(StoredGrant sg, store_.Get(org));
  return std::move(sg.record);
}

absl::StatusOr<storage::ListPage> GrantManager::ListMerchants(storage::GrantStatus status,
                                                              int page_size,
                                                              const std::string& page_token) {
  return store_.List(status, page_size, page_token);
}

ManagerStats GrantManager::Stats() const {
  ManagerStats s;
  s.grants = stat_grants_;
  s.scheduled = stat_scheduled_;
  s.refreshes_in_flight = stat_in_flight_;
  s.refreshes_ok = stat_ok_;
  s.refreshes_failed = stat_failed_;
  return s;
}

}  // namespace connectbroker::broker
