// Turns the absolute program counters an app's crash handler sent into
// frames a symbolizer can use: {module file name, GNU build id, offset from
// the module's load base} (docs/PROTOCOL.md, "Failure reports"), read from
// the live process: /proc/<pid>/maps for the modules, and each module's ELF
// build-id note read from the very file that is mapped
// (/proc/<pid>/map_files/<range>, or /proc/<pid>/root/<path> resolved inside
// the app's root), with libelf.
//
// SECURITY: the process is a crashing, untrusted app. The runtime, not the
// app, decides modules and build ids: the app supplies only addresses.
// Paths are resolved inside the app's root (RESOLVE_IN_ROOT, no magic
// links), so a symlink the app planted cannot make citadeld read one of its
// own files; reads are bounded (maps text, note sizes).
//
// Threading: pure functions over /proc; call them while the app is alive
// (its handler waits for the broker's answer).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "protocol/failure_report.hpp"

namespace citadel::apps {

// One line of /proc/<pid>/maps.
struct MemoryMapping {
  std::uint64_t start = 0;
  std::uint64_t end = 0;  // exclusive
  std::uint64_t file_offset = 0;
  std::string path;  // "" for anonymous memory; "[vdso]" and the like as the kernel names them
};

// Parses maps text; malformed lines are skipped. " (deleted)" is stripped.
std::vector<MemoryMapping> ParseProcMaps(std::string_view text);

// The GNU build id (lower-case hex) from an ELF file's PT_NOTE segments, ""
// when it has none; an error when it is not an ELF file.
Expected<std::string> ReadBuildId(int fd);

// Frames for `pcs` (innermost first) of process `pid`. A PC in no file
// mapping becomes module "[unknown]" with the absolute address as offset.
// Errors only when /proc/<pid>/maps cannot be read (the process is gone).
Expected<std::vector<protocol::CrashFrame>> ResolveCrashFrames(pid_t pid, std::span<const std::uint64_t> pcs);

}  // namespace citadel::apps
