// AdminService: list, show, refresh, revoke, import, delete, watch events, stats.
#include <google/protobuf/util/time_util.h>

#include <map>
#include <mutex>

#include "daemon/common/log.h"
#include "daemon/common/strings.h"
#include "daemon/rpc/services.h"

namespace connectbroker::rpc {

namespace v1 = connectbroker::v1;
using google::protobuf::util::TimeUtil;

namespace {

void ToEvent(const storage::EventRecord& e, v1::Event* out) {
  out->set_sequence(e.sequence());
  *out->mutable_time() = TimeUtil::MillisecondsToTimestamp(e.time_ms());
  out->set_type(static_cast<v1::EventType>(e.type()));
  out->set_organization_id(e.organization_id());
  out->set_status(static_cast<v1::GrantStatus>(e.status()));
  out->set_generation(e.generation());
  out->set_detail(e.detail());
}

// Finishes `reactor` with the record (or error) a GrantManager call produced.
auto MerchantDone(grpc::ServerUnaryReactor* reactor, v1::Merchant* response) {
  return [reactor, response](absl::StatusOr<storage::GrantRecord> result) {
    if (!result.ok()) {
      reactor->Finish(ToGrpc(result.status()));
      return;
    }
    ToMerchant(*result, response);
    reactor->Finish(grpc::Status::OK);
  };
}

// Streams the retained backlog page by page, then live events from the EventHub. Events are
// durable before they are published, so the backlog (read from the store) and the live feed
// overlap rather than leave a gap; the sequence number removes the overlap.
class WatchEventsReactor final : public grpc::ServerWriteReactor<v1::Event> {
 public:
  WatchEventsReactor(broker::GrantManager& manager, const v1::WatchEventsRequest& request)
      : manager_(manager),
        organization_id_(request.organization_id()),
        follow_(!request.no_follow()),
        cursor_(request.after_sequence()) {
    auto oldest = manager_.OldestEventSequence();
    if (!oldest.ok()) {
      Finish(ToGrpc(oldest.status()));
      return;
    }
    auto last = manager_.LastEventSequence();
    if (!last.ok()) {
      Finish(ToGrpc(last.status()));
      return;
    }
    if (request.after_sequence() > *last) {
      // A cursor from the future (another broker's log, a typo) would silently skip every event
      // up to it.
      Finish(grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                          StrCat("after_sequence ", request.after_sequence(),
                                 " is beyond the newest event (", *last, ")")));
      return;
    }
    if (request.after_sequence() > 0 && *oldest > request.after_sequence() + 1) {
      Finish(grpc::Status(grpc::StatusCode::OUT_OF_RANGE,
                          StrCat("events after ", request.after_sequence(),
                                 " are no longer retained; the oldest is ", *oldest)));
      return;
    }
    subscription_ = manager_.events().Subscribe(
        [this](const storage::EventRecord& e) { OnLive(e); });
    std::lock_guard lock(mu_);
    FillLocked();
    WriteNextLocked();
  }

