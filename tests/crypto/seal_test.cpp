#include <gtest/gtest.h>

#include "crypto/crypto.hpp"

namespace citadel::crypto {
namespace {

SecretBytes MasterKey() {
  const Bytes random = RandomBytes(32);
  return SecretBytes(std::string(AsText(random)));
}

TEST(SealTest, RoundTrip) {
  const SecretBytes master = MasterKey();
  const std::string secret = "-----BEGIN PRIVATE KEY-----\ntenant CA key\n";
  auto sealed = SealSecret(master, secret, "tenant:42/ca");
  ASSERT_TRUE(sealed) << sealed.error().message();
  EXPECT_EQ(sealed->size(), 12 + secret.size() + 16);
  // The plaintext does not appear in the output.
  EXPECT_EQ(AsText(*sealed).find("tenant CA key"), std::string_view::npos);
  auto opened = OpenSecret(master, *sealed, "tenant:42/ca");
  ASSERT_TRUE(opened) << opened.error().message();
  EXPECT_EQ(opened->reveal(), secret);
}

TEST(SealTest, EmptyPlaintextRoundTrips) {
  const SecretBytes master = MasterKey();
  auto sealed = SealSecret(master, "", "");
  ASSERT_TRUE(sealed);
  EXPECT_EQ(sealed->size(), 28U);
  auto opened = OpenSecret(master, *sealed, "");
  ASSERT_TRUE(opened);
  EXPECT_EQ(opened->size(), 0U);
}

TEST(SealTest, FreshNonceEachTime) {
  const SecretBytes master = MasterKey();
  auto a = SealSecret(master, "same", "ad");
  auto b = SealSecret(master, "same", "ad");
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a, *b);
  EXPECT_FALSE(std::equal(a->begin(), a->begin() + 12, b->begin()));
}

TEST(SealTest, WrongAssociatedDataFails) {
  const SecretBytes master = MasterKey();
  auto sealed = SealSecret(master, "secret", "tenant:42/ca");
  ASSERT_TRUE(sealed);
  auto opened = OpenSecret(master, *sealed, "tenant:43/ca");
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code(), ErrorCode::kCrypto);
}

TEST(SealTest, WrongKeyFails) {
  auto sealed = SealSecret(MasterKey(), "secret", "ad");
  ASSERT_TRUE(sealed);
  auto opened = OpenSecret(MasterKey(), *sealed, "ad");
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code(), ErrorCode::kCrypto);
}

TEST(SealTest, AnyFlippedByteFails) {
  const SecretBytes master = MasterKey();
  auto sealed = SealSecret(master, "secret value", "ad");
  ASSERT_TRUE(sealed);
  // Nonce, ciphertext and tag are all authenticated.
  for (std::size_t i = 0; i < sealed->size(); ++i) {
    Bytes tampered = *sealed;
    tampered[i] ^= 0x80;
    auto opened = OpenSecret(master, tampered, "ad");
    ASSERT_FALSE(opened) << "byte " << i;
    EXPECT_EQ(opened.error().code(), ErrorCode::kCrypto);
  }
  Bytes truncated(sealed->begin(), sealed->end() - 1);
  EXPECT_FALSE(OpenSecret(master, truncated, "ad"));
  EXPECT_FALSE(OpenSecret(master, Bytes(27, 0), "ad"));
}

TEST(SealTest, MasterKeyMustBe32Bytes) {
  const SecretBytes short_key(std::string(31, 'k'));
  auto sealed = SealSecret(short_key, "secret", "ad");
  ASSERT_FALSE(sealed);
  EXPECT_EQ(sealed.error().code(), ErrorCode::kInvalidArgument);
  auto opened = OpenSecret(SecretBytes(std::string(33, 'k')), Bytes(40, 0), "ad");
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace citadel::crypto
