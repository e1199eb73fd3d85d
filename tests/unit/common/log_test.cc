#include "daemon/common/log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>

#include "daemon/common/redact.h"

namespace connectbroker {
namespace {

// Captures what WriteLogLine sends to stderr.
std::string CaptureStderr(const std::function<void()>& fn) {
  fflush(stderr);
  int saved = dup(STDERR_FILENO);
  char path[] = "/tmp/cb-log-XXXXXX";
  int fd = mkstemp(path);
  dup2(fd, STDERR_FILENO);
  fn();
  fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  std::string out;
  lseek(fd, 0, SEEK_SET);
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) {
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  unlink(path);
  return out;
}

TEST(LogTest, OneLineWithPriorityPrefix) {
  EXPECT_EQ(CaptureStderr([] { CB_LOG(WARNING) << "refresh failed " << 3; }),
            "<4>refresh failed 3\n");
}

TEST(LogTest, ControlCharactersCannotForgeLinesOrEscapes) {
  std::string evil = "Evil\n<0>FAKE emergency\x1b[31m\r";
  std::string out = CaptureStderr([&] { CB_LOG(NOTICE) << "onboarded org_1 (" << evil << ")"; });
  EXPECT_EQ(out, "<5>onboarded org_1 (Evil\\x0a<0>FAKE emergency\\x1b[31m\\x0d)\n");
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1);
}

TEST(LogTest, LevelsBelowTheMinimumAreDropped) {
  SetMinLogLevel(LogLevel::kWarning);
  std::string out = CaptureStderr([] {
    CB_LOG(INFO) << "quiet";
    CB_LOG(ERROR) << "loud";
  });
  SetMinLogLevel(LogLevel::kInfo);
  EXPECT_EQ(out, "<3>loud\n");
}

TEST(LogTest, SecretStringsPrintMasked) {
  SecretString token("access_46EUJ6x8jFJZZeAvhNH4JVey6qVpqR");
  std::string out = CaptureStderr([&] { CB_LOG(INFO) << "token " << token; });
  EXPECT_EQ(out, "<6>token access_[redacted]\n");
  EXPECT_EQ(RedactSecrets("a access_46EUJ6x8jFJZZeAvhNH4JVey6qVpqR b", {token.Reveal()}),
            "a [redacted] b");
}

}  // namespace
}  // namespace connectbroker
