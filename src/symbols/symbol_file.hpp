// Symbol files (docs/PROTOCOL.md, "Symbol files"): functions and line
// tables of ELF modules, keyed by GNU build id, in a small text format.
// The CLI writes them from DWARF (symbols/dwarf_symbols.hpp, on the maker's
// machine); the service parses them (untrusted: a tenant uploads them) and
// looks crash frames up.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace citadel::symbols {

inline constexpr std::size_t kMaxSymbolFileBytes = 64 * 1024 * 1024;
inline constexpr std::size_t kMaxModulesPerFile = 256;
inline constexpr std::size_t kMaxNameBytes = 4096;       // function names, file paths
inline constexpr std::size_t kMaxModuleNameBytes = 256;  // a file name, as in crash reports

struct Function {
  std::uint64_t start = 0;  // offset from the module's load base
  std::uint64_t size = 0;
  std::string name;  // demangled
};

struct Line {
  std::uint64_t start = 0;
  std::uint64_t size = 0;
  std::uint32_t line = 0;
  std::uint32_t file = 0;  // index into ModuleSymbols::files
};

struct ModuleSymbols {
  std::string build_id;  // lower-case hex
  std::string name;      // file name of the ELF
  std::vector<std::string> files;
  std::vector<Function> functions;  // sorted by start, non-overlapping
  std::vector<Line> lines;          // sorted by start
};

// What an offset resolves to. `file` is "" and `line` 0 when the line table
// has no entry for it.
struct Location {
  std::string function;
  std::string file;
  std::uint32_t line = 0;
};

// Strict parse: header line first, every record well-formed, FILE indices
// dense, records sorted, bounded (kMaxSymbolFileBytes, kMaxModulesPerFile,
// kMaxNameBytes). Errors name the line number.
Expected<std::vector<ModuleSymbols>> ParseSymbolFile(std::string_view text);
// The text form of `modules` (sorts nothing: the caller gives sorted data).
std::string WriteSymbolFile(const std::vector<ModuleSymbols>& modules);

// `raw` as a name the format accepts: each byte that is not part of valid
// UTF-8, and each control character, becomes '?'; the result is cut at a
// character boundary to at most `max_bytes` (>= 1) and is never empty. For
// writers whose names come from ELF/DWARF data.
std::string MakeValidName(std::string_view raw, std::size_t max_bytes = kMaxNameBytes);

// Binary search: the function containing `offset`, and the line record
// containing it. nullopt when no function contains it.
std::optional<Location> Lookup(const ModuleSymbols& module, std::uint64_t offset);

}  // namespace citadel::symbols
