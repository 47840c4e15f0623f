// Landlock for the app (raw syscalls: Debian has no library). Applied by
// citadel-sandbox after pivot_root, so the paths are the app's view.
//
// SECURITY: best effort up to the running kernel's ABI: every access right
// the kernel knows is handled (denied unless a rule below grants it); rights
// of newer ABIs are dropped on older kernels, and a kernel without Landlock
// leaves only the other layers (the caller logs that). Rules:
//   read+exec        /app, /usr, /opt/citadel/lib
//   read             /etc, /proc, /dev
//   read+write       /tmp, /mnt/config (no exec, no device/fifo/socket nodes)
//                    and the files /dev/null, /dev/zero, /dev/full
//   net (ABI >= 4)   TCP bind and connect handled with no port allowed
//   scope (ABI >= 6) abstract unix sockets and signals
//
// Threading: restricts the calling thread (citadel-sandbox is single-threaded).
#pragma once

#include "common/error.hpp"

namespace citadel::sandbox {

// The kernel's Landlock ABI version, 0 when Landlock is unavailable.
int LandlockAbi();

// Restricts the calling process. Returns the ABI applied (0: none available).
[[nodiscard]] Expected<int> ApplyAppLandlock(bool with_storage);

}  // namespace citadel::sandbox
