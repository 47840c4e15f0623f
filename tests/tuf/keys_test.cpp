#include "tuf/keys.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "common/encoding.hpp"

namespace citadel::tuf {
namespace {

SigningKey Generate(KeyAlgorithm algorithm) {
  auto key = SigningKey::Generate(algorithm);
  EXPECT_TRUE(key) << key.error().message();
  return *std::move(key);
}

// A PEM private key made directly with OpenSSL (RSA and P-384 are not
// offered by SigningKey::Generate).
crypto::SecretBytes PemOf(EVP_PKEY* raw) {
  EXPECT_NE(raw, nullptr);
  crypto::PrivateKey key = crypto::PrivateKey::Adopt(raw);
  auto pem = key.ToPem();
  EXPECT_TRUE(pem);
  return *std::move(pem);
}

crypto::SecretBytes RsaPem(std::size_t bits) { return PemOf(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", bits)); }

void ExpectSignVerify(const SigningKey& key) {
  const std::string message = R"({"_type":"root","version":1})";
  auto signature = key.Sign(message);
  ASSERT_TRUE(signature) << signature.error().message();
  const Key& pub = key.PublicKey();
  ASSERT_TRUE(pub.usable()) << pub.unusable_reason();
  EXPECT_TRUE(pub.Verify(message, *signature));
  EXPECT_FALSE(pub.Verify(message + " ", *signature));
  std::string flipped = *signature;
  flipped[flipped.size() / 2] = flipped[flipped.size() / 2] == '0' ? '1' : '0';
  EXPECT_FALSE(pub.Verify(message, flipped));
  EXPECT_FALSE(pub.Verify(message, ""));
  EXPECT_FALSE(pub.Verify(message, "not hex"));
  // The key id is what ComputeKeyId says, and stable across PEM round trips.
  EXPECT_EQ(key.KeyId(), pub.ComputeKeyId().value());
  auto pem = key.ToPem();
  ASSERT_TRUE(pem);
  auto reloaded = SigningKey::FromPem(*pem, pub.scheme());
  ASSERT_TRUE(reloaded) << reloaded.error().message();
  EXPECT_EQ(reloaded->KeyId(), key.KeyId());
  EXPECT_TRUE(pub.Verify(message, reloaded->Sign(message).value()));
}

TEST(KeysTest, Ed25519SignVerify) {
  SigningKey key = Generate(KeyAlgorithm::kEd25519);
  EXPECT_EQ(key.PublicKey().keytype(), "ed25519");
  EXPECT_EQ(key.PublicKey().scheme(), "ed25519");
  EXPECT_EQ(key.PublicKey().public_value().size(), 64U);  // hex of 32 raw bytes
  EXPECT_EQ(key.Sign("x").value().size(), 128U);          // 64 raw bytes
  ExpectSignVerify(key);
}

TEST(KeysTest, EcdsaP256SignVerify) {
  SigningKey key = Generate(KeyAlgorithm::kEcdsaP256);
  EXPECT_EQ(key.PublicKey().keytype(), "ecdsa-sha2-nistp256");
  EXPECT_EQ(key.PublicKey().scheme(), "ecdsa-sha2-nistp256");
  EXPECT_TRUE(key.PublicKey().public_value().starts_with("-----BEGIN PUBLIC KEY-----\n"));
  ExpectSignVerify(key);
}

TEST(KeysTest, EcdsaP384SignVerify) {
  auto key = SigningKey::FromPem(PemOf(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384")));
  ASSERT_TRUE(key) << key.error().message();
  EXPECT_EQ(key->PublicKey().scheme(), "ecdsa-sha2-nistp384");
  ExpectSignVerify(*key);
}

TEST(KeysTest, RsaPssAndPkcs1SignVerify) {
  const crypto::SecretBytes pem = RsaPem(2048);
  auto pss = SigningKey::FromPem(pem);
  ASSERT_TRUE(pss) << pss.error().message();
  EXPECT_EQ(pss->PublicKey().keytype(), "rsa");
  EXPECT_EQ(pss->PublicKey().scheme(), "rsassa-pss-sha256");
  ExpectSignVerify(*pss);
  auto pkcs1 = SigningKey::FromPem(pem, "rsa-pkcs1v15-sha256");
  ASSERT_TRUE(pkcs1) << pkcs1.error().message();
  ExpectSignVerify(*pkcs1);
  // Same key material, other scheme: other key id, and the signatures of
  // one scheme do not verify under the other.
  EXPECT_NE(pss->KeyId(), pkcs1->KeyId());
  EXPECT_FALSE(pkcs1->PublicKey().Verify("m", pss->Sign("m").value()));
  EXPECT_FALSE(pss->PublicKey().Verify("m", pkcs1->Sign("m").value()));
  EXPECT_FALSE(SigningKey::FromPem(pem, "ed25519"));
}

TEST(KeysTest, RsaPssVerifyAcceptsAnySaltLength) {
  // securesystemslib verifies with salt length "auto"; a signer using the
  // maximum salt length must verify too.
  const crypto::SecretBytes pem = RsaPem(2048);
  auto key = SigningKey::FromPem(pem);
  ASSERT_TRUE(key);
  auto private_key = crypto::PrivateKey::FromPem(pem);
  ASSERT_TRUE(private_key);
  const std::string message = "canonical bytes";
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX* pctx = nullptr;
  ASSERT_EQ(EVP_DigestSignInit(ctx, &pctx, EVP_sha256(), nullptr, private_key->evp()), 1);
  ASSERT_EQ(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
  ASSERT_EQ(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_MAX), 1);
  std::size_t length = 0;
  const auto* data = reinterpret_cast<const unsigned char*>(message.data());
  ASSERT_EQ(EVP_DigestSign(ctx, nullptr, &length, data, message.size()), 1);
  Bytes signature(length);
  ASSERT_EQ(EVP_DigestSign(ctx, signature.data(), &length, data, message.size()), 1);
  EVP_MD_CTX_free(ctx);
  signature.resize(length);
  EXPECT_TRUE(key->PublicKey().Verify(message, HexEncode(signature)));
}

TEST(KeysTest, ShortRsaKeysNeverVerify) {
  EXPECT_FALSE(SigningKey::FromPem(RsaPem(1024)));
  auto small = SigningKey::FromPem(RsaPem(2048));
  ASSERT_TRUE(small);
  // Swap in a 1024-bit public key under the rsa keytype: parses, unusable.
  crypto::PrivateKey weak = crypto::PrivateKey::Adopt(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{1024}));
  Json json = {{"keytype", "rsa"}, {"scheme", "rsassa-pss-sha256"}, {"keyval", {{"public", weak.Public().Pem()}}}};
  auto key = Key::FromJson(json);
  ASSERT_TRUE(key);
  EXPECT_FALSE(key->usable());
  EXPECT_NE(key->unusable_reason().find("2048"), std::string::npos);
}

TEST(KeysTest, KeyIdVectorFromTheSpecification) {
  // The ed25519 timestamp key of the specification's example root.json.
  Json json = {{"keytype", "ed25519"},
               {"scheme", "ed25519"},
               {"keyval", {{"public", "72378e5bc588793e58f81c8533da64a2e8f1565c1fcc7f253496394ffc52542c"}}}};
  auto key = Key::FromJson(json);
  ASSERT_TRUE(key) << key.error().message();
  EXPECT_TRUE(key->usable()) << key->unusable_reason();
  EXPECT_EQ(key->ComputeKeyId().value(), "1bf1c6e3cdd3d3a8420b19199e27511999850f4b376c4547b2f32fba7e80fca3");
  // Extra members do not change the key id, and are kept.
  json["keyid_hash_algorithms"] = {"sha256", "sha512"};
  auto extended = Key::FromJson(json);
  ASSERT_TRUE(extended);
  EXPECT_EQ(extended->ComputeKeyId().value(), key->ComputeKeyId().value());
  EXPECT_TRUE(extended->json().contains("keyid_hash_algorithms"));
}

TEST(KeysTest, UnknownOrBrokenKeysParseButNeverVerify) {
  auto unknown = Key::FromJson({{"keytype", "sphincs"}, {"scheme", "sphincs-shake"}, {"keyval", {{"public", "ab"}}}});
  ASSERT_TRUE(unknown);
  EXPECT_FALSE(unknown->usable());
  EXPECT_FALSE(unknown->Verify("m", "abcd"));
  // keytype and scheme must agree.
  SigningKey ed = Generate(KeyAlgorithm::kEd25519);
  auto mismatched = Key::FromJson({{"keytype", "ed25519"},
                                   {"scheme", "ecdsa-sha2-nistp256"},
                                   {"keyval", {{"public", ed.PublicKey().public_value()}}}});
  ASSERT_TRUE(mismatched);
  EXPECT_FALSE(mismatched->usable());
  auto bad_hex = Key::FromJson({{"keytype", "ed25519"}, {"scheme", "ed25519"}, {"keyval", {{"public", "zz"}}}});
  ASSERT_TRUE(bad_hex);
  EXPECT_FALSE(bad_hex->usable());
  // An ECDSA scheme with an RSA key (and the reverse) is unusable.
  SigningKey p256 = Generate(KeyAlgorithm::kEcdsaP256);
  auto wrong_type = Key::FromJson(
      {{"keytype", "rsa"}, {"scheme", "rsassa-pss-sha256"}, {"keyval", {{"public", p256.PublicKey().public_value()}}}});
  ASSERT_TRUE(wrong_type);
  EXPECT_FALSE(wrong_type->usable());
  // The spec's keytype and securesystemslib's "ecdsa" are both accepted.
  auto sslib = Key::FromJson({{"keytype", "ecdsa"},
                              {"scheme", "ecdsa-sha2-nistp256"},
                              {"keyval", {{"public", p256.PublicKey().public_value()}}}});
  ASSERT_TRUE(sslib);
  EXPECT_TRUE(sslib->usable());
  EXPECT_TRUE(sslib->Verify("m", p256.Sign("m").value()));
}

TEST(KeysTest, MalformedKeyObjectsAreRefused) {
  EXPECT_FALSE(Key::FromJson(Json::array()));
  EXPECT_FALSE(Key::FromJson({{"keytype", "ed25519"}, {"scheme", "ed25519"}}));
  EXPECT_FALSE(Key::FromJson({{"keytype", 1}, {"scheme", "ed25519"}, {"keyval", {{"public", "00"}}}}));
  EXPECT_FALSE(Key::FromJson({{"keytype", "ed25519"}, {"scheme", "ed25519"}, {"keyval", "00"}}));
  EXPECT_FALSE(Key::FromJson({{"keytype", "ed25519"}, {"scheme", "ed25519"}, {"keyval", {{"private", "00"}}}}));
}

TEST(KeysTest, SameMaterialSameIdentity) {
  SigningKey key = Generate(KeyAlgorithm::kEcdsaP256);
  auto other_spelling = Key::FromJson({{"keytype", "ecdsa"},
                                       {"scheme", "ecdsa-sha2-nistp256"},
                                       {"keyval", {{"public", key.PublicKey().public_value()}}}});
  ASSERT_TRUE(other_spelling);
  EXPECT_EQ(other_spelling->material_id(), key.PublicKey().material_id());
  EXPECT_NE(Generate(KeyAlgorithm::kEcdsaP256).PublicKey().material_id(), key.PublicKey().material_id());
}

}  // namespace
}  // namespace citadel::tuf
