#include "tests/mollie_sim/https_server.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <chrono>
#include <csignal>
#include <exception>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

#include "daemon/common/log.h"

namespace connectbroker::mollie_sim {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using asio::ip::tcp;
using Stream = beast::ssl_stream<beast::tcp_stream>;

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr auto kHandshakeTimeout = std::chrono::seconds(10);
constexpr auto kReadTimeout = std::chrono::seconds(30);  // also the keep-alive idle limit
constexpr auto kWriteTimeout = std::chrono::seconds(30);
constexpr auto kShutdownTimeout = std::chrono::seconds(5);
constexpr auto kHangDuration = std::chrono::seconds(30);
constexpr uint64_t kBodyLimit = 1024 * 1024;
constexpr auto kDrainTimeout = std::chrono::seconds(2);
constexpr size_t kDrainLimit = 16 * 1024 * 1024;

// Method and path only: queries may carry state or simulation parameters, and tokens never
// appear in either, so the log line is safe.
void LogRequest(std::string_view method, std::string_view target, std::string_view outcome) {
  CB_LOG(INFO) << method << " " << target.substr(0, target.find('?')) << " " << outcome;
}

// Runs a response's on_finished (if any) once: at Run(), or when it goes out of scope (a hang
// that ended, or the coroutine destroyed at shutdown).
class Finisher {
 public:
  explicit Finisher(std::function<void()> done) : done_(std::move(done)) {}
  Finisher(const Finisher&) = delete;
  Finisher& operator=(const Finisher&) = delete;
  ~Finisher() { Run(); }
  void Run() {
    if (done_) {
      std::exchange(done_, nullptr)();
    }
  }

 private:
  std::function<void()> done_;
};

SimRequest ToSimRequest(http::request<http::string_body>& request) {
  SimRequest out;
  out.method = std::string(request.method_string());
  out.target = std::string(request.target());
  out.content_type = std::string(request[http::field::content_type]);
  out.authorization = std::string(request[http::field::authorization]);
  out.host = std::string(request[http::field::host]);
  out.idempotency_key = std::string(request["Idempotency-Key"]);
  for (const auto& field : request) {
    std::string name(field.name_string());
    for (char& c : name) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    out.headers.emplace_back(std::move(name), std::string(field.value()));
  }
  out.body = std::move(request.body());
  return out;
}

// Reads and discards what the client still sends (a lingering close), so that closing with
// unread data does not reset the connection before the client has read our error response.
asio::awaitable<void> Drain(Stream& stream) {
  std::vector<char> sink(64 * 1024);
  size_t total = 0;
  beast::get_lowest_layer(stream).expires_after(kDrainTimeout);
  while (total < kDrainLimit) {
    auto [ec, n] = co_await stream.async_read_some(asio::buffer(sink), kNoThrow);
    if (ec) {
      break;
    }
    total += n;
  }
}

asio::awaitable<void> Session(tcp::socket socket, ssl::context& tls, Simulator& simulator) {
  Stream stream(std::move(socket), tls);
  beast::get_lowest_layer(stream).expires_after(kHandshakeTimeout);
  auto [handshake_ec] = co_await stream.async_handshake(ssl::stream_base::server, kNoThrow);
  if (handshake_ec) {
    CB_LOG(DEBUG) << "TLS handshake failed: " << handshake_ec.message();
    co_return;
  }
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(kBodyLimit);
    beast::get_lowest_layer(stream).expires_after(kReadTimeout);
    auto [read_ec, read_bytes] = co_await http::async_read(stream, buffer, parser, kNoThrow);
    if (read_ec == http::error::body_limit) {
      http::response<http::string_body> too_large{http::status::payload_too_large, 11};
      too_large.set(http::field::content_type, "text/plain; charset=utf-8");
      too_large.body() = "Request body too large\n";
      too_large.keep_alive(false);
      too_large.prepare_payload();
      beast::get_lowest_layer(stream).expires_after(kWriteTimeout);
      auto [write_ec, written] = co_await http::async_write(stream, too_large, kNoThrow);
      if (!write_ec) {
        co_await Drain(stream);
      }
      break;
    }
    if (read_ec) {
      break;  // end of stream, timeout, reset or a malformed request: just close
    }
    http::request<http::string_body> request = parser.release();
    const unsigned version = request.version();
    const bool keep_alive = request.keep_alive();
    const SimRequest sim_request = ToSimRequest(request);
    SimResponse sim_response = simulator.Handle(sim_request);
    // A tracked request stays in flight until its reply is about to go out (after any delay),
    // is dropped, or is abandoned: run before the first byte is written, so that a client that
    // has read the reply can never find its request (or Idempotency-Key) still in flight.
    Finisher finisher(std::move(sim_response.on_finished));

    if (sim_response.delay_ms > 0) {
      asio::steady_timer delay(co_await asio::this_coro::executor,
                               std::chrono::milliseconds(sim_response.delay_ms));
      co_await delay.async_wait(kNoThrow);  // io_context::stop() at shutdown ends this
    }
    if (sim_response.action == SimAction::kReset) {
      finisher.Run();
      LogRequest(sim_request.method, sim_request.target,
                 sim_response.log_note.empty() ? "fault: reset" : sim_response.log_note);
      auto& raw = beast::get_lowest_layer(stream).socket();
      boost::system::error_code ignored;
      raw.set_option(asio::socket_base::linger(true, 0), ignored);  // RST, not FIN
      raw.close(ignored);
      co_return;
    }
    if (sim_response.action == SimAction::kHang) {
      LogRequest(sim_request.method, sim_request.target, "fault: hang");
      asio::steady_timer timer(co_await asio::this_coro::executor, kHangDuration);
      co_await timer.async_wait(kNoThrow);  // io_context::stop() at shutdown ends this
      boost::system::error_code ignored;
      beast::get_lowest_layer(stream).socket().close(ignored);
      co_return;
    }

    LogRequest(sim_request.method, sim_request.target,
               sim_response.log_note.empty()
                   ? std::to_string(sim_response.status)
                   : std::to_string(sim_response.status) + " (" + sim_response.log_note + ")");
    http::response<http::string_body> response{static_cast<http::status>(sim_response.status),
                                               version};
    response.set(http::field::server, "mollie-sim");
    for (const auto& [name, value] : sim_response.headers) {
      response.insert(name, value);
    }
    response.body() = std::move(sim_response.body);
    response.keep_alive(keep_alive);
    response.prepare_payload();
    beast::get_lowest_layer(stream).expires_after(kWriteTimeout);
    finisher.Run();
    if (sim_response.action == SimAction::kTruncate) {
      // The headers promise the whole body (Content-Length); half of it is sent, then the
      // connection is closed (TLS close_notify, then TCP close).
      http::response_serializer<http::string_body> serializer(response);
      auto [header_ec, header_bytes] =
          co_await http::async_write_header(stream, serializer, kNoThrow);
      if (!header_ec) {
        const std::string& body = response.body();
        co_await asio::async_write(stream, asio::buffer(body.data(), body.size() / 2), kNoThrow);
      }
      break;
    }
    auto [write_ec, written] = co_await http::async_write(stream, response, kNoThrow);
    if (write_ec || !response.keep_alive()) {
      break;
    }
  }
  beast::get_lowest_layer(stream).expires_after(kShutdownTimeout);
  co_await stream.async_shutdown(kNoThrow);
}

