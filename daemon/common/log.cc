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
  // One record per line: control characters from outside (a merchant's organization name, an
  // upstream error text) are escaped, so nobody can forge a log line, its priority, or a
  // terminal escape sequence.
  static constexpr char kHex[] = "0123456789abcdef";
  for (char c : line) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += c;
    }
  }
  out += '\n';
  // One write so concurrent lines do not interleave; a short write to stderr is not retried.
  [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, out.data(), out.size());
}

}  // namespace connectbroker
