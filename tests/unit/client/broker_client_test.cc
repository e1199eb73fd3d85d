// BrokerClient against fake services on 127.0.0.1:0 (a real client channel: in-process channels
// have no connectivity state), plus unreachable addresses (refused / missing Unix socket).
#include <gmock/gmock.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "connectbroker/client.h"

namespace connectbroker::client {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr auto kTimeout = std::chrono::seconds(10);

// WatchEvents: events after_sequence+1 .. 3 (of request.organization_id), then OK with
// no_follow; otherwise waits for the caller to cancel, except for org_drop, whose stream the
// "daemon" ends with UNAVAILABLE after the backlog.
class FakeWatch final : public grpc::ServerWriteReactor<v1::Event> {
 public:
  explicit FakeWatch(const v1::WatchEventsRequest& request) : request_(request) {
    std::lock_guard lock(mu_);
    next_ = request.after_sequence() + 1;
    WriteNextLocked();
  }

  // grpc::ServerWriteReactor
  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
      return;
    }
    WriteNextLocked();
  }
  void OnCancel() override {
    std::lock_guard lock(mu_);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }
  void OnDone() override { delete this; }

 private:
  static constexpr uint64_t kLast = 3;

  void WriteNextLocked() {
    if (next_ <= kLast) {
      current_.set_sequence(next_++);
      current_.set_organization_id(request_.organization_id());
      current_.set_type(v1::EVENT_TYPE_REFRESHED);
      StartWrite(&current_);
      return;
    }
    if (request_.no_follow()) {
      FinishLocked(grpc::Status::OK);
    } else if (request_.organization_id() == "org_drop") {
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "daemon shutting down"));
    }
    // Otherwise following: nothing to send until the caller cancels.
  }
  void FinishLocked(const grpc::Status& status) {
    if (!finished_) {
      finished_ = true;
      Finish(status);
    }
  }

  const v1::WatchEventsRequest request_;
  std::mutex mu_;
  uint64_t next_ = 1;
  bool finished_ = false;
  v1::Event current_;
};

class FakeAdmin final
    : public v1::AdminService::WithCallbackMethod_WatchEvents<v1::AdminService::Service> {
 public:
  grpc::ServerWriteReactor<v1::Event>* WatchEvents(grpc::CallbackServerContext*,
                                                   const v1::WatchEventsRequest* request) override {
    return new FakeWatch(*request);
  }
  grpc::Status RevokeMerchant(grpc::ServerContext*, const v1::RevokeMerchantRequest* request,
                              v1::Merchant* response) override {
    response->set_organization_id(request->organization_id());
    response->set_status(v1::GRANT_STATUS_REVOKED);
    return grpc::Status::OK;
  }
  grpc::Status ImportMerchant(grpc::ServerContext*, const v1::ImportMerchantRequest* request,
                              v1::Merchant* response) override {
    if (request->refresh_token() != "refresh_good") {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "Mollie rejected the token");
    }
    response->set_organization_id("org_imported");
    response->set_account_ref(request->account_ref());
    return grpc::Status::OK;
  }
  grpc::Status DeleteMerchant(grpc::ServerContext*, const v1::DeleteMerchantRequest* request,
                              v1::DeleteMerchantResponse*) override {
    if (request->organization_id() == "org_missing") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown merchant org_missing");
    }
    return grpc::Status::OK;
  }
  grpc::Status GetStats(grpc::ServerContext*, const v1::GetStatsRequest*,
                        v1::Stats* response) override {
    response->set_grants(5);
    response->set_refresh_paused(true);
    return grpc::Status::OK;
  }
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

