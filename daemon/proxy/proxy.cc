#include "daemon/proxy/proxy.h"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <memory>
#include <strings.h>

#include "daemon/common/log.h"
#include "daemon/common/strings.h"

namespace connectbroker::proxy {
namespace {

namespace asio = boost::asio;

// Awaits a GrantManager-style callback API: `initiate(callback)` must call `callback` exactly
// once, on any thread (inline included). The coroutine resumes on its own executor.
template <typename T, typename Initiate>
asio::awaitable<T> AwaitCallback(Initiate initiate) {
  asio::any_io_executor ex = co_await asio::this_coro::executor;
  // Named, not a temporary of the co_await expression: GCC 12 destroys those twice (PR 100611).
  auto initiation = [ex, initiate = std::move(initiate)](auto handler) mutable {
    auto h = std::make_shared<decltype(handler)>(std::move(handler));
    initiate([ex, h](T value) mutable {
      asio::post(ex, [h, value = std::move(value)]() mutable { (*h)(std::move(value)); });
    });
  };
  co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(T)>(
      std::move(initiation), asio::use_awaitable);
}

bool RetryableStatus(int status) {
  return status == 429 || status == 502 || status == 503 || status == 504;
}

}  // namespace

Proxy::Proxy(asio::any_io_executor executor, mollie::HttpsTransport& transport,
             broker::GrantManager& manager, const Clock& clock, Random& random,
             ProxyOptions options)
    : executor_(std::move(executor)),
      transport_(transport),
      manager_(manager),
      clock_(clock),
      random_(random),
      options_(std::move(options)) {}

absl::StatusOr<PreparedCall> Proxy::Prepare(const ProxyCall& call) const {
  PreparedCall out;
  out.merchant = call.merchant;
  absl::StatusOr<Method> method = ParseMethod(call.method);
  if (!method.ok()) {
    return method.status();
  }
  out.method = *method;
  if (absl::Status s = ValidatePath(call.path); !s.ok()) {
    return s;
  }
  const bool testmode_in_query =
      call.testmode && (out.method == Method::kGet || out.method == Method::kDelete);
  absl::StatusOr<std::string> query = BuildQuery(call.query, testmode_in_query);
  if (!query.ok()) {
    return query.status();
  }
  out.target = StrCat(call.path, *query);
  absl::StatusOr<mollie::HeaderList> headers = FilterRequestHeaders(call.headers);
  if (!headers.ok()) {
    return headers.status();
  }
  out.headers = *std::move(headers);
  absl::StatusOr<std::string> body =
      PrepareBody(out.method, call.body, call.testmode, options_.max_request_body_bytes);
  if (!body.ok()) {
    return body.status();
  }
  out.body = *std::move(body);
  if (!out.body.empty()) {
    // The body is JSON (PrepareBody checked): say so, whatever the caller sent.
    std::erase_if(out.headers, [](const auto& h) {
      return strcasecmp(h.first.c_str(), "content-type") == 0;
    });
    out.headers.emplace_back("Content-Type", "application/json");
  }
  std::string key = call.idempotency_key;
  if (!key.empty() && call.derive_idempotency_key) {
    return absl::InvalidArgumentError(
        "set either idempotency_key or derive_idempotency_key, not both");
  }
  if (key.empty() && call.derive_idempotency_key) {
    if (call.request_id.empty()) {
      return absl::InvalidArgumentError("derive_idempotency_key needs a request_id");
    }
    if (call.request_id.size() > 255) {
      return absl::InvalidArgumentError("request_id is longer than 255 characters");
    }
    const std::string& who =
        call.merchant.organization_id.empty() ? call.merchant.account_ref
                                              : call.merchant.organization_id;
    key = DeriveIdempotencyKey(who, call.request_id);
  }
  if (!key.empty()) {
    if (absl::Status s = ValidateIdempotencyKey(key); !s.ok()) {
      return s;
    }
    if (out.method == Method::kGet) {
      return absl::InvalidArgumentError("an idempotency key is only for POST, PATCH and DELETE");
    }
    out.headers.emplace_back("Idempotency-Key", key);
  }
  out.retry_safe = out.method == Method::kGet || !key.empty();
  return out;
}

absl::StatusOr<PreparedCall> Proxy::NextPage(const PreparedCall& previous,
                                             std::string_view href) const {
  absl::StatusOr<std::string> target =
      NextPageTarget(href, transport_.origin(), transport_.path_prefix());
  if (!target.ok()) {
    return target.status();
  }
  PreparedCall next = previous;
  next.target = *std::move(target);
  return next;
}

MonoTime Proxy::DeadlineFor(std::chrono::nanoseconds remaining) const {
  auto bound = std::min<std::chrono::nanoseconds>(remaining, options_.request_timeout);
  return clock_.MonotonicNow() + std::max(bound, std::chrono::nanoseconds(0));
}

void ProxyCallHandle::Cancel() {
  // The signal belongs to the call's strand; emitting it there is what Asio requires.
  asio::post(strand_, [self = shared_from_this()] {
    self->signal_.emit(asio::cancellation_type::terminal);
  });
}

ProxyCallHandlePtr Proxy::NewCall() {
  return std::make_shared<ProxyCallHandle>(asio::make_strand(executor_));
}

void Proxy::Start(ProxyCallHandlePtr handle, PreparedCall call, MonoTime deadline, Done done) {
  asio::any_io_executor strand = handle->strand_;
  auto completion = [handle, done = std::move(done)](std::exception_ptr e,
                                                     absl::StatusOr<ProxyResult> result) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const boost::system::system_error& ex) {
        // A cancelled coroutine throws when it awaits again (Asio's throw_if_cancelled).
        if (ex.code() == asio::error::operation_aborted) {
          result = absl::CancelledError("proxied call cancelled");
        } else {
          CB_LOG(ERROR) << "proxy: unexpected system_error: " << ex.code().message();
          result = absl::InternalError("internal error in the proxy");
        }
      } catch (const std::exception& ex) {
        CB_LOG(ERROR) << "proxy: unexpected exception: " << ex.what();
        result = absl::InternalError("internal error in the proxy");
      } catch (...) {
        CB_LOG(ERROR) << "proxy: unexpected non-standard exception";
        result = absl::InternalError("internal error in the proxy");
      }
    }
    done(std::move(result));
  };
  asio::co_spawn(strand, Execute(std::move(call), deadline),
                 asio::bind_cancellation_slot(handle->signal_.slot(), std::move(completion)));
}

