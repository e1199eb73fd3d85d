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
// Status codes: NotFound (unknown merchant or state), InvalidArgument, FailedPrecondition
// (merchant must reauthorize / Mollie rejected the code), Unavailable (Mollie or storage failing;
// the message says why), AlreadyExists (account_ref held by another organization).
#pragma once

#include <chrono>
#include <functional>
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

  // Counters, read on any thread (approximate while the loop runs).
  ManagerStats Stats() const;

 private:
  struct Grant;
  struct Flight;
  using GrantPtr = std::shared_ptr<Grant>;
  using FlightWaiter = std::function<void(absl::Status)>;

  // Loop only.
  void StartRefresh(const std::string& organization_id, bool scheduled, FlightWaiter waiter);
  boost::asio::awaitable<absl::Status> RunRefresh(GrantPtr grant);
  boost::asio::awaitable<absl::Status> Persist(GrantPtr grant, storage::GrantRecord record,
                                               storage::GrantSecretsPlain secrets);
  boost::asio::awaitable<absl::StatusOr<storage::GrantRecord>> Complete(std::string code,
                                                                        std::string state);
  boost::asio::awaitable<void> SchedulerLoop();
  void ScheduleAt(const std::string& organization_id, WallTime when);
  void Publish(const Grant& grant);
  void Kick();
  double Jitter();

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

  // Loop-owned state.
  std::unordered_map<std::string, GrantPtr> grants_;
  RefreshQueue queue_;
  TokenBucket bucket_;
  boost::asio::steady_timer timer_;
  int scheduled_in_flight_ = 0;
  int flights_ = 0;
  bool stopping_ = false;
  std::function<void()> drained_;

  // Read by Stats() from other threads.
  std::atomic<size_t> stat_grants_{0};
  std::atomic<size_t> stat_scheduled_{0};
  std::atomic<int> stat_in_flight_{0};
  std::atomic<uint64_t> stat_ok_{0};
  std::atomic<uint64_t> stat_failed_{0};
};

// "org_" followed by 1-64 letters or digits.
absl::Status ValidateOrganizationId(std::string_view organization_id);
// 1-128 characters of [A-Za-z0-9._:@-].
absl::Status ValidateAccountRef(std::string_view account_ref);

}  // namespace connectbroker::broker
