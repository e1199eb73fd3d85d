// GrantManager against a scripted Mollie and the real RocksDB store (in a temp dir), with a fake
// clock. The event loop runs on its own thread; results are awaited with deadlines.
#include "daemon/broker/grant_manager.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "storage/key_ring.h"
#include "storage/rocksdb_grant_store.h"
#include "tests/support/fake_clock.h"
#include "tests/support/status_matchers.h"
#include "tests/support/temp_dir.h"
#include "tests/support/wait.h"

namespace connectbroker::broker {
namespace {

namespace asio = boost::asio;
using std::chrono::seconds;
using testing::IsOk;
using testing::StatusIs;
using ::testing::HasSubstr;

constexpr auto kWait = std::chrono::seconds(10);

mollie::TokenResponse Tokens(std::string access, std::string refresh, seconds ttl) {
  mollie::TokenResponse t;
  t.access_token = SecretString(std::move(access));
  t.refresh_token = SecretString(std::move(refresh));
  t.expires_in = ttl;
  t.scopes = {"organizations.read", "payments.read"};
  return t;
}

// Scripted Mollie. Runs on the loop; a test may hold refreshes until it releases them.
class FakeMollie final : public mollie::MollieOAuthApi {
 public:
  explicit FakeMollie(asio::any_io_executor ex) : gate_(ex) {
    gate_.expires_at(asio::steady_timer::time_point::max());
  }

  asio::awaitable<absl::StatusOr<mollie::TokenResponse>> ExchangeCode(
      SecretString code, std::string redirect_uri) override {
    std::lock_guard lock(mu_);
    last_code_ = code.Reveal();
    last_redirect_uri_ = redirect_uri;
    if (code.Reveal() == "auth_bad") {
      co_return absl::FailedPreconditionError("invalid_grant: Authorization code doesn't exist");
    }
    co_return Tokens("access_first", "refresh_first", seconds(3600));
  }

  asio::awaitable<absl::StatusOr<mollie::TokenResponse>> Refresh(
      SecretString refresh_token, std::string redirect_uri) override {
    {
      std::lock_guard lock(mu_);
      ++refresh_calls_;
      refresh_tokens_seen_.push_back(refresh_token.Reveal());
      last_redirect_uri_ = redirect_uri;
    }
    if (hold_) {
      co_await gate_.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    std::lock_guard lock(mu_);
    if (results_.empty()) {
      co_return absl::InternalError("no scripted refresh result");
    }
    auto r = results_.front();
    results_.pop_front();
    co_return r;
  }

  asio::awaitable<absl::Status> RevokeRefreshToken(SecretString) override {
    co_return absl::OkStatus();
  }

  asio::awaitable<absl::StatusOr<mollie::Organization>> GetCurrentOrganization(
      SecretString) override {
    co_return mollie::Organization{"org_42", "Test Shop", "shop@example.org", "nl_NL"};
  }

  void Script(absl::StatusOr<mollie::TokenResponse> r) {
    std::lock_guard lock(mu_);
    results_.push_back(std::move(r));
  }
  void Hold() { hold_ = true; }
  // Called on the loop.
  void Release() {
    hold_ = false;
    gate_.cancel();
  }
  int refresh_calls() {
    std::lock_guard lock(mu_);
    return refresh_calls_;
  }
  std::vector<std::string> refresh_tokens_seen() {
    std::lock_guard lock(mu_);
    return refresh_tokens_seen_;
  }
  std::string last_redirect_uri() {
    std::lock_guard lock(mu_);
    return last_redirect_uri_;
  }

 private:
  std::mutex mu_;
  std::deque<absl::StatusOr<mollie::TokenResponse>> results_;
  int refresh_calls_ = 0;
  std::vector<std::string> refresh_tokens_seen_;
  std::string last_code_;
  std::string last_redirect_uri_;
  std::atomic<bool> hold_{false};
  asio::steady_timer gate_;
};

// Deterministic randomness for the manager: every sample lies in [0.5, 0.75), so backoff and
// jitter are never zero; bytes differ from call to call, so OAuth states stay unique.
class FakeRandom final : public Random {
 public:
  void Fill(std::span<uint8_t> out) override {
    for (auto& b : out) {
      b = static_cast<uint8_t>(0x80 | (counter_++ & 0x3f));
    }
  }

