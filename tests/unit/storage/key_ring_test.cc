#include "storage/key_ring.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "tests/support/status_matchers.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/storage/fake_random.h"

namespace connectbroker::storage {
namespace {

using ::connectbroker::storage::testing::FakeRandom;
using ::connectbroker::testing::IsOk;
using ::connectbroker::testing::IsOkAndHolds;
using ::connectbroker::testing::StatusIs;
using ::connectbroker::testing::TempDir;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kHexA[] = "00112233445566778899aabbccddeeff0123456789abcdef0011223344556677";
constexpr char kHexB[] = "ffeeddccbbaa99887766554433221100fedcba98765432100123456789abcdef";

KeyRing::Key KeyOf(uint8_t fill) {
  KeyRing::Key key;
  key.fill(fill);
  return key;
}

// An error message must not carry any recognisable piece of key material.
MATCHER_P(HasNoKeyMaterial, hex, "message contains no part of the key") {
  std::string message(arg.status().message());
  std::string h(hex);
  for (size_t i = 0; i + 8 <= h.size(); i += 8) {
    if (message.find(h.substr(i, 8)) != std::string::npos) {
      *result_listener << "message '" << message << "' contains key bytes";
      return false;
    }
  }
  return true;
}

class KeyFileTest : public ::testing::Test {
 protected:
  std::string WriteKeyFile(const std::string& contents, mode_t mode = 0600) {
    std::string path = dir_.File("keys");
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out << contents;
    }
    ::chmod(path.c_str(), mode);
    return path;
  }

  TempDir dir_;
};

TEST_F(KeyFileTest, LoadsKeysInOrderFirstActive) {
  std::string path = WriteKeyFile(std::string("# connect-broker keys\n\n") + "k2 " + kHexB +
                                  "   # newest\r\n" + "  k1\t" + kHexA + "\n");
  absl::StatusOr<KeyRing> ring = KeyRing::LoadFromFile(path);
  ASSERT_THAT(ring, IsOk());
  EXPECT_EQ(ring->active_key_id(), "k2");
  EXPECT_THAT(ring->key_ids(), ElementsAre("k2", "k1"));
  EXPECT_TRUE(ring->Contains("k1"));
  EXPECT_FALSE(ring->Contains("k3"));
}

TEST_F(KeyFileTest, GroupReadableFileOnlyWarns) {
  std::string path = WriteKeyFile(std::string("k1 ") + kHexA + "\n", 0644);
  EXPECT_THAT(KeyRing::LoadFromFile(path), IsOk());
}

TEST_F(KeyFileTest, UppercaseHexIsTheSameKey) {
  std::string upper = kHexA;
  for (char& c : upper) {
    c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
  }
  absl::StatusOr<KeyRing> lower_ring = KeyRing::Parse(std::string("k1 ") + kHexA, "lower");
  absl::StatusOr<KeyRing> upper_ring = KeyRing::Parse("k1 " + upper, "upper");
  ASSERT_THAT(lower_ring, IsOk());
  ASSERT_THAT(upper_ring, IsOk());
  FakeRandom random;
  absl::StatusOr<EncryptedBlob> blob = lower_ring->Encrypt("secret", "aad", random);
  ASSERT_THAT(blob, IsOk());
  EXPECT_THAT(upper_ring->Decrypt(*blob, "aad"), IsOkAndHolds(Eq("secret")));
}

TEST_F(KeyFileTest, MissingFileIsNotFoundNamingThePath) {
  std::string path = dir_.File("nope");
  EXPECT_THAT(KeyRing::LoadFromFile(path), StatusIs(absl::StatusCode::kNotFound, HasSubstr(path)));
}

TEST_F(KeyFileTest, UnreadableFileIsPermissionDenied) {
  if (::geteuid() == 0) {
    GTEST_SKIP() << "root reads any file";
  }
  std::string path = WriteKeyFile(std::string("k1 ") + kHexA + "\n", 0000);
  EXPECT_THAT(KeyRing::LoadFromFile(path),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr(path)));
}

TEST_F(KeyFileTest, DirectoryIsFailedPrecondition) {
  EXPECT_THAT(KeyRing::LoadFromFile(dir_.path().string()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(dir_.path().string())));
}

TEST_F(KeyFileTest, BadHexNamesFileAndLineButNotTheKey) {
  std::string bad = kHexB;
  bad[10] = 'z';
  std::string path = WriteKeyFile(std::string("k1 ") + kHexA + "\n# rotation\nk2 " + bad + "\n");
  absl::StatusOr<KeyRing> ring = KeyRing::LoadFromFile(path);
  EXPECT_THAT(ring, StatusIs(absl::StatusCode::kInvalidArgument,
                             AllOf(HasSubstr(path), HasSubstr("line 3"), HasSubstr("hex"))));
  EXPECT_THAT(ring, HasNoKeyMaterial(bad));
  EXPECT_THAT(ring, HasNoKeyMaterial(kHexA));
}

