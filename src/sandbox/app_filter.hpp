// The seccomp step of citadel-sandbox, behind one function so the sandbox
// builds (and its other layers can be tested) before src/seccomp exists.
//
// SECURITY: when citadel_seccomp is linked (CITADEL_SANDBOX_HAVE_SECCOMP),
// the filter is always loaded. Only a build without it may skip the step,
// and only when the environment of citadel-sandbox holds
// CITADEL_SANDBOX_TEST_WITHOUT_SECCOMP=1 (Launch forwards that variable in
// such builds only); otherwise the step fails and the app never runs.
//
// Two halves, in two files so that citadel-sandbox links no libseccomp:
// AppFilterProgram (filter_program.cpp) compiles in the caller of Launch()
// (cached per distinct filter); LoadFilterForApp (app_filter.cpp) loads the
// compiled program in citadel-sandbox.
//
// Threading: AppFilterProgram is thread-safe; LoadFilterForApp filters the
// calling thread (citadel-sandbox is single-threaded).
#pragma once

#include <string>
#include <string_view>

#include "app/policy.hpp"
#include "common/error.hpp"
#include "common/unique_fd.hpp"

namespace citadel::sandbox {

inline constexpr const char* kWithoutSeccompVariable = "CITADEL_SANDBOX_TEST_WITHOUT_SECCOMP";

// True when this build links the seccomp filter.
bool SeccompFilterBuiltIn();
// The test mode above: no filter built and the variable set.
bool TestModeWithoutSeccomp();

// The app's filter as compiled BPF (seccomp::BuildAppFilterProgram); empty
// only in the test mode described above.
[[nodiscard]] Expected<std::string> AppFilterProgram(const app::Policy& policy);

// Loads a program from AppFilterProgram; returns the user-notification fd
// (invalid only in the test mode described above). An empty program fails
// outside that mode.
[[nodiscard]] Expected<UniqueFd> LoadFilterForApp(std::string_view program);

}  // namespace citadel::sandbox
