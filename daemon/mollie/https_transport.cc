#include "daemon/mollie/https_transport.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>
#include <deque>
#include <filesystem>
#include <mutex>
#include <string_view>

#include "daemon/common/status_macros.h"
#include "daemon/common/strings.h"
#include "daemon/mollie/oauth_responses.h"
#include "daemon/mollie/string_view_compat.h"

namespace connectbroker::mollie {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
namespace urls = boost::urls;
using tcp = asio::ip::tcp;

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr uint32_t kMaxHeaderBytes = 64 * 1024;
// The reply is in hand when we shut TLS down: a slow peer must not hold the call.
constexpr std::chrono::milliseconds kShutdownTimeout{1000};

MonoTime Now() { return SystemClock().MonotonicNow(); }

absl::Status MarkSent(absl::Status s) { return MarkRequestSent(std::move(s)); }
absl::Status MarkNotSent(absl::Status s) { return MarkRequestNotSent(std::move(s)); }

struct Endpoint {
  std::string host;         // for resolving, SNI and certificate checks (no IPv6 brackets)
  std::string port;         // "443" unless given
  std::string host_header;  // host, bracketed for IPv6, ":port" if not 443
  std::string path_prefix;  // "" or "/prefix"
  bool host_is_ip = false;  // no SNI for IP literals (RFC 6066)
  std::string display;      // "host:port"
  std::string origin;       // "https://" + host_header
};

absl::StatusOr<Endpoint> ParseBaseUrl(const std::string& base_url) {
  auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(StrCat("api_base_url \"", base_url, "\" is invalid: ", why));
  };
  auto url = urls::parse_uri(base_url);
  if (!url) {
    return invalid("not an absolute URL");
  }
  if (url->scheme_id() != urls::scheme::https) {
    return invalid("only https is supported");
  }
  if (url->has_userinfo() || url->has_query() || url->has_fragment()) {
    return invalid("user info, query and fragment are not allowed");
  }
  Endpoint ep;
  ep.host = url->host_address();
  if (ep.host.empty()) {
    return invalid("no host");
  }
  urls::host_type type = url->host_type();
  if (type == urls::host_type::ipvfuture) {
    return invalid("unsupported host");
  }
  ep.host_is_ip = type == urls::host_type::ipv4 || type == urls::host_type::ipv6;
  ep.port = "443";
  if (url->has_port()) {
    if (url->port_number() == 0) {
      return invalid("bad port");
    }
    ep.port = std::to_string(url->port_number());
  }
  std::string bracketed = type == urls::host_type::ipv6 ? StrCat("[", ep.host, "]") : ep.host;
  ep.host_header = ep.port == "443" ? bracketed : StrCat(bracketed, ":", ep.port);
  ep.display = StrCat(bracketed, ":", ep.port);
  ep.origin = StrCat("https://", ep.host_header);
  ep.path_prefix = url->encoded_path();
  while (!ep.path_prefix.empty() && ep.path_prefix.back() == '/') {
    ep.path_prefix.pop_back();
  }
  return ep;
}

// A timeout is DeadlineExceeded when the whole request's deadline has passed, Unavailable when
// only a step's own bound (connect_timeout) did.
absl::Status StepError(std::string_view step, const beast::error_code& ec, MonoTime deadline) {
  if (ec == beast::error::timeout) {
    if (Now() >= deadline) {
      return absl::DeadlineExceededError(StrCat(step, " timed out: the request deadline passed"));
    }
    return absl::UnavailableError(StrCat(step, " timed out"));
  }
  if (ec == asio::error::operation_aborted) {
    return absl::CancelledError(StrCat(step, " cancelled"));
  }
  return absl::UnavailableError(StrCat(step, " failed: ", ec.message()));
}

// One TLS connection with its own strand: every operation on it runs there (Send hops onto it),
// so Beast's timers and our I/O never race, whichever pool thread the caller runs on.
class Connection {
 public:
  Connection(asio::any_io_executor ex, ssl::context& ctx, const Endpoint& endpoint)
      : strand_(asio::make_strand(ex)), endpoint_(endpoint), stream_(strand_, ctx) {}

