#include <gtest/gtest.h>

#include <set>

#include "crypto/crypto.hpp"

namespace citadel::crypto {
namespace {

TEST(Sha256Test, KnownAnswers) {
  // FIPS 180-2 appendix B.1 and the empty string.
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const std::string abc = "abc";
  EXPECT_EQ(Sha256(AsBytes(abc)), Sha256(std::string_view(abc)));
}

TEST(RandomBytesTest, LengthAndVariety) {
  EXPECT_TRUE(RandomBytes(0).empty());
  EXPECT_EQ(RandomBytes(33).size(), 33U);
  std::set<Bytes> seen;
  for (int i = 0; i < 16; ++i) seen.insert(RandomBytes(16));
  EXPECT_EQ(seen.size(), 16U);
}

TEST(ConstantTimeEqualTest, ComparesContentAndLength) {
  EXPECT_TRUE(ConstantTimeEqual("", ""));
  EXPECT_TRUE(ConstantTimeEqual("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEqual("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEqual("secret", "secret!"));
  EXPECT_FALSE(ConstantTimeEqual("", "x"));
  const Bytes a{1, 2, 3};
  const Bytes b{1, 2, 4};
  EXPECT_TRUE(ConstantTimeEqual(a, a));
  EXPECT_FALSE(ConstantTimeEqual(a, b));
}

TEST(SecretBytesTest, MoveTransfersAndEmptiesSource) {
  SecretBytes a(std::string("short"));
  SecretBytes b(std::move(a));
  EXPECT_EQ(b.reveal(), "short");
  EXPECT_EQ(a.size(), 0U);  // NOLINT(bugprone-use-after-move): checked on purpose

  SecretBytes c(std::string(100, 'k'));
  c = std::move(b);
  EXPECT_EQ(c.reveal(), "short");
  EXPECT_EQ(b.size(), 0U);  // NOLINT(bugprone-use-after-move)
}

}  // namespace
}  // namespace citadel::crypto
