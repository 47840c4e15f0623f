// LoadFilterProgram on its own: citadel-sandbox links this file from
// citadel_seccomp but nothing that uses libseccomp, so the helper that every
// app start execs does not load libseccomp.so (docs/PERFORMANCE.md).
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "seccomp/seccomp_filter.hpp"

namespace citadel::seccomp {

Expected<UniqueFd> LoadFilterProgram(std::string_view program) {
  if (program.empty() || program.size() % sizeof(sock_filter) != 0 ||
      program.size() / sizeof(sock_filter) > BPF_MAXINSNS) {
    return MakeError(ErrorCode::kInvalidArgument, "the seccomp program has " + std::to_string(program.size()) +
                                                      " bytes, not a whole number of at most 4096 BPF instructions");
  }
  // A copy with the alignment the kernel reads it with.
  std::vector<sock_filter> instructions(program.size() / sizeof(sock_filter));
  std::memcpy(instructions.data(), program.data(), program.size());
  sock_fprog fprog{};
  fprog.len = static_cast<unsigned short>(instructions.size());
  fprog.filter = instructions.data();
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     std::string("no_new_privs for the seccomp filter: ") + std::strerror(errno));
  }
  long listener = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &fprog);
  if (listener < 0) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     std::string("loading the seccomp filter failed (") + std::strerror(errno) +
                         "); the kernel needs seccomp user notification (Linux >= 5.0)");
  }
  return UniqueFd(static_cast<int>(listener));
}

}  // namespace citadel::seccomp