asio::awaitable<absl::StatusOr<broker::TokenSnapshotPtr>> Proxy::Token(
    broker::MerchantKey key) {
  // The usual case, answered here without a hand-over to another thread.
  if (auto cached = manager_.CachedAccessToken(key, std::chrono::milliseconds(0))) {
    co_return *std::move(cached);
  }
  auto initiate = [this, key](auto callback) {
    manager_.GetAccessToken(key, std::chrono::milliseconds(0), std::move(callback));
  };
  co_return co_await AwaitCallback<absl::StatusOr<broker::TokenSnapshotPtr>>(std::move(initiate));
}

asio::awaitable<absl::StatusOr<broker::TokenSnapshotPtr>> Proxy::RefreshRejected(
    std::string organization_id, uint64_t generation) {
  auto initiate = [this, organization_id, generation](auto callback) {
    manager_.RefreshRejected(organization_id, generation, std::move(callback));
  };
  co_return co_await AwaitCallback<absl::StatusOr<broker::TokenSnapshotPtr>>(std::move(initiate));
}

std::chrono::milliseconds Proxy::Backoff(int retry,
                                         std::optional<std::chrono::seconds> retry_after) {
  // Full jitter: uniform in [0, min(max, initial * 2^retry)].
  const int64_t cap = std::min<int64_t>(options_.retry_max.count(),
                                        options_.retry_initial.count() << std::min(retry, 20));
  auto delay = std::chrono::milliseconds(static_cast<int64_t>(random_.Uniform01() * cap));
  if (retry_after) {
    delay = std::max<std::chrono::milliseconds>(delay, *retry_after);
  }
  return delay;
}

