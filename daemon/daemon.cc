#include "daemon/daemon.h"

#include <sys/statvfs.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/synchronization/mutex.h"
#include "daemon/common/strings.h"
#include "daemon/broker/grant_manager.h"
#include "daemon/broker/token_cache.h"
#include "daemon/common/clock.h"
#include "daemon/common/log.h"
#include "daemon/common/random.h"
#include "daemon/http/http_server.h"
#include "daemon/mollie/authorize_url.h"
#include "daemon/mollie/https_mollie_oauth_api.h"
#include "daemon/mollie/https_transport.h"
#include "daemon/proxy/proxy.h"
#include "daemon/routes.h"
#include "daemon/rpc/proxy_service.h"
#include "daemon/rpc/services.h"
#include "storage/key_ring.h"
#include "storage/rocksdb_grant_store.h"

namespace connectbroker {
namespace asio = boost::asio;

namespace {

int Fail(std::string_view what, const absl::Status& status) {
  CB_LOG(ERROR) << what << ": " << status.message();
  return 1;
}

absl::Status WritePortsFile(const std::string& path, int grpc_port, int http_port) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "grpc=" << grpc_port << "\nhttp=" << http_port << "\n";
    if (!out) {
      return absl::UnavailableError(StrCat("cannot write ports file ", path));
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    return absl::UnavailableError(StrCat("cannot write ports file ", path));
  }
  return absl::OkStatus();
}

bool IsLoopback(const std::string& address) {
  return address.rfind("unix:", 0) == 0 || address.rfind("127.", 0) == 0 ||
         address.rfind("localhost:", 0) == 0 || address.rfind("[::1]:", 0) == 0;
}

// RocksDB cannot even open cleanly on a full disk (it may abort); refuse early instead.
constexpr uint64_t kMinFreeBytes = 16ull << 20;

absl::Status CheckDataDir(const std::string& data_dir) {
  std::error_code ec;
  std::filesystem::path dir(data_dir);
  // The directory itself, or the nearest existing parent it will be created in.
  std::filesystem::path probe = dir;
  while (!probe.empty() && !std::filesystem::exists(probe, ec)) {
    probe = probe.parent_path();
  }
  if (probe.empty()) {
    probe = ".";
  }
  if (std::filesystem::exists(dir, ec) && !std::filesystem::is_directory(dir, ec)) {
    return absl::FailedPreconditionError(
        StrCat("storage.data_dir ", data_dir, " exists but is not a directory"));
  }
  struct statvfs vfs {};
  if (::statvfs(probe.c_str(), &vfs) != 0) {
    return absl::FailedPreconditionError(
        StrCat("storage.data_dir ", data_dir, ": cannot inspect ", probe.string()));
  }
  uint64_t free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  if (free_bytes < kMinFreeBytes) {
    return absl::ResourceExhaustedError(StrCat(
        "storage.data_dir ", data_dir, " has only ", free_bytes,
        " bytes free; connect-brokerd needs at least ", kMinFreeBytes, " to start safely"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckConfig(const config::Config& cfg) {
  auto keys = storage::KeyRing::LoadFromFile(cfg.storage.key_file);
  if (!keys.ok()) {
    return absl::Status(keys.status().code(),
                        StrCat("storage.key_file: ", keys.status().message()));
  }
  for (const auto& scope : cfg.onboarding.default_scopes) {
    if (absl::Status s = mollie::ValidateScope(scope); !s.ok()) {
      return absl::InvalidArgumentError(
          StrCat(cfg.path, ": onboarding.default_scopes: ", s.message()));
    }
  }
  std::error_code ec;
  if (!cfg.mollie.ca_file.empty() && !std::filesystem::is_regular_file(cfg.mollie.ca_file, ec)) {
    return absl::NotFoundError(
        StrCat("mollie.ca_file ", cfg.mollie.ca_file, " does not exist or is not a file"));
  }
  return CheckDataDir(cfg.storage.data_dir);
}

int RunDaemon(const config::Config& cfg, const DaemonFlags& flags) {
  SetMinLogLevel(cfg.log_level);
  // Debian builds Abseil without NDEBUG, so every absl::Mutex (all of gRPC's) would also keep a
  // global lock-order graph for deadlock detection: measurable on the proxy's hot path, and a
  // debugging aid we do not need in production.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  OffsetClock clock(std::chrono::seconds(flags.clock_offset_seconds));
  if (flags.clock_offset_seconds != 0) {
    CB_LOG(WARNING) << "testing: wall clock shifted by " << flags.clock_offset_seconds << "s";
  }
  CryptoRandom random;
  if (absl::Status s = CheckConfig(cfg); !s.ok()) {
    return Fail("configuration", s);
  }

  auto keys = storage::KeyRing::LoadFromFile(cfg.storage.key_file);
  if (!keys.ok()) {
    return Fail("storage.key_file", keys.status());
  }
  storage::RocksDbGrantStore::Options store_options;
  store_options.path = cfg.storage.data_dir;
  auto store = storage::RocksDbGrantStore::Open(store_options, *std::move(keys), random);
  if (!store.ok()) {
    return Fail(StrCat("cannot open the grant store in ", cfg.storage.data_dir),
                store.status());
  }

  asio::io_context loop(1);
  auto work = asio::make_work_guard(loop);
  asio::thread_pool blocking(2);

  mollie::HttpsMollieOAuthApi::Options mollie_options;
  mollie_options.api_base_url = cfg.mollie.api_base_url;
  mollie_options.ca_file = cfg.mollie.ca_file;
  mollie_options.client_id = cfg.mollie.client_id;
  mollie_options.client_secret = cfg.mollie.client_secret;
  mollie_options.connect_timeout = cfg.mollie.connect_timeout;
  mollie_options.request_timeout = cfg.mollie.request_timeout;
  auto mollie_api = mollie::HttpsMollieOAuthApi::Create(loop.get_executor(), mollie_options);
  if (!mollie_api.ok()) {
    return Fail("mollie client", mollie_api.status());
  }

  broker::GrantManagerOptions mo;
  mo.policy.margin = cfg.refresh.margin;
  mo.policy.jitter = cfg.refresh.jitter;
  mo.policy.backoff_initial = cfg.refresh.backoff_initial;
  mo.policy.backoff_max = cfg.refresh.backoff_max;
  mo.min_serve_ttl = cfg.refresh.min_serve_ttl;
  mo.max_min_ttl = cfg.refresh.max_min_ttl;
  mo.max_concurrent = cfg.refresh.max_concurrent;
  mo.rate_per_second = cfg.refresh.rate_per_second;
  mo.burst = cfg.refresh.burst;
  mo.authorize_base_url = cfg.mollie.authorize_base_url;
  mo.client_id = cfg.mollie.client_id;
  mo.redirect_uri = cfg.mollie.redirect_uri;
  mo.default_scopes = cfg.onboarding.default_scopes;
  mo.state_ttl = cfg.onboarding.state_ttl;
  mo.min_on_demand_interval = cfg.refresh.min_on_demand_interval;
  mo.breaker_failures = cfg.refresh.breaker_failures;
  mo.breaker_probe_initial = cfg.refresh.breaker_probe_initial;
  mo.breaker_probe_max = cfg.refresh.breaker_probe_max;
  mo.credentials_pause = cfg.refresh.credentials_pause;
  mo.mass_invalid_grant_threshold = cfg.refresh.mass_invalid_grant_threshold;
  mo.mass_invalid_grant_window = cfg.refresh.mass_invalid_grant_window;
  mo.events_keep = static_cast<size_t>(cfg.events.keep);
  mo.events_max_age = cfg.events.max_age;

  broker::TokenCache cache;
  broker::GrantManager manager(loop, blocking, **store, **mollie_api, cache, clock, random, mo);
  if (absl::Status s = manager.Start(); !s.ok()) {
    return Fail("loading grants", s);
  }

  std::atomic<bool> ready{false};
  http::Router router;
  AddBrokerRoutes(router, manager, ready);
  http::HttpServerOptions http_options;
  http_options.listen = cfg.server.http_listen;
  http::HttpServer http_server(loop, http_options, router);
  auto http_port = http_server.Start();
  if (!http_port.ok()) {
    return Fail("HTTP server", http_port.status());
  }

  // The proxy has an io_context of its own: TLS work for callers never delays refreshes.
  asio::io_context proxy_io(cfg.proxy.threads);
  auto proxy_work = asio::make_work_guard(proxy_io);
  mollie::HttpsTransportOptions transport_options;
  transport_options.base_url = cfg.mollie.api_base_url;
  transport_options.ca_file = cfg.mollie.ca_file;
  transport_options.connect_timeout = cfg.mollie.connect_timeout;
  transport_options.max_connections = cfg.proxy.max_connections;
  transport_options.idle_timeout = cfg.proxy.idle_timeout;
  transport_options.max_response_body_bytes =
      static_cast<uint64_t>(cfg.proxy.max_response_body_bytes);
  auto transport = mollie::HttpsTransport::Create(proxy_io.get_executor(), transport_options);
  if (!transport.ok()) {
    return Fail("proxy transport", transport.status());
  }
  proxy::ProxyOptions po;
  po.request_timeout = cfg.proxy.request_timeout;
  po.max_attempts = cfg.proxy.max_attempts;
  po.retry_initial = cfg.proxy.retry_initial;
  po.retry_max = cfg.proxy.retry_max;
  po.max_request_body_bytes = static_cast<size_t>(cfg.proxy.max_request_body_bytes);
  proxy::Proxy proxy(proxy_io.get_executor(), **transport, manager, clock, random, po);
  std::vector<std::thread> proxy_threads;
  for (int i = 0; i < cfg.proxy.threads; ++i) {
    proxy_threads.emplace_back([&proxy_io] { proxy_io.run(); });
  }
  // Joins the proxy threads on every return path (they must stop before `proxy` goes away).
  struct ProxyThreadsJoiner {
    asio::io_context& io;
    decltype(proxy_work)& work;
    std::vector<std::thread>& threads;
    ~ProxyThreadsJoiner() {
      work.reset();
      io.stop();
      for (auto& t : threads) {
        t.join();
      }
    }
  } proxy_joiner{proxy_io, proxy_work, proxy_threads};

  rpc::TokenServiceImpl token_service(manager, cfg.refresh.max_min_ttl);
  rpc::OnboardingServiceImpl onboarding_service(manager);
  rpc::AdminServiceImpl admin_service(manager, &proxy);
  rpc::ProxyServiceImpl proxy_service(proxy, clock);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(cfg.server.grpc_listen, grpc::InsecureServerCredentials(), &grpc_port);
  // gRPC refuses messages over 4 MiB by default; a proxied body may be as large as configured
  // (plus room for the rest of the request), so that the proxy's own limit is the one that
  // answers, with INVALID_ARGUMENT naming it.
  builder.SetMaxReceiveMessageSize(static_cast<int>(
      std::max<int64_t>(4 << 20, cfg.proxy.max_request_body_bytes + (256 << 10))));
  builder.RegisterService(&token_service);
  builder.RegisterService(&onboarding_service);
  builder.RegisterService(&admin_service);
  builder.RegisterService(&proxy_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || grpc_port == 0) {
    return Fail("gRPC server",
                absl::UnavailableError(StrCat("cannot listen on ", cfg.server.grpc_listen)));
  }
  if (!IsLoopback(cfg.server.grpc_listen)) {
    CB_LOG(WARNING) << "gRPC listens on " << cfg.server.grpc_listen
                    << " without TLS or caller authentication; keep it on a private network";
  }
  server->GetHealthCheckService()->SetServingStatus(true);
  ready = true;
  if (!flags.ports_file.empty()) {
    if (absl::Status s = WritePortsFile(flags.ports_file, grpc_port, *http_port); !s.ok()) {
      return Fail("ports file", s);
    }
  }
  CB_LOG(NOTICE) << "connect-brokerd serving: gRPC on " << cfg.server.grpc_listen << " (port "
                 << grpc_port << "), HTTP on " << cfg.server.http_listen << " (port "
                 << *http_port << "), " << manager.Stats().grants << " grant(s)";
  sd_notify(0, "READY=1");

  // Shutdown: stop HTTP, then gRPC (from its own thread: Shutdown waits for in-flight RPCs,
  // which need this loop running), then let in-flight refreshes finish (bounded), then stop.
  // SIGHUP would kill the process by default; a reload is not supported (yet), so say so.
  asio::signal_set hangup(loop, SIGHUP);
  std::function<void(const boost::system::error_code&, int)> on_hangup =
      [&](const boost::system::error_code& ec, int) {
        if (ec) {
          return;
        }
        CB_LOG(NOTICE) << "SIGHUP ignored: configuration reload is not supported; restart the "
                          "service to apply changes";
        hangup.async_wait(on_hangup);
      };
  hangup.async_wait(on_hangup);
  std::thread shutdown_thread;
  asio::steady_timer grace(loop);
  asio::signal_set signals(loop, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (ec) {
      return;
    }
    CB_LOG(NOTICE) << "signal " << signo << ": shutting down";
    hangup.cancel();
    sd_notify(0, "STOPPING=1");
    ready = false;
    http_server.Stop();
    grace.expires_after(cfg.server.shutdown_grace + std::chrono::seconds(1));
    grace.async_wait([&](const boost::system::error_code& ec2) {
      if (!ec2) {
        CB_LOG(WARNING) << "shutdown grace period over; stopping with work in flight";
        loop.stop();
      }
    });
    shutdown_thread = std::thread([&] {
      server->Shutdown(clock.Now() + cfg.server.shutdown_grace);
      manager.Stop([&] {
        grace.cancel();
        work.reset();
        loop.stop();
      });
    });
  });

  loop.run();
  if (shutdown_thread.joinable()) {
    shutdown_thread.join();
  }
  server->Wait();
  blocking.join();
  CB_LOG(NOTICE) << "connect-brokerd stopped";
  return 0;
}

}  // namespace connectbroker
