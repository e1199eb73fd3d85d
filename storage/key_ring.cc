#include "storage/key_ring.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "daemon/common/check.h"
#include "daemon/common/log.h"
#include "daemon/common/strings.h"

namespace connectbroker::storage {
namespace {

// A key file is a handful of lines; anything much larger is the wrong file.
constexpr off_t kMaxKeyFileSize = 64 * 1024;
constexpr size_t kMaxKeyIdLength = 64;

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;

void Wipe(std::string& s) {
  if (!s.empty()) {
    OPENSSL_cleanse(s.data(), s.size());
  }
}

bool IsValidKeyId(std::string_view id) {
  if (id.empty() || id.size() > kMaxKeyIdLength) {
    return false;
  }
  for (char c : id) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

// Decodes exactly 2 * kKeySize hex digits; false on any other digit.
bool DecodeKeyHex(std::string_view hex, KeyRing::Key& out) {
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = HexValue(hex[2 * i]);
    int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return false;
    }
    out[i] = static_cast<uint8_t>((hi << 4) | lo);
  }
  return true;
}

// Whitespace-separated fields of one line (CR of CRLF files included as whitespace).
std::vector<std::string_view> SplitFields(std::string_view line) {
  constexpr std::string_view kSpace = " \t\r\v\f";
  std::vector<std::string_view> fields;
  size_t pos = line.find_first_not_of(kSpace);
  while (pos != std::string_view::npos) {
    size_t end = line.find_first_of(kSpace, pos);
    if (end == std::string_view::npos) {
      end = line.size();
    }
    fields.push_back(line.substr(pos, end - pos));
    pos = line.find_first_not_of(kSpace, end);
  }
  return fields;
}

// The key id of a blob read from disk may be anything; escape it before it reaches a message.
std::string Printable(std::string_view key_id) {
  return absl::CHexEscape(absl::string_view(key_id.data(), key_id.size()));
}

absl::Status OpenSslError(std::string_view what) {
  return absl::InternalError(StrCat("OpenSSL AES-256-GCM ", what, " failed"));
}

}  // namespace

KeyRing::Entry::Entry(std::string id_in, const Key& key_in) : id(std::move(id_in)), key(key_in) {}

KeyRing::Entry::Entry(Entry&& other) noexcept : id(std::move(other.id)), key(other.key) {
  OPENSSL_cleanse(other.key.data(), other.key.size());
}

KeyRing::Entry& KeyRing::Entry::operator=(Entry&& other) noexcept {
  if (this != &other) {
    id = std::move(other.id);
    key = other.key;
    OPENSSL_cleanse(other.key.data(), other.key.size());
  }
  return *this;
}

KeyRing::Entry::~Entry() { OPENSSL_cleanse(key.data(), key.size()); }

absl::StatusOr<KeyRing> KeyRing::LoadFromFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    std::string msg = StrCat("cannot open key file ", path, ": ", std::strerror(err));
    if (err == ENOENT || err == ENOTDIR) {
      return absl::NotFoundError(msg);
    }
    if (err == EACCES || err == EPERM) {
      return absl::PermissionDeniedError(msg);
    }
    return absl::FailedPreconditionError(msg);
  }
  absl::Cleanup close_fd = [fd] { ::close(fd); };

  struct stat st;
  if (::fstat(fd, &st) != 0) {
    return absl::FailedPreconditionError(
        StrCat("cannot stat key file ", path, ": ", std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(StrCat("key file ", path, " is not a regular file"));
  }
  if (st.st_size > kMaxKeyFileSize) {
    return absl::FailedPreconditionError(
        StrCat("key file ", path, " is larger than ", kMaxKeyFileSize, " bytes"));
  }
  // A warning, not a refusal: what counts is who can read the directory too, which we cannot
  // judge from here (systemd credentials and test fixtures are often 0644 in a private dir).
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    CB_LOG(WARNING) << "key file " << path << " is accessible by group or others (mode " << std::oct
                    << (st.st_mode & 0777) << std::dec
                    << "); it should be readable by the broker only";
  }

  std::string contents;
  absl::Cleanup wipe_contents = [&contents] { Wipe(contents); };
  contents.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = ::read(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return absl::FailedPreconditionError(
          StrCat("cannot read key file ", path, ": ", std::strerror(errno)));
    }
    if (n == 0) {
      break;  // the file shrank meanwhile; parse what is there
    }
    done += static_cast<size_t>(n);
  }
  contents.resize(done);
  return Parse(contents, path);
}

