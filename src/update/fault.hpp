// Fault injection for the power-cut tests (issue 4, acceptance 3): the update
// client and the app installer call FaultPoint() at every durable step and
// for every chunk they download or write, so a test can kill the runtime at
// exactly the N-th such point and check that it comes back valid.
//
// Environment, read once per process:
//   CITADEL_FAULT_AT=N      the N-th call (1-based, counted over the whole
//                           process) kills the process with SIGKILL, as a
//                           power cut would (nothing is flushed or unwound);
//   CITADEL_FAULT_COUNT=FILE every call appends its label and a newline to
//                           FILE (before the kill, so the last line names the
//                           point that killed it); a test runs an update once
//                           with it to learn how many points the update
//                           crosses, then once per point with CITADEL_FAULT_AT.
// With neither set a call costs one predictable branch.
//
// Labels are "<component>:<step>", e.g. "update:state-written",
// "update:download-chunk", "apps:swap-renamed"; they are for people reading
// the count file, not parsed.
//
// Threading: any thread; the count is one atomic counter per process.
// Library: citadel_update_fault depends on citadel_common only, so the app
// subsystem can call it without linking the update client.
#pragma once

#include <string_view>

namespace citadel::update {

void FaultPoint(std::string_view label);

}  // namespace citadel::update
