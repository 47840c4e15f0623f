// The "crash" request of the app channel (protocol.hpp): what applibs'
// crash handler collected inside a crashing app, parsed into a CrashNotice
// for the runtime (docs/ARCHITECTURE.md, "Failure reporting").
//
// SECURITY: the request comes from the crashing app and is untrusted. It is
// parsed strictly (unknown members refused) with the bounds of
// protocol/failure_report.hpp; a malformed one is refused with EINVAL and
// records nothing. Even a well-formed notice only says what the app claims:
// the signal and exit status the runtime reports come from the kernel, and
// the program counters are resolved to modules by the runtime, not the app.
//
// Threading: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "broker/request.hpp"
#include "common/encoding.hpp"

namespace citadel::broker {

struct CrashNotice {
  std::string component_id;  // set by the broker: the channel's app, never the request
  int signal = 0;            // 1..64
  int signal_code = 0;       // siginfo si_code, -128..128
  std::uint64_t fault_address = 0;
  std::vector<std::pair<std::string, std::uint64_t>> registers;  // <= kMaxCrashRegisters
  // Absolute program counters of the crashing thread, innermost first: the
  // faulting instruction, then return addresses. <= kMaxCrashFrames.
  std::vector<std::uint64_t> pcs;
  std::uint64_t stack_address = 0;  // address of stack[0] (the stack pointer); 0 when stack is empty
  Bytes stack;                      // a copy of the stack from the stack pointer up; may be empty
};

// Parses the arguments of a "crash" request (the whole request object, as
// Request::body). Members: signal, signal_code, fault_address, registers
// ({name: "0x.."}), pcs (["0x..", ...]), and optionally stack_address with
// stack (hex). Everything else is refused, as in every other request.
Checked<CrashNotice> ParseCrashNotice(const Json& body);

}  // namespace citadel::broker
