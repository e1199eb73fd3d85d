// Proxy: calls Mollie's REST API for a merchant with the merchant's current access token, so
// that callers never hold one. Validates the request (request_validation.h), looks the token up
// in the GrantManager's cache (no loop hop on a hit), sends it over the pooled HttpsTransport,
// refreshes once and replays once on a 401, and retries what is safe to retry (connection
// failures before the request was sent; after that, and on 429/502/503/504, only GET or a request
// with an Idempotency-Key) with exponential backoff and full jitter, honouring Retry-After, all
// within the call's deadline.
//
// Threads: Start/Execute run on a strand of the proxy's own io_context (several threads), never
// on the broker's event loop; `done` runs on that strand. Thread-safe; must outlive its calls.
// Status codes: InvalidArgument (Prepare), NotFound, FailedPrecondition (must reauthorize),
// Unavailable, DeadlineExceeded, ResourceExhausted (reply too large), Internal (bad list page).
// Mollie's own answers, whatever their HTTP status, are OK results carrying that status.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <memory>

#include "absl/status/statusor.h"
#include "daemon/broker/grant_manager.h"
#include "daemon/common/clock.h"
#include "daemon/common/random.h"
#include "daemon/mollie/https_transport.h"
#include "daemon/proxy/request_validation.h"

namespace connectbroker::proxy {

struct ProxyOptions {
  // Upper bound on one call (the caller's deadline, if sooner, wins).
  std::chrono::milliseconds request_timeout{30000};
  // Requests to Mollie per call for retries (the 401 replay does not count).
  int max_attempts = 3;
  std::chrono::milliseconds retry_initial{100};
  std::chrono::milliseconds retry_max{2000};
  size_t max_request_body_bytes = 1024 * 1024;
};

struct ProxyCall {
  broker::MerchantKey merchant;
  std::string method;
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;
  mollie::HeaderList headers;
  std::string body;
  bool testmode = false;
  std::string idempotency_key;
  bool derive_idempotency_key = false;
  std::string request_id;
};

// A validated call, ready to send (and to send again).
struct PreparedCall {
  broker::MerchantKey merchant;
  Method method = Method::kGet;
  std::string target;  // path + query
  mollie::HeaderList headers;
  std::string body;
  bool retry_safe = false;  // GET, or an Idempotency-Key is sent
};

struct ProxyResult {
  int status = 0;
  mollie::HeaderList headers;  // filtered (FilterResponseHeaders)
  std::string body;
  int attempts = 0;
  bool token_refreshed = false;
};

// Counters for /metrics and GetStats; updated with relaxed atomics, read on any thread.
struct ProxyStats {
  static constexpr std::array<int64_t, 12> kLatencyBucketsUs = {
      250, 500, 1000, 2500, 5000, 10000, 25000, 100000, 250000, 1000000, 5000000, 30000000};
  std::atomic<uint64_t> calls{0};
  std::atomic<uint64_t> failures{0};      // calls that ended in a gRPC error
  std::atomic<uint64_t> retries{0};       // extra requests sent for retries
  std::atomic<uint64_t> token_refreshes{0};  // 401 -> refresh -> replay
  std::array<std::atomic<uint64_t>, 6> upstream_by_class{};  // [1..5] = 1xx..5xx
  std::array<std::atomic<uint64_t>, kLatencyBucketsUs.size() + 1> latency{};  // last: +Inf
  std::atomic<uint64_t> latency_sum_us{0};
};

// One call's cancellation: Cancel() (any thread, any time, idempotent) stops the call's pending
// step (connect, read, backoff sleep); the call then finishes with Cancelled. A connection
// interrupted that way is closed, never reused.
class ProxyCallHandle : public std::enable_shared_from_this<ProxyCallHandle> {
 public:
  explicit ProxyCallHandle(boost::asio::any_io_executor strand) : strand_(std::move(strand)) {}
  void Cancel();

 private:
  friend class Proxy;
  boost::asio::any_io_executor strand_;
  boost::asio::cancellation_signal signal_;  // emitted on strand_ only
};
using ProxyCallHandlePtr = std::shared_ptr<ProxyCallHandle>;

class Proxy {
 public:
  using Done = std::function<void(absl::StatusOr<ProxyResult>)>;

  Proxy(boost::asio::any_io_executor executor, mollie::HttpsTransport& transport,
        broker::GrantManager& manager, const Clock& clock, Random& random, ProxyOptions options);
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  // Validates and builds the request. InvalidArgument naming the problem.
  absl::StatusOr<PreparedCall> Prepare(const ProxyCall& call) const;
  // A GET of a list's next page: `href` is `_links.next.href` of the previous page. Internal
  // when it is not a safe URL on Mollie's API host.
  absl::StatusOr<PreparedCall> NextPage(const PreparedCall& previous, std::string_view href) const;

  // A handle for the next Start: create it first, so that whoever may cancel holds it before
  // the call can finish.
  ProxyCallHandlePtr NewCall();
  // Runs `call` on the handle's strand of the proxy's executor and calls `done` there.
  void Start(ProxyCallHandlePtr handle, PreparedCall call, MonoTime deadline, Done done);
  boost::asio::awaitable<absl::StatusOr<ProxyResult>> Execute(PreparedCall call,
                                                              MonoTime deadline);

  // The deadline of a call whose caller allows `remaining` (clamped to request_timeout).
  MonoTime DeadlineFor(std::chrono::nanoseconds remaining) const;

  const ProxyStats& stats() const { return stats_; }
  const mollie::HttpsTransport& transport() const { return transport_; }

 private:
  // By value: coroutine parameters must not refer to the caller's objects.
  boost::asio::awaitable<absl::StatusOr<broker::TokenSnapshotPtr>> Token(
      broker::MerchantKey merchant);
  boost::asio::awaitable<absl::StatusOr<broker::TokenSnapshotPtr>> RefreshRejected(
      std::string organization_id, uint64_t generation);
  std::chrono::milliseconds Backoff(int retry, std::optional<std::chrono::seconds> retry_after);
  void Record(const absl::StatusOr<ProxyResult>& result, MonoTime started);

  boost::asio::any_io_executor executor_;
  mollie::HttpsTransport& transport_;
  broker::GrantManager& manager_;
  const Clock& clock_;
  Random& random_;
  ProxyOptions options_;
  ProxyStats stats_;
};

}  // namespace connectbroker::proxy
