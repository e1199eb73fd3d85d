// BrokerClient against fake services on 127.0.0.1:0 (a real client channel: in-process channels
// have no connectivity state), plus unreachable addresses (refused / missing Unix socket).
#include <gmock/gmock.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "connectbroker/client.h"

namespace connectbroker::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr auto kTimeout = std::chrono::seconds(10);

class FakeAdmin final : public v1::AdminService::Service {
 public:
  grpc::Status ListMerchants(grpc::ServerContext*, const v1::ListMerchantsRequest* request,
                             v1::ListMerchantsResponse* response) override {
    std::lock_guard lock(mu_);
    requests_.push_back(*request);
    const int page_size = request->page_size() > 0 ? request->page_size() : 2;
    const int start = request->page_token().empty() ? 0 : std::stoi(request->page_token());
    for (int i = start; i < kMerchants && i < start + page_size; ++i) {
      response->add_merchants()->set_organization_id("org_" + std::to_string(i));
    }
    if (start + page_size < kMerchants) {
      response->set_next_page_token(std::to_string(start + page_size));
    }
    return grpc::Status::OK;
  }
  grpc::Status GetMerchant(grpc::ServerContext*, const v1::GetMerchantRequest* request,
                           v1::Merchant* response) override {
    if (request->organization_id() == "org_missing") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown organization org_missing");
    }
    if (request->organization_id() == "org_busy") {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "Mollie unreachable");
    }
    response->set_organization_id(request->organization_id());
    return grpc::Status::OK;
  }
  std::vector<v1::ListMerchantsRequest> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  static constexpr int kMerchants = 5;

 private:
  std::mutex mu_;
  std::vector<v1::ListMerchantsRequest> requests_;
};

class FakeToken final : public v1::TokenService::Service {
 public:
  grpc::Status GetAccessToken(grpc::ServerContext*, const v1::GetAccessTokenRequest* request,
                              v1::GetAccessTokenResponse* response) override {
    if (request->has_account_ref()) {
      response->set_organization_id("org_for_" + request->account_ref());
    } else {
      response->set_organization_id(request->organization_id());
    }
    response->set_access_token("access_ttl" + std::to_string(request->min_ttl().seconds()));
    return grpc::Status::OK;
  }
};

class BrokerClientTest : public ::testing::Test {
 protected:
  BrokerClientTest() {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&admin_);
    builder.RegisterService(&token_);
    server_ = builder.BuildAndStart();
    const std::string address = "127.0.0.1:" + std::to_string(port);
    client_ = std::make_unique<BrokerClient>(CreateChannel(address), address, kTimeout);
  }
  ~BrokerClientTest() override { server_->Shutdown(); }

  FakeAdmin admin_;
  FakeToken token_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<BrokerClient> client_;
};

std::vector<std::string> Ids(const std::vector<v1::Merchant>& merchants) {
  std::vector<std::string> out;
  for (const auto& m : merchants) {
    out.push_back(m.organization_id());
  }
  return out;
}

TEST_F(BrokerClientTest, ListMerchantsFollowsPageTokens) {
  auto merchants = client_->ListMerchants(v1::GRANT_STATUS_REVOKED, 0);
  ASSERT_TRUE(merchants.ok()) << merchants.status();
  EXPECT_THAT(Ids(*merchants), ElementsAre("org_0", "org_1", "org_2", "org_3", "org_4"));
  auto requests = admin_.requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[0].status(), v1::GRANT_STATUS_REVOKED);
  EXPECT_EQ(requests[0].page_size(), 0);
  EXPECT_EQ(requests[1].page_token(), "2");
  EXPECT_EQ(requests[2].page_token(), "4");
}

TEST_F(BrokerClientTest, ListMerchantsStopsAtLimit) {
  auto merchants = client_->ListMerchants(v1::GRANT_STATUS_UNSPECIFIED, 3);
  ASSERT_TRUE(merchants.ok()) << merchants.status();
  EXPECT_THAT(Ids(*merchants), ElementsAre("org_0", "org_1", "org_2"));
  auto requests = admin_.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].page_size(), 3);
}

TEST_F(BrokerClientTest, DaemonErrorsKeepCodeAndMessage) {
  auto missing = client_->GetMerchant("org_missing");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "unknown organization org_missing");
  EXPECT_FALSE(IsUnreachable(missing.status()));
  // UNAVAILABLE answered by a reachable daemon is not "unreachable".
  auto busy = client_->GetMerchant("org_busy");
  EXPECT_EQ(busy.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(IsUnreachable(busy.status()));
}

TEST_F(BrokerClientTest, UnimplementedServiceIsReported) {
  auto begun = client_->BeginAuthorization(v1::BeginAuthorizationRequest());
  EXPECT_EQ(begun.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_FALSE(IsUnreachable(begun.status()));
}

TEST_F(BrokerClientTest, GetAccessTokenPassesSelectorAndMinTtl) {
  v1::GetAccessTokenRequest request;
  request.set_account_ref("acct-7");
  request.mutable_min_ttl()->set_seconds(300);
  auto token = client_->GetAccessToken(request);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->organization_id(), "org_for_acct-7");
  EXPECT_EQ(token->access_token(), "access_ttl300");
}

TEST(BrokerClientUnreachableTest, RefusedConnectionIsUnreachable) {
  for (const std::string address : {"127.0.0.1:1", "unix:/nonexistent/connect-broker.sock"}) {
    BrokerClient client(CreateChannel(address), address, kTimeout);
    auto merchants = client.ListMerchants(v1::GRANT_STATUS_UNSPECIFIED, 0);
    EXPECT_EQ(merchants.status().code(), absl::StatusCode::kUnavailable) << address;
    EXPECT_TRUE(IsUnreachable(merchants.status())) << address;
    EXPECT_THAT(merchants.status().message(), HasSubstr("cannot reach")) << address;
    EXPECT_THAT(merchants.status().message(), HasSubstr(address)) << address;
  }
  EXPECT_FALSE(IsUnreachable(absl::OkStatus()));
  EXPECT_FALSE(IsUnreachable(absl::UnavailableError("x")));
}

}  // namespace
}  // namespace connectbroker::client
