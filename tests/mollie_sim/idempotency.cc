// Idempotency-Key for POST /v2/... (Mollie ignores it on other methods): the first response of a
// key is kept for an hour of simulator time per (organization, key); a repeat of the same
// request replays it with `Idempotent-Replayed: true`, a different request with the key is a
// 400, and a repeat while the first is still in flight (its reply not yet finished by the
// transport, e.g. held by a delay fault) a 409. Called with mu_ held.
#include "tests/mollie_sim/rest_support.h"
#include "tests/mollie_sim/simulator.h"

namespace connectbroker::mollie_sim {
namespace json = boost::json;

namespace {

// Exactly tests/testdata/mollie/bad_request.json and conflict_error.json, key order included.
SimResponse IdempotencyError(int status, std::string_view detail) {
  return JsonResponse(
      status,
      json::object{
          {"_links",
           {{"documentation",
             Link("https://docs.mollie.com/overview/api-idempotency", "text/html")}}},
          {"detail", detail},
          {"status", status},
          {"title", HalTitle(status)}},
      kHalJson);
}

}  // namespace

std::optional<SimResponse> Simulator::IdempotencyCheck(ApiCall& call) {
  const SimRequest& request = call.request;
  if (request.method != "POST" || request.idempotency_key.empty()) {
    return std::nullopt;
  }
  ExpireIdempotencyKeys();
  std::string slot = call.organization_id + "\n" + request.idempotency_key;
  auto it = idempotency_.find(slot);
  if (it != idempotency_.end() && NowMs() - it->second.created_at_ms < kIdempotencyTtlMs) {
    const IdempotencyEntry& entry = it->second;
    if (entry.in_flight) {
      return IdempotencyError(
          409, "Another request with this Idempotency-Key is already being processed.");
    }
    if (entry.method != request.method || entry.target != request.target ||
        entry.body != request.body) {
      return IdempotencyError(400, "This Idempotency-Key has already been used.");
    }
    SimResponse replay;
    replay.status = entry.status;
    replay.headers = entry.headers;
    replay.headers.emplace_back("Idempotent-Replayed", "true");
    replay.body = entry.response_body;
    call.replayed = true;
    return replay;
  }
  call.idempotency_slot = std::move(slot);
  return std::nullopt;
}

void Simulator::RememberIdempotent(ApiCall& call, const SimResponse& response) {
  if (call.idempotency_slot.empty()) {
    return;
  }
  const uint64_t serial = next_idempotency_serial_++;
  // Replaces an expired entry of the same key, if any.
  idempotency_[call.idempotency_slot] =
      IdempotencyEntry{serial,          NowMs(),          call.request.method,
                       call.request.target, call.request.body, true,
                       response.status, response.headers, response.body};
  idempotency_expiry_.emplace_back(call.idempotency_slot, serial);
  call.idempotency_serial = serial;
}

void Simulator::ExpireIdempotencyKeys() {
  const int64_t now = NowMs();
  while (!idempotency_expiry_.empty()) {
    const auto& [slot, serial] = idempotency_expiry_.front();
    auto it = idempotency_.find(slot);
    if (it != idempotency_.end() && it->second.serial == serial) {
      if (now - it->second.created_at_ms < kIdempotencyTtlMs) {
        return;  // oldest first: the rest are younger
      }
      idempotency_.erase(it);
    }
    idempotency_expiry_.pop_front();
  }
}

}  // namespace connectbroker::mollie_sim
