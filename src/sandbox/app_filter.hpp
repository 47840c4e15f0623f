// The seccomp step of citadel-sandbox, behind one function so the sandbox
// builds (and its other layers can be tested) before src/seccomp exists.
//
// SECURITY: when citadel_seccomp is linked (CITADEL_SANDBOX_HAVE_SECCOMP),
// the filter is always loaded. Only a build without it may skip the step,
// and only when the environment of citadel-sandbox holds
// CITADEL_SANDBOX_TEST_WITHOUT_SECCOMP=1 (Launch forwards that variable in
// such builds only); otherwise the step fails and the app never runs.
//
// Threading: filters the calling thread (citadel-sandbox is single-threaded).
#pragma once

#include "app/policy.hpp"
#include "common/error.hpp"
#include "common/unique_fd.hpp"

namespace citadel::sandbox {

inline constexpr const char* kWithoutSeccompVariable = "CITADEL_SANDBOX_TEST_WITHOUT_SECCOMP";

// True when this build links the seccomp filter.
bool SeccompFilterBuiltIn();

// Loads the app's filter; returns the user-notification fd (invalid only in
// the test mode described above).
[[nodiscard]] Expected<UniqueFd> LoadFilterForApp(const app::Policy& policy);

}  // namespace citadel::sandbox
