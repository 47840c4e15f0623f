#include "reports/collector.hpp"

#include <algorithm>
#include <utility>

#include "common/encoding.hpp"
#include "common/log.hpp"
#include "crypto/crypto.hpp"

namespace citadel::reports {
namespace {

// Members the strict parser bounds (protocol/failure_report.cpp).
constexpr std::size_t kMaxComponentIdBytes = 128;
constexpr std::size_t kMaxVersionBytes = 64;

std::size_t Utf8SequenceLength(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xe0) == 0xc0 && lead >= 0xc2) return 2;
  if ((lead & 0xf0) == 0xe0) return 3;
  if ((lead & 0xf8) == 0xf0 && lead <= 0xf4) return 4;
  return 0;
}

// Valid UTF-8 of at most max_bytes: invalid bytes become '?' (a message may
// quote what an app wrote) and the cut never splits a character. Overlong
// forms and surrogates are not hunted down: JSON's encoder replaces what
// remains, and the queue checks the result before storing it.
std::string CleanText(std::string_view text, std::size_t max_bytes) {
  std::string out;
  out.reserve(std::min(text.size(), max_bytes));
  std::size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    std::size_t length = Utf8SequenceLength(lead);
    bool valid = length > 0 && i + length <= text.size();
    for (std::size_t j = 1; valid && j < length; ++j) {
      valid = (static_cast<unsigned char>(text[i + j]) & 0xc0) == 0x80;
    }
    if (!valid) length = 1;
    if (out.size() + length > max_bytes) break;
    if (valid) {
      out.append(text.substr(i, length));
    } else {
      out.push_back('?');
    }
    i += length;
  }
  return out;
}

std::string NewReportId() { return HexEncode(crypto::RandomBytes(protocol::kReportIdBytes)); }

}  // namespace

RateLimiter::Bucket& RateLimiter::Refill(const std::string& key, TimePoint now) {
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= kMaxKeys) {
      // Forget the buckets that are full by now: indistinguishable from new.
      for (auto b = buckets_.begin(); b != buckets_.end();) {
        const Bucket& bucket = Refill(b->first, now);
        b = bucket.tokens >= options_.burst ? buckets_.erase(b) : std::next(b);
      }
    }
    return buckets_.emplace(key, Bucket{options_.burst, now}).first->second;
  }
  Bucket& bucket = it->second;
  if (bucket.tokens >= options_.burst) {
    bucket.refill_from = now;  // full: nothing accrues
  } else if (options_.refill_interval <= std::chrono::seconds(0)) {
    bucket.tokens = options_.burst;
    bucket.refill_from = now;
  } else if (now > bucket.refill_from) {
    const auto intervals = (now - bucket.refill_from) / options_.refill_interval;
    if (intervals >= options_.burst - bucket.tokens) {
      bucket.tokens = options_.burst;
      bucket.refill_from = now;
    } else {
      bucket.tokens += static_cast<int>(intervals);
      bucket.refill_from += intervals * options_.refill_interval;
    }
  }
  return bucket;
}

bool RateLimiter::HasToken(const std::string& key, TimePoint now) { return Refill(key, now).tokens > 0; }

bool RateLimiter::TryTake(const std::string& key, TimePoint now) {
  Bucket& bucket = Refill(key, now);
  if (bucket.tokens <= 0) return false;
  bucket.tokens -= 1;
  return true;
}

ReportCollector::ReportCollector(ReportQueue& queue, CollectorOptions options)
    : queue_(queue),
      options_(std::move(options)),
      limiter_(options_.rate_limit),
      app_limiter_(options_.app_rate_limit) {}

std::string ReportCollector::KeyOf(const FailureEvent& event) {
  // '\n' cannot appear in any of them (ids, versions and codes are short tokens).
  return AppKeyOf(event) + '\n' + event.failure_class + '\n' + event.error_code;
}

std::string ReportCollector::AppKeyOf(const FailureEvent& event) {
  return event.component_id + '\n' + event.component_version;
}

bool ReportCollector::TryTakeLocked(const FailureEvent& event, TimePoint now) {
  const std::string key = KeyOf(event);
  const std::string app_key = AppKeyOf(event);
  if (!limiter_.HasToken(key, now) || !app_limiter_.HasToken(app_key, now)) return false;
  return limiter_.TryTake(key, now) && app_limiter_.TryTake(app_key, now);
}

