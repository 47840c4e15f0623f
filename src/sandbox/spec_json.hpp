// The launch spec as it crosses from Launch() to citadel-sandbox: JSON on a
// pipe. PolicyToJson/PolicyFromJson carry every Policy field, so
// citadel-sandbox enforces the same Policy the caller built; the seccomp
// filter travels compiled (hex), built from that Policy by Launch().
//
// Threading: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "app/policy.hpp"
#include "common/canonical_json.hpp"
#include "common/error.hpp"
#include "sandbox/sandbox.hpp"

namespace citadel::sandbox {

// Bound on the spec text citadel-sandbox reads.
inline constexpr std::size_t kMaxSpecBytes = 1u << 20;

Json PolicyToJson(const app::Policy& policy);
[[nodiscard]] Expected<app::Policy> PolicyFromJson(const Json& json);

// Everything in a LaunchSpec except the file descriptors and sandbox_exe.
[[nodiscard]] Expected<std::string> LaunchSpecToJson(const LaunchSpec& spec);
[[nodiscard]] Expected<LaunchSpec> LaunchSpecFromJson(std::string_view text);

// The UTS host name for an app name: lower-case letters, digits and '-',
// at most 63 characters, never empty.
std::string SanitisedHostname(std::string_view app_name);

}  // namespace citadel::sandbox
