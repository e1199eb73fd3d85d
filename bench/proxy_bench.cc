// proxy_bench: what does calling Mollie through the broker's ProxyService cost, compared with
// calling Mollie (here: mollie-sim) directly with a token from the broker?
//
// In one run against one simulator and one daemon it runs three phases in turn, `--rounds` times:
//   direct   N threads, each with one keep-alive HTTPS connection (Boost.Beast over OpenSSL,
//            trusting --ca-file), sending GET /v2/payments/{id} with the bearer token that
//            TokenService.GetAccessToken returned;
//   proxied  N threads, each with its own gRPC channel (so N HTTP/2 connections), calling
//            ProxyService.Call for the same GET;
//   grpc-only the same N gRPC clients calling TokenService.GetAccessToken (served from memory):
//            the cost of a round trip to the daemon alone, to split the proxy's added latency.
// Each phase runs --warmup seconds unmeasured, then --duration seconds measured: requests/s and
// latency percentiles over the requests that started and finished inside the measured window,
// and the CPU time each --process NAME=PID (and the bench itself) used in it, per request.
// Prints a table and, with --json-out, the figures as JSON. The token is never printed.
//
// Threads: one per client plus main; every client owns its connection, nothing is shared but
// the per-phase window. Exit status: 0, 1 on failure (no token, a mode without one successful
// request), 2 on a usage error. Whether both modes saw the same body is reported, not enforced.
#include <grpcpp/create_channel.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "connectbroker/client.h"
#include "connectbroker/v1/proxy.grpc.pb.h"

namespace {

namespace asio = ::boost::asio;
namespace beast = ::boost::beast;
namespace http = ::boost::beast::http;
namespace ssl = ::boost::asio::ssl;
namespace v1 = ::connectbroker::v1;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string broker = "127.0.0.1:50051";
  std::string sim_host = "127.0.0.1";
  std::string sim_port;
  std::string ca_file;
  std::string org;
  std::string payment_id;
  bool testmode = false;
  int concurrency = 16;
  double duration_s = 10;
  double warmup_s = 2;
  int rounds = 3;
  std::string json_out;
  // name=PID pairs whose CPU time is sampled over each measured window ("bench" is added).
  std::vector<std::pair<std::string, int>> processes;
};

constexpr char kUsage[] =
    "usage: proxy_bench --sim-port PORT --ca-file CA.pem --org ORG --payment-id tr_...\n"
    "                   [--broker HOST:PORT] [--sim-host 127.0.0.1] [--testmode]\n"
    "                   [--concurrency 16] [--duration 10] [--warmup 2] [--rounds 3]\n"
    "                   [--json-out FILE] [--process NAME=PID ...]\n";

std::optional<Options> ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= argc) {
        std::cerr << "proxy_bench: " << a << " needs a value\n";
        return std::nullopt;
      }
      return std::string(argv[++i]);
    };
    std::optional<std::string> v;
    if (a == "--testmode") {
      o.testmode = true;
      continue;
    }
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (!(v = value())) {
      return std::nullopt;
    }
    try {
      if (a == "--broker") {
        o.broker = *v;
      } else if (a == "--sim-host") {
        o.sim_host = *v;
      } else if (a == "--sim-port") {
        o.sim_port = *v;
      } else if (a == "--ca-file") {
        o.ca_file = *v;
      } else if (a == "--org") {
        o.org = *v;
      } else if (a == "--payment-id") {
        o.payment_id = *v;
      } else if (a == "--concurrency") {
        o.concurrency = std::stoi(*v);
      } else if (a == "--duration") {
        o.duration_s = std::stod(*v);
      } else if (a == "--warmup") {
        o.warmup_s = std::stod(*v);
      } else if (a == "--rounds") {
        o.rounds = std::stoi(*v);
      } else if (a == "--json-out") {
        o.json_out = *v;
      } else if (a == "--process") {
        const size_t eq = v->find('=');
        if (eq == 0 || eq == std::string::npos) {
          std::cerr << "proxy_bench: --process needs NAME=PID\n";
          return std::nullopt;
        }
        o.processes.emplace_back(v->substr(0, eq), std::stoi(v->substr(eq + 1)));
      } else {
        std::cerr << "proxy_bench: unknown option " << a << "\n";
        return std::nullopt;
      }
    } catch (const std::exception&) {
      std::cerr << "proxy_bench: bad value for " << a << "\n";
      return std::nullopt;
    }
  }
  if (o.sim_port.empty() || o.ca_file.empty() || o.org.empty() || o.payment_id.empty() ||
      o.concurrency < 1 || o.concurrency > 1024 || o.duration_s <= 0 || o.warmup_s < 0 ||
      o.rounds < 1) {
    std::cerr << kUsage;
    return std::nullopt;
  }
  return o;
}

