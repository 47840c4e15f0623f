// ExtractSymbols (dwarf_symbols.hpp) through libelf and libdw. Every libdw
// and libelf handle is owned by a small RAII type; nothing from the file is
// trusted to be well-formed (the walk is bounded in depth and every address
// is checked before it is made relative).
#include "symbols/dwarf_symbols.hpp"

#include <cxxabi.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwelf.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/encoding.hpp"
#include "common/unique_fd.hpp"

namespace citadel::symbols {
namespace {

// DWARF DIE trees nest namespaces, classes and subprograms; real code stays
// far below this, a hostile file could recurse without end.
constexpr int kMaxDieDepth = 64;

struct ElfCloser {
  void operator()(Elf* elf) const { (void)elf_end(elf); }
};
struct DwarfCloser {
  void operator()(Dwarf* dwarf) const { (void)dwarf_end(dwarf); }
};

std::string Demangle(const char* name) {
  if (name == nullptr) return {};
  int status = -1;
  std::unique_ptr<char, decltype(&std::free)> demangled(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                                        &std::free);
  return status == 0 && demangled ? std::string(demangled.get()) : std::string(name);
}

// A function candidate in link-time virtual addresses.
struct Range {
  std::uint64_t start = 0;
  std::uint64_t end = 0;  // exclusive
  std::string name;
  // From a linkage name (namespace, class and parameters); false for a
  // bare DW_AT_name.
  bool qualified = true;
};

// Keeps, in address order, each range that does not overlap one kept
// before it; empty and inverted ranges go.
std::vector<Range> SortAndDropOverlaps(std::vector<Range> ranges) {
  std::stable_sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.start < b.start; });
  std::vector<Range> kept;
  for (auto& range : ranges) {
    if (range.end <= range.start) continue;
    if (!kept.empty() && range.start < kept.back().end) continue;
    kept.push_back(std::move(range));
  }
  return kept;
}

bool Overlaps(const std::vector<Range>& sorted, const Range& range) {
  auto after = std::upper_bound(sorted.begin(), sorted.end(), range.start,
                                [](std::uint64_t start, const Range& r) { return start < r.start; });
  if (after != sorted.end() && after->start < range.end) return true;
  return after != sorted.begin() && std::prev(after)->end > range.start;
}

// The linkage name, following DW_AT_specification / DW_AT_abstract_origin
// (member functions defined outside their class), demangled: it carries
// the namespace, class and parameters. C functions, and C++ functions with
// internal linkage (anonymous namespaces, lambdas), have only DW_AT_name:
// `qualified` is false then.
std::string DieName(Dwarf_Die* die, bool& qualified) {
  Dwarf_Attribute attribute;
  for (auto name : {DW_AT_linkage_name, DW_AT_MIPS_linkage_name}) {
    if (dwarf_attr_integrate(die, name, &attribute) != nullptr) {
      if (const char* linkage = dwarf_formstring(&attribute)) {
        qualified = true;
        return Demangle(linkage);
      }
    }
  }
  qualified = false;
  const char* plain = dwarf_diename(die);
  return plain != nullptr ? std::string(plain) : std::string();
}

void CollectSubprograms(Dwarf_Die* die, int depth, std::vector<Range>& out) {
  if (depth > kMaxDieDepth) return;
  Dwarf_Die child;
  if (dwarf_child(die, &child) != 0) return;
  do {
    const int tag = dwarf_tag(&child);
    if (tag == DW_TAG_subprogram) {
      bool qualified = false;
      auto name = DieName(&child, qualified);
      if (!name.empty()) {
        // dwarf_ranges covers low/high pc and DW_AT_ranges (hot/cold parts).
        Dwarf_Addr base = 0;
        Dwarf_Addr start = 0;
        Dwarf_Addr end = 0;
        ptrdiff_t offset = 0;
        for (int parts = 0; parts < 1024; ++parts) {
          offset = dwarf_ranges(&child, offset, &base, &start, &end);
          if (offset <= 0) break;
          out.push_back(Range{.start = start, .end = end, .name = name, .qualified = qualified});
        }
      }
    }
    // Functions nest in namespaces, classes and (for local classes and
    // lambdas) in other functions.
    if (tag == DW_TAG_subprogram || tag == DW_TAG_namespace || tag == DW_TAG_class_type ||
        tag == DW_TAG_structure_type || tag == DW_TAG_union_type || tag == DW_TAG_lexical_block) {
      CollectSubprograms(&child, depth + 1, out);
    }
  } while (dwarf_siblingof(&child, &child) == 0);
}

