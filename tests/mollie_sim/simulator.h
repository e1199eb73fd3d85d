// The simulated Mollie: OAuth authorize / token / revoke, a slice of the REST API (/v2/:
// organizations, profiles, permissions, onboarding, payments, refunds, with Idempotency-Key) and
// the /_sim/ control API, as a request -> response function with no I/O of its own.
// Thread-safe: one mutex guards all state and Handle() never blocks (a delay fault is carried out
// by the transport, see SimResponse::delay_ms). Owned by main(); the HTTPS server borrows it for
// its whole lifetime. Clock and Random are borrowed too.
#pragma once

#include <absl/base/thread_annotations.h>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "daemon/common/clock.h"
#include "daemon/common/random.h"
#include "tests/mollie_sim/codec.h"

namespace connectbroker::mollie_sim {

struct SimOptions {
  std::string client_id = "app_simulator";
  std::string client_secret = "secret_simulator";
  // The app's registered redirect URI. Empty: whatever /oauth2/authorize is given counts as
  // registered (and a request without one is refused).
  std::string redirect_uri;
  int64_t access_token_ttl_seconds = 3600;
  int64_t code_ttl_seconds = 30;
  bool rotate_refresh_tokens = false;
  // With rotation: the predecessor of the current refresh token stays usable (an idempotent
  // replay answering the current one) until the current one has been used. False: the old
  // token dies as soon as its successor is issued.
  bool rotation_replay = true;
};

struct SimRequest {
  std::string method;
  std::string target;  // origin-form: path and query
  std::string content_type;
  std::string authorization;
  std::string body;
  std::string host;             // the Host header (REST links are built from it); may be empty
  std::string idempotency_key;  // the Idempotency-Key header; empty when absent
  // Every request header, names lowercased, in arrival order.
  std::vector<std::pair<std::string, std::string>> headers;
};

enum class SimAction {
  kRespond,  // send the response
  kReset,    // close the connection without a response
  kHang,     // hold the connection (30 s), then close it without a response
  // Send the status line and headers (Content-Length of the whole body) and only the first half
  // of the body, then close the connection.
  kTruncate,
};

struct SimResponse {
  SimAction action = SimAction::kRespond;
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  int64_t delay_ms = 0;  // wait this long before carrying out `action` (delay fault)
  // Set for requests the simulator tracks while they are in flight (POST /oauth2/tokens and
  // every /v2/ request, whose Idempotency-Key stays "in flight" too): the transport calls it
  // exactly once, when the reply is about to be written (after any delay), dropped (reset,
  // after a hang) or abandoned at shutdown. It takes the simulator's lock, so never call it
  // from within Handle().
  std::function<void()> on_finished;
  std::string log_note;  // for the transport's log line, e.g. "fault: reply_then_drop"
};

class Simulator {
 public:
  Simulator(SimOptions options, const Clock& clock, Random& random);
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  SimResponse Handle(const SimRequest& request);

