#include "daemon/mollie/https_mollie_oauth_api.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>
#include <filesystem>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "daemon/common/clock.h"
#include "daemon/common/log.h"
#include "daemon/common/status_macros.h"
#include "daemon/common/strings.h"
#include "daemon/mollie/form_encoding.h"
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

// Every I/O step reports its error_code instead of throwing.
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

// Mollie's replies are small JSON documents; anything bigger is not a reply we want to parse.
constexpr uint64_t kMaxBodyBytes = 1024 * 1024;
constexpr uint32_t kMaxHeaderBytes = 16 * 1024;
// The reply is already in hand when we shut TLS down: do not let a slow peer hold the call.
constexpr std::chrono::milliseconds kShutdownTimeout{1000};

constexpr std::string_view kTokensPath = "/oauth2/tokens";
constexpr std::string_view kOrganizationPath = "/v2/organizations/me";

MonoTime Now() { return SystemClock().MonotonicNow(); }

// Where the API lives, taken apart once from Options::api_base_url.
struct Endpoint {
  std::string host;         // for resolving, SNI and certificate checks (no IPv6 brackets)
  std::string port;         // "443" unless given
  std::string host_header;  // Host header value: host, bracketed for IPv6, ":port" if not 443
  std::string path_prefix;  // "" or "/prefix" (no trailing slash)
  bool host_is_ip = false;  // no SNI for IP literals (RFC 6066)
  std::string display;      // "host:port" for messages
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
  ep.host_is_ip = type == urls::host_type::ipv4 || type == urls::host_type::ipv6;
  if (type == urls::host_type::ipvfuture) {
    return invalid("unsupported host");
  }
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
  ep.path_prefix = url->encoded_path();
  while (!ep.path_prefix.empty() && ep.path_prefix.back() == '/') {
    ep.path_prefix.pop_back();
  }
  return ep;
}

std::string Base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

// Turns the error of one I/O step into a status. A timeout is DeadlineExceeded when the whole
// call's deadline has passed, Unavailable when only a step's own bound (connect_timeout) did.
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

// Maps an exception that reached one of our coroutines. Call only inside a catch block.
absl::Status StatusFromCurrentException(std::string_view what) {
  try {
    throw;
  } catch (const boost::system::system_error& e) {
    // Asio throws this when a cancelled coroutine awaits again (throw_if_cancelled).
    if (e.code() == asio::error::operation_aborted) {
      return absl::CancelledError(StrCat("Mollie ", what, " cancelled"));
    }
    CB_LOG(ERROR) << "Mollie " << what << ": unexpected system_error: " << e.code().message();
  } catch (const std::exception& e) {
    CB_LOG(ERROR) << "Mollie " << what << ": unexpected exception: " << e.what();
  } catch (...) {
    CB_LOG(ERROR) << "Mollie " << what << ": unexpected non-standard exception";
  }
  return absl::InternalError(StrCat("internal error in the Mollie client during ", what));
}

struct HttpReply {
  int status = 0;
  std::string body;
  std::optional<std::chrono::seconds> retry_after;
};

// One TLS connection. Connect, then Exchange (one request; a keep-alive pool may call it again
// while the peer keeps the connection open), then Shutdown. Not thread-safe; one coroutine at a
// time.
class Connection {
 public:
  Connection(asio::any_io_executor ex, ssl::context& ctx, const Endpoint& endpoint)
      : ex_(std::move(ex)), endpoint_(endpoint), stream_(ex_, ctx) {}

  asio::awaitable<absl::Status> Connect(MonoTime connect_deadline, MonoTime deadline) {
    // Look up the domain name. The resolver has no timeout of its own: a timer cancels it. The
    // timer's handler owns what it touches, so it is safe even if it runs after we return.
    auto resolver = std::make_shared<tcp::resolver>(ex_);
    auto timed_out = std::make_shared<bool>(false);
    auto on_timer = [resolver, timed_out](const beast::error_code& ec) {
      if (!ec) {
        *timed_out = true;
        resolver->cancel();
      }
    };
    // Kept out of any expression that contains co_await: GCC 12 destroys temporaries of such
    // expressions twice (seen here as a double release of the lambda's shared_ptrs).
    asio::any_io_executor coro_ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex_, connect_deadline);
    timer.async_wait(asio::bind_executor(coro_ex, std::move(on_timer)));
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