  asio::any_io_executor strand() const { return strand_; }

  asio::awaitable<absl::Status> Connect(MonoTime connect_deadline, MonoTime deadline) {
    co_await asio::this_coro::throw_if_cancelled(false);
    // The resolver has no timeout of its own: a timer cancels it. The timer's handler owns what
    // it touches, so it is safe even if it runs after we return.
    auto resolver = std::make_shared<tcp::resolver>(strand_);
    auto timed_out = std::make_shared<bool>(false);
    auto on_timer = [resolver, timed_out](const beast::error_code& ec) {
      if (!ec) {
        *timed_out = true;
        resolver->cancel();
      }
    };
    // Kept out of any expression that contains co_await: GCC 12 destroys temporaries of such
    // expressions twice (PR 100611).
    asio::steady_timer timer(strand_, connect_deadline);
    timer.async_wait(asio::bind_executor(strand_, std::move(on_timer)));
    auto [resolve_ec, results] =
        co_await resolver->async_resolve(endpoint_.host, endpoint_.port, kNoThrow);
    timer.cancel();
    std::string step = StrCat("resolve ", endpoint_.host);
    if (*timed_out) {
      co_return StepError(step, beast::error::timeout, deadline);
    }
    if (resolve_ec) {
      co_return StepError(step, resolve_ec, deadline);
    }
    beast::get_lowest_layer(stream_).expires_at(connect_deadline);
    auto [connect_ec, unused_endpoint] =
        co_await beast::get_lowest_layer(stream_).async_connect(results, kNoThrow);
    if (connect_ec) {
      co_return StepError(StrCat("connect to ", endpoint_.display), connect_ec, deadline);
    }
    // Verify the chain and that the certificate names our host. SNI only for host names.
    beast::error_code ec;
    stream_.set_verify_mode(ssl::verify_peer, ec);
    if (!ec) {
      stream_.set_verify_callback(ssl::host_name_verification(endpoint_.host), ec);
    }
    if (!ec && !endpoint_.host_is_ip &&
        !SSL_set_tlsext_host_name(stream_.native_handle(), endpoint_.host.c_str())) {
      ec.assign(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category());
    }
    if (ec) {
      co_return absl::InternalError(StrCat("TLS setup failed: ", ec.message()));
    }
    beast::get_lowest_layer(stream_).expires_at(connect_deadline);
    auto [handshake_ec] = co_await stream_.async_handshake(ssl::stream_base::client, kNoThrow);
    if (handshake_ec) {
      absl::Status s =
          StepError(StrCat("TLS handshake with ", endpoint_.display), handshake_ec, deadline);
      long verify = SSL_get_verify_result(stream_.native_handle());
      if (s.code() == absl::StatusCode::kUnavailable && verify != X509_V_OK) {
        s = absl::UnavailableError(
            StrCat(s.message(), " (", X509_verify_cert_error_string(verify), ")"));
      }
      co_return s;
    }
    connected_ = true;
    co_return absl::OkStatus();
  }

