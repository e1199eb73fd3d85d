#include "daemon/config/config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "daemon/common/strings.h"
#include "absl/strings/str_join.h"
#include "daemon/common/status_macros.h"

namespace connectbroker::config {
namespace {

// Reads one TOML table, remembering which keys were consumed so that leftovers (typos) are
// reported. Every getter leaves the default in place when the key is absent.
class TableReader {
 public:
  TableReader(const toml::table* table, std::string name, std::string_view origin)
      : table_(table), name_(std::move(name)), origin_(origin) {}

  absl::Status String(std::string_view key, std::string& out) {
    const toml::node* node = Take(key);
    if (node == nullptr) {
      return absl::OkStatus();
    }
    auto v = node->value<std::string>();
    if (!v || !node->is_string()) {
      return Bad(key, "must be a string");
    }
    out = *v;
    return absl::OkStatus();
  }

  absl::Status Double(std::string_view key, double& out, double min, double max) {
    const toml::node* node = Take(key);
    if (node == nullptr) {
      return absl::OkStatus();
    }
    if (!node->is_number()) {
      return Bad(key, "must be a number");
    }
    double v = *node->value<double>();
    if (!std::isfinite(v) || v < min || v > max) {
      return Bad(key, StrCat("must be between ", min, " and ", max));
    }
    out = v;
    return absl::OkStatus();
  }

  absl::Status Int(std::string_view key, int64_t& out, int64_t min, int64_t max) {
    const toml::node* node = Take(key);
    if (node == nullptr) {
      return absl::OkStatus();
    }
    if (!node->is_integer()) {
      return Bad(key, "must be an integer");
    }
    int64_t v = *node->value<int64_t>();
    if (v < min || v > max) {
      return Bad(key, StrCat("must be between ", min, " and ", max));
    }
    out = v;
    return absl::OkStatus();
  }

  template <typename Rep, typename Period>
  absl::Status Duration(std::string_view key, std::chrono::duration<Rep, Period>& out,
                        int64_t min, int64_t max) {
    int64_t v = out.count();
    RETURN_IF_ERROR(Int(key, v, min, max));
    out = std::chrono::duration<Rep, Period>(v);
    return absl::OkStatus();
  }

  absl::Status StringList(std::string_view key, std::vector<std::string>& out) {
    const toml::node* node = Take(key);
    if (node == nullptr) {
      return absl::OkStatus();
    }
    const toml::array* arr = node->as_array();
    if (arr == nullptr) {
      return Bad(key, "must be an array of strings");
    }
    std::vector<std::string> values;
    for (const toml::node& el : *arr) {
      if (!el.is_string()) {
        return Bad(key, "must be an array of strings");
      }
      values.push_back(*el.value<std::string>());
    }
    out = std::move(values);
    return absl::OkStatus();
  }

  // Error for keys present in the table that no getter asked for.
  absl::Status Finish() const {
    if (table_ == nullptr) {
      return absl::OkStatus();
    }
    std::vector<std::string> unknown;
    for (const auto& [k, v] : *table_) {
      if (!taken_.count(std::string(k.str()))) {
        unknown.push_back(Qualified(k.str()));
      }
    }
    if (!unknown.empty()) {
      return absl::InvalidArgumentError(StrCat(
          origin_, ": unknown key(s) ", absl::StrJoin(unknown, ", "),
          " (see docs/configuration.md)"));
    }
    return absl::OkStatus();
  }

  absl::Status Bad(std::string_view key, std::string_view what) const {
    return absl::InvalidArgumentError(StrCat(origin_, ": ", Qualified(key), " ", what));
  }

 private:
  const toml::node* Take(std::string_view key) {
    taken_.insert(std::string(key));
    return table_ == nullptr ? nullptr : table_->get(key);
  }
  std::string Qualified(std::string_view key) const {
    return name_.empty() ? std::string(key) : StrCat(name_, ".", key);
  }

