// Unit tests of the untrusted-message layer (request.hpp): no sockets.
#include "broker/request.hpp"

#include <cerrno>
#include <string>

#include <gtest/gtest.h>

#include "broker/protocol.hpp"

namespace citadel::broker {
namespace {

TEST(RequestTest, ParsesOpAndId) {
  auto request = ParseRequest(R"({"op":"gpio.get","id":7})");
  ASSERT_TRUE(request) << request.error().message;
  EXPECT_EQ(request->op, "gpio.get");
  EXPECT_EQ(request->id, 7U);
}

TEST(RequestTest, RefusesMalformedInputWithEinval) {
  for (const char* text : {"", "{", "[]", "nul", R"({"op":"x"})", R"({"id":1})", R"({"op":5,"id":1})",
                           R"({"op":"x","id":-1})", R"({"op":"x","id":1.5})", R"({"op":"x","id":1,"id":2})",
                           R"({"op":"x","id":1} trailing)", "{\"op\":\"\xff\",\"id\":1}", R"({"op":"","id":1})"}) {
    auto request = ParseRequest(text);
    ASSERT_FALSE(request) << text;
    EXPECT_EQ(request.error().error_number, EINVAL) << text;
  }
}

TEST(RequestTest, RefusesDeepNesting) {
  std::string deep = R"({"op":"x","id":1,"a":)" + std::string(200, '[') + std::string(200, ']') + "}";
  auto request = ParseRequest(deep);
  ASSERT_FALSE(request);
  EXPECT_EQ(request.error().error_number, EINVAL);
}

TEST(RequestTest, RefusesOversizedMessageWithEmsgsize) {
  std::string big(protocol::kMaxMessageBytes + 1, ' ');
  auto request = ParseRequest(big);
  ASSERT_FALSE(request);
  EXPECT_EQ(request.error().error_number, EMSGSIZE);
}

TEST(RequestTest, KeepsTheIdOfARequestWithABadOp) {
  std::optional<std::uint64_t> id;
  auto request = ParseRequest(R"({"op":7,"id":42})", &id);
  ASSERT_FALSE(request);
  EXPECT_EQ(id, 42U);
}

TEST(RequestTest, FieldsAreTypeAndRangeChecked) {
  Json body = Json::parse(R"({"s":"abc","n":5,"neg":-3,"b":true,"hex":"0aFF","badhex":"0g","odd":"abc"})");
  EXPECT_EQ(*StringField(body, "s", 3), "abc");
  EXPECT_FALSE(StringField(body, "s", 2));
  EXPECT_FALSE(StringField(body, "n", 10));
  EXPECT_FALSE(StringField(body, "missing", 10));
  EXPECT_EQ(*UnsignedField(body, "n", 5), 5U);
  EXPECT_FALSE(UnsignedField(body, "n", 4));
  EXPECT_FALSE(UnsignedField(body, "neg", 10));
  EXPECT_EQ(*IntegerField(body, "neg"), -3);
  EXPECT_TRUE(*BoolField(body, "b"));
  EXPECT_FALSE(BoolField(body, "n"));
  EXPECT_EQ(*HexField(body, "hex", 2), (Bytes{0x0a, 0xff}));
  EXPECT_FALSE(HexField(body, "hex", 1));
  EXPECT_FALSE(HexField(body, "badhex", 4));
  EXPECT_FALSE(HexField(body, "odd", 4));
  EXPECT_FALSE(HexField(body, "missing", 4));
  EXPECT_TRUE(HexField(body, "missing", 4, true)->empty());
  auto failure = UnsignedField(body, "s", 1);
  ASSERT_FALSE(failure);
  EXPECT_EQ(failure.error().error_number, EINVAL);
  EXPECT_NE(failure.error().message.find("\"s\""), std::string::npos);
}

TEST(RequestTest, ResponsesCarryIdOkErrnoAndFd) {
  auto ok = Json::parse(OkResponse(3, Json{{"value", 1}}, true));
  EXPECT_EQ(ok["id"], 3);
  EXPECT_EQ(ok["ok"], true);
  EXPECT_EQ(ok["fd"], true);
  EXPECT_EQ(ok["value"], 1);
  auto error = Json::parse(ErrorResponse(std::nullopt, Failure{EACCES, std::string(2000, 'x')}));
  EXPECT_TRUE(error["id"].is_null());
  EXPECT_EQ(error["ok"], false);
  EXPECT_EQ(error["errno"], EACCES);
  EXPECT_LE(error["error"].get<std::string>().size(), 512U);
}

}  // namespace
}  // namespace citadel::broker
