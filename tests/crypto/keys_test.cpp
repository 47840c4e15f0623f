#include <gtest/gtest.h>
#include <openssl/evp.h>

#include "crypto/crypto.hpp"

namespace citadel::crypto {
namespace {

PrivateKey NewKey() {
  auto key = PrivateKey::GenerateP256();
  EXPECT_TRUE(key.has_value()) << key.error().message();
  return *std::move(key);
}

TEST(KeysTest, SignVerifyRoundTrip) {
  PrivateKey key = NewKey();
  PublicKey pub = key.Public();
  EXPECT_TRUE(pub.IsP256());
  const std::string message = "attestation evidence";
  auto signature = key.Sign(AsBytes(message));
  ASSERT_TRUE(signature) << signature.error().message();
  EXPECT_TRUE(pub.Verify(AsBytes(message), *signature));
  // The digest form verifies the same signature and vice versa.
  EXPECT_TRUE(pub.VerifyDigest(Sha256(message), *signature));
  auto digest_signature = key.SignDigest(Sha256(message));
  ASSERT_TRUE(digest_signature);
  EXPECT_TRUE(pub.Verify(AsBytes(message), *digest_signature));
}

TEST(KeysTest, TamperedMessageOrSignatureFails) {
  PrivateKey key = NewKey();
  PublicKey pub = key.Public();
  const std::string message = "attestation evidence";
  auto signature = key.Sign(AsBytes(message));
  ASSERT_TRUE(signature);
  EXPECT_FALSE(pub.Verify(AsBytes(std::string_view("attestation evidencE")), *signature));
  Bytes flipped = *signature;
  flipped[flipped.size() / 2] ^= 0x01;
  EXPECT_FALSE(pub.Verify(AsBytes(message), flipped));
  EXPECT_FALSE(pub.Verify(AsBytes(message), {}));
  // Another key's signature does not verify.
  EXPECT_FALSE(NewKey().Public().Verify(AsBytes(message), *signature));
  EXPECT_FALSE(pub.VerifyDigest(Sha256(std::string_view("other")), *signature));
}

TEST(KeysTest, SpkiDerIsStableAndRoundTrips) {
  PrivateKey key = NewKey();
  const Bytes der = key.Public().SpkiDer();
  // P-256 SubjectPublicKeyInfo with an uncompressed point is 91 bytes.
  ASSERT_EQ(der.size(), 91U);
  EXPECT_EQ(HexEncode(der), HexEncode(key.Public().SpkiDer()));
  auto parsed = PublicKey::FromSpkiDer(der);
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(HexEncode(parsed->SpkiDer()), HexEncode(der));
  EXPECT_TRUE(*parsed == key.Public());
  EXPECT_FALSE(*parsed == NewKey().Public());

  Bytes trailing = der;
  trailing.push_back(0);
  EXPECT_FALSE(PublicKey::FromSpkiDer(trailing));
  EXPECT_FALSE(PublicKey::FromSpkiDer(Bytes{0x30, 0x03, 0x02, 0x01, 0x01}));
}

TEST(KeysTest, PemRoundTrips) {
  PrivateKey key = NewKey();
  auto pem = key.ToPem();
  ASSERT_TRUE(pem) << pem.error().message();
  EXPECT_TRUE(pem->reveal().starts_with("-----BEGIN PRIVATE KEY-----"));  // PKCS#8
  auto reloaded = PrivateKey::FromPem(*pem);
  ASSERT_TRUE(reloaded) << reloaded.error().message();
  EXPECT_TRUE(reloaded->Public() == key.Public());
  // The reloaded key signs for the original public key.
  auto signature = reloaded->Sign(AsBytes(std::string_view("x")));
  ASSERT_TRUE(signature);
  EXPECT_TRUE(key.Public().Verify(AsBytes(std::string_view("x")), *signature));

  const std::string public_pem = key.Public().Pem();
  EXPECT_TRUE(public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
  auto public_key = PublicKey::FromPem(public_pem);
  ASSERT_TRUE(public_key);
  EXPECT_TRUE(*public_key == key.Public());

  auto garbage = PrivateKey::FromPem(SecretBytes(std::string("not a key")));
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().code(), ErrorCode::kParse);
  EXPECT_FALSE(PublicKey::FromPem(pem->reveal()));  // a private key is not a PUBLIC KEY block
}

TEST(KeysTest, PublicHalfCarriesNoPrivateKey) {
  PrivateKey key = NewKey();
  PublicKey pub = key.Public();
  // Wrapping the public key's EVP_PKEY as a private key must not sign or
  // export anything: Public() holds no private scalar.
  ASSERT_EQ(EVP_PKEY_up_ref(pub.evp()), 1);
  PrivateKey misuse = PrivateKey::Adopt(pub.evp());
  EXPECT_FALSE(misuse.Sign(AsBytes(std::string_view("x"))));
  EXPECT_FALSE(misuse.SignDigest(Sha256(std::string_view("x"))));
  EXPECT_FALSE(misuse.ToPem());
}

TEST(KeysTest, MovedFromKeyFailsCleanly) {
  PrivateKey key = NewKey();
  PrivateKey other = std::move(key);
  auto signature = key.Sign(AsBytes(std::string_view("x")));  // NOLINT(bugprone-use-after-move)
  ASSERT_FALSE(signature);
  EXPECT_EQ(signature.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_TRUE(other.Sign(AsBytes(std::string_view("x"))));
}

}  // namespace
}  // namespace citadel::crypto
