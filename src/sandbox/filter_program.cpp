// AppFilterProgram, apart from app_filter.cpp so that citadel-sandbox (which
// only loads programs) does not link libseccomp. See app_filter.hpp.
#include "sandbox/app_filter.hpp"

#ifdef CITADEL_SANDBOX_HAVE_SECCOMP
#include "seccomp/seccomp_filter.hpp"
#endif

namespace citadel::sandbox {

Expected<std::string> AppFilterProgram(const app::Policy& policy) {
#ifdef CITADEL_SANDBOX_HAVE_SECCOMP
  return seccomp::BuildAppFilterProgram(policy);
#else
  (void)policy;
  if (TestModeWithoutSeccomp()) return std::string();
  return MakeError(ErrorCode::kFailedPrecondition,
                   "this build has no seccomp filter (citadel_seccomp was not built): refusing to start apps");
#endif
}

}  // namespace citadel::sandbox
