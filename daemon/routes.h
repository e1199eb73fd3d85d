// The broker's HTTP routes: GET /oauth/callback (Mollie's redirect after the consent screen),
// GET /healthz (the process is up), GET /readyz (grants loaded, serving). Pages are small HTML
// documents; every value echoed into them is HTML-escaped.
#pragma once

#include <atomic>

#include "daemon/broker/grant_manager.h"
#include "daemon/http/http_server.h"

namespace connectbroker {

void AddBrokerRoutes(http::Router& router, broker::GrantManager& manager,
                     const std::atomic<bool>& ready);

// Escapes & < > " ' for HTML text and attribute values.
std::string HtmlEscape(std::string_view text);

}  // namespace connectbroker
