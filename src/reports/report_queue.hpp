// ReportQueue: the device's bounded, power-cut-safe queue of failure
// reports (docs/ARCHITECTURE.md, "Failure reporting", Queue).
//
// Layout of the directory it owns (STATE/reports/):
//   <16-digit sequence>.json   one report each (protocol::FailureReport JSON),
//                              written with WriteFileAtomic (temporary file,
//                              fsync, rename, directory fsync)
//   dropped.json               {"dropped": N}: reports discarded because the
//                              queue was full, since the last acknowledged batch
//   corrupt/                   files that did not parse at Open (never uploaded;
//                              at most kMaxCorruptFiles kept)
// Other names (boot.json of BootRecord) are left alone.
//
// Durability: Append returns success only once the report is durable; a
// power cut during Append leaves either the whole report or nothing (plus,
// perhaps, a hidden temporary file that the next Open removes). Deleting
// the oldest report to make room happens before dropped.json is rewritten,
// so a cut between the two can under-count one drop, never double count.
// Acknowledge's deletions are not synced one by one: after a power cut an
// acknowledged report may come back and be sent again, which the service
// counts once (its report_id is the idempotency key).
//
// Threading: every method may be called from any thread (one mutex). Only
// one ReportQueue may own a directory at a time (one citadeld per STATE).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "protocol/failure_report.hpp"

namespace citadel::reports {

struct QueueLimits {
  std::size_t max_reports = 256;
  std::size_t max_bytes = 4u << 20;  // sum of the report files' sizes
};

inline constexpr std::size_t kMaxCorruptFiles = 16;

class ReportQueue {
 public:
  // Creates `dir` (0700) if missing, removes leftover temporary files,
  // moves unparseable report files to dir/corrupt/, reads dropped.json (an
  // unreadable one counts 0) and, if the directory holds more than `limits`
  // allow (limits were lowered), drops the oldest. Fails only when the
  // directory cannot be created or listed.
  static Expected<std::unique_ptr<ReportQueue>> Open(const std::filesystem::path& dir, QueueLimits limits = {});

  ReportQueue(const ReportQueue&) = delete;
  ReportQueue& operator=(const ReportQueue&) = delete;

  // Stores a report durably, dropping the oldest ones first when the queue
  // is full. kInvalidArgument when the report would not pass the strict
  // parser (a report the service refuses must never block the queue);
  // kTooLarge when it alone exceeds max_bytes; kIo when it could not be
  // written (then it is not stored).
  Expected<void> Append(const protocol::FailureReport& report);

  // The oldest reports, at most max_count of them whose JSON texts add up
  // to at most max_bytes (always at least one if the queue is not empty and
  // the first fits), with `dropped` = Dropped(). Does not remove anything.
  // A file that no longer parses is moved to corrupt/ and skipped.
  protocol::ReportBatch Peek(std::size_t max_count, std::size_t max_bytes);

  // Deletes the reports with these ids; unknown ids are ignored. Returns how
  // many were deleted.
  Expected<std::size_t> Acknowledge(const std::vector<std::string>& report_ids);

  // Reports dropped since the last ClearDropped.
  std::int64_t Dropped() const;
  // After a batch carrying `sent` as its dropped count was acknowledged:
  // subtracts it (drops counted since the batch was made stay counted).
  Expected<void> ClearDropped(std::int64_t sent);

  std::size_t Size() const;
  std::size_t Bytes() const;

 private:
  struct Entry {
    std::string report_id;
    std::size_t bytes = 0;
  };

  ReportQueue(std::filesystem::path dir, QueueLimits limits) : dir_(std::move(dir)), limits_(limits) {}

  Expected<void> Load();
  std::filesystem::path PathOf(std::uint64_t sequence) const;
  void MoveToCorruptLocked(const std::filesystem::path& file);
  // Drops the oldest reports until `incoming_bytes` more fit; persists the
  // dropped count.
  Expected<void> MakeRoomLocked(std::size_t incoming_bytes);
  Expected<void> WriteDroppedLocked();
  void RemoveLocked(std::map<std::uint64_t, Entry>::iterator entry);

  const std::filesystem::path dir_;
  const QueueLimits limits_;
  mutable std::mutex mutex_;
  std::map<std::uint64_t, Entry> entries_;  // by sequence: oldest first
  std::size_t bytes_ = 0;
  std::uint64_t next_sequence_ = 1;
  std::int64_t dropped_ = 0;
};

}  // namespace citadel::reports