 private:
  std::atomic<uint32_t> counter_{0};
};

// The real store, with a switch that makes every grant write fail (disk full, I/O error).
class FaultyStore final : public storage::GrantStore {
 public:
  explicit FaultyStore(storage::GrantStore& inner) : inner_(inner) {}
  std::atomic<bool> fail_puts{false};
  // When >= 0: that many more grant writes succeed, then every one fails.
  std::atomic<int> puts_left{-1};

  absl::Status Put(const storage::GrantRecord& r, const storage::GrantSecretsPlain& s,
                   std::optional<uint64_t> g, storage::EventRecord* e) override {
    if (fail_puts) {
      return absl::InternalError("injected: disk full");
    }
    if (puts_left.load() >= 0 && puts_left.fetch_sub(1) <= 0) {
      puts_left = 0;
      return absl::InternalError("injected: disk full");
    }
    return inner_.Put(r, s, g, e);
  }
  absl::StatusOr<storage::StoredGrant> Get(std::string_view o) override { return inner_.Get(o); }
  absl::StatusOr<std::string> FindByAccountRef(std::string_view a) override {
    return inner_.FindByAccountRef(a);
  }
  absl::StatusOr<std::vector<storage::StoredGrant>> LoadAll() override { return inner_.LoadAll(); }
  absl::StatusOr<storage::ListPage> List(storage::GrantStatus s, int n,
                                         std::string_view t) override {
    return inner_.List(s, n, t);
  }
  absl::Status Delete(std::string_view o, std::optional<uint64_t> g,
                      storage::EventRecord* e) override {
    return inner_.Delete(o, g, e);
  }
  absl::Status AppendEvent(storage::EventRecord& e) override { return inner_.AppendEvent(e); }
  absl::StatusOr<std::vector<storage::EventRecord>> ReadEvents(uint64_t after, int max) override {
    return inner_.ReadEvents(after, max);
  }
  absl::StatusOr<uint64_t> OldestEventSequence() override { return inner_.OldestEventSequence(); }
  absl::StatusOr<uint64_t> LastEventSequence() override { return inner_.LastEventSequence(); }
  absl::StatusOr<int> TrimEvents(size_t keep, WallTime before) override {
    return inner_.TrimEvents(keep, before);
  }
  absl::Status PutPending(std::string_view s, const storage::PendingAuthorization& p) override {
    return inner_.PutPending(s, p);
  }
  absl::StatusOr<storage::PendingAuthorization> TakePending(std::string_view s,
                                                            WallTime now) override {
    return inner_.TakePending(s, now);
  }
  absl::StatusOr<int> PurgeExpiredPending(WallTime now) override {
    return inner_.PurgeExpiredPending(now);
  }

 private:
  storage::GrantStore& inner_;
};

class GrantManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = {};
    key_[0] = 7;
    OpenStore();
    StartManager();
  }

  void TearDown() override { StopManager(); }

  void OpenStore() {
    storage::RocksDbGrantStore::Options o;
    o.path = dir_.File("db");
    auto store = storage::RocksDbGrantStore::Open(
        o, storage::KeyRing::FromKeys({{"k1", key_}}), random_);
    ASSERT_THAT(store, IsOk());
    store_ = *std::move(store);
    faulty_ = std::make_unique<FaultyStore>(*store_);
  }

  void StartManager() {
    if (!mollie_) {
      mollie_ = std::make_unique<FakeMollie>(loop_.get_executor());
    }
    cache_ = std::make_unique<TokenCache>();
    GrantManagerOptions o;
    o.client_id = "app_test";
    o.redirect_uri = "https://platform.example/cb";
    o.default_scopes = {"payments.read"};
    o.min_serve_ttl = seconds(5);
    manager_ = std::make_unique<GrantManager>(loop_, pool_, *faulty_, *mollie_, *cache_, clock_,
                                              fake_random_, o);
    ASSERT_THAT(manager_->Start(), IsOk());
    work_.emplace(asio::make_work_guard(loop_));
    thread_ = std::thread([this] { loop_.run(); });
  }