  const toml::table* table_;
  std::string name_;
  std::string origin_;
  std::set<std::string> taken_;
};

absl::Status CheckUrl(std::string_view origin, std::string_view key, const std::string& url) {
  if (url.rfind("https://", 0) != 0 || url.size() <= 8) {
    return absl::InvalidArgumentError(
        StrCat(origin, ": ", key, " must be an https:// URL, got \"", url, "\""));
  }
  if (url.find_first_of(" \t\r\n?#") != std::string::npos) {
    return absl::InvalidArgumentError(
        StrCat(origin, ": ", key, " must be a base URL without spaces, query or fragment"));
  }
  const std::string rest = url.substr(8);
  const std::string authority = rest.substr(0, rest.find('/'));
  const std::string path = rest.size() > authority.size() ? rest.substr(authority.size()) : "";
  if (authority.find('@') != std::string::npos) {
    return absl::InvalidArgumentError(
        StrCat(origin, ": ", key, " must not carry credentials (user@ or user:password@)"));
  }
  // host, host:port, [v6] or [v6]:port, with a port in 1-65535.
  const size_t bracket = authority.rfind(']');
  const size_t colon = authority.rfind(':');
  if (colon != std::string::npos && (bracket == std::string::npos || colon > bracket)) {
    const std::string port = authority.substr(colon + 1);
    const bool digits = !port.empty() && port.size() <= 5 &&
                        port.find_first_not_of("0123456789") == std::string::npos;
    if (!digits || std::stoi(port) < 1 || std::stoi(port) > 65535) {
      return absl::InvalidArgumentError(
          StrCat(origin, ": ", key, " needs a port between 1 and 65535, got \"", url, "\""));
    }
    if (colon == 0 || (bracket != std::string::npos && bracket + 1 != colon)) {
      return absl::InvalidArgumentError(StrCat(origin, ": ", key, " has no host"));
    }
  } else if (authority.empty()) {
    return absl::InvalidArgumentError(StrCat(origin, ": ", key, " has no host"));
  }
  if (key == "mollie.api_base_url" && (path == "/v2" || path.ends_with("/v2") ||
                                       path.ends_with("/v2/") || path.ends_with("/oauth2") ||
                                       path.ends_with("/oauth2/"))) {
    return absl::InvalidArgumentError(StrCat(
        origin, ": ", key,
        " is the API's root (https://api.mollie.com); the broker adds /v2/ and /oauth2/ itself"));
  }
  return absl::OkStatus();
}

// host:port (port 0-65535; [v6]:port), or unix:/absolute/path where allowed.
absl::Status CheckListen(std::string_view origin, std::string_view key, const std::string& value,
                         bool allow_unix) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(StrCat(origin, ": ", key, " ", why, ", got \"", value, "\""));
  };
  if (value.rfind("unix:", 0) == 0) {
    if (!allow_unix) {
      return bad("must be host:port");
    }
    if (value.size() < 7 || value[5] != '/') {
      return bad("must be unix:/absolute/path");
    }
    return absl::OkStatus();
  }
  auto colon = value.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == value.size()) {
    return bad(allow_unix ? "must be host:port or unix:/path" : "must be host:port");
  }
  std::string host = value.substr(0, colon);
  std::string port = value.substr(colon + 1);
  if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port) > 65535) {
    return bad("needs a port between 0 and 65535");
  }
  if (host.front() == '[' ? host.back() != ']' : host.find_first_of(" []/\t") != std::string::npos) {
    return bad("has a malformed host");
  }
  return absl::OkStatus();
}

std::string Resolve(std::string_view base_dir, const std::string& path) {
  if (path.empty() || path[0] == '/' || base_dir.empty()) {
    return path;
  }
  return (std::filesystem::path(base_dir) / path).lexically_normal().string();
}

absl::StatusOr<LogLevel> ParseLevel(const std::string& s) {
  if (s == "error") return LogLevel::kError;
  if (s == "warning") return LogLevel::kWarning;
  if (s == "notice") return LogLevel::kNotice;
  if (s == "info") return LogLevel::kInfo;
  if (s == "debug") return LogLevel::kDebug;
  return absl::InvalidArgumentError("must be one of error, warning, notice, info, debug");
}

}  // namespace

