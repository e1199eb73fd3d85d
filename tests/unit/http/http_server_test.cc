// The real server on 127.0.0.1:0, driven by a plain POSIX socket client. Every wait has a deadline.
#include "daemon/http/http_server.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "tests/support/status_matchers.h"

namespace connectbroker::http {
namespace {

using ::connectbroker::testing::IsOk;
using ::testing::HasSubstr;

constexpr auto kDeadline = std::chrono::seconds(10);

struct RawResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// A blocking HTTP/1.1 client over a plain socket; all reads honour kDeadline.
class TestClient {
 public:
  TestClient() = default;
  TestClient(const TestClient&) = delete;
  TestClient& operator=(const TestClient&) = delete;
  ~TestClient() {
    if (fd_ >= 0) {
      close(fd_);
    }
  }

  bool Connect(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return fd_ >= 0 && connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }

  bool Send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) {
        return false;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // One response (Content-Length framed), or nullopt on close/timeout.
  std::optional<RawResponse> ReadResponse() {
    const auto deadline = std::chrono::steady_clock::now() + kDeadline;
    size_t header_end;
    while ((header_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!ReadMore(deadline)) {
        return std::nullopt;
      }
    }
    RawResponse response;
    std::string_view head(buffer_.data(), header_end);
    size_t line_end = head.find("\r\n");
    std::string_view status_line = head.substr(0, line_end);
    if (status_line.size() < 12 || status_line.substr(0, 5) != "HTTP/") {
      return std::nullopt;
    }
    response.status = std::stoi(std::string(status_line.substr(9, 3)));
    while (line_end != std::string_view::npos) {
      size_t start = line_end + 2;
      line_end = head.find("\r\n", start);
      std::string_view line = head.substr(
          start, line_end == std::string_view::npos ? std::string_view::npos : line_end - start);
      size_t colon = line.find(':');
      std::string name(line.substr(0, colon));
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') {
        value.remove_prefix(1);
      }
      response.headers[name] = std::string(value);
    }
    size_t length = std::stoul(response.headers["content-length"]);
    buffer_.erase(0, header_end + 4);
    while (buffer_.size() < length) {
      if (!ReadMore(deadline)) {
        return std::nullopt;
      }
    }
    response.body = buffer_.substr(0, length);
    buffer_.erase(0, length);
    return response;
  }

  // True once the server has closed the connection (EOF or reset), false at the deadline.
  bool WaitForClose() {
    const auto deadline = std::chrono::steady_clock::now() + kDeadline;
    while (ReadMore(deadline)) {
    }
    return closed_;
  }

 private:
  // Appends what arrives; false on EOF/error (closed_ = true) or at the deadline.
  bool ReadMore(std::chrono::steady_clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return false;
    }
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      return false;
    }
    char chunk[4096];
    ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
    if (n <= 0) {
      closed_ = true;
      return false;
    }
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string buffer_;
  bool closed_ = false;
};

// A handler's Responder parked for the test thread to answer.
class ParkedResponder {
 public:
  Handler MakeHandler() {
    return [this](const Request& request, Responder respond) {
      std::lock_guard lock(mu_);
      path_ = request.path;
      handler_thread_ = std::this_thread::get_id();
      respond_ = std::move(respond);
      cv_.notify_all();
    };
  }
  std::optional<Responder> Wait() {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, kDeadline, [this] { return respond_.has_value(); })) {
      return std::nullopt;
    }
    auto out = std::move(respond_);
    respond_.reset();
    return out;
  }
  std::thread::id handler_thread() {
    std::lock_guard lock(mu_);
    return handler_thread_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Responder> respond_;
  std::string path_;
  std::thread::id handler_thread_;
};

std::string Get(std::string_view target, std::string_view extra_headers = "") {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: test\r\n" + std::string(extra_headers) +
         "\r\n";
}

class HttpServerTest : public ::testing::Test {
 protected:
  HttpServerTest() {
    router_.Add("GET", "/echo", [](const Request& req, Responder respond) {
      std::string body = "path=" + req.path;
      for (const auto& [k, v] : req.query) {
        body += ";" + k + "=" + v;
      }
      body += req.duplicate_keys ? ";dup" : "";
      auto host = req.headers.find("host");
      body += ";host=" + (host == req.headers.end() ? std::string("-") : host->second);
      respond(Response{.body = body, .headers = {{"X-Test", "1"}}});
    });
    router_.Add("POST", "/echo", [](const Request& req, Responder respond) {
      respond(Response{.body = "got " + std::to_string(req.body.size())});
    });
    router_.Add("GET", "/park", parked_.MakeHandler());
    router_.Add("GET", "/drop", [](const Request&, Responder) {});
    router_.Add("GET", "/throw",
                [](const Request&, Responder) { throw std::runtime_error("handler bug"); });
  }

