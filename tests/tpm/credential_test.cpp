// MakeCredential's refusals (the endorsement key, the name, the secret) and
// the shape of what it makes. Whether a TPM activates the result is
// swtpm_test.cpp's conformance test.
#include "tpm/credential.hpp"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <string>

#include "crypto/crypto.hpp"

namespace citadel::tpm {
namespace {

// The TCG EK template (L-1) around a freshly generated RSA 2048 modulus.
PublicArea EndorsementKeyLike() {
  EVP_PKEY* key = EVP_RSA_gen(2048);
  EXPECT_NE(key, nullptr);
  BIGNUM* modulus = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &modulus), 1);
  PublicArea ek;
  TPMT_PUBLIC& area = ek.area;
  area.type = TPM2_ALG_RSA;
  area.nameAlg = TPM2_ALG_SHA256;
  area.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                          TPMA_OBJECT_ADMINWITHPOLICY | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
  area.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_AES;
  area.parameters.rsaDetail.symmetric.keyBits.aes = 128;
  area.parameters.rsaDetail.symmetric.mode.aes = TPM2_ALG_CFB;
  area.parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
  area.parameters.rsaDetail.keyBits = 2048;
  area.unique.rsa.size = 256;
  EXPECT_EQ(BN_bn2binpad(modulus, area.unique.rsa.buffer, 256), 256);
  BN_free(modulus);
  EVP_PKEY_free(key);
  return ek;
}

Bytes SomeName() {
  Bytes name = {0x00, 0x0b};
  const crypto::Sha256Digest digest = crypto::Sha256(std::string_view("an attestation key"));
  name.insert(name.end(), digest.begin(), digest.end());
  return name;
}

void ExpectInvalid(const Expected<Credential>& made, const std::string& reason) {
  ASSERT_FALSE(made.has_value()) << reason;
  EXPECT_EQ(made.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(made.error().message().find(reason), std::string::npos) << made.error().message();
}

TEST(CredentialTest, MakesTheTwoTpmStructures) {
  const PublicArea ek = EndorsementKeyLike();
  const Bytes secret = crypto::RandomBytes(32);
  auto made = MakeCredential(ek, SomeName(), secret);
  ASSERT_TRUE(made.has_value()) << made.error().message();
  // TPM2B_ID_OBJECT: size, TPM2B_DIGEST(HMAC) = 2 + 32, encrypted TPM2B_DIGEST(secret) = 2 + 32.
  ASSERT_EQ(made->credential_blob.size(), 2U + 34U + 34U);
  EXPECT_EQ(made->credential_blob[0], 0);
  EXPECT_EQ(made->credential_blob[1], 68);
  EXPECT_EQ(made->credential_blob[2], 0);
  EXPECT_EQ(made->credential_blob[3], 32);
  // TPM2B_ENCRYPTED_SECRET: the 256-byte RSA-OAEP ciphertext.
  ASSERT_EQ(made->encrypted_secret.size(), 2U + 256U);
  EXPECT_EQ(made->encrypted_secret[0], 1);
  EXPECT_EQ(made->encrypted_secret[1], 0);
  // The secret is not in the clear, and every credential has its own seed.
  EXPECT_EQ(std::search(made->credential_blob.begin(), made->credential_blob.end(), secret.begin(), secret.end()),
            made->credential_blob.end());
  auto again = MakeCredential(ek, SomeName(), secret);
  ASSERT_TRUE(again.has_value());
  EXPECT_NE(again->credential_blob, made->credential_blob);
  EXPECT_NE(again->encrypted_secret, made->encrypted_secret);
}

TEST(CredentialTest, RefusesAnEccEndorsementKey) {
  PublicArea ek = EndorsementKeyLike();
  ek.area.type = TPM2_ALG_ECC;
  ExpectInvalid(MakeCredential(ek, SomeName(), crypto::RandomBytes(32)), "only RSA endorsement keys");
}

TEST(CredentialTest, RefusesAKeyThatIsNotTheEndorsementKeyTemplate) {
  struct Case {
    void (*change)(TPMT_PUBLIC&);
    const char* reason;
  };
  const Case cases[] = {
      {[](TPMT_PUBLIC& key) { key.objectAttributes &= ~TPMA_OBJECT_RESTRICTED; }, "restricted decryption key"},
      {[](TPMT_PUBLIC& key) { key.objectAttributes &= ~TPMA_OBJECT_DECRYPT; }, "restricted decryption key"},
      {[](TPMT_PUBLIC& key) { key.objectAttributes |= TPMA_OBJECT_SIGN_ENCRYPT; }, "restricted decryption key"},
      {[](TPMT_PUBLIC& key) { key.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL; }, "AES-128-CFB"},
      {[](TPMT_PUBLIC& key) { key.parameters.rsaDetail.symmetric.keyBits.aes = 256; }, "AES-128-CFB"},
      {[](TPMT_PUBLIC& key) { key.parameters.rsaDetail.symmetric.mode.aes = TPM2_ALG_CBC; }, "AES-128-CFB"},
      {[](TPMT_PUBLIC& key) { key.parameters.rsaDetail.scheme.scheme = TPM2_ALG_OAEP; }, "has a scheme"},
      {[](TPMT_PUBLIC& key) { key.nameAlg = TPM2_ALG_SHA384; }, "not SHA-256"},
      {[](TPMT_PUBLIC& key) { key.parameters.rsaDetail.keyBits = 3072; }, "not RSA 2048"},
  };
  for (const Case& test_case : cases) {
    PublicArea ek = EndorsementKeyLike();
    test_case.change(ek.area);
    ExpectInvalid(MakeCredential(ek, SomeName(), crypto::RandomBytes(32)), test_case.reason);
  }
}

TEST(CredentialTest, RefusesSecretsAndNamesOutOfRange) {
  const PublicArea ek = EndorsementKeyLike();
  ExpectInvalid(MakeCredential(ek, SomeName(), {}), "1 to 32 bytes");
  ExpectInvalid(MakeCredential(ek, SomeName(), crypto::RandomBytes(33)), "1 to 32 bytes");
  EXPECT_TRUE(MakeCredential(ek, SomeName(), crypto::RandomBytes(1)).has_value());
  Bytes name = SomeName();
  name.pop_back();
  ExpectInvalid(MakeCredential(ek, name, crypto::RandomBytes(32)), "not a SHA-256 name");
  name = SomeName();
  name[1] = 0x04;  // a SHA-1 name
  ExpectInvalid(MakeCredential(ek, name, crypto::RandomBytes(32)), "not a SHA-256 name");
  ExpectInvalid(MakeCredential(ek, {}, crypto::RandomBytes(32)), "not a SHA-256 name");
}

}  // namespace
}  // namespace citadel::tpm
