// A small HTTP/1.1 server (Boost.Beast) for the broker's own endpoints: /oauth/callback,
// /healthz. Runs on the given io_context; the Router is separate from the transport so that
// routes can be tested without sockets. Plain HTTP: production puts it behind the platform's
// TLS-terminating reverse proxy.
// Thread safety: Start/Stop from any thread; handlers run on the io_context (on the connection's
// strand) and may answer later, from any thread, through the Responder (exactly once; a Responder
// dropped unanswered answers 500). The io_context must outlive every Responder.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "absl/status/statusor.h"

namespace connectbroker::http {

struct Request {
  std::string method;  // "GET"
  std::string target;  // as received: path + query
  std::string path;    // decoded path, e.g. "/oauth/callback"
  // Decoded query parameters; a repeated key keeps the first value and sets duplicate_keys.
  std::map<std::string, std::string> query;
  bool duplicate_keys = false;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

struct Response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

using Responder = std::function<void(Response)>;
using Handler = std::function<void(const Request&, Responder)>;

class Router {
 public:
  void Add(std::string method, std::string path, Handler handler);
  // 404 for an unknown path, 405 (with Allow) for a known path with another method.
  void Dispatch(const Request& request, Responder respond) const;

 private:
  std::map<std::string, std::map<std::string, Handler>> routes_;  // path -> method -> handler
};

struct HttpServerOptions {
  std::string listen = "127.0.0.1:8080";  // host:port; port 0 picks a free port
  std::size_t max_body_bytes = 64 * 1024;
  std::size_t max_header_bytes = 16 * 1024;
  std::chrono::seconds read_timeout{30};
  std::size_t max_connections = 1024;
};

// Every answer carries Cache-Control: no-store and X-Content-Type-Options: nosniff. The transport
// itself answers 400 (malformed request, bad target or percent-encoding), 413 (body), 431 (header)
// and 503 (max_connections reached), then closes the connection.
class HttpServer {
 public:
  // Copies the router: routes are fixed once the server exists.
  HttpServer(boost::asio::io_context& ioc, HttpServerOptions options, const Router& router);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts accepting; returns the bound port. Errors name the address:
  // INVALID_ARGUMENT (unparsable or unresolvable), UNAVAILABLE (bind/listen failed),
  // FAILED_PRECONDITION (started twice, or after Stop).
  absl::StatusOr<int> Start();
  // Stops accepting and closes open connections (pending handlers' answers are discarded);
  // idempotent. The closing runs on the io_context, so it needs the loop to run afterwards.
  void Stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// Parses "host:port" (IPv4, [IPv6] or a name) for listen options; used by config validation.
absl::StatusOr<std::pair<std::string, int>> ParseHostPort(std::string_view address);

}  // namespace connectbroker::http
