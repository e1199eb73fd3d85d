#include "daemon/rpc/proxy_service.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <mutex>

#include "daemon/common/strings.h"
#include "daemon/rpc/services.h"

namespace connectbroker::rpc {

namespace v1 = connectbroker::v1;
namespace json = boost::json;

namespace {

template <typename Request>
absl::StatusOr<broker::MerchantKey> MerchantOf(const Request& request) {
  broker::MerchantKey key;
  switch (request.merchant_case()) {
    case Request::kOrganizationId:
      if (auto s = broker::ValidateOrganizationId(request.organization_id()); !s.ok()) {
        return s;
      }
      key.organization_id = request.organization_id();
      return key;
    case Request::kAccountRef:
      if (auto s = broker::ValidateAccountRef(request.account_ref()); !s.ok()) {
        return s;
      }
      key.account_ref = request.account_ref();
      return key;
    default:
      return absl::InvalidArgumentError("set organization_id or account_ref to name the merchant");
  }
}

template <typename Fields>
std::vector<std::pair<std::string, std::string>> Pairs(const Fields& fields) {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(fields.size());
  for (const auto& f : fields) {
    out.emplace_back(f.name(), f.value());
  }
  return out;
}

template <typename Message>
void SetHeaders(const mollie::HeaderList& headers, Message* out) {
  for (const auto& [name, value] : headers) {
    auto* h = out->add_headers();
    h->set_name(name);
    h->set_value(value);
  }
}

// The remaining time the caller allows; grpc gives time_point::max() when it set no deadline.
std::chrono::nanoseconds Remaining(grpc::CallbackServerContext* context, const Clock& clock) {
  const auto deadline = context->deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) {
    return std::chrono::hours(24);
  }
  return deadline - clock.Now();
}

class CallPagedReactor final : public grpc::ServerWriteReactor<v1::ProxyPage> {
 public:
  CallPagedReactor(proxy::Proxy& proxy, const Clock& clock, grpc::CallbackServerContext* context,
                   proxy::PreparedCall first, int64_t max_items)
      : proxy_(proxy), clock_(clock), context_(context), call_(std::move(first)),
        max_items_(max_items) {
    std::lock_guard lock(mu_);
    FetchLocked();
  }

  // grpc::ServerWriteReactor
  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed by the caller"));
      return;
    }
    if (last_ || cancelled_) {
      Finish(cancelled_ ? grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the caller")
                        : ToGrpc(after_last_));
      return;
    }
    FetchLocked();
  }
  // A fetch or a write is always in flight until Finish; its completion finishes the call. A
  // fetch is cancelled so that its upstream request stops now, not at its deadline.
  void OnCancel() override {
    std::lock_guard lock(mu_);
    cancelled_ = true;
    if (fetch_) {
      fetch_->Cancel();
    }
  }
  void OnDone() override { delete this; }

 private:
  void FetchLocked() {
    const std::chrono::nanoseconds remaining = Remaining(context_, clock_);
    if (remaining <= std::chrono::nanoseconds(0)) {
      Finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          StrCat("deadline passed before page ", page_number_ + 1)));
      return;
    }
    fetch_ = proxy_.NewCall();
    proxy_.Start(fetch_, call_, proxy_.DeadlineFor(remaining),
                 [this](absl::StatusOr<proxy::ProxyResult> r) { OnPage(std::move(r)); });
  }

  void OnPage(absl::StatusOr<proxy::ProxyResult> result) {
    std::lock_guard lock(mu_);
    fetch_.reset();
    if (cancelled_) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the caller"));
      return;
    }
    if (!result.ok()) {
      Finish(ToGrpc(result.status()));
      return;
    }
    ++page_number_;
    page_.Clear();
    page_.set_status(result->status);
    page_.set_page_number(page_number_);
    SetHeaders(result->headers, &page_);
    if (result->status < 200 || result->status >= 300) {
      // Mollie's answer, unchanged, is the stream's last message.
      page_.set_body(std::move(result->body));
      last_ = true;
      StartWrite(&page_);
      return;
    }
    absl::Status parsed = TakeItems(result->body);
    if (!parsed.ok()) {
      Finish(ToGrpc(parsed));
      return;
    }
    StartWrite(&page_);
  }

  // Fills page_.items from a HAL list body and decides what comes next.
  absl::Status TakeItems(const std::string& body) {
    const std::string where = StrCat("page ", page_number_, " of ", call_.target);
    boost::system::error_code ec;
    json::value doc = json::parse(body, ec);
    if (ec || !doc.is_object()) {
      return absl::InternalError(StrCat(where, " is not a JSON object"));
    }
    const json::object& obj = doc.as_object();
    const json::value* embedded = obj.if_contains("_embedded");
    if (embedded == nullptr || !embedded->is_object() || embedded->as_object().size() != 1 ||
        !embedded->as_object().begin()->value().is_array()) {
      return absl::InternalError(
          StrCat(where, " is not a Mollie list (no _embedded with one array); use Call"));
    }
    const auto& entry = *embedded->as_object().begin();
    page_.set_embedded_key(std::string(entry.key()));
    for (const json::value& item : entry.value().as_array()) {
      if (max_items_ > 0 && sent_ >= max_items_) {
        break;
      }
      page_.add_items(json::serialize(item));
      ++sent_;
    }
    if (max_items_ > 0 && sent_ >= max_items_) {
      last_ = true;
      return absl::OkStatus();
    }
    const json::value* next = nullptr;
    if (const json::value* links = obj.if_contains("_links"); links && links->is_object()) {
      next = links->as_object().if_contains("next");
    }
    if (next == nullptr || next->is_null()) {
      last_ = true;
      return absl::OkStatus();
    }
    const json::value* href = next->is_object() ? next->as_object().if_contains("href") : nullptr;
    if (href == nullptr || !href->is_string()) {
      last_ = true;
      after_last_ = absl::InternalError(StrCat(where, ": _links.next has no href"));
      return absl::OkStatus();
    }
    absl::StatusOr<proxy::PreparedCall> following =
        proxy_.NextPage(call_, std::string(href->as_string()));
    if (!following.ok()) {
      // Send what we have, then end with the reason we cannot go on.
      last_ = true;
      after_last_ = following.status();
      return absl::OkStatus();
    }
    call_ = *std::move(following);
    return absl::OkStatus();
  }

  proxy::Proxy& proxy_;
  const Clock& clock_;
  grpc::CallbackServerContext* context_;
  std::mutex mu_;
  proxy::PreparedCall call_;  // the next page's request
  proxy::ProxyCallHandlePtr fetch_;  // the page being fetched, if any
  const int64_t max_items_;
  int64_t sent_ = 0;
  int page_number_ = 0;
  bool last_ = false;
  bool cancelled_ = false;
  absl::Status after_last_;
  v1::ProxyPage page_;
};