  // One request and its reply. Failures after the first byte was handed to TLS are marked sent.
  asio::awaitable<absl::StatusOr<IncomingResponse>> Exchange(http::request<http::string_body>& req,
                                                             uint64_t max_body, MonoTime deadline) {
    co_await asio::this_coro::throw_if_cancelled(false);
    beast::get_lowest_layer(stream_).expires_at(deadline);
    auto [write_ec, written] = co_await http::async_write(stream_, req, kNoThrow);
    if (write_ec) {
      connected_ = false;
      co_return MarkSent(
          StepError(StrCat("send request to ", endpoint_.display), write_ec, deadline));
    }
    http::response_parser<http::string_body> parser;
    parser.body_limit(max_body);
    parser.header_limit(kMaxHeaderBytes);
    beast::get_lowest_layer(stream_).expires_at(deadline);
    auto [read_ec, read] = co_await http::async_read(stream_, buffer_, parser, kNoThrow);
    if (read_ec) {
      connected_ = false;
      if (read_ec == http::error::body_limit) {
        co_return MarkSent(absl::ResourceExhaustedError(StrCat(
            "reply from ", endpoint_.display, " is larger than ", max_body, " bytes")));
      }
      if (read_ec == http::error::partial_message ||
          (parser.is_header_done() && read_ec != beast::error::timeout &&
           read_ec != asio::error::operation_aborted)) {
        co_return MarkSent(absl::UnavailableError(
            StrCat("reply from ", endpoint_.display, " was cut off: ", read_ec.message())));
      }
      if (read_ec.category() == http::make_error_code(http::error::end_of_stream).category() &&
          read_ec != http::error::end_of_stream) {
        co_return MarkSent(absl::UnavailableError(
            StrCat("unparsable HTTP reply from ", endpoint_.display, ": ", read_ec.message())));
      }
      co_return MarkSent(
          StepError(StrCat("read reply from ", endpoint_.display), read_ec, deadline));
    }
    http::response<http::string_body> res = parser.release();
    IncomingResponse reply;
    reply.status = static_cast<int>(res.result_int());
    for (const auto& field : res) {
      reply.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    if (auto it = res.find(http::field::retry_after); it != res.end()) {
      reply.retry_after = ParseRetryAfter(it->value());
    }
    reply.body = std::move(res.body());
    if (!res.keep_alive()) {
      reusable_ = false;
    }
    co_return reply;
  }

  // Graceful TLS close; errors ignored (the reply is complete and HTTP carries its own length).
  asio::awaitable<void> Shutdown(MonoTime deadline) {
    co_await asio::this_coro::throw_if_cancelled(false);
    if (!connected_) {
      co_return;
    }
    connected_ = false;
    beast::get_lowest_layer(stream_).expires_at(std::min(deadline, Now() + kShutdownTimeout));
    auto [ec] = co_await stream_.async_shutdown(kNoThrow);
    (void)ec;
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).socket().close(ignored);
  }

  bool reusable() const { return connected_ && reusable_; }

  // An idle connection with anything to read (the server's FIN, an alert) is not reusable.
  bool IdleAndQuiet() {
    if (!reusable()) {
      return false;
    }
    pollfd pfd{};
    pfd.fd = beast::get_lowest_layer(stream_).socket().native_handle();
    pfd.events = POLLIN;
    return ::poll(&pfd, 1, 0) == 0 && buffer_.size() == 0;
  }

  MonoTime idle_since{};

 private:
  asio::any_io_executor strand_;
  const Endpoint& endpoint_;
  beast::ssl_stream<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
  bool connected_ = false;
  bool reusable_ = true;
};

http::verb VerbOf(std::string_view method) {
  if (method == "GET") return http::verb::get;
  if (method == "POST") return http::verb::post;
  if (method == "PATCH") return http::verb::patch;
  if (method == "DELETE") return http::verb::delete_;
  if (method == "HEAD") return http::verb::head;
  if (method == "PUT") return http::verb::put;
  return http::verb::unknown;
}

}  // namespace

struct HttpsTransport::Impl {
  Impl(asio::any_io_executor executor, HttpsTransportOptions opts, Endpoint ep)
      : ex(std::move(executor)),
        options(std::move(opts)),
        endpoint(std::move(ep)),
        ssl_ctx(ssl::context::tls_client) {}

