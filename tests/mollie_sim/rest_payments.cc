// Payments and refunds of the REST API: POST/GET /v2/payments (cursor paging, newest first),
// GET /v2/payments/{id} and POST /v2/payments/{id}/refunds, with test/live isolation and the
// OAuth rule that profileId is required. Payments are indexed by id and by (organization, mode),
// so a lookup is O(1) and a page O(limit). Called with mu_ held.
#include "tests/mollie_sim/rest_support.h"
#include "tests/mollie_sim/simulator.h"

namespace connectbroker::mollie_sim {
namespace json = boost::json;

namespace {

constexpr int64_t kPaymentExpiryMs = 15 * 60 * 1000;
constexpr size_t kMaxDescription = 255;

json::object AmountJson(std::string_view value, std::string_view currency) {
  return json::object{{"value", value}, {"currency", currency}};
}

// `testmode` of a body: absent -> false; else it must be a boolean (422).
std::variant<bool, SimResponse> BodyTestmode(const json::object& body) {
  const json::value* value = body.if_contains("testmode");
  if (value == nullptr || value->is_null()) {
    return false;
  }
  if (!value->is_bool()) {
    return HalError(422, "The 'testmode' field must be a boolean", "testmode");
  }
  return value->as_bool();
}

// An optional description: nullopt if valid (then `out` is set), else the 422.
std::optional<SimResponse> ReadDescription(const json::object& body, bool required,
                                           std::string& out) {
  const json::value* value = body.if_contains("description");
  if (value == nullptr || value->is_null() || (value->is_string() && value->as_string().empty())) {
    if (required) {
      return HalError(422, "The description is missing", "description");
    }
    return std::nullopt;
  }
  if (!value->is_string()) {
    return HalError(422, "The description must be a string", "description");
  }
  if (value->as_string().size() > kMaxDescription) {
    return HalError(422, "The description is longer than 255 characters", "description");
  }
  out = std::string(value->as_string());
  return std::nullopt;
}

std::string TestmodeSuffix(bool test) { return test ? "?testmode=true" : ""; }

}  // namespace

size_t Simulator::AddPayment(Payment payment) {
  do {
    payment.id = "tr_" + RandomAlnum(random_, 10);
  } while (payment_index_.contains(payment.id));
  OrganizationPayments& lists = payments_by_organization_[payment.organization_id];
  std::vector<size_t>& list = payment.test ? lists.test : lists.live;
  const size_t index = payments_.size();
  payment.position = list.size();
  list.push_back(index);
  payment_index_[payment.id] = index;
  payments_.push_back(std::move(payment));
  return index;
}

std::variant<size_t, SimResponse> Simulator::FindPayment(const ApiCall& call, std::string_view id,
                                                         bool test) const {
  auto it = payment_index_.find(std::string(id));
  if (it == payment_index_.end() ||
      payments_[it->second].organization_id != call.organization_id) {
    return HalError(404, "No payment exists with token " + std::string(id) + ".");
  }
  if (payments_[it->second].test != test) {
    return HalError(404, "Payment " + std::string(id) +
                             " exists, but the wrong mode is used. Try switching live / test "
                             "API keys.");
  }
  return it->second;
}

json::object Simulator::PaymentJson(const Payment& payment, const std::string& base,
                                    bool created) const {
  const std::string self = base + "payments/" + payment.id;
  const std::string testmode = TestmodeSuffix(payment.test);
  json::object out{{"resource", "payment"},
                   {"id", payment.id},
                   {"mode", payment.test ? "test" : "live"},
                   {"createdAt", IsoTime(payment.created_at_ms)},
                   {"amount", AmountJson(payment.value, payment.currency)},
                   {"description", payment.description}};
  out["method"] = payment.method.empty() ? json::value(nullptr) : json::value(payment.method);
  out["metadata"] = payment.metadata;
  out["status"] = payment.status;
  out["isCancelable"] = false;
  if (payment.status == "open") {
    out["expiresAt"] = IsoTime(payment.created_at_ms + kPaymentExpiryMs);
  }
  if (payment.status == "paid") {
    out["paidAt"] = IsoTime(payment.paid_at_ms);
    out["amountRefunded"] = AmountJson(FormatCents(payment.refunded_cents), payment.currency);
    out["amountRemaining"] =
        AmountJson(FormatCents(payment.cents - payment.refunded_cents), payment.currency);
  }
  out["profileId"] = payment.profile_id;
  out["sequenceType"] = "oneoff";
  if (!payment.redirect_url.empty()) {
    out["redirectUrl"] = payment.redirect_url;
  }
  if (!payment.cancel_url.empty()) {
    out["cancelUrl"] = payment.cancel_url;
  }
  if (!payment.webhook_url.empty()) {
    out["webhookUrl"] = payment.webhook_url;
  }
  json::object links{{"self", Link(self + testmode)}};
  if (payment.status == "open") {
    links["checkout"] =
        Link("https://www.mollie.com/checkout/select-method/" + payment.id.substr(3), "text/html");
  }
  links["dashboard"] = Link("https://my.mollie.com/dashboard/" + payment.organization_id +
                                "/payments/" + payment.id,
                            "text/html");
  if (!payment.refunds.empty()) {
    links["refunds"] = Link(self + "/refunds" + testmode);
  }
  links["documentation"] = Link(created
                                    ? "https://docs.mollie.com/reference/v2/payments-api/"
                                      "create-payment"
                                    : "https://docs.mollie.com/reference/v2/payments-api/"
                                      "get-payment",
                                "text/html");
  out["_links"] = std::move(links);
  return out;
}

json::object Simulator::RefundJson(const Refund& refund, const std::string& base) const {
  const Payment& payment = payments_[refund.payment];
  const std::string testmode = TestmodeSuffix(payment.test);
  const std::string payment_url = base + "payments/" + payment.id;
  return json::object{
      {"resource", "refund"},
      {"id", refund.id},
      {"amount", AmountJson(refund.value, refund.currency)},
      {"status", refund.status},
      {"createdAt", IsoTime(refund.created_at_ms)},
      {"description", refund.description},
      {"metadata", refund.metadata},
      {"paymentId", payment.id},
      {"_links",
       {{"self", Link(payment_url + "/refunds/" + refund.id + testmode)},
        {"payment", Link(payment_url + testmode)},
        {"documentation",
         Link("https://docs.mollie.com/reference/v2/refunds-api/create-payment-refund",
              "text/html")}}}};
}

SimResponse Simulator::CreatePayment(const ApiCall& call) {
  auto parsed = ParseApiBody(call.request);
  if (auto* error = std::get_if<SimResponse>(&parsed)) {
    return *std::move(error);
  }
  const json::object& body = std::get<json::object>(parsed);
  Payment payment;
  auto amount = ParseAmount(body);
  if (auto* error = std::get_if<SimResponse>(&amount)) {
    return *std::move(error);
  }
  payment.currency = std::get<Amount>(amount).currency;
  payment.value = std::get<Amount>(amount).value;
  payment.cents = std::get<Amount>(amount).cents;
  if (auto error = ReadDescription(body, true, payment.description)) {
    return *std::move(error);
  }
  for (auto [name, url, out] : {std::tuple{"redirectUrl", true, &payment.redirect_url},
                                std::tuple{"webhookUrl", true, &payment.webhook_url},
                                std::tuple{"cancelUrl", true, &payment.cancel_url},
                                std::tuple{"method", false, &payment.method}}) {
    auto value = OptionalString(body, name, url);
    if (auto* error = std::get_if<SimResponse>(&value)) {
      return *std::move(error);
    }
    *out = std::get<std::optional<std::string>>(value).value_or("");
  }
  if (const json::value* metadata = body.if_contains("metadata")) {
    payment.metadata = *metadata;
  }
  auto test = BodyTestmode(body);
  if (auto* error = std::get_if<SimResponse>(&test)) {
    return *std::move(error);
  }
  payment.test = std::get<bool>(test);
  auto profile = OptionalString(body, "profileId", false);
  if (auto* error = std::get_if<SimResponse>(&profile)) {
    return *std::move(error);
  }
  const std::optional<std::string>& profile_id = std::get<std::optional<std::string>>(profile);
  if (!profile_id) {
    return HalError(422,
                    "The 'profileId' field is missing; it is required with OAuth access tokens",
                    "profileId");
  }
  if (*profile_id != ProfileIdOf(call.organization_id)) {
    return HalError(422, "The profile " + *profile_id + " does not exist or belongs to another "
                         "organization", "profileId");
  }
  payment.profile_id = *profile_id;
  payment.organization_id = call.organization_id;
  payment.status = "open";
  payment.idempotency_key = call.request.idempotency_key;
  payment.created_at_ms = NowMs();
  const size_t index = AddPayment(std::move(payment));
  return JsonResponse(201, PaymentJson(payments_[index], call.base, true), kHalJson);
}

SimResponse Simulator::GetPayment(const ApiCall& call, std::string_view id) {
  const auto fields = QueryFields(call.query);
  if (!fields) {
    return HalError(400, "The query string could not be parsed");
  }
  auto test = QueryTestmode(*fields);
  if (auto* error = std::get_if<SimResponse>(&test)) {
    return *std::move(error);
  }
  auto found = FindPayment(call, id, std::get<bool>(test));
  if (auto* error = std::get_if<SimResponse>(&found)) {
    return *std::move(error);
  }
  return JsonResponse(200, PaymentJson(payments_[std::get<size_t>(found)], call.base, false),
                      kHalJson);
}

SimResponse Simulator::ListPayments(const ApiCall& call) {
  auto parsed = ParsePageQuery(call.query);
  if (auto* error = std::get_if<SimResponse>(&parsed)) {
    return *std::move(error);
  }
  const PageQuery& page = std::get<PageQuery>(parsed);
  // ParsePageQuery has checked the escapes.
  const FormFields fields = QueryFields(call.query).value_or(FormFields());
  auto test_or_error = QueryTestmode(fields);
  if (auto* error = std::get_if<SimResponse>(&test_or_error)) {
    return *std::move(error);
  }
  const bool test = std::get<bool>(test_or_error);
  static const std::vector<size_t> kEmpty;
  const std::vector<size_t>* list = &kEmpty;
  if (auto it = payments_by_organization_.find(call.organization_id);
      it != payments_by_organization_.end()) {
    list = test ? &it->second.test : &it->second.live;
  }
  // Every payment of an organization is on its one profile: another profileId filters all out.
  if (auto it = fields.find("profileId");
      it != fields.end() && it->second != ProfileIdOf(call.organization_id)) {
    list = &kEmpty;
  }
  // Positions count from the oldest; a page runs from `start` towards older payments.
  const auto size = static_cast<int64_t>(list->size());
  int64_t start = size - 1;
  if (!page.from.empty()) {
    auto it = payment_index_.find(page.from);
    if (it == payment_index_.end() || list->empty() ||
        payments_[it->second].organization_id != call.organization_id ||
        payments_[it->second].test != test || (*list)[payments_[it->second].position] != it->second) {
      return HalError(400, "Invalid cursor value", "from");
    }
    start = static_cast<int64_t>(payments_[it->second].position);
  }
  json::array embedded;
  const int64_t end = std::max<int64_t>(start - page.limit, -1);  // exclusive
  for (int64_t i = start; i > end; --i) {
    embedded.push_back(PaymentJson(payments_[(*list)[i]], call.base, false));
  }
  auto link_at = [&](int64_t position) {
    return json::value(Link(PageHref(call.base, "payments", payments_[(*list)[position]].id,
                                     page.limit, page.rest)));
  };
  const auto count = static_cast<int64_t>(embedded.size());
  return JsonResponse(
      200,
      json::object{
          {"count", count},
          {"_embedded", {{"payments", std::move(embedded)}}},
          {"_links",
           {{"self", Link(PageHref(call.base, "payments", page.from, page.limit, page.rest))},
            {"previous", start + 1 < size ? link_at(std::min(size - 1, start + page.limit))
                                          : json::value(nullptr)},
            {"next", end >= 0 ? link_at(end) : json::value(nullptr)},
            {"documentation",
             Link("https://docs.mollie.com/reference/v2/payments-api/list-payments",
                  "text/html")}}}},
      kHalJson);
}

SimResponse Simulator::CreateRefund(const ApiCall& call, std::string_view payment_id) {
  auto parsed = ParseApiBody(call.request);
  if (auto* error = std::get_if<SimResponse>(&parsed)) {
    return *std::move(error);
  }
  const json::object& body = std::get<json::object>(parsed);
  auto test = BodyTestmode(body);
  if (auto* error = std::get_if<SimResponse>(&test)) {
    return *std::move(error);
  }
  auto found = FindPayment(call, payment_id, std::get<bool>(test));
  if (auto* error = std::get_if<SimResponse>(&found)) {
    return *std::move(error);
  }
  const size_t payment_index = std::get<size_t>(found);
  Payment& payment = payments_[payment_index];
  auto amount_or_error = ParseAmount(body);
  if (auto* error = std::get_if<SimResponse>(&amount_or_error)) {
    return *std::move(error);
  }
  const Amount& amount = std::get<Amount>(amount_or_error);
  Refund refund;
  if (auto error = ReadDescription(body, false, refund.description)) {
    return *std::move(error);
  }
  if (payment.status != "paid") {
    return HalError(422, "The payment is not paid, so it cannot be refunded");
  }
  if (amount.currency != payment.currency) {
    return HalError(422, "The refund currency must be the payment's currency " + payment.currency,
                    "amount.currency");
  }
  if (amount.cents > payment.cents - payment.refunded_cents) {
    return HalError(422, "The amount is higher than the amount that can be refunded (" +
                             FormatCents(payment.cents - payment.refunded_cents) + " " +
                             payment.currency + ")",
                    "amount");
  }
  do {
    refund.id = "re_" + RandomAlnum(random_, 10);
  } while (refund_index_.contains(refund.id));
  refund.payment = payment_index;
  refund.currency = amount.currency;
  refund.value = amount.value;
  refund.cents = amount.cents;
  if (const json::value* metadata = body.if_contains("metadata")) {
    refund.metadata = *metadata;
  }
  refund.status = "pending";
  refund.idempotency_key = call.request.idempotency_key;
  refund.created_at_ms = NowMs();
  payment.refunded_cents += amount.cents;
  payment.refunds.push_back(refunds_.size());
  refund_index_[refund.id] = refunds_.size();
  refunds_.push_back(std::move(refund));
  return JsonResponse(201, RefundJson(refunds_.back(), call.base), kHalJson);
}

}  // namespace connectbroker::mollie_sim
