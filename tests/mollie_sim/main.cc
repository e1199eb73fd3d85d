// mollie-sim: an HTTPS simulator of Mollie's OAuth (my.mollie.com, api.mollie.com/oauth2) and of
// a slice of its REST API (/v2/), with a /_sim/ control API for tests. See README.md.
// Exit codes: 0 after SIGINT/SIGTERM, 1 on a runtime failure, 2 on bad flags.
#include <unistd.h>

#include <boost/url/ipv4_address.hpp>
#include <boost/url/ipv6_address.hpp>
#include <boost/url/parse.hpp>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>

#include "daemon/common/clock.h"
#include "daemon/common/log.h"
#include "daemon/common/random.h"
#include "tests/mollie_sim/https_server.h"
#include "tests/mollie_sim/simulator.h"

namespace {

using connectbroker::mollie_sim::ServerOptions;
using connectbroker::mollie_sim::SimOptions;

constexpr std::string_view kUsage = R"(Usage: mollie-sim --cert PEM --key PEM [flags]

An HTTPS simulator of Mollie Connect (OAuth authorize/tokens/revoke) and of a slice of the REST
API (organizations/me, profiles, permissions, onboarding, payments, refunds, Idempotency-Key)
with a test control API under /_sim/. See tests/mollie_sim/README.md.

  --listen HOST:PORT          address to listen on (default 127.0.0.1:0, any free port)
  --port-file PATH            after listening, write the bound port + "\n" (atomically)
  --cert PEM                  server certificate chain (required)
  --key PEM                   server private key (required)
  --client-id ID              the registered app's client id (default app_simulator)
  --client-secret VALUE       its client secret (default secret_simulator)
  --client-secret-file PATH   read the client secret from a file (trailing newline dropped)
  --redirect-uri URI          the app's registered redirect URL (default: none registered,
                              the redirect_uri given to /oauth2/authorize is accepted)
  --access-token-ttl SECONDS  access token lifetime (default 3600)
  --code-ttl SECONDS          authorization code lifetime (default 30)
  --rotate-refresh-tokens     return a new refresh token on every refresh (default off); the
                              old one replays the new one until the new one is used
  --threads N                 I/O threads serving connections (default 2, 1..64)
  --help                      show this text
)";

[[noreturn]] void BadFlags(const std::string& message) {
  std::cerr << "mollie-sim: " << message << "\n(try --help)\n";
  std::exit(2);
}

int64_t ParseSeconds(std::string_view flag, std::string_view text) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0 ||
      value > 100LL * 365 * 24 * 3600) {
    BadFlags(std::string(flag) + " wants a number of seconds >= 0, got '" + std::string(text) +
             "'");
  }
  return value;
}

void ParseListen(std::string_view text, ServerOptions& out) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    BadFlags("--listen wants HOST:PORT, got '" + std::string(text) + "'");
  }
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string_view port_text = text.substr(colon + 1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535) {
    BadFlags("--listen: bad port '" + std::string(port_text) + "'");
  }
  if (host != "localhost" && !boost::urls::parse_ipv4_address(host) &&
      !boost::urls::parse_ipv6_address(host)) {
    BadFlags("--listen: HOST must be an IP address or localhost, got '" + std::string(host) + "'");
  }
  out.host = std::string(host);
  out.port = static_cast<uint16_t>(port);
}

std::string ReadSecretFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    BadFlags("cannot read --client-secret-file " + path);
  }
  std::stringstream text;
  text << in.rdbuf();
  std::string secret = text.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r' ||
                             secret.back() == ' ' || secret.back() == '\t')) {
    secret.pop_back();
  }
  if (secret.empty()) {
    BadFlags("--client-secret-file " + path + " is empty");
  }
  return secret;
}

// Temp file + rename, so a reader never sees a partial port number.
bool WritePortFile(const std::string& path, uint16_t port) {
  const std::string temp = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(temp, std::ios::trunc);
    out << port << "\n";
    out.close();
    if (!out) {
      std::cerr << "mollie-sim: cannot write " << temp << "\n";
      return false;
    }
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    std::cerr << "mollie-sim: cannot rename " << temp << " to " << path << "\n";
    std::remove(temp.c_str());
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  SimOptions sim;
  ServerOptions server;
  std::string port_file;
  bool secret_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    std::string value;
    bool has_value = false;
    if (const size_t eq = flag.find('='); flag.starts_with("--") && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag.resize(eq);
      has_value = true;
    }
    auto next = [&]() -> std::string {
      if (has_value) {
        return value;
      }
      if (i + 1 >= argc) {
        BadFlags(flag + " needs a value");
      }
      return argv[++i];
    };
    if (flag == "--help" || flag == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (flag == "--listen") {
      ParseListen(next(), server);
    } else if (flag == "--port-file") {
      port_file = next();
    } else if (flag == "--cert") {
      server.cert_file = next();
    } else if (flag == "--key") {
      server.key_file = next();
    } else if (flag == "--client-id") {
      sim.client_id = next();
      if (!sim.client_id.starts_with("app_") || sim.client_id.size() == 4) {
        BadFlags("--client-id must look like app_...");
      }
    } else if (flag == "--client-secret" || flag == "--client-secret-file") {
      if (secret_given) {
        BadFlags("give only one of --client-secret and --client-secret-file");
      }
      secret_given = true;
      sim.client_secret = flag == "--client-secret" ? next() : ReadSecretFile(next());
      if (sim.client_secret.empty()) {
        BadFlags("the client secret must not be empty");
      }
    } else if (flag == "--redirect-uri") {
      sim.redirect_uri = next();
      if (!boost::urls::parse_absolute_uri(sim.redirect_uri)) {
        BadFlags("--redirect-uri must be an absolute URI, got '" + sim.redirect_uri + "'");
      }
    } else if (flag == "--access-token-ttl") {
      sim.access_token_ttl_seconds = ParseSeconds(flag, next());
    } else if (flag == "--code-ttl") {
      sim.code_ttl_seconds = ParseSeconds(flag, next());
    } else if (flag == "--threads") {
      const std::string text = next();
      int threads = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), threads);
      if (ec != std::errc() || end != text.data() + text.size() || threads < 1 || threads > 64) {
        BadFlags("--threads wants a number 1..64, got '" + text + "'");
      }
      server.threads = threads;
    } else if (flag == "--rotate-refresh-tokens" && !has_value) {
      sim.rotate_refresh_tokens = true;
    } else {
      BadFlags("unknown flag '" + std::string(argv[i]) + "'");
    }
  }
  if (server.cert_file.empty() || server.key_file.empty()) {
    BadFlags("--cert and --key are required");
  }

  connectbroker::SystemClock clock;
  connectbroker::CryptoRandom random;
  connectbroker::mollie_sim::Simulator simulator(sim, clock, random);
  return connectbroker::mollie_sim::RunHttpsServer(server, simulator, [&](uint16_t port) {
    return port_file.empty() || WritePortFile(port_file, port);
  });
}
