// GrantManager: owns every merchant grant at run time. It onboards merchants (authorization-code
// flow), refreshes their access tokens before expiry, and publishes each new token to the
// TokenCache only after the durable write.
//
// Threads: all grant state lives on the event loop (`loop`, one thread); RocksDB calls run on the
// `blocking` pool so the loop never waits on fsync. Public methods may be called from any thread;
// asynchronous results are delivered on the loop thread. GetAccessToken answers a cache hit on
// the caller's thread without touching the loop.
//
// Refreshes are single-flight per grant: a scheduled refresh, a GetAccessToken whose min_ttl is
// not met and an admin's force refresh all join the one call in flight. Scheduled refreshes are
// bounded by a concurrency cap and a token bucket.
//
// Admission: every refresh (scheduled or on demand) takes a token from one token bucket and a
// slot under one concurrency cap; on-demand refreshes go first. A circuit breaker stops all
// refreshing after a run of transient failures across grants and probes with one grant at a time;
// Mollie rejecting the app's credentials (invalid_client) pauses refreshing app-wide, and a burst
// of invalid_grant across many merchants stops the broker from marking merchants lost.
// Every state change is written with an event in the same synced batch and then published to the
// EventHub. The refresh policy is documented in docs/refresh-policy.md.
//
// Status codes: NotFound (unknown merchant or state), InvalidArgument, FailedPrecondition
// (merchant must reauthorize / was revoked / Mollie rejected the code), Unavailable (Mollie or
// storage failing, refreshing paused; the message says why), AlreadyExists (account_ref held by
// another organization).
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <mutex>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include "absl/status/statusor.h"
#include "daemon/broker/event_hub.h"
#include "daemon/broker/refresh_policy.h"
#include "daemon/broker/refresh_queue.h"
#include "daemon/broker/token_cache.h"
#include "daemon/common/clock.h"
#include "daemon/common/random.h"
#include "daemon/mollie/mollie_oauth_api.h"
#include "storage/grant_store.h"

namespace connectbroker::broker {

struct GrantManagerOptions {
  RefreshPolicy policy;
  std::chrono::seconds min_serve_ttl{5};
  std::chrono::seconds max_min_ttl{1800};
  int max_concurrent = 16;
  double rate_per_second = 20;
  int burst = 20;
  // Onboarding.
  std::string authorize_base_url = "https://my.mollie.com";
  std::string client_id;
  std::string redirect_uri;
  std::vector<std::string> default_scopes;
  std::chrono::seconds state_ttl{600};
  // On-demand refreshes (min_ttl, proxied 401) of one grant at most this often; a caller asking
  // again sooner gets the current token or UNAVAILABLE, never a new token-endpoint call.
  std::chrono::seconds min_on_demand_interval{10};
  // Circuit breaker: this many transient failures in a row (across grants) open it; it then lets
  // one probe through after probe_initial, doubling up to probe_max while probes fail.
  int breaker_failures = 20;
  std::chrono::milliseconds breaker_probe_initial{2000};
  std::chrono::milliseconds breaker_probe_max{60000};
  // invalid_client pauses refreshing for this long before one probe (doubling up to 16x).
  std::chrono::milliseconds credentials_pause{30000};
  // More than this many invalid_grant answers within the window is treated as an app or Mollie
  // problem: no merchant is marked lost until the window has been quiet again.
  int mass_invalid_grant_threshold = 10;
  std::chrono::seconds mass_invalid_grant_window{60};
  // Event log retention.
  size_t events_keep = 1000000;
  std::chrono::hours events_max_age{24 * 7};
};

// Names a merchant by organization id or by the platform's account_ref (exactly one is set).
struct MerchantKey {
  std::string organization_id;
  std::string account_ref;
};

struct BeginAuthorizationParams {
  std::string account_ref;
  std::vector<std::string> scopes;  // empty: the default scopes
  std::string approval_prompt;      // "", "auto" or "force"
  std::string locale;
  std::string landing_page;  // "", "login" or "signup"
};

struct BeginAuthorizationResult {
  std::string authorize_url;
  std::string state;
  WallTime expires_at;
};

struct ManagerStats {
  size_t grants = 0;
  size_t scheduled = 0;
  int refreshes_in_flight = 0;
  uint64_t refreshes_ok = 0;
  uint64_t refreshes_failed = 0;
  bool paused = false;
  std::string pause_reason;
};

class GrantManager {
 public:
  using TokenCallback = std::function<void(absl::StatusOr<TokenSnapshotPtr>)>;
  using RecordCallback = std::function<void(absl::StatusOr<storage::GrantRecord>)>;