// CPU time (user + system) of a process so far, from /proc/PID/stat; -1 when unreadable.
double ProcessCpuSeconds(int pid) {
  std::ifstream in(pid == 0 ? std::string("/proc/self/stat")
                            : "/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const size_t close = text.rfind(')');
  if (close == std::string::npos) {
    return -1;
  }
  std::istringstream fields(text.substr(close + 2));
  std::string field;
  unsigned long long utime = 0;
  unsigned long long stime = 0;
  for (int i = 3; fields >> field; ++i) {
    if (i == 14) {
      utime = std::stoull(field);
    } else if (i == 15) {
      stime = std::stoull(field);
      break;
    }
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Busy and total jiffies of all CPUs, from the first line of /proc/stat.
std::pair<double, double> MachineJiffies() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  in >> cpu;
  double total = 0;
  double idle = 0;
  double v = 0;
  for (int i = 0; i < 10 && in >> v; ++i) {
    total += v;
    if (i == 3 || i == 4) {  // idle, iowait
      idle += v;
    }
  }
  return {total - idle, total};
}

// CPU use over one measured window: seconds per process, and the machine's busy share.
struct CpuSample {
  std::vector<double> process_seconds;  // parallel to Options::processes, then "bench"
  double busy_jiffies = 0;
  double total_jiffies = 0;
};

CpuSample SampleCpu(const Options& o) {
  CpuSample s;
  for (const auto& [name, pid] : o.processes) {
    s.process_seconds.push_back(ProcessCpuSeconds(pid));
  }
  s.process_seconds.push_back(ProcessCpuSeconds(0));
  std::tie(s.busy_jiffies, s.total_jiffies) = MachineJiffies();
  return s;
}

// The measured window of one phase; clients read it, main sets it before starting them.
struct Window {
  Clock::time_point start;  // measuring begins (after the warm-up)
  Clock::time_point end;    // clients stop
};

struct ClientResult {
  std::vector<int64_t> latencies_ns;  // successful requests inside the window
  uint64_t errors = 0;                // failed requests inside the window
  std::string first_error;
  std::string sample_body;  // the first successful body (for the bodies check)
};

// Counts one request: only one that started and finished inside the measured window counts;
// the first error and the first successful body are kept whenever they happened.
void RecordRequest(const Window& w, Clock::time_point begin, Clock::time_point finish,
                   const std::string& error, const std::string& body, ClientResult& out) {
  if (begin >= w.start && finish <= w.end) {
    if (error.empty()) {
      out.latencies_ns.push_back((finish - begin).count());
    } else {
      ++out.errors;
    }
  }
  if (!error.empty() && out.first_error.empty()) {
    out.first_error = error;
  }
  if (error.empty() && out.sample_body.empty()) {
    out.sample_body = body;
  }
}

// One keep-alive HTTPS connection to the simulator, reconnecting when the server closes it.
class DirectClient {
 public:
  DirectClient(const Options& o, ssl::context& tls, std::string target, std::string bearer)
      : o_(o), tls_(tls), target_(std::move(target)), bearer_(std::move(bearer)) {}

  void Run(const Window& w, ClientResult& out) {
    http::request<http::empty_body> request{http::verb::get, target_, 11};
    request.set(http::field::host, o_.sim_host + ":" + o_.sim_port);
    request.set(http::field::authorization, bearer_);
    request.set(http::field::accept, "application/hal+json");
    request.keep_alive(true);
    while (true) {
      const auto begin = Clock::now();
      if (begin >= w.end) {
        return;
      }
      std::string error;
      int status = 0;
      std::string body;
      try {
        if (!stream_) {
          Connect();
        }
        http::write(*stream_, request);
        beast::flat_buffer buffer;
        http::response<http::string_body> response;
        http::read(*stream_, buffer, response);
        status = response.result_int();
        body = std::move(response.body());
        if (!response.keep_alive()) {
          stream_.reset();
        }
      } catch (const std::exception& e) {
        error = e.what();
        stream_.reset();
      }
      const auto finish = Clock::now();
      if (error.empty() && status != 200) {
        error = "HTTP " + std::to_string(status);
      }
      RecordRequest(w, begin, finish, error, body, out);
    }
  }

 private:
  void Connect() {
    asio::ip::tcp::resolver resolver(io_);
    auto stream = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(io_, tls_);
    // Verify the chain and the name (an IP literal here; no SNI for IP literals).
    stream->set_verify_mode(ssl::verify_peer);
    stream->set_verify_callback(ssl::host_name_verification(o_.sim_host));
    beast::get_lowest_layer(*stream).connect(resolver.resolve(o_.sim_host, o_.sim_port));
    beast::get_lowest_layer(*stream).socket().set_option(asio::ip::tcp::no_delay(true));
    stream->handshake(ssl::stream_base::client);
    stream_ = std::move(stream);
  }

  const Options& o_;
  ssl::context& tls_;
  std::string target_;
  std::string bearer_;
  asio::io_context io_;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> stream_;
};

// A gRPC channel of its own (a local subchannel pool, so not shared with the other clients).
std::shared_ptr<grpc::Channel> OwnChannel(const Options& o) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(o.broker, grpc::InsecureChannelCredentials(), args);
}

// Calls `call(context, &body)` in a loop until the window ends; `call` returns "" on success or
// the error. Only requests that started and finished inside the measured window count.
template <typename Call>
void RunGrpcLoop(const Window& w, ClientResult& out, Call call) {
  while (true) {
    const auto begin = Clock::now();
    if (begin >= w.end) {
      return;
    }
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    std::string body;
    const std::string error = call(context, body);
    RecordRequest(w, begin, Clock::now(), error, body, out);
  }
}

std::string GrpcError(const grpc::Status& s) {
  return "gRPC " + std::to_string(s.error_code()) + ": " + s.error_message();
}

class ProxiedClient {
 public:
  ProxiedClient(const Options& o, v1::ProxyRequest request)
      : request_(std::move(request)), stub_(v1::ProxyService::NewStub(OwnChannel(o))) {}

  void Run(const Window& w, ClientResult& out) {
    RunGrpcLoop(w, out, [this](grpc::ClientContext& context, std::string& body) -> std::string {
      v1::ProxyResponse response;
      const grpc::Status s = stub_->Call(&context, request_, &response);
      if (!s.ok()) {
        return GrpcError(s);
      }
      if (response.status() != 200) {
        return "HTTP " + std::to_string(response.status());
      }
      body = response.body();
      return "";
    });
  }

 private:
  v1::ProxyRequest request_;
  std::unique_ptr<v1::ProxyService::Stub> stub_;
};

// The baseline: a gRPC round trip to the daemon that needs no Mollie (GetAccessToken is answered
// from memory on the gRPC thread). Its own channel, like ProxiedClient. The token is discarded.
class TokenClient {
 public:
  TokenClient(const Options& o, v1::GetAccessTokenRequest request)
      : request_(std::move(request)), stub_(v1::TokenService::NewStub(OwnChannel(o))) {}

  void Run(const Window& w, ClientResult& out) {
    RunGrpcLoop(w, out, [this](grpc::ClientContext& context, std::string&) -> std::string {
      v1::GetAccessTokenResponse response;
      const grpc::Status s = stub_->GetAccessToken(&context, request_, &response);
      return s.ok() ? "" : GrpcError(s);
    });
  }

 private:
  v1::GetAccessTokenRequest request_;
  std::unique_ptr<v1::TokenService::Stub> stub_;
};

struct Summary {
  uint64_t requests = 0;
  uint64_t errors = 0;
  double seconds = 0;
  double rps = 0;
  double p50_us = 0;
  double p90_us = 0;
  double p99_us = 0;
  double max_us = 0;
  std::string first_error;
  std::string sample_body;
  std::vector<double> cpu_seconds;  // per process over the measured windows (-1: unknown)
  double busy_jiffies = 0;
  double total_jiffies = 0;
};

double Percentile(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) {
    return 0;
  }
  // Nearest rank.
  const size_t rank =
      static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return static_cast<double>(sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1]) / 1000.0;
}

