// HttpsTransport: HTTPS/1.1 requests to one origin (Mollie's API host) over Boost.Beast + OpenSSL,
// with certificate and host-name verification, per-step timeouts and a bounded keep-alive
// connection pool. Send() is a coroutine that may run on any thread of the io_context given to
// Create (any number of concurrent calls; the pool is guarded by a mutex). The transport must
// outlive every call it has started.
// Status codes of Send: Unavailable (resolve/connect/TLS/write/read failure, truncated or
// unparsable reply), DeadlineExceeded (the request deadline passed), ResourceExhausted (the reply
// is larger than the configured limit), Cancelled. A failed status says whether the request's
// bytes may have reached the server (RequestMayHaveBeenSent / RequestCertainlyNotSent in
// mollie_oauth_api.h): a retry of a non-idempotent request is only safe when they cannot have.
// This header keeps Beast out; https_transport.cc is the module's only Beast translation unit.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/common/clock.h"
#include "daemon/mollie/mollie_oauth_api.h"

namespace connectbroker::mollie {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct HttpsTransportOptions {
  // https://host[:port][/prefix]; request targets are appended to it.
  std::string base_url = "https://api.mollie.com";
  // PEM bundle of trusted CAs; empty = the system's default verify paths.
  std::string ca_file;
  // Bound on resolve + connect + TLS handshake of a new connection.
  std::chrono::milliseconds connect_timeout{5000};
  // Connections open at once (in use or idle); a Send beyond it waits for one to come free.
  int max_connections = 64;
  // An idle connection older than this is closed instead of reused (servers close idle
  // keep-alive connections too; Mollie's simulator after 30 s).
  std::chrono::milliseconds idle_timeout{20000};
  uint64_t max_response_body_bytes = 1024 * 1024;
  std::string user_agent = "connect-broker/0.1";
};

struct OutgoingRequest {
  std::string method;  // GET, POST, PATCH, DELETE
  std::string target;  // origin-form path and query, starting with '/'; the base path is prefixed
  HeaderList headers;  // Host, User-Agent and Content-Length are set by the transport
  std::string body;
  bool keep_alive = true;  // false: "Connection: close", never pooled
};

struct IncomingResponse {
  int status = 0;
  HeaderList headers;  // as received, in order
  std::string body;
  std::optional<std::chrono::seconds> retry_after;
  bool reused_connection = false;
};

struct TransportStats {
  uint64_t connections_opened = 0;
  uint64_t requests = 0;
  int open_connections = 0;
  int idle_connections = 0;
};


class HttpsTransport {
 public:
  // Validates the options (https base URL, positive limits) and loads the CA file.
  // InvalidArgument naming the bad field otherwise.
  static absl::StatusOr<std::unique_ptr<HttpsTransport>> Create(boost::asio::any_io_executor ex,
                                                                 HttpsTransportOptions options);
  ~HttpsTransport();
  HttpsTransport(const HttpsTransport&) = delete;
  HttpsTransport& operator=(const HttpsTransport&) = delete;

  // One request and its reply, on a pooled connection or a new one. `deadline` bounds all of it.
  boost::asio::awaitable<absl::StatusOr<IncomingResponse>> Send(OutgoingRequest request,
                                                                MonoTime deadline);

  // "https://host[:port]" of the base URL, as the server's own absolute links spell it (the
  // port only when it is not 443), and the base URL's path prefix ("" or "/prefix").
  const std::string& origin() const;
  const std::string& path_prefix() const;
  // "host:port", for messages.
  const std::string& display() const;

  TransportStats Stats() const;

 private:
  struct Impl;
  explicit HttpsTransport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace connectbroker::mollie