TEST_F(KeyFileTest, ShortKeyIsRejected) {
  std::string short_key = std::string(kHexA).substr(0, 62);
  absl::StatusOr<KeyRing> ring = KeyRing::Parse("k1 " + short_key, "keys.txt");
  EXPECT_THAT(ring, StatusIs(absl::StatusCode::kInvalidArgument,
                             AllOf(HasSubstr("keys.txt line 1"), HasSubstr("64 hex digits"),
                                   HasSubstr("found 62"))));
  EXPECT_THAT(ring, HasNoKeyMaterial(short_key));
}

TEST_F(KeyFileTest, LongKeyIsRejected) {
  std::string long_key = std::string(kHexA) + "00";
  absl::StatusOr<KeyRing> ring = KeyRing::Parse("k1 " + long_key, "keys.txt");
  EXPECT_THAT(ring, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("found 66")));
  EXPECT_THAT(ring, HasNoKeyMaterial(long_key));
}

TEST_F(KeyFileTest, DuplicateIdIsRejected) {
  absl::StatusOr<KeyRing> ring =
      KeyRing::Parse(std::string("k1 ") + kHexA + "\n\nk1 " + kHexB + "\n", "keys.txt");
  EXPECT_THAT(ring, StatusIs(absl::StatusCode::kInvalidArgument,
                             AllOf(HasSubstr("line 3"), HasSubstr("duplicate key id 'k1'"),
                                   HasSubstr("line 1"))));
  EXPECT_THAT(ring, HasNoKeyMaterial(kHexA));
  EXPECT_THAT(ring, HasNoKeyMaterial(kHexB));
}

TEST_F(KeyFileTest, MissingIdIsRejected) {
  // The key alone on its line: one field, and the message must not echo it.
  absl::StatusOr<KeyRing> ring = KeyRing::Parse(std::string("   ") + kHexA + "\n", "keys.txt");
  EXPECT_THAT(ring, StatusIs(absl::StatusCode::kInvalidArgument,
                             AllOf(HasSubstr("line 1"), HasSubstr("found 1 fields"))));
  EXPECT_THAT(ring, HasNoKeyMaterial(kHexA));
}

TEST_F(KeyFileTest, ExtraFieldIsRejected) {
  absl::StatusOr<KeyRing> ring =
      KeyRing::Parse(std::string("k1 ") + kHexA + " " + kHexB, "keys.txt");
  EXPECT_THAT(ring, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("found 3 fields")));
  EXPECT_THAT(ring, HasNoKeyMaterial(kHexA));
  EXPECT_THAT(ring, HasNoKeyMaterial(kHexB));
}