  // grpc::ServerWriteReactor
  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed"));
      return;
    }
    FillLocked();
    WriteNextLocked();
  }
  void OnCancel() override {
    std::lock_guard lock(mu_);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the caller"));
  }
  void OnDone() override {
    if (subscription_ != 0) {
      manager_.events().Unsubscribe(subscription_);
    }
    delete this;
  }

 private:
  static constexpr int kPage = 1000;
  static constexpr size_t kMaxBuffered = 10000;

  void OnLive(const storage::EventRecord& e) {
    std::lock_guard lock(mu_);
    if (!live_ || finished_ || e.sequence() <= cursor_) {
      return;  // the backlog reader will pick it up from the store
    }
    if (pending_.size() >= kMaxBuffered) {
      // A watcher that cannot keep up is dropped rather than buffering without bound.
      FinishLocked(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                "watcher too slow; resume with after_sequence"));
      return;
    }
    Add(e);
    cursor_ = e.sequence();
    WriteNextLocked();
  }

  void Add(const storage::EventRecord& e) {
    if (!organization_id_.empty() && e.organization_id() != organization_id_) {
      return;
    }
    ToEvent(e, &pending_[e.sequence()]);
  }

  // Reads backlog pages while nothing is queued and the backlog is not exhausted.
  void FillLocked() {
    while (!live_ && !finished_ && pending_.empty()) {
      auto page = manager_.ReadEvents(cursor_, kPage);
      if (!page.ok()) {
        FinishLocked(ToGrpc(page.status()));
        return;
      }
      for (const auto& e : *page) {
        Add(e);
        cursor_ = e.sequence();
      }
      if (static_cast<int>(page->size()) < kPage) {
        if (!follow_) {
          backlog_done_ = true;
          return;
        }
        // From here on the hub delivers; events published before this point are in the store
        // and are caught up by one more read.
        live_ = true;
        auto catch_up = manager_.ReadEvents(cursor_, kPage);
        if (catch_up.ok()) {
          for (const auto& e : *catch_up) {
            Add(e);
            cursor_ = e.sequence();
          }
        }
      }
    }
  }

  void WriteNextLocked() {
    if (writing_ || finished_) {
      return;
    }
    if (pending_.empty()) {
      if (backlog_done_) {
        FinishLocked(grpc::Status::OK);
      }
      return;
    }
    current_ = std::move(pending_.begin()->second);
    pending_.erase(pending_.begin());
    writing_ = true;
    StartWrite(&current_);
  }

  void FinishLocked(const grpc::Status& status) {
    if (finished_) {
      return;
    }
    finished_ = true;
    Finish(status);
  }

  broker::GrantManager& manager_;
  const std::string organization_id_;
  const bool follow_;
  uint64_t subscription_ = 0;
  std::mutex mu_;
  uint64_t cursor_;  // highest sequence read or queued
  bool live_ = false;
  bool backlog_done_ = false;
  bool writing_ = false;
  bool finished_ = false;
  std::map<uint64_t, v1::Event> pending_;
  v1::Event current_;
};

}  // namespace