absl::StatusOr<Config> ParseConfig(std::string_view toml_text, std::string_view origin,
                                   std::string_view base_dir) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    // toml++ reports the position; the message describes syntax, never values of secrets (none
    // are in this file).
    return absl::InvalidArgumentError(StrCat(
        origin, ":", e.source().begin.line, ":", e.source().begin.column, ": ", e.description()));
  }

  Config c;
  c.path = std::string(origin);
  std::string level = "info";

  TableReader top(&root, "", origin);
  RETURN_IF_ERROR(top.String("log_level", level));
  auto parsed_level = ParseLevel(level);
  if (!parsed_level.ok()) {
    return top.Bad("log_level", std::string(parsed_level.status().message()));
  }
  c.log_level = *parsed_level;

  auto table = [&](std::string_view name) -> absl::StatusOr<const toml::table*> {
    const toml::node* node = root.get(name);
    if (node == nullptr) {
      return nullptr;
    }
    if (!node->is_table()) {
      return absl::InvalidArgumentError(StrCat(origin, ": [", name, "] must be a table"));
    }
    return node->as_table();
  };
  ASSIGN_OR_RETURN(const toml::table* server_t, table("server"));
  ASSIGN_OR_RETURN(const toml::table* mollie_t, table("mollie"));
  ASSIGN_OR_RETURN(const toml::table* storage_t, table("storage"));
  ASSIGN_OR_RETURN(const toml::table* refresh_t, table("refresh"));
  ASSIGN_OR_RETURN(const toml::table* onboarding_t, table("onboarding"));
  TableReader server(server_t, "server", origin);
  RETURN_IF_ERROR(server.String("grpc_listen", c.server.grpc_listen));
  RETURN_IF_ERROR(server.String("http_listen", c.server.http_listen));
  RETURN_IF_ERROR(server.Duration("shutdown_grace_seconds", c.server.shutdown_grace, 0, 300));
  RETURN_IF_ERROR(server.Finish());
  if (c.server.grpc_listen.empty()) {
    return server.Bad("grpc_listen", "must not be empty");
  }
  if (c.server.http_listen.empty()) {
    return server.Bad("http_listen", "must not be empty");
  }
  RETURN_IF_ERROR(CheckListen(origin, "server.grpc_listen", c.server.grpc_listen, true));
  RETURN_IF_ERROR(CheckListen(origin, "server.http_listen", c.server.http_listen, false));

  TableReader mollie(mollie_t, "mollie", origin);
  RETURN_IF_ERROR(mollie.String("authorize_base_url", c.mollie.authorize_base_url));
  RETURN_IF_ERROR(mollie.String("api_base_url", c.mollie.api_base_url));
  RETURN_IF_ERROR(mollie.String("ca_file", c.mollie.ca_file));
  RETURN_IF_ERROR(mollie.String("client_id", c.mollie.client_id));
  RETURN_IF_ERROR(mollie.String("client_secret_file", c.mollie.client_secret_file));
  RETURN_IF_ERROR(mollie.String("redirect_uri", c.mollie.redirect_uri));
  RETURN_IF_ERROR(mollie.Duration("connect_timeout_ms", c.mollie.connect_timeout, 100, 120000));
  RETURN_IF_ERROR(mollie.Duration("request_timeout_ms", c.mollie.request_timeout, 100, 300000));
  if (mollie_t != nullptr && mollie_t->get("client_secret") != nullptr) {
    return mollie.Bad("client_secret",
                      "is not allowed: secrets never go in the config file; put the secret in a "
                      "file and name it with mollie.client_secret_file");
  }
  RETURN_IF_ERROR(mollie.Finish());
  RETURN_IF_ERROR(CheckUrl(origin, "mollie.authorize_base_url", c.mollie.authorize_base_url));
  RETURN_IF_ERROR(CheckUrl(origin, "mollie.api_base_url", c.mollie.api_base_url));
  if (c.mollie.client_id.empty()) {
    return mollie.Bad("client_id", "is required (the app's client id, \"app_...\")");
  }
  if (c.mollie.client_id.rfind("app_", 0) != 0) {
    return mollie.Bad("client_id", "must start with \"app_\"");
  }
  if (c.mollie.client_secret_file.empty()) {
    return mollie.Bad("client_secret_file", "is required");
  }
  if (c.mollie.redirect_uri.empty()) {
    return mollie.Bad("redirect_uri", "is required (the Redirect URL registered for the app)");
  }
  if (c.mollie.redirect_uri.rfind("https://", 0) != 0 &&
      c.mollie.redirect_uri.rfind("http://", 0) != 0) {
    return mollie.Bad("redirect_uri", "must be an http(s):// URL");
  }
  c.mollie.client_secret_file = Resolve(base_dir, c.mollie.client_secret_file);
  c.mollie.ca_file = Resolve(base_dir, c.mollie.ca_file);

  TableReader storage(storage_t, "storage", origin);
  RETURN_IF_ERROR(storage.String("data_dir", c.storage.data_dir));
  RETURN_IF_ERROR(storage.String("key_file", c.storage.key_file));
  RETURN_IF_ERROR(storage.Finish());
  if (c.storage.data_dir.empty()) {
    return storage.Bad("data_dir", "must not be empty");
  }
  if (c.storage.key_file.empty()) {
    return storage.Bad("key_file", "is required (file with the AES-256 encryption key(s))");
  }
  c.storage.data_dir = Resolve(base_dir, c.storage.data_dir);
  c.storage.key_file = Resolve(base_dir, c.storage.key_file);

  TableReader refresh(refresh_t, "refresh", origin);
  RETURN_IF_ERROR(refresh.Double("margin", c.refresh.margin, 0.05, 0.9));
  RETURN_IF_ERROR(refresh.Double("jitter", c.refresh.jitter, 0.0, 0.5));
  RETURN_IF_ERROR(refresh.Duration("min_serve_ttl_seconds", c.refresh.min_serve_ttl, 0, 600));
  RETURN_IF_ERROR(refresh.Duration("max_min_ttl_seconds", c.refresh.max_min_ttl, 0, 3000));
  int64_t max_concurrent = c.refresh.max_concurrent;
  RETURN_IF_ERROR(refresh.Int("max_concurrent", max_concurrent, 1, 1024));
  c.refresh.max_concurrent = static_cast<int>(max_concurrent);
  RETURN_IF_ERROR(refresh.Double("rate_per_second", c.refresh.rate_per_second, 0.01, 10000));
  int64_t burst = c.refresh.burst;
  RETURN_IF_ERROR(refresh.Int("burst", burst, 1, 10000));
  c.refresh.burst = static_cast<int>(burst);
  RETURN_IF_ERROR(refresh.Duration("backoff_initial_ms", c.refresh.backoff_initial, 10, 600000));
  RETURN_IF_ERROR(refresh.Duration("backoff_max_ms", c.refresh.backoff_max, 10, 3600000));
  RETURN_IF_ERROR(refresh.Duration("min_on_demand_interval_seconds",
                                   c.refresh.min_on_demand_interval, 0, 3600));
  int64_t breaker_failures = c.refresh.breaker_failures;
  RETURN_IF_ERROR(refresh.Int("breaker_failures", breaker_failures, 1, 100000));
  c.refresh.breaker_failures = static_cast<int>(breaker_failures);
  RETURN_IF_ERROR(
      refresh.Duration("breaker_probe_initial_ms", c.refresh.breaker_probe_initial, 10, 600000));
  RETURN_IF_ERROR(
      refresh.Duration("breaker_probe_max_ms", c.refresh.breaker_probe_max, 10, 3600000));
  RETURN_IF_ERROR(
      refresh.Duration("credentials_pause_ms", c.refresh.credentials_pause, 10, 3600000));
  int64_t mass = c.refresh.mass_invalid_grant_threshold;
  RETURN_IF_ERROR(refresh.Int("mass_invalid_grant_threshold", mass, 1, 1000000));
  c.refresh.mass_invalid_grant_threshold = static_cast<int>(mass);
  RETURN_IF_ERROR(refresh.Duration("mass_invalid_grant_window_seconds",
                                   c.refresh.mass_invalid_grant_window, 1, 86400));
  RETURN_IF_ERROR(refresh.Finish());
  if (c.refresh.breaker_probe_max < c.refresh.breaker_probe_initial) {
    return refresh.Bad("breaker_probe_max_ms",
                       "must not be smaller than refresh.breaker_probe_initial_ms");
  }
  if (c.refresh.jitter >= c.refresh.margin) {
    return refresh.Bad("jitter", "must be smaller than refresh.margin");
  }
  if (c.refresh.backoff_max < c.refresh.backoff_initial) {
    return refresh.Bad("backoff_max_ms", "must not be smaller than refresh.backoff_initial_ms");
  }

  TableReader onboarding(onboarding_t, "onboarding", origin);
  RETURN_IF_ERROR(onboarding.StringList("default_scopes", c.onboarding.default_scopes));
  RETURN_IF_ERROR(onboarding.Duration("state_ttl_seconds", c.onboarding.state_ttl, 30, 3600));
  RETURN_IF_ERROR(onboarding.Finish());
  if (c.onboarding.default_scopes.empty()) {
    return onboarding.Bad("default_scopes", "must name at least one scope");
  }

  ASSIGN_OR_RETURN(const toml::table* events_t, table("events"));
  TableReader events(events_t, "events", origin);
  RETURN_IF_ERROR(events.Int("keep", c.events.keep, 0, int64_t{1} << 40));
  RETURN_IF_ERROR(events.Duration("max_age_hours", c.events.max_age, 1, 24 * 3650));
  RETURN_IF_ERROR(events.Finish());

  ASSIGN_OR_RETURN(const toml::table* proxy_t, table("proxy"));
  TableReader proxy(proxy_t, "proxy", origin);
  int64_t proxy_threads = c.proxy.threads;
  RETURN_IF_ERROR(proxy.Int("threads", proxy_threads, 1, 64));
  c.proxy.threads = static_cast<int>(proxy_threads);
  int64_t proxy_connections = c.proxy.max_connections;
  RETURN_IF_ERROR(proxy.Int("max_connections", proxy_connections, 1, 4096));
  c.proxy.max_connections = static_cast<int>(proxy_connections);
  RETURN_IF_ERROR(proxy.Duration("idle_timeout_ms", c.proxy.idle_timeout, 100, 3600000));
  RETURN_IF_ERROR(proxy.Duration("request_timeout_ms", c.proxy.request_timeout, 100, 600000));
  int64_t attempts = c.proxy.max_attempts;
  RETURN_IF_ERROR(proxy.Int("max_attempts", attempts, 1, 10));
  c.proxy.max_attempts = static_cast<int>(attempts);
  RETURN_IF_ERROR(proxy.Duration("retry_initial_ms", c.proxy.retry_initial, 1, 60000));
  RETURN_IF_ERROR(proxy.Duration("retry_max_ms", c.proxy.retry_max, 1, 600000));
  RETURN_IF_ERROR(proxy.Int("max_request_body_bytes", c.proxy.max_request_body_bytes, 1024,
                            int64_t{64} << 20));
  RETURN_IF_ERROR(proxy.Int("max_response_body_bytes", c.proxy.max_response_body_bytes, 1024,
                            int64_t{64} << 20));
  RETURN_IF_ERROR(proxy.Finish());
  if (c.proxy.retry_max < c.proxy.retry_initial) {
    return proxy.Bad("retry_max_ms", "must not be smaller than proxy.retry_initial_ms");
  }

  // Unknown top-level keys or tables.
  std::vector<std::string> unknown;
  static const std::set<std::string> kTop = {"log_level", "server",  "mollie",    "storage",
                                             "refresh",   "onboarding", "events",
                                             "proxy"};
  for (const auto& [k, v] : root) {
    if (!kTop.count(std::string(k.str()))) {
      unknown.push_back(std::string(k.str()));
    }
  }
  if (!unknown.empty()) {
    return absl::InvalidArgumentError(StrCat(origin, ": unknown key(s) ",
                                                   absl::StrJoin(unknown, ", "),
                                                   " (see docs/configuration.md)"));
  }
  return c;
}

