// Running the bootloader tools (fw_printenv, fw_setenv, grub-editenv):
// RunSubprocess (common/subprocess.hpp) with the boot backends' policy for
// where tools come from and what environment they see.
//
// Internal to src/boot.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "common/subprocess.hpp"

namespace citadel::boot {

// exit_code, out (stdout), err (stderr, cut to a few KiB).
using ToolResult = SubprocessResult;

// The first executable `name` in `directories`, or kFailedPrecondition
// "NAME not found in DIRS: install PACKAGE".
Expected<std::filesystem::path> FindTool(std::string_view name, std::string_view package,
                                         const std::vector<std::filesystem::path>& directories);

// Runs `tool` with `args` (argv[1..]), stdin from /dev/null, an environment
// of only PATH (the given directories) and LC_ALL=C, and no descriptor but
// 0-2 inherited. Kills it and fails with kUnavailable once `timeout` has
// passed; fails with kTooLarge when stdout exceeds max_output bytes; keeps
// the first 4 KiB of stderr. A non-zero exit is not an error here: the
// caller reads exit_code. Safe to call from a multi-threaded process.
Expected<ToolResult> RunTool(const std::filesystem::path& tool, const std::vector<std::string>& args,
                             const std::vector<std::filesystem::path>& path_directories,
                             std::chrono::milliseconds timeout, std::size_t max_output = 256 * 1024);

// A private temporary file (mode 0600, in the system temp directory)
// holding `contents`, removed when the object goes away: the script handed
// to fw_setenv -s, the copy of a GRUB block grub-editenv edits.
class ScratchFile {
 public:
  static Expected<ScratchFile> Create(std::string_view label, std::string_view contents);
  ScratchFile(ScratchFile&& other) noexcept : path_(std::exchange(other.path_, {})) {}
  ScratchFile& operator=(ScratchFile&&) = delete;
  ScratchFile(const ScratchFile&) = delete;
  ScratchFile& operator=(const ScratchFile&) = delete;
  ~ScratchFile();

  const std::filesystem::path& path() const { return path_; }

 private:
  explicit ScratchFile(std::filesystem::path path) : path_(std::move(path)) {}

  std::filesystem::path path_;
};

// "tool arg1 arg2: <first line of stderr, or the exit code>", for messages.
std::string DescribeFailure(const std::filesystem::path& tool, const std::vector<std::string>& args,
                            const ToolResult& result);

}  // namespace citadel::boot
