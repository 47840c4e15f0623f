// A syscall the seccomp filter refused and reported, as the runtime shows it
// to the operator. Kept apart from the Supervisor so that components which
// only forward reports (broker, AppManager) need not include it.
//
// SECURITY: detail describes the attempt (syscall arguments, addresses); it
// never carries data the app read or wrote.
#pragma once

#include <functional>
#include <string>

namespace citadel::seccomp {

struct Violation {
  std::string component_id;
  std::string syscall;  // e.g. "connect", "mount", "mmap"
  std::string detail;   // e.g. "connect to 127.0.0.2:9 (not in AllowedConnections)"
};

// Called on the Supervisor's thread, before the app's syscall returns: keep
// it short and never block on the app.
using ViolationSink = std::function<void(const Violation&)>;

}  // namespace citadel::seccomp
