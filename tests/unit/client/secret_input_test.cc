// The CLI's refresh token input (import): parsing, and reading from a file.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "cli.h"

namespace connectbroker::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "refresh_Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56";

TEST(ParseRefreshTokenTest, TrimsSurroundingWhitespace) {
  EXPECT_EQ(ParseRefreshToken(kToken).value(), kToken);
  EXPECT_EQ(ParseRefreshToken(std::string(kToken) + "\n").value(), kToken);
  EXPECT_EQ(ParseRefreshToken(std::string("  \t") + kToken + "\r\n\n").value(), kToken);
}

TEST(ParseRefreshTokenTest, RejectsEmptyAndSeveralWordsWithoutQuotingThem) {
  for (const std::string bad : {"", "\n", "   \t\n"}) {
    auto parsed = ParseRefreshToken(bad);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr("empty"));
  }
  for (const std::string& bad : {std::string(kToken) + "\n" + kToken, std::string(kToken) + " x",
                                 std::string(kToken) + "\x1b" + "x"}) {
    auto parsed = ParseRefreshToken(bad);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(parsed.status().message()), Not(HasSubstr("refresh_Ab12")));
  }
  auto huge = ParseRefreshToken(std::string(5000, 'a'));
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(huge.status().message()), HasSubstr("too large"));
}

class ReadRefreshTokenTest : public ::testing::Test {
 protected:
  ReadRefreshTokenTest() {
    char dir[] = "/tmp/cb-secret-input-XXXXXX";
    dir_ = mkdtemp(dir);
    path_ = dir_ + "/token";
  }
  ~ReadRefreshTokenTest() override {
    std::remove(path_.c_str());
    rmdir(dir_.c_str());
  }
  void Write(const std::string& contents, mode_t mode) {
    std::ofstream(path_) << contents;
    chmod(path_.c_str(), mode);
  }

  std::string dir_;
  std::string path_;
};

TEST_F(ReadRefreshTokenTest, ReadsThePrivateFile) {
  Write(std::string(kToken) + "\n", 0600);
  testing::internal::CaptureStderr();
  auto token = ReadRefreshToken(path_);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, kToken);
}

TEST_F(ReadRefreshTokenTest, WarnsAboutAFileOthersCanRead) {
  Write(kToken, 0644);
  testing::internal::CaptureStderr();
  auto token = ReadRefreshToken(path_);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(token.value(), kToken);
  EXPECT_THAT(err, HasSubstr("accessible to other users"));
  EXPECT_THAT(err, Not(HasSubstr(kToken)));
}

TEST_F(ReadRefreshTokenTest, MissingFileAndEmptyFile) {
  auto missing = ReadRefreshToken(path_ + ".absent");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("cannot read"));
  Write("", 0600);
  EXPECT_THAT(std::string(ReadRefreshToken(path_).status().message()), HasSubstr("empty"));
}

TEST_F(ReadRefreshTokenTest, ATokenPastedAsTheFileNameIsNotEchoed) {
  const std::string token = "refresh_FS4xc3Mgci2xQ5s5DzaLXh3HhaTZOP";
  auto r = ReadRefreshToken(token);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(r.status().message());
  EXPECT_THAT(message, ::testing::Not(HasSubstr("FS4xc3Mgci2xQ5s5DzaLXh3HhaTZOP")));
  EXPECT_THAT(message, HasSubstr("looks like a token"));
}

}  // namespace
}  // namespace connectbroker::cli
