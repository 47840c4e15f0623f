// Symbol file parser and writer (docs/PROTOCOL.md, "Symbol files").
//
// The parser sees tenant uploads, so it accepts exactly one spelling of each
// record (the one WriteSymbolFile produces): lower-case hex without leading
// zeros, decimal without leading zeros, single spaces, '\n' line ends, and
// within a module FILE records first, then FUNC, then LINE. One spelling per
// file keeps the parser small and lets the fuzzer check that what it accepts
// writes back byte for byte.
#include "symbols/symbol_file.hpp"

#include <algorithm>
#include <charconv>
#include <limits>
#include <set>
#include <string>
#include <system_error>

#include "common/encoding.hpp"

namespace citadel::symbols {
namespace {

constexpr std::string_view kHeader = "CITADEL-SYMBOLS 1";
// Raw build ids are at most 64 bytes (the crash report bound), so 128 hex digits.
constexpr std::size_t kMaxBuildIdHexDigits = 128;

Error LineError(std::size_t line_number, std::string_view what) {
  return Error(ErrorCode::kParse, "symbol file line " + std::to_string(line_number) + ": " + std::string(what));
}

// The next space-separated token; `rest` loses it and the one space after it.
std::string_view NextToken(std::string_view& rest) {
  const auto space = rest.find(' ');
  const auto token = rest.substr(0, space);
  rest = space == std::string_view::npos ? std::string_view{} : rest.substr(space + 1);
  return token;
}

// Lower-case hex, 1..16 digits, no leading zero unless the value is 0.
std::optional<std::uint64_t> ParseHex(std::string_view token) {
  if (token.empty() || token.size() > 16 || (token.size() > 1 && token[0] == '0')) return std::nullopt;
  std::uint64_t value = 0;
  for (char c : token) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return std::nullopt;
    value = (value << 4) | static_cast<std::uint64_t>(HexDigitValue(c));
  }
  return value;
}

std::optional<std::uint32_t> ParseDecimal(std::string_view token) {
  if (token.empty() || token.size() > 10 || (token.size() > 1 && token[0] == '0')) return std::nullopt;
  std::uint32_t value = 0;
  const auto* end = token.data() + token.size();
  const auto [ptr, ec] = std::from_chars(token.data(), end, value);
  if (ec != std::errc{} || ptr != end) return std::nullopt;
  return value;
}

// The length of the valid UTF-8 sequence at name[i] that is not a control
// character, or 0. Names end up in JSON (which must be UTF-8) and on
// terminals (where control characters do harm).
std::size_t ValidSequenceLength(std::string_view name, std::size_t i) {
  const auto c = static_cast<unsigned char>(name[i]);
  if (c < 0x20 || c == 0x7f) return 0;
  if (c < 0x80) return 1;
  std::size_t length = 0;
  std::uint32_t code_point = 0;
  if (c >= 0xc2 && c <= 0xdf) {
    length = 2;
    code_point = c & 0x1fU;
  } else if (c >= 0xe0 && c <= 0xef) {
    length = 3;
    code_point = c & 0x0fU;
  } else if (c >= 0xf0 && c <= 0xf4) {
    length = 4;
    code_point = c & 0x07U;
  } else {
    return 0;
  }
  if (i + length > name.size()) return 0;
  for (std::size_t k = 1; k < length; ++k) {
    const auto continuation = static_cast<unsigned char>(name[i + k]);
    if ((continuation & 0xc0U) != 0x80U) return 0;
    code_point = (code_point << 6) | (continuation & 0x3fU);
  }
  // Overlong forms, surrogates and values above U+10FFFF.
  if ((length == 3 && code_point < 0x800) || (length == 4 && code_point < 0x10000) ||
      (code_point >= 0xd800 && code_point <= 0xdfff) || code_point > 0x10ffff) {
    return 0;
  }
  return length;
}

// A name: 1..kMaxNameBytes of valid UTF-8 without control characters.
std::optional<std::string_view> CheckName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) return "name is empty or longer than 4096 bytes";
  for (std::size_t i = 0; i < name.size();) {
    const auto length = ValidSequenceLength(name, i);
    if (length == 0) {
      const auto c = static_cast<unsigned char>(name[i]);
      return c < 0x20 || c == 0x7f ? "name contains a control character" : "name is not valid UTF-8";
    }
    i += length;
  }
  return std::nullopt;
}