  void StopManager() {
    if (!thread_.joinable()) {
      return;
    }
    std::promise<void> drained;
    manager_->Stop([&] { drained.set_value(); });
    ASSERT_EQ(drained.get_future().wait_for(kWait), std::future_status::ready);
    work_.reset();
    loop_.stop();
    thread_.join();
    loop_.restart();
    manager_.reset();
  }

  // Runs `fn` on the loop and waits for it.
  void OnLoop(std::function<void()> fn) {
    std::promise<void> done;
    asio::post(loop_, [&] {
      fn();
      done.set_value();
    });
    ASSERT_EQ(done.get_future().wait_for(kWait), std::future_status::ready);
  }

  absl::StatusOr<storage::GrantRecord> Onboard(const std::string& code = "auth_good") {
    auto begin = manager_->BeginAuthorization({.account_ref = "shop-1"});
    if (!begin.ok()) {
      return begin.status();
    }
    std::promise<absl::StatusOr<storage::GrantRecord>> p;
    manager_->CompleteAuthorization(code, begin->state,
                                    [&](absl::StatusOr<storage::GrantRecord> r) {
                                      p.set_value(std::move(r));
                                    });
    auto f = p.get_future();
    if (f.wait_for(kWait) != std::future_status::ready) {
      return absl::DeadlineExceededError("onboarding did not finish");
    }
    return f.get();
  }

  std::future<absl::StatusOr<TokenSnapshotPtr>> Token(std::chrono::milliseconds min_ttl,
                                                      std::string org = "org_42") {
    auto p = std::make_shared<std::promise<absl::StatusOr<TokenSnapshotPtr>>>();
    manager_->GetAccessToken({.organization_id = org}, min_ttl,
                             [p](absl::StatusOr<TokenSnapshotPtr> r) { p->set_value(r); });
    return p->get_future();
  }

  absl::StatusOr<storage::GrantRecord> Refresh(std::string org = "org_42") {
    std::promise<absl::StatusOr<storage::GrantRecord>> p;
    manager_->RefreshNow(org, [&](absl::StatusOr<storage::GrantRecord> r) {
      p.set_value(std::move(r));
    });
    auto f = p.get_future();
    if (f.wait_for(kWait) != std::future_status::ready) {
      return absl::DeadlineExceededError("refresh did not finish");
    }
    return f.get();
  }

  testing::TempDir dir_;
  testing::FakeClock clock_;
  CryptoRandom random_;
  FakeRandom fake_random_;
  storage::KeyRing::Key key_;
  std::unique_ptr<storage::RocksDbGrantStore> store_;
  std::unique_ptr<FaultyStore> faulty_;
  asio::io_context loop_{1};
  asio::thread_pool pool_{2};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
  std::unique_ptr<FakeMollie> mollie_;
  std::unique_ptr<TokenCache> cache_;
  std::unique_ptr<GrantManager> manager_;
};

TEST_F(GrantManagerTest, OnboardingStoresTheGrantAndServesItsToken) {
  auto r = Onboard();
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->organization_id(), "org_42");
  EXPECT_EQ(r->organization_name(), "Test Shop");
  EXPECT_EQ(r->account_ref(), "shop-1");
  EXPECT_EQ(r->redirect_uri(), "https://platform.example/cb");
  EXPECT_EQ(mollie_->last_redirect_uri(), "https://platform.example/cb");
  auto stored = store_->Get("org_42");
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->secrets.refresh_token.Reveal(), "refresh_first");
  auto t = Token(std::chrono::milliseconds(0)).get();
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ((*t)->access_token.Reveal(), "access_first");
  // Expiry counts from when the request was sent (the fake clock did not move).
  EXPECT_EQ((*t)->expires_at, clock_.Now() + seconds(3600));
}

