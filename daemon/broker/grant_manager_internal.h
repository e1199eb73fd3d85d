// Private to the GrantManager's .cc files: the run-time grant state and small shared helpers.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "daemon/broker/grant_manager.h"
#include "daemon/common/log.h"
#include "daemon/common/strings.h"

namespace connectbroker::broker {

struct GrantManager::Flight {
  bool scheduled = false;
  bool launched = false;
  bool probe = false;
  std::vector<FlightWaiter> waiters;
};

struct GrantManager::Grant {
  storage::StoredGrant stored;
  std::shared_ptr<Flight> flight;
  // New tokens Mollie gave us that the store refused to take (disk full, I/O error). They are
  // the only copy of a possibly rotated refresh token, so they are kept here and written before
  // any further call to Mollie. Never served until written.
  std::optional<storage::StoredGrant> unpersisted;
  bool deleted = false;
  // Set while a revoke or delete is under way: no new refresh may start.
  bool revoking = false;
  std::optional<MonoTime> last_on_demand;
  // The last refresh's outcome is unknown (crash or lost reply): the next one is a replay.
  bool ambiguous = false;
};

template <typename F>
boost::asio::awaitable<std::invoke_result_t<F&>> GrantManager::Blocking(F&& fn) {
  using R = std::invoke_result_t<F&>;
  // Runs fn on the blocking pool; the awaiting coroutine resumes on its own executor (the loop).
  // GCC 12 destroys a lambda temporary that lives across a co_await twice (PR 100611), so call
  // sites name their lambda and pass it by reference; it is moved into co_spawn's frame here.
  return boost::asio::co_spawn(
      blocking_, [fn = std::forward<F>(fn)]() mutable -> boost::asio::awaitable<R> {
        co_return fn();
      },
      boost::asio::use_awaitable);
}

namespace internal {

// Logs an exception that escaped a coroutine: a bug, but the daemon keeps serving.
void LogEscaped(std::exception_ptr e, const char* what);

// The grant cannot be refreshed by the broker any more: someone must act first.
inline bool IsTerminal(storage::GrantStatus s) {
  return s == storage::GRANT_STATUS_NEEDS_REAUTHORIZATION || s == storage::GRANT_STATUS_REVOKED;
}

absl::Status TerminalError(const storage::GrantRecord& r);

// Short, secret-free outcome text for the record.
std::string Outcome(const absl::Status& s);

}  // namespace internal
}  // namespace connectbroker::broker