 private:
  struct Organization {
    std::string id;
    std::string name;
    std::string email;
    int64_t created_at_ms = 0;  // onboarding signedUpAt, profile createdAt
  };
  struct AuthCode {
    std::string organization_id;
    std::string scope;         // space-separated, as granted
    std::string redirect_uri;  // as given to /oauth2/authorize; may be empty
    std::string client_id;
    int64_t expires_at_ms = 0;  // issue time + the code TTL then in force
    bool force = false;
    bool used = false;
  };
  // One authorization: a refresh token (replaced on rotation) and its access tokens.
  struct Grant {
    std::string organization_id;
    std::string scope;
    std::string exchange_redirect_uri;  // as given in the code exchange; may be empty
    bool revoked = false;
  };
  static constexpr size_t kNone = static_cast<size_t>(-1);
  // Rotation chain: R1 -> R2 -> R3. The newest (no successor) is the current token; the one
  // before it is replayable (not dead) until the current one is used; older ones are dead.
  struct RefreshToken {
    std::string token;
    size_t grant = 0;
    bool dead = false;           // can never be used again
    size_t predecessor = kNone;  // index in refresh_tokens_
    size_t successor = kNone;    // set when rotated away
  };
  struct AccessToken {
    std::string token;
    size_t grant = 0;
    int64_t expires_at_ms = 0;
    bool revoked = false;
  };
  struct Fault {
    std::string target;  // token | api | all
    std::string mode;
    int64_t remaining = 0;             // -1: until cleared
    int64_t retry_after_seconds = -1;  // -1: not given (429 then sends 1)
    int64_t delay_ms = 0;              // mode delay
    std::string grant_type;            // target token only; empty: any request
    std::string method;                // target api only; empty: any method
    std::string path_prefix;           // target api only; empty: any path
    int64_t size_bytes = 0;            // mode oversized
  };
  struct Stats {
    int64_t token_requests = 0;
    int64_t code_exchanges = 0;
    int64_t refreshes = 0;
    std::map<std::string, int64_t> refreshes_by_organization;
    int64_t refresh_replays = 0;
    int64_t refresh_attempts = 0;
    std::map<std::string, int64_t> refresh_attempts_by_organization;
    int64_t revocations = 0;
    int64_t max_concurrent_token_requests = 0;
    int64_t api_requests = 0;
    int64_t max_concurrent_api_requests = 0;
  };
  struct TokenLogEntry {
    int64_t time_ms = 0;
    std::string grant_type;       // as given; empty when missing or unreadable
    std::string organization_id;  // empty when the code or refresh token is unknown
    int status = 0;               // 0: no response produced (reset, hang)
    std::string fault;            // fault mode, or "none"
  };
  // What a POST /oauth2/tokens is about, read without changing state.
  struct TokenRequestInfo {
    std::string grant_type;
    std::string organization_id;
  };
  struct ApiLogEntry {
    int64_t time_ms = 0;
    std::string method;
    std::string path;
    std::string query;            // as received (encoded), without '?'
    std::string organization_id;  // empty when the bearer token was not accepted
    int status = 0;               // 0: no response produced (reset, hang)
    std::string fault;            // fault mode, or "none"
    std::string idempotency_key;  // as given; empty when absent
    bool replayed = false;        // answered from the idempotency cache
  };
  struct Payment {
    std::string id;
    std::string organization_id;
    bool test = false;  // mode test (else live)
    std::string profile_id;
    std::string status;  // open | pending | authorized | paid | canceled | expired | failed
    std::string currency;
    std::string value;  // as given, e.g. "10.00"
    int64_t cents = 0;
    int64_t refunded_cents = 0;
    std::string description;
    std::string redirect_url;  // empty: absent
    std::string webhook_url;
    std::string cancel_url;
    std::string method;                // empty: null
    boost::json::value metadata;       // null when absent
    std::string idempotency_key;       // of the request that created it; empty when none
    int64_t created_at_ms = 0;
    int64_t paid_at_ms = 0;            // when the status became paid; 0: never
    size_t position = 0;               // index in its organization's list of its mode
    std::vector<size_t> refunds;       // indices in refunds_
  };
  struct Refund {
    std::string id;
    size_t payment = 0;  // index in payments_
    std::string currency;
    std::string value;
    int64_t cents = 0;
    std::string description;
    boost::json::value metadata;
    std::string status;  // pending
    std::string idempotency_key;
    int64_t created_at_ms = 0;
  };
  // An organization's payments per mode, oldest first (a list is served newest first).
  struct OrganizationPayments {
    std::vector<size_t> live;
    std::vector<size_t> test;
  };
  // The first response to a POST with an Idempotency-Key, per (organization, key).
  struct IdempotencyEntry {
    uint64_t serial = 0;
    int64_t created_at_ms = 0;
    std::string method;
    std::string target;
    std::string body;
    bool in_flight = true;  // until the transport has finished with the first response
    int status = 0;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string response_body;
  };
  // One /v2/ request while it is handled.
  struct ApiCall {
    const SimRequest& request;
    std::string_view path;
    std::string_view query;
    std::string base;      // "https://<Host>/v2/", for links
    size_t grant = kNone;  // the bearer token's grant, once accepted
    std::string organization_id;
    bool replayed = false;
    std::string idempotency_slot;  // key of idempotency_ when this call stored an entry
    uint64_t idempotency_serial = 0;
  };

  // Routing (simulator.cc).
  SimResponse Route(const SimRequest& request, std::string_view path, std::string_view query);
  SimResponse TokenEndpoint(const SimRequest& request);
  // /v2/*: faults, the API log and the in-flight count around Api().
  SimResponse ApiEndpoint(const SimRequest& request, std::string_view path,
                          std::string_view query);
  void TokenRequestDone();
  void ApiRequestDone(const std::string& idempotency_slot, uint64_t serial);

