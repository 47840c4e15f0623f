// Symbols of one ELF file, read with libdw (elfutils) on the maker's
// machine by `citadel image pack --symbols` (docs/PROTOCOL.md, "Symbol
// files"). The service never runs this: it only parses the text format.
//
// What is extracted:
//  * the GNU build id (NT_GNU_BUILD_ID note), lower-case hex;
//  * functions: DWARF subprograms with code (low/high pc or ranges; a
//    function split into hot and cold parts gives one record per part),
//    then ELF .symtab FUNC symbols for code that has no DWARF (libc-style
//    assembly, objects built without -g); names demangled;
//  * the DWARF line table, one record per address range.
// Addresses are offsets from the lowest PT_LOAD virtual address (the start
// of the module's first mapping, which is what a crash frame's offset is
// relative to). Overlapping records (aliases, code the linker discarded) are
// dropped so that the result satisfies symbol_file.hpp's invariants: sorted,
// non-overlapping, non-empty, names valid for the format.
//
// Threading: safe to call from several threads on different files.
#pragma once

#include <filesystem>
#include <optional>

#include "common/error.hpp"
#include "symbols/symbol_file.hpp"

namespace citadel::symbols {

// nullopt: not an ELF file, or an ELF file without a build id (a crash
// frame could not be matched to it). An ELF without debug information or
// symbol table gives a module without functions. Errors: kIo when the file
// cannot be read, kParse for an ELF file libelf/libdw refuse.
Expected<std::optional<ModuleSymbols>> ExtractSymbols(const std::filesystem::path& path);

}  // namespace citadel::symbols
