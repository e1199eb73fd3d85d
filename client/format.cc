// Pure formatting of API messages for the admin CLI: tables, key/value lines, JSON, durations.
#include <google/protobuf/timestamp.pb.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "connectbroker/client.h"

namespace connectbroker::client {
namespace {

using google::protobuf::Timestamp;

bool IsSet(const Timestamp& t) { return t.seconds() != 0 || t.nanos() != 0; }

TimePoint ToTimePoint(const Timestamp& t) {
  return TimePoint(std::chrono::seconds(t.seconds())) +
         std::chrono::duration_cast<TimePoint::duration>(std::chrono::nanoseconds(t.nanos()));
}

// Text for a terminal: "-" when empty; control characters (a merchant chooses its own
// organization name) shown as \xNN so they cannot move the cursor or forge output.
std::string OrDash(const std::string& s) {
  if (s.empty()) {
    return "-";
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) {
    return "{}";  // only for messages with invalid timestamps; never expected from the daemon
  }
  return out;
}

std::string Relative(const Timestamp& t, TimePoint now) {
  if (!IsSet(t)) {
    return "-";
  }
  auto d = std::chrono::duration_cast<std::chrono::seconds>(ToTimePoint(t) - now);
  std::string when = d.count() >= 0 ? "in " + FormatDuration(d) : FormatDuration(-d) + " ago";
  return FormatTimestamp(t) + " (" + when + ")";
}

std::string LastRefresh(const v1::Merchant& m) {
  std::string out = OrDash(m.last_refresh_outcome());
  if (m.consecutive_failures() > 0) {
    out += " (" + std::to_string(m.consecutive_failures()) + " consecutive failures)";
  }
  return out;
}

}  // namespace

std::string FormatDuration(std::chrono::seconds duration) {
  long long s = duration.count();
  std::string sign = s < 0 ? "-" : "";
  unsigned long long a = s < 0 ? 0ULL - static_cast<unsigned long long>(s) : s;
  if (a < 60) {
    return sign + std::to_string(a) + "s";
  }
  if (a < 3600) {
    return sign + std::to_string(a / 60) + "m";
  }
  if (a < 86400) {
    return sign + std::to_string(a / 3600) + "h";
  }
  return sign + std::to_string(a / 86400) + "d";
}

std::string GrantStatusName(v1::GrantStatus status) {
  switch (status) {
    case v1::GRANT_STATUS_ACTIVE:
      return "active";
    case v1::GRANT_STATUS_REFRESH_FAILING:
      return "refresh-failing";
    case v1::GRANT_STATUS_NEEDS_REAUTHORIZATION:
      return "needs-reauthorization";
    case v1::GRANT_STATUS_REVOKED:
      return "revoked";
    default:
      return "unspecified";
  }
}

std::optional<v1::GrantStatus> ParseGrantStatus(std::string_view name) {
  for (v1::GrantStatus s : {v1::GRANT_STATUS_ACTIVE, v1::GRANT_STATUS_REFRESH_FAILING,
                            v1::GRANT_STATUS_NEEDS_REAUTHORIZATION, v1::GRANT_STATUS_REVOKED}) {
    if (GrantStatusName(s) == name) {
      return s;
    }
  }
  return std::nullopt;
}

std::string FormatTimestamp(const Timestamp& timestamp) {
  if (!IsSet(timestamp)) {
    return "-";
  }
  return google::protobuf::util::TimeUtil::ToString(timestamp);
}

std::string FormatExpiresIn(const Timestamp& timestamp, TimePoint now) {
  if (!IsSet(timestamp)) {
    return "-";
  }
  return FormatDuration(
      std::chrono::duration_cast<std::chrono::seconds>(ToTimePoint(timestamp) - now));
}

std::string FormatMerchantTable(const std::vector<v1::Merchant>& merchants, TimePoint now) {
  constexpr size_t kColumns = 7;
  using Row = std::array<std::string, kColumns>;
  std::vector<Row> rows;
  rows.push_back(
      {"ORGANIZATION", "NAME", "ACCOUNT_REF", "STATUS", "EXPIRES_IN", "REFRESHES", "LAST_REFRESH"});
  for (const v1::Merchant& m : merchants) {
    rows.push_back({OrDash(m.organization_id()), OrDash(m.organization_name()),
                    OrDash(m.account_ref()), GrantStatusName(m.status()),
                    FormatExpiresIn(m.access_token_expires_at(), now),
                    std::to_string(m.refresh_count()), LastRefresh(m)});
  }
  std::array<size_t, kColumns> width{};
  for (const Row& row : rows) {
    for (size_t i = 0; i < kColumns; ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  }
  std::string out;
  for (const Row& row : rows) {
    std::string line;
    for (size_t i = 0; i < kColumns; ++i) {
      line += row[i];
      if (i + 1 < kColumns) {
        line += std::string(width[i] - row[i].size() + 2, ' ');
      }
    }
    out += line + "\n";
  }
  return out;
}

std::string FormatMerchantDetails(const v1::Merchant& m, TimePoint now) {
  std::string scopes;
  for (const std::string& s : m.scopes()) {
    scopes += (scopes.empty() ? "" : " ") + s;
  }
  const std::vector<std::pair<std::string, std::string>> fields = {
      {"organization_id", OrDash(m.organization_id())},
      {"organization_name", OrDash(m.organization_name())},
      {"account_ref", OrDash(m.account_ref())},
      {"status", GrantStatusName(m.status())},
      {"scopes", OrDash(scopes)},
      {"access_token_expires_at", Relative(m.access_token_expires_at(), now)},
      {"last_refresh_at", Relative(m.last_refresh_at(), now)},
      {"last_refresh_outcome", OrDash(m.last_refresh_outcome())},
      {"consecutive_failures", std::to_string(m.consecutive_failures())},
      {"next_refresh_at", Relative(m.next_refresh_at(), now)},
      {"refresh_count", std::to_string(m.refresh_count())},
      {"generation", std::to_string(m.generation())},
      {"created_at", FormatTimestamp(m.created_at())},
      {"updated_at", FormatTimestamp(m.updated_at())},
  };
  std::string out;
  for (const auto& [key, value] : fields) {
    out += key + ":" + std::string(25 - key.size(), ' ') + value + "\n";
  }
  return out;
}

std::string FormatMerchantLine(const v1::Merchant& m, TimePoint now) {
  std::string out = m.organization_id();
  if (!m.organization_name().empty()) {
    out += " (" + OrDash(m.organization_name()) + ")";
  }
  out += " " + GrantStatusName(m.status());
  if (IsSet(m.access_token_expires_at())) {
    auto d = std::chrono::duration_cast<std::chrono::seconds>(
        ToTimePoint(m.access_token_expires_at()) - now);
    out += d.count() >= 0 ? ", token expires in " + FormatDuration(d)
                          : ", token expired " + FormatDuration(-d) + " ago";
  }
  out += ", " + std::to_string(m.refresh_count()) + " refreshes, last refresh: " + LastRefresh(m);
  return out;
}

std::string EventTypeName(v1::EventType type) {
  switch (type) {
    case v1::EVENT_TYPE_ONBOARDED:
      return "onboarded";
    case v1::EVENT_TYPE_REFRESHED:
      return "refreshed";
    case v1::EVENT_TYPE_REFRESH_FAILED:
      return "refresh-failed";
    case v1::EVENT_TYPE_NEEDS_REAUTHORIZATION:
      return "needs-reauthorization";
    case v1::EVENT_TYPE_REVOKED:
      return "revoked";
    case v1::EVENT_TYPE_DELETED:
      return "deleted";
    case v1::EVENT_TYPE_APP_CREDENTIALS_REJECTED:
      return "app-credentials-rejected";
    case v1::EVENT_TYPE_MASS_INVALID_GRANT:
      return "mass-invalid-grant";
    default:
      return "unspecified";
  }
}

std::string FormatEventLine(const v1::Event& e) {
  // App-wide events and deletions carry no grant status.
  const std::string status =
      e.status() == v1::GRANT_STATUS_UNSPECIFIED ? "-" : GrantStatusName(e.status());
  return std::to_string(e.sequence()) + " " + FormatTimestamp(e.time()) + " " +
         EventTypeName(e.type()) + " " + OrDash(e.organization_id()) + " " + status + " " +
         OrDash(e.detail());
}

std::string FormatStats(const v1::Stats& s) {
  const std::vector<std::pair<std::string, std::string>> fields = {
      {"grants", std::to_string(s.grants())},
      {"scheduled", std::to_string(s.scheduled())},
      {"refreshes_in_flight", std::to_string(s.refreshes_in_flight())},
      {"refreshes_ok", std::to_string(s.refreshes_ok())},
      {"refreshes_failed", std::to_string(s.refreshes_failed())},
      {"refresh_paused", s.refresh_paused() ? "yes" : "no"},
      {"pause_reason", OrDash(s.pause_reason())},
  };
  std::string out;
  for (const auto& [key, value] : fields) {
    out += key + ":" + std::string(21 - key.size(), ' ') + value + "\n";
  }
  return out;
}

std::string MerchantToJson(const v1::Merchant& merchant) { return ToJson(merchant); }

std::string MerchantsToJson(const std::vector<v1::Merchant>& merchants) {
  if (merchants.empty()) {
    return "[]";
  }
  std::string out = "[\n";
  for (size_t i = 0; i < merchants.size(); ++i) {
    out += "  " + ToJson(merchants[i]) + (i + 1 < merchants.size() ? ",\n" : "\n");
  }
  return out + "]";
}

std::string EventToJson(const v1::Event& event) { return ToJson(event); }

std::string StatsToJson(const v1::Stats& stats) { return ToJson(stats); }

std::string AccessTokenToJson(const v1::GetAccessTokenResponse& response) {
  std::string scopes;
  for (const std::string& s : response.scopes()) {
    scopes += (scopes.empty() ? "" : ", ") + JsonQuote(s);
  }
  return "{\"token\": " + JsonQuote(response.access_token()) + ", \"expires_at\": " +
         (IsSet(response.expires_at()) ? JsonQuote(FormatTimestamp(response.expires_at()))
                                       : "null") +
         ", \"scopes\": [" + scopes +
         "], \"organization_id\": " + JsonQuote(response.organization_id()) + "}";
}

std::string AuthorizationToJson(const v1::BeginAuthorizationResponse& response) {
  return ToJson(response);
}

std::string JsonQuote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

}  // namespace connectbroker::client
