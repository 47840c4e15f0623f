#include "common/encoding.hpp"

#include <gtest/gtest.h>

namespace citadel {
namespace {

TEST(Hex, RoundTripsAndRefusesBadInput) {
  Bytes bytes{0x00, 0x01, 0xab, 0xff};
  EXPECT_EQ(HexEncode(bytes), "0001abff");
  EXPECT_EQ(*HexDecode("0001ABff"), bytes);
  EXPECT_FALSE(HexDecode("abc"));
  EXPECT_FALSE(HexDecode("zz"));
  EXPECT_EQ(HexDigitValue('g'), -1);
}

TEST(Base64, MatchesRfc4648Vectors) {
  // RFC 4648 section 10 test vectors.
  const std::pair<const char*, const char*> vectors[] = {{"", ""},        {"f", "Zg=="},        {"fo", "Zm8="},
                                                         {"foo", "Zm9v"}, {"foob", "Zm9vYg=="}, {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(Base64Encode(AsBytes(plain)), encoded);
    auto decoded = Base64Decode(encoded);
    ASSERT_TRUE(decoded);
    EXPECT_EQ(AsText(*decoded), plain);
  }
  EXPECT_FALSE(Base64Decode("Zm9"));
  EXPECT_FALSE(Base64Decode("Zm9*"));
}

TEST(Base64, UrlFormHasNoPaddingOrUnsafeCharacters) {
  Bytes bytes{0xfb, 0xff, 0xfe};
  EXPECT_EQ(Base64Encode(bytes), "+//+");
  EXPECT_EQ(Base64UrlEncode(bytes), "-__-");
  EXPECT_EQ(Base64UrlEncode(AsBytes("f")), "Zg");
}

}  // namespace
}  // namespace citadel