  void StartServer(HttpServerOptions options = {}) {
    options.listen = "127.0.0.1:0";
    server_ = std::make_unique<HttpServer>(ioc_, options, router_);
    absl::StatusOr<int> port = server_->Start();
    ASSERT_THAT(port, IsOk());
    port_ = *port;
    io_thread_ = std::thread([this] { ioc_.run(); });
  }

  void TearDown() override {
    if (server_) {
      server_->Stop();
    }
    guard_.reset();
    if (io_thread_.joinable()) {
      io_thread_.join();  // returns only once Stop() has ended every session
    }
  }

  std::unique_ptr<TestClient> Connected() {
    auto client = std::make_unique<TestClient>();
    EXPECT_TRUE(client->Connect(port_));
    return client;
  }

  boost::asio::io_context ioc_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_ =
      boost::asio::make_work_guard(ioc_);
  Router router_;
  ParkedResponder parked_;
  std::unique_ptr<HttpServer> server_;
  std::thread io_thread_;
  int port_ = 0;
};

TEST_F(HttpServerTest, GetDecodesPathAndQuery) {
  StartServer();
  auto client = Connected();
  ASSERT_TRUE(client->Send(Get("/%65cho?code=a%20b&state=x%2By+z&code=second")));
  auto response = client->ReadResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "path=/echo;code=a b;state=x+y z;dup;host=test");
  EXPECT_EQ(response->headers["cache-control"], "no-store");
  EXPECT_EQ(response->headers["x-content-type-options"], "nosniff");
  EXPECT_EQ(response->headers["content-type"], "text/plain; charset=utf-8");
  EXPECT_EQ(response->headers["x-test"], "1");
}

TEST_F(HttpServerTest, UnknownPathAndWrongMethodGoThroughRouter) {
  StartServer();
  auto client = Connected();
  ASSERT_TRUE(client->Send(Get("/nope")));
  auto response = client->ReadResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 404);
  EXPECT_EQ(response->headers["cache-control"], "no-store");
  ASSERT_TRUE(client->Send("DELETE /echo HTTP/1.1\r\nHost: t\r\n\r\n"));
  response = client->ReadResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 405);
  EXPECT_EQ(response->headers["allow"], "GET, POST");
}

TEST_F(HttpServerTest, AsyncHandlerAnswersFromAnotherThread) {
  StartServer();
  auto client = Connected();
  ASSERT_TRUE(client->Send(Get("/park")));
  std::optional<Responder> respond = parked_.Wait();
  ASSERT_TRUE(respond.has_value());
  EXPECT_NE(parked_.handler_thread(), std::this_thread::get_id());
  std::thread answering([r = std::move(*respond)] { r(Response{.status = 202, .body = "later"}); });
  answering.join();
  auto response = client->ReadResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 202);
  EXPECT_EQ(response->body, "later");
}

TEST_F(HttpServerTest, KeepAliveServesTwoRequestsThenHonoursClose) {
  StartServer();
  auto client = Connected();
  ASSERT_TRUE(client->Send(Get("/echo?n=1")));
  auto first = client->ReadResponse();
  ASSERT_TRUE(first.has_value());
  EXPECT_THAT(first->body, HasSubstr("n=1"));
  ASSERT_TRUE(client->Send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"));
  auto second = client->ReadResponse();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->body, "got 5");
  ASSERT_TRUE(client->Send(Get("/echo?n=3", "Connection: close\r\n")));
  auto third = client->ReadResponse();
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(third->headers["connection"], "close");
  EXPECT_TRUE(client->WaitForClose());
}

TEST_F(HttpServerTest, OversizeBodyIs413) {
  StartServer(HttpServerOptions{.max_body_bytes = 1024});
  auto client = Connected();
  ASSERT_TRUE(client->Send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4096\r\n\r\n" +
                           std::string(4096, 'x')));
  auto response = client->ReadResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 413);
  EXPECT_EQ(response->headers["cache-control"], "no-store");
  EXPECT_TRUE(client->WaitForClose());
}

TEST_F(HttpServerTest, BodyAtTheLimitIsAccepted) {
  StartServer(HttpServerOptions{.max_body_bytes = 1024});
  auto client = Connected();
  ASSERT_TRUE(client->Send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n" +
                           std::string(1024, 'x')));
  auto response = client->ReadResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->body, "got 1024");
}

TEST_F(HttpServerTest, OversizeHeaderIs431) {
  StartServer(HttpServerOptions{.max_header_bytes = 1024});
  auto client = Connected();
  ASSERT_TRUE(client->Send(Get("/echo", "X-Big: " + std::string(4000, 'y') + "\r\n")));
  auto response = client->ReadResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 431);
  EXPECT_TRUE(client->WaitForClose());
}

