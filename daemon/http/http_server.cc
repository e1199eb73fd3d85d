// HttpServer: Boost.Beast transport with C++20 coroutines. All Beast code of the module lives in
// this file. Each connection is one coroutine on its own strand; the acceptor has its own strand.
// Handlers answer through a Responder that dispatches the answer onto the connection's strand, so
// they may answer later and from any thread. Stop() posts the closing work onto those strands.
#include "daemon/http/http_server.h"

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/url/parse.hpp>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/common/log.h"

namespace connectbroker::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using Strand = asio::strand<asio::io_context::executor_type>;
using Stream = beast::basic_stream<tcp, Strand>;
using Socket = tcp::socket::rebind_executor<Strand>::other;
using BeastRequest = bhttp::request<bhttp::string_body>;
using BeastResponse = bhttp::response<bhttp::string_body>;
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

// One request awaiting its answer; lives on the connection's strand.
struct Exchange {
  explicit Exchange(const Strand& strand) : event(strand) {}
  std::optional<Response> response;
  asio::steady_timer event;  // timer-as-event: cancelled when the answer (or Stop) arrives
};

// Shared by all copies of one Responder. If the last copy goes away unanswered (a handler bug or
// an exception), the client gets a 500 instead of a hung connection.
class ResponderState {
 public:
  ResponderState(Strand strand, std::weak_ptr<Exchange> exchange)
      : strand_(std::move(strand)), exchange_(std::move(exchange)) {}
  ~ResponderState() {
    if (!answered_.load()) {
      CB_LOG(ERROR) << "http: handler dropped its responder; answering 500";
      Deliver(Response{.status = 500, .body = "internal error\n"});
    }
  }
  void Answer(Response response) {
    if (answered_.exchange(true)) {
      CB_LOG(ERROR) << "http: handler answered twice; second answer ignored";
      return;
    }
    Deliver(std::move(response));
  }

 private:
  void Deliver(Response response) {
    asio::dispatch(strand_, [exchange = exchange_, response = std::move(response)]() mutable {
      if (auto e = exchange.lock()) {
        e->response = std::move(response);
        e->event.cancel();
      }
    });
  }
  Strand strand_;
  std::weak_ptr<Exchange> exchange_;
  std::atomic<bool> answered_{false};
};

BeastResponse ToBeast(Response response, unsigned version, bool keep_alive) {
  if (response.status < 100 || response.status > 599) {
    CB_LOG(ERROR) << "http: handler returned invalid status " << response.status;
    response = Response{.status = 500, .body = "internal error\n"};
  }
  BeastResponse res{static_cast<bhttp::status>(response.status), version};
  res.set(bhttp::field::content_type, response.content_type);
  res.set(bhttp::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
  for (const auto& [name, value] : response.headers) {
    if (name.find_first_of("\r\n:") != std::string::npos ||
        value.find_first_of("\r\n") != std::string::npos) {
      CB_LOG(ERROR) << "http: dropped malformed response header";
      continue;
    }
    res.set(name, value);
  }
  res.keep_alive(keep_alive);
  res.body() = std::move(response.body);
  res.prepare_payload();
  return res;
}

absl::StatusOr<Request> ToRequest(BeastRequest& req) {
  Request r;
  r.method = std::string(req.method_string());
  r.target = std::string(req.target());
  auto url = boost::urls::parse_origin_form(req.target());
  if (!url) {
    return absl::InvalidArgumentError("bad request target");
  }
  r.path = url->path();
  boost::urls::encoding_opts opts;
  opts.space_as_plus = true;  // query strings are form-encoded
  for (auto param : url->params(opts)) {
    if (param.key.find('\0') != std::string::npos || param.value.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError("NUL in query");
    }
    if (!r.query.emplace(param.key, param.value).second) {
      r.duplicate_keys = true;
    }
  }
  if (r.path.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("NUL in path");
  }
  for (const auto& field : req) {
    std::string name(field.name_string());
    for (char& c : name) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    auto [it, inserted] = r.headers.emplace(name, std::string(field.value()));
    if (!inserted) {
      it->second += ", " + std::string(field.value());
    }
  }
  r.body = std::move(req.body());
  return r;
}

// Parse errors that mean "the client sent garbage" (as opposed to closing or timing out).
bool IsMalformed(const beast::error_code& ec) {
  if (ec.category() != bhttp::make_error_code(bhttp::error::bad_method).category()) {
    return false;
  }
  return ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message &&
         ec != bhttp::error::short_read && ec != bhttp::error::stale_parser;
}

void LogException(const char* what, std::exception_ptr e) {
  if (!e) {
    return;
  }
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    CB_LOG(ERROR) << "http: exception escaped " << what << ": " << ex.what();
  } catch (...) {
    CB_LOG(ERROR) << "http: unknown exception escaped " << what;
  }
}

