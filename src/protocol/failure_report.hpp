// Failure reports: what a device tells the service about failures in the
// field (docs/PROTOCOL.md, "Failure reports"). The same JSON is the
// device's on-disk queue record and the body of POST /v1/device/reports.
//
// Untrusted input on both ends: the service parses what a device sends and
// the device reads back its queue files after a power cut. The parser is
// strict (unknown members refused, every string and array bounded) and a
// refused report names the field and the reason.
//
// What is trustworthy: the device runtime writes every member; for an app
// crash the signal and exit status come from the kernel (waitid), while
// registers, frames and the stack dump were collected inside the crashing
// app (applibs' handler) and checked only for shape: a hostile app can make
// its own reports lie, never another app's or the device's.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/canonical_json.hpp"
#include "common/encoding.hpp"
#include "common/error.hpp"

namespace citadel::protocol {

inline constexpr std::size_t kMaxReportsPerBatch = 32;
// A batch as JSON (after decompression), and compressed on the wire.
inline constexpr std::size_t kMaxReportBatchBytes = 1024 * 1024;
inline constexpr std::size_t kMaxCompressedReportBatchBytes = 256 * 1024;
inline constexpr std::size_t kMaxCrashFrames = 64;
inline constexpr std::size_t kMaxCrashRegisters = 64;
inline constexpr std::size_t kMaxCrashDumpBytes = 64 * 1024;  // raw stack bytes (base64 on the wire)
inline constexpr std::size_t kMaxReportMessageBytes = 1024;
inline constexpr std::size_t kMaxErrorCodeBytes = 128;
inline constexpr std::size_t kMaxModuleNameBytes = 256;
inline constexpr std::size_t kMaxBuildIdBytes = 64;  // raw bytes; GNU build ids are 20 (SHA-1) or 16
inline constexpr std::size_t kReportIdBytes = 16;    // 32 lower-case hex characters
inline constexpr std::int64_t kMaxOccurrences = 1'000'000'000;

// The event classes, in the order docs/PROTOCOL.md describes them.
inline constexpr std::array<std::string_view, 7> kFailureClasses = {
    "app-crash",          // an app died of a signal (error_code "SIGSEGV", ...)
    "app-exit",           // an app exited with a non-zero status ("exit-3")
    "restart-loop",       // an app kept failing and its restarts reached the backoff cap
    "sandbox-violation",  // refused system call or capability ("seccomp:ptrace", "connect"), or a seccomp kill
    "runtime-error",      // citadeld itself: an app that cannot start, a runtime restart
    "unplanned-reboot",   // error_code "watchdog" | "kernel-panic" | "power-loss"
    "update-failure",     // error_code = the update stage that failed ("downloading", "installing", ...)
};
bool IsFailureClass(std::string_view name);

// One frame of the crashing thread: the module (ELF file) the address falls
// in and the offset from the module's load base (the address minus the
// start of the module's first mapping; for return addresses, the return
// address itself: symbolizers look up offset - 1 for every frame but the
// first).
struct CrashFrame {
  std::string module;    // file name of the ELF, e.g. "crashy" or "libc.so.6"
  std::string build_id;  // lower-case hex GNU build id, "" when the module has none
  std::uint64_t offset = 0;
};

// A bounded copy of the crashing thread's stack from its stack pointer up,
// sent only when the device group enables crash dumps.
struct CrashDump {
  std::uint64_t stack_address = 0;  // address of stack[0] (the stack pointer)
  Bytes stack;                      // <= kMaxCrashDumpBytes
};

struct CrashDetails {
  int signal = 0;       // 1..64
  int signal_code = 0;  // siginfo si_code
  std::uint64_t fault_address = 0;
  std::vector<std::pair<std::string, std::uint64_t>> registers;  // name -> value, <= kMaxCrashRegisters
  std::vector<CrashFrame> frames;                                // innermost first, <= kMaxCrashFrames
  std::optional<CrashDump> dump{};
};

struct FailureReport {
  std::string report_id;      // 32 lower-case hex, random: the service's idempotency key per device
  std::string failure_class;  // one of kFailureClasses
  std::string occurred_at;    // RFC 3339: first occurrence this report covers
  std::string last_occurred_at;
  // 1 + the occurrences the device's rate limit folded into this report.
  std::int64_t occurrences = 1;
  std::string component_id;  // the app's component id; "" for device-level events
  std::string component_version;
  std::string os_version;
  std::string runtime_version;
  std::string error_code;  // short and stable: part of the issue signature
  std::string message;     // for humans, <= kMaxReportMessageBytes
  std::optional<CrashDetails> crash{};
};
Json FailureReportToJson(const FailureReport& report);
Expected<FailureReport> FailureReportFromJson(const Json& value, std::string_view path = "");
Expected<FailureReport> ParseFailureReport(std::string_view text);

// POST /v1/device/reports body.
struct ReportBatch {
  std::vector<FailureReport> reports;  // 1..kMaxReportsPerBatch, oldest first
  // Reports the device's queue dropped (full, oldest first) since it last
  // had a batch acknowledged: the service adds them to the device's count.
  std::int64_t dropped = 0;
};
Json ReportBatchToJson(const ReportBatch& batch);
// `body` is the JSON (already decompressed). kTooLarge beyond
// kMaxReportBatchBytes, kParse for malformed JSON, kInvalidArgument naming
// the field otherwise.
Expected<ReportBatch> ParseReportBatch(std::string_view body);

// 200 reply: the ids of the batch's reports the service has durably
// recorded now or earlier (a retried batch is acknowledged again and counts
// once). The device deletes exactly these from its queue.
struct ReportBatchReply {
  std::vector<std::string> acknowledged;
};
Json ReportBatchReplyToJson(const ReportBatchReply& reply);
Expected<ReportBatchReply> ParseReportBatchReply(std::string_view body);

// Signal names as reports spell them ("SIGSEGV"); "SIG<n>" for others.
std::string SignalName(int signal);

}  // namespace citadel::protocol