    // Make the connection on the IP address we get from a lookup.
    beast::get_lowest_layer(stream_).expires_at(connect_deadline);
    auto [connect_ec, unused_endpoint] =
        co_await beast::get_lowest_layer(stream_).async_connect(results, kNoThrow);
    if (connect_ec) {
      co_return StepError(StrCat("connect to ", endpoint_.display), connect_ec, deadline);
    }

    // Verify the peer's certificate chain and that it names the host we asked for. SNI is only
    // for host names, never for IP literals.
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

  asio::awaitable<absl::StatusOr<HttpReply>> Exchange(http::request<http::string_body>& req,
                                                      MonoTime deadline) {
    beast::get_lowest_layer(stream_).expires_at(deadline);
    auto [write_ec, written] = co_await http::async_write(stream_, req, kNoThrow);
    if (write_ec) {
      connected_ = false;
      co_return StepError(StrCat("send request to ", endpoint_.display), write_ec, deadline);
    }

    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxBodyBytes);
    parser.header_limit(kMaxHeaderBytes);
    beast::get_lowest_layer(stream_).expires_at(deadline);
    auto [read_ec, read] = co_await http::async_read(stream_, buffer_, parser, kNoThrow);
    if (read_ec) {
      connected_ = false;
      if (read_ec == http::error::body_limit) {
        co_return absl::InternalError(
            StrCat("reply from ", endpoint_.display, " is larger than ", kMaxBodyBytes, " bytes"));
      }
      co_return StepError(StrCat("read reply from ", endpoint_.display), read_ec, deadline);
    }
    http::response<http::string_body> res = parser.release();
    HttpReply reply;
    reply.status = static_cast<int>(res.result_int());
    reply.body = std::move(res.body());
    if (auto it = res.find(http::field::retry_after); it != res.end()) {
      reply.retry_after = ParseRetryAfter(it->value());
    }
    if (!res.keep_alive()) {
      // Nothing more can go over this connection; a pool must not reuse it.
      reusable_ = false;
    }
    co_return reply;
  }

  // Graceful TLS close. Errors are ignored: the reply is already complete, and a peer that
  // closes TCP without close_notify (stream_truncated) is common and harmless for HTTP, whose
  // messages carry their own length.
  asio::awaitable<void> Shutdown(MonoTime deadline) {
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

 private:
  asio::any_io_executor ex_;
  const Endpoint& endpoint_;
  beast::ssl_stream<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;  // kept across exchanges: it may hold the start of the next reply
  bool connected_ = false;
  bool reusable_ = true;
};

}  // namespace

struct HttpsMollieOAuthApi::Impl {
  Impl(asio::any_io_executor executor, Options opts, Endpoint ep)
      : ex(std::move(executor)),
        options(std::move(opts)),
        endpoint(std::move(ep)),
        ssl_ctx(ssl::context::tls_client) {}

  // One HTTPS round trip on a fresh connection.
  asio::awaitable<absl::StatusOr<HttpReply>> Call(http::verb verb, std::string_view path,
                                                  std::string_view authorization,
                                                  std::string_view accept, std::string body) {
    const MonoTime start = Now();
    const MonoTime deadline = start + options.request_timeout;
    const MonoTime connect_deadline = std::min(deadline, start + options.connect_timeout);

    http::request<http::string_body> req{verb, StrCat(endpoint.path_prefix, path), 11};
    req.set(http::field::host, endpoint.host_header);
    req.set(http::field::user_agent, options.user_agent);
    req.set(http::field::accept, accept);
    req.set(http::field::authorization, authorization);
    if (verb != http::verb::get) {
      req.set(http::field::content_type, "application/x-www-form-urlencoded");
      req.body() = std::move(body);
    }
    // One connection per call for now. TODO(mollie): a keep-alive pool; Connection is ready
    // for it (Exchange can be repeated while reusable()).
    req.keep_alive(false);
    req.prepare_payload();

    Connection conn(ex, ssl_ctx, endpoint);
    CO_RETURN_IF_ERROR(co_await conn.Connect(connect_deadline, deadline));
    CO_ASSIGN_OR_RETURN(HttpReply reply, co_await conn.Exchange(req, deadline));
    co_await conn.Shutdown(deadline);
    co_return reply;
  }

  asio::awaitable<absl::StatusOr<TokenResponse>> TokenCall(
      std::vector<FormField> fields, std::span<const std::string_view> secrets) {
    std::string body = EncodeForm(fields);
    CO_ASSIGN_OR_RETURN(HttpReply reply,
                        co_await Call(http::verb::post, kTokensPath, basic_auth.Reveal(),
                                      "application/json", std::move(body)));
    co_return ParseTokenResponse(reply.status, reply.body, reply.retry_after, secrets);
  }