grpc::ServerUnaryReactor* AdminServiceImpl::ListMerchants(
    grpc::CallbackServerContext* context, const v1::ListMerchantsRequest* request,
    v1::ListMerchantsResponse* response) {
  if (request->page_size() < 0 || request->page_size() > 1000) {
    return FinishNow(context, absl::InvalidArgumentError("page_size must be 0..1000"));
  }
  if (!v1::GrantStatus_IsValid(request->status())) {
    return FinishNow(context, absl::InvalidArgumentError("unknown status filter"));
  }
  if (request->page_token().size() > 128) {
    return FinishNow(context, absl::InvalidArgumentError("malformed page_token"));
  }
  auto page = manager_.ListMerchants(static_cast<storage::GrantStatus>(request->status()),
                                     request->page_size() == 0 ? 100 : request->page_size(),
                                     request->page_token());
  if (!page.ok()) {
    return FinishNow(context, page.status());
  }
  for (const auto& r : page->records) {
    ToMerchant(r, response->add_merchants());
  }
  response->set_next_page_token(page->next_page_token);
  return FinishNow(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetMerchant(grpc::CallbackServerContext* context,
                                                        const v1::GetMerchantRequest* request,
                                                        v1::Merchant* response) {
  if (auto s = broker::ValidateOrganizationId(request->organization_id()); !s.ok()) {
    return FinishNow(context, s);
  }
  auto record = manager_.GetMerchant(request->organization_id());
  if (!record.ok()) {
    if (record.status().code() == absl::StatusCode::kNotFound) {
      return FinishNow(context, absl::NotFoundError(
                                    StrCat("unknown merchant ", request->organization_id())));
    }
    return FinishNow(context, record.status());
  }
  ToMerchant(*record, response);
  return FinishNow(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* AdminServiceImpl::RefreshMerchant(
    grpc::CallbackServerContext* context, const v1::RefreshMerchantRequest* request,
    v1::Merchant* response) {
  if (auto s = broker::ValidateOrganizationId(request->organization_id()); !s.ok()) {
    return FinishNow(context, s);
  }
  auto* reactor = context->DefaultReactor();
  manager_.RefreshNow(request->organization_id(),
                      [reactor, response](absl::StatusOr<storage::GrantRecord> result) {
                        if (!result.ok()) {
                          reactor->Finish(ToGrpc(result.status()));
                          return;
                        }
                        ToMerchant(*result, response);
                        reactor->Finish(grpc::Status::OK);
                      });
  return reactor;
}

grpc::ServerUnaryReactor* AdminServiceImpl::RevokeMerchant(
    grpc::CallbackServerContext* context, const v1::RevokeMerchantRequest* request,
    v1::Merchant* response) {
  if (auto s = broker::ValidateOrganizationId(request->organization_id()); !s.ok()) {
    return FinishNow(context, s);
  }
  auto* reactor = context->DefaultReactor();
  manager_.RevokeMerchant(request->organization_id(), MerchantDone(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* AdminServiceImpl::ImportMerchant(
    grpc::CallbackServerContext* context, const v1::ImportMerchantRequest* request,
    v1::Merchant* response) {
  if (request->refresh_token().empty()) {
    return FinishNow(context, absl::InvalidArgumentError("refresh_token is required"));
  }
  if (!request->account_ref().empty()) {
    if (auto s = broker::ValidateAccountRef(request->account_ref()); !s.ok()) {
      return FinishNow(context, s);
    }
  }
  if (!request->redirect_uri().empty() && request->redirect_uri().rfind("https://", 0) != 0 &&
      request->redirect_uri().rfind("http://", 0) != 0) {
    return FinishNow(context, absl::InvalidArgumentError("redirect_uri must be an http(s) URL"));
  }
  auto* reactor = context->DefaultReactor();
  manager_.ImportGrant(SecretString(request->refresh_token()), request->redirect_uri(),
                       request->account_ref(), MerchantDone(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* AdminServiceImpl::DeleteMerchant(
    grpc::CallbackServerContext* context, const v1::DeleteMerchantRequest* request,
    v1::DeleteMerchantResponse*) {
  if (auto s = broker::ValidateOrganizationId(request->organization_id()); !s.ok()) {
    return FinishNow(context, s);
  }
  auto* reactor = context->DefaultReactor();
  manager_.DeleteMerchant(request->organization_id(),
                          [reactor](absl::Status s) { reactor->Finish(ToGrpc(s)); });
  return reactor;
}

grpc::ServerWriteReactor<v1::Event>* AdminServiceImpl::WatchEvents(
    grpc::CallbackServerContext*, const v1::WatchEventsRequest* request) {
  if (!request->organization_id().empty()) {
    if (auto s = broker::ValidateOrganizationId(request->organization_id()); !s.ok()) {
      class Rejected final : public grpc::ServerWriteReactor<v1::Event> {
       public:
        explicit Rejected(const absl::Status& s) { Finish(ToGrpc(s)); }
        void OnDone() override { delete this; }
      };
      return new Rejected(s);
    }
  }
  return new WatchEventsReactor(manager_, *request);
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetStats(grpc::CallbackServerContext* context,
                                                     const v1::GetStatsRequest*,
                                                     v1::Stats* response) {
  broker::ManagerStats s = manager_.Stats();
  response->set_grants(s.grants);
  response->set_scheduled(s.scheduled);
  response->set_refreshes_in_flight(s.refreshes_in_flight);
  response->set_refreshes_ok(s.refreshes_ok);
  response->set_refreshes_failed(s.refreshes_failed);
  response->set_refresh_paused(s.paused);
  response->set_pause_reason(s.pause_reason);
  if (proxy_ != nullptr) {
    const proxy::ProxyStats& p = proxy_->stats();
    response->set_proxy_calls(p.calls);
    response->set_proxy_failures(p.failures);
    response->set_proxy_retries(p.retries);
    response->set_proxy_token_refreshes(p.token_refreshes);
    response->set_proxy_upstream_2xx(p.upstream_by_class[2]);
    response->set_proxy_upstream_4xx(p.upstream_by_class[4]);
    response->set_proxy_upstream_5xx(p.upstream_by_class[5]);
    const mollie::TransportStats t = proxy_->transport().Stats();
    response->set_proxy_connections_opened(t.connections_opened);
    response->set_proxy_open_connections(static_cast<uint64_t>(t.open_connections));
  }
  return FinishNow(context, absl::OkStatus());
}

}  // namespace connectbroker::rpc