// ProxyService: records requests; answers from the path.
class FakeProxy final : public v1::ProxyService::Service {
 public:
  grpc::Status Call(grpc::ServerContext*, const v1::ProxyRequest* request,
                    v1::ProxyResponse* response) override {
    {
      std::lock_guard lock(mu_);
      calls_.push_back(*request);
    }
    if (request->organization_id() == "org_missing") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown merchant org_missing");
    }
    if (request->path() == "/v2/payments/tr_missing") {
      response->set_status(404);
      response->set_body(R"({"status":404,"title":"Not Found","detail":"No payment exists"})");
    } else {
      response->set_status(request->method() == "POST" ? 201 : 200);
      response->set_body(R"({"resource":"payment","id":"tr_1"})");
    }
    auto* h = response->add_headers();
    h->set_name("Content-Type");
    h->set_value("application/hal+json");
    response->set_attempts(1);
    return grpc::Status::OK;
  }
  grpc::Status CallPaged(grpc::ServerContext* context, const v1::ProxyPagedRequest* request,
                         grpc::ServerWriter<v1::ProxyPage>* writer) override {
    {
      std::lock_guard lock(mu_);
      paged_.push_back(*request);
    }
    for (int number = 1; number <= 3; ++number) {
      v1::ProxyPage page;
      page.set_page_number(number);
      if (request->path() == "/v2/limited" && number == 2) {
        page.set_status(429);
        page.set_body(R"({"status":429,"title":"Too Many Requests"})");
        writer->Write(page);
        return grpc::Status::OK;
      }
      page.set_status(200);
      page.set_embedded_key("payments");
      page.add_items(R"({"id":"tr_)" + std::to_string(2 * number - 1) + "\"}");
      page.add_items(R"({"id":"tr_)" + std::to_string(2 * number) + "\"}");
      if (!writer->Write(page) || context->IsCancelled()) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
      }
      if (request->path() == "/v2/broken") {
        return grpc::Status(grpc::StatusCode::INTERNAL, "page 2 is not a HAL list");
      }
    }
    return grpc::Status::OK;
  }
  std::vector<v1::ProxyRequest> calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }
  std::vector<v1::ProxyPagedRequest> paged() {
    std::lock_guard lock(mu_);
    return paged_;
  }

 private:
  std::mutex mu_;
  std::vector<v1::ProxyRequest> calls_;
  std::vector<v1::ProxyPagedRequest> paged_;
};

class BrokerClientTest : public ::testing::Test {
 protected:
  BrokerClientTest() {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&admin_);
    builder.RegisterService(&token_);
    builder.RegisterService(&proxy_);
    server_ = builder.BuildAndStart();
    const std::string address = "127.0.0.1:" + std::to_string(port);
    client_ = std::make_unique<BrokerClient>(CreateChannel(address), address, kTimeout);
  }
  ~BrokerClientTest() override { server_->Shutdown(); }

  FakeAdmin admin_;
  FakeToken token_;
  FakeProxy proxy_;
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

TEST_F(BrokerClientTest, RevokeImportDeleteAndStats) {
  auto revoked = client_->RevokeMerchant("org_5");
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_EQ(revoked->status(), v1::GRANT_STATUS_REVOKED);
  v1::ImportMerchantRequest request;
  request.set_refresh_token("refresh_good");
  request.set_account_ref("acct-9");
  auto imported = client_->ImportMerchant(request);
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->account_ref(), "acct-9");
  request.set_refresh_token("refresh_bogus");
  EXPECT_EQ(client_->ImportMerchant(request).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(client_->DeleteMerchant("org_5").ok());
  absl::Status missing = client_->DeleteMerchant("org_missing");
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(IsUnreachable(missing));
  auto stats = client_->GetStats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->grants(), 5u);
  EXPECT_TRUE(stats->refresh_paused());
}

TEST_F(BrokerClientTest, CallSendsTheRequestAsGiven) {
  v1::ProxyRequest request;
  request.set_account_ref("shop-42");
  request.set_method("POST");
  request.set_path("/v2/payments");
  auto* q = request.add_query();
  q->set_name("include");
  q->set_value("details.qrCode");
  auto* h = request.add_headers();
  h->set_name("X-Request-Id");
  h->set_value("req-1");
  request.set_body(R"({"amount":{"currency":"EUR","value":"10.00"}})");
  request.set_testmode(true);
  request.set_idempotency_key("key-1");
  auto response = client_->Call(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status(), 201);
  EXPECT_EQ(response->body(), R"({"resource":"payment","id":"tr_1"})");
  auto calls = proxy_.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].SerializeAsString(), request.SerializeAsString());
}