class Session;

// The server's state, shared by the acceptor coroutine and every session.
struct Server : std::enable_shared_from_this<Server> {
  Server(asio::io_context& ioc_in, HttpServerOptions options_in, Router router_in)
      : ioc(ioc_in),
        options(std::move(options_in)),
        router(std::move(router_in)),
        acceptor(asio::make_strand(ioc_in)) {}

  asio::awaitable<void> AcceptLoop();
  void Unregister(std::uint64_t id, bool counted) {
    std::lock_guard lock(mu);
    sessions.erase(id);
    if (counted) {
      --serving;
    }
  }

  asio::io_context& ioc;
  const HttpServerOptions options;
  const Router router;  // a copy: routes are fixed once the server exists
  tcp::acceptor acceptor;

  std::mutex mu;
  bool started = false;       // guarded by mu
  bool stopped = false;       // guarded by mu
  std::uint64_t next_id = 0;  // guarded by mu
  std::size_t serving = 0;    // sessions counted against max_connections; guarded by mu
  std::map<std::uint64_t, std::weak_ptr<Session>> sessions;  // guarded by mu
};

// One connection. Everything except Stop()'s entry runs on strand_.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::shared_ptr<Server> server, std::uint64_t id, bool counted, Socket socket)
      : server_(std::move(server)),
        id_(id),
        counted_(counted),
        strand_(socket.get_executor()),
        stream_(std::move(socket)) {}

  // Serves requests until the peer closes, an error, or Stop(). With over_capacity, answers 503.
  asio::awaitable<void> Run(bool over_capacity);
  const Strand& executor() const { return strand_; }
  // Any thread.
  void Stop() {
    asio::dispatch(strand_, [self = shared_from_this()] {
      self->stopped_ = true;
      beast::error_code ec;
      self->stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
      self->stream_.close();
      if (self->exchange_) {
        self->exchange_->event.cancel();
      }
    });
  }

 private:
  asio::awaitable<void> Serve();
  // Answers without a handler (errors found by the transport), then closes.
  asio::awaitable<void> Reject(int status, std::string body, unsigned version);
  asio::awaitable<std::optional<Response>> Handle(const Request& request);
  asio::awaitable<bool> Write(BeastResponse response);
  asio::awaitable<void> LingeringClose();

  std::shared_ptr<Server> server_;
  const std::uint64_t id_;
  const bool counted_;
  Strand strand_;
  Stream stream_;
  beast::flat_buffer buffer_;
  std::shared_ptr<Exchange> exchange_;  // the request waiting for its handler, if any
  bool stopped_ = false;
};

asio::awaitable<void> Session::Run(bool over_capacity) {
  struct Unregister {
    ~Unregister() { session->server_->Unregister(session->id_, session->counted_); }
    Session* session;
  } unregister{this};
  if (over_capacity) {
    co_await Reject(503, "too many connections\n", 11);
  } else {
    co_await Serve();
  }
}