absl::StatusOr<KeyRing> KeyRing::Parse(std::string_view contents, std::string_view source) {
  KeyRing ring;
  std::vector<int> first_line;  // line of each entry, for duplicate messages
  int line_no = 0;
  size_t line_start = 0;
  while (line_start <= contents.size()) {
    size_t line_end = contents.find('\n', line_start);
    if (line_end == std::string_view::npos) {
      line_end = contents.size();
    }
    std::string_view line = contents.substr(line_start, line_end - line_start);
    line_start = line_end + 1;
    ++line_no;
    // Neither ids nor hex contain '#', so everything after one is a comment.
    line = line.substr(0, line.find('#'));
    std::vector<std::string_view> fields = SplitFields(line);
    if (fields.empty()) {
      continue;
    }
    auto where = [&] { return StrCat("key file ", source, " line ", line_no, ": "); };
    if (fields.size() != 2) {
      return absl::InvalidArgumentError(
          StrCat(where(), "expected '<key_id> <64 hex digits>', found ", fields.size(), " fields"));
    }
    std::string_view id = fields[0];
    std::string_view hex = fields[1];
    if (!IsValidKeyId(id)) {
      // The id is not echoed: a malformed line may hold key material in any position.
      return absl::InvalidArgumentError(
          StrCat(where(), "invalid key id (use 1 to 64 characters from A-Z a-z 0-9 . _ -)"));
    }
    if (hex.size() != 2 * kKeySize) {
      return absl::InvalidArgumentError(StrCat(where(), "key must be ", 2 * kKeySize,
                                               " hex digits (", kKeySize, " bytes), found ",
                                               hex.size(), " characters"));
    }
    Key key;
    bool decoded = DecodeKeyHex(hex, key);
    absl::Cleanup wipe_key = [&key] { OPENSSL_cleanse(key.data(), key.size()); };
    if (!decoded) {
      return absl::InvalidArgumentError(StrCat(where(), "key is not valid hex"));
    }
    for (size_t i = 0; i < ring.entries_.size(); ++i) {
      if (ring.entries_[i].id == id) {
        return absl::InvalidArgumentError(
            StrCat(where(), "duplicate key id '", id, "' (first on line ", first_line[i], ")"));
      }
    }
    ring.entries_.emplace_back(std::string(id), key);
    first_line.push_back(line_no);
  }
  if (ring.entries_.empty()) {
    return absl::InvalidArgumentError(StrCat("key file ", source, " contains no keys"));
  }
  return ring;
}

KeyRing KeyRing::FromKeys(std::vector<std::pair<std::string, Key>> keys) {
  BROKER_CHECK(!keys.empty());
  KeyRing ring;
  for (auto& [id, key] : keys) {
    BROKER_CHECK(IsValidKeyId(id));
    BROKER_CHECK(!ring.Contains(id));
    ring.entries_.emplace_back(id, key);
    OPENSSL_cleanse(key.data(), key.size());
  }
  return ring;
}

const std::string& KeyRing::active_key_id() const { return entries_.front().id; }

std::vector<std::string> KeyRing::key_ids() const {
  std::vector<std::string> ids;
  ids.reserve(entries_.size());
  for (const Entry& e : entries_) {
    ids.push_back(e.id);
  }
  return ids;
}

bool KeyRing::Contains(std::string_view key_id) const { return Find(key_id) != nullptr; }

const KeyRing::Entry* KeyRing::Find(std::string_view key_id) const {
  for (const Entry& e : entries_) {
    if (e.id == key_id) {
      return &e;
    }
  }
  return nullptr;
}

absl::StatusOr<EncryptedBlob> KeyRing::Encrypt(std::string_view plaintext,
                                               std::string_view associated_data,
                                               Random& random) const {
  return EncryptWithKey(active_key_id(), plaintext, associated_data, random);
}