  // A pooled connection, or nullptr with a slot reserved for a new one. DeadlineExceeded when no
  // slot comes free in time.
  asio::awaitable<absl::StatusOr<std::unique_ptr<Connection>>> Acquire(MonoTime deadline) {
    const asio::any_io_executor self = co_await asio::this_coro::executor;
    for (;;) {
      std::shared_ptr<asio::steady_timer> waiter;
      std::vector<std::unique_ptr<Connection>> stale;
      {
        std::lock_guard lock(mu);
        const MonoTime now = Now();
        while (!idle.empty()) {
          std::unique_ptr<Connection> c = std::move(idle.back());
          idle.pop_back();
          if (now - c->idle_since < options.idle_timeout && c->IdleAndQuiet()) {
            co_return std::move(c);
          }
          --open;
          stale.push_back(std::move(c));
        }
        if (open < options.max_connections) {
          ++open;
          co_return std::unique_ptr<Connection>();
        }
        if (now >= deadline) {
          co_return absl::DeadlineExceededError(
              StrCat("all ", options.max_connections, " connections to ", endpoint.display,
                     " are busy and the request deadline passed"));
        }
        waiter = std::make_shared<asio::steady_timer>(self, deadline);
        waiters.push_back(waiter);
      }
      stale.clear();
      auto [ec] = co_await waiter->async_wait(kNoThrow);
      (void)ec;  // woken (cancelled) by Release, or the deadline: look again either way
    }
  }

  void Release(std::unique_ptr<Connection> c) {
    std::shared_ptr<asio::steady_timer> wake;
    {
      std::lock_guard lock(mu);
      if (c && c->reusable()) {
        c->idle_since = Now();
        idle.push_back(std::move(c));
      } else {
        --open;
      }
      // Wake the oldest waiter still waiting (one whose deadline passed has gone already).
      while (!wake && !waiters.empty()) {
        wake = waiters.front().lock();
        waiters.pop_front();
      }
    }
    if (wake) {
      // The timer belongs to the waiting coroutine's executor; cancel it there.
      asio::post(wake->get_executor(), [wake] { wake->cancel(); });
    }
    // A connection that is not kept is destroyed here (socket closed without close_notify).
  }

  asio::awaitable<absl::StatusOr<IncomingResponse>> Send(OutgoingRequest request,
                                                         MonoTime deadline) {
    const http::verb verb = VerbOf(request.method);
    if (verb == http::verb::unknown) {
      co_return absl::InvalidArgumentError(StrCat("unsupported method ", request.method));
    }
    http::request<http::string_body> req{verb, StrCat(endpoint.path_prefix, request.target), 11};
    req.set(http::field::host, endpoint.host_header);
    req.set(http::field::user_agent, options.user_agent);
    for (auto& [name, value] : request.headers) {
      req.set(name, value);
    }
    req.body() = std::move(request.body);
    req.keep_alive(request.keep_alive);
    req.prepare_payload();
    ++requests;

    // A cancelled call sees error codes, not exceptions, and returns through the code below.
    co_await asio::this_coro::throw_if_cancelled(false);
    std::unique_ptr<Connection> conn;
    bool reused = false;
    // Gives the pool slot back on every way out, an exception included.
    struct SlotGuard {
      Impl* impl;
      std::unique_ptr<Connection>* conn;
      ~SlotGuard() {
        if (impl != nullptr) {
          impl->Release(std::move(*conn));
        }
      }
    } slot{nullptr, &conn};
    if (request.keep_alive) {
      absl::StatusOr<std::unique_ptr<Connection>> acquired = co_await Acquire(deadline);
      if (!acquired.ok()) {
        co_return MarkNotSent(acquired.status());
      }
      conn = *std::move(acquired);
      slot.impl = this;
      reused = conn != nullptr;
    }
    if (!conn) {
      conn = std::make_unique<Connection>(ex, ssl_ctx, endpoint);
      ++connections_opened;
      const MonoTime connect_deadline = std::min(deadline, Now() + options.connect_timeout);
      absl::Status connected = co_await asio::co_spawn(
          conn->strand(), conn->Connect(connect_deadline, deadline), asio::use_awaitable);
      if (!connected.ok()) {
        conn.reset();  // a failed connection is never pooled
        co_return MarkNotSent(connected);
      }
    }
    absl::StatusOr<IncomingResponse> reply = co_await asio::co_spawn(
        conn->strand(), conn->Exchange(req, options.max_response_body_bytes, deadline),
        asio::use_awaitable);
    if (reply.ok()) {
      reply->reused_connection = reused;
    }
    if (request.keep_alive) {
      slot.impl = nullptr;
      Release(std::move(conn));
    } else {
      co_await asio::co_spawn(conn->strand(), conn->Shutdown(deadline), asio::use_awaitable);
    }
    co_return reply;
  }