struct LineRow {
  std::uint64_t start = 0;
  std::uint64_t end = 0;
  std::uint32_t line = 0;
  std::string file;
};

void CollectLines(Dwarf_Die* cu_die, std::vector<LineRow>& out) {
  Dwarf_Lines* lines = nullptr;
  std::size_t count = 0;
  if (dwarf_getsrclines(cu_die, &lines, &count) != 0) return;
  // A row covers the addresses up to the next row of its sequence; of
  // several rows at one address only the last covers anything.
  for (std::size_t i = 0; i + 1 < count; ++i) {
    Dwarf_Line* row = dwarf_onesrcline(lines, i);
    Dwarf_Line* next = dwarf_onesrcline(lines, i + 1);
    bool end_sequence = false;
    if (row == nullptr || next == nullptr || dwarf_lineendsequence(row, &end_sequence) != 0 || end_sequence) {
      continue;
    }
    Dwarf_Addr start = 0;
    Dwarf_Addr end = 0;
    int line = 0;
    if (dwarf_lineaddr(row, &start) != 0 || dwarf_lineaddr(next, &end) != 0 || dwarf_lineno(row, &line) != 0) {
      continue;
    }
    const char* file = dwarf_linesrc(row, nullptr, nullptr);
    if (end <= start || line <= 0 || file == nullptr || *file == '\0') continue;
    out.push_back(LineRow{.start = start, .end = end, .line = static_cast<std::uint32_t>(line), .file = file});
  }
}

void CollectSymtabFunctions(Elf* elf, std::vector<Range>& out) {
  Elf_Scn* section = nullptr;
  while ((section = elf_nextscn(elf, section)) != nullptr) {
    GElf_Shdr header;
    if (gelf_getshdr(section, &header) == nullptr || header.sh_type != SHT_SYMTAB || header.sh_entsize == 0) {
      continue;
    }
    Elf_Data* data = elf_getdata(section, nullptr);
    if (data == nullptr) continue;
    const auto count = header.sh_size / header.sh_entsize;
    for (std::size_t i = 0; i < count; ++i) {
      GElf_Sym symbol;
      if (gelf_getsym(data, static_cast<int>(i), &symbol) == nullptr) break;
      if (GELF_ST_TYPE(symbol.st_info) != STT_FUNC || symbol.st_shndx == SHN_UNDEF || symbol.st_size == 0) continue;
      const char* name = elf_strptr(elf, header.sh_link, symbol.st_name);
      if (name == nullptr || *name == '\0') continue;
      if (symbol.st_value > std::numeric_limits<std::uint64_t>::max() - symbol.st_size) continue;
      out.push_back(Range{.start = symbol.st_value,
                          .end = symbol.st_value + symbol.st_size,
                          .name = Demangle(name),
                          .qualified = true});
    }
  }
}

Error ElfError(const std::filesystem::path& path, std::string_view what) {
  return Error(ErrorCode::kParse, path.string() + ": " + std::string(what) + ": " + elf_errmsg(-1));
}

}  // namespace

