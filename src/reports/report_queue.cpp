#include "reports/report_queue.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <system_error>
#include <unordered_set>

#include "common/canonical_json.hpp"
#include "common/file.hpp"
#include "common/log.hpp"

namespace citadel::reports {
namespace {

constexpr std::size_t kSequenceDigits = 16;
constexpr std::string_view kReportSuffix = ".json";
constexpr std::string_view kDroppedFile = "dropped.json";
constexpr std::string_view kCorruptDir = "corrupt";
// A report file is at most a batch; anything larger is not ours.
constexpr std::size_t kMaxReportFileBytes = protocol::kMaxReportBatchBytes;

// "<16 digits>.json" -> the sequence; nullopt for every other name.
std::optional<std::uint64_t> SequenceOf(const std::string& name) {
  if (name.size() != kSequenceDigits + kReportSuffix.size() || !name.ends_with(kReportSuffix)) return std::nullopt;
  std::uint64_t value = 0;
  const char* begin = name.data();
  const char* end = begin + kSequenceDigits;
  if (!std::all_of(begin, end, [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  auto [ptr, ec] = std::from_chars(begin, end, value);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

// What WriteFileAtomic leaves behind when a crash interrupts it.
bool IsTemporaryName(const std::string& name) {
  return name.starts_with(".") && name.find(".tmp.") != std::string::npos;
}

// Invalid UTF-8 (a message quoting an app's bytes) is replaced, never
// thrown: the collector must not throw.
std::string ReportText(const protocol::FailureReport& report) {
  return protocol::FailureReportToJson(report).dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace

Expected<std::unique_ptr<ReportQueue>> ReportQueue::Open(const std::filesystem::path& dir, QueueLimits limits) {
  if (limits.max_reports == 0 || limits.max_bytes == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "report queue limits must be positive");
  }
  CITADEL_TRY_VOID(EnsureDirectory(dir, 0700));
  std::unique_ptr<ReportQueue> queue(new ReportQueue(dir, limits));
  auto loaded = queue->Load();
  if (!loaded) return WrapError(loaded.error(), "opening the report queue " + dir.string());
  return queue;
}

std::filesystem::path ReportQueue::PathOf(std::uint64_t sequence) const {
  char name[32];
  (void)std::snprintf(name, sizeof name, "%016llu.json", static_cast<unsigned long long>(sequence));
  return dir_ / name;
}

Expected<void> ReportQueue::Load() {
  std::lock_guard lock(mutex_);
  std::error_code ec;
  std::vector<std::pair<std::uint64_t, std::filesystem::path>> found;
  for (std::filesystem::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const auto name = it->path().filename().string();
    if (IsTemporaryName(name)) {
      // No writer can be running: this queue owns the directory.
      std::filesystem::remove(it->path(), ec);
      ec.clear();
      continue;
    }
    if (auto sequence = SequenceOf(name)) found.emplace_back(*sequence, it->path());
  }
  if (ec) return MakeError(ErrorCode::kIo, "cannot list " + dir_.string() + ": " + ec.message());

  for (const auto& [sequence, path] : found) {
    next_sequence_ = std::max(next_sequence_, sequence + 1);
    auto text = ReadFile(path, kMaxReportFileBytes);
    auto report = text ? protocol::ParseFailureReport(*text) : std::unexpected(text.error());
    if (!report) {
      log::Warn("report queue: moving an unreadable report aside",
                {{"file", path.string()}, {"error", report.error().message()}});
      MoveToCorruptLocked(path);
      continue;
    }
    entries_[sequence] = Entry{report->report_id, text->size()};
    bytes_ += text->size();
  }

  auto dropped_text = ReadFile(dir_ / kDroppedFile, 4096);
  if (dropped_text) {
    auto json = ParseJsonStrict(*dropped_text);
    if (json && json->is_object() && json->contains("dropped") && (*json)["dropped"].is_number_integer() &&
        (*json)["dropped"].get<std::int64_t>() >= 0) {
      dropped_ = (*json)["dropped"].get<std::int64_t>();
    } else {
      log::Warn("report queue: ignoring an unreadable dropped count", {{"file", (dir_ / kDroppedFile).string()}});
    }
  }
  // Limits may have been lowered since these were written.
  return MakeRoomLocked(0);
}

void ReportQueue::MoveToCorruptLocked(const std::filesystem::path& file) {
  std::error_code ec;
  const auto corrupt = dir_ / kCorruptDir;
  std::filesystem::create_directories(corrupt, ec);
  std::size_t kept = 0;
  for (std::filesystem::directory_iterator it(corrupt, ec), end; !ec && it != end; it.increment(ec)) ++kept;
  // The evidence of a disk that lied is useful, but not unbounded.
  if (ec || kept >= kMaxCorruptFiles) {
    std::filesystem::remove(file, ec);
    return;
  }
  std::filesystem::rename(file, corrupt / file.filename(), ec);
  if (ec) std::filesystem::remove(file, ec);
}

void ReportQueue::RemoveLocked(std::map<std::uint64_t, Entry>::iterator entry) {
  if (::unlink(PathOf(entry->first).c_str()) != 0 && errno != ENOENT) {
    log::Warn("report queue: cannot delete a report",
              {{"file", PathOf(entry->first).string()}, {"error", std::strerror(errno)}});
  }
  bytes_ -= entry->second.bytes;
  entries_.erase(entry);
}

Expected<void> ReportQueue::WriteDroppedLocked() {
  Json json = {{"dropped", dropped_}};
  return WriteFileAtomic(dir_ / kDroppedFile, json.dump(), 0600);
}

Expected<void> ReportQueue::MakeRoomLocked(std::size_t incoming_bytes) {
  const std::size_t incoming_count = incoming_bytes > 0 ? 1 : 0;
  std::int64_t dropped_now = 0;
  while (!entries_.empty() &&
         (entries_.size() + incoming_count > limits_.max_reports || bytes_ + incoming_bytes > limits_.max_bytes)) {
    RemoveLocked(entries_.begin());
    ++dropped_now;
  }
  if (dropped_now == 0) return kOk;
  dropped_ += dropped_now;
  log::Warn("report queue full: dropped the oldest reports",
            {{"dropped", std::to_string(dropped_now)}, {"dropped_total", std::to_string(dropped_)}});
  return WriteDroppedLocked();
}

Expected<void> ReportQueue::Append(const protocol::FailureReport& report) {
  const std::string text = ReportText(report);
  // The same check the service and the next Open apply: a report they would
  // refuse must not enter the queue.
  auto checked = protocol::ParseFailureReport(text);
  if (!checked) {
    return MakeError(ErrorCode::kInvalidArgument, "refusing to queue a malformed report: " + checked.error().message());
  }
  if (text.size() > limits_.max_bytes) {
    return MakeError(ErrorCode::kTooLarge, "report of " + std::to_string(text.size()) + " bytes exceeds the queue's " +
                                               std::to_string(limits_.max_bytes));
  }
  std::lock_guard lock(mutex_);
  auto room = MakeRoomLocked(text.size());
  // A failed dropped.json write loses a count, not a report: go on.
  if (!room) log::Warn("report queue: cannot record the dropped count", {{"error", room.error().message()}});
  const std::uint64_t sequence = next_sequence_++;
  CITADEL_TRY_VOID(WriteFileAtomic(PathOf(sequence), text, 0600));
  entries_[sequence] = Entry{report.report_id, text.size()};
  bytes_ += text.size();
  return kOk;
}

protocol::ReportBatch ReportQueue::Peek(std::size_t max_count, std::size_t max_bytes) {
  std::lock_guard lock(mutex_);
  protocol::ReportBatch batch;
  batch.dropped = dropped_;
  std::size_t total = 0;
  for (auto it = entries_.begin(); it != entries_.end() && batch.reports.size() < max_count;) {
    const auto path = PathOf(it->first);
    auto text = ReadFile(path, kMaxReportFileBytes);
    auto report = text ? protocol::ParseFailureReport(*text) : std::unexpected(text.error());
    if (!report) {
      log::Warn("report queue: a queued report became unreadable",
                {{"file", path.string()}, {"error", report.error().message()}});
      MoveToCorruptLocked(path);
      bytes_ -= it->second.bytes;
      it = entries_.erase(it);
      continue;
    }
    // +1 for the comma between reports in the batch's array.
    if (total + text->size() + 1 > max_bytes) break;
    total += text->size() + 1;
    batch.reports.push_back(std::move(*report));
    ++it;
  }
  return batch;
}

Expected<std::size_t> ReportQueue::Acknowledge(const std::vector<std::string>& report_ids) {
  const std::unordered_set<std::string> ids(report_ids.begin(), report_ids.end());
  std::lock_guard lock(mutex_);
  std::size_t removed = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    auto next = std::next(it);
    if (ids.contains(it->second.report_id)) {
      RemoveLocked(it);
      ++removed;
    }
    it = next;
  }
  return removed;
}

std::int64_t ReportQueue::Dropped() const {
  std::lock_guard lock(mutex_);
  return dropped_;
}

Expected<void> ReportQueue::ClearDropped(std::int64_t sent) {
  std::lock_guard lock(mutex_);
  if (sent <= 0) return kOk;
  dropped_ = std::max<std::int64_t>(0, dropped_ - sent);
  return WriteDroppedLocked();
}

std::size_t ReportQueue::Size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

std::size_t ReportQueue::Bytes() const {
  std::lock_guard lock(mutex_);
  return bytes_;
}

}  // namespace citadel::reports
