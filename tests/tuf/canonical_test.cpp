#include "tuf/canonical.hpp"

#include <gtest/gtest.h>

namespace citadel::tuf {
namespace {

std::string Canonical(const Json& value) {
  auto encoded = EncodeCanonical(value);
  EXPECT_TRUE(encoded) << encoded.error().message();
  return encoded ? *encoded : "";
}

std::string CanonicalText(std::string_view text) {
  auto parsed = ParseJsonStrict(text);
  EXPECT_TRUE(parsed) << parsed.error().message();
  return parsed ? Canonical(*parsed) : "";
}

TEST(CanonicalTest, SortsKeysAndDropsWhitespace) {
  EXPECT_EQ(CanonicalText(R"({ "b" : 1, "a" : [ 3 , 2 ], "c": {"z": null, "y": true, "x": false} })"),
            R"({"a":[3,2],"b":1,"c":{"x":false,"y":true,"z":null}})");
}

TEST(CanonicalTest, SortsKeysByUtf8Bytes) {
  // "B" (0x42) < "a" (0x61) < "é" (0xC3 0xA9): byte order is code point order.
  EXPECT_EQ(CanonicalText(R"({"é":1,"a":2,"B":3})"), "{\"B\":3,\"a\":2,\"\xC3\xA9\":1}");
}

TEST(CanonicalTest, EscapesOnlyQuoteAndBackslash) {
  EXPECT_EQ(Canonical(Json("say \"hi\" \\o/")), R"("say \"hi\" \\o/")");
  // Control characters stay raw: a PEM key's newlines are newline bytes.
  EXPECT_EQ(Canonical(Json("line1\nline2\ttab\r")), std::string("\"line1\nline2\ttab\r\""));
  EXPECT_EQ(Canonical(Json(std::string("nul\0byte", 8))), std::string("\"nul\0byte\"", 10));
  // "/" is not escaped (JSON allows "\/", canonical JSON does not use it).
  EXPECT_EQ(CanonicalText(R"("a\/b")"), R"("a/b")");
}

TEST(CanonicalTest, WritesUnicodeRaw) {
  EXPECT_EQ(CanonicalText(R"("\u00e9\u4e2d\ud83d\ude00")"), "\"\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80\"");
}

TEST(CanonicalTest, IntegersOfAnyMagnitude) {
  EXPECT_EQ(CanonicalText("[0,-1,9007199254740993,-9223372036854775808,18446744073709551615]"),
            "[0,-1,9007199254740993,-9223372036854775808,18446744073709551615]");
}

TEST(CanonicalTest, RefusesFloats) {
  EXPECT_FALSE(EncodeCanonical(Json(1.5)));
  EXPECT_FALSE(EncodeCanonical(ParseJsonStrict("1.0").value()));
  EXPECT_FALSE(EncodeCanonical(ParseJsonStrict(R"({"a":[{"b":1e3}]})").value()));
}

TEST(CanonicalTest, EmptyContainers) {
  EXPECT_EQ(CanonicalText(R"({"a":{},"b":[],"c":""})"), R"({"a":{},"b":[],"c":""})");
}

TEST(CanonicalTest, RefusesExcessiveNesting) {
  Json deep = Json::array();
  for (int i = 0; i < 100; ++i) deep = Json::array({deep});
  EXPECT_FALSE(EncodeCanonical(deep));
}

}  // namespace
}  // namespace citadel::tuf