asio::awaitable<absl::StatusOr<ProxyResult>> Proxy::Execute(PreparedCall call,
                                                            MonoTime deadline) {
  const MonoTime started = clock_.MonotonicNow();
  const asio::any_io_executor ex = co_await asio::this_coro::executor;
  // Cancellation (the caller gave up, the server shuts down) shows up as error codes and is
  // checked between steps; no exception unwinds through the pool.
  co_await asio::this_coro::throw_if_cancelled(false);
  const asio::cancellation_state cancel = co_await asio::this_coro::cancellation_state;
  ++stats_.calls;
  absl::StatusOr<ProxyResult> result = absl::InternalError("proxy call did not run");
  ProxyResult out;
  absl::StatusOr<broker::TokenSnapshotPtr> token = co_await Token(call.merchant);
  int retries = 0;
  for (;;) {
    if (cancel.cancelled() != asio::cancellation_type::none) {
      result = absl::CancelledError(
          StrCat("proxied call cancelled after ", out.attempts, " request(s) to Mollie"));
      break;
    }
    if (!token.ok()) {
      result = token.status();
      break;
    }
    const broker::TokenSnapshot& t = **token;
    mollie::OutgoingRequest req;
    req.method = std::string(MethodName(call.method));
    req.target = call.target;
    req.headers = call.headers;
    req.headers.emplace_back("Authorization", StrCat("Bearer ", t.access_token.Reveal()));
    req.body = call.body;
    ++out.attempts;
    absl::StatusOr<mollie::IncomingResponse> reply =
        co_await transport_.Send(std::move(req), deadline);
    const bool time_left = clock_.MonotonicNow() < deadline;
    if (reply.ok()) {
      const int status = reply->status;
      if (status >= 100 && status < 600) {
        ++stats_.upstream_by_class[status / 100];
      }
      if (status == 401 && !out.token_refreshed && time_left) {
        // The token was rejected (expired early, revoked at Mollie): refresh once, replay once.
        out.token_refreshed = true;
        ++stats_.token_refreshes;
        std::string org = t.organization_id;  // `t` dies with the snapshot `token` holds
        const uint64_t generation = t.generation;
        token = co_await RefreshRejected(std::move(org), generation);
        continue;
      }
      if (RetryableStatus(status) && call.retry_safe && retries + 1 < options_.max_attempts &&
          time_left) {
        auto delay = Backoff(retries, reply->retry_after);
        if (clock_.MonotonicNow() + delay < deadline) {
          ++retries;
          ++stats_.retries;
          asio::steady_timer timer(ex, delay);
          co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
          continue;
        }
      }
      out.status = status;
      out.headers = FilterResponseHeaders(reply->headers);
      out.body = std::move(reply->body);
      result = std::move(out);
      break;
    }
    const absl::Status& err = reply.status();
    const bool sent = mollie::RequestMayHaveBeenSent(err);
    const bool retryable_error = err.code() == absl::StatusCode::kUnavailable;
    if (retryable_error && (call.retry_safe || !sent) && retries + 1 < options_.max_attempts &&
        time_left) {
      auto delay = Backoff(retries, std::nullopt);
      if (clock_.MonotonicNow() + delay < deadline) {
        ++retries;
        ++stats_.retries;
        asio::steady_timer timer(ex, delay);
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
    }
    std::string why;
    if (retryable_error && sent && !call.retry_safe) {
      why = " (not retried: the request may have reached Mollie and a POST, PATCH or DELETE "
            "without an Idempotency-Key is not safe to repeat)";
    } else if (out.attempts > 1) {
      why = StrCat(" (after ", out.attempts, " attempts)");
    }
    result = absl::Status(err.code(), StrCat("Mollie API: ", err.message(), why));
    break;
  }
  Record(result, started);
  co_return result;
}

void Proxy::Record(const absl::StatusOr<ProxyResult>& result, MonoTime started) {
  if (!result.ok()) {
    ++stats_.failures;
  }
  const int64_t us =
      std::chrono::duration_cast<std::chrono::microseconds>(clock_.MonotonicNow() - started)
          .count();
  size_t i = 0;
  while (i < ProxyStats::kLatencyBucketsUs.size() && us > ProxyStats::kLatencyBucketsUs[i]) {
    ++i;
  }
  stats_.latency[i].fetch_add(1, std::memory_order_relaxed);
  stats_.latency_sum_us.fetch_add(static_cast<uint64_t>(std::max<int64_t>(us, 0)),
                                  std::memory_order_relaxed);
}

}  // namespace connectbroker::proxy
