#include "common/json_fields.hpp"

#include <cstdint>
#include <limits>
#include <string>

#include <gtest/gtest.h>

namespace citadel::json_fields {
namespace {

// The error message of a failed read, or a marker when it did not fail.
template <typename T>
std::string ErrorOf(const Expected<T>& result) {
  if (result.has_value()) return "<no error>";
  EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument);
  return result.error().message();
}

TEST(JsonFields, PathsNameTheValue) {
  EXPECT_EQ(Child("", "Name"), "Name");
  EXPECT_EQ(Child("Capabilities", "Gpio"), "Capabilities.Gpio");
  EXPECT_EQ(Element("Capabilities.Gpio", 3), "Capabilities.Gpio[3]");
  EXPECT_EQ(FieldError("a.b", "bad").error().message(), "a.b: bad");
  EXPECT_EQ(FieldError("", "bad").error().message(), "document: bad");
}

TEST(JsonFields, QuoteEscapesAndBoundsUntrustedText) {
  EXPECT_EQ(Quote("LED1"), "\"LED1\"");
  EXPECT_EQ(Quote(std::string("a\nb\"\\\xff", 6)), "\"a\\x0ab\\x22\\x5c\\xff\"");
  const std::string quoted = Quote(std::string(1000, 'x'));
  EXPECT_LT(quoted.size(), 100U);
  EXPECT_TRUE(quoted.ends_with("...\""));
}

TEST(JsonFields, ExpectObjectRefusesUnknownMembersUnlessTold) {
  const Json value = Json::parse(R"({"a": 1, "extra": 2})");
  EXPECT_EQ(ErrorOf(ExpectObject(value, "root", {"a"})), "root.extra: unknown field");
  EXPECT_EQ(ErrorOf(ExpectObject(value, "root", {"a"}, UnknownFields::kRefuse)), "root.extra: unknown field");
  EXPECT_TRUE(ExpectObject(value, "root", {"a"}, UnknownFields::kIgnore).has_value());
  EXPECT_TRUE(ExpectObject(value, "root", {"a", "extra"}).has_value());
  EXPECT_EQ(ErrorOf(ExpectObject(Json::array(), "", {}, UnknownFields::kIgnore)), "document: expected an object");
}

TEST(JsonFields, FindAndRequire) {
  const Json value = Json::parse(R"({"a": 1})");
  ASSERT_NE(Find(value, "a"), nullptr);
  EXPECT_EQ(*Find(value, "a"), 1);
  EXPECT_EQ(Find(value, "b"), nullptr);
  EXPECT_EQ(Find(Json::array({1}), "a"), nullptr);
  auto present = Require(value, "root", "a");
  ASSERT_TRUE(present.has_value());
  EXPECT_EQ(**present, 1);
  EXPECT_EQ(ErrorOf(Require(value, "root", "b")), "root.b: missing field");
}

TEST(JsonFields, ReadStringChecksTypeLengthAndEmptiness) {
  EXPECT_EQ(*ReadString(Json("abc"), "s", 3), "abc");
  EXPECT_EQ(ErrorOf(ReadString(Json("abcd"), "s", 3)), "s: is 4 bytes; the limit is 3");
  EXPECT_EQ(ErrorOf(ReadString(Json(3), "s", 3)), "s: expected a string");
  EXPECT_EQ(ErrorOf(ReadString(Json(""), "s", 3)), "s: must not be empty");
  EXPECT_EQ(*ReadString(Json(""), "s", 3, /*allow_empty=*/true), "");
}

TEST(JsonFields, ReadIntegerChecksTypeAndRange) {
  EXPECT_EQ(*ReadInteger(Json(4), "n", 1, 4), 4);
  EXPECT_EQ(*ReadInteger(Json(-3), "n", -5, 0), -3);
  EXPECT_EQ(ErrorOf(ReadInteger(Json(5), "n", 1, 4)), "n: 5 is out of range (1..4)");
  EXPECT_EQ(ErrorOf(ReadInteger(Json(0), "n", 1, 4)), "n: 0 is out of range (1..4)");
  EXPECT_EQ(ErrorOf(ReadInteger(Json(-1), "n", 0, 4)), "n: -1 is out of range (0..4)");
  EXPECT_EQ(ErrorOf(ReadInteger(Json(1.0), "n", 1, 4)), "n: expected an integer (1..4)");
  EXPECT_EQ(ErrorOf(ReadInteger(Json("1"), "n", 1, 4)), "n: expected an integer (1..4)");
  // The parser stores non-negative numbers as unsigned: values above
  // INT64_MAX, and any non-negative value against a negative maximum, are
  // out of range rather than wrapped.
  const Json huge = Json::parse("18446744073709551615");
  EXPECT_EQ(ErrorOf(ReadInteger(huge, "n", 0, std::numeric_limits<std::int64_t>::max())),
            "n: 18446744073709551615 is out of range (0..9223372036854775807)");
  EXPECT_EQ(ErrorOf(ReadInteger(Json::parse("5"), "n", -10, -1)), "n: 5 is out of range (-10..-1)");
}

TEST(JsonFields, ReadBool) {
  EXPECT_TRUE(*ReadBool(Json(true), "b"));
  EXPECT_FALSE(*ReadBool(Json(false), "b"));
  EXPECT_EQ(ErrorOf(ReadBool(Json(1), "b")), "b: expected true or false");
}

TEST(JsonFields, ExpectArrayChecksTypeAndSize) {
  EXPECT_TRUE(ExpectArray(Json::array({1, 2}), "a", 2).has_value());
  EXPECT_EQ(ErrorOf(ExpectArray(Json::array({1, 2, 3}), "a", 2)), "a: has 3 entries; the limit is 2");
  EXPECT_EQ(ErrorOf(ExpectArray(Json::object(), "a", 2)), "a: expected an array");
}

}  // namespace
}  // namespace citadel::json_fields
