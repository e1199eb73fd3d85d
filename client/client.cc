// BrokerClient: blocking calls with deadlines over the generated stubs; WatchCanceller.
#include "connectbroker/client.h"

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/sync_stream.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"

namespace connectbroker::client {
namespace {

// Marks a status produced because no connection to the daemon was ever established.
constexpr char kUnreachablePayload[] = "type.connectbroker.dev/client.Unreachable";

absl::Status Unreachable(absl::StatusCode code, const std::string& address,
                         const std::string& reason) {
  absl::Status out(code, "cannot reach the connect-broker daemon at " + address + ": " + reason);
  out.SetPayload(kUnreachablePayload, absl::Cord("1"));
  return out;
}

}  // namespace

std::shared_ptr<grpc::Channel> CreateChannel(const std::string& address) {
  return grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
}

bool IsUnreachable(const absl::Status& status) {
  return !status.ok() && status.GetPayload(kUnreachablePayload).has_value();
}

BrokerClient::BrokerClient(std::shared_ptr<grpc::Channel> channel, std::string address,
                           std::chrono::milliseconds timeout)
    : channel_(std::move(channel)),
      address_(std::move(address)),
      timeout_(timeout),
      admin_(v1::AdminService::NewStub(channel_)),
      token_(v1::TokenService::NewStub(channel_)),
      onboarding_(v1::OnboardingService::NewStub(channel_)),
      proxy_(v1::ProxyService::NewStub(channel_)) {}

void WatchCanceller::Cancel() {
  std::lock_guard lock(mu_);
  cancelled_ = true;
  if (context_ != nullptr) {
    context_->TryCancel();
  }
}

bool WatchCanceller::cancelled() const {
  std::lock_guard lock(mu_);
  return cancelled_;
}

bool WatchCanceller::Register(grpc::ClientContext* context) {
  std::lock_guard lock(mu_);
  if (cancelled_) {
    return false;
  }
  context_ = context;
  return true;
}

void WatchCanceller::Unregister() {
  std::lock_guard lock(mu_);
  context_ = nullptr;
}

absl::Status BrokerClient::Convert(const grpc::Status& status, bool was_connected) const {
  if (status.ok()) {
    return absl::OkStatus();
  }
  const auto code = static_cast<absl::StatusCode>(status.error_code());
  // The daemon itself may answer UNAVAILABLE (Mollie unreachable); only a channel that never got
  // READY means that we could not reach the daemon.
  const bool connected =
      was_connected || channel_->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY;
  if (!connected &&
      (code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded)) {
    return Unreachable(code, address_, status.error_message());
  }
  return absl::Status(code, status.error_message());
}

absl::Status BrokerClient::AwaitConnection(std::chrono::system_clock::time_point deadline,
                                           const WatchCanceller* canceller) const {
  // Short slices so that a cancel (Ctrl-C) while connecting takes effect promptly.
  constexpr auto kSlice = std::chrono::milliseconds(100);
  grpc_connectivity_state state = channel_->GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY && state != GRPC_CHANNEL_TRANSIENT_FAILURE &&
         state != GRPC_CHANNEL_SHUTDOWN) {
    if (canceller != nullptr && canceller->cancelled()) {
      return absl::OkStatus();
    }
    const auto now = std::chrono::system_clock::now();
    if (now >= deadline) {
      return Unreachable(absl::StatusCode::kDeadlineExceeded, address_,
                         "no connection within the timeout");
    }
    channel_->WaitForStateChange(state, std::min(deadline, now + kSlice));
    state = channel_->GetState(/*try_to_connect=*/true);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::Merchant>> BrokerClient::ListMerchants(v1::GrantStatus status,
                                                                      int limit) {
  const auto deadline = std::chrono::system_clock::now() + timeout_;
  std::vector<v1::Merchant> out;
  v1::ListMerchantsRequest request;
  request.set_status(status);
  if (limit > 0) {
    request.set_page_size(std::min(limit, 1000));
  }
  while (true) {
    grpc::ClientContext context;
    context.set_deadline(deadline);
    v1::ListMerchantsResponse response;
    absl::Status s = Convert(admin_->ListMerchants(&context, request, &response));
    if (!s.ok()) {
      return s;
    }
    for (v1::Merchant& m : *response.mutable_merchants()) {
      if (limit > 0 && out.size() >= static_cast<size_t>(limit)) {
        return out;
      }
      out.push_back(std::move(m));
    }
    if (response.next_page_token().empty() ||
        (limit > 0 && out.size() >= static_cast<size_t>(limit))) {
      return out;
    }
    if (response.next_page_token() == request.page_token()) {
      return absl::InternalError("daemon returned the same page token twice");
    }
    request.set_page_token(response.next_page_token());
  }
}

absl::StatusOr<v1::Merchant> BrokerClient::GetMerchant(const std::string& organization_id) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout_);
  v1::GetMerchantRequest request;
  request.set_organization_id(organization_id);
  v1::Merchant response;
  absl::Status s = Convert(admin_->GetMerchant(&context, request, &response));
  if (!s.ok()) {
    return s;
  }
  return response;
}

absl::StatusOr<v1::Merchant> BrokerClient::RefreshMerchant(const std::string& organization_id) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout_);
  v1::RefreshMerchantRequest request;
  request.set_organization_id(organization_id);
  v1::Merchant response;
  absl::Status s = Convert(admin_->RefreshMerchant(&context, request, &response));
  if (!s.ok()) {
    return s;
  }
  return response;
}

