// Blocking client of the connect-broker gRPC API (package connectbroker.v1), plus the pure
// formatting used by the admin CLI. Hides the stubs; every call has a deadline and returns
// absl::Status(Or) carrying the daemon's gRPC code and message. Not thread-compatible beyond
// grpc::Channel's own guarantees: use one BrokerClient per thread or guard it.
// Never formats an access token except through AccessTokenToJson (which exists to print it).
#pragma once

#include <grpcpp/channel.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "connectbroker/v1/admin.grpc.pb.h"
#include "connectbroker/v1/merchant.pb.h"
#include "connectbroker/v1/onboarding.grpc.pb.h"
#include "connectbroker/v1/token.grpc.pb.h"

namespace connectbroker::client {

inline constexpr char kDefaultAddress[] = "127.0.0.1:50051";
inline constexpr char kAddressEnvVar[] = "CONNECT_BROKER_ADDRESS";

// A plaintext channel ("host:port", "[v6]:port", "unix:/path"; the daemon's admin listener is
// loopback or a Unix socket). Does not connect yet.
std::shared_ptr<grpc::Channel> CreateChannel(const std::string& address);

// True when `status` means the daemon could not be reached at all (no connection before the
// deadline), as opposed to an error the daemon returned (which may also be UNAVAILABLE).
bool IsUnreachable(const absl::Status& status);

class BrokerClient {
 public:
  // `address` only names the daemon in error messages. Each call gets `timeout` as its deadline
  // (ListMerchants: for all pages together).
  BrokerClient(std::shared_ptr<grpc::Channel> channel, std::string address,
               std::chrono::milliseconds timeout);

  // AdminService. `limit` 0 means all; follows next_page_token.
  absl::StatusOr<std::vector<v1::Merchant>> ListMerchants(v1::GrantStatus status, int limit);
  absl::StatusOr<v1::Merchant> GetMerchant(const std::string& organization_id);
  absl::StatusOr<v1::Merchant> RefreshMerchant(const std::string& organization_id);
  // TokenService.
  absl::StatusOr<v1::GetAccessTokenResponse> GetAccessToken(
      const v1::GetAccessTokenRequest& request);
  // OnboardingService.
  absl::StatusOr<v1::BeginAuthorizationResponse> BeginAuthorization(
      const v1::BeginAuthorizationRequest& request);
  absl::StatusOr<v1::Merchant> CompleteAuthorization(const std::string& code,
                                                     const std::string& state);

 private:
  absl::Status Convert(const grpc::Status& status) const;

  std::shared_ptr<grpc::Channel> channel_;
  std::string address_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::unique_ptr<v1::TokenService::Stub> token_;
  std::unique_ptr<v1::OnboardingService::Stub> onboarding_;
};

// --- Pure formatting (no I/O); `now` is passed in so that tests control it. ---

using TimePoint = std::chrono::system_clock::time_point;

// "17s", "-3s", "52m", "5h", "3d": the largest whole unit, truncated toward zero.
std::string FormatDuration(std::chrono::seconds duration);
// "active", "refresh-failing", "needs-reauthorization", "revoked", "unspecified".
std::string GrantStatusName(v1::GrantStatus status);
// Inverse of GrantStatusName for the four real statuses.
std::optional<v1::GrantStatus> ParseGrantStatus(std::string_view name);
// RFC 3339 in UTC ("2024-05-01T12:00:00Z"), or "-" when unset.
std::string FormatTimestamp(const google::protobuf::Timestamp& timestamp);
// Time until `timestamp` ("52m", negative when past), or "-" when unset.
std::string FormatExpiresIn(const google::protobuf::Timestamp& timestamp, TimePoint now);

// Aligned table: ORGANIZATION NAME ACCOUNT_REF STATUS EXPIRES_IN REFRESHES LAST_REFRESH.
std::string FormatMerchantTable(const std::vector<v1::Merchant>& merchants, TimePoint now);
// "key: value" lines, one per field.
std::string FormatMerchantDetails(const v1::Merchant& merchant, TimePoint now);
// One line: "org_1 (Name) active, token expires in 52m, 12 refreshes, last refresh: ok".
std::string FormatMerchantLine(const v1::Merchant& merchant, TimePoint now);

// JSON with the proto field names (snake_case), all fields present.
std::string MerchantToJson(const v1::Merchant& merchant);
std::string MerchantsToJson(const std::vector<v1::Merchant>& merchants);
// {"token", "expires_at", "scopes", "organization_id"}: prints the token, by design.
std::string AccessTokenToJson(const v1::GetAccessTokenResponse& response);
// {"authorize_url", "state", "expires_at"}.
std::string AuthorizationToJson(const v1::BeginAuthorizationResponse& response);
// A JSON string literal, quotes included.
std::string JsonQuote(std::string_view text);

}  // namespace connectbroker::client