asio::awaitable<void> AcceptLoop(tcp::acceptor& acceptor, asio::io_context& io, ssl::context& tls,
                                 Simulator& simulator) {
  for (;;) {
    tcp::socket socket(asio::make_strand(io));
    auto [ec] = co_await acceptor.async_accept(socket, kNoThrow);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
      co_return;
    }
    if (ec) {
      // E.g. out of file descriptors: back off instead of spinning.
      CB_LOG(WARNING) << "accept failed: " << ec.message();
      asio::steady_timer pause(io, std::chrono::milliseconds(100));
      co_await pause.async_wait(kNoThrow);
      continue;
    }
    auto executor = socket.get_executor();
    asio::co_spawn(executor, Session(std::move(socket), tls, simulator),
                   [](std::exception_ptr error) {
                     if (!error) {
                       return;
                     }
                     try {
                       std::rethrow_exception(error);
                     } catch (const std::exception& e) {
                       CB_LOG(ERROR) << "connection failed: " << e.what();
                     }
                   });
  }
}

}  // namespace

int RunHttpsServer(const ServerOptions& options, Simulator& simulator,
                   const std::function<bool(uint16_t)>& on_listening) {
  // Declared before the io_context: sessions destroyed with it still use the TLS context.
  ssl::context tls(ssl::context::tls_server);
  tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  boost::system::error_code ec;
  tls.use_certificate_chain_file(options.cert_file, ec);
  if (ec) {
    CB_LOG(ERROR) << "cannot load certificate " << options.cert_file << ": " << ec.message();
    return 1;
  }
  tls.use_private_key_file(options.key_file, ssl::context::pem, ec);
  if (ec) {
    CB_LOG(ERROR) << "cannot load private key " << options.key_file << ": " << ec.message();
    return 1;
  }

  asio::io_context io;
  const std::string host = options.host == "localhost" ? "127.0.0.1" : options.host;
  const tcp::endpoint endpoint(asio::ip::make_address(host, ec), options.port);
  if (ec) {
    CB_LOG(ERROR) << "bad listen address " << options.host;
    return 1;
  }
  tcp::acceptor acceptor(io);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) {
    acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    acceptor.bind(endpoint, ec);
  }
  if (!ec) {
    acceptor.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    CB_LOG(ERROR) << "cannot listen on " << options.host << ":" << options.port << ": "
                  << ec.message();
    return 1;
  }
  const uint16_t port = acceptor.local_endpoint().port();
  if (!on_listening(port)) {
    return 1;
  }
  CB_LOG(NOTICE) << "mollie-sim listening on https://" << endpoint.address().to_string() << ":"
                 << port;

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& error, int signal) {
    if (!error) {
      CB_LOG(NOTICE) << "signal " << signal << ", shutting down";
    }
    boost::system::error_code ignored;
    acceptor.close(ignored);
    io.stop();  // also ends hanging and idle connections
  });
  asio::co_spawn(io, AcceptLoop(acceptor, io, tls, simulator), asio::detached);

  std::vector<std::thread> threads;
  for (int i = 1; i < options.threads; ++i) {
    threads.emplace_back([&io] { io.run(); });
  }
  io.run();
  for (std::thread& thread : threads) {
    thread.join();
  }
  return 0;
}

}  // namespace connectbroker::mollie_sim
