// Logging to stderr with syslog priority prefixes ("<6>"), which journald turns into levels.
// Thread-safe: one write(2) per line. Never log a token, code or secret; pass SecretString,
// which prints masked.
//   CB_LOG(INFO) << "refreshed " << org_id;
#pragma once

#include <sstream>
#include <string_view>

namespace connectbroker {

enum class LogLevel { kError = 3, kWarning = 4, kNotice = 5, kInfo = 6, kDebug = 7 };

// Lines below this level are dropped. Default kInfo.
void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();
void WriteLogLine(LogLevel level, std::string_view line);

class LogMessage {
 public:
  explicit LogMessage(LogLevel level) : level_(level) {}
  ~LogMessage() { WriteLogLine(level_, stream_.str()); }
  std::ostringstream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

}  // namespace connectbroker

#define CB_LOG_LEVEL_ERROR ::connectbroker::LogLevel::kError
#define CB_LOG_LEVEL_WARNING ::connectbroker::LogLevel::kWarning
#define CB_LOG_LEVEL_NOTICE ::connectbroker::LogLevel::kNotice
#define CB_LOG_LEVEL_INFO ::connectbroker::LogLevel::kInfo
#define CB_LOG_LEVEL_DEBUG ::connectbroker::LogLevel::kDebug

#define CB_LOG(level)                                                            \
  if (static_cast<int>(CB_LOG_LEVEL_##level) >                                   \
      static_cast<int>(::connectbroker::MinLogLevel())) {                        \
  } else                                                                         \
    ::connectbroker::LogMessage(CB_LOG_LEVEL_##level).stream()