template <typename MakeClient>
void RunPhase(const Options& o, MakeClient make_client, Summary& total,
              std::vector<int64_t>& all_latencies) {
  std::vector<decltype(make_client())> clients;
  for (int i = 0; i < o.concurrency; ++i) {
    clients.push_back(make_client());
  }
  const auto now = Clock::now();
  Window w;
  w.start =
      now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.warmup_s));
  w.end = w.start +
          std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration_s));
  std::vector<ClientResult> results(clients.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < clients.size(); ++i) {
    threads.emplace_back([&, i] { clients[i]->Run(w, results[i]); });
  }
  std::this_thread::sleep_until(w.start);  // load timing, not synchronisation
  const CpuSample before = SampleCpu(o);
  std::this_thread::sleep_until(w.end);
  const CpuSample after = SampleCpu(o);
  for (std::thread& t : threads) {
    t.join();
  }
  total.cpu_seconds.resize(after.process_seconds.size(), 0);
  for (size_t i = 0; i < after.process_seconds.size(); ++i) {
    if (before.process_seconds[i] < 0 || after.process_seconds[i] < 0 || total.cpu_seconds[i] < 0) {
      total.cpu_seconds[i] = -1;
    } else {
      total.cpu_seconds[i] += after.process_seconds[i] - before.process_seconds[i];
    }
  }
  total.busy_jiffies += after.busy_jiffies - before.busy_jiffies;
  total.total_jiffies += after.total_jiffies - before.total_jiffies;
  total.seconds += o.duration_s;
  for (ClientResult& r : results) {
    total.requests += r.latencies_ns.size();
    total.errors += r.errors;
    all_latencies.insert(all_latencies.end(), r.latencies_ns.begin(), r.latencies_ns.end());
    if (total.first_error.empty()) {
      total.first_error = r.first_error;
    }
    if (total.sample_body.empty()) {
      total.sample_body = r.sample_body;
    }
  }
}

