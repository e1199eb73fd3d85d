#include "daemon/broker/token_cache.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace connectbroker::broker {
namespace {

TokenSnapshotPtr Snap(std::string org, std::string ref, std::string token, uint64_t gen) {
  auto s = std::make_shared<TokenSnapshot>();
  s->organization_id = std::move(org);
  s->account_ref = std::move(ref);
  s->access_token = SecretString(std::move(token));
  s->generation = gen;
  return s;
}

TEST(TokenCacheTest, PublishFindAndAccountRef) {
  TokenCache cache;
  EXPECT_EQ(cache.Find("org_1"), nullptr);
  cache.Publish(Snap("org_1", "shop-1", "access_a", 1));
  ASSERT_NE(cache.Find("org_1"), nullptr);
  EXPECT_EQ(cache.Find("org_1")->access_token.Reveal(), "access_a");
  EXPECT_EQ(cache.FindOrganization("shop-1"), "org_1");
  EXPECT_FALSE(cache.FindOrganization("shop-2").has_value());
}

TEST(TokenCacheTest, RepublishMovesTheAccountRef) {
  TokenCache cache;
  cache.Publish(Snap("org_1", "shop-1", "access_a", 1));
  cache.Publish(Snap("org_1", "shop-9", "access_b", 2));
  EXPECT_FALSE(cache.FindOrganization("shop-1").has_value());
  EXPECT_EQ(cache.FindOrganization("shop-9"), "org_1");
  EXPECT_EQ(cache.Find("org_1")->generation, 2u);
  EXPECT_EQ(cache.size(), 1u);
}

TEST(TokenCacheTest, RemoveDropsTokenAndRef) {
  TokenCache cache;
  cache.Publish(Snap("org_1", "shop-1", "access_a", 1));
  cache.Remove("org_1");
  EXPECT_EQ(cache.Find("org_1"), nullptr);
  EXPECT_FALSE(cache.FindOrganization("shop-1").has_value());
  cache.Remove("org_1");  // idempotent
}

TEST(TokenCacheTest, ReadersSeeWholeSnapshotsWhileAWriterPublishes) {
  // Readers must always see a consistent (token, generation) pair: snapshots are immutable.
  TokenCache cache;
  cache.Publish(Snap("org_1", "", "access_0", 0));
  std::atomic<bool> stop{false};
  std::atomic<int> torn{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 4; ++r) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        auto s = cache.Find("org_1");
        if (s->access_token.Reveal() != "access_" + std::to_string(s->generation)) {
          ++torn;
        }
      }
    });
  }
  for (uint64_t g = 1; g <= 20000; ++g) {
    cache.Publish(Snap("org_1", "", "access_" + std::to_string(g), g));
  }
  stop = true;
  for (auto& t : readers) {
    t.join();
  }
  EXPECT_EQ(torn.load(), 0);
  EXPECT_EQ(cache.Find("org_1")->generation, 20000u);
}

}  // namespace
}  // namespace connectbroker::broker