absl::StatusOr<v1::Merchant> BrokerClient::RevokeMerchant(const std::string& organization_id) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout_);
  v1::RevokeMerchantRequest request;
  request.set_organization_id(organization_id);
  v1::Merchant response;
  absl::Status s = Convert(admin_->RevokeMerchant(&context, request, &response));
  if (!s.ok()) {
    return s;
  }
  return response;
}

absl::StatusOr<v1::Merchant> BrokerClient::ImportMerchant(
    const v1::ImportMerchantRequest& request) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout_);
  v1::Merchant response;
  absl::Status s = Convert(admin_->ImportMerchant(&context, request, &response));
  if (!s.ok()) {
    return s;
  }
  return response;
}

absl::Status BrokerClient::DeleteMerchant(const std::string& organization_id) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout_);
  v1::DeleteMerchantRequest request;
  request.set_organization_id(organization_id);
  v1::DeleteMerchantResponse response;
  return Convert(admin_->DeleteMerchant(&context, request, &response));
}

absl::StatusOr<v1::Stats> BrokerClient::GetStats() {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout_);
  v1::Stats response;
  absl::Status s = Convert(admin_->GetStats(&context, v1::GetStatsRequest(), &response));
  if (!s.ok()) {
    return s;
  }
  return response;
}

absl::Status BrokerClient::WatchEvents(const v1::WatchEventsRequest& request,
                                       const std::function<void(const v1::Event&)>& on_event,
                                       WatchCanceller* canceller) {
  const auto deadline = std::chrono::system_clock::now() + timeout_;
  grpc::ClientContext context;
  bool was_connected = false;
  if (request.no_follow()) {
    context.set_deadline(deadline);
  } else {
    // Following has no overall deadline; only connecting is bounded.
    absl::Status s = AwaitConnection(deadline, canceller);
    if (!s.ok()) {
      return s;
    }
    was_connected = channel_->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY;
  }
  if (canceller != nullptr && !canceller->Register(&context)) {
    return absl::OkStatus();  // cancelled before the stream started
  }
  grpc::Status status;
  {
    std::unique_ptr<grpc::ClientReader<v1::Event>> reader = admin_->WatchEvents(&context, request);
    v1::Event event;
    while (reader->Read(&event)) {
      on_event(event);
    }
    status = reader->Finish();
  }
  if (canceller != nullptr) {
    canceller->Unregister();
    if (canceller->cancelled()) {
      return absl::OkStatus();
    }
  }
  return Convert(status, was_connected);
}

absl::StatusOr<v1::GetAccessTokenResponse> BrokerClient::GetAccessToken(
    const v1::GetAccessTokenRequest& request) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout_);
  v1::GetAccessTokenResponse response;
  absl::Status s = Convert(token_->GetAccessToken(&context, request, &response));
  if (!s.ok()) {
    return s;
  }
  return response;
}

absl::StatusOr<v1::BeginAuthorizationResponse> BrokerClient::BeginAuthorization(
    const v1::BeginAuthorizationRequest& request) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout_);
  v1::BeginAuthorizationResponse response;
  absl::Status s = Convert(onboarding_->BeginAuthorization(&context, request, &response));
  if (!s.ok()) {
    return s;
  }
  return response;
}

absl::StatusOr<v1::Merchant> BrokerClient::CompleteAuthorization(const std::string& code,
                                                                 const std::string& state) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout_);
  v1::CompleteAuthorizationRequest request;
  request.set_code(code);
  request.set_state(state);
  v1::CompleteAuthorizationResponse response;
  absl::Status s = Convert(onboarding_->CompleteAuthorization(&context, request, &response));
  if (!s.ok()) {
    return s;
  }
  return std::move(*response.mutable_merchant());
}

absl::StatusOr<v1::ProxyResponse> BrokerClient::Call(
    const v1::ProxyRequest& request,
    std::optional<std::chrono::system_clock::time_point> deadline) {
  grpc::ClientContext context;
  context.set_deadline(deadline.value_or(std::chrono::system_clock::now() + timeout_));
  v1::ProxyResponse response;
  absl::Status s = Convert(proxy_->Call(&context, request, &response));
  if (!s.ok()) {
    return s;
  }
  return response;
}

absl::Status BrokerClient::CallPaged(
    const v1::ProxyPagedRequest& request,
    const std::function<absl::Status(const v1::ProxyPage&)>& on_page,
    std::optional<std::chrono::system_clock::time_point> deadline) {
  grpc::ClientContext context;
  context.set_deadline(deadline.value_or(std::chrono::system_clock::now() + timeout_));
  absl::Status stopped;
  bool received = false;
  grpc::Status status;
  {
    std::unique_ptr<grpc::ClientReader<v1::ProxyPage>> reader =
        proxy_->CallPaged(&context, request);
    v1::ProxyPage page;
    while (reader->Read(&page)) {
      received = true;
      stopped = on_page(page);
      if (!stopped.ok()) {
        // Finish() after TryCancel() returns CANCELLED; the caller's reason is what matters.
        context.TryCancel();
        break;
      }
    }
    status = reader->Finish();
  }
  if (!stopped.ok()) {
    return stopped;
  }
  // A stream that delivered pages ran over an established connection: a later UNAVAILABLE is
  // the daemon's (or the connection dropping), never "unreachable".
  return Convert(status, received);
}

}  // namespace connectbroker::client