// Call's reactor: finishes from the proxy's strand; a cancelled RPC (the caller gave up, or the
// server is shutting down) cancels the upstream request instead of waiting for its deadline.
class CallReactor final : public grpc::ServerUnaryReactor {
 public:
  CallReactor(proxy::Proxy& proxy, v1::ProxyResponse* response)
      : handle_(proxy.NewCall()), response_(response) {}

  void Start(proxy::Proxy& proxy, proxy::PreparedCall call, MonoTime deadline) {
    proxy.Start(handle_, std::move(call), deadline, [this](absl::StatusOr<proxy::ProxyResult> r) {
      if (!r.ok()) {
        Finish(ToGrpc(r.status()));
        return;
      }
      response_->set_status(r->status);
      SetHeaders(r->headers, response_);
      response_->set_body(std::move(r->body));
      response_->set_attempts(r->attempts);
      response_->set_token_refreshed(r->token_refreshed);
      Finish(grpc::Status::OK);
    });
  }

  // grpc::ServerUnaryReactor
  void OnCancel() override { handle_->Cancel(); }
  void OnDone() override { delete this; }

 private:
  const proxy::ProxyCallHandlePtr handle_;
  v1::ProxyResponse* response_;
};

class RejectedPaged final : public grpc::ServerWriteReactor<v1::ProxyPage> {
 public:
  explicit RejectedPaged(const absl::Status& s) { Finish(ToGrpc(s)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerUnaryReactor* ProxyServiceImpl::Call(grpc::CallbackServerContext* context,
                                                 const v1::ProxyRequest* request,
                                                 v1::ProxyResponse* response) {
  absl::StatusOr<broker::MerchantKey> merchant = MerchantOf(*request);
  if (!merchant.ok()) {
    return FinishNow(context, merchant.status());
  }
  proxy::ProxyCall call;
  call.merchant = *std::move(merchant);
  call.method = request->method();
  call.path = request->path();
  call.query = Pairs(request->query());
  call.headers = Pairs(request->headers());
  call.body = request->body();
  call.testmode = request->testmode();
  call.idempotency_key = request->idempotency_key();
  call.derive_idempotency_key = request->derive_idempotency_key();
  call.request_id = request->request_id();
  absl::StatusOr<proxy::PreparedCall> prepared = proxy_.Prepare(call);
  if (!prepared.ok()) {
    return FinishNow(context, prepared.status());
  }
  const std::chrono::nanoseconds remaining = Remaining(context, clock_);
  if (remaining <= std::chrono::nanoseconds(0)) {
    return FinishNow(context, absl::DeadlineExceededError("the call's deadline has passed"));
  }
  auto* reactor = new CallReactor(proxy_, response);
  reactor->Start(proxy_, *std::move(prepared), proxy_.DeadlineFor(remaining));
  return reactor;
}

grpc::ServerWriteReactor<v1::ProxyPage>* ProxyServiceImpl::CallPaged(
    grpc::CallbackServerContext* context, const v1::ProxyPagedRequest* request) {
  absl::StatusOr<broker::MerchantKey> merchant = MerchantOf(*request);
  if (!merchant.ok()) {
    return new RejectedPaged(merchant.status());
  }
  if (request->max_items() < 0) {
    return new RejectedPaged(absl::InvalidArgumentError("max_items must not be negative"));
  }
  proxy::ProxyCall call;
  call.merchant = *std::move(merchant);
  call.method = "GET";
  call.path = request->path();
  call.query = Pairs(request->query());
  call.headers = Pairs(request->headers());
  call.testmode = request->testmode();
  absl::StatusOr<proxy::PreparedCall> prepared = proxy_.Prepare(call);
  if (!prepared.ok()) {
    return new RejectedPaged(prepared.status());
  }
  return new CallPagedReactor(proxy_, clock_, context, *std::move(prepared),
                              request->max_items());
}

}  // namespace connectbroker::rpc
