#include "boot/program.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/unique_fd.hpp"

namespace citadel::boot {
namespace {

namespace fs = std::filesystem;
constexpr std::size_t kMaxErrorBytes = 4096;
constexpr std::size_t kMaxMessageBytes = 300;

std::string ErrnoText(int error) { return std::strerror(error); }

std::string JoinPath(const std::vector<fs::path>& directories) {
  std::string joined;
  for (const fs::path& directory : directories) {
    if (!joined.empty()) joined += ':';
    joined += directory.string();
  }
  return joined;
}

std::vector<std::string> Argv(const fs::path& tool, const std::vector<std::string>& args) {
  std::vector<std::string> argv;
  argv.reserve(args.size() + 1);
  argv.push_back(tool.string());
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

}  // namespace

Expected<fs::path> FindTool(std::string_view name, std::string_view package, const std::vector<fs::path>& directories) {
  for (const fs::path& directory : directories) {
    fs::path candidate = directory / name;
    std::error_code error;
    if (::access(candidate.c_str(), X_OK) == 0 && fs::is_regular_file(candidate, error)) return candidate;
  }
  return MakeError(ErrorCode::kFailedPrecondition,
                   std::string(name) + " not found in " + JoinPath(directories) + ": install " + std::string(package));
}

Expected<ToolResult> RunTool(const fs::path& tool, const std::vector<std::string>& args,
                             const std::vector<fs::path>& path_directories, std::chrono::milliseconds timeout,
                             std::size_t max_output) {
  return RunSubprocess({.argv = Argv(tool, args),
                        .environment = std::vector<std::string>{"PATH=" + JoinPath(path_directories), "LC_ALL=C"},
                        .timeout = timeout,
                        .max_stdout_bytes = max_output,
                        .stdout_overflow_is_error = true,
                        .max_stderr_bytes = kMaxErrorBytes});
}

Expected<ScratchFile> ScratchFile::Create(std::string_view label, std::string_view contents) {
  std::error_code error;
  fs::path directory = fs::temp_directory_path(error);
  if (error) return MakeError(ErrorCode::kIo, "finding the temporary directory: " + error.message());
  std::string pattern = (directory / ("citadel-" + std::string(label) + "-XXXXXX")).string();
  UniqueFd fd(::mkstemp(pattern.data()));
  if (!fd) return MakeError(ErrorCode::kIo, "creating " + pattern + ": " + ErrnoText(errno));
  ScratchFile file{fs::path(pattern)};
  std::size_t written = 0;
  while (written < contents.size()) {
    ssize_t n = ::write(fd.get(), contents.data() + written, contents.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return MakeError(ErrorCode::kIo, "writing " + pattern + ": " + ErrnoText(errno));
    }
    written += static_cast<std::size_t>(n);
  }
  return file;
}

ScratchFile::~ScratchFile() {
  if (!path_.empty()) (void)::unlink(path_.c_str());
}

std::string DescribeFailure(const fs::path& tool, const std::vector<std::string>& args, const ToolResult& result) {
  std::string detail;
  std::size_t start = 0;
  while (start < result.err.size() && detail.empty()) {
    std::size_t end = result.err.find('\n', start);
    if (end == std::string::npos) end = result.err.size();
    detail = result.err.substr(start, std::min(end - start, kMaxMessageBytes));
    start = end + 1;
  }
  if (detail.empty()) {
    detail = result.exit_code < 0 ? "killed by a signal" : "exit code " + std::to_string(result.exit_code);
  }
  return DescribeCommand(Argv(tool, args)) + ": " + detail;
}

}  // namespace citadel::boot
