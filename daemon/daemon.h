// The composition root of connect-brokerd: the only place that names concrete implementations.
// Owns the event loop (one thread: the caller's), the blocking pool for RocksDB, the gRPC server
// and the HTTP server, and runs the shutdown sequence on SIGTERM/SIGINT.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "daemon/config/config.h"

namespace connectbroker {

struct DaemonFlags {
  std::string config_path;
  std::string ports_file;  // written with the bound ports once serving (tests, scripts)
  int64_t clock_offset_seconds = 0;  // testing only: shifts the wall clock forward
};

// Checks what LoadConfig cannot: the key file parses, the default scopes are valid, the CA file
// exists, the data directory is usable and has room. Used by --check-config and at start-up.
absl::Status CheckConfig(const config::Config& config);

// Runs until SIGTERM/SIGINT. Returns the process exit code: 0 after a clean shutdown, 1 when
// start-up failed (the reason is logged).
int RunDaemon(const config::Config& config, const DaemonFlags& flags);

}  // namespace connectbroker
