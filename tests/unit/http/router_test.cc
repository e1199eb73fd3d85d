#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "daemon/http/http_server.h"

namespace connectbroker::http {
namespace {

using ::testing::Contains;
using ::testing::Pair;

Request MakeRequest(std::string method, std::string path) {
  Request r;
  r.method = std::move(method);
  r.path = std::move(path);
  r.target = r.path;
  return r;
}

std::optional<Response> DispatchSync(const Router& router, const Request& request) {
  std::optional<Response> out;
  router.Dispatch(request, [&out](Response r) { out = std::move(r); });
  return out;
}

TEST(RouterTest, UnknownPathIs404) {
  Router router;
  router.Add("GET", "/healthz", [](const Request&, Responder r) { r(Response{.body = "ok"}); });
  auto response = DispatchSync(router, MakeRequest("GET", "/nope"));
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 404);
}

TEST(RouterTest, KnownPathOtherMethodIs405WithAllow) {
  Router router;
  router.Add("GET", "/oauth/callback", [](const Request&, Responder r) { r(Response{}); });
  router.Add("POST", "/oauth/callback", [](const Request&, Responder r) { r(Response{}); });
  auto response = DispatchSync(router, MakeRequest("DELETE", "/oauth/callback"));
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->status, 405);
  EXPECT_THAT(response->headers, Contains(Pair("Allow", "GET, POST")));
}

TEST(RouterTest, DispatchesByMethodAndPath) {
  Router router;
  router.Add("GET", "/a", [](const Request&, Responder r) { r(Response{.body = "get a"}); });
  router.Add("POST", "/a", [](const Request&, Responder r) { r(Response{.body = "post a"}); });
  router.Add("GET", "/b", [](const Request& req, Responder r) {
    r(Response{.status = 201, .body = "b " + req.query.at("x")});
  });
  EXPECT_EQ(DispatchSync(router, MakeRequest("GET", "/a"))->body, "get a");
  EXPECT_EQ(DispatchSync(router, MakeRequest("POST", "/a"))->body, "post a");
  Request b = MakeRequest("GET", "/b");
  b.query["x"] = "1";
  auto response = DispatchSync(router, b);
  EXPECT_EQ(response->status, 201);
  EXPECT_EQ(response->body, "b 1");
}

TEST(RouterTest, PathMatchIsExact) {
  Router router;
  router.Add("GET", "/a", [](const Request&, Responder r) { r(Response{}); });
  EXPECT_EQ(DispatchSync(router, MakeRequest("GET", "/a/"))->status, 404);
  EXPECT_EQ(DispatchSync(router, MakeRequest("GET", "/A"))->status, 404);
}

}  // namespace
}  // namespace connectbroker::http
