// Fuzzes the symbol file parser (src/symbols), which reads what a tenant
// uploads to the service. Properties: nothing crashes; a refusal has a
// reason; an accepted file is within the bounds, writes back to exactly the
// bytes it was parsed from (one spelling per file), and Lookup of any
// offset near its records stays inside the records.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "symbols/symbol_file.hpp"

namespace {

[[noreturn]] void Fail(const char* what) {
  (void)std::fprintf(stderr, "symbol_file_fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace symbols = citadel::symbols;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto modules = symbols::ParseSymbolFile(text);
  if (!modules) {
    if (modules.error().message().empty()) Fail("file refused without a reason");
    return 0;
  }
  if (modules->size() > symbols::kMaxModulesPerFile) Fail("accepted more modules than the bound");
  if (symbols::WriteSymbolFile(*modules) != text) Fail("accepted file does not write back to its bytes");
  for (const auto& module : *modules) {
    for (const auto& function : module.functions) {
      if (function.name.size() > symbols::kMaxNameBytes) Fail("accepted a name above the bound");
      for (std::uint64_t offset :
           {function.start, function.start + function.size - 1, function.start + function.size}) {
        const auto location = symbols::Lookup(module, offset);
        if (offset < function.start + function.size && (!location || location->function != function.name)) {
          Fail("Lookup misses an offset inside a function");
        }
      }
    }
  }
  return 0;
}
