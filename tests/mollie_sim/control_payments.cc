// The /_sim/ calls about the REST API: payments (list, seed, set status), refunds and the API
// log. Called from Simulator::Control with mu_ held.
#include "tests/mollie_sim/control_support.h"
#include "tests/mollie_sim/rest_support.h"
#include "tests/mollie_sim/simulator.h"

namespace connectbroker::mollie_sim {
namespace json = boost::json;

namespace {

constexpr int64_t kMaxSeedPayments = 10000;

constexpr std::string_view kStatuses[] = {"open",     "pending", "authorized", "paid",
                                          "canceled", "expired", "failed"};

bool ValidOrganizationId(const std::optional<std::string>& id) {
  return id && id->starts_with("org_") && id->size() > 4;
}

}  // namespace

json::object Simulator::PaymentControlJson(const Payment& payment) const {
  return json::object{{"id", payment.id},
                      {"organization_id", payment.organization_id},
                      {"mode", payment.test ? "test" : "live"},
                      {"profile_id", payment.profile_id},
                      {"status", payment.status},
                      {"amount", {{"currency", payment.currency}, {"value", payment.value}}},
                      {"description", payment.description},
                      {"idempotency_key", payment.idempotency_key},
                      {"created_at_ms", payment.created_at_ms}};
}

std::optional<SimResponse> Simulator::PaymentsControl(const SimRequest& request,
                                                      std::string_view path,
                                                      std::string_view query,
                                                      const json::object& body) {
  const bool get = request.method == "GET";
  const bool post = request.method == "POST";
  const FormFields params = QueryFields(query).value_or(FormFields());
  const auto org_filter = params.find("organization_id");
  auto selected = [&](const std::string& organization_id) {
    return org_filter == params.end() || org_filter->second == organization_id;
  };

  if (path == "/_sim/payments") {
    if (!get) {
      return ControlError(405, "method not allowed");
    }
    json::array list;
    for (const Payment& payment : payments_) {
      if (selected(payment.organization_id)) {
        list.push_back(PaymentControlJson(payment));
      }
    }
    return JsonResponse(200, json::object{{"payments", std::move(list)}});
  }

  if (path == "/_sim/payments/seed") {
    if (!post) {
      return ControlError(405, "method not allowed");
    }
    std::optional<std::string> org;
    std::optional<int64_t> count;
    std::optional<std::string> mode;
    std::optional<std::string> status;
    std::optional<std::string> description;
    if (!ReadString(body, "organization_id", org) || !ReadInt(body, "count", 1, count) ||
        !ReadString(body, "mode", mode) || !ReadString(body, "status", status) ||
        !ReadString(body, "description", description) || !ValidOrganizationId(org) || !count ||
        *count > kMaxSeedPayments) {
      return ControlError(400, "organization_id (org_...) and count (1..10000) are required");
    }
    if (mode.value_or("live") != "live" && mode.value_or("live") != "test") {
      return ControlError(400, "mode must be live or test");
    }
    if (status.value_or("open") != "open" && status.value_or("open") != "paid") {
      return ControlError(400, "status must be open or paid");
    }
    Amount amount{"EUR", "10.00", 1000};
    if (body.contains("amount")) {
      auto parsed = ParseAmount(body);
      if (std::holds_alternative<SimResponse>(parsed)) {
        return ControlError(400, "amount must be {\"currency\":\"EUR\",\"value\":\"10.00\"}");
      }
      amount = std::get<Amount>(parsed);
    }
    OrganizationFor(*org);
    json::array ids;
    ids.reserve(static_cast<size_t>(*count));
    for (int64_t i = 1; i <= *count; ++i) {
      Payment payment;
      payment.organization_id = *org;
      payment.test = mode.value_or("live") == "test";
      payment.profile_id = ProfileIdOf(*org);
      payment.status = status.value_or("open");
      payment.currency = amount.currency;
      payment.value = amount.value;
      payment.cents = amount.cents;
      payment.description = description.value_or("Seeded payment " + std::to_string(i));
      payment.created_at_ms = NowMs();
      payment.paid_at_ms = payment.status == "paid" ? payment.created_at_ms : 0;
      ids.push_back(json::value(payments_[AddPayment(std::move(payment))].id));
    }
    return JsonResponse(200, json::object{{"ids", std::move(ids)}});
  }

  if (path == "/_sim/payments/status") {
    if (!post) {
      return ControlError(405, "method not allowed");
    }
    std::optional<std::string> id;
    std::optional<std::string> status;
    if (!ReadString(body, "id", id) || !ReadString(body, "status", status) || !id || !status ||
        std::find(std::begin(kStatuses), std::end(kStatuses), *status) == std::end(kStatuses)) {
      return ControlError(400,
                          "id and status (open, pending, authorized, paid, canceled, expired, "
                          "failed) are required");
    }
    auto it = payment_index_.find(*id);
    if (it == payment_index_.end()) {
      return ControlError(404, "unknown payment");
    }
    Payment& payment = payments_[it->second];
    if (*status == "paid" && payment.status != "paid") {
      payment.paid_at_ms = NowMs();
    }
    payment.status = *status;
    return JsonResponse(200, PaymentControlJson(payment));
  }

  if (path == "/_sim/refunds") {
    if (!get) {
      return ControlError(405, "method not allowed");
    }
    json::array list;
    for (const Refund& refund : refunds_) {
      const Payment& payment = payments_[refund.payment];
      if (selected(payment.organization_id)) {
        list.push_back(
            json::object{{"id", refund.id},
                         {"payment_id", payment.id},
                         {"organization_id", payment.organization_id},
                         {"mode", payment.test ? "test" : "live"},
                         {"status", refund.status},
                         {"amount", {{"currency", refund.currency}, {"value", refund.value}}},
                         {"description", refund.description},
                         {"idempotency_key", refund.idempotency_key},
                         {"created_at_ms", refund.created_at_ms}});
      }
    }
    return JsonResponse(200, json::object{{"refunds", std::move(list)}});
  }

  if (path == "/_sim/api_log") {
    if (!get) {
      return ControlError(405, "method not allowed");
    }
    json::array entries;
    entries.reserve(api_log_.size());
    for (const ApiLogEntry& entry : api_log_) {
      entries.push_back(json::object{{"time_ms", entry.time_ms},
                                     {"method", entry.method},
                                     {"path", entry.path},
                                     {"query", entry.query},
                                     {"organization_id", entry.organization_id},
                                     {"status", entry.status},
                                     {"fault", entry.fault},
                                     {"idempotency_key", entry.idempotency_key},
                                     {"replayed", entry.replayed}});
    }
    return JsonResponse(200, json::object{{"entries", std::move(entries)}});
  }

  if (path == "/_sim/api_log/clear") {
    if (!post) {
      return ControlError(405, "method not allowed");
    }
    const auto cleared = static_cast<int64_t>(api_log_.size());
    api_log_.clear();
    return JsonResponse(200, json::object{{"cleared", cleared}});
  }
  return std::nullopt;
}

}  // namespace connectbroker::mollie_sim