std::string Hex(std::uint64_t value) {
  char buffer[16];
  const auto [ptr, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value, 16);
  return std::string(buffer, ptr);
}

// Records of a module must come in this order; a record never goes back.
enum class Section { kFiles, kFunctions, kLines };

// Parses one record into `module`; the caller has split off the keyword.
class ModuleParser {
 public:
  // Starts the records of `module`, which must outlive the calls until the
  // next Begin.
  void Begin(ModuleSymbols& module) {
    module_ = &module;
    section_ = Section::kFiles;
    functions_end_ = 0;
    lines_end_ = 0;
  }
  bool InModule() const { return module_ != nullptr; }

  std::optional<std::string_view> File(std::string_view rest) {
    if (section_ != Section::kFiles) return "FILE after FUNC or LINE";
    const auto index = ParseDecimal(NextToken(rest));
    if (!index || *index != module_->files.size()) return "FILE index is not the next one (indices are dense)";
    if (auto problem = CheckName(rest)) return problem;
    module_->files.emplace_back(rest);
    return std::nullopt;
  }

  std::optional<std::string_view> Func(std::string_view rest) {
    if (section_ == Section::kLines) return "FUNC after LINE";
    section_ = Section::kFunctions;
    const auto start = ParseHex(NextToken(rest));
    const auto size = ParseHex(NextToken(rest));
    if (!start || !size) return "FUNC start and size must be lower-case hex";
    if (auto problem = CheckRange(*start, *size, functions_end_)) return problem;
    if (auto problem = CheckName(rest)) return problem;
    module_->functions.push_back(Function{.start = *start, .size = *size, .name = std::string(rest)});
    return std::nullopt;
  }

  std::optional<std::string_view> LineRecord(std::string_view rest) {
    section_ = Section::kLines;
    const auto start = ParseHex(NextToken(rest));
    const auto size = ParseHex(NextToken(rest));
    if (!start || !size) return "LINE start and size must be lower-case hex";
    const auto line = ParseDecimal(NextToken(rest));
    const auto file = ParseDecimal(rest);
    if (!line || *line == 0) return "LINE line must be a decimal number >= 1";
    if (!file) return "LINE file index must be a decimal number";
    if (*file >= module_->files.size()) return "LINE file index has no FILE record";
    if (auto problem = CheckRange(*start, *size, lines_end_)) return problem;
    module_->lines.push_back(Line{.start = *start, .size = *size, .line = *line, .file = *file});
    return std::nullopt;
  }

 private:
  // Ranges are non-empty, do not wrap, and start at or after the end of the
  // previous one (sorted, non-overlapping: what Lookup's binary search needs).
  static std::optional<std::string_view> CheckRange(std::uint64_t start, std::uint64_t size,
                                                    std::uint64_t& previous_end) {
    if (size == 0) return "size must not be 0";
    if (start > std::numeric_limits<std::uint64_t>::max() - size) return "start + size overflows";
    if (start < previous_end) return "records are not sorted or overlap the previous one";
    previous_end = start + size;
    return std::nullopt;
  }

  ModuleSymbols* module_ = nullptr;
  Section section_ = Section::kFiles;
  std::uint64_t functions_end_ = 0;
  std::uint64_t lines_end_ = 0;
};

}  // namespace

