#include "daemon/mollie/mollie_oauth_api.h"

#include <charconv>
#include <cstdint>
#include <string>

#include "absl/strings/cord.h"
#include "absl/types/optional.h"

namespace connectbroker::mollie {
namespace {

// Payload key for the Retry-After value; the payload is the decimal number of seconds.
constexpr char kRetryAfterPayload[] = "type.connectbroker/mollie.RetryAfter";
constexpr char kSentPayload[] = "type.connectbroker/mollie.RequestSent";
constexpr char kNotSentPayload[] = "type.connectbroker/mollie.RequestNotSent";

}  // namespace

std::optional<std::chrono::seconds> RetryAfter(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kRetryAfterPayload);
  if (!payload.has_value()) {
    return std::nullopt;
  }
  std::string text(*payload);
  int64_t seconds = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (ec != std::errc() || end != text.data() + text.size() || seconds < 0) {
    return std::nullopt;
  }
  return std::chrono::seconds(seconds);
}

void SetRetryAfter(absl::Status& status, std::chrono::seconds retry_after) {
  if (status.ok() || retry_after.count() < 0) {
    return;  // an OK status cannot carry payloads
  }
  status.SetPayload(kRetryAfterPayload, absl::Cord(std::to_string(retry_after.count())));
}

bool RequestMayHaveBeenSent(const absl::Status& status) {
  return status.GetPayload(kSentPayload).has_value();
}

bool RequestCertainlyNotSent(const absl::Status& status) {
  return status.GetPayload(kNotSentPayload).has_value();
}

absl::Status MarkRequestSent(absl::Status status) {
  if (!status.ok()) {
    status.SetPayload(kSentPayload, absl::Cord("1"));
  }
  return status;
}

absl::Status MarkRequestNotSent(absl::Status status) {
  if (!status.ok()) {
    status.SetPayload(kNotSentPayload, absl::Cord("1"));
  }
  return status;
}

}  // namespace connectbroker::mollie
