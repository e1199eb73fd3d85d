// FakeClock: a Clock whose wall and monotonic times move only when a test says so.
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>

#include "daemon/common/clock.h"

namespace connectbroker::testing {

class FakeClock final : public Clock {
 public:
  // Starts at 2026-01-01T00:00:00Z wall time and an arbitrary monotonic origin.
  FakeClock()
      : wall_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(
                     std::chrono::seconds(1767225600))
                     .count()),
        mono_ns_(1'000'000'000) {}

  WallTime Now() const override {
    return WallTime(std::chrono::duration_cast<WallTime::duration>(
        std::chrono::nanoseconds(wall_ns_.load())));
  }
  MonoTime MonotonicNow() const override {
    return MonoTime(std::chrono::duration_cast<MonoTime::duration>(
        std::chrono::nanoseconds(mono_ns_.load())));
  }

  // Moves both clocks forward.
  template <typename Rep, typename Period>
  void Advance(std::chrono::duration<Rep, Period> d) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    wall_ns_ += ns;
    mono_ns_ += ns;
  }
  // Moves only the wall clock (an NTP step or an operator setting the date).
  template <typename Rep, typename Period>
  void JumpWall(std::chrono::duration<Rep, Period> d) {
    wall_ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  }

 private:
  std::atomic<int64_t> wall_ns_;
  std::atomic<int64_t> mono_ns_;
};

}  // namespace connectbroker::testing
