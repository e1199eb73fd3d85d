#include <gtest/gtest.h>

#include "daemon/broker/grant_manager.h"
#include "tests/support/status_matchers.h"

namespace connectbroker::broker {
namespace {

using testing::IsOk;
using testing::StatusIs;

TEST(ValidationTest, OrganizationIds) {
  EXPECT_THAT(ValidateOrganizationId("org_7049691"), IsOk());
  EXPECT_THAT(ValidateOrganizationId("org_AbC123"), IsOk());
  for (const char* bad : {"", "org_", "org", "7049691", "ORG_123", "org_12 3", "org_1/../2",
                          "org_1%2F", "org_\n1", "pfl_123"}) {
    EXPECT_THAT(ValidateOrganizationId(bad), StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
  EXPECT_THAT(ValidateOrganizationId("org_" + std::string(64, 'a')), IsOk());
  EXPECT_THAT(ValidateOrganizationId("org_" + std::string(65, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ValidationTest, AccountRefs) {
  EXPECT_THAT(ValidateAccountRef("shop-42"), IsOk());
  EXPECT_THAT(ValidateAccountRef("tenant:42@eu.shop_x"), IsOk());
  for (const char* bad : {"", "has space", "a/b", "quote\"", "new\nline", "<script>"}) {
    EXPECT_THAT(ValidateAccountRef(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
  EXPECT_THAT(ValidateAccountRef(std::string(129, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace connectbroker::broker
