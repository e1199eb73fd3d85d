// connect-brokerd: owns every merchant's Mollie OAuth grant, refreshes tokens before they expire
// and serves them (and onboarding, administration) over gRPC. See README.md and docs/.
#include <CLI/CLI.hpp>

#include <sys/stat.h>

#include <iostream>

#include "daemon/config/config.h"
#include "daemon/daemon.h"

int main(int argc, char** argv) {
  CLI::App app{
      "connect-brokerd: the Mollie Connect token broker daemon.\n"
      "Keeps every merchant's OAuth grant in RocksDB (secrets encrypted), refreshes access\n"
      "tokens before they expire, and serves them over gRPC (TokenService, ProxyService for\n"
      "Mollie API calls made with the merchant's token, OnboardingService, AdminService).\n"
      "Stops cleanly on SIGTERM."};
  connectbroker::DaemonFlags flags;
  bool check_only = false;
  app.add_option("-c,--config", flags.config_path, "TOML configuration file (required)")
      ->required();
  app.add_option("--ports-file", flags.ports_file,
                 "write 'grpc=PORT' and 'http=PORT' lines here once serving (for scripts; "
                 "useful with port 0 in the config)");
  app.add_flag("--check-config", check_only,
               "validate the configuration, the secret and key files it names, the default "
               "scopes and the data directory, then exit (0 valid, 2 not)");
  app.add_option("--clock-offset-seconds", flags.clock_offset_seconds,
                 "testing only: run with the wall clock shifted forward by this many seconds "
                 "(simulates time passing while the daemon was stopped)")
      ->check(CLI::Range(int64_t{0}, int64_t{10} * 365 * 24 * 3600));
  app.set_version_flag("--version", "connect-brokerd 0.1.0");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage error exits 2.
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  // Files we create (RocksDB, the ports file) are for this service's user only.
  ::umask(077);

  auto config = connectbroker::config::LoadConfig(flags.config_path);
  if (!config.ok()) {
    std::cerr << "connect-brokerd: " << config.status().message() << "\n";
    return 2;
  }
  if (check_only) {
    if (absl::Status s = connectbroker::CheckConfig(*config); !s.ok()) {
      std::cerr << "connect-brokerd: " << s.message() << "\n";
      return 2;
    }
    std::cout << "connect-brokerd: " << flags.config_path
              << " is valid (secret and key files readable, data directory usable)\n";
    return 0;
  }
  return connectbroker::RunDaemon(*config, flags);
}
