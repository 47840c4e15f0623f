#include "symbols/symbol_file.hpp"

#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "support/must.hpp"

namespace citadel::symbols {
namespace {

using citadel::testing::Must;

ModuleSymbols SampleModule() {
  ModuleSymbols module;
  module.build_id = "0123456789abcdef0123456789abcdef01234567";
  module.name = "crashy";
  module.files = {"/src/crashy/main.c", "/usr/include/stdio.h"};
  module.functions = {
      Function{.start = 0x1000, .size = 0x20, .name = "main"},
      Function{.start = 0x1020, .size = 0x10, .name = "citadel::Crash(int*) const"},
      Function{.start = 0x1100, .size = 0x8, .name = "helper"},
  };
  module.lines = {
      Line{.start = 0x1000, .size = 0x8, .line = 10, .file = 0},
      Line{.start = 0x1008, .size = 0x18, .line = 11, .file = 0},
      Line{.start = 0x1020, .size = 0x10, .line = 42, .file = 1},
  };
  return module;
}

constexpr std::string_view kSampleText =
    "CITADEL-SYMBOLS 1\n"
    "MODULE 0123456789abcdef0123456789abcdef01234567 crashy\n"
    "FILE 0 /src/crashy/main.c\n"
    "FILE 1 /usr/include/stdio.h\n"
    "FUNC 1000 20 main\n"
    "FUNC 1020 10 citadel::Crash(int*) const\n"
    "FUNC 1100 8 helper\n"
    "LINE 1000 8 10 0\n"
    "LINE 1008 18 11 0\n"
    "LINE 1020 10 42 1\n";

TEST(SymbolFileTest, WritesTheDocumentedFormat) { EXPECT_EQ(WriteSymbolFile({SampleModule()}), kSampleText); }

TEST(SymbolFileTest, ParsesWhatItWrites) {
  const auto modules = Must(ParseSymbolFile(kSampleText));
  ASSERT_EQ(modules.size(), 1u);
  const auto& module = modules[0];
  EXPECT_EQ(module.build_id, "0123456789abcdef0123456789abcdef01234567");
  EXPECT_EQ(module.name, "crashy");
  EXPECT_EQ(module.files, SampleModule().files);
  ASSERT_EQ(module.functions.size(), 3u);
  EXPECT_EQ(module.functions[1].name, "citadel::Crash(int*) const");
  EXPECT_EQ(module.functions[1].start, 0x1020u);
  ASSERT_EQ(module.lines.size(), 3u);
  EXPECT_EQ(module.lines[2].line, 42u);
  EXPECT_EQ(module.lines[2].file, 1u);
  EXPECT_EQ(WriteSymbolFile(modules), kSampleText);
}

TEST(SymbolFileTest, SeveralModulesAndEmptyOnes) {
  ModuleSymbols empty;
  empty.build_id = "aa";
  empty.name = "libempty.so";
  const auto text = WriteSymbolFile({SampleModule(), empty});
  const auto modules = Must(ParseSymbolFile(text));
  ASSERT_EQ(modules.size(), 2u);
  EXPECT_EQ(modules[1].name, "libempty.so");
  EXPECT_TRUE(modules[1].functions.empty());
  EXPECT_EQ(Must(ParseSymbolFile("CITADEL-SYMBOLS 1\n")).size(), 0u);
}

TEST(SymbolFileTest, LookupFindsFunctionAndLine) {
  const auto module = SampleModule();
  auto location = Lookup(module, 0x100c);
  ASSERT_TRUE(location);
  EXPECT_EQ(location->function, "main");
  EXPECT_EQ(location->file, "/src/crashy/main.c");
  EXPECT_EQ(location->line, 11u);

  location = Lookup(module, 0x102f);  // last byte of the second function
  ASSERT_TRUE(location);
  EXPECT_EQ(location->function, "citadel::Crash(int*) const");
  EXPECT_EQ(location->file, "/usr/include/stdio.h");
  EXPECT_EQ(location->line, 42u);

  location = Lookup(module, 0x1104);  // a function without line records
  ASSERT_TRUE(location);
  EXPECT_EQ(location->function, "helper");
  EXPECT_EQ(location->file, "");
  EXPECT_EQ(location->line, 0u);
}

TEST(SymbolFileTest, LookupOutsideEveryFunctionIsNothing) {
  const auto module = SampleModule();
  EXPECT_FALSE(Lookup(module, 0));
  EXPECT_FALSE(Lookup(module, 0xfff));
  EXPECT_FALSE(Lookup(module, 0x1030));  // the gap between 0x1030 and 0x1100
  EXPECT_FALSE(Lookup(module, 0x1108));
  EXPECT_FALSE(Lookup(module, ~std::uint64_t{0}));
  EXPECT_FALSE(Lookup(ModuleSymbols{}, 0x1000));
}

TEST(SymbolFileTest, LookupScalesToManyFunctions) {
  ModuleSymbols module;
  module.build_id = "ab";
  module.name = "big";
  for (std::uint64_t i = 0; i < 100000; ++i) {
    module.functions.push_back(Function{.start = i * 16, .size = 8, .name = "f" + std::to_string(i)});
  }
  EXPECT_EQ(Lookup(module, 77777 * 16 + 7)->function, "f77777");
  EXPECT_FALSE(Lookup(module, 77777 * 16 + 8));
}

struct BadInput {
  const char* name;
  std::string text;
  const char* message_part;
};

class SymbolFileRefusesTest : public ::testing::TestWithParam<BadInput> {};

TEST_P(SymbolFileRefusesTest, WithTheLineNumberAndReason) {
  const auto result = ParseSymbolFile(GetParam().text);
  ASSERT_FALSE(result) << GetParam().name;
  EXPECT_NE(result.error().message().find(GetParam().message_part), std::string::npos)
      << GetParam().name << ": " << result.error().message();
}

const std::string kHead = "CITADEL-SYMBOLS 1\nMODULE ab m\n";

INSTANTIATE_TEST_SUITE_P(
    Malformed, SymbolFileRefusesTest,
    ::testing::Values(
        BadInput{"empty", "", "empty"}, BadInput{"wrong header", "CITADEL-SYMBOLS 2\n", "line 1: not a symbol file"},
        BadInput{"no final newline", "CITADEL-SYMBOLS 1", "line 1: line does not end"},
        BadInput{"crlf", "CITADEL-SYMBOLS 1\r\n", "line 1"},
        BadInput{"record before module", "CITADEL-SYMBOLS 1\nFUNC 0 1 f\n", "line 2: a FILE, FUNC or LINE"},
        BadInput{"unknown record", kHead + "PUBLIC 0 1 f\n", "line 3: unknown record"},
        BadInput{"empty line", kHead + "\n", "line 3: unknown record"},
        BadInput{"upper-case build id", "CITADEL-SYMBOLS 1\nMODULE AB m\n", "line 2: MODULE build id"},
        BadInput{"odd build id", "CITADEL-SYMBOLS 1\nMODULE abc m\n", "MODULE build id"},
        BadInput{"long build id", "CITADEL-SYMBOLS 1\nMODULE " + std::string(130, 'a') + " m\n", "MODULE build id"},
        BadInput{"duplicate module", kHead + "MODULE ab n\n", "line 3: MODULE build id appears twice"},
        BadInput{"module name with slash", "CITADEL-SYMBOLS 1\nMODULE ab /bin/m\n", "no '/'"},
        BadInput{"module without name", "CITADEL-SYMBOLS 1\nMODULE ab\n", "name is empty"},
        BadInput{"file index not dense", kHead + "FILE 1 a.c\n", "line 3: FILE index"},
        BadInput{"file index leading zero", kHead + "FILE 00 a.c\n", "FILE index"},
        BadInput{"file after func", kHead + "FUNC 0 1 f\nFILE 0 a.c\n", "line 4: FILE after FUNC"},
        BadInput{"func after line", kHead + "FILE 0 a.c\nLINE 0 1 1 0\nFUNC 0 1 f\n", "line 5: FUNC after LINE"},
        BadInput{"0x prefix", kHead + "FUNC 0x0 1 f\n", "lower-case hex"},
        BadInput{"upper-case hex", kHead + "FUNC A 1 f\n", "lower-case hex"},
        BadInput{"leading zero", kHead + "FUNC 01 1 f\n", "lower-case hex"},
        BadInput{"17 hex digits", kHead + "FUNC 10000000000000000 1 f\n", "lower-case hex"},
        BadInput{"zero size", kHead + "FUNC 0 0 f\n", "size must not be 0"},
        BadInput{"overflow", kHead + "FUNC ffffffffffffffff 2 f\n", "overflows"},
        BadInput{"unsorted", kHead + "FUNC 10 1 f\nFUNC 0 1 g\n", "line 4: records are not sorted"},
        BadInput{"overlap", kHead + "FUNC 0 10 f\nFUNC 8 1 g\n", "overlap"},
        BadInput{"double space", kHead + "FUNC 0  1 f\n", "lower-case hex"},
        BadInput{"func without name", kHead + "FUNC 0 1\n", "name is empty"},
        BadInput{"control character", kHead + "FUNC 0 1 f\tg\n", "control character"},
        BadInput{"bad utf-8", kHead + "FUNC 0 1 f\xff\n", "UTF-8"},
        BadInput{"overlong utf-8", kHead + "FUNC 0 1 \xc0\xaf\n", "UTF-8"},
        BadInput{"surrogate", kHead + "FUNC 0 1 \xed\xa0\x80\n", "UTF-8"},
        BadInput{"truncated utf-8", kHead + "FUNC 0 1 \xe2\x82\n", "UTF-8"},
        BadInput{"long name", kHead + "FUNC 0 1 " + std::string(4097, 'x') + "\n", "longer than 4096"},
        BadInput{"line zero", kHead + "FILE 0 a.c\nLINE 0 1 0 0\n", "LINE line must be"},
        BadInput{"line file missing", kHead + "FILE 0 a.c\nLINE 0 1 1 1\n", "no FILE record"},
        BadInput{"line file not a number", kHead + "FILE 0 a.c\nLINE 0 1 1 x\n", "file index must be"},
        BadInput{"line trailing field", kHead + "FILE 0 a.c\nLINE 0 1 1 0 9\n", "file index must be"},
        BadInput{"line number overflow", kHead + "FILE 0 a.c\nLINE 0 1 4294967296 0\n", "LINE line must be"},
        BadInput{"lines overlap", kHead + "FILE 0 a.c\nLINE 0 4 1 0\nLINE 2 4 1 0\n", "line 5: records"}),
    [](const ::testing::TestParamInfo<BadInput>& param_info) {
      std::string name;
      for (const char* c = param_info.param.name; *c != '\0'; ++c) name += std::isalnum(*c) != 0 ? *c : '_';
      return name;
    });

TEST(SymbolFileTest, RefusesTooManyModules) {
  std::string text = "CITADEL-SYMBOLS 1\n";
  for (std::size_t i = 0; i <= kMaxModulesPerFile; ++i) {
    char id[8];
    (void)std::snprintf(id, sizeof(id), "%04zx", i);
    text += "MODULE " + std::string(id) + " m\n";
  }
  const auto result = ParseSymbolFile(text);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kTooLarge);
}

TEST(SymbolFileTest, RefusesOversizedFilesBeforeReadingThem) {
  const std::string text(kMaxSymbolFileBytes + 1, 'x');
  const auto result = ParseSymbolFile(text);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kTooLarge);
}

TEST(SymbolFileTest, AcceptsUtf8Names) {
  const auto modules = Must(ParseSymbolFile(kHead + "FUNC 0 1 grüße_€_\xf0\x9f\x98\x80\n"));
  EXPECT_EQ(modules[0].functions[0].name, "grüße_€_\xf0\x9f\x98\x80");
}

TEST(SymbolFileTest, MakeValidNameGivesNamesTheParserAccepts) {
  EXPECT_EQ(MakeValidName("main"), "main");
  EXPECT_EQ(MakeValidName("a\tb\xff\xc0\xaf"
                          "c"),
            "a?b???c");
  EXPECT_EQ(MakeValidName(""), "?");
  EXPECT_EQ(MakeValidName("\xe2\x82\xac\xe2\x82\xac", 5), "\xe2\x82\xac");  // cut at a character boundary
  EXPECT_EQ(MakeValidName(std::string(5000, 'x')).size(), kMaxNameBytes);
  const auto modules = Must(ParseSymbolFile(kHead + "FUNC 0 1 " + MakeValidName("x\x01\xed\xa0\x80") + "\n"));
  EXPECT_EQ(modules[0].functions[0].name, "x????");
}

}  // namespace
}  // namespace citadel::symbols
