// The simulator's transport: a Beast HTTPS/1.1 server (keep-alive, 1 MiB body limit, read and
// write timeouts) that hands every request to a Simulator. The only Beast translation unit.
// RunHttpsServer blocks, serving on a few io_context threads (one strand per connection), until
// SIGINT or SIGTERM; it borrows the Simulator for that time.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "tests/mollie_sim/simulator.h"

namespace connectbroker::mollie_sim {

struct ServerOptions {
  std::string host = "127.0.0.1";  // an IP literal or "localhost"
  uint16_t port = 0;               // 0: any free port
  std::string cert_file;           // PEM certificate chain
  std::string key_file;            // PEM private key
  int threads = 2;
};

// Returns the process exit code: 0 after a signal, 1 when TLS setup or binding fails.
// `on_listening` runs once with the bound port before the first connection is accepted.
int RunHttpsServer(const ServerOptions& options, Simulator& simulator,
                   const std::function<bool(uint16_t)>& on_listening);

}  // namespace connectbroker::mollie_sim