TEST_F(GrantManagerTest, RejectedCodeStoresNothing) {
  EXPECT_THAT(Onboard("auth_bad"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("rejected")));
  EXPECT_THAT(store_->Get("org_42"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(GrantManagerTest, ConcurrentCallersShareOneRefresh) {
  ASSERT_THAT(Onboard(), IsOk());
  mollie_->Script(Tokens("access_second", "refresh_first", seconds(3600)));
  mollie_->Hold();
  // Half an hour later every caller wants 50 minutes: all need the refresh.
  clock_.Advance(std::chrono::minutes(30));
  std::vector<std::future<absl::StatusOr<TokenSnapshotPtr>>> waiting;
  std::vector<std::thread> callers;
  std::mutex mu;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        auto f = Token(std::chrono::minutes(50));
        std::lock_guard lock(mu);
        waiting.push_back(std::move(f));
      }
    });
  }
  for (auto& c : callers) {
    c.join();
  }
  OnLoop([&] { mollie_->Release(); });
  for (auto& f : waiting) {
    ASSERT_EQ(f.wait_for(kWait), std::future_status::ready);
    auto r = f.get();
    ASSERT_THAT(r, IsOk());
    EXPECT_EQ((*r)->access_token.Reveal(), "access_second");
  }
  EXPECT_EQ(mollie_->refresh_calls(), 1);
}

TEST_F(GrantManagerTest, RotatedRefreshTokenIsStoredAndUsedNext) {
  ASSERT_THAT(Onboard(), IsOk());
  mollie_->Script(Tokens("access_2", "refresh_rotated", seconds(3600)));
  mollie_->Script(Tokens("access_3", "", seconds(3600)));  // none sent back: keep the last one
  mollie_->Script(Tokens("access_4", "refresh_other", seconds(3600)));
  ASSERT_THAT(Refresh(), IsOk());
  EXPECT_EQ(store_->Get("org_42")->secrets.refresh_token.Reveal(), "refresh_rotated");
  ASSERT_THAT(Refresh(), IsOk());
  EXPECT_EQ(store_->Get("org_42")->secrets.refresh_token.Reveal(), "refresh_rotated");
  ASSERT_THAT(Refresh(), IsOk());
  EXPECT_THAT(mollie_->refresh_tokens_seen(),
              ::testing::ElementsAre("refresh_first", "refresh_rotated", "refresh_rotated"));
  EXPECT_EQ(mollie_->last_redirect_uri(), "https://platform.example/cb");
}

