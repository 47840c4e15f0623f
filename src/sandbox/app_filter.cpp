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

Expected<UniqueFd> LoadFilterForApp(const app::Policy& policy) {
#ifdef CITADEL_SANDBOX_HAVE_SECCOMP
  return seccomp::LoadAppFilter(policy);
#else
  (void)policy;
  const char* test_mode = std::getenv(kWithoutSeccompVariable);
  if (test_mode != nullptr && std::string_view(test_mode) == "1") return UniqueFd();
  return MakeError(ErrorCode::kFailedPrecondition,
                   "this build has no seccomp filter (citadel_seccomp was not built): refusing to start apps");
#endif
}

}  // namespace citadel::sandbox
