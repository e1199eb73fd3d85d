// Randomness, injected: OAuth state, AES-GCM nonces, jitter. CryptoRandom is OpenSSL's CSPRNG and
// is thread-safe; test fakes are deterministic.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace connectbroker {

class Random {
 public:
  virtual ~Random() = default;
  // Fills `out` with random bytes.
  virtual void Fill(std::span<uint8_t> out) = 0;

  // Uniform in [0, 1).
  double Uniform01();
  // `n` random bytes as lowercase hex (2n characters).
  std::string Hex(size_t n);
  // `n` random bytes as unpadded base64url (for URL-safe identifiers such as OAuth state).
  std::string Base64Url(size_t n);
};

class CryptoRandom final : public Random {
 public:
  void Fill(std::span<uint8_t> out) override;  // aborts if the CSPRNG fails
};

}  // namespace connectbroker