void ReportCollector::SetCrashDumps(bool enabled) {
  std::lock_guard lock(mutex_);
  crash_dumps_ = enabled;
}

bool ReportCollector::CrashDumps() const {
  std::lock_guard lock(mutex_);
  return crash_dumps_;
}

protocol::FailureReport ReportCollector::BuildReport(const FailureEvent& event) const {
  protocol::FailureReport report;
  report.report_id = NewReportId();
  report.failure_class = event.failure_class;
  report.occurred_at = FormatRfc3339(event.time);
  report.last_occurred_at = report.occurred_at;
  report.component_id = CleanText(event.component_id, kMaxComponentIdBytes);
  report.component_version = CleanText(event.component_version, kMaxVersionBytes);
  report.os_version = CleanText(options_.os_version, kMaxVersionBytes);
  report.runtime_version = CleanText(options_.runtime_version, kMaxVersionBytes);
  report.error_code = CleanText(event.error_code, protocol::kMaxErrorCodeBytes);
  report.message = CleanText(event.message, protocol::kMaxReportMessageBytes);
  // Crash details belong to app crashes only (the parser refuses others).
  if (event.crash && event.failure_class == "app-crash") {
    report.crash = *event.crash;
    if (!crash_dumps_) report.crash->dump.reset();
  }
  return report;
}

void ReportCollector::WriteLocked(const protocol::FailureReport& report) {
  auto appended = queue_.Append(report);
  if (!appended) {
    log::Warn("cannot queue a failure report", {{"class", report.failure_class},
                                                {"component_id", report.component_id},
                                                {"error_code", report.error_code},
                                                {"error", appended.error().message()}});
  }
}

void ReportCollector::WritePendingLocked(const Pending& pending) {
  auto report = BuildReport(pending.latest);
  report.occurrences = std::min(pending.count, protocol::kMaxOccurrences);
  report.occurred_at = FormatRfc3339(pending.first);
  report.last_occurred_at = FormatRfc3339(pending.last);
  WriteLocked(report);
}

void ReportCollector::FlushDueLocked(TimePoint now) {
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (TryTakeLocked(it->second.latest, now)) {
      WritePendingLocked(it->second);
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
}

void ReportCollector::Record(FailureEvent event) {
  try {
    std::lock_guard lock(mutex_);
    const TimePoint now = options_.now ? options_.now() : Clock::now();
    if (event.time == TimePoint{}) event.time = now;
    const std::string key = KeyOf(event);
    if (TryTakeLocked(event, now)) {
      auto report = BuildReport(event);
      if (auto it = pending_.find(key); it != pending_.end()) {
        report.occurrences = std::min(1 + it->second.count, protocol::kMaxOccurrences);
        report.occurred_at = FormatRfc3339(it->second.first);
        pending_.erase(it);
      }
      WriteLocked(report);
    } else {
      auto [it, inserted] = pending_.try_emplace(key);
      Pending& pending = it->second;
      if (inserted) pending.first = event.time;
      pending.count += 1;
      pending.last = event.time;
      pending.latest = std::move(event);
    }
    // Other keys whose bucket refilled meanwhile.
    FlushDueLocked(now);
  } catch (const std::exception& error) {
    // Reporting a failure must never become one (bad_alloc, a JSON error).
    log::Error("failure report lost", {{"error", error.what()}});
  }
}

void ReportCollector::FlushDue(TimePoint now) {
  try {
    std::lock_guard lock(mutex_);
    FlushDueLocked(now);
  } catch (const std::exception& error) {
    log::Error("flushing folded failure reports failed", {{"error", error.what()}});
  }
}

void ReportCollector::Flush() {
  try {
    std::lock_guard lock(mutex_);
    for (const auto& [key, pending] : pending_) WritePendingLocked(pending);
    pending_.clear();
  } catch (const std::exception& error) {
    log::Error("flushing folded failure reports failed", {{"error", error.what()}});
  }
}

std::int64_t ReportCollector::PendingOccurrences() const {
  std::lock_guard lock(mutex_);
  std::int64_t total = 0;
  for (const auto& [key, pending] : pending_) total += pending.count;
  return total;
}

}  // namespace citadel::reports
