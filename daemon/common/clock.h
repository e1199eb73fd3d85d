// Time, injected. Wall clock (Now) for persisted and user-visible times, monotonic clock
// (MonotonicNow) for scheduling and intervals. Thread-safe; implementations must be too.
// Only this folder calls std::chrono::*_clock::now(); everything else receives a Clock&.
#pragma once

#include <chrono>
#include <cstdint>

namespace connectbroker {

using WallTime = std::chrono::system_clock::time_point;
using MonoTime = std::chrono::steady_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual WallTime Now() const = 0;
  virtual MonoTime MonotonicNow() const = 0;
};

class SystemClock final : public Clock {
 public:
  WallTime Now() const override { return std::chrono::system_clock::now(); }
  MonoTime MonotonicNow() const override { return std::chrono::steady_clock::now(); }
};

// The system clock with its wall time shifted by a fixed offset: for tests that simulate hours
// passing while the daemon was stopped. The monotonic clock is not shifted.
class OffsetClock final : public Clock {
 public:
  explicit OffsetClock(std::chrono::seconds offset) : offset_(offset) {}
  WallTime Now() const override { return std::chrono::system_clock::now() + offset_; }
  MonoTime MonotonicNow() const override { return std::chrono::steady_clock::now(); }

 private:
  std::chrono::seconds offset_;
};

// Milliseconds since the Unix epoch, the unit of every persisted time.
inline int64_t ToUnixMillis(WallTime t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
inline WallTime FromUnixMillis(int64_t ms) {
  return WallTime(std::chrono::duration_cast<WallTime::duration>(std::chrono::milliseconds(ms)));
}

}  // namespace connectbroker