asio::awaitable<void> Session::Serve() {
  const HttpServerOptions& options = server_->options;
  while (!stopped_) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(options.max_header_bytes));
    parser.body_limit(options.max_body_bytes);
    stream_.expires_after(options.read_timeout);  // covers idle keep-alive + the whole request
    auto [ec, unused] = co_await bhttp::async_read(stream_, buffer_, parser, kNoThrow);
    if (stopped_) {
      co_return;
    }
    if (ec == bhttp::error::body_limit) {
      co_await Reject(413, "request body too large\n", parser.get().version());
      co_return;
    }
    if (ec == bhttp::error::header_limit) {
      co_await Reject(431, "request header too large\n", 11);
      co_return;
    }
    if (IsMalformed(ec)) {
      co_await Reject(400, "malformed request\n", 11);
      co_return;
    }
    if (ec) {
      co_return;  // closed, reset or timed out: nobody to answer
    }
    BeastRequest req = parser.release();
    const unsigned version = req.version();
    const bool keep_alive = req.keep_alive();
    absl::StatusOr<Request> request = ToRequest(req);
    if (!request.ok()) {
      std::string why = std::string(request.status().message()) + "\n";
      co_await Reject(400, std::move(why), version);
      co_return;
    }
    std::optional<Response> response = co_await Handle(*request);
    if (!response) {
      co_return;  // stopped while the handler was busy
    }
    BeastResponse res = ToBeast(std::move(*response), version, keep_alive);
    const bool written = co_await Write(std::move(res));
    if (!written || !keep_alive) {
      break;
    }
  }
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
}

asio::awaitable<std::optional<Response>> Session::Handle(const Request& request) {
  exchange_ = std::make_shared<Exchange>(strand_);
  auto exchange = exchange_;
  {
    auto state = std::make_shared<ResponderState>(strand_, exchange);
    Responder respond = [state](Response response) { state->Answer(std::move(response)); };
    try {
      server_->router.Dispatch(request, std::move(respond));
    } catch (const std::exception& e) {
      // The responder copies died during unwinding; the last one answers 500.
      CB_LOG(ERROR) << "http: handler for " << request.path << " threw: " << e.what();
    } catch (...) {
      CB_LOG(ERROR) << "http: handler for " << request.path << " threw";
    }
  }
  while (!exchange->response && !stopped_) {
    exchange->event.expires_at(asio::steady_timer::time_point::max());
    co_await exchange->event.async_wait(kNoThrow);
  }
  exchange_.reset();
  if (stopped_) {
    co_return std::nullopt;
  }
  co_return std::move(exchange->response);
}

asio::awaitable<bool> Session::Write(BeastResponse response) {
  stream_.expires_after(server_->options.read_timeout);
  auto [ec, unused] = co_await bhttp::async_write(stream_, response, kNoThrow);
  co_return !ec && !stopped_;
}

asio::awaitable<void> Session::Reject(int status, std::string body, unsigned version) {
  if (version != 10 && version != 11) {
    version = 11;
  }
  // Named locals rather than temporaries inside co_await: GCC 12 miscompiles the latter.
  Response response;
  response.status = status;
  response.body = std::move(body);
  BeastResponse res = ToBeast(std::move(response), version, false);
  const bool written = co_await Write(std::move(res));
  if (written) {
    co_await LingeringClose();
  }
}

// Closing with unread input makes the kernel send RST, which can destroy our error answer before
// the client reads it. So: half-close, then drain (bounded in bytes and time) until the peer
// closes.
asio::awaitable<void> Session::LingeringClose() {
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream_.expires_after(std::min<std::chrono::steady_clock::duration>(server_->options.read_timeout,
                                                                      std::chrono::seconds(5)));
  char sink[4096];
  for (std::size_t drained = 0; drained < (1u << 20) && !stopped_;) {
    auto [read_ec, n] = co_await stream_.async_read_some(asio::buffer(sink), kNoThrow);
    if (read_ec) {
      break;
    }
    drained += n;
  }
}

