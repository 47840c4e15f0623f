#include "sandbox/app_filter.hpp"

#include <cstdlib>
#include <string_view>

#ifdef CITADEL_SANDBOX_HAVE_SECCOMP
#include "seccomp/seccomp_filter.hpp"
#endif

namespace citadel::sandbox {

bool SeccompFilterBuiltIn() {
#ifdef CITADEL_SANDBOX_HAVE_SECCOMP
  return true;
#else
  return false;
#endif
}

bool TestModeWithoutSeccomp() {
  const char* test_mode = std::getenv(kWithoutSeccompVariable);
  return !SeccompFilterBuiltIn() && test_mode != nullptr && std::string_view(test_mode) == "1";
}

Expected<UniqueFd> LoadFilterForApp(std::string_view program) {
#ifdef CITADEL_SANDBOX_HAVE_SECCOMP
  if (program.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition, "the launch spec carries no seccomp program: refusing to start");
  }
  return seccomp::LoadFilterProgram(program);
#else
  (void)program;
  if (TestModeWithoutSeccomp()) return UniqueFd();
  return MakeError(ErrorCode::kFailedPrecondition,
                   "this build has no seccomp filter (citadel_seccomp was not built): refusing to start apps");
#endif
}

}  // namespace citadel::sandbox
