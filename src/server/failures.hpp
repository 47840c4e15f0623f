// Failure reporting on the service (docs/ARCHITECTURE.md, "Failure
// reporting"): the rules that turn a device's reports into issues. Pure
// functions (signature, title, version order, regression rule, bounded
// decompression) plus the Symbolizer, which resolves crash frames through
// the tenant's uploaded symbol files with a small cache of parsed modules.
// The routes are in api_reports.cpp; the counting is the store's
// (Store::IngestFailureReports), in one transaction per batch.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/canonical_json.hpp"
#include "common/error.hpp"
#include "protocol/failure_report.hpp"
#include "store/store.hpp"
#include "symbols/symbol_file.hpp"

namespace citadel::server {

// A crash frame, with its function and line when the tenant uploaded
// symbols for the module's build id.
struct SymbolizedFrame {
  std::string module;
  std::string build_id;
  std::uint64_t offset = 0;
  std::string function;  // "" when not symbolized
  std::string file;      // "" when the line table has no entry
  std::uint32_t line = 0;
};
// {"module","build_id","offset":"0x..","function","file","line"}; the last
// three only when known.
Json SymbolizedFrameJson(const SymbolizedFrame& frame);

// How many frames (after the crash machinery) make an issue's signature.
inline constexpr std::size_t kSignatureFrames = 3;

// "module!function" once symbolized, "module+0x<offset>" otherwise.
std::string FrameSignatureText(const SymbolizedFrame& frame);

// Frames of the crash machinery rather than of the failing code: applibs'
// signal handler (module libapplibs.so*) and libc's raise/abort (and the
// pthread_kill beneath them). Only leading frames are skipped, so a crash
// inside libc (memcpy on a bad pointer) keeps its libc frame.
bool IsCrashMachineryFrame(const SymbolizedFrame& frame);

// The frames that identify the failure: the crash machinery skipped, at
// most kSignatureFrames.
std::vector<SymbolizedFrame> SignatureFrames(const std::vector<SymbolizedFrame>& frames);

// SHA-256 (lower-case hex) over class, component id, error code and the
// signature frames. Same signature in the same tenant and product = same
// issue.
std::string IssueSignature(const protocol::FailureReport& report, const std::vector<SymbolizedFrame>& frames);

// A one-line summary, e.g. "SIGSEGV in read_sensor (sensor.c:42)",
// "SIGSEGV at crashy+0x1139", "app-exit exit-3", "unplanned-reboot watchdog".
std::string IssueTitle(const protocol::FailureReport& report, const std::vector<SymbolizedFrame>& frames);

// The version a report is counted under: the component's, or the OS
// version for a device-level event (component_id "").
std::string ReportVersion(const protocol::FailureReport& report);

// Orders versions: dot-separated parts, numeric parts numerically (so
// 1.10.0 > 1.9.0), other parts as text; a pre-release ("1.0.0-rc1") is
// before its release; a missing part counts as 0. <0, 0, >0.
int CompareVersions(std::string_view a, std::string_view b);

// The regression rule: a report reopens an issue resolved in
// `resolved_in_version` only when its version is newer. Reports from that
// version or older (devices not updated yet) are counted and leave it
// resolved. An issue resolved with no version on record ("") reopens on any
// report.
bool ReopensResolvedIssue(std::string_view resolved_in_version, std::string_view version);

// The highest of `versions` by CompareVersions; "" when empty.
std::string HighestVersion(const std::vector<std::string>& versions);

// zstd frames (one or several) decompressed with libzstd's streaming API,
// stopping as soon as the output would exceed max_output: kTooLarge then
// (a decompression bomb costs at most max_output bytes; also for a frame
// whose window exceeds 2 MiB, which only a larger output needs), kParse for
// bytes that are not complete zstd frames.
Expected<std::string> DecompressZstdBounded(std::string_view compressed, std::size_t max_output);

// Resolves crash frames through the tenant's symbol modules (Store::
// GetSymbolModule), keeping up to `capacity` parsed modules (least recently
// used evicted). A build id without symbols is remembered for a minute, so
// a crash loop does not re-query the store per frame. Thread-safe.
class Symbolizer {
 public:
  explicit Symbolizer(store::Store& store, std::size_t capacity = 64);

  // Every frame but the first is a return address: looked up at offset - 1.
  std::vector<SymbolizedFrame> Symbolize(std::string_view tenant_id, const std::vector<protocol::CrashFrame>& frames);
  // Drops a cached module (after an upload replaced it).
  void Forget(std::string_view tenant_id, std::string_view build_id);

 private:
  struct Entry {
    std::shared_ptr<const symbols::ModuleSymbols> module;  // null: no symbols
    std::chrono::steady_clock::time_point loaded;
    std::list<std::string>::iterator lru;
  };
  std::shared_ptr<const symbols::ModuleSymbols> Module(std::string_view tenant_id, std::string_view build_id);

  store::Store& store_;
  std::size_t capacity_;
  std::mutex mutex_;
  std::map<std::string, Entry> cache_;  // "<tenant>/<build id>"
  std::list<std::string> lru_;          // most recently used first
};

// One report prepared for Store::IngestFailureReports: symbolized,
// signed, titled; the stored body is the report's JSON with "frames" (the
// symbolized frames) added.
store::FailureReportRecord PrepareReport(const protocol::FailureReport& report, const std::string& product_id,
                                         const std::vector<SymbolizedFrame>& frames, const std::string& new_issue_id);

}  // namespace citadel::server