asio::awaitable<void> Server::AcceptLoop() {
  auto self = shared_from_this();
  while (true) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(ioc), kNoThrow);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
      co_return;
    }
    if (ec) {
      CB_LOG(WARNING) << "http: accept failed: " << ec.message();
      asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
      co_await pause.async_wait(kNoThrow);  // e.g. EMFILE: do not spin
      continue;
    }
    std::shared_ptr<Session> session;
    bool over_capacity = false;
    {
      std::lock_guard lock(mu);
      if (stopped) {
        co_return;
      }
      over_capacity = serving >= options.max_connections;
      if (!over_capacity) {
        ++serving;
      }
      session = std::make_shared<Session>(self, ++next_id, !over_capacity, std::move(socket));
      sessions.emplace(next_id, session);
    }
    if (over_capacity) {
      CB_LOG(WARNING) << "http: connection limit reached; answering 503";
    }
    asio::co_spawn(
        session->executor(),
        [session, over_capacity]() -> asio::awaitable<void> {
          co_await session->Run(over_capacity);
        },
        [](std::exception_ptr e) { LogException("http session", e); });
  }
}

}  // namespace

struct HttpServer::Impl : Server {
  using Server::Server;
};

HttpServer::HttpServer(asio::io_context& ioc, HttpServerOptions options, const Router& router)
    : impl_(std::make_shared<Impl>(ioc, std::move(options), router)) {}

HttpServer::~HttpServer() { Stop(); }

absl::StatusOr<int> HttpServer::Start() {
  Impl& impl = *impl_;
  const std::string& listen = impl.options.listen;
  auto host_port = ParseHostPort(listen);
  if (!host_port.ok()) {
    return host_port.status();
  }
  std::lock_guard lock(impl.mu);
  if (impl.started || impl.stopped) {
    return absl::FailedPreconditionError("http server on " + listen +
                                         " already started or stopped");
  }
  beast::error_code ec;
  tcp::resolver resolver(impl.ioc);
  auto endpoints = resolver.resolve(host_port->first, std::to_string(host_port->second),
                                    tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || endpoints.empty()) {
    return absl::InvalidArgumentError(
        "http listen " + listen + ": cannot resolve host: " + (ec ? ec.message() : "no address"));
  }
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  auto fail = [&](std::string_view step) {
    beast::error_code ignored;
    impl.acceptor.close(ignored);
    return absl::UnavailableError("http listen " + listen + ": " + std::string(step) + ": " +
                                  ec.message());
  };
  impl.acceptor.open(endpoint.protocol(), ec);
  if (ec) {
    return fail("open");
  }
  impl.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (ec) {
    return fail("setsockopt");
  }
  impl.acceptor.bind(endpoint, ec);
  if (ec) {
    return fail("bind");
  }
  impl.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return fail("listen");
  }
  const int port = impl.acceptor.local_endpoint(ec).port();
  if (ec) {
    return fail("local_endpoint");
  }
  impl.started = true;
  asio::co_spawn(
      impl.acceptor.get_executor(),
      [self = impl_]() -> asio::awaitable<void> { co_await self->AcceptLoop(); },
      [](std::exception_ptr e) { LogException("http accept loop", e); });
  CB_LOG(INFO) << "http: listening on " << endpoint.address().to_string() << ":" << port;
  return port;
}

void HttpServer::Stop() {
  std::map<std::uint64_t, std::weak_ptr<Session>> sessions;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopped) {
      return;
    }
    impl_->stopped = true;
    sessions.swap(impl_->sessions);
  }
  asio::dispatch(impl_->acceptor.get_executor(), [impl = impl_] {
    beast::error_code ec;
    impl->acceptor.close(ec);
  });
  for (auto& [id, weak] : sessions) {
    if (auto session = weak.lock()) {
      session->Stop();
    }
  }
}

}  // namespace connectbroker::http
