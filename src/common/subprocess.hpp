// Running an external program for its result (mkfs.ext4, fw_setenv,
// grub-editenv, a client under test): fork/exec of an argv without a
// shell, bounded in time and in captured output.
//
// The program gets exactly argv and the environment given (or this
// process's), stdin from the given bytes or /dev/null, stdout and stderr
// into pipes read here, and no other descriptor (everything from 3 up is
// closed before exec, whatever its close-on-exec flag). It is never left
// running: past the timeout it is killed with SIGKILL and reaped.
//
// Thread safety: safe to call from several threads of a multi-threaded
// process: the child runs only async-signal-safe calls between fork and
// exec. While it writes the program's stdin, the calling thread blocks
// SIGPIPE for itself, so a program that does not read its input cannot
// kill the caller.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "common/error.hpp"

namespace citadel {

struct SubprocessOptions {
  // argv[0] is the program's path (relative to the working directory or
  // absolute): it is not looked up in PATH, and a bare name is refused.
  std::vector<std::string> argv;
  // The whole environment, "NAME=value" entries; nullopt: this process's.
  std::optional<std::vector<std::string>> environment{};
  // Written to the program's stdin, which is then closed; nullopt: stdin
  // is /dev/null. A program that exits without reading it all is not an
  // error.
  std::optional<std::string> stdin_data{};
  // From start to reaping: past it the program is killed and the call
  // fails with kUnavailable.
  std::chrono::milliseconds timeout{30'000};
  // Bytes of stdout kept. More fails the call with kTooLarge (and kills the
  // program) when stdout_overflow_is_error, else the rest is read and
  // dropped and out_truncated is set.
  std::size_t max_stdout_bytes = 256 * 1024;
  bool stdout_overflow_is_error = true;
  // Bytes of stderr kept; the rest is read and dropped (err_truncated).
  std::size_t max_stderr_bytes = 4096;
  // stderr into the same pipe as stdout, interleaved as written (and bound
  // by max_stdout_bytes); err stays empty.
  bool merge_stderr_into_stdout = false;
};

struct SubprocessResult {
  int exit_code = -1;  // the exit status; -1 when killed by a signal
  std::string out;     // stdout (with stderr when merged)
  std::string err;     // stderr
  bool out_truncated = false;
  bool err_truncated = false;
};

// Runs the program and waits for it. A non-zero exit is not an error here:
// the caller reads exit_code. A program that cannot be executed (missing,
// not executable) exits with 127 and "exec failed" on stderr, as from a
// shell. Errors: kInvalidArgument for an empty argv or a bare program
// name; kUnavailable when the timeout passed; kTooLarge for stdout over
// its bound (see above); kIo when the pipes or the process cannot be made.
[[nodiscard]] Expected<SubprocessResult> RunSubprocess(const SubprocessOptions& options);

// "name arg1 arg2" (argv[0] without its directory), for messages.
std::string DescribeCommand(const std::vector<std::string>& argv);

}  // namespace citadel
