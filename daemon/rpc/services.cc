#include "daemon/rpc/services.h"

#include <google/protobuf/util/time_util.h>

#include "daemon/common/strings.h"

namespace connectbroker::rpc {

namespace v1 = connectbroker::v1;
using google::protobuf::util::TimeUtil;

grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context,
                                    const absl::Status& status) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpc(status));
  return reactor;
}

namespace {

void SetTime(int64_t unix_ms, google::protobuf::Timestamp* out) {
  if (unix_ms > 0) {
    *out = TimeUtil::MillisecondsToTimestamp(unix_ms);
  }
}

}  // namespace

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) {
    return grpc::Status::OK;
  }
  // absl's canonical codes are google.rpc.Code, as are gRPC's.
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

void ToMerchant(const storage::GrantRecord& r, v1::Merchant* out) {
  out->set_organization_id(r.organization_id());
  out->set_organization_name(r.organization_name());
  out->set_account_ref(r.account_ref());
  for (const auto& s : r.scopes()) {
    out->add_scopes(s);
  }
  // Storage and API enums share their numbering.
  out->set_status(static_cast<v1::GrantStatus>(r.status()));
  SetTime(r.access_token_expires_at_ms(), out->mutable_access_token_expires_at());
  SetTime(r.last_refresh_at_ms(), out->mutable_last_refresh_at());
  out->set_last_refresh_outcome(r.last_refresh_outcome());
  out->set_consecutive_failures(r.consecutive_failures());
  SetTime(r.next_refresh_at_ms(), out->mutable_next_refresh_at());
  out->set_generation(r.generation());
  out->set_refresh_count(r.refresh_count());
  SetTime(r.created_at_ms(), out->mutable_created_at());
  SetTime(r.updated_at_ms(), out->mutable_updated_at());
}

grpc::ServerUnaryReactor* TokenServiceImpl::GetAccessToken(
    grpc::CallbackServerContext* context, const v1::GetAccessTokenRequest* request,
    v1::GetAccessTokenResponse* response) {
  broker::MerchantKey key;
  switch (request->merchant_case()) {
    case v1::GetAccessTokenRequest::kOrganizationId:
      if (auto s = broker::ValidateOrganizationId(request->organization_id()); !s.ok()) {
        return FinishNow(context, s);
      }
      key.organization_id = request->organization_id();
      break;
    case v1::GetAccessTokenRequest::kAccountRef:
      if (auto s = broker::ValidateAccountRef(request->account_ref()); !s.ok()) {
        return FinishNow(context, s);
      }
      key.account_ref = request->account_ref();
      break;
    default:
      return FinishNow(context, absl::InvalidArgumentError(
                                    "set organization_id or account_ref to name the merchant"));
  }
  std::chrono::milliseconds min_ttl{0};
  if (request->has_min_ttl()) {
    const auto& d = request->min_ttl();
    if (d.seconds() < 0 || d.nanos() < 0) {
      return FinishNow(context, absl::InvalidArgumentError("min_ttl must not be negative"));
    }
    if (d.nanos() > 999999999) {
      return FinishNow(context, absl::InvalidArgumentError("min_ttl has nanos out of range"));
    }
    if (d.seconds() > max_min_ttl_.count()) {
      return FinishNow(context, absl::InvalidArgumentError(StrCat(
                                    "min_ttl must be at most ", max_min_ttl_.count(), "s")));
    }
    min_ttl = std::chrono::milliseconds(TimeUtil::DurationToMilliseconds(d));
  }
  auto* reactor = context->DefaultReactor();
  manager_.GetAccessToken(
      key, min_ttl, [reactor, response](absl::StatusOr<broker::TokenSnapshotPtr> result) {
        if (!result.ok()) {
          reactor->Finish(ToGrpc(result.status()));
          return;
        }
        const broker::TokenSnapshot& t = **result;
        response->set_access_token(t.access_token.Reveal());
        *response->mutable_expires_at() = TimeUtil::MillisecondsToTimestamp(
            ToUnixMillis(t.expires_at));
        for (const auto& s : t.scopes) {
          response->add_scopes(s);
        }
        response->set_organization_id(t.organization_id);
        response->set_generation(t.generation);
        reactor->Finish(grpc::Status::OK);
      });
  return reactor;
}

grpc::ServerUnaryReactor* OnboardingServiceImpl::BeginAuthorization(
    grpc::CallbackServerContext* context, const v1::BeginAuthorizationRequest* request,
    v1::BeginAuthorizationResponse* response) {
  broker::BeginAuthorizationParams p;
  p.account_ref = request->account_ref();
  p.scopes.assign(request->scopes().begin(), request->scopes().end());
  switch (request->approval_prompt()) {
    case v1::APPROVAL_PROMPT_UNSPECIFIED:
      break;
    case v1::APPROVAL_PROMPT_AUTO:
      p.approval_prompt = "auto";
      break;
    case v1::APPROVAL_PROMPT_FORCE:
      p.approval_prompt = "force";
      break;
    default:
      return FinishNow(context, absl::InvalidArgumentError("unknown approval_prompt"));
  }
  switch (request->landing_page()) {
    case v1::LANDING_PAGE_UNSPECIFIED:
      break;
    case v1::LANDING_PAGE_LOGIN:
      p.landing_page = "login";
      break;
    case v1::LANDING_PAGE_SIGNUP:
      p.landing_page = "signup";
      break;
    default:
      return FinishNow(context, absl::InvalidArgumentError("unknown landing_page"));
  }
  p.locale = request->locale();
  auto result = manager_.BeginAuthorization(p);
  if (!result.ok()) {
    return FinishNow(context, result.status());
  }
  response->set_authorize_url(result->authorize_url);
  response->set_state(result->state);
  *response->mutable_expires_at() =
      TimeUtil::MillisecondsToTimestamp(ToUnixMillis(result->expires_at));
  return FinishNow(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* OnboardingServiceImpl::CompleteAuthorization(
    grpc::CallbackServerContext* context, const v1::CompleteAuthorizationRequest* request,
    v1::CompleteAuthorizationResponse* response) {
  if (request->code().empty() || request->state().empty()) {
    return FinishNow(context, absl::InvalidArgumentError("code and state are required"));
  }
  auto* reactor = context->DefaultReactor();
  manager_.CompleteAuthorization(
      request->code(), request->state(),
      [reactor, response](absl::StatusOr<storage::GrantRecord> result) {
        if (!result.ok()) {
          reactor->Finish(ToGrpc(result.status()));
          return;
        }
        ToMerchant(*result, response->mutable_merchant());
        reactor->Finish(grpc::Status::OK);
      });
  return reactor;
}

}  // namespace connectbroker::rpc