void Finish(Summary& s, std::vector<int64_t>& latencies) {
  std::sort(latencies.begin(), latencies.end());
  s.rps = s.seconds > 0 ? static_cast<double>(s.requests) / s.seconds : 0;
  s.p50_us = Percentile(latencies, 50);
  s.p90_us = Percentile(latencies, 90);
  s.p99_us = Percentile(latencies, 99);
  s.max_us = latencies.empty() ? 0 : static_cast<double>(latencies.back()) / 1000.0;
}

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::vector<std::string> ProcessNames(const Options& o) {
  std::vector<std::string> names;
  for (const auto& [name, pid] : o.processes) {
    names.push_back(name);
  }
  names.push_back("bench");
  return names;
}

double MachineBusy(const Summary& s) {
  return s.total_jiffies > 0 ? s.busy_jiffies / s.total_jiffies : 0;
}

// The share of the machine's CPU used by processes other than the sampled ones (and the bench):
// anything well above zero means someone else's work skewed the figures.
double OthersBusy(const Summary& s) {
  const double cpus = static_cast<double>(std::max(1u, std::thread::hardware_concurrency()));
  double ours = 0;
  for (double seconds : s.cpu_seconds) {
    ours += std::max(0.0, seconds);
  }
  const double share = s.seconds > 0 ? ours / (s.seconds * cpus) : 0;
  return std::max(0.0, MachineBusy(s) - share);
}

// CPU microseconds per successful request of each process (-1: unknown).
std::vector<double> CpuPerRequestUs(const Summary& s) {
  std::vector<double> out;
  for (double seconds : s.cpu_seconds) {
    out.push_back(seconds < 0 || s.requests == 0 ? -1
                                                 : seconds * 1e6 / static_cast<double>(s.requests));
  }
  return out;
}