TEST_F(HttpServerTest, MalformedRequestLineIs400) {
  StartServer();
  auto client = Connected();
  ASSERT_TRUE(client->Send("GARBAGE\r\n\r\n"));
  auto response = client->ReadResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 400);
  EXPECT_TRUE(client->WaitForClose());
}

TEST_F(HttpServerTest, BadPercentEncodingIs400) {
  StartServer();
  for (const char* target : {"/echo?code=%zz", "/echo?code=%4", "/%G1cho", "/echo?x=%00"}) {
    auto client = Connected();
    ASSERT_TRUE(client->Send(Get(target)));
    auto response = client->ReadResponse();
    ASSERT_TRUE(response.has_value()) << target;
    EXPECT_EQ(response->status, 400) << target;
    EXPECT_TRUE(client->WaitForClose()) << target;
  }
}

TEST_F(HttpServerTest, AbsoluteFormTargetIs400) {
  StartServer();
  auto client = Connected();
  ASSERT_TRUE(client->Send(Get("http://evil.example/echo")));
  auto response = client->ReadResponse();
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 400);
}

TEST_F(HttpServerTest, DroppedResponderAndThrowingHandlerAnswer500) {
  StartServer();
  auto client = Connected();
  ASSERT_TRUE(client->Send(Get("/drop")));
  auto dropped = client->ReadResponse();
  ASSERT_TRUE(dropped.has_value());
  EXPECT_EQ(dropped->status, 500);
  ASSERT_TRUE(client->Send(Get("/throw")));
  auto thrown = client->ReadResponse();
  ASSERT_TRUE(thrown.has_value());
  EXPECT_EQ(thrown->status, 500);
  EXPECT_THAT(thrown->body, ::testing::Not(HasSubstr("handler bug")));
}

TEST_F(HttpServerTest, ConnectionCapAnswers503) {
  StartServer(HttpServerOptions{.max_connections = 1});
  auto first = Connected();
  ASSERT_TRUE(first->Send(Get("/echo")));  // answered => registered
  ASSERT_TRUE(first->ReadResponse().has_value());
  auto second = Connected();
  auto rejected = second->ReadResponse();
  ASSERT_TRUE(rejected.has_value());
  EXPECT_EQ(rejected->status, 503);
  EXPECT_TRUE(second->WaitForClose());
  ASSERT_TRUE(first->Send(Get("/echo")));
  auto still = first->ReadResponse();
  ASSERT_TRUE(still.has_value());
  EXPECT_EQ(still->status, 200);
}

TEST_F(HttpServerTest, ReadTimeoutClosesIdleConnection) {
  StartServer(HttpServerOptions{.read_timeout = std::chrono::seconds(1)});
  auto client = Connected();
  ASSERT_TRUE(client->Send("GET /echo HTTP/1.1\r\n"));  // never finished
  EXPECT_TRUE(client->WaitForClose());
}

TEST_F(HttpServerTest, StopClosesOpenConnections) {
  StartServer();
  auto idle = Connected();
  ASSERT_TRUE(idle->Send(Get("/echo")));
  ASSERT_TRUE(idle->ReadResponse().has_value());
  auto waiting = Connected();
  ASSERT_TRUE(waiting->Send(Get("/park")));
  std::optional<Responder> respond = parked_.Wait();
  ASSERT_TRUE(respond.has_value());

  server_->Stop();
  EXPECT_TRUE(idle->WaitForClose());
  EXPECT_TRUE(waiting->WaitForClose());
  (*respond)(Response{.body = "too late"});  // harmless after Stop
  server_->Stop();                           // idempotent
}

TEST_F(HttpServerTest, StartTwiceFails) {
  StartServer();
  EXPECT_FALSE(server_->Start().ok());
}

TEST(HttpServerStartTest, BadListenAddressFailsAndNamesIt) {
  boost::asio::io_context ioc;
  Router router;
  HttpServer server(ioc, HttpServerOptions{.listen = "127.0.0.1:99999"}, router);
  EXPECT_THAT(server.Start(), ::connectbroker::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                                                 HasSubstr("127.0.0.1:99999")));
}

TEST(HttpServerStartTest, PortInUseFails) {
  boost::asio::io_context ioc;
  Router router;
  HttpServer first(ioc, HttpServerOptions{.listen = "127.0.0.1:0"}, router);
  absl::StatusOr<int> port = first.Start();
  ASSERT_THAT(port, IsOk());
  std::string address = "127.0.0.1:" + std::to_string(*port);
  HttpServer second(ioc, HttpServerOptions{.listen = address}, router);
  EXPECT_THAT(second.Start(), ::connectbroker::testing::StatusIs(absl::StatusCode::kUnavailable,
                                                                 HasSubstr(address)));
}

}  // namespace
}  // namespace connectbroker::http
