#include "common/canonical_json.hpp"

#include <gtest/gtest.h>

namespace citadel {
namespace {

std::string Canonical(std::string_view text) {
  auto parsed = ParseJsonStrict(text);
  EXPECT_TRUE(parsed) << parsed.error().message();
  auto canonical = CanonicalJson(*parsed);
  EXPECT_TRUE(canonical) << canonical.error().message();
  return *canonical;
}

TEST(CanonicalJson, SortsKeysAndDropsWhiteSpace) {
  EXPECT_EQ(Canonical(R"({ "b" : [ true , null ], "a" : 1, "A": {"z": 0, "y": -5} })"),
            R"({"A":{"y":-5,"z":0},"a":1,"b":[true,null]})");
}

TEST(CanonicalJson, EscapesOnlyWhatJcsEscapes) {
  Json value = std::string("q\"b\\s/\n\t\x01\x1f é");
  EXPECT_EQ(*CanonicalJson(value), "\"q\\\"b\\\\s/\\n\\t\\u0001\\u001f é\"");
}

TEST(CanonicalJson, IsAFixedPoint) {
  std::string once = Canonical(R"({"z":[1,{"b":"x","a":[]}],"a":"\u00e9\u0000"})");
  EXPECT_EQ(Canonical(once), once);
}

TEST(CanonicalJson, RefusesFloatsAndUnsafeIntegers) {
  EXPECT_FALSE(CanonicalJson(Json::parse("1.5")));
  EXPECT_FALSE(CanonicalJson(Json::parse("[1e3]")));
  EXPECT_FALSE(CanonicalJson(Json(std::int64_t{1} << 53)));
  EXPECT_FALSE(CanonicalJson(Json(-(std::int64_t{1} << 53))));
  EXPECT_TRUE(CanonicalJson(Json((std::int64_t{1} << 53) - 1)));
  EXPECT_EQ(*CanonicalJson(Json(-7)), "-7");
}

TEST(CanonicalJson, RefusesNestingDeeperThan64InEitherForm) {
  Json deep = 0;
  for (int i = 0; i < 64; ++i) deep = Json::array({deep});
  EXPECT_TRUE(CanonicalJson(deep));
  EXPECT_TRUE(CanonicalJson(deep, CanonicalForm::kOlpc));
  deep = Json::array({deep});
  EXPECT_FALSE(CanonicalJson(deep));
  EXPECT_FALSE(CanonicalJson(deep, CanonicalForm::kOlpc));
}

TEST(CanonicalJson, TheFormsDifferOnlyInEscapesAndIntegerRange) {
  Json value = {{"k", "a\nb\x01"}, {"big", std::int64_t{1} << 60}};
  EXPECT_FALSE(CanonicalJson(value));
  EXPECT_EQ(*CanonicalJson(value, CanonicalForm::kOlpc), "{\"big\":1152921504606846976,\"k\":\"a\nb\x01\"}");
  value.erase("big");
  EXPECT_EQ(*CanonicalJson(value), "{\"k\":\"a\\nb\\u0001\"}");
}

TEST(ParseJsonStrict, RefusesDuplicateKeysAtAnyDepth) {
  auto top = ParseJsonStrict(R"({"a":1,"a":2})");
  ASSERT_FALSE(top);
  EXPECT_NE(top.error().message().find("duplicate key \"a\""), std::string::npos);
  EXPECT_FALSE(ParseJsonStrict(R"({"x":[{"k":1,"k":1}]})"));
  // The same key in sibling objects is fine.
  EXPECT_TRUE(ParseJsonStrict(R"([{"k":1},{"k":2}])"));
}

TEST(ParseJsonStrict, BoundsNesting) {
  std::string deep(40, '[');
  deep += std::string(40, ']');
  auto parsed = ParseJsonStrict(deep);
  ASSERT_FALSE(parsed);
  EXPECT_NE(parsed.error().message().find("nesting"), std::string::npos);
  EXPECT_TRUE(ParseJsonStrict(std::string(10, '[') + std::string(10, ']')));
}

TEST(ParseJsonStrict, RefusesGarbageTrailingBytesAndInvalidUtf8) {
  EXPECT_EQ(ParseJsonStrict("{").error().code(), ErrorCode::kParse);
  EXPECT_FALSE(ParseJsonStrict("{} x"));
  EXPECT_FALSE(ParseJsonStrict("\"\xff\xfe\""));
  EXPECT_FALSE(ParseJsonStrict(""));
  EXPECT_FALSE(ParseJsonStrict("// comment\n{}"));
}

}  // namespace
}  // namespace citadel
