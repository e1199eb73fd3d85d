// WaitUntil: polls a condition until it holds or a deadline passes (real time; for conditions
// another thread makes true). Never a substitute for a fixed sleep: it returns as soon as the
// condition holds.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace connectbroker::testing {

inline bool WaitUntil(const std::function<bool()>& condition,
                      std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace connectbroker::testing
