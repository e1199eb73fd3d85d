// Administration of grants: revoke, delete, read, list, events.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "daemon/broker/grant_manager.h"
#include "daemon/broker/grant_manager_internal.h"
#include "daemon/common/status_macros.h"

namespace connectbroker::broker {

namespace asio = boost::asio;
using storage::GrantRecord;
using storage::GrantSecretsPlain;

asio::awaitable<void> GrantManager::WaitForFlight(GrantPtr g) {
  while (g->flight) {
    // A timer that never fires, cancelled by the flight's completion: an awaitable event.
    asio::steady_timer event(loop_);
    event.expires_at(asio::steady_timer::time_point::max());
    g->flight->waiters.push_back([&event](absl::Status) { event.cancel(); });
    co_await event.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

void GrantManager::RevokeMerchant(const std::string& org, RecordCallback done) {
  asio::co_spawn(loop_, Revoke(org),
                 [done = std::move(done)](std::exception_ptr e,
                                          absl::StatusOr<GrantRecord> result) {
                   if (e) {
                     internal::LogEscaped(e, "revoke");
                     result = absl::InternalError("revoke failed unexpectedly");
                   }
                   done(std::move(result));
                 });
}

asio::awaitable<absl::StatusOr<GrantRecord>> GrantManager::Revoke(std::string org) {
  auto it = grants_.find(org);
  if (it == grants_.end() || it->second->deleted) {
    co_return absl::NotFoundError(StrCat("unknown merchant ", org));
  }
  GrantPtr g = it->second;
  if (g->revoking) {
    co_return absl::AbortedError(StrCat("merchant ", org, " is already being revoked or deleted"));
  }
  // No refresh may start from here on, and the one in flight finishes first: its result (maybe
  // a rotated refresh token) is what gets revoked, and it cannot resurrect the grant afterwards.
  g->revoking = true;
  co_await WaitForFlight(g);
  if (g->deleted) {
    co_return absl::NotFoundError(StrCat("merchant ", org, " was deleted"));
  }
  if (g->stored.record.status() == storage::GRANT_STATUS_REVOKED) {
    g->revoking = false;
    co_return g->stored.record;
  }
  SecretString refresh_token = g->unpersisted ? g->unpersisted->secrets.refresh_token
                                              : g->stored.secrets.refresh_token;
  if (!refresh_token.empty()) {
    absl::Status revoked = co_await mollie_.RevokeRefreshToken(refresh_token);
    // invalid_grant/invalid_request: the token is already dead at Mollie, which is the goal.
    if (!revoked.ok() && revoked.code() != absl::StatusCode::kFailedPrecondition &&
        revoked.code() != absl::StatusCode::kInvalidArgument) {
      g->revoking = false;
      co_return absl::UnavailableError(StrCat(
          "Mollie did not confirm the revocation (nothing changed; try again): ",
          revoked.message()));
    }
  }
  g->unpersisted.reset();
  GrantRecord r = g->stored.record;
  r.set_status(storage::GRANT_STATUS_REVOKED);
  r.set_next_refresh_at_ms(0);
  r.set_access_token_expires_at_ms(0);
  r.set_last_refresh_outcome("revoked by an administrator");
  queue_.Remove(org);
  stat_scheduled_ = queue_.size();
  // The secrets are gone from here on: an empty blob replaces them. Both are named objects, not
  // temporaries of the co_await expression: GCC 12 copies an aggregate temporary into the
  // coroutine frame bit by bit, and the copied strings then pointed into this frame (the crash of
  // deleting a revoked merchant).
  const GrantSecretsPlain no_secrets;
  std::string detail = "revoked by an administrator";
  absl::Status st = co_await Persist(g, r, no_secrets, storage::EVENT_TYPE_REVOKED,
                                     std::move(detail));
  if (!st.ok()) {
    // Revoked at Mollie regardless: never refresh or serve it again in this process.
    g->stored.record = r;
    g->stored.secrets = GrantSecretsPlain{};
    Publish(*g);
    g->revoking = false;
    co_return absl::UnavailableError(
        StrCat("revoked at Mollie, but recording it failed: ", st.message()));
  }
  Publish(*g);
  g->revoking = false;
  CB_LOG(NOTICE) << "revoked " << org;
  co_return g->stored.record;
}

void GrantManager::DeleteMerchant(const std::string& org, std::function<void(absl::Status)> done) {
  asio::co_spawn(loop_, Delete(org),
                 [done = std::move(done)](std::exception_ptr e, absl::Status result) {
                   if (e) {
                     internal::LogEscaped(e, "delete");
                     result = absl::InternalError("delete failed unexpectedly");
                   }
                   done(result);
                 });
}

asio::awaitable<absl::Status> GrantManager::Delete(std::string org) {
  auto it = grants_.find(org);
  if (it == grants_.end() || it->second->deleted) {
    co_return absl::NotFoundError(StrCat("unknown merchant ", org));
  }
  GrantPtr g = it->second;
  if (g->revoking) {
    co_return absl::AbortedError(StrCat("merchant ", org, " is already being revoked or deleted"));
  }
  g->revoking = true;
  co_await WaitForFlight(g);
  storage::EventRecord event;
  event.set_time_ms(ToUnixMillis(clock_.Now()));
  event.set_type(storage::EVENT_TYPE_DELETED);
  event.set_organization_id(org);
  event.set_generation(g->stored.record.generation());
  event.set_detail("deleted by an administrator");
  const uint64_t expected = g->stored.record.generation();
  auto del = [this, org, expected, event]() mutable {
    absl::Status s = store_.Delete(org, expected, &event);
    return std::make_pair(s, event);
  };
  auto [st, written] = co_await Blocking(std::move(del));
  if (!st.ok()) {
    g->revoking = false;
    co_return st;
  }
  g->deleted = true;
  grants_.erase(org);
  stat_grants_ = grants_.size();
  queue_.Remove(org);
  stat_scheduled_ = queue_.size();
  cache_.Remove(org);
  events_.Publish(written);
  CB_LOG(NOTICE) << "deleted " << org;
  co_return absl::OkStatus();
}

absl::StatusOr<GrantRecord> GrantManager::GetMerchant(const std::string& org) {
  ASSIGN_OR_RETURN(storage::StoredGrant sg, store_.Get(org));
  return std::move(sg.record);
}

absl::StatusOr<storage::ListPage> GrantManager::ListMerchants(storage::GrantStatus status,
                                                              int page_size,
                                                              const std::string& page_token) {
  return store_.List(status, page_size, page_token);
}

absl::StatusOr<std::vector<storage::EventRecord>> GrantManager::ReadEvents(uint64_t after,
                                                                           int max) {
  return store_.ReadEvents(after, max);
}

absl::StatusOr<uint64_t> GrantManager::OldestEventSequence() {
  return store_.OldestEventSequence();
}

absl::StatusOr<uint64_t> GrantManager::LastEventSequence() { return store_.LastEventSequence(); }

}  // namespace connectbroker::broker
