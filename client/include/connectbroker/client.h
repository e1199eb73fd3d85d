// Blocking client of the connect-broker gRPC API (package connectbroker.v1), plus the pure
// formatting used by the admin CLI. Hides the stubs; every call has a deadline (a following
// WatchEvents: for connecting) and returns absl::Status(Or) carrying the daemon's gRPC code and
// message. Not thread-compatible beyond
// grpc::Channel's own guarantees: use one BrokerClient per thread or guard it.
// Never formats an access token except through AccessTokenToJson (which exists to print it).
#pragma once

#include <grpcpp/channel.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "connectbroker/v1/admin.grpc.pb.h"
#include "connectbroker/v1/merchant.pb.h"
#include "connectbroker/v1/onboarding.grpc.pb.h"
#include "connectbroker/v1/proxy.grpc.pb.h"
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

// Cancels a BrokerClient::WatchEvents call from another thread (e.g. on Ctrl-C). Cancel() is
// thread-safe and may come before, during or after the call; a cancelled call ends promptly
// with OK. One watcher per canceller at a time.
class WatchCanceller {
 public:
  void Cancel();
  bool cancelled() const;

 private:
  friend class BrokerClient;
  // Returns false (and registers nothing) when already cancelled.
  bool Register(grpc::ClientContext* context);
  void Unregister();

  mutable std::mutex mu_;
  bool cancelled_ = false;
  grpc::ClientContext* context_ = nullptr;
};

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
  absl::StatusOr<v1::Merchant> RevokeMerchant(const std::string& organization_id);
  // The request carries a refresh token: never log or print it.
  absl::StatusOr<v1::Merchant> ImportMerchant(const v1::ImportMerchantRequest& request);
  absl::Status DeleteMerchant(const std::string& organization_id);
  absl::StatusOr<v1::Stats> GetStats();
  // Calls `on_event` on this thread for every streamed event, in order. With
  // request.no_follow() the timeout bounds the whole call, which ends after the backlog.
  // Otherwise the timeout bounds only connecting (unreachable: fails like the other calls) and
  // the stream follows live events until the daemon ends it or `canceller` cancels it (then OK).
  absl::Status WatchEvents(const v1::WatchEventsRequest& request,
                           const std::function<void(const v1::Event&)>& on_event,
                           WatchCanceller* canceller = nullptr);
  // TokenService.
  absl::StatusOr<v1::GetAccessTokenResponse> GetAccessToken(
      const v1::GetAccessTokenRequest& request);
  // OnboardingService.
  absl::StatusOr<v1::BeginAuthorizationResponse> BeginAuthorization(
      const v1::BeginAuthorizationRequest& request);
  absl::StatusOr<v1::Merchant> CompleteAuthorization(const std::string& code,
                                                     const std::string& state);

  // ProxyService. Any HTTP status Mollie answers with (404, 422, 429, 5xx...) is an OK result
  // carrying that status; an error status is a failure of the broker (or of reaching it). The
  // deadline defaults to now + the constructor's timeout.
  absl::StatusOr<v1::ProxyResponse> Call(
      const v1::ProxyRequest& request,
      std::optional<std::chrono::system_clock::time_point> deadline = std::nullopt);
  // Calls `on_page` on this thread for every page, in order, as it arrives; the deadline bounds
  // the whole stream. A non-OK status from `on_page` cancels the stream and is returned as is.
  // A non-2xx page is the last one and the call still returns OK (see proxy.proto).
  absl::Status CallPaged(
      const v1::ProxyPagedRequest& request,
      const std::function<absl::Status(const v1::ProxyPage&)>& on_page,
      std::optional<std::chrono::system_clock::time_point> deadline = std::nullopt);

 private:
  // `was_connected`: the call ran over a connection that had been established, so a failure
  // is never "unreachable".
  absl::Status Convert(const grpc::Status& status, bool was_connected = false) const;
  // Waits until the channel is READY or has failed (then the call fails fast with gRPC's
  // reason); an unreachable status when neither happens before `deadline`. Returns OK early
  // when `canceller` (may be null) is cancelled.
  absl::Status AwaitConnection(std::chrono::system_clock::time_point deadline,
                               const WatchCanceller* canceller) const;

  std::shared_ptr<grpc::Channel> channel_;
  std::string address_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
  std::unique_ptr<v1::TokenService::Stub> token_;
  std::unique_ptr<v1::OnboardingService::Stub> onboarding_;
  std::unique_ptr<v1::ProxyService::Stub> proxy_;
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

// "onboarded", "refreshed", "refresh-failed", "needs-reauthorization", "revoked", "deleted",
// "app-credentials-rejected", "mass-invalid-grant", "unspecified".
std::string EventTypeName(v1::EventType type);
// One line, no newline: "SEQ TIME TYPE ORG STATUS DETAIL"; "-" for an empty organization
// (app-wide events), an unspecified status or an empty detail; control characters as \xNN.
std::string FormatEventLine(const v1::Event& event);
// "key: value" lines: grants, scheduled, refreshes_in_flight, refreshes_ok, refreshes_failed,
// refresh_paused (yes/no), pause_reason.
std::string FormatStats(const v1::Stats& stats);

// JSON with the proto field names (snake_case), all fields present.
std::string MerchantToJson(const v1::Merchant& merchant);
std::string MerchantsToJson(const std::vector<v1::Merchant>& merchants);
// One line (JSON Lines friendly); 64-bit counters are strings, per the proto JSON mapping.
std::string EventToJson(const v1::Event& event);
std::string StatsToJson(const v1::Stats& stats);
// {"token", "expires_at", "scopes", "organization_id"}: prints the token, by design.
std::string AccessTokenToJson(const v1::GetAccessTokenResponse& response);
// {"authorize_url", "state", "expires_at"}.
std::string AuthorizationToJson(const v1::BeginAuthorizationResponse& response);
// A JSON string literal, quotes included.
std::string JsonQuote(std::string_view text);

}  // namespace connectbroker::client
