// The simulated Mollie: OAuth authorize / token / revoke, GET /v2/organizations/me and the
// /_sim/ control API, as a request -> response function with no I/O of its own.
// Thread-safe: one mutex guards all state and Handle() never blocks (a delay fault is carried out
// by the transport, see SimResponse::delay_ms). Owned by main(); the HTTPS server borrows it for
// its whole lifetime. Clock and Random are borrowed too.
#pragma once

#include <absl/base/thread_annotations.h>

#include <boost/json/object.hpp>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
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
};

enum class SimAction {
  kRespond,  // send the response
  kReset,    // close the connection without a response
  kHang,     // hold the connection (30 s), then close it without a response
};

struct SimResponse {
  SimAction action = SimAction::kRespond;
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  int64_t delay_ms = 0;  // wait this long before carrying out `action` (delay fault)
  // Set for POST /oauth2/tokens: the request counts as in flight until the transport has
  // finished with it and calls Simulator::TokenRequestDone().
  bool token_request = false;
  std::string log_note;  // for the transport's log line, e.g. "fault: reply_then_drop"
};

class Simulator {
 public:
  Simulator(SimOptions options, const Clock& clock, Random& random);
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  SimResponse Handle(const SimRequest& request);
  // Ends the in-flight span of a response that had `token_request` set (sent, dropped or
  // abandoned at shutdown). Call exactly once per such response.
  void TokenRequestDone();

 private:
  struct Organization {
    std::string id;
    std::string name;
    std::string email;
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

  // Routing (simulator.cc).
  SimResponse Route(const SimRequest& request, std::string_view path, std::string_view query);
  SimResponse TokenEndpoint(const SimRequest& request);
  // Takes (counts down) the first fault matching the request. `grant_type` is that of a POST
  // /oauth2/tokens, empty otherwise.
  std::optional<Fault> TakeFault(std::string_view target, std::string_view grant_type);
  // The response of a fault that replaces processing (every mode but delay/reply_then_drop).
  SimResponse FaultResponse(const Fault& fault, std::string_view target,
                            std::string_view grant_type) const;

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

  // REST API (simulator.cc).
  SimResponse Api(const SimRequest& request, std::string_view path);

  // Control API (control_api.cc).
  SimResponse Control(const SimRequest& request, std::string_view path);
  boost::json::object ConfigJson() const;
  boost::json::object StatsJson() const;
  SimResponse BulkGrants(const boost::json::object& body);

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
};

// Most entries GET /_sim/token_log keeps (older ones are dropped).
inline constexpr size_t kTokenLogCapacity = 200000;
// Most grants one POST /_sim/grants creates.
inline constexpr int64_t kMaxBulkGrants = 20000;

// Response helpers shared by the endpoint files.
SimResponse JsonResponse(int status, const boost::json::value& body,
                         std::string_view content_type = "application/json; charset=utf-8");
SimResponse OAuthError(int status, std::string_view error, std::string_view description);
SimResponse HalError(int status, std::string_view title, std::string_view detail);
SimResponse HalUnauthorized();

// The scopes of a space-separated list, deduplicated, in order; nullopt if one is unknown
// (`unknown` then names it). Empty input gives an empty list.
std::optional<std::vector<std::string>> ParseScopes(std::string_view text, std::string* unknown);

}  // namespace connectbroker::mollie_sim
