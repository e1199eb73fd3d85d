// The composition root of connect-brokerd: the only place that names concrete implementations.
// Owns the event loop (one thread: the caller's), the blocking pool for RocksDB, the gRPC server
// and the HTTP server, and runs the shutdown sequence on SIGTERM/SIGINT.
#pragma once

#include <string>

#include "daemon/config/config.h"

namespace connectbroker {

struct DaemonFlags {
  std::string config_path;
  std::string ports_file;  // written with the bound ports once serving (tests, scripts)
};

// Runs until SIGTERM/SIGINT. Returns the process exit code: 0 after a clean shutdown, 1 when
// start-up failed (the reason is logged).
int RunDaemon(const config::Config& config, const DaemonFlags& flags);

}  // namespace connectbroker
