// FakeRandom: deterministic bytes for tests (a counter through splitmix64), so nonces are
// predictable yet never repeat within one instance. Not thread-safe.
#pragma once

#include <cstdint>
#include <span>

#include "daemon/common/random.h"

namespace connectbroker::storage::testing {

class FakeRandom final : public Random {
 public:
  void Fill(std::span<uint8_t> out) override {
    for (uint8_t& b : out) {
      if (available_ == 0) {
        word_ = SplitMix64(counter_++);
        available_ = 8;
      }
      b = static_cast<uint8_t>(word_);
      word_ >>= 8;
      --available_;
    }
    ++calls_;
  }

  int calls() const { return calls_; }

 private:
  static uint64_t SplitMix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  }

  uint64_t counter_ = 0;
  uint64_t word_ = 0;
  int available_ = 0;
  int calls_ = 0;
};

}  // namespace connectbroker::storage::testing
