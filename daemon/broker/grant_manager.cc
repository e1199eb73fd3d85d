// The refresh engine: scheduling, admission (bucket, cap, breaker, pauses), single-flight
// refreshes, failure classification, and the hot path.
#include "daemon/broker/grant_manager.h"

#include <algorithm>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>

#include "daemon/broker/grant_manager_internal.h"
#include "daemon/common/status_macros.h"

namespace connectbroker::broker {

namespace asio = boost::asio;
using internal::IsTerminal;
using internal::Outcome;
using internal::TerminalError;
using storage::GrantRecord;
using storage::GrantSecretsPlain;
using storage::StoredGrant;

namespace internal {

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

absl::Status TerminalError(const GrantRecord& r) {
  if (r.status() == storage::GRANT_STATUS_REVOKED) {
    return absl::FailedPreconditionError(
        StrCat("merchant ", r.organization_id(), " was revoked"));
  }
  // The stored outcome reads "FAILED_PRECONDITION: ..." in tables; here the code is said once.
  std::string_view outcome = r.last_refresh_outcome();
  constexpr std::string_view kCode = "FAILED_PRECONDITION: ";
  if (outcome.starts_with(kCode)) {
    outcome.remove_prefix(kCode.size());
  }
  return absl::FailedPreconditionError(
      StrCat("merchant ", r.organization_id(),
             " needs to reauthorize (Mollie rejected the refresh token: ", outcome, ")"));
}

std::string Outcome(const absl::Status& s) {
  std::string text = StrCat(absl::StatusCodeToString(s.code()), ": ", s.message());
  if (text.size() > 300) {
    text.resize(300);
  }
  return text;
}

}  // namespace internal

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
      timer_(loop),
      maintenance_timer_(loop) {}

GrantManager::~GrantManager() = default;

double GrantManager::Jitter() { return random_.Uniform01(); }

absl::Status GrantManager::Start() {
  ASSIGN_OR_RETURN(std::vector<StoredGrant> all, store_.LoadAll());
  // Overdue grants (after downtime) are all due "now"; the queue orders them by their planned
  // refresh time, so the most urgent go first, under the rate limit.
  WallTime now = clock_.Now();
  size_t overdue = 0;
  for (auto& sg : all) {
    auto g = std::make_shared<Grant>();
    g->stored = std::move(sg);
    const GrantRecord& r = g->stored.record;
    Publish(*g);
    if (!IsTerminal(r.status())) {
      WallTime when = FromUnixMillis(r.next_refresh_at_ms());
      if (r.refresh_intent_at_ms() != 0) {
        // The broker stopped while this grant's refresh was on the wire: its outcome is unknown.
        // Replay it first (safe while Mollie returns the same refresh token, and with rotation
        // an unused successor is replayed), before anything else happens to the grant.
        g->ambiguous = true;
        when = now - std::chrono::hours(24 * 30);  // ahead of every other overdue grant
        CB_LOG(WARNING) << "refresh of " << r.organization_id()
                        << " was interrupted (outcome unknown); replaying it";
      }
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
                 [](std::exception_ptr e) { internal::LogEscaped(e, "refresh scheduler"); });
  asio::co_spawn(loop_, MaintenanceLoop(),
                 [](std::exception_ptr e) { internal::LogEscaped(e, "maintenance"); });
  return absl::OkStatus();
}

void GrantManager::Stop(std::function<void()> drained) {
  asio::post(loop_, [this, drained = std::move(drained)]() mutable {
    stopping_ = true;
    timer_.cancel();
    maintenance_timer_.cancel();
    FailWaitingOnDemand(absl::UnavailableError("connect-brokerd is shutting down"));
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
  // An overdue grant keeps its lateness (a due time in the past), so that after downtime the
  // queue still runs them most-overdue first. Lateness is capped to keep the arithmetic sane.
  WallTime now = clock_.Now();
  auto offset = std::max<WallTime::duration>(when - now, -std::chrono::hours(24 * 30));
  MonoTime due = clock_.MonotonicNow() + std::chrono::duration_cast<MonoTime::duration>(offset);
  auto before = queue_.NextDue();
  queue_.Schedule(org, due);
  stat_scheduled_ = queue_.size();
  if (!before || due < *before) {
    Kick();
  }
}

void GrantManager::Kick() { timer_.cancel(); }

std::string GrantManager::PauseReason(MonoTime) const {
  if (credentials_rejected_) {
    return "Mollie rejected the app's client credentials (invalid_client)";
  }
  if (breaker_open_) {
    return "Mollie's token endpoint keeps failing (circuit breaker open)";
  }
  return "";
}

void GrantManager::FailWaitingOnDemand(const absl::Status& status) {
  while (!on_demand_.empty()) {
    GrantPtr g = on_demand_.front();
    on_demand_.pop_front();
    auto flight = g->flight;
    if (!flight || flight->launched) {
      continue;
    }
    g->flight.reset();
    --flights_;
    for (auto& w : flight->waiters) {
      w(status);
    }
  }
  if (stopping_ && flights_ == 0 && drained_) {
    auto drained = std::move(drained_);
    drained_ = nullptr;
    drained();
  }
}

void GrantManager::MaybeProbe(MonoTime now) {
  MonoTime retry_at = credentials_rejected_ ? credentials_retry_at_ : breaker_retry_at_;
  if (probe_in_flight_ || now < retry_at) {
    return;
  }
  // The probe is the most urgent grant: a waiting on-demand one, else the earliest scheduled.
  GrantPtr g;
  if (!on_demand_.empty()) {
    g = on_demand_.front();
    on_demand_.pop_front();
  } else if (auto next = queue_.NextDue()) {
    auto orgs = queue_.PopDue(*next, 1);
    stat_scheduled_ = queue_.size();
    auto it = grants_.find(orgs.front());
    if (it == grants_.end()) {
      return;
    }
    g = it->second;
    if (g->flight) {
      return;
    }
    g->flight = std::make_shared<Flight>();
    g->flight->scheduled = true;
    ++flights_;
  } else {
    return;
  }
  g->flight->probe = true;
  probe_in_flight_ = true;
  CB_LOG(NOTICE) << "refreshing is paused (" << PauseReason(now) << "); probing with "
                 << g->stored.record.organization_id();
  Launch(g);
}

asio::awaitable<void> GrantManager::SchedulerLoop() {
  while (!stopping_) {
    MonoTime now = clock_.MonotonicNow();
    std::optional<MonoTime> wake;
    if (!PauseReason(now).empty()) {
      // Callers waiting for admission would wait for the whole pause: tell them now.
      FailWaitingOnDemand(absl::UnavailableError(StrCat("refreshing is paused: ", PauseReason(now))));
      MaybeProbe(now);
      MonoTime retry_at = credentials_rejected_ ? credentials_retry_at_ : breaker_retry_at_;
      if (!probe_in_flight_ && retry_at > now) {
        wake = retry_at;
      }
    } else {
      while (running_ < options_.max_concurrent) {
        if (!on_demand_.empty()) {
          // Callers are waiting: they go before scheduled refreshes, under the same budget.
          if (!bucket_.TryTake(now)) {
            wake = bucket_.NextAvailable(now);
            break;
          }
          GrantPtr g = on_demand_.front();
          on_demand_.pop_front();
          if (g->flight && !g->flight->launched) {
            Launch(g);
          }
          continue;
        }
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
        StartRefresh(due.front(), Trigger::kScheduled, nullptr);
      }
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

asio::awaitable<void> GrantManager::MaintenanceLoop() {
  while (!stopping_) {
    maintenance_timer_.expires_after(std::chrono::seconds(60));
    auto [ec] = co_await maintenance_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec || stopping_) {
      co_return;
    }
    WallTime now = clock_.Now();
    auto trim = [this, now] {
      (void)store_.PurgeExpiredPending(now);
      return store_.TrimEvents(options_.events_keep, now - options_.events_max_age);
    };
    auto trimmed = co_await Blocking(std::move(trim));
    if (!trimmed.ok()) {
      CB_LOG(WARNING) << "event log retention failed: " << trimmed.status();
    }
  }
}

void GrantManager::StartRefresh(const std::string& org, Trigger trigger, FlightWaiter waiter) {
  auto it = grants_.find(org);
  if (it == grants_.end() || it->second->deleted) {
    if (waiter) {
      waiter(absl::NotFoundError(StrCat("unknown merchant ", org)));
    }
    return;
  }
  GrantPtr g = it->second;
  if (g->flight) {
    // Single flight: join the call already on its way (or waiting for admission).
    if (waiter) {
      g->flight->waiters.push_back(std::move(waiter));
    }
    return;
  }
  if (g->revoking) {
    if (waiter) {
      waiter(absl::FailedPreconditionError(StrCat("merchant ", org, " is being revoked")));
    }
    return;
  }
  if (IsTerminal(g->stored.record.status()) && !g->unpersisted) {
    if (waiter) {
      waiter(TerminalError(g->stored.record));
    }
    return;
  }
  const MonoTime now = clock_.MonotonicNow();
  if (trigger != Trigger::kScheduled) {
    std::string paused = PauseReason(now);
    if (!paused.empty()) {
      if (waiter) {
        waiter(absl::UnavailableError(StrCat("refreshing is paused: ", paused)));
      }
      return;
    }
    // Callers cannot cause refresh storms: one on-demand refresh per grant per interval (an
    // administrator's explicit refresh is exempt).
    if (trigger == Trigger::kCaller && g->last_on_demand &&
        now - *g->last_on_demand < options_.min_on_demand_interval) {
      if (waiter) {
        waiter(absl::UnavailableError(StrCat(
            "merchant ", org, " was refreshed on demand less than ",
            options_.min_on_demand_interval.count(), "s ago; not refreshing again so soon")));
      }
      return;
    }
    // A grant in backoff after failures is retried on its schedule; callers do not shorten the
    // backoff (during an outage that would multiply the load on Mollie).
    auto due = queue_.DueOf(org);
    if (trigger == Trigger::kCaller &&
        g->stored.record.status() == storage::GRANT_STATUS_REFRESH_FAILING && due && *due > now) {
      if (waiter) {
        waiter(absl::UnavailableError(StrCat(
            "refreshing ", org, " is failing (", g->stored.record.last_refresh_outcome(),
            "); next attempt in ",
            std::chrono::duration_cast<std::chrono::seconds>(*due - now).count(), "s")));
      }
      return;
    }
    if (trigger == Trigger::kCaller) {
      g->last_on_demand = now;
    }
  }
  auto flight = std::make_shared<Flight>();
  flight->scheduled = trigger == Trigger::kScheduled;
  if (waiter) {
    flight->waiters.push_back(std::move(waiter));
  }
  g->flight = flight;
  queue_.Remove(org);
  stat_scheduled_ = queue_.size();
  ++flights_;
  if (trigger == Trigger::kScheduled) {
    Launch(g);  // the scheduler already admitted it
  } else if (on_demand_.empty() && running_ < options_.max_concurrent && bucket_.TryTake(now)) {
    Launch(g);
  } else {
    on_demand_.push_back(g);
    Kick();
  }
}

void GrantManager::Launch(GrantPtr g) {
  auto flight = g->flight;
  flight->launched = true;
  ++running_;
  stat_in_flight_ = running_;
  asio::co_spawn(
      loop_, RunRefresh(g),
      [this, g, flight](std::exception_ptr e, absl::Status result) {
        if (e) {
          internal::LogEscaped(e, "refresh");
          result = absl::InternalError("refresh failed unexpectedly");
        }
        if (flight->probe) {
          probe_in_flight_ = false;
        }
        g->flight.reset();
        --running_;
        --flights_;
        stat_in_flight_ = running_;
        Kick();
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
                                                    GrantSecretsPlain secrets,
                                                    storage::EventType type, std::string detail) {
  uint64_t expected = g->stored.record.generation();
  record.set_generation(expected + 1);
  record.set_updated_at_ms(ToUnixMillis(clock_.Now()));
  std::optional<storage::EventRecord> event;
  if (type != storage::EVENT_TYPE_UNSPECIFIED) {
    event.emplace();
    event->set_time_ms(record.updated_at_ms());
    event->set_type(type);
    event->set_organization_id(record.organization_id());
    event->set_status(record.status());
    event->set_generation(record.generation());
    event->set_detail(std::move(detail));
  }
  auto put = [this, record, secrets, expected, event]() mutable {
    absl::Status st = store_.Put(record, secrets, expected, event ? &*event : nullptr);
    return std::make_pair(st, event);
  };
  auto [st, written] = co_await Blocking(std::move(put));
  if (st.ok()) {
    g->stored.record = std::move(record);
    g->stored.secrets = std::move(secrets);
    if (written) {
      events_.Publish(*written);
    }
  }
  co_return st;
}

asio::awaitable<absl::Status> GrantManager::AppEvent(storage::EventType type,
                                                     std::string detail) {
  storage::EventRecord event;
  event.set_time_ms(ToUnixMillis(clock_.Now()));
  event.set_type(type);
  event.set_detail(std::move(detail));
  auto append = [this, event]() mutable {
    absl::Status st = store_.AppendEvent(event);
    return std::make_pair(st, event);
  };
  auto [st, written] = co_await Blocking(std::move(append));
  if (st.ok()) {
    events_.Publish(written);
  }
  co_return st;
}

void GrantManager::NoteSuccess() {
  consecutive_transient_ = 0;
  if (!breaker_open_ && !credentials_rejected_) {
    return;
  }
  CB_LOG(NOTICE) << "Mollie's token endpoint works again; refreshing resumes";
  breaker_open_ = false;
  credentials_rejected_ = false;
  breaker_interval_ = std::chrono::milliseconds(0);
  credentials_interval_ = std::chrono::milliseconds(0);
  {
    std::lock_guard lock(pause_mu_);
    stat_pause_reason_.clear();
  }
  // Grants that failed during the outage retry now (under the rate limit), not at the end of
  // their individual backoff.
  WallTime now = clock_.Now();
  for (auto& [org, g] : grants_) {
    if (!g->flight && g->stored.record.status() == storage::GRANT_STATUS_REFRESH_FAILING) {
      ScheduleAt(org, now);
    }
  }
}

void GrantManager::NoteTransientFailure(MonoTime now) {
  ++consecutive_transient_;
  if (breaker_open_) {
    breaker_interval_ = std::min(options_.breaker_probe_max, breaker_interval_ * 2);
    breaker_retry_at_ = now + breaker_interval_;
    return;
  }
  if (consecutive_transient_ >= options_.breaker_failures) {
    breaker_open_ = true;
    breaker_interval_ = options_.breaker_probe_initial;
    breaker_retry_at_ = now + breaker_interval_;
    CB_LOG(ERROR) << consecutive_transient_
                  << " refreshes failed in a row: circuit breaker open, probing every "
                  << breaker_interval_.count() << "ms until Mollie answers again";
    std::lock_guard lock(pause_mu_);
    stat_pause_reason_ = PauseReason(now);
  }
}

void GrantManager::NoteCredentialsRejected(MonoTime now) {
  if (credentials_rejected_) {
    credentials_interval_ = std::min(options_.credentials_pause * 16, credentials_interval_ * 2);
    credentials_retry_at_ = now + credentials_interval_;
    return;
  }
  credentials_rejected_ = true;
  credentials_interval_ = options_.credentials_pause;
  credentials_retry_at_ = now + credentials_interval_;
  CB_LOG(ERROR) << "Mollie rejected the app's client credentials (invalid_client): refreshing "
                   "paused for every merchant; check mollie.client_id and the client secret file";
  {
    std::lock_guard lock(pause_mu_);
    stat_pause_reason_ = PauseReason(now);
  }
  asio::co_spawn(loop_,
                 AppEvent(storage::EVENT_TYPE_APP_CREDENTIALS_REJECTED,
                          "Mollie rejected the app's client credentials (invalid_client); "
                          "refreshing paused"),
                 [](std::exception_ptr e, absl::Status) { internal::LogEscaped(e, "event"); });
}

bool GrantManager::NoteInvalidGrantIsBurst(MonoTime now) {
  invalid_grants_.push_back(now);
  while (!invalid_grants_.empty() &&
         now - invalid_grants_.front() > options_.mass_invalid_grant_window) {
    invalid_grants_.pop_front();
  }
  bool burst = static_cast<int>(invalid_grants_.size()) > options_.mass_invalid_grant_threshold;
  if (burst && !mass_invalid_grant_) {
    CB_LOG(ERROR) << invalid_grants_.size() << " merchants' refresh tokens were rejected within "
                  << options_.mass_invalid_grant_window.count()
                  << "s: treating this as an app or Mollie problem, not marking more merchants "
                     "as lost";
    asio::co_spawn(loop_,
                   AppEvent(storage::EVENT_TYPE_MASS_INVALID_GRANT,
                            StrCat(invalid_grants_.size(), " invalid_grant answers within ",
                                   options_.mass_invalid_grant_window.count(), "s")),
                   [](std::exception_ptr e, absl::Status) { internal::LogEscaped(e, "event"); });
  }
  mass_invalid_grant_ = burst;
  return burst;
}

asio::awaitable<absl::Status> GrantManager::RunRefresh(GrantPtr g) {
  const std::string org = g->stored.record.organization_id();

  // Tokens from an earlier refresh that could not be written go to disk before anything else.
  if (g->unpersisted) {
    StoredGrant pending = *g->unpersisted;
    absl::Status st = co_await Persist(g, pending.record, pending.secrets,
                                       storage::EVENT_TYPE_REFRESHED, "written after a retry");
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

  // Expiry counts from when the request was sent, not when the answer arrived.
  const WallTime sent_at = clock_.Now();
  // Record the intent durably before the request leaves: if we crash before the outcome is
  // stored, the restart knows this refresh is ambiguous and replays it first.
  {
    GrantRecord intent = g->stored.record;
    intent.set_refresh_intent_at_ms(ToUnixMillis(sent_at));
    absl::Status st = co_await Persist(g, intent, g->stored.secrets);
    if (!st.ok()) {
      CB_LOG(ERROR) << "refresh " << org << ": cannot record the refresh intent: " << st;
      ScheduleAt(org, clock_.Now() + BackoffDelay(2, options_.policy, Jitter(), std::nullopt));
      co_return absl::UnavailableError(
          StrCat("storage is failing; not refreshing ", org, ": ", st.message()));
    }
  }
  const StoredGrant before = g->stored;
  absl::StatusOr<mollie::TokenResponse> reply =
      co_await mollie_.Refresh(before.secrets.refresh_token, before.record.redirect_uri());
  if (g->deleted) {
    co_return absl::NotFoundError(StrCat("merchant ", org, " was deleted"));
  }
  if (!reply.ok()) {
    ++stat_failed_;
    absl::Status failed = co_await OnRefreshFailed(g, before, reply.status());
    co_return failed;
  }
  g->ambiguous = false;

  NoteSuccess();
  const WallTime now = clock_.Now();
  GrantRecord r = before.record;
  WallTime expires = sent_at + reply->expires_in;
  r.set_refresh_intent_at_ms(0);
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

  absl::Status st = co_await Persist(g, r, secrets, storage::EVENT_TYPE_REFRESHED,
                                     StrCat("expires in ", reply->expires_in.count(), "s"));
  if (st.code() == absl::StatusCode::kAborted || st.code() == absl::StatusCode::kNotFound) {
    // Someone else wrote the grant meanwhile (re-onboarding, revoke). Theirs wins; re-read.
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
    r.set_generation(before.record.generation());
    g->unpersisted = StoredGrant{r, secrets};
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

asio::awaitable<absl::Status> GrantManager::OnRefreshFailed(GrantPtr g, StoredGrant before,
                                                            absl::Status err) {
  const std::string org = before.record.organization_id();
  const WallTime now = clock_.Now();
  const MonoTime mono_now = clock_.MonotonicNow();
  GrantRecord r = before.record;
  r.set_last_refresh_at_ms(ToUnixMillis(now));
  r.set_last_refresh_outcome(Outcome(err));
  // A reply that was lost after the request was sent (timeout, reset) leaves the outcome
  // unknown: Mollie may have issued (and, with rotation, switched to) new tokens. The intent
  // stays recorded and the next attempt is a replay of the same refresh token.
  // A request that never left (connection refused, TLS failed) is not ambiguous.
  const bool ambiguous = (err.code() == absl::StatusCode::kDeadlineExceeded ||
                          err.code() == absl::StatusCode::kUnavailable) &&
                         !mollie::RequestCertainlyNotSent(err);
  if (!ambiguous) {
    r.set_refresh_intent_at_ms(0);
  }
  const bool after_ambiguous = g->ambiguous;
  g->ambiguous = ambiguous;

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
    if (!NoteInvalidGrantIsBurst(mono_now)) {
      r.set_status(storage::GRANT_STATUS_NEEDS_REAUTHORIZATION);
      r.set_consecutive_failures(r.consecutive_failures() + 1);
      r.set_next_refresh_at_ms(0);
      if (after_ambiguous) {
        // The replay after an unknown outcome was refused: Mollie rotated the token and its
        // successor was lost with the reply. Nothing can recover it but a new consent.
        r.set_last_refresh_outcome(StrCat("invalid_grant after a refresh whose reply was lost: ",
                                          err.message()));
        CB_LOG(ERROR) << "merchant " << org
                      << " lost its grant: the replay after an interrupted refresh was refused";
      }
      CB_LOG(WARNING) << "merchant " << org
                      << " needs to reauthorize: Mollie rejected its refresh token ("
                      << err.message() << ")";
      absl::Status st = co_await Persist(g, r, before.secrets,
                                         storage::EVENT_TYPE_NEEDS_REAUTHORIZATION,
                                         r.last_refresh_outcome());
      if (!st.ok()) {
        CB_LOG(ERROR) << "refresh " << org << ": could not record NEEDS_REAUTHORIZATION: " << st;
        g->stored.record.set_status(storage::GRANT_STATUS_NEEDS_REAUTHORIZATION);
        g->stored.record.set_last_refresh_outcome(r.last_refresh_outcome());
      }
      queue_.Remove(org);
      Publish(*g);
      co_return TerminalError(g->stored.record);
    }
    // Part of a burst: handled like a transient failure below, the merchant is not marked lost.
    r.set_last_refresh_outcome(
        StrCat("invalid_grant during a burst across merchants (not marked lost): ",
               err.message()));
  } else if (err.code() == absl::StatusCode::kUnauthenticated) {
    // invalid_client: an app-wide problem; the merchant's grant is fine.
    NoteCredentialsRejected(mono_now);
  } else {
    NoteTransientFailure(mono_now);
    CB_LOG(WARNING) << "refresh " << org << " failed: " << err;
  }

  // Keep the grant and its current tokens, back off, try again.
  uint32_t failures = r.consecutive_failures() + 1;
  r.set_consecutive_failures(failures);
  const bool first_failure = r.status() != storage::GRANT_STATUS_REFRESH_FAILING;
  r.set_status(storage::GRANT_STATUS_REFRESH_FAILING);
  WallTime retry_at = now + BackoffDelay(static_cast<int>(failures), options_.policy, Jitter(),
                                         mollie::RetryAfter(err));
  r.set_next_refresh_at_ms(ToUnixMillis(retry_at));
  // One event when a grant starts failing, not one per retry (an outage would flood the log).
  absl::Status st = co_await Persist(
      g, r, before.secrets,
      first_failure ? storage::EVENT_TYPE_REFRESH_FAILED : storage::EVENT_TYPE_UNSPECIFIED,
      r.last_refresh_outcome());
  if (!st.ok()) {
    CB_LOG(WARNING) << "refresh " << org << ": could not record the failure: " << st;
  }
  Publish(*g);
  ScheduleAt(org, retry_at);
  if (err.code() == absl::StatusCode::kUnauthenticated) {
    co_return absl::UnavailableError(
        "Mollie rejected the app's client credentials (invalid_client); refreshing paused");
  }
  co_return absl::UnavailableError(StrCat("refresh of ", org, " failed: ", err.message()));
}

std::optional<absl::StatusOr<TokenSnapshotPtr>> GrantManager::CachedAccessToken(
    const MerchantKey& key, std::chrono::milliseconds min_ttl) const {
  std::string org = key.organization_id;
  if (org.empty()) {
    auto found = cache_.FindOrganization(key.account_ref);
    if (!found) {
      return absl::NotFoundError(StrCat("no merchant with account_ref ", key.account_ref));
    }
    org = *found;
  }
  TokenSnapshotPtr snap = cache_.Find(org);
  if (!snap) {
    return absl::NotFoundError(StrCat("unknown merchant ", org));
  }
  if (IsTerminal(snap->status)) {
    GrantRecord r;
    r.set_organization_id(org);
    r.set_status(snap->status);
    r.set_last_refresh_outcome("invalid_grant");
    return TerminalError(r);
  }
  const auto required = std::max<std::chrono::milliseconds>(min_ttl, options_.min_serve_ttl);
  if (snap->expires_at - clock_.Now() >= required) {
    return snap;  // the hot path: no loop hop, no store read
  }
  return std::nullopt;
}

void GrantManager::GetAccessToken(const MerchantKey& key, std::chrono::milliseconds min_ttl,
                                  TokenCallback done) {
  if (auto cached = CachedAccessToken(key, min_ttl)) {
    done(*std::move(cached));
    return;
  }
  std::string org = key.organization_id;
  if (org.empty()) {
    auto found = cache_.FindOrganization(key.account_ref);
    if (!found) {  // removed since the lookup above
      done(absl::NotFoundError(StrCat("no merchant with account_ref ", key.account_ref)));
      return;
    }
    org = *found;
  }
  const auto required = std::max<std::chrono::milliseconds>(min_ttl, options_.min_serve_ttl);
  // Needs a fresh token: join (or start) the refresh on the loop.
  asio::post(loop_, [this, org, required, done = std::move(done)]() mutable {
    StartRefresh(org, Trigger::kCaller, [this, org, required,
                                         done = std::move(done)](absl::Status s) {
      FinishCallerRefresh(
          org, std::move(s),
          [&](const TokenSnapshot& t) { return t.expires_at - clock_.Now() >= required; },
          StrCat("Mollie issued a token for ", org,
                 " that lives shorter than the requested min_ttl"),
          StrCat("no access token valid long enough for ", org), done);
    });
  });
}

void GrantManager::RefreshRejected(const std::string& org, uint64_t generation,
                                   TokenCallback done) {
  asio::post(loop_, [this, org, generation, done = std::move(done)]() mutable {
    TokenSnapshotPtr snap = cache_.Find(org);
    if (snap && !IsTerminal(snap->status) && snap->generation > generation &&
        snap->expires_at - clock_.Now() >= options_.min_serve_ttl) {
      done(std::move(snap));  // someone refreshed since that token was handed out
      return;
    }
    StartRefresh(org, Trigger::kCaller, [this, org, generation,
                                         done = std::move(done)](absl::Status s) {
      FinishCallerRefresh(
          org, std::move(s), [&](const TokenSnapshot& t) { return t.generation > generation; },
          StrCat("refreshing ", org, " gave no new token"),
          StrCat("Mollie rejected the access token of ", org, " and refreshing it failed"),
          done);
    });
  });
}

void GrantManager::FinishCallerRefresh(const std::string& org, absl::Status s,
                                       const std::function<bool(const TokenSnapshot&)>& usable,
                                       const std::string& ok_but_unusable,
                                       const std::string& failed, const TokenCallback& done) {
  TokenSnapshotPtr now_snap = cache_.Find(org);
  if (now_snap && IsTerminal(now_snap->status)) {
    done(s.code() == absl::StatusCode::kFailedPrecondition
             ? s
             : absl::FailedPreconditionError(
                   StrCat("merchant ", org, " needs to reauthorize or was revoked")));
    return;
  }
  if (now_snap && usable(*now_snap)) {
    done(std::move(now_snap));
    return;
  }
  if (s.ok()) {
    done(absl::UnavailableError(ok_but_unusable));
    return;
  }
  if (s.code() == absl::StatusCode::kFailedPrecondition ||
      s.code() == absl::StatusCode::kNotFound) {
    done(s);
    return;
  }
  done(absl::UnavailableError(StrCat(failed, ": ", s.message())));
}

void GrantManager::RefreshNow(const std::string& org, RecordCallback done) {
  asio::post(loop_, [this, org, done = std::move(done)]() mutable {
    StartRefresh(org, Trigger::kAdmin, [this, org, done = std::move(done)](absl::Status s) {
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

ManagerStats GrantManager::Stats() const {
  ManagerStats s;
  s.grants = stat_grants_;
  s.scheduled = stat_scheduled_;
  s.refreshes_in_flight = stat_in_flight_;
  s.refreshes_ok = stat_ok_;
  s.refreshes_failed = stat_failed_;
  std::lock_guard lock(pause_mu_);
  s.pause_reason = stat_pause_reason_;
  s.paused = !s.pause_reason.empty();
  return s;
}

}  // namespace connectbroker::broker