std::string SummaryJson(const Options& o, const Summary& s) {
  const std::vector<std::string> names = ProcessNames(o);
  const std::vector<double> per_request = CpuPerRequestUs(s);
  std::string cpu = "{";
  for (size_t i = 0; i < names.size() && i < per_request.size(); ++i) {
    cpu += (i > 0 ? ", " : "") + connectbroker::client::JsonQuote(names[i]) + ": " +
           Fixed(per_request[i], 1);
  }
  cpu += "}";
  return "{\"requests\": " + std::to_string(s.requests) +
         ", \"errors\": " + std::to_string(s.errors) + ", \"seconds\": " + Fixed(s.seconds, 1) +
         ", \"rps\": " + Fixed(s.rps, 1) + ", \"p50_us\": " + Fixed(s.p50_us, 1) +
         ", \"p90_us\": " + Fixed(s.p90_us, 1) + ", \"p99_us\": " + Fixed(s.p99_us, 1) +
         ", \"max_us\": " + Fixed(s.max_us, 1) + ", \"cpu_us_per_request\": " + cpu +
         ", \"machine_busy\": " + Fixed(MachineBusy(s), 3) +
         ", \"others_busy\": " + Fixed(OthersBusy(s), 3) +
         ", \"first_error\": " + connectbroker::client::JsonQuote(s.first_error) + "}";
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<Options> parsed = ParseArgs(argc, argv);
  if (!parsed) {
    return 2;
  }
  const Options o = *parsed;
  // Debian's Abseil is built without NDEBUG, so absl::Mutex (used throughout gRPC) tracks lock
  // ordering in a global graph on every acquisition: measurable in a profile, and not part of
  // what we want to measure.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  // The token for the direct clients, valid for the whole run (and a minute more).
  const double run_s = o.rounds * 2 * (o.warmup_s + o.duration_s) + 60;
  connectbroker::client::BrokerClient broker(connectbroker::client::CreateChannel(o.broker),
                                             o.broker, std::chrono::seconds(30));
  v1::GetAccessTokenRequest token_request;
  token_request.set_organization_id(o.org);
  token_request.mutable_min_ttl()->set_seconds(static_cast<int64_t>(run_s));
  auto token = broker.GetAccessToken(token_request);
  if (!token.ok()) {
    std::cerr << "proxy_bench: GetAccessToken: " << token.status() << "\n";
    return 1;
  }
  const std::string bearer = "Bearer " + token->access_token();

  std::string target = "/v2/payments/" + o.payment_id;
  if (o.testmode) {
    target += "?testmode=true";
  }
  v1::ProxyRequest proxy_request;
  proxy_request.set_organization_id(o.org);
  proxy_request.set_method("GET");
  proxy_request.set_path("/v2/payments/" + o.payment_id);
  proxy_request.set_testmode(o.testmode);

  ssl::context tls(ssl::context::tls_client);
  tls.set_verify_mode(ssl::verify_peer);
  tls.load_verify_file(o.ca_file);

  std::cout << "proxy_bench: " << o.concurrency << " concurrent clients, " << o.rounds
            << " rounds of " << Fixed(o.warmup_s, 1) << " s warm-up + " << Fixed(o.duration_s, 1)
            << " s measured per mode, GET " << target << std::endl;
  v1::GetAccessTokenRequest baseline_request;
  baseline_request.set_organization_id(o.org);
  Summary direct;
  Summary proxied;
  Summary baseline;
  std::vector<int64_t> direct_latencies;
  std::vector<int64_t> proxied_latencies;
  std::vector<int64_t> baseline_latencies;
  auto rate = [&](const Summary& s, uint64_t before) {
    return Fixed(static_cast<double>(s.requests - before) / o.duration_s, 0);
  };
  for (int round = 1; round <= o.rounds; ++round) {
    const uint64_t direct_before = direct.requests;
    const uint64_t proxied_before = proxied.requests;
    const uint64_t baseline_before = baseline.requests;
    RunPhase(
        o, [&] { return std::make_unique<DirectClient>(o, tls, target, bearer); }, direct,
        direct_latencies);
    RunPhase(
        o, [&] { return std::make_unique<ProxiedClient>(o, proxy_request); }, proxied,
        proxied_latencies);
    RunPhase(
        o, [&] { return std::make_unique<TokenClient>(o, baseline_request); }, baseline,
        baseline_latencies);
    std::cout << "  round " << round << ": direct " << rate(direct, direct_before)
              << " req/s, proxied " << rate(proxied, proxied_before) << " req/s, grpc-only "
              << rate(baseline, baseline_before) << " req/s" << std::endl;
  }
  Finish(direct, direct_latencies);
  Finish(proxied, proxied_latencies);
  Finish(baseline, baseline_latencies);
  const std::vector<std::pair<std::string, const Summary*>> modes = {
      {"direct", &direct}, {"proxied", &proxied}, {"grpc-only", &baseline}};

  const double ratio = direct.rps > 0 ? proxied.rps / direct.rps : 0;
  const double added_p50 = proxied.p50_us - direct.p50_us;
  const bool bodies_equal = direct.sample_body == proxied.sample_body;
  std::cout << "\nmode       requests  errors     req/s   p50 us   p90 us   p99 us   max us\n";
  for (const auto& [name, s] : modes) {
    char line[200];
    std::snprintf(line, sizeof(line), "%-9s %9llu %7llu %9.0f %8.0f %8.0f %8.0f %8.0f\n",
                  name.c_str(), static_cast<unsigned long long>(s->requests),
                  static_cast<unsigned long long>(s->errors), s->rps, s->p50_us, s->p90_us,
                  s->p99_us, s->max_us);
    std::cout << line;
  }
  std::cout << "(grpc-only: TokenService.GetAccessToken, a daemon round trip without Mollie)\n";
  std::cout << "\nCPU us per request:\n";
  for (const auto& [name, s] : modes) {
    const std::vector<std::string> names = ProcessNames(o);
    const std::vector<double> per_request = CpuPerRequestUs(*s);
    std::cout << "  " << name << ":";
    for (size_t i = 0; i < names.size() && i < per_request.size(); ++i) {
      std::cout << " " << names[i] << " " << (per_request[i] < 0 ? "?" : Fixed(per_request[i], 0));
    }
    std::cout << "  (machine " << Fixed(MachineBusy(*s) * 100, 0) << " % busy, other processes "
              << Fixed(OthersBusy(*s) * 100, 0) << " %)\n";
  }
  std::cout << "\nproxied/direct throughput: " << Fixed(ratio * 100, 1)
            << " %  (target >= 80 %)\nadded median latency:      " << Fixed(added_p50, 0)
            << " us (target < 200 us)\nbare gRPC round trip p50:  " << Fixed(baseline.p50_us, 0)
            << " us (GetAccessToken, no Mollie)\nbodies equal:              "
            << (bodies_equal ? "yes" : "NO") << "\n";
  for (const auto& [name, s] : modes) {
    if (!s->first_error.empty()) {
      std::cout << "first " << name << " error: " << s->first_error << "\n";
    }
  }

  if (!o.json_out.empty()) {
    std::ofstream out(o.json_out);
    out << "{\"concurrency\": " << o.concurrency << ", \"rounds\": " << o.rounds
        << ", \"warmup_s\": " << Fixed(o.warmup_s, 1)
        << ", \"duration_s\": " << Fixed(o.duration_s, 1)
        << ", \"target\": " << connectbroker::client::JsonQuote("GET " + target)
        << ",\n \"direct\": " << SummaryJson(o, direct)
        << ",\n \"proxied\": " << SummaryJson(o, proxied)
        << ",\n \"grpc_only\": " << SummaryJson(o, baseline)
        << ",\n \"throughput_ratio\": " << Fixed(ratio, 3)
        << ", \"added_p50_us\": " << Fixed(added_p50, 1)
        << ", \"bodies_equal\": " << (bodies_equal ? "true" : "false") << "}\n";
    if (!out) {
      std::cerr << "proxy_bench: cannot write " << o.json_out << "\n";
      return 1;
    }
  }
  if (direct.requests == 0 || proxied.requests == 0) {
    std::cerr << "proxy_bench: a mode had no successful request\n";
    return 1;
  }
  return 0;
}
