// Daemon configuration: a TOML file, validated once at start-up and split into one Options struct
// per module. Secrets are never in the file: it names secret files (systemd LoadCredential=), and
// LoadConfig reads them. Every key and its default is documented in docs/configuration.md and
// deploy/connect-brokerd.toml. Unknown keys are errors (a typo must not silently fall back to a
// default). Errors name the file, the key and what is wrong; never a secret's value.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/common/log.h"
#include "daemon/common/redact.h"

namespace connectbroker::config {

struct ServerOptions {
  std::string grpc_listen = "127.0.0.1:50051";  // host:port or unix:/path
  std::string http_listen = "127.0.0.1:8080";   // host:port (callback, health)
  std::chrono::seconds shutdown_grace{10};
};

struct MollieOptions {
  std::string authorize_base_url = "https://my.mollie.com";  // + /oauth2/authorize
  std::string api_base_url = "https://api.mollie.com";       // + /oauth2/tokens, /v2/...
  std::string ca_file;  // empty: the system's trust store
  std::string client_id;
  std::string client_secret_file;
  SecretString client_secret;  // read from client_secret_file
  std::string redirect_uri;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds request_timeout{15000};
};

struct StorageOptions {
  std::string data_dir = "/var/lib/connect-broker";
  std::string key_file;
};

struct RefreshOptions {
  // Refresh when this fraction of the token lifetime is left (0.25 of 1 h = 15 min).
  double margin = 0.25;
  // +- this fraction of the lifetime, uniformly random per refresh, spreads refreshes out.
  double jitter = 0.10;
  // Never hand out a token with less than this left; refresh first.
  std::chrono::seconds min_serve_ttl{5};
  // Largest min_ttl a GetAccessToken caller may ask for.
  std::chrono::seconds max_min_ttl{1800};
  // Scheduled refreshes in flight at once, and their rate toward the token endpoint.
  int max_concurrent = 16;
  double rate_per_second = 20;
  int burst = 20;
  // Backoff after a failed refresh: full jitter, exponential from initial to max.
  std::chrono::milliseconds backoff_initial{1000};
  std::chrono::milliseconds backoff_max{300000};
  // On-demand refreshes (callers' min_ttl) of one grant at most this often.
  std::chrono::seconds min_on_demand_interval{10};
  // Circuit breaker: transient failures in a row that open it; probe interval bounds.
  int breaker_failures = 20;
  std::chrono::milliseconds breaker_probe_initial{2000};
  std::chrono::milliseconds breaker_probe_max{60000};
  // Pause after Mollie rejects the app's credentials (doubles up to 16x while it persists).
  std::chrono::milliseconds credentials_pause{30000};
  // More invalid_grant answers than this within the window: stop marking merchants lost.
  int mass_invalid_grant_threshold = 10;
  std::chrono::seconds mass_invalid_grant_window{60};
};

struct EventsOptions {
  // Event log retention: at most this many events, none older than max_age.
  int64_t keep = 1000000;
  std::chrono::hours max_age{24 * 7};
};

struct OnboardingOptions {
  std::vector<std::string> default_scopes = {"organizations.read", "payments.read",
                                             "payments.write", "profiles.read"};
  std::chrono::seconds state_ttl{600};
};

struct ProxyOptions {
  // Threads of the proxy's own io_context (TLS to Mollie's API host); never the refresh loop.
  int threads = 2;
  // Keep-alive connections to the API host (in use + idle); callers beyond it wait.
  int max_connections = 64;
  // An idle connection is not reused after this long (Mollie closes idle connections too).
  std::chrono::milliseconds idle_timeout{20000};
  // Upper bound on one proxied call (a caller's shorter gRPC deadline wins).
  std::chrono::milliseconds request_timeout{30000};
  // Requests per call including retries (a 401 refresh-and-replay does not count).
  int max_attempts = 3;
  std::chrono::milliseconds retry_initial{100};
  std::chrono::milliseconds retry_max{2000};
  int64_t max_request_body_bytes = 1 << 20;
  // Larger replies fail with RESOURCE_EXHAUSTED. gRPC clients accept 4 MiB by default.
  int64_t max_response_body_bytes = 2 << 20;
};

struct Config {
  std::string path;  // the file it came from
  LogLevel log_level = LogLevel::kInfo;
  ServerOptions server;
  MollieOptions mollie;
  StorageOptions storage;
  RefreshOptions refresh;
  OnboardingOptions onboarding;
  EventsOptions events;
  ProxyOptions proxy;
};

// Reads and validates the file, then reads the client secret file it names. Relative paths in the
// file are resolved against the file's directory.
absl::StatusOr<Config> LoadConfig(const std::string& path);

// Parses and validates TOML text without touching secret files (client_secret stays empty).
// `origin` names the source in error messages; `base_dir` resolves relative paths.
absl::StatusOr<Config> ParseConfig(std::string_view toml_text, std::string_view origin,
                                   std::string_view base_dir);

// Reads a secret file: trims one trailing newline; errors name the file, never the content.
absl::StatusOr<SecretString> ReadSecretFile(const std::string& path, std::string_view what);

}  // namespace connectbroker::config