TEST_F(KeyFileTest, IdWithBadCharactersIsRejected) {
  for (const std::string& id :
       std::vector<std::string>{"k/1", "k\xc3\xa9", "key:1", std::string(65, 'a')}) {
    absl::StatusOr<KeyRing> ring = KeyRing::Parse(id + " " + kHexA, "keys.txt");
    EXPECT_THAT(ring, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid key id")))
        << id;
    EXPECT_THAT(ring, HasNoKeyMaterial(kHexA));
  }
  EXPECT_THAT(KeyRing::Parse(std::string(64, 'a') + " " + kHexA, "keys.txt"), IsOk());
  EXPECT_THAT(KeyRing::Parse(std::string("A-z_0.9 ") + kHexA, "keys.txt"), IsOk());
}

TEST_F(KeyFileTest, NoKeysIsRejected) {
  EXPECT_THAT(KeyRing::LoadFromFile(WriteKeyFile("")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("contains no keys")));
  EXPECT_THAT(KeyRing::LoadFromFile(WriteKeyFile("# only a comment\n\n   \n")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("contains no keys")));
}

class KeyRingCryptoTest : public ::testing::Test {
 protected:
  KeyRing ring_ = KeyRing::FromKeys({{"a", KeyOf(1)}, {"b", KeyOf(2)}});
  FakeRandom random_;
};

TEST_F(KeyRingCryptoTest, RoundTrip) {
  absl::StatusOr<EncryptedBlob> blob = ring_.Encrypt("refresh_abc", "org_1", random_);
  ASSERT_THAT(blob, IsOk());
  EXPECT_EQ(blob->key_id(), "a");
  EXPECT_EQ(blob->nonce().size(), KeyRing::kNonceSize);
  EXPECT_EQ(blob->ciphertext().size(), std::string("refresh_abc").size() + KeyRing::kTagSize);
  EXPECT_THAT(blob->ciphertext(), Not(HasSubstr("refresh_abc")));
  EXPECT_THAT(ring_.Decrypt(*blob, "org_1"), IsOkAndHolds(Eq("refresh_abc")));
}

TEST_F(KeyRingCryptoTest, EmptyPlaintextAndAssociatedData) {
  absl::StatusOr<EncryptedBlob> blob = ring_.Encrypt("", "", random_);
  ASSERT_THAT(blob, IsOk());
  EXPECT_EQ(blob->ciphertext().size(), KeyRing::kTagSize);
  EXPECT_THAT(ring_.Decrypt(*blob, ""), IsOkAndHolds(Eq("")));
  EXPECT_THAT(ring_.Decrypt(*blob, "x"), StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(KeyRingCryptoTest, NonceComesFromInjectedRandom) {
  FakeRandom twin;
  std::string expected(KeyRing::kNonceSize, '\0');
  twin.Fill(std::span<uint8_t>(reinterpret_cast<uint8_t*>(expected.data()), expected.size()));

  absl::StatusOr<EncryptedBlob> first = ring_.Encrypt("x", "aad", random_);
  absl::StatusOr<EncryptedBlob> second = ring_.Encrypt("x", "aad", random_);
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(first->nonce(), expected);
  EXPECT_NE(first->nonce(), second->nonce());
  EXPECT_NE(first->ciphertext(), second->ciphertext());
}

TEST_F(KeyRingCryptoTest, EncryptWithNamedKey) {
  absl::StatusOr<EncryptedBlob> blob = ring_.EncryptWithKey("b", "x", "aad", random_);
  ASSERT_THAT(blob, IsOk());
  EXPECT_EQ(blob->key_id(), "b");
  EXPECT_THAT(ring_.Decrypt(*blob, "aad"), IsOkAndHolds(Eq("x")));
  EXPECT_THAT(ring_.EncryptWithKey("zz", "x", "aad", random_),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("'zz'")));
}

TEST_F(KeyRingCryptoTest, RotatedRingDecryptsOldAndEncryptsNew) {
  KeyRing old_ring = KeyRing::FromKeys({{"old", KeyOf(7)}});
  KeyRing new_ring = KeyRing::FromKeys({{"new", KeyOf(8)}, {"old", KeyOf(7)}});
  absl::StatusOr<EncryptedBlob> blob = old_ring.Encrypt("x", "aad", random_);
  ASSERT_THAT(blob, IsOk());
  EXPECT_THAT(new_ring.Decrypt(*blob, "aad"), IsOkAndHolds(Eq("x")));
  absl::StatusOr<EncryptedBlob> fresh = new_ring.Encrypt("y", "aad", random_);
  ASSERT_THAT(fresh, IsOk());
  EXPECT_EQ(fresh->key_id(), "new");
}

class TamperTest : public KeyRingCryptoTest {
 protected:
  void SetUp() override {
    absl::StatusOr<EncryptedBlob> blob = ring_.Encrypt("access_token_value", "org_1", random_);
    ASSERT_THAT(blob, IsOk());
    blob_ = *blob;
  }

  void ExpectTampered(const EncryptedBlob& blob, std::string_view aad = "org_1") {
    EXPECT_THAT(
        ring_.Decrypt(blob, aad),
        StatusIs(absl::StatusCode::kDataLoss,
                 AllOf(HasSubstr("decryption failed"), HasSubstr("wrong key or tampered record"))));
  }

  EncryptedBlob blob_;
};

TEST_F(TamperTest, FlippedCiphertextBit) {
  (*blob_.mutable_ciphertext())[0] ^= 0x01;
  ExpectTampered(blob_);
}

TEST_F(TamperTest, FlippedNonceBit) {
  (*blob_.mutable_nonce())[5] ^= 0x80;
  ExpectTampered(blob_);
}

TEST_F(TamperTest, FlippedTagBit) {
  std::string& ct = *blob_.mutable_ciphertext();
  ct[ct.size() - 1] ^= 0x01;
  ExpectTampered(blob_);
}

TEST_F(TamperTest, WrongAssociatedData) { ExpectTampered(blob_, "org_2"); }

TEST_F(TamperTest, OtherKeyIdOfTheRing) {
  blob_.set_key_id("b");
  ExpectTampered(blob_);
}

TEST_F(TamperTest, SameIdDifferentKey) {
  KeyRing impostor = KeyRing::FromKeys({{"a", KeyOf(9)}});
  EXPECT_THAT(impostor.Decrypt(blob_, "org_1"), StatusIs(absl::StatusCode::kDataLoss));
}

TEST_F(TamperTest, UnknownKeyId) {
  blob_.set_key_id("gone");
  EXPECT_THAT(ring_.Decrypt(blob_, "org_1"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("key id 'gone' is not in the key file")));
}

TEST_F(TamperTest, TruncatedNonceOrCiphertext) {
  EncryptedBlob short_nonce = blob_;
  short_nonce.mutable_nonce()->resize(8);
  EXPECT_THAT(ring_.Decrypt(short_nonce, "org_1"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("nonce")));
  EncryptedBlob short_ct = blob_;
  short_ct.mutable_ciphertext()->resize(KeyRing::kTagSize - 1);
  EXPECT_THAT(ring_.Decrypt(short_ct, "org_1"), StatusIs(absl::StatusCode::kDataLoss));
  EncryptedBlob no_body = blob_;
  no_body.mutable_ciphertext()->erase(0, no_body.ciphertext().size() - KeyRing::kTagSize);
  ExpectTampered(no_body);
}

}  // namespace
}  // namespace connectbroker::storage