absl::StatusOr<EncryptedBlob> KeyRing::EncryptWithKey(std::string_view key_id,
                                                      std::string_view plaintext,
                                                      std::string_view associated_data,
                                                      Random& random) const {
  const Entry* entry = Find(key_id);
  if (entry == nullptr) {
    return absl::FailedPreconditionError(
        StrCat("key id '", Printable(key_id), "' is not in the key file"));
  }
  std::array<uint8_t, kNonceSize> nonce;
  random.Fill(nonce);

  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr) {
    return OpenSslError("context allocation");
  }
  if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceSize, nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, entry->key.data(), nonce.data()) != 1) {
    return OpenSslError("encrypt init");
  }
  int len = 0;
  if (!associated_data.empty() &&
      EVP_EncryptUpdate(ctx.get(), nullptr, &len,
                        reinterpret_cast<const uint8_t*>(associated_data.data()),
                        static_cast<int>(associated_data.size())) != 1) {
    return OpenSslError("encrypt (associated data)");
  }
  std::string out(plaintext.size() + kTagSize, '\0');
  auto* out_bytes = reinterpret_cast<uint8_t*>(out.data());
  int written = 0;
  if (!plaintext.empty()) {
    if (EVP_EncryptUpdate(ctx.get(), out_bytes, &len,
                          reinterpret_cast<const uint8_t*>(plaintext.data()),
                          static_cast<int>(plaintext.size())) != 1) {
      return OpenSslError("encrypt");
    }
    written = len;
  }
  if (EVP_EncryptFinal_ex(ctx.get(), out_bytes + written, &len) != 1) {
    return OpenSslError("encrypt final");
  }
  written += len;
  if (static_cast<size_t>(written) != plaintext.size() ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagSize, out_bytes + written) != 1) {
    return OpenSslError("tag");
  }

  EncryptedBlob blob;
  blob.set_key_id(entry->id);
  blob.set_nonce(reinterpret_cast<const char*>(nonce.data()), nonce.size());
  blob.set_ciphertext(std::move(out));
  return blob;
}

absl::StatusOr<std::string> KeyRing::Decrypt(const EncryptedBlob& blob,
                                             std::string_view associated_data) const {
  const Entry* entry = Find(blob.key_id());
  if (entry == nullptr) {
    return absl::FailedPreconditionError(
        StrCat("cannot decrypt: key id '", Printable(blob.key_id()), "' is not in the key file"));
  }
  if (blob.nonce().size() != kNonceSize) {
    return absl::DataLossError(StrCat("encrypted record is malformed: nonce has ",
                                      blob.nonce().size(), " bytes, expected ", kNonceSize));
  }
  if (blob.ciphertext().size() < kTagSize) {
    return absl::DataLossError("encrypted record is malformed: ciphertext shorter than the tag");
  }
  const size_t body_size = blob.ciphertext().size() - kTagSize;
  const auto* in = reinterpret_cast<const uint8_t*>(blob.ciphertext().data());
  // OpenSSL's API takes a non-const tag buffer; copy it rather than cast constness away.
  std::array<uint8_t, kTagSize> tag;
  std::memcpy(tag.data(), in + body_size, kTagSize);

  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (ctx == nullptr) {
    return OpenSslError("context allocation");
  }
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceSize, nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, entry->key.data(),
                         reinterpret_cast<const uint8_t*>(blob.nonce().data())) != 1) {
    return OpenSslError("decrypt init");
  }
  int len = 0;
  if (!associated_data.empty() &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &len,
                        reinterpret_cast<const uint8_t*>(associated_data.data()),
                        static_cast<int>(associated_data.size())) != 1) {
    return OpenSslError("decrypt (associated data)");
  }
  std::string out(body_size, '\0');
  auto* out_bytes = reinterpret_cast<uint8_t*>(out.data());
  int written = 0;
  if (body_size > 0) {
    if (EVP_DecryptUpdate(ctx.get(), out_bytes, &len, in, static_cast<int>(body_size)) != 1) {
      Wipe(out);
      return OpenSslError("decrypt");
    }
    written = len;
  }
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagSize, tag.data()) != 1) {
    Wipe(out);
    return OpenSslError("set tag");
  }
  // Final is where GCM checks the tag: failure means wrong key, wrong associated data or a
  // modified nonce, ciphertext or tag. They are indistinguishable by design.
  if (EVP_DecryptFinal_ex(ctx.get(), out_bytes + written, &len) != 1) {
    Wipe(out);
    return absl::DataLossError(
        StrCat("decryption failed with key '", entry->id, "' (wrong key or tampered record)"));
  }
  return out;
}

}  // namespace connectbroker::storage