  asio::any_io_executor ex;
  HttpsTransportOptions options;
  Endpoint endpoint;
  ssl::context ssl_ctx;

  mutable std::mutex mu;
  std::vector<std::unique_ptr<Connection>> idle;             // guarded by mu; newest last
  int open = 0;                                              // guarded by mu
  std::deque<std::weak_ptr<asio::steady_timer>> waiters;     // guarded by mu
  std::atomic<uint64_t> connections_opened{0};
  std::atomic<uint64_t> requests{0};
};

absl::StatusOr<std::unique_ptr<HttpsTransport>> HttpsTransport::Create(
    asio::any_io_executor ex, HttpsTransportOptions options) {
  absl::StatusOr<Endpoint> endpoint = ParseBaseUrl(options.base_url);
  if (!endpoint.ok()) {
    return endpoint.status();
  }
  if (options.connect_timeout.count() <= 0) {
    return absl::InvalidArgumentError("connect_timeout must be positive");
  }
  if (options.max_connections < 1) {
    return absl::InvalidArgumentError("max_connections must be at least 1");
  }
  if (options.max_response_body_bytes == 0) {
    return absl::InvalidArgumentError("max_response_body_bytes must be positive");
  }
  try {
    auto impl = std::make_unique<Impl>(std::move(ex), std::move(options), *std::move(endpoint));
    ssl::context& ctx = impl->ssl_ctx;
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_compression |
                    ssl::context::no_sslv2 | ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                    ssl::context::no_tlsv1_1);
    ctx.set_verify_mode(ssl::verify_peer);
    beast::error_code ec;
    const std::string& ca_file = impl->options.ca_file;
    if (ca_file.empty()) {
      ctx.set_default_verify_paths(ec);
      if (ec) {
        return absl::InvalidArgumentError(
            StrCat("cannot load the system CA certificates: ", ec.message()));
      }
    } else {
      std::error_code fs_ec;
      if (!std::filesystem::is_regular_file(ca_file, fs_ec)) {
        return absl::InvalidArgumentError(
            StrCat("CA file ", ca_file, " does not exist or is not a regular file"));
      }
      ctx.load_verify_file(ca_file, ec);
      if (ec) {
        return absl::InvalidArgumentError(
            StrCat("cannot load CA file ", ca_file, ": ", ec.message()));
      }
    }
    return std::unique_ptr<HttpsTransport>(new HttpsTransport(std::move(impl)));
  } catch (const std::exception& e) {
    return absl::InternalError(StrCat("cannot set up TLS: ", e.what()));
  }
}

HttpsTransport::HttpsTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpsTransport::~HttpsTransport() = default;

asio::awaitable<absl::StatusOr<IncomingResponse>> HttpsTransport::Send(OutgoingRequest request,
                                                                       MonoTime deadline) {
  return impl_->Send(std::move(request), deadline);
}

const std::string& HttpsTransport::origin() const { return impl_->endpoint.origin; }
const std::string& HttpsTransport::path_prefix() const { return impl_->endpoint.path_prefix; }
const std::string& HttpsTransport::display() const { return impl_->endpoint.display; }

TransportStats HttpsTransport::Stats() const {
  TransportStats s;
  s.connections_opened = impl_->connections_opened;
  s.requests = impl_->requests;
  std::lock_guard lock(impl_->mu);
  s.open_connections = impl_->open;
  s.idle_connections = static_cast<int>(impl_->idle.size());
  return s;
}

}  // namespace connectbroker::mollie