  // Faults (faults.cc). Takes (counts down) the first fault matching the request. `grant_type`
  // is that of a POST /oauth2/tokens, empty otherwise; `method` and `path` those of a /v2/
  // request.
  std::optional<Fault> TakeFault(std::string_view target, std::string_view grant_type,
                                 std::string_view method = "", std::string_view path = "");
  // The response of a fault that replaces processing (every mode but delay, reply_then_drop
  // and truncated).
  SimResponse FaultResponse(const Fault& fault, std::string_view target,
                            std::string_view grant_type) const;
  SimResponse FaultsControl(bool post, const boost::json::object& body);

  // OAuth (oauth_endpoints.cc).
  SimResponse Authorize(std::string_view query);
  SimResponse PostTokens(const SimRequest& request);
  SimResponse DeleteTokens(const SimRequest& request);
  SimResponse CodeGrant(const FormFields& fields);
  SimResponse RefreshGrant(const FormFields& fields);
  TokenRequestInfo InspectTokenRequest(const SimRequest& request) const;
  // nullopt when the client authenticated; otherwise the 401 to send.
  std::optional<SimResponse> AuthenticateClient(const SimRequest& request,
                                                const FormFields& fields);

  // REST API (rest_api.cc): bearer authentication, Idempotency-Key, routing, scopes, and the
  // organization, profile, permission and onboarding endpoints.
  SimResponse Api(ApiCall& call);
  SimResponse ApiRoute(ApiCall& call);
  bool GrantHasScope(size_t grant, std::string_view scope) const;
  SimResponse OrganizationMe(const ApiCall& call);
  SimResponse ListProfiles(const ApiCall& call);
  SimResponse GetProfile(const ApiCall& call, std::string_view id);
  boost::json::object ProfileJson(const Organization& org, const std::string& base) const;
  SimResponse ListPermissions(const ApiCall& call);
  SimResponse GetPermission(const ApiCall& call, std::string_view id);
  SimResponse OnboardingMe(const ApiCall& call);
  // Idempotency-Key (idempotency.cc): a replay, 400 or 409 to answer instead of processing, or
  // nullopt (then Remember() the response).
  std::optional<SimResponse> IdempotencyCheck(ApiCall& call);
  void RememberIdempotent(ApiCall& call, const SimResponse& response);
  void ExpireIdempotencyKeys();

  // Payments and refunds (rest_payments.cc).
  SimResponse CreatePayment(const ApiCall& call);
  SimResponse GetPayment(const ApiCall& call, std::string_view id);
  SimResponse ListPayments(const ApiCall& call);
  SimResponse CreateRefund(const ApiCall& call, std::string_view payment_id);
  // The payment of `id` visible to the call's organization in `test` mode; else the 404.
  std::variant<size_t, SimResponse> FindPayment(const ApiCall& call, std::string_view id,
                                                bool test) const;
  boost::json::object PaymentJson(const Payment& payment, const std::string& base,
                                  bool created) const;
  boost::json::object RefundJson(const Refund& refund, const std::string& base) const;
  // Adds a payment (ids unique) and returns its index.
  size_t AddPayment(Payment payment);

  // Control API (control_api.cc, control_payments.cc).
  SimResponse Control(const SimRequest& request, std::string_view path, std::string_view query);
  boost::json::object ConfigJson() const;
  boost::json::object StatsJson() const;
  SimResponse BulkGrants(const boost::json::object& body);
  // The /_sim/ calls about payments, refunds and the API log; nullopt for other paths.
  std::optional<SimResponse> PaymentsControl(const SimRequest& request, std::string_view path,
                                             std::string_view query,
                                             const boost::json::object& body);
  boost::json::object PaymentControlJson(const Payment& payment) const;

