#include "daemon/common/random.h"

#include <openssl/rand.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace connectbroker {

double Random::Uniform01() {
  uint64_t v = 0;
  Fill(std::span<uint8_t>(reinterpret_cast<uint8_t*>(&v), sizeof(v)));
  // 53 random bits -> [0, 1).
  return static_cast<double>(v >> 11) * (1.0 / 9007199254740992.0);
}

std::string Random::Hex(size_t n) {
  std::vector<uint8_t> bytes(n);
  Fill(bytes);
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

std::string Random::Base64Url(size_t n) {
  std::vector<uint8_t> bytes(n);
  Fill(bytes);
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (uint8_t b : bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 0x3f]);
    }
  }
  if (bits > 0) {
    out.push_back(kAlphabet[(acc << (6 - bits)) & 0x3f]);
  }
  return out;
}

void CryptoRandom::Fill(std::span<uint8_t> out) {
  if (out.empty()) {
    return;
  }
  if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) {
    std::fputs("<2>connect-broker: OpenSSL RAND_bytes failed\n", stderr);
    std::abort();
  }
}

}  // namespace connectbroker
