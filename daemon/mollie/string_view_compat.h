// Debian's abseil (20220623) is built with its own absl::string_view and absl::optional, not the
// std ones, so std::string_view does not convert to what absl::StrCat, absl::Status and friends
// take. These two converters bridge the gap inside this module (no copies).
#pragma once

#include <string_view>

#include "absl/strings/string_view.h"

namespace connectbroker::mollie {

inline absl::string_view ToAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}
inline std::string_view ToStd(absl::string_view s) { return std::string_view(s.data(), s.size()); }

}  // namespace connectbroker::mollie