absl::StatusOr<SecretString> ReadSecretFile(const std::string& path, std::string_view what) {
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    return absl::NotFoundError(StrCat(what, " file ", path, " does not exist"));
  }
  if (!std::filesystem::is_regular_file(status)) {
    return absl::FailedPreconditionError(StrCat(what, " file ", path,
                                                      " is not a regular file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::PermissionDeniedError(StrCat(what, " file ", path, " cannot be read"));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string value = ss.str();
  while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) {
    value.pop_back();
  }
  if (value.empty()) {
    return absl::FailedPreconditionError(StrCat(what, " file ", path, " is empty"));
  }
  if (value.find_first_of("\r\n\t ") != std::string::npos) {
    return absl::FailedPreconditionError(
        StrCat(what, " file ", path, " must hold one value without whitespace"));
  }
  return SecretString(std::move(value));
}

absl::StatusOr<Config> LoadConfig(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(StrCat("config file ", path, " does not exist"));
  }
  if (std::filesystem::is_directory(path, ec)) {
    return absl::FailedPreconditionError(StrCat("config file ", path, " is a directory"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::PermissionDeniedError(StrCat("config file ", path, " cannot be read"));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string base_dir = std::filesystem::absolute(path, ec).parent_path().string();
  ASSIGN_OR_RETURN(Config c, ParseConfig(ss.str(), path, base_dir));
  ASSIGN_OR_RETURN(c.mollie.client_secret,
                   ReadSecretFile(c.mollie.client_secret_file, "mollie.client_secret_file"));
  return c;
}

}  // namespace connectbroker::config
