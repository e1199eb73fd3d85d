// The gRPC services of connectbroker.v1 (callback API). Handlers validate their input, then call
// the GrantManager; a handler that must wait (a refresh, a code exchange) returns its reactor at
// once and finishes it from the event loop. Never blocks a gRPC thread on the network.
// absl status codes map one-to-one onto gRPC codes; messages never carry secrets.
#pragma once

#include <chrono>

#include "connectbroker/v1/admin.grpc.pb.h"
#include "connectbroker/v1/onboarding.grpc.pb.h"
#include "connectbroker/v1/token.grpc.pb.h"
#include "daemon/broker/grant_manager.h"
#include "daemon/proxy/proxy.h"

namespace connectbroker::rpc {

grpc::Status ToGrpc(const absl::Status& s);
// Finishes a unary call at once with `status`.
grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context,
                                    const absl::Status& status);
// Record -> API message (no secrets: the record's encrypted blob is never copied).
void ToMerchant(const storage::GrantRecord& r, connectbroker::v1::Merchant* out);

class TokenServiceImpl final : public connectbroker::v1::TokenService::CallbackService {
 public:
  TokenServiceImpl(broker::GrantManager& manager, std::chrono::seconds max_min_ttl)
      : manager_(manager), max_min_ttl_(max_min_ttl) {}

  // connectbroker::v1::TokenService::CallbackService
  grpc::ServerUnaryReactor* GetAccessToken(
      grpc::CallbackServerContext* context, const connectbroker::v1::GetAccessTokenRequest* request,
      connectbroker::v1::GetAccessTokenResponse* response) override;

 private:
  broker::GrantManager& manager_;
  std::chrono::seconds max_min_ttl_;
};

class OnboardingServiceImpl final
    : public connectbroker::v1::OnboardingService::CallbackService {
 public:
  explicit OnboardingServiceImpl(broker::GrantManager& manager) : manager_(manager) {}

  // connectbroker::v1::OnboardingService::CallbackService
  grpc::ServerUnaryReactor* BeginAuthorization(
      grpc::CallbackServerContext* context,
      const connectbroker::v1::BeginAuthorizationRequest* request,
      connectbroker::v1::BeginAuthorizationResponse* response) override;
  grpc::ServerUnaryReactor* CompleteAuthorization(
      grpc::CallbackServerContext* context,
      const connectbroker::v1::CompleteAuthorizationRequest* request,
      connectbroker::v1::CompleteAuthorizationResponse* response) override;

 private:
  broker::GrantManager& manager_;
};

class AdminServiceImpl final : public connectbroker::v1::AdminService::CallbackService {
 public:
  // `proxy` (may be null) feeds the proxy counters of GetStats.
  explicit AdminServiceImpl(broker::GrantManager& manager, const proxy::Proxy* proxy = nullptr)
      : manager_(manager), proxy_(proxy) {}

  // connectbroker::v1::AdminService::CallbackService
  grpc::ServerUnaryReactor* ListMerchants(grpc::CallbackServerContext* context,
                                          const connectbroker::v1::ListMerchantsRequest* request,
                                          connectbroker::v1::ListMerchantsResponse* response)
      override;
  grpc::ServerUnaryReactor* GetMerchant(grpc::CallbackServerContext* context,
                                        const connectbroker::v1::GetMerchantRequest* request,
                                        connectbroker::v1::Merchant* response) override;
  grpc::ServerUnaryReactor* RefreshMerchant(
      grpc::CallbackServerContext* context,
      const connectbroker::v1::RefreshMerchantRequest* request,
      connectbroker::v1::Merchant* response) override;
  grpc::ServerUnaryReactor* RevokeMerchant(grpc::CallbackServerContext* context,
                                           const connectbroker::v1::RevokeMerchantRequest* request,
                                           connectbroker::v1::Merchant* response) override;
  grpc::ServerUnaryReactor* ImportMerchant(grpc::CallbackServerContext* context,
                                           const connectbroker::v1::ImportMerchantRequest* request,
                                           connectbroker::v1::Merchant* response) override;
  grpc::ServerUnaryReactor* DeleteMerchant(
      grpc::CallbackServerContext* context,
      const connectbroker::v1::DeleteMerchantRequest* request,
      connectbroker::v1::DeleteMerchantResponse* response) override;
  grpc::ServerWriteReactor<connectbroker::v1::Event>* WatchEvents(
      grpc::CallbackServerContext* context,
      const connectbroker::v1::WatchEventsRequest* request) override;
  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* context,
                                     const connectbroker::v1::GetStatsRequest* request,
                                     connectbroker::v1::Stats* response) override;

 private:
  broker::GrantManager& manager_;
  const proxy::Proxy* proxy_;
};

}  // namespace connectbroker::rpc
