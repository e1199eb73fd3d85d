// Router: method + exact path -> handler. No transport code here (see http_server.cc).
#include <string>
#include <utility>

#include "daemon/http/http_server.h"

namespace connectbroker::http {

void Router::Add(std::string method, std::string path, Handler handler) {
  routes_[std::move(path)][std::move(method)] = std::move(handler);
}

void Router::Dispatch(const Request& request, Responder respond) const {
  auto by_path = routes_.find(request.path);
  if (by_path == routes_.end()) {
    respond(Response{.status = 404, .body = "not found\n"});
    return;
  }
  auto by_method = by_path->second.find(request.method);
  if (by_method == by_path->second.end()) {
    std::string allow;
    for (const auto& [method, unused] : by_path->second) {
      allow += allow.empty() ? method : ", " + method;
    }
    Response response{.status = 405, .body = "method not allowed\n"};
    response.headers.emplace_back("Allow", std::move(allow));
    respond(std::move(response));
    return;
  }
  by_method->second(request, std::move(respond));
}

}  // namespace connectbroker::http
