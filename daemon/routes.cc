#include "daemon/routes.h"

#include "daemon/common/strings.h"
#include "daemon/common/log.h"

namespace connectbroker {
namespace {

http::Response Page(int status, std::string_view title, std::string_view message) {
  http::Response r;
  r.status = status;
  r.content_type = "text/html; charset=utf-8";
  r.body = StrCat(
      "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>", HtmlEscape(title),
      "</title></head>\n<body><h1>", HtmlEscape(title), "</h1>\n<p>", HtmlEscape(message),
      "</p></body></html>\n");
  r.headers.emplace_back("Content-Security-Policy", "default-src 'none'");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
  return r;
}

std::string Param(const http::Request& req, const std::string& key) {
  auto it = req.query.find(key);
  return it == req.query.end() ? std::string() : it->second;
}

int HttpStatusFor(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
      return 400;
    case absl::StatusCode::kAlreadyExists:
      return 409;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return 502;
    default:
      return 500;
  }
}

void HandleCallback(broker::GrantManager& manager, const http::Request& req,
                    http::Responder respond) {
  if (req.duplicate_keys) {
    respond(Page(400, "Connection failed", "The request repeats a parameter."));
    return;
  }
  const std::string state = Param(req, "state");
  const std::string error = Param(req, "error");
  if (!error.empty()) {
    // Mollie reports a refusal or a problem; the state is consumed so it cannot be replayed.
    std::string description = Param(req, "error_description");
    if (description.size() > 300) {
      description.resize(300);
    }
    if (!state.empty()) {
      (void)manager.AbandonAuthorization(state);
    }
    CB_LOG(NOTICE) << "onboarding callback reported error=" << error.substr(0, 64);
    if (error == "access_denied") {
      respond(Page(400, "Connection declined",
                   "The Mollie account was not connected: the authorization was declined. " +
                       description));
    } else {
      respond(Page(400, "Connection failed",
                   StrCat("Mollie reported an error (", error, "). ", description)));
    }
    return;
  }
  if (state.empty()) {
    respond(Page(400, "Connection failed", "The request has no state parameter."));
    return;
  }
  const std::string code = Param(req, "code");
  if (code.empty()) {
    (void)manager.AbandonAuthorization(state);
    respond(Page(400, "Connection failed", "The request has no code parameter."));
    return;
  }
  manager.CompleteAuthorization(
      code, state, [respond = std::move(respond)](absl::StatusOr<storage::GrantRecord> result) {
        if (!result.ok()) {
          respond(Page(HttpStatusFor(result.status()), "Connection failed",
                       std::string(result.status().message())));
          return;
        }
        respond(Page(200, "Mollie account connected",
                     StrCat("Connected ", result->organization_name(), " (",
                                  result->organization_id(), "). You can close this window.")));
      });
}

}  // namespace

std::string HtmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

void AddBrokerRoutes(http::Router& router, broker::GrantManager& manager,
                     const std::atomic<bool>& ready) {
  router.Add("GET", "/oauth/callback",
             [&manager](const http::Request& req, http::Responder respond) {
               HandleCallback(manager, req, std::move(respond));
             });
  router.Add("GET", "/healthz", [](const http::Request&, http::Responder respond) {
    http::Response r;
    r.body = "ok\n";
    respond(std::move(r));
  });
  router.Add("GET", "/readyz", [&ready, &manager](const http::Request&, http::Responder respond) {
    http::Response r;
    if (ready.load()) {
      auto stats = manager.Stats();
      r.body = StrCat("ready: ", stats.grants, " grant(s)\n");
    } else {
      r.status = 503;
      r.body = "starting\n";
    }
    respond(std::move(r));
  });
}

}  // namespace connectbroker