TEST_F(BrokerClientTest, CallReturnsMollieErrorStatusesAsResults) {
  v1::ProxyRequest request;
  request.set_organization_id("org_1");
  request.set_method("GET");
  request.set_path("/v2/payments/tr_missing");
  auto response = client_->Call(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status(), 404);
  EXPECT_THAT(response->body(), HasSubstr("No payment exists"));
}

TEST_F(BrokerClientTest, CallBrokerErrorsKeepCodeAndMessage) {
  v1::ProxyRequest request;
  request.set_organization_id("org_missing");
  request.set_method("GET");
  request.set_path("/v2/payments");
  auto response = client_->Call(request);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(response.status().message(), "unknown merchant org_missing");
  EXPECT_FALSE(IsUnreachable(response.status()));
}

TEST_F(BrokerClientTest, CallHonoursAnExplicitDeadline) {
  v1::ProxyRequest request;
  request.set_organization_id("org_1");
  request.set_method("GET");
  request.set_path("/v2/payments");
  ASSERT_TRUE(client_->Call(request).ok());  // connected
  auto late = client_->Call(request, std::chrono::system_clock::now() - std::chrono::seconds(1));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(IsUnreachable(late.status()));
  EXPECT_EQ(proxy_.calls().size(), 1u);  // the late one never reached the daemon
}

std::vector<std::string> Items(const std::vector<v1::ProxyPage>& pages) {
  std::vector<std::string> out;
  for (const auto& p : pages) {
    for (const auto& item : p.items()) {
      out.push_back(item);
    }
  }
  return out;
}

TEST_F(BrokerClientTest, CallPagedDeliversEveryPageInOrder) {
  v1::ProxyPagedRequest request;
  request.set_organization_id("org_1");
  request.set_path("/v2/payments");
  request.set_max_items(10);
  std::vector<v1::ProxyPage> pages;
  absl::Status s = client_->CallPaged(request, [&](const v1::ProxyPage& p) {
    pages.push_back(p);
    return absl::OkStatus();
  });
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_EQ(pages.size(), 3u);
  EXPECT_EQ(pages[2].page_number(), 3);
  EXPECT_THAT(Items(pages),
              ElementsAre(R"({"id":"tr_1"})", R"({"id":"tr_2"})", R"({"id":"tr_3"})",
                          R"({"id":"tr_4"})", R"({"id":"tr_5"})", R"({"id":"tr_6"})"));
  ASSERT_EQ(proxy_.paged().size(), 1u);
  EXPECT_EQ(proxy_.paged()[0].max_items(), 10);
}

TEST_F(BrokerClientTest, CallPagedNon2xxPageIsTheLastAndTheCallIsOk) {
  v1::ProxyPagedRequest request;
  request.set_organization_id("org_1");
  request.set_path("/v2/limited");
  std::vector<v1::ProxyPage> pages;
  absl::Status s = client_->CallPaged(request, [&](const v1::ProxyPage& p) {
    pages.push_back(p);
    return absl::OkStatus();
  });
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_EQ(pages.size(), 2u);
  EXPECT_EQ(pages[1].status(), 429);
}