Expected<std::vector<ModuleSymbols>> ParseSymbolFile(std::string_view text) {
  if (text.size() > kMaxSymbolFileBytes) {
    return MakeError(ErrorCode::kTooLarge, "symbol file is larger than " + std::to_string(kMaxSymbolFileBytes) +
                                               " bytes (" + std::to_string(text.size()) + ")");
  }
  std::vector<ModuleSymbols> modules;
  std::set<std::string, std::less<>> build_ids;
  ModuleParser parser;
  std::size_t line_number = 0;
  std::string_view rest_of_file = text;
  while (!rest_of_file.empty()) {
    ++line_number;
    const auto newline = rest_of_file.find('\n');
    if (newline == std::string_view::npos) return std::unexpected(LineError(line_number, "line does not end in \\n"));
    std::string_view record = rest_of_file.substr(0, newline);
    rest_of_file.remove_prefix(newline + 1);

    if (line_number == 1) {
      if (record != kHeader) {
        return std::unexpected(LineError(line_number, "not a symbol file (expected \"CITADEL-SYMBOLS 1\")"));
      }
      continue;
    }
    const auto keyword = NextToken(record);
    std::optional<std::string_view> problem;
    if (keyword == "MODULE") {
      if (modules.size() == kMaxModulesPerFile) {
        return MakeError(ErrorCode::kTooLarge, "symbol file line " + std::to_string(line_number) + ": more than " +
                                                   std::to_string(kMaxModulesPerFile) + " modules");
      }
      const auto build_id = NextToken(record);
      if (build_id.empty() || build_id.size() > kMaxBuildIdHexDigits || build_id.size() % 2 != 0 ||
          !std::all_of(build_id.begin(), build_id.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); })) {
        problem = "MODULE build id must be 2..128 lower-case hex digits, an even number";
      } else if (!build_ids.insert(std::string(build_id)).second) {
        problem = "MODULE build id appears twice";
      } else if (auto name_problem = CheckName(record)) {
        problem = name_problem;
      } else if (record.size() > kMaxModuleNameBytes || record.find('/') != std::string_view::npos) {
        problem = "MODULE name must be a file name (no '/', at most 256 bytes)";
      } else {
        auto& module = modules.emplace_back();
        module.build_id = build_id;
        module.name = record;
        parser.Begin(module);
      }
    } else if (!parser.InModule()) {
      problem = "a FILE, FUNC or LINE record before the first MODULE";
    } else if (keyword == "FILE") {
      problem = parser.File(record);
    } else if (keyword == "FUNC") {
      problem = parser.Func(record);
    } else if (keyword == "LINE") {
      problem = parser.LineRecord(record);
    } else {
      problem = "unknown record (expected MODULE, FILE, FUNC or LINE)";
    }
    if (problem) return std::unexpected(LineError(line_number, *problem));
  }
  if (line_number == 0) return MakeError(ErrorCode::kParse, "symbol file is empty");
  return modules;
}

std::string WriteSymbolFile(const std::vector<ModuleSymbols>& modules) {
  std::string out(kHeader);
  out += '\n';
  for (const auto& module : modules) {
    out += "MODULE " + module.build_id + ' ' + module.name + '\n';
    for (std::size_t i = 0; i < module.files.size(); ++i) {
      out += "FILE " + std::to_string(i) + ' ' + module.files[i] + '\n';
    }
    for (const auto& function : module.functions) {
      out += "FUNC " + Hex(function.start) + ' ' + Hex(function.size) + ' ' + function.name + '\n';
    }
    for (const auto& line : module.lines) {
      out += "LINE " + Hex(line.start) + ' ' + Hex(line.size) + ' ' + std::to_string(line.line) + ' ' +
             std::to_string(line.file) + '\n';
    }
  }
  return out;
}

std::string MakeValidName(std::string_view raw, std::size_t max_bytes) {
  std::string name;
  for (std::size_t i = 0; i < raw.size();) {
    const auto length = ValidSequenceLength(raw, i);
    const auto piece = length == 0 ? std::string_view("?") : raw.substr(i, length);
    if (name.size() + piece.size() > max_bytes) break;
    name += piece;
    i += length == 0 ? 1 : length;
  }
  return name.empty() ? "?" : name;
}

std::optional<Location> Lookup(const ModuleSymbols& module, std::uint64_t offset) {
  // The last record starting at or before offset is the only one that can
  // contain it (records are sorted and do not overlap).
  const auto function = std::upper_bound(module.functions.begin(), module.functions.end(), offset,
                                         [](std::uint64_t value, const Function& f) { return value < f.start; });
  if (function == module.functions.begin()) return std::nullopt;
  const auto& candidate = *std::prev(function);
  if (offset - candidate.start >= candidate.size) return std::nullopt;

  Location location;
  location.function = candidate.name;
  const auto line = std::upper_bound(module.lines.begin(), module.lines.end(), offset,
                                     [](std::uint64_t value, const Line& l) { return value < l.start; });
  if (line != module.lines.begin()) {
    const auto& line_record = *std::prev(line);
    if (offset - line_record.start < line_record.size && line_record.file < module.files.size()) {
      location.file = module.files[line_record.file];
      location.line = line_record.line;
    }
  }
  return location;
}

}  // namespace citadel::symbols
