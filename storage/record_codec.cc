#include "storage/record_codec.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <array>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/escaping.h"
#include "daemon/common/check.h"
#include "daemon/common/status_macros.h"
#include "daemon/common/strings.h"

namespace connectbroker::storage {
namespace {

// Debian's abseil has its own absl::string_view, which std::string_view does not convert to.
std::string CHexEscape(std::string_view s) {
  return absl::CHexEscape(absl::string_view(s.data(), s.size()));
}

constexpr std::string_view kKeyCheckPlaintext = "connect-broker key check";

void Wipe(std::string& s) {
  if (!s.empty()) {
    OPENSSL_cleanse(s.data(), s.size());
  }
}

void WipeSecrets(GrantSecrets& secrets) {
  Wipe(*secrets.mutable_access_token());
  Wipe(*secrets.mutable_refresh_token());
}

// `what` names the record in messages, e.g. "grant for organization 'org_1'".
absl::Status CheckSchemaVersion(uint32_t version, std::string_view what) {
  if (version == 0) {
    return absl::DataLossError(StrCat(what, " has no schema_version (corrupt record)"));
  }
  if (version > kSchemaVersion) {
    return absl::FailedPreconditionError(StrCat(what, " has schema_version ", version,
                                                ", but this connect-broker reads up to ",
                                                kSchemaVersion, " (written by a newer version?)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SealSecrets(const KeyRing& keys, Random& random, const GrantSecretsPlain& secrets,
                         GrantRecord& record) {
  GrantSecrets message;
  message.set_access_token(secrets.access_token.Reveal());
  message.set_refresh_token(secrets.refresh_token.Reveal());
  std::string plaintext = message.SerializeAsString();
  absl::Cleanup wipe = [&] {
    WipeSecrets(message);
    Wipe(plaintext);
  };
  ASSIGN_OR_RETURN(EncryptedBlob blob, keys.Encrypt(plaintext, record.organization_id(), random));
  *record.mutable_secrets() = std::move(blob);
  return absl::OkStatus();
}

absl::StatusOr<GrantSecretsPlain> OpenSecrets(const KeyRing& keys, const GrantRecord& record,
                                              std::string_view organization_id) {
  absl::StatusOr<std::string> plaintext = keys.Decrypt(record.secrets(), organization_id);
  if (!plaintext.ok()) {
    return absl::Status(plaintext.status().code(),
                        StrCat("secrets of organization '", CHexEscape(organization_id),
                               "': ", plaintext.status().message()));
  }
  absl::Cleanup wipe_plaintext = [&] { Wipe(*plaintext); };
  GrantSecrets message;
  absl::Cleanup wipe_message = [&] { WipeSecrets(message); };
  if (!message.ParseFromString(*plaintext)) {
    // Authenticated but unparseable: written by a buggy or foreign writer, not tampered with.
    return absl::DataLossError(StrCat("secrets of organization '", CHexEscape(organization_id),
                                      "' decrypted but do not parse"));
  }
  GrantSecretsPlain out;
  out.access_token = SecretString(message.access_token());
  out.refresh_token = SecretString(message.refresh_token());
  return out;
}

absl::StatusOr<GrantRecord> DecodeGrantRecord(std::string_view value,
                                              std::string_view organization_id) {
  const std::string what = StrCat("grant for organization '", CHexEscape(organization_id), "'");
  GrantRecord record;
  if (!record.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError(StrCat(what, " does not parse (corrupt record)"));
  }
  RETURN_IF_ERROR(CheckSchemaVersion(record.schema_version(), what));
  if (record.organization_id() != organization_id) {
    return absl::DataLossError(StrCat(what, " names organization '",
                                      CHexEscape(record.organization_id()),
                                      "' (record moved or corrupt)"));
  }
  return record;
}

absl::StatusOr<PendingAuthorization> DecodePending(std::string_view value) {
  PendingAuthorization pending;
  if (!pending.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError("pending authorization does not parse (corrupt record)");
  }
  RETURN_IF_ERROR(CheckSchemaVersion(pending.schema_version(), "pending authorization"));
  return pending;
}

absl::StatusOr<EventRecord> DecodeEventRecord(std::string_view value, uint64_t sequence) {
  const std::string what = StrCat("event ", sequence);
  EventRecord event;
  if (!event.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError(StrCat(what, " does not parse (corrupt record)"));
  }
  RETURN_IF_ERROR(CheckSchemaVersion(event.schema_version(), what));
  if (event.sequence() != sequence) {
    return absl::DataLossError(
        StrCat(what, " holds sequence ", event.sequence(), " (record moved or corrupt)"));
  }
  return event;
}

std::string EventKey(uint64_t sequence) {
  std::string key(8, '\0');
  for (int i = 7; i >= 0; --i) {
    key[i] = static_cast<char>(sequence & 0xff);
    sequence >>= 8;
  }
  return key;
}

absl::StatusOr<uint64_t> ParseEventKey(std::string_view key) {
  if (key.size() != 8) {
    return absl::DataLossError(
        StrCat("event key '", CHexEscape(key), "' is not 8 bytes (corrupt record)"));
  }
  uint64_t sequence = 0;
  for (char c : key) {
    sequence = (sequence << 8) | static_cast<uint8_t>(c);
  }
  return sequence;
}

std::string PendingKey(std::string_view state) {
  std::array<uint8_t, EVP_MAX_MD_SIZE> digest;
  unsigned int digest_len = 0;
  // Only fails on allocation failure inside OpenSSL, which we treat like any other OOM.
  BROKER_CHECK(EVP_Digest(state.data(), state.size(), digest.data(), &digest_len, EVP_sha256(),
                          nullptr) == 1);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest.data()), digest_len));
}

std::string KeyCheckKey(std::string_view key_id) { return StrCat(kKeyCheckPrefix, key_id); }

absl::StatusOr<KeyCheck> MakeKeyCheck(const KeyRing& keys, std::string_view key_id,
                                      Random& random) {
  KeyCheck check;
  check.set_schema_version(kSchemaVersion);
  ASSIGN_OR_RETURN(*check.mutable_blob(),
                   keys.EncryptWithKey(key_id, kKeyCheckPlaintext, KeyCheckKey(key_id), random));
  return check;
}

absl::Status VerifyKeyCheck(const KeyRing& keys, std::string_view key_id, std::string_view value) {
  const std::string what = StrCat("key check record for key '", key_id, "'");
  KeyCheck check;
  if (!check.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError(StrCat(what, " does not parse (corrupt record)"));
  }
  RETURN_IF_ERROR(CheckSchemaVersion(check.schema_version(), what));
  if (check.blob().key_id() != key_id) {
    return absl::DataLossError(StrCat(what, " holds a blob of key '",
                                      CHexEscape(check.blob().key_id()), "' (corrupt record)"));
  }
  absl::StatusOr<std::string> plaintext = keys.Decrypt(check.blob(), KeyCheckKey(key_id));
  if (!plaintext.ok() || *plaintext != kKeyCheckPlaintext) {
    // An Internal error from OpenSSL is not a verdict on the key; report it as it is.
    if (plaintext.status().code() == absl::StatusCode::kInternal) {
      return plaintext.status();
    }
    return absl::FailedPreconditionError(
        StrCat("encryption key '", key_id,
               "' in the key file does not match the key this database was written with; "
               "refusing to start"));
  }
  return absl::OkStatus();
}

}  // namespace connectbroker::storage