TEST_F(BrokerClientTest, CallPagedStopsWhenTheCallbackFails) {
  v1::ProxyPagedRequest request;
  request.set_organization_id("org_1");
  request.set_path("/v2/payments");
  int pages = 0;
  absl::Status s = client_->CallPaged(request, [&](const v1::ProxyPage&) {
    ++pages;
    return absl::AbortedError("stdout closed");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(s.message(), "stdout closed");
  EXPECT_EQ(pages, 1);
}

TEST_F(BrokerClientTest, CallPagedErrorAfterPagesIsTheDaemonsNotUnreachable) {
  v1::ProxyPagedRequest request;
  request.set_organization_id("org_1");
  request.set_path("/v2/broken");
  int pages = 0;
  absl::Status s = client_->CallPaged(request, [&](const v1::ProxyPage&) {
    ++pages;
    return absl::OkStatus();
  });
  EXPECT_EQ(pages, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(s.message(), "page 2 is not a HAL list");
  EXPECT_FALSE(IsUnreachable(s));
}

std::vector<uint64_t> Sequences(const std::vector<v1::Event>& events) {
  std::vector<uint64_t> out;
  for (const auto& e : events) {
    out.push_back(e.sequence());
  }
  return out;
}

TEST_F(BrokerClientTest, WatchEventsWithoutFollowEndsAfterTheBacklog) {
  v1::WatchEventsRequest request;
  request.set_after_sequence(1);
  request.set_organization_id("org_7");
  request.set_no_follow(true);
  std::vector<v1::Event> events;
  absl::Status s = client_->WatchEvents(request, [&](const v1::Event& e) { events.push_back(e); });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_THAT(Sequences(events), ElementsAre(2u, 3u));
  EXPECT_EQ(events[0].organization_id(), "org_7");
}

TEST_F(BrokerClientTest, WatchEventsFollowsUntilCancelledFromAnotherThread) {
  WatchCanceller canceller;
  std::promise<void> backlog_seen;
  std::thread canceller_thread([&canceller, seen = backlog_seen.get_future()]() mutable {
    seen.wait();
    canceller.Cancel();
  });
  std::vector<v1::Event> events;
  absl::Status s = client_->WatchEvents(
      v1::WatchEventsRequest(),
      [&](const v1::Event& e) {
        events.push_back(e);
        if (e.sequence() == 3) {
          backlog_seen.set_value();
        }
      },
      &canceller);
  canceller_thread.join();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_TRUE(canceller.cancelled());
  EXPECT_THAT(Sequences(events), ElementsAre(1u, 2u, 3u));
}

TEST_F(BrokerClientTest, WatchEventsCancelledBeforeItStartsReturnsAtOnce) {
  WatchCanceller canceller;
  canceller.Cancel();
  int events = 0;
  absl::Status s = client_->WatchEvents(
      v1::WatchEventsRequest(), [&](const v1::Event&) { ++events; }, &canceller);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(events, 0);
}

TEST_F(BrokerClientTest, FollowedStreamEndedByTheDaemonIsAnErrorNotUnreachable) {
  v1::WatchEventsRequest request;
  request.set_organization_id("org_drop");
  int events = 0;
  absl::Status s = client_->WatchEvents(request, [&](const v1::Event&) { ++events; });
  EXPECT_EQ(events, 3);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "daemon shutting down");
  EXPECT_FALSE(IsUnreachable(s));
}

TEST(BrokerClientUnreachableTest, FollowingAnUnreachableDaemonFailsFast) {
  for (const std::string address : {"127.0.0.1:1", "unix:/nonexistent/connect-broker.sock"}) {
    BrokerClient client(CreateChannel(address), address, kTimeout);
    const auto start = std::chrono::steady_clock::now();
    absl::Status s = client.WatchEvents(v1::WatchEventsRequest(), [](const v1::Event&) {});
    EXPECT_TRUE(IsUnreachable(s)) << address << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr(address));
    // A refused connection is reported at once, not after the connect timeout.
    EXPECT_LT(std::chrono::steady_clock::now() - start, kTimeout / 2) << address;
  }
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

TEST(BrokerClientUnreachableTest, ProxyCallsToAnUnreachableDaemonAreUnreachable) {
  const std::string address = "127.0.0.1:1";
  BrokerClient client(CreateChannel(address), address, kTimeout);
  v1::ProxyRequest request;
  request.set_organization_id("org_1");
  request.set_method("GET");
  request.set_path("/v2/payments");
  EXPECT_TRUE(IsUnreachable(client.Call(request).status()));
  v1::ProxyPagedRequest paged;
  paged.set_organization_id("org_1");
  paged.set_path("/v2/payments");
  int pages = 0;
  absl::Status s = client.CallPaged(paged, [&](const v1::ProxyPage&) {
    ++pages;
    return absl::OkStatus();
  });
  EXPECT_TRUE(IsUnreachable(s)) << s;
  EXPECT_EQ(pages, 0);
}

}  // namespace
}  // namespace connectbroker::client
