// KeyRing: the AES-256-GCM keys that protect grant secrets at rest, loaded from the key file (a
// systemd credential). The first key is active (used for new encryptions); the others only
// decrypt, which is how keys are rotated. Immutable after loading, so const methods are safe from
// any thread. Key bytes are wiped when the ring is destroyed and never appear in a message.
// Status codes: NotFound / PermissionDenied / FailedPrecondition (key file unusable),
// InvalidArgument (key file content), FailedPrecondition (unknown key id), DataLoss (failed
// authentication: wrong key or tampered record), Internal (OpenSSL failure).
//
// Key file format, one key per line, blank lines and '#' comments ignored:
//   # <key_id> <64 hex digits = 32 bytes>
//   k2024 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
// Key ids match [A-Za-z0-9._-]{1,64}.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/common/random.h"
#include "storage/records.pb.h"

namespace connectbroker::storage {

class KeyRing {
 public:
  static constexpr size_t kKeySize = 32;
  static constexpr size_t kNonceSize = 12;
  static constexpr size_t kTagSize = 16;
  using Key = std::array<uint8_t, kKeySize>;

  // Reads and parses the key file. Errors name the file (and the line) but never key material.
  // Logs a warning when the file is readable by group or others.
  static absl::StatusOr<KeyRing> LoadFromFile(const std::string& path);

  // Parses key file text; `source` names it in error messages.
  static absl::StatusOr<KeyRing> Parse(std::string_view contents, std::string_view source);

  // For tests and tools: keys given directly, the first active. Ids must be valid and unique
  // and the list non-empty (checked: a violation is a bug in the caller).
  static KeyRing FromKeys(std::vector<std::pair<std::string, Key>> keys);

  KeyRing(KeyRing&&) = default;
  KeyRing& operator=(KeyRing&&) = default;
  // Copying would scatter key material; move the ring instead.
  KeyRing(const KeyRing&) = delete;
  KeyRing& operator=(const KeyRing&) = delete;
  ~KeyRing() = default;

  const std::string& active_key_id() const;
  // In key file order, the active one first.
  std::vector<std::string> key_ids() const;
  bool Contains(std::string_view key_id) const;

  // Encrypts under the active key with a fresh 12-byte nonce from `random`.
  absl::StatusOr<EncryptedBlob> Encrypt(std::string_view plaintext,
                                        std::string_view associated_data, Random& random) const;
  // Same with a specific key (key checks are written for every key, not only the active one).
  absl::StatusOr<EncryptedBlob> EncryptWithKey(std::string_view key_id, std::string_view plaintext,
                                               std::string_view associated_data,
                                               Random& random) const;

  // FailedPrecondition when blob.key_id is not in the ring, DataLoss when the blob is malformed
  // or does not authenticate under that key and `associated_data`.
  absl::StatusOr<std::string> Decrypt(const EncryptedBlob& blob,
                                      std::string_view associated_data) const;

 private:
  // Wipes its bytes on destruction, including the copies a growing vector leaves behind.
  struct Entry {
    Entry(std::string id, const Key& key);
    Entry(Entry&& other) noexcept;
    Entry& operator=(Entry&& other) noexcept;
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;
    ~Entry();

    std::string id;
    Key key;
  };

  KeyRing() = default;
  const Entry* Find(std::string_view key_id) const;

  std::vector<Entry> entries_;
};

}  // namespace connectbroker::storage