TEST_F(GrantManagerTest, TransientFailureKeepsServingTheCurrentToken) {
  ASSERT_THAT(Onboard(), IsOk());
  clock_.Advance(std::chrono::minutes(40));
  mollie_->Script(absl::UnavailableError("connect to api.mollie.com:443 failed"));
  EXPECT_THAT(Refresh(), StatusIs(absl::StatusCode::kUnavailable));
  auto stored = store_->Get("org_42");
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->record.status(), storage::GRANT_STATUS_REFRESH_FAILING);
  EXPECT_EQ(stored->record.consecutive_failures(), 1u);
  EXPECT_EQ(stored->secrets.access_token.Reveal(), "access_first");
  EXPECT_GT(stored->record.next_refresh_at_ms(), 0);
  auto t = Token(std::chrono::milliseconds(0)).get();
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ((*t)->access_token.Reveal(), "access_first");
  // A caller who needs more than the token has left gets UNAVAILABLE, never an expired token,
  // and does not cut the grant's backoff short (no call to Mollie).
  int calls = mollie_->refresh_calls();
  EXPECT_THAT(Token(std::chrono::minutes(30)).get(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(mollie_->refresh_calls(), calls);

  clock_.Advance(seconds(1200));
  mollie_->Script(absl::UnavailableError("still down"));
  EXPECT_THAT(Token(std::chrono::milliseconds(0)).get(),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(GrantManagerTest, CallersDoNotShortenTheBackoffOfAFailingGrant) {
  ASSERT_THAT(Onboard(), IsOk());
  clock_.Advance(std::chrono::minutes(40));
  // A scheduled-like failure: the admin refresh fails and puts the grant in backoff.
  mollie_->Script(absl::UnavailableError("503"));
  EXPECT_THAT(Refresh(), StatusIs(absl::StatusCode::kUnavailable));
  // Still inside the backoff: a caller is told when the next attempt is; Mollie is not called.
  EXPECT_THAT(Token(std::chrono::minutes(30)).get(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("next attempt")));
  EXPECT_EQ(mollie_->refresh_calls(), 1);
}

TEST_F(GrantManagerTest, OnDemandRefreshesOfOneGrantAreRateLimited) {
  ASSERT_THAT(Onboard(), IsOk());
  clock_.Advance(std::chrono::minutes(40));
  mollie_->Script(Tokens("access_2", "refresh_first", seconds(1800)));
  auto first = Token(std::chrono::minutes(25)).get();
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ((*first)->access_token.Reveal(), "access_2");
  // Another caller wants more than the new token has: no second call within the interval.
  clock_.Advance(seconds(1));
  EXPECT_THAT(Token(std::chrono::minutes(30)).get(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("less than")));
  EXPECT_EQ(mollie_->refresh_calls(), 1);
}

TEST_F(GrantManagerTest, InvalidGrantNeedsReauthorizationAndStopsCalling) {
  ASSERT_THAT(Onboard(), IsOk());
  mollie_->Script(absl::FailedPreconditionError("invalid_grant: refresh token revoked"));
  EXPECT_THAT(Refresh(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(store_->Get("org_42")->record.status(),
            storage::GRANT_STATUS_NEEDS_REAUTHORIZATION);
  EXPECT_THAT(Token(std::chrono::milliseconds(0)).get(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("reauthorize")));
  EXPECT_THAT(Refresh(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(mollie_->refresh_calls(), 1);
}

TEST_F(GrantManagerTest, ARacingLosersInvalidGrantDoesNotLoseTheMerchant) {
  ASSERT_THAT(Onboard(), IsOk());
  // A refresh with the old token is on the wire when the merchant re-onboards (approval_prompt
  // force revokes the old grant at Mollie), so the old token's refresh comes back invalid_grant.
  mollie_->Script(absl::FailedPreconditionError("invalid_grant: refresh token revoked"));
  mollie_->Hold();
  std::promise<absl::StatusOr<storage::GrantRecord>> refreshed;
  manager_->RefreshNow("org_42", [&](absl::StatusOr<storage::GrantRecord> r) {
    refreshed.set_value(std::move(r));
  });
  ASSERT_TRUE(testing::WaitUntil([&] { return mollie_->refresh_calls() == 1; }));
  auto again = Onboard();
  ASSERT_THAT(again, IsOk());
  OnLoop([&] { mollie_->Release(); });
  auto f = refreshed.get_future();
  ASSERT_EQ(f.wait_for(kWait), std::future_status::ready);
  EXPECT_THAT(f.get(), IsOk());
  auto stored = store_->Get("org_42");
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->record.status(), storage::GRANT_STATUS_ACTIVE);
  EXPECT_EQ(stored->secrets.refresh_token.Reveal(), "refresh_first");
  EXPECT_THAT(Token(std::chrono::milliseconds(0)).get(), IsOk());
}

TEST_F(GrantManagerTest, InvalidClientMarksNoMerchantLost) {
  ASSERT_THAT(Onboard(), IsOk());
  mollie_->Script(absl::UnauthenticatedError("invalid_client"));
  EXPECT_THAT(Refresh(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(store_->Get("org_42")->record.status(), storage::GRANT_STATUS_REFRESH_FAILING);
  EXPECT_THAT(Token(std::chrono::milliseconds(0)).get(), IsOk());
}

TEST_F(GrantManagerTest, StoreFailureAfterRefreshNeverServesUndurableTokens) {
  ASSERT_THAT(Onboard(), IsOk());
  mollie_->Script(Tokens("access_new", "refresh_new", seconds(3600)));
  // The intent is written, Mollie answers, then the disk fills up before the result is stored.
  faulty_->puts_left = 1;
  EXPECT_THAT(Refresh(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(mollie_->refresh_calls(), 1);
  // Durable before visible: the old token is still what is served and stored.
  EXPECT_EQ((*Token(std::chrono::milliseconds(0)).get())->access_token.Reveal(), "access_first");
  EXPECT_EQ(store_->Get("org_42")->secrets.refresh_token.Reveal(), "refresh_first");
  // The store recovers: the held tokens are written without asking Mollie again.
  faulty_->puts_left = -1;
  ASSERT_THAT(Refresh(), IsOk());
  EXPECT_EQ(mollie_->refresh_calls(), 1);
  EXPECT_EQ(store_->Get("org_42")->secrets.refresh_token.Reveal(), "refresh_new");
  EXPECT_EQ((*Token(std::chrono::milliseconds(0)).get())->access_token.Reveal(), "access_new");
}

TEST_F(GrantManagerTest, StoreFailureBeforeTheCallDoesNotCallMollie) {
  ASSERT_THAT(Onboard(), IsOk());
  faulty_->fail_puts = true;
  EXPECT_THAT(Refresh(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("storage")));
  EXPECT_EQ(mollie_->refresh_calls(), 0);
}

TEST_F(GrantManagerTest, InterruptedRefreshIsReplayedFirstAfterRestart) {
  ASSERT_THAT(Onboard(), IsOk());
  // A crash after the intent was written, before the outcome: simulate it with a lost reply
  // (Unavailable) and a restart.
  mollie_->Script(absl::UnavailableError("read reply from api.mollie.com:443 failed: reset"));
  EXPECT_THAT(Refresh(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_NE(store_->Get("org_42")->record.refresh_intent_at_ms(), 0);
  StopManager();
  mollie_->Script(Tokens("access_replayed", "refresh_first", seconds(3600)));
  StartManager();
  // Due at once after the restart, whatever its backoff said.
  auto t = Token(std::chrono::milliseconds(0)).get();
  ASSERT_THAT(t, IsOk());
  ASSERT_TRUE(testing::WaitUntil([&] { return mollie_->refresh_calls() >= 1; }));
  ASSERT_TRUE(testing::WaitUntil([&] {
    return store_->Get("org_42")->secrets.access_token.Reveal() == "access_replayed";
  }));
  EXPECT_EQ(store_->Get("org_42")->record.refresh_intent_at_ms(), 0);
}

TEST_F(GrantManagerTest, RestartLoadsAndServesEveryGrant) {
  ASSERT_THAT(Onboard(), IsOk());
  StopManager();
  StartManager();
  auto t = Token(std::chrono::milliseconds(0)).get();
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ((*t)->access_token.Reveal(), "access_first");
  auto by_ref = std::make_shared<std::promise<absl::StatusOr<TokenSnapshotPtr>>>();
  manager_->GetAccessToken({.account_ref = "shop-1"}, std::chrono::milliseconds(0),
                           [by_ref](absl::StatusOr<TokenSnapshotPtr> r) { by_ref->set_value(r); });
  auto r = by_ref->get_future().get();
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ((*r)->organization_id, "org_42");
}

TEST_F(GrantManagerTest, UnknownMerchantsAndStates) {
  EXPECT_THAT(Token(std::chrono::milliseconds(0), "org_404").get(),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(Refresh("org_404"), StatusIs(absl::StatusCode::kNotFound));
  std::promise<absl::StatusOr<storage::GrantRecord>> p;
  manager_->CompleteAuthorization("auth_good", "no-such-state",
                                  [&](absl::StatusOr<storage::GrantRecord> r) {
                                    p.set_value(std::move(r));
                                  });
  EXPECT_THAT(p.get_future().get(), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(GrantManagerTest, RevokeThenDeleteForgetsTheGrantCleanly) {
  ASSERT_THAT(Onboard(), IsOk());
  std::promise<absl::StatusOr<storage::GrantRecord>> revoked;
  manager_->RevokeMerchant("org_42", [&](absl::StatusOr<storage::GrantRecord> r) {
    revoked.set_value(std::move(r));
  });
  auto r = revoked.get_future().get();
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status(), storage::GRANT_STATUS_REVOKED);
  auto stored = store_->Get("org_42");
  ASSERT_THAT(stored, IsOk());
  EXPECT_TRUE(stored->secrets.refresh_token.empty());
  EXPECT_TRUE(stored->secrets.access_token.empty());
  // Deleting drops the last reference to the in-memory grant (this used to crash: the revoke
  // left strings in it that pointed into a finished coroutine frame).
  std::promise<absl::Status> deleted;
  manager_->DeleteMerchant("org_42", [&](absl::Status s) { deleted.set_value(s); });
  EXPECT_THAT(deleted.get_future().get(), IsOk());
  EXPECT_THAT(store_->Get("org_42"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(Token(std::chrono::milliseconds(0)).get(), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(GrantManagerTest, RejectedTokenIsRefreshedOnceOrReplacedByANewerOne) {
  ASSERT_THAT(Onboard(), IsOk());
  auto first = Token(std::chrono::milliseconds(0)).get();
  ASSERT_THAT(first, IsOk());
  auto rejected = [&](uint64_t generation) {
    auto p = std::make_shared<std::promise<absl::StatusOr<TokenSnapshotPtr>>>();
    manager_->RefreshRejected("org_42", generation,
                              [p](absl::StatusOr<TokenSnapshotPtr> r) { p->set_value(r); });
    return p->get_future().get();
  };
  // Mollie rejected the current token: one refresh, a new token.
  mollie_->Script(Tokens("access_second", "refresh_first", seconds(3600)));
  auto second = rejected((*first)->generation);
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ((*second)->access_token.Reveal(), "access_second");
  EXPECT_GT((*second)->generation, (*first)->generation);
  const int calls = mollie_->refresh_calls();
  // A caller still holding the first token gets the newer one without another refresh.
  auto again = rejected((*first)->generation);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ((*again)->access_token.Reveal(), "access_second");
  EXPECT_EQ(mollie_->refresh_calls(), calls);
  // The newest one rejected too, within the on-demand interval: no refresh storm.
  EXPECT_THAT(rejected((*second)->generation), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_EQ(mollie_->refresh_calls(), calls);
  auto unknown = std::make_shared<std::promise<absl::StatusOr<TokenSnapshotPtr>>>();
  manager_->RefreshRejected("org_404", 1,
                            [unknown](absl::StatusOr<TokenSnapshotPtr> r) { unknown->set_value(r); });
  EXPECT_THAT(unknown->get_future().get(), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(GrantManagerTest, StateIsSingleUseAndExpires) {
  auto begin = manager_->BeginAuthorization({});
  ASSERT_THAT(begin, IsOk());
  EXPECT_GE(begin->state.size(), 43u);  // 256 bits in base64url
  EXPECT_THAT(manager_->AbandonAuthorization(begin->state), IsOk());
  EXPECT_THAT(manager_->AbandonAuthorization(begin->state),
              StatusIs(absl::StatusCode::kNotFound));
  auto late = manager_->BeginAuthorization({});
  ASSERT_THAT(late, IsOk());
  clock_.Advance(seconds(601));
  std::promise<absl::StatusOr<storage::GrantRecord>> p;
  manager_->CompleteAuthorization("auth_good", late->state,
                                  [&](absl::StatusOr<storage::GrantRecord> r) {
                                    p.set_value(std::move(r));
                                  });
  EXPECT_THAT(p.get_future().get(), StatusIs(absl::StatusCode::kNotFound, HasSubstr("expired")));
}

TEST_F(GrantManagerTest, BeginAuthorizationValidatesAndAddsOrganizationsRead) {
  EXPECT_THAT(manager_->BeginAuthorization({.account_ref = "bad ref"}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(manager_->BeginAuthorization({.scopes = {"payments"}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(manager_->BeginAuthorization({.approval_prompt = "sometimes"}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(manager_->BeginAuthorization({.locale = "xx_XX"}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(manager_->BeginAuthorization({.landing_page = "home"}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  auto ok = manager_->BeginAuthorization({.scopes = {"payments.read"}});
  ASSERT_THAT(ok, IsOk());
  EXPECT_THAT(ok->authorize_url, HasSubstr("scope=payments.read%20organizations.read"));
}

}  // namespace
}  // namespace connectbroker::broker