  GrantManager(boost::asio::io_context& loop, boost::asio::thread_pool& blocking,
               storage::GrantStore& store, mollie::MollieOAuthApi& mollie, TokenCache& cache,
               const Clock& clock, Random& random, GrantManagerOptions options);
  ~GrantManager();
  GrantManager(const GrantManager&) = delete;
  GrantManager& operator=(const GrantManager&) = delete;

  // Loads every grant from the store into memory and the cache and schedules its refresh (grants
  // overdue after downtime are due now, earliest first). Call once, before the loop runs.
  absl::Status Start();

  // Stops scheduling; `drained` runs on the loop once no refresh is in flight.
  void Stop(std::function<void()> drained);

  // Hot path. `done` runs exactly once: inline on a cache hit, else on the loop after a refresh.
  void GetAccessToken(const MerchantKey& key, std::chrono::milliseconds min_ttl,
                      TokenCallback done);
  // What GetAccessToken would answer inline (a usable cached token, or an unknown or lost
  // merchant), on the calling thread; nullopt when it would have to refresh first.
  std::optional<absl::StatusOr<TokenSnapshotPtr>> CachedAccessToken(
      const MerchantKey& key, std::chrono::milliseconds min_ttl) const;

  // Mollie rejected the access token of `generation` (a proxied call got 401). If the grant has
  // a newer token already, `done` gets it at once; otherwise this refreshes (an on-demand
  // refresh: single flight, admission, on-demand interval) and `done` gets the new token. Runs
  // `done` on the loop thread.
  void RefreshRejected(const std::string& organization_id, uint64_t generation,
                       TokenCallback done);

  // Refreshes now (joining a refresh in flight); `done` gets the record afterwards.
  void RefreshNow(const std::string& organization_id, RecordCallback done);

  absl::StatusOr<BeginAuthorizationResult> BeginAuthorization(
      const BeginAuthorizationParams& params);
  // Exchanges the code of a pending authorization and stores the merchant's grant.
  void CompleteAuthorization(std::string code, std::string state, RecordCallback done);
  // Consumes `state` after Mollie reported an error on the callback (single use either way).
  absl::Status AbandonAuthorization(const std::string& state);

  absl::StatusOr<storage::GrantRecord> GetMerchant(const std::string& organization_id);
  absl::StatusOr<storage::ListPage> ListMerchants(storage::GrantStatus status, int page_size,
                                                  const std::string& page_token);

  // Revokes the grant at Mollie, then forgets its tokens (status REVOKED). Waits for a refresh in
  // flight first, so that refresh cannot resurrect the grant.
  void RevokeMerchant(const std::string& organization_id, RecordCallback done);
  // Forgets the grant entirely (no call to Mollie). Waits for a refresh in flight first.
  void DeleteMerchant(const std::string& organization_id, std::function<void(absl::Status)> done);
  // Adopts an existing refresh token (e.g. from a system being replaced): refreshes it once to
  // prove it valid and learns the organization; then it is a grant like any other.
  void ImportGrant(SecretString refresh_token, std::string redirect_uri, std::string account_ref,
                   RecordCallback done);

  EventHub& events() { return events_; }
  absl::StatusOr<std::vector<storage::EventRecord>> ReadEvents(uint64_t after_sequence, int max);
  absl::StatusOr<uint64_t> OldestEventSequence();
  absl::StatusOr<uint64_t> LastEventSequence();

  // Counters, read on any thread (approximate while the loop runs).
  ManagerStats Stats() const;

 private:
  struct Grant;
  struct Flight;
  using GrantPtr = std::shared_ptr<Grant>;
  using FlightWaiter = std::function<void(absl::Status)>;

  enum class Trigger { kScheduled, kCaller, kAdmin };

