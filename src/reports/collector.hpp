// ReportCollector: the FailureSink citadeld hands to every producer
// (AppManager, UpdateClient, BootRecord). It turns FailureEvents into
// protocol::FailureReports and queues them, behind a per-key rate limit so
// that a crash loop cannot flood the queue or the link
// (docs/ARCHITECTURE.md, "Failure reporting", Rate limit).
//
// Rate limit: per (component id, component version, class, error code) a
// token bucket of `burst` reports refilled one per `refill_interval`, and
// per (component id, version) a bucket of `app_rate_limit` over all its
// kinds, so that an app cycling through error codes (exit-1, exit-2, ...)
// still cannot flood the queue. An event needs a token from both buckets;
// without one it is folded: counted, with its first and last time. The
// version is part of both keys, so a new release's failures are reported
// at once and occurrences are never attributed to another version. The next report
// written for that key carries occurrences = 1 + the folded count and
// occurred_at = the first folded event. Folded counts still pending are
// written as a report of their own once the key's bucket has a token again
// (checked on every Record and on FlushDue) and, whatever the tokens, by
// Flush() (clean shutdown). So the sum of occurrences is the true count.
//
// Threading: all methods may be called from any thread (one mutex; the
// queue's own lock nests inside it). Record never throws and never calls
// back into a producer; it writes at most a few small files.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "common/time.hpp"
#include "reports/failure_event.hpp"
#include "reports/report_queue.hpp"

namespace citadel::reports {

struct RateLimitOptions {
  int burst = 5;
  std::chrono::seconds refill_interval = std::chrono::minutes(10);
};

// Token buckets per key; pure logic over a caller-given `now`. Not
// thread-safe (the collector serializes it). Holds at most kMaxKeys
// buckets: full ones are forgotten first (a full bucket is the state a
// new key starts in anyway).
class RateLimiter {
 public:
  static constexpr std::size_t kMaxKeys = 4096;

  explicit RateLimiter(RateLimitOptions options = {}) : options_(options) {}

  // Takes a token for `key` if it has one at `now`.
  bool TryTake(const std::string& key, TimePoint now);
  // Whether `key` has a token at `now`, without taking it.
  bool HasToken(const std::string& key, TimePoint now);

 private:
  // Whole tokens and the time the next one accrues from: integer steps, so
  // "exactly one interval later" always yields exactly one token.
  struct Bucket {
    int tokens = 0;
    TimePoint refill_from{};
  };
  Bucket& Refill(const std::string& key, TimePoint now);

  RateLimitOptions options_;
  std::map<std::string, Bucket> buckets_;
};

struct CollectorOptions {
  std::string os_version;       // reported in every report
  std::string runtime_version;  // citadeld's version
  RateLimitOptions rate_limit{};
  RateLimitOptions app_rate_limit{20, std::chrono::minutes(1)};
  // The clock for rate limiting (tests inject one); empty: Clock::now.
  std::function<TimePoint()> now{};
};

class ReportCollector final : public FailureSink {
 public:
  // `queue` must outlive the collector.
  ReportCollector(ReportQueue& queue, CollectorOptions options);

  void Record(FailureEvent event) override;

  // Whether app crash reports keep the stack dump (the device group's
  // reporting.crash_dumps; off until the service says otherwise).
  void SetCrashDumps(bool enabled);
  bool CrashDumps() const;

  // Writes the folded counts of every key whose bucket has a token at `now`
  // (the agent calls it at each check-in).
  void FlushDue(TimePoint now);
  // Writes every folded count, tokens or not (clean shutdown).
  void Flush();

  // Events folded into a pending count and not written yet.
  std::int64_t PendingOccurrences() const;

 private:
  struct Pending {
    FailureEvent latest;  // what the flushed report describes
    std::int64_t count = 0;
    TimePoint first{};
    TimePoint last{};
  };

  static std::string KeyOf(const FailureEvent& event);
  static std::string AppKeyOf(const FailureEvent& event);
  // Takes a token from both of the event's buckets, or from neither.
  bool TryTakeLocked(const FailureEvent& event, TimePoint now);
  protocol::FailureReport BuildReport(const FailureEvent& event) const;
  void WriteLocked(const protocol::FailureReport& report);
  void FlushDueLocked(TimePoint now);
  void WritePendingLocked(const Pending& pending);

  ReportQueue& queue_;
  const CollectorOptions options_;
  mutable std::mutex mutex_;
  RateLimiter limiter_;
  RateLimiter app_limiter_;
  std::map<std::string, Pending> pending_;
  bool crash_dumps_ = false;
};

}  // namespace citadel::reports