  asio::any_io_executor ex;
  Options options;
  Endpoint endpoint;
  ssl::context ssl_ctx;
  SecretString basic_auth;  // "Basic base64(client_id:client_secret)"
};

absl::StatusOr<std::unique_ptr<HttpsMollieOAuthApi>> HttpsMollieOAuthApi::Create(
    asio::any_io_executor ex, Options options) {
  absl::StatusOr<Endpoint> endpoint = ParseBaseUrl(options.api_base_url);
  if (!endpoint.ok()) {
    return endpoint.status();
  }
  if (options.client_id.empty()) {
    return absl::InvalidArgumentError("client_id is empty");
  }
  if (options.client_secret.empty()) {
    return absl::InvalidArgumentError("client_secret is empty");
  }
  if (options.connect_timeout.count() <= 0 || options.request_timeout.count() <= 0) {
    return absl::InvalidArgumentError("connect_timeout and request_timeout must be positive");
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
    // RFC 6749 2.3.1 asks for form-encoding before Base64; Mollie's ids and secrets are
    // alphanumeric with '_', which encoding leaves alone, and Mollie's own examples (curl -u)
    // do not encode. So we do not either.
    impl->basic_auth = SecretString(
        StrCat("Basic ",
               Base64(StrCat(impl->options.client_id, ":", impl->options.client_secret.Reveal()))));
    return std::unique_ptr<HttpsMollieOAuthApi>(new HttpsMollieOAuthApi(std::move(impl)));
  } catch (const std::exception& e) {
    return absl::InternalError(StrCat("cannot set up TLS: ", e.what()));
  }
}

HttpsMollieOAuthApi::HttpsMollieOAuthApi(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpsMollieOAuthApi::~HttpsMollieOAuthApi() = default;

asio::awaitable<absl::StatusOr<TokenResponse>> HttpsMollieOAuthApi::ExchangeCode(
    SecretString code, std::string redirect_uri) {
  try {
    std::vector<FormField> fields = {{"grant_type", "authorization_code"}, {"code", code.Reveal()}};
    if (!redirect_uri.empty()) {
      fields.push_back({"redirect_uri", redirect_uri});
    }
    const std::string_view secrets[] = {code.Reveal()};
    co_return co_await impl_->TokenCall(std::move(fields), secrets);
  } catch (...) {
    co_return StatusFromCurrentException("code exchange");
  }
}

asio::awaitable<absl::StatusOr<TokenResponse>> HttpsMollieOAuthApi::Refresh(
    SecretString refresh_token, std::string redirect_uri) {
  try {
    std::vector<FormField> fields = {{"grant_type", "refresh_token"},
                                     {"refresh_token", refresh_token.Reveal()}};
    if (!redirect_uri.empty()) {
      fields.push_back({"redirect_uri", redirect_uri});
    }
    const std::string_view secrets[] = {refresh_token.Reveal()};
    co_return co_await impl_->TokenCall(std::move(fields), secrets);
  } catch (...) {
    co_return StatusFromCurrentException("token refresh");
  }
}

asio::awaitable<absl::Status> HttpsMollieOAuthApi::RevokeRefreshToken(SecretString refresh_token) {
  try {
    std::string body =
        EncodeForm({{"token_type_hint", "refresh_token"}, {"token", refresh_token.Reveal()}});
    CO_ASSIGN_OR_RETURN(HttpReply reply, co_await impl_->Call(http::verb::delete_, kTokensPath,
                                                              impl_->basic_auth.Reveal(),
                                                              "application/json", std::move(body)));
    const std::string_view secrets[] = {refresh_token.Reveal()};
    co_return ParseRevokeResponse(reply.status, reply.body, reply.retry_after, secrets);
  } catch (...) {
    co_return StatusFromCurrentException("token revocation");
  }
}

asio::awaitable<absl::StatusOr<Organization>> HttpsMollieOAuthApi::GetCurrentOrganization(
    SecretString access_token) {
  try {
    std::string authorization = StrCat("Bearer ", access_token.Reveal());
    CO_ASSIGN_OR_RETURN(
        HttpReply reply,
        co_await impl_->Call(http::verb::get, kOrganizationPath, authorization,
                             "application/hal+json, application/json", std::string()));
    const std::string_view secrets[] = {access_token.Reveal()};
    co_return ParseOrganization(reply.status, reply.body, reply.retry_after, secrets);
  } catch (...) {
    co_return StatusFromCurrentException("organization lookup");
  }
}

}  // namespace connectbroker::mollie
