// ExtractSymbols on programs compiled here by the system gcc/g++ (real
// toolchain output, nothing faked), at lines the test knows.
#include "symbols/dwarf_symbols.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "common/file.hpp"
#include "common/subprocess.hpp"
#include "support/must.hpp"
#include "support/temp_dir.hpp"

namespace citadel::symbols {
namespace {

namespace fs = std::filesystem;
using citadel::testing::Must;
using citadel::testing::TempDir;

// Line 5 holds the null store; the test looks its address up.
constexpr std::string_view kCrashySource =
    "#include <stdio.h>\n"                                   // 1
    "static volatile int sink;\n"                            // 2
    "__attribute__((noinline)) void crash_here(int* p) {\n"  // 3
    "  sink = 1;\n"                                          // 4
    "  *p = 42;\n"                                           // 5
    "}\n"                                                    // 6
    "int main(void) {\n"                                     // 7
    "  crash_here((int*)0);\n"                               // 8
    "  return 0;\n"                                          // 9
    "}\n";                                                   // 10

constexpr std::string_view kCppSource =
    "namespace demo {\n"
    "struct Widget {\n"
    "  __attribute__((noinline)) int Spin(int times) const;\n"
    "};\n"
    "int Widget::Spin(int times) const { int s = 0; for (int i = 0; i < times; ++i) s += i; return s; }\n"
    "}  // namespace demo\n"
    "namespace { __attribute__((noinline)) int Helper(int x) { return x * 3 + 1; } }\n"
    "int main(int argc, char**) { return demo::Widget{}.Spin(argc) + Helper(argc); }\n";

void Write(const fs::path& path, std::string_view text) {
  auto written = WriteFileAtomic(path, text);
  ASSERT_TRUE(written) << written.error().message();
}

fs::path Find(std::string_view name) {
  for (const char* dir : {"/usr/bin", "/bin", "/usr/local/bin"}) {
    fs::path candidate = fs::path(dir) / name;
    if (fs::exists(candidate)) return candidate;
  }
  ADD_FAILURE() << name << " is not installed (scripts/install-deps installs build-essential)";
  return {};
}

// Compiles `source` to `output` with `flags`; fails the test on any error.
void Compile(std::string_view compiler, const fs::path& source, const fs::path& output,
             const std::vector<std::string>& flags) {
  std::vector<std::string> argv{Find(compiler).string()};
  argv.insert(argv.end(), flags.begin(), flags.end());
  argv.insert(argv.end(), {source.string(), "-o", output.string()});
  const auto result = Must(RunSubprocess({.argv = argv, .timeout = std::chrono::seconds(60)}));
  ASSERT_EQ(result.exit_code, 0) << result.err;
}

const Function* FindFunction(const ModuleSymbols& module, std::string_view name) {
  auto it = std::find_if(module.functions.begin(), module.functions.end(),
                         [&](const Function& function) { return function.name == name; });
  return it == module.functions.end() ? nullptr : &*it;
}

class DwarfSymbolsTest : public ::testing::Test {
 protected:
  TempDir dir_{"dwarf-symbols"};
};

TEST_F(DwarfSymbolsTest, CProgramWithDebugInfo) {
  const auto source = dir_.path() / "crashy.c";
  Write(source, kCrashySource);
  const auto binary = dir_.path() / "crashy";
  Compile("gcc", source, binary, {"-g", "-O1", "-fPIE", "-pie", "-Wl,--build-id=sha1"});

  const auto module = Must(ExtractSymbols(binary));
  ASSERT_TRUE(module);
  EXPECT_EQ(module->name, "crashy");
  EXPECT_EQ(module->build_id.size(), 40u);  // SHA-1
  const auto* crash_here = FindFunction(*module, "crash_here");
  ASSERT_NE(crash_here, nullptr);
  ASSERT_NE(FindFunction(*module, "main"), nullptr);

  // Somewhere inside crash_here is the store of line 5.
  bool found_line_5 = false;
  for (std::uint64_t offset = crash_here->start; offset < crash_here->start + crash_here->size; ++offset) {
    const auto location = Lookup(*module, offset);
    ASSERT_TRUE(location);
    EXPECT_EQ(location->function, "crash_here");
    if (location->line == 5) {
      found_line_5 = true;
      EXPECT_EQ(fs::path(location->file).filename(), "crashy.c");
    }
  }
  EXPECT_TRUE(found_line_5);

  // What it extracted is a valid symbol file.
  const auto text = WriteSymbolFile({*module});
  const auto parsed = Must(ParseSymbolFile(text));
  ASSERT_EQ(parsed.size(), 1u);
  EXPECT_EQ(parsed[0].functions.size(), module->functions.size());
  EXPECT_EQ(parsed[0].lines.size(), module->lines.size());
}

TEST_F(DwarfSymbolsTest, OffsetsAreRelativeToTheFirstLoadSegment) {
  // A non-PIE executable links at 0x400000; offsets must not include it.
  const auto source = dir_.path() / "crashy.c";
  Write(source, kCrashySource);
  const auto binary = dir_.path() / "crashy-static-address";
  Compile("gcc", source, binary, {"-g", "-O1", "-no-pie", "-fno-pie", "-Wl,--build-id"});
  const auto module = Must(ExtractSymbols(binary));
  ASSERT_TRUE(module);
  const auto* main_function = FindFunction(*module, "main");
  ASSERT_NE(main_function, nullptr);
  EXPECT_LT(main_function->start, 0x400000u);
  EXPECT_GT(main_function->start, 0u);
}

TEST_F(DwarfSymbolsTest, CppNamesAreDemangled) {
  const auto source = dir_.path() / "widget.cpp";
  Write(source, kCppSource);
  const auto binary = dir_.path() / "widget";
  Compile("g++", source, binary, {"-g", "-O1", "-Wl,--build-id"});
  const auto module = Must(ExtractSymbols(binary));
  ASSERT_TRUE(module);
  const auto* spin = FindFunction(*module, "demo::Widget::Spin(int) const");
  ASSERT_NE(spin, nullptr);
  const auto location = Lookup(*module, spin->start);
  ASSERT_TRUE(location);
  EXPECT_EQ(location->line, 5u);
  // Internal linkage: no DWARF linkage name; the symbol table's says where it is.
  EXPECT_NE(FindFunction(*module, "(anonymous namespace)::Helper(int)"), nullptr);
}

TEST_F(DwarfSymbolsTest, SymbolTableWhenThereIsNoDebugInfo) {
  const auto source = dir_.path() / "crashy.c";
  Write(source, kCrashySource);
  const auto binary = dir_.path() / "crashy-nodebug";
  Compile("gcc", source, binary, {"-O1", "-g0", "-Wl,--build-id"});
  const auto module = Must(ExtractSymbols(binary));
  ASSERT_TRUE(module);
  const auto* crash_here = FindFunction(*module, "crash_here");
  ASSERT_NE(crash_here, nullptr);
  const auto location = Lookup(*module, crash_here->start);
  ASSERT_TRUE(location);
  EXPECT_EQ(location->file, "");
  EXPECT_TRUE(module->lines.empty());
}

TEST_F(DwarfSymbolsTest, NoBuildIdOrNotElfIsNothing) {
  const auto source = dir_.path() / "crashy.c";
  Write(source, kCrashySource);
  const auto binary = dir_.path() / "crashy-no-build-id";
  Compile("gcc", source, binary, {"-g", "-Wl,--build-id=none"});
  EXPECT_FALSE(Must(ExtractSymbols(binary)));
  EXPECT_FALSE(Must(ExtractSymbols(source)));  // C text, not ELF
  const auto empty = dir_.path() / "empty";
  Write(empty, "");
  EXPECT_FALSE(Must(ExtractSymbols(empty)));
  const auto object = dir_.path() / "crashy.o";
  Compile("gcc", source, object, {"-g", "-c"});
  EXPECT_FALSE(Must(ExtractSymbols(object)));  // relocatable: no build id, never mapped
}

TEST_F(DwarfSymbolsTest, MissingFileIsAnIoError) {
  const auto result = ExtractSymbols(dir_.path() / "absent");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kIo);
}

TEST_F(DwarfSymbolsTest, TruncatedElfIsRefusedOrEmptyNeverACrash) {
  const auto source = dir_.path() / "crashy.c";
  Write(source, kCrashySource);
  const auto binary = dir_.path() / "crashy";
  Compile("gcc", source, binary, {"-g", "-Wl,--build-id"});
  const auto bytes = Must(ReadFile(binary));
  for (std::size_t cut : {std::size_t{64}, std::size_t{700}, bytes.size() / 2, bytes.size() - 100}) {
    const auto truncated = dir_.path() / ("cut-" + std::to_string(cut));
    Write(truncated, std::string_view(bytes).substr(0, cut));
    const auto result = ExtractSymbols(truncated);
    if (result && *result) {
      // Whatever it made of it still satisfies the format.
      EXPECT_TRUE(ParseSymbolFile(WriteSymbolFile({**result}))) << cut;
    }
  }
}

}  // namespace
}  // namespace citadel::symbols
