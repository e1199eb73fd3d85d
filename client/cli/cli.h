// Shared pieces of the connect-broker CLI: parsed flags, exit codes, error reporting, the admin
// commands (revoke, delete, import, events, stats), `call` (Mollie API calls through the
// broker's ProxyService), secret input and Ctrl-C handling. Runs on the main thread except
// InterruptWatcher's own thread. Nothing here prints a token.
#pragma once

#include <signal.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proxy_call.h"

namespace connectbroker::cli {

inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnreachable = 3;
// `call`: the broker answered with Mollie's response and its HTTP status is not 2xx.
inline constexpr int kExitHttpError = 4;

struct Flags {
  std::string address;
  double timeout_seconds = 10;
  bool json = false;
  std::string org;  // ORG positional (or ACCOUNT_REF for `token --account-ref`; events --org)
  std::string status_filter;
  int limit = 0;
  int min_ttl_seconds = 0;
  bool by_account_ref = false;
  std::string account_ref;  // authorize-url ACCOUNT_REF, import --account-ref
  std::vector<std::string> scopes;
  bool force = false;
  std::string locale;
  std::string landing_page;
  std::string code;
  std::string state;
  bool yes = false;                // delete --yes
  std::string refresh_token_file;  // import: a path, or "-" for stdin
  std::string redirect_uri;        // import
  uint64_t after_sequence = 0;     // events --after
  bool follow = false;             // events --follow
  CallArgs call;                   // call (ORG METHOD PATH and its options)
  std::string data_file;           // call --data-file: a path, or "-" for stdin
};

// "connect-broker: COMMAND: CODE: message" on stderr; returns 3 when the daemon was unreachable,
// else 1. Daemon messages never contain tokens.
int Fail(std::string_view command, const absl::Status& status);

// revoke, delete, import, events, stats.
bool IsAdminCommand(const std::string& command);
int RunAdminCommand(const std::string& command, const Flags& flags);

// `call ORG METHOD PATH ...`: checks the arguments (usage errors exit 2 before any RPC), reads
// --data-file, calls ProxyService.Call or CallPaged and prints the outcome. Exit status: 0 for
// a 2xx answer, 4 for any other HTTP status (the body still on stdout), 1/3 as for every command.
int RunCallCommand(const Flags& flags);
// Reads a request body for --data-file ("-": stdin), at most `limit` bytes.
absl::StatusOr<std::string> ReadDataFile(const std::string& path, size_t limit);

// The one refresh token in `contents` (surrounding whitespace ignored). INVALID_ARGUMENT when
// empty, oversized, or not exactly one whitespace-free word; messages never quote the contents.
absl::StatusOr<std::string> ParseRefreshToken(std::string_view contents);
// Reads `path` ("-": stdin; on a terminal with echo off) and parses it with ParseRefreshToken.
// Warns on stderr when the file is accessible to group or others.
absl::StatusOr<std::string> ReadRefreshToken(const std::string& path);

// Blocks SIGINT and SIGTERM in the calling thread, and hence in every thread created afterwards
// (construct it before the gRPC channel), and waits for them on a thread of its own, which calls
// `on_interrupt` on the first one; a second one exits at once with 130. The destructor stops
// that thread; the signals stay blocked (the CLI exits right after).
class InterruptWatcher {
 public:
  explicit InterruptWatcher(std::function<void()> on_interrupt);
  ~InterruptWatcher();
  InterruptWatcher(const InterruptWatcher&) = delete;
  InterruptWatcher& operator=(const InterruptWatcher&) = delete;

 private:
  void Wait();

  std::function<void()> on_interrupt_;
  sigset_t signals_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace connectbroker::cli
