// Small JSON helpers of the /_sim/ control API (control_api.cc, control_payments.cc, faults.cc):
// error answers and optional typed members of a request body. Pure, thread-safe.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tests/mollie_sim/simulator.h"

namespace connectbroker::mollie_sim {

inline SimResponse ControlError(int status, std::string_view message) {
  return JsonResponse(status, boost::json::object{{"error", message}});
}

// Reads an optional integer member. False when present but not an integer >= `min`.
inline bool ReadInt(const boost::json::object& body, std::string_view key, int64_t min,
                    std::optional<int64_t>& out) {
  const boost::json::value* value = body.if_contains(key);
  if (value == nullptr) {
    return true;
  }
  if (value->is_int64() && value->as_int64() >= min) {
    out = value->as_int64();
    return true;
  }
  if (value->is_uint64() && value->as_uint64() < (uint64_t{1} << 62)) {
    out = static_cast<int64_t>(value->as_uint64());
    return true;
  }
  return false;
}

// Reads an optional string member. False when present but not a string.
inline bool ReadString(const boost::json::object& body, std::string_view key,
                       std::optional<std::string>& out) {
  const boost::json::value* value = body.if_contains(key);
  if (value == nullptr) {
    return true;
  }
  if (!value->is_string()) {
    return false;
  }
  out = std::string(value->as_string());
  return true;
}

}  // namespace connectbroker::mollie_sim
