// Reading a refresh token for `import` from a file or stdin (never argv: it would show in ps and
// the shell history). Messages never quote what was read.
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>

#include "cli.h"

namespace connectbroker::cli {
namespace {

// Mollie's refresh tokens are ~40 characters; anything near this is not a token.
constexpr size_t kMaxTokenSize = 4096;

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// Reads at most `limit` + 1 bytes, so that oversized input is detected without reading it all.
std::string ReadBounded(std::istream& in, size_t limit) {
  std::string out(limit + 1, '\0');
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

// One line from a terminal with echo off, so that the token is not shown on screen.
std::string ReadFromTerminal() {
  std::cerr << "refresh token (not echoed): " << std::flush;
  termios saved{};
  const bool can_hide = tcgetattr(STDIN_FILENO, &saved) == 0;
  if (can_hide) {
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  std::string line;
  std::getline(std::cin, line);
  if (can_hide) {
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
  }
  std::cerr << "\n";
  return line;
}

}  // namespace

absl::StatusOr<std::string> ParseRefreshToken(std::string_view contents) {
  if (contents.size() > kMaxTokenSize) {
    return absl::InvalidArgumentError("the refresh token input is too large to be a token");
  }
  size_t begin = 0;
  size_t end = contents.size();
  while (begin < end && IsSpace(contents[begin])) {
    ++begin;
  }
  while (end > begin && IsSpace(contents[end - 1])) {
    --end;
  }
  if (begin == end) {
    return absl::InvalidArgumentError("the refresh token input is empty");
  }
  const std::string_view token = contents.substr(begin, end - begin);
  for (char c : token) {
    const auto u = static_cast<unsigned char>(c);
    if (IsSpace(c) || u < 0x20 || u == 0x7f) {
      return absl::InvalidArgumentError(
          "the refresh token input must hold exactly one token (one word on one line)");
    }
  }
  return std::string(token);
}

namespace {

// The path as it may be shown: a "path" that looks like a token (pasted instead of a file name)
// is masked, since only `token` may ever print one.
std::string ShownPath(const std::string& path) {
  for (const char* prefix : {"refresh_", "access_", "auth_", "live_", "test_"}) {
    if (path.rfind(prefix, 0) == 0 && path.find('/') == std::string::npos) {
      return std::string(prefix) +
             "[redacted] (that looks like a token, not a file name: put the token in a file or "
             "pass - to read it from stdin)";
    }
  }
  return path;
}

}  // namespace

absl::StatusOr<std::string> ReadRefreshToken(const std::string& path) {
  if (path == "-") {
    if (isatty(STDIN_FILENO)) {
      return ParseRefreshToken(ReadFromTerminal());
    }
    std::string contents = ReadBounded(std::cin, kMaxTokenSize);
    if (std::cin.bad()) {
      return absl::InvalidArgumentError("cannot read the refresh token from stdin");
    }
    return ParseRefreshToken(contents);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError("cannot read " + ShownPath(path) + ": " +
                                      std::strerror(errno));
  }
  struct stat st {};
  if (stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) != 0) {
    std::cerr << "connect-broker: warning: " << ShownPath(path)
              << " is accessible to other users; keep refresh token files at mode 0600\n";
  }
  std::string contents = ReadBounded(in, kMaxTokenSize);
  if (in.bad()) {
    return absl::InvalidArgumentError("cannot read " + ShownPath(path));
  }
  return ParseRefreshToken(contents);
}

}  // namespace connectbroker::cli