Expected<std::optional<ModuleSymbols>> ExtractSymbols(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return MakeError(ErrorCode::kIo, "opening " + path.string() + ": " + std::strerror(errno));
  if (elf_version(EV_CURRENT) == EV_NONE) return std::unexpected(ElfError(path, "libelf is too old"));
  std::unique_ptr<Elf, ElfCloser> elf(elf_begin(fd.get(), ELF_C_READ_MMAP, nullptr));
  if (!elf || elf_kind(elf.get()) != ELF_K_ELF) return std::optional<ModuleSymbols>{};

  const void* build_id_bytes = nullptr;
  const auto build_id_size = dwelf_elf_gnu_build_id(elf.get(), &build_id_bytes);
  if (build_id_size <= 0 || build_id_bytes == nullptr) return std::optional<ModuleSymbols>{};

  // The load base: the lowest PT_LOAD virtual address.
  std::size_t header_count = 0;
  if (elf_getphdrnum(elf.get(), &header_count) != 0) return std::unexpected(ElfError(path, "program headers"));
  std::optional<std::uint64_t> base;
  for (std::size_t i = 0; i < header_count; ++i) {
    GElf_Phdr header;
    if (gelf_getphdr(elf.get(), static_cast<int>(i), &header) == nullptr) {
      return std::unexpected(ElfError(path, "program header"));
    }
    if (header.p_type == PT_LOAD && (!base || header.p_vaddr < *base)) base = header.p_vaddr;
  }
  // Without PT_LOAD (an object file) nothing is ever mapped to crash in.
  if (!base) return std::optional<ModuleSymbols>{};

  ModuleSymbols module;
  module.build_id =
      HexEncode({static_cast<const std::uint8_t*>(build_id_bytes), static_cast<std::size_t>(build_id_size)});
  if (module.build_id.size() > 128) return std::optional<ModuleSymbols>{};  // beyond the report bound
  module.name = MakeValidName(path.filename().string(), kMaxModuleNameBytes);

  std::vector<Range> dwarf_functions;
  std::vector<LineRow> line_rows;
  // No DWARF at all is not an error: the symbol table may still name code.
  std::unique_ptr<Dwarf, DwarfCloser> dwarf(dwarf_begin_elf(elf.get(), DWARF_C_READ, nullptr));
  if (dwarf) {
    Dwarf_Off offset = 0;
    Dwarf_Off next = 0;
    std::size_t header_size = 0;
    while (dwarf_nextcu(dwarf.get(), offset, &next, &header_size, nullptr, nullptr, nullptr) == 0) {
      Dwarf_Die cu_die;
      if (dwarf_offdie(dwarf.get(), offset + header_size, &cu_die) != nullptr) {
        CollectSubprograms(&cu_die, 0, dwarf_functions);
        CollectLines(&cu_die, line_rows);
      }
      if (next <= offset) break;  // a unit must move forward
      offset = next;
    }
  }
  std::vector<Range> symtab_functions;
  CollectSymtabFunctions(elf.get(), symtab_functions);

  // DWARF first; symbol table entries fill the gaps it leaves, and name
  // the DWARF functions that have only a bare name (the symbol table's
  // mangled name of a function in an anonymous namespace says where it is).
  auto functions = SortAndDropOverlaps(std::move(dwarf_functions));
  auto symtab = SortAndDropOverlaps(std::move(symtab_functions));
  for (auto& function : functions) {
    if (function.qualified) continue;
    auto same_start = std::lower_bound(symtab.begin(), symtab.end(), function.start,
                                       [](const Range& r, std::uint64_t start) { return r.start < start; });
    if (same_start != symtab.end() && same_start->start == function.start) function.name = same_start->name;
  }
  std::vector<Range> merged = functions;
  for (auto& range : symtab) {
    if (!Overlaps(functions, range)) merged.push_back(std::move(range));
  }
  for (auto& range : SortAndDropOverlaps(std::move(merged))) {
    // Code the linker discarded keeps address 0 (or a tombstone) and would
    // fall below the base; it is not in the mapped module.
    if (range.start < *base) continue;
    module.functions.push_back(
        Function{.start = range.start - *base, .size = range.end - range.start, .name = MakeValidName(range.name)});
  }

  std::stable_sort(line_rows.begin(), line_rows.end(),
                   [](const LineRow& a, const LineRow& b) { return a.start < b.start; });
  std::map<std::string, std::uint32_t, std::less<>> file_indices;
  std::uint64_t lines_end = 0;
  for (auto& row : line_rows) {
    if (row.start < *base || row.start - *base < lines_end) continue;
    auto file = MakeValidName(row.file);
    auto [it, inserted] = file_indices.try_emplace(file, static_cast<std::uint32_t>(module.files.size()));
    if (inserted) module.files.push_back(std::move(file));
    module.lines.push_back(
        Line{.start = row.start - *base, .size = row.end - row.start, .line = row.line, .file = it->second});
    lines_end = row.end - *base;
  }
  return std::optional<ModuleSymbols>(std::move(module));
}

}  // namespace citadel::symbols