  // State helpers (simulator.cc).
  int64_t NowMs() const;
  Organization& OrganizationFor(const std::string& id);
  Organization& NewOrganization();
  // Issues a new access token under `grant` and answers with the token JSON.
  SimResponse IssueTokens(size_t grant, const std::string& refresh_token);
  void RevokeGrantsOf(const std::string& organization_id);
  bool AccessTokenValid(const AccessToken& token, int64_t now_ms) const;
  // The current refresh token of a live grant.
  bool RefreshTokenValid(const RefreshToken& token) const;
  // A rotated-away token whose successor has not been used yet (live grant).
  bool RefreshTokenReplayable(const RefreshToken& token) const;
  // Adds a refresh token to `grant` and returns its index.
  size_t AddRefreshToken(size_t grant, size_t predecessor);
  std::string NewToken(std::string_view prefix);
  // "pfl_" + the organization id's suffix: every organization has this one profile.
  static std::string ProfileIdOf(std::string_view organization_id);

  const Clock& clock_;
  Random& random_;

  std::mutex mu_;
  SimOptions options_ ABSL_GUARDED_BY(mu_);  // config can change at run time
  std::map<std::string, Organization> organizations_ ABSL_GUARDED_BY(mu_);
  int64_t next_organization_number_ ABSL_GUARDED_BY(mu_) = 1000001;
  std::unordered_map<std::string, AuthCode> codes_ ABSL_GUARDED_BY(mu_);
  std::vector<Grant> grants_ ABSL_GUARDED_BY(mu_);
  std::vector<RefreshToken> refresh_tokens_ ABSL_GUARDED_BY(mu_);  // in order of issue
  std::unordered_map<std::string, size_t> refresh_index_ ABSL_GUARDED_BY(mu_);
  std::vector<AccessToken> access_tokens_ ABSL_GUARDED_BY(mu_);  // in order of issue
  std::unordered_map<std::string, size_t> access_index_ ABSL_GUARDED_BY(mu_);
  std::vector<Fault> faults_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
  int64_t token_requests_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<TokenLogEntry> token_log_ ABSL_GUARDED_BY(mu_);  // oldest first, capped
  int64_t clock_offset_seconds_ ABSL_GUARDED_BY(mu_) = 0;     // POST /_sim/clock
  int64_t api_requests_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<ApiLogEntry> api_log_ ABSL_GUARDED_BY(mu_);  // oldest first, capped
  std::vector<Payment> payments_ ABSL_GUARDED_BY(mu_);    // in order of creation
  std::unordered_map<std::string, size_t> payment_index_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, OrganizationPayments> payments_by_organization_
      ABSL_GUARDED_BY(mu_);
  std::vector<Refund> refunds_ ABSL_GUARDED_BY(mu_);  // in order of creation
  std::unordered_map<std::string, size_t> refund_index_ ABSL_GUARDED_BY(mu_);
  // Keyed by organization id + '\n' + Idempotency-Key; expiry_ holds them oldest first.
  std::unordered_map<std::string, IdempotencyEntry> idempotency_ ABSL_GUARDED_BY(mu_);
  std::deque<std::pair<std::string, uint64_t>> idempotency_expiry_ ABSL_GUARDED_BY(mu_);
  uint64_t next_idempotency_serial_ ABSL_GUARDED_BY(mu_) = 1;
};

// Most entries GET /_sim/token_log keeps (older ones are dropped).
inline constexpr size_t kTokenLogCapacity = 200000;
// Most grants one POST /_sim/grants creates.
inline constexpr int64_t kMaxBulkGrants = 20000;
// Most entries GET /_sim/api_log keeps.
inline constexpr size_t kApiLogCapacity = 200000;
// How long an Idempotency-Key is remembered (simulator clock).
inline constexpr int64_t kIdempotencyTtlMs = 3600 * 1000;

// Response helpers shared by the endpoint files.
SimResponse JsonResponse(int status, const boost::json::value& body,
                         std::string_view content_type = "application/json; charset=utf-8");
SimResponse OAuthError(int status, std::string_view error, std::string_view description);
// A HAL error (`application/hal+json`) with Mollie's title for `status` and, when not empty, the
// `field` at fault.
SimResponse HalError(int status, std::string_view detail, std::string_view field = "");
SimResponse HalUnauthorized();

// The scopes of a space-separated list, deduplicated, in order; nullopt if one is unknown
// (`unknown` then names it). Empty input gives an empty list.
std::optional<std::vector<std::string>> ParseScopes(std::string_view text, std::string* unknown);
// Mollie's published scopes (API-FACTS section 4), sorted.
std::span<const std::string_view> KnownScopes();

}  // namespace connectbroker::mollie_sim