  // Loop only.
  void StartRefresh(const std::string& organization_id, Trigger trigger, FlightWaiter waiter);
  void Launch(GrantPtr grant);
  boost::asio::awaitable<absl::Status> RunRefresh(GrantPtr grant);
  boost::asio::awaitable<absl::Status> OnRefreshFailed(GrantPtr grant, storage::StoredGrant before,
                                                       absl::Status error);
  // Writes the grant (CAS on its generation, bumping it) and, if given, an event of `type` in the
  // same batch; publishes the event after the write.
  boost::asio::awaitable<absl::Status> Persist(GrantPtr grant, storage::GrantRecord record,
                                               storage::GrantSecretsPlain secrets,
                                               storage::EventType type = storage::EVENT_TYPE_UNSPECIFIED,
                                               std::string detail = "");
  boost::asio::awaitable<absl::Status> AppEvent(storage::EventType type, std::string detail);
  boost::asio::awaitable<absl::StatusOr<storage::GrantRecord>> Complete(std::string code,
                                                                        std::string state);
  boost::asio::awaitable<absl::StatusOr<storage::GrantRecord>> StoreNewGrant(
      mollie::TokenResponse tokens, WallTime sent_at, std::string redirect_uri,
      std::string account_ref, std::vector<std::string> requested_scopes,
      bool withdraw_if_unused);
  boost::asio::awaitable<absl::StatusOr<storage::GrantRecord>> Revoke(std::string org);
  boost::asio::awaitable<absl::Status> Delete(std::string org);
  boost::asio::awaitable<absl::StatusOr<storage::GrantRecord>> Import(
      SecretString refresh_token, std::string redirect_uri, std::string account_ref);
  // Waits until `grant` has no refresh in flight (returns at once if none).
  boost::asio::awaitable<void> WaitForFlight(GrantPtr grant);
  boost::asio::awaitable<void> SchedulerLoop();
  boost::asio::awaitable<void> MaintenanceLoop();
  // Launches the next probe while refreshing is paused, if one is due.
  void MaybeProbe(MonoTime now);
  // Fails every on-demand flight still waiting for admission.
  void FailWaitingOnDemand(const absl::Status& status);
  void ScheduleAt(const std::string& organization_id, WallTime when);
  void Publish(const Grant& grant);
  // Ends a caller's on-demand refresh (min_ttl, a rejected token) with `s`, its outcome: the
  // merchant's terminal state first, then the cached token if `usable`, else an error for callers
  // (`ok_but_unusable` when the refresh worked, `failed` + the reason when it did not).
  void FinishCallerRefresh(const std::string& organization_id, absl::Status s,
                           const std::function<bool(const TokenSnapshot&)>& usable,
                           const std::string& ok_but_unusable, const std::string& failed,
                           const TokenCallback& done);
  void Kick();
  double Jitter();
  // Admission state: why refreshing is paused right now ("" when it is not).
  std::string PauseReason(MonoTime now) const;
  void NoteSuccess();
  void NoteTransientFailure(MonoTime now);
  void NoteCredentialsRejected(MonoTime now);
  // Records an invalid_grant; true when the burst threshold is exceeded (do not mark lost).
  bool NoteInvalidGrantIsBurst(MonoTime now);

  template <typename F>
  boost::asio::awaitable<std::invoke_result_t<F&>> Blocking(F&& fn);

  boost::asio::io_context& loop_;
  boost::asio::thread_pool& blocking_;
  storage::GrantStore& store_;
  mollie::MollieOAuthApi& mollie_;
  TokenCache& cache_;
  const Clock& clock_;
  Random& random_;
  GrantManagerOptions options_;

  EventHub events_;

  // Loop-owned state.
  std::unordered_map<std::string, GrantPtr> grants_;
  RefreshQueue queue_;
  // On-demand refreshes admitted but waiting for the bucket or a slot, oldest first.
  std::deque<GrantPtr> on_demand_;
  TokenBucket bucket_;
  boost::asio::steady_timer timer_;
  boost::asio::steady_timer maintenance_timer_;
  int running_ = 0;   // token-endpoint calls in flight
  int flights_ = 0;   // flights created (running or waiting for admission)
  bool stopping_ = false;
  std::function<void()> drained_;
  // Circuit breaker and app-wide pauses.
  int consecutive_transient_ = 0;
  bool breaker_open_ = false;
  bool probe_in_flight_ = false;
  MonoTime breaker_retry_at_{};
  std::chrono::milliseconds breaker_interval_{0};
  MonoTime credentials_retry_at_{};
  std::chrono::milliseconds credentials_interval_{0};
  bool credentials_rejected_ = false;
  std::deque<MonoTime> invalid_grants_;
  bool mass_invalid_grant_ = false;

  // Read by Stats() from other threads.
  std::atomic<size_t> stat_grants_{0};
  std::atomic<size_t> stat_scheduled_{0};
  std::atomic<int> stat_in_flight_{0};
  std::atomic<uint64_t> stat_ok_{0};
  std::atomic<uint64_t> stat_failed_{0};
  mutable std::mutex pause_mu_;
  std::string stat_pause_reason_;  // guarded by pause_mu_
};

// "org_" followed by 1-64 letters or digits.
absl::Status ValidateOrganizationId(std::string_view organization_id);
// 1-128 characters of [A-Za-z0-9._:@-].
absl::Status ValidateAccountRef(std::string_view account_ref);

}  // namespace connectbroker::broker
