#include "daemon/common/log.h"

#include <unistd.h>

#include <atomic>
#include <string>

namespace connectbroker {
namespace {
std::atomic<int> g_min_level{static_cast<int>(LogLevel::kInfo)};
}  // namespace

void SetMinLogLevel(LogLevel level) { g_min_level.store(static_cast<int>(level)); }

LogLevel MinLogLevel() { return static_cast<LogLevel>(g_min_level.load()); }

void WriteLogLine(LogLevel level, std::string_view line) {
  std::string out;
  out.reserve(line.size() + 5);
  out += '<';
  out += static_cast<char>('0' + static_cast<int>(level));
  out += '>';
  out += line;
  out += '\n';
  // One write so concurrent lines do not interleave; a short write to stderr is not retried.
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, out.data(), out.size());
}

}  // namespace connectbroker
