#include "server/failures.hpp"

#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <utility>

#include "common/encoding.hpp"
#include "common/log.hpp"
#include "common/time.hpp"
#include "crypto/crypto.hpp"

namespace citadel::server {
namespace {

// A window this size covers any batch the protocol allows (1 MiB) while
// bounding what a hostile frame header can make us allocate.
constexpr int kMaxZstdWindowLog = 21;
constexpr std::size_t kZstdChunk = 64 * 1024;
constexpr std::chrono::seconds kMissingSymbolsTtl{60};

std::string Hex(std::uint64_t value) {
  std::array<char, 16> digits{};
  auto [end, ec] = std::to_chars(digits.data(), digits.data() + digits.size(), value, 16);
  (void)ec;  // 16 hex digits always fit a 64-bit value
  return "0x" + std::string(digits.data(), end);
}

bool StartsWith(std::string_view text, std::string_view prefix) { return text.starts_with(prefix); }

bool IsLibc(std::string_view module) {
  return StartsWith(module, "libc.so") || StartsWith(module, "libc-") || StartsWith(module, "libpthread.so");
}

// "1.2.0-rc1" -> ("1.2.0", "rc1").
std::pair<std::string_view, std::string_view> SplitPrerelease(std::string_view version) {
  // Build metadata ("+abc") does not order versions.
  version = version.substr(0, version.find('+'));
  const auto dash = version.find('-');
  if (dash == std::string_view::npos) return {version, {}};
  return {version.substr(0, dash), version.substr(dash + 1)};
}

std::string_view NextPart(std::string_view& rest) {
  const auto dot = rest.find('.');
  std::string_view part = rest.substr(0, dot);
  rest = dot == std::string_view::npos ? std::string_view() : rest.substr(dot + 1);
  return part;
}

bool IsNumber(std::string_view part) {
  return !part.empty() && part.size() <= 18 &&
         std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int ComparePart(std::string_view a, std::string_view b) {
  if (IsNumber(a) && IsNumber(b)) {
    std::int64_t x = 0;
    std::int64_t y = 0;
    std::from_chars(a.data(), a.data() + a.size(), x);
    std::from_chars(b.data(), b.data() + b.size(), y);
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (IsNumber(a) != IsNumber(b)) return IsNumber(a) ? -1 : 1;  // as in SemVer: numbers first
  const int c = a.compare(b);
  return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

// Compares dot-separated parts; a missing part counts as "0".
int CompareParts(std::string_view a, std::string_view b) {
  // Bounded by the parts of the longer text.
  for (std::size_t guard = 0; guard <= a.size() + b.size() && (!a.empty() || !b.empty()); ++guard) {
    std::string_view x = a.empty() ? std::string_view("0") : NextPart(a);
    std::string_view y = b.empty() ? std::string_view("0") : NextPart(b);
    if (const int c = ComparePart(x, y); c != 0) return c;
  }
  return 0;
}

std::string BaseName(std::string_view path) {
  const auto slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

}  // namespace

Json SymbolizedFrameJson(const SymbolizedFrame& frame) {
  Json json = {{"module", frame.module}, {"build_id", frame.build_id}, {"offset", Hex(frame.offset)}};
  if (!frame.function.empty()) json["function"] = frame.function;
  if (!frame.file.empty()) {
    json["file"] = frame.file;
    json["line"] = frame.line;
  }
  return json;
}

std::string FrameSignatureText(const SymbolizedFrame& frame) {
  if (!frame.function.empty()) return frame.module + "!" + frame.function;
  return frame.module + "+" + Hex(frame.offset);
}

bool IsCrashMachineryFrame(const SymbolizedFrame& frame) {
  if (StartsWith(frame.module, "libapplibs.so")) return true;
  if (!IsLibc(frame.module)) return false;
  static constexpr std::array<std::string_view, 9> kAbortPath = {
      "raise",      "abort",         "__GI_raise",
      "__GI_abort", "pthread_kill",  "__pthread_kill",
      "gsignal",    "__assert_fail", "__pthread_kill_implementation"};
  // An unsymbolized libc frame at the top of the stack is taken for the
  // abort path too: libc builds differ per OS version, so their offsets
  // would split one bug into an issue per OS.
  return frame.function.empty() ||
         std::find(kAbortPath.begin(), kAbortPath.end(), frame.function) != kAbortPath.end() ||
         StartsWith(frame.function, "__pthread_kill");
}

std::vector<SymbolizedFrame> SignatureFrames(const std::vector<SymbolizedFrame>& frames) {
  auto first = std::find_if(frames.begin(), frames.end(),
                            [](const SymbolizedFrame& frame) { return !IsCrashMachineryFrame(frame); });
  std::vector<SymbolizedFrame> kept;
  for (auto it = first; it != frames.end() && kept.size() < kSignatureFrames; ++it) kept.push_back(*it);
  return kept;
}

std::string IssueSignature(const protocol::FailureReport& report, const std::vector<SymbolizedFrame>& frames) {
  // Fields joined by a newline: no field can hold one (the parser refuses
  // control characters), so two different tuples never hash alike.
  std::string text =
      "citadel-issue-signature-1\n" + report.failure_class + "\n" + report.component_id + "\n" + report.error_code;
  for (const SymbolizedFrame& frame : SignatureFrames(frames)) text += "\n" + FrameSignatureText(frame);
  return HexEncode(crypto::Sha256(text));
}

std::string IssueTitle(const protocol::FailureReport& report, const std::vector<SymbolizedFrame>& frames) {
  const auto significant = SignatureFrames(frames);
  const std::string what = report.error_code.empty() ? report.failure_class : report.error_code;
  if (significant.empty()) {
    return report.error_code.empty() ? report.failure_class : report.failure_class + " " + report.error_code;
  }
  const SymbolizedFrame& top = significant.front();
  if (top.function.empty()) return what + " at " + FrameSignatureText(top);
  std::string title = what + " in " + top.function;
  if (!top.file.empty()) title += " (" + BaseName(top.file) + ":" + std::to_string(top.line) + ")";
  return title;
}

std::string ReportVersion(const protocol::FailureReport& report) {
  return report.component_id.empty() ? report.os_version : report.component_version;
}

int CompareVersions(std::string_view a, std::string_view b) {
  const auto [release_a, pre_a] = SplitPrerelease(a);
  const auto [release_b, pre_b] = SplitPrerelease(b);
  if (const int c = CompareParts(release_a, release_b); c != 0) return c;
  if (pre_a.empty() != pre_b.empty()) return pre_a.empty() ? 1 : -1;  // 1.0.0-rc1 < 1.0.0
  if (pre_a.empty()) return 0;
  return CompareParts(pre_a, pre_b);
}

bool ReopensResolvedIssue(std::string_view resolved_in_version, std::string_view version) {
  if (resolved_in_version.empty()) return true;
  return CompareVersions(version, resolved_in_version) > 0;
}

std::string HighestVersion(const std::vector<std::string>& versions) {
  std::string highest;
  for (const std::string& version : versions) {
    if (highest.empty() || CompareVersions(version, highest) > 0) highest = version;
  }
  return highest;
}

Expected<std::string> DecompressZstdBounded(std::string_view compressed, std::size_t max_output) {
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> context(ZSTD_createDCtx(), &ZSTD_freeDCtx);
  if (!context) return MakeError(ErrorCode::kInternal, "cannot create a zstd decompression context");
  if (ZSTD_isError(ZSTD_DCtx_setParameter(context.get(), ZSTD_d_windowLogMax, kMaxZstdWindowLog)) != 0U) {
    return MakeError(ErrorCode::kInternal, "cannot bound the zstd window");
  }
  std::string output;
  std::string chunk(kZstdChunk, '\0');
  ZSTD_inBuffer input{compressed.data(), compressed.size(), 0};
  std::size_t last_result = 1;
  // Each pass consumes input or produces output (else the data is
  // truncated and we stop); output is bounded by max_output, input by its
  // size: the loop ends.
  while (true) {
    ZSTD_outBuffer out{chunk.data(), chunk.size(), 0};
    const std::size_t consumed_before = input.pos;
    last_result = ZSTD_decompressStream(context.get(), &out, &input);
    if (ZSTD_isError(last_result) != 0U && ZSTD_getErrorCode(last_result) == ZSTD_error_frameParameter_windowTooLarge) {
      // Only output larger than any batch needs such a window.
      return MakeError(ErrorCode::kTooLarge, "the zstd frame's window is larger than a batch may be");
    }
    if (ZSTD_isError(last_result) != 0U) {
      return MakeError(ErrorCode::kParse, std::string("the body is not valid zstd: ") + ZSTD_getErrorName(last_result));
    }
    if (output.size() + out.pos > max_output) {
      return MakeError(ErrorCode::kTooLarge,
                       "the body decompresses to more than " + std::to_string(max_output) + " bytes");
    }
    output.append(chunk.data(), out.pos);
    const bool finished_frame = last_result == 0;
    if (input.pos == input.size && finished_frame) break;
    if (input.pos == consumed_before && out.pos == 0) {
      return MakeError(ErrorCode::kParse, "the zstd body is truncated");
    }
  }
  return output;
}

// ---------------------------------------------------------------- Symbolizer

Symbolizer::Symbolizer(store::Store& store, std::size_t capacity)
    : store_(store), capacity_(std::max<std::size_t>(capacity, 1)) {}

std::shared_ptr<const symbols::ModuleSymbols> Symbolizer::Module(std::string_view tenant_id,
                                                                 std::string_view build_id) {
  const std::string key = std::string(tenant_id) + "/" + std::string(build_id);
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mutex_);
    if (auto it = cache_.find(key); it != cache_.end()) {
      const bool stale_miss = !it->second.module && now - it->second.loaded > kMissingSymbolsTtl;
      if (!stale_miss) {
        lru_.splice(lru_.begin(), lru_, it->second.lru);
        return it->second.module;
      }
    }
  }
  // Parsed outside the lock: a big module takes a while, and two threads
  // parsing the same one at worst do the work twice.
  std::shared_ptr<const symbols::ModuleSymbols> module;
  if (auto stored = store_.GetSymbolModule(tenant_id, build_id); stored) {
    auto parsed = symbols::ParseSymbolFile(stored->symbols);
    if (parsed) {
      for (auto& candidate : *parsed) {
        if (candidate.build_id == build_id) {
          module = std::make_shared<const symbols::ModuleSymbols>(std::move(candidate));
          break;
        }
      }
    } else {
      log::Warn("stored symbols do not parse",
                {{"build_id", std::string(build_id)}, {"error", parsed.error().message()}});
    }
  } else if (stored.error().code() != ErrorCode::kNotFound) {
    // Not cached: the store may be back for the next report.
    log::Warn("cannot read symbols", {{"build_id", std::string(build_id)}, {"error", stored.error().message()}});
    return nullptr;
  }
  std::lock_guard lock(mutex_);
  if (auto it = cache_.find(key); it != cache_.end()) {
    lru_.erase(it->second.lru);
    cache_.erase(it);
  }
  lru_.push_front(key);
  cache_[key] = Entry{module, now, lru_.begin()};
  while (cache_.size() > capacity_) {
    cache_.erase(lru_.back());
    lru_.pop_back();
  }
  return module;
}

void Symbolizer::Forget(std::string_view tenant_id, std::string_view build_id) {
  const std::string key = std::string(tenant_id) + "/" + std::string(build_id);
  std::lock_guard lock(mutex_);
  if (auto it = cache_.find(key); it != cache_.end()) {
    lru_.erase(it->second.lru);
    cache_.erase(it);
  }
}

std::vector<SymbolizedFrame> Symbolizer::Symbolize(std::string_view tenant_id,
                                                   const std::vector<protocol::CrashFrame>& frames) {
  std::vector<SymbolizedFrame> result;
  result.reserve(frames.size());
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const protocol::CrashFrame& frame = frames[i];
    SymbolizedFrame symbolized{frame.module, frame.build_id, frame.offset, "", "", 0};
    if (!frame.build_id.empty()) {
      if (auto module = Module(tenant_id, frame.build_id); module) {
        // Return addresses point after the call: look up the call itself.
        const std::uint64_t at = (i > 0 && frame.offset > 0) ? frame.offset - 1 : frame.offset;
        if (auto location = symbols::Lookup(*module, at); location) {
          symbolized.function = location->function;
          symbolized.file = location->file;
          symbolized.line = location->line;
        }
      }
    }
    result.push_back(std::move(symbolized));
  }
  return result;
}

store::FailureReportRecord PrepareReport(const protocol::FailureReport& report, const std::string& product_id,
                                         const std::vector<SymbolizedFrame>& frames, const std::string& new_issue_id) {
  store::FailureReportRecord record;
  record.report_id = report.report_id;
  record.product_id = product_id;
  record.signature = IssueSignature(report, frames);
  record.new_issue_id = new_issue_id;
  record.failure_class = report.failure_class;
  record.component_id = report.component_id;
  record.error_code = report.error_code;
  record.title = IssueTitle(report, frames);
  Json frames_json = Json::array();
  for (const SymbolizedFrame& frame : frames) frames_json.push_back(SymbolizedFrameJson(frame));
  record.frames_json = frames_json.dump();
  record.version = ReportVersion(report);
  record.occurrences = report.occurrences;
  // The parser checked both times; an unparseable one cannot get here.
  auto first = ParseRfc3339(report.occurred_at);
  auto last = ParseRfc3339(report.last_occurred_at);
  record.occurred_at = first ? ToUnixSeconds(*first) : 0;
  record.last_occurred_at = last ? ToUnixSeconds(*last) : record.occurred_at;
  Json body = protocol::FailureReportToJson(report);
  body["frames"] = std::move(frames_json);
  record.body = body.dump();
  return record;
}

}  // namespace citadel::server
