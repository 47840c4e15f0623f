#include "reports/boot_record.hpp"

#include <algorithm>
#include <charconv>
#include <system_error>

#include "common/canonical_json.hpp"
#include "common/file.hpp"
#include "common/log.hpp"

namespace citadel::reports {
namespace {

constexpr std::string_view kBootFile = "boot.json";
constexpr std::size_t kMaxBootIdBytes = 64;
constexpr std::size_t kMaxPanicRecords = 64;
// linux/watchdog.h: "Card previously reset the CPU".
constexpr unsigned long kWdiofCardReset = 0x0020;
// Enough of a pstore record to see its header line ("Panic#1 Part1").
constexpr std::size_t kPstoreHeaderBytes = 4096;

std::string Trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(first, last - first + 1));
}

struct PreviousRecord {
  std::string boot_id;
  bool clean = false;
  std::vector<std::string> panic_records;
};

std::optional<PreviousRecord> ReadPrevious(const std::filesystem::path& file) {
  auto text = ReadFile(file, 64 * 1024);
  if (!text) {
    if (text.error().code() != ErrorCode::kNotFound) {
      log::Warn("boot record unreadable; treating as first start", {{"error", text.error().message()}});
    }
    return std::nullopt;
  }
  auto json = ParseJsonStrict(*text);
  if (!json || !json->is_object() || !json->contains("boot_id") || !(*json)["boot_id"].is_string() ||
      !json->contains("clean") || !(*json)["clean"].is_boolean()) {
    log::Warn("boot record malformed; treating as first start", {{"file", file.string()}});
    return std::nullopt;
  }
  PreviousRecord previous;
  previous.boot_id = (*json)["boot_id"].get<std::string>();
  previous.clean = (*json)["clean"].get<bool>();
  if (auto it = json->find("panic_records"); it != json->end() && it->is_array()) {
    for (const auto& name : *it) {
      if (name.is_string()) previous.panic_records.push_back(name.get<std::string>());
    }
  }
  return previous;
}

}  // namespace

bool WatchdogCausedReset(const std::filesystem::path& root) {
  std::error_code ec;
  for (std::filesystem::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->path().filename().string().starts_with("watchdog")) continue;
    auto text = ReadFile(it->path() / "bootstatus", 64);
    if (!text) continue;
    const std::string value = Trim(*text);
    unsigned long flags = 0;
    auto [ptr, parse_error] = std::from_chars(value.data(), value.data() + value.size(), flags);
    if (parse_error == std::errc() && ptr == value.data() + value.size() && (flags & kWdiofCardReset) != 0) {
      return true;
    }
  }
  return false;
}

std::vector<std::string> PstorePanicRecords(const std::filesystem::path& root) {
  std::vector<std::string> names;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    const auto name = it->path().filename().string();
    if (!name.starts_with("dmesg-")) continue;
    // ReadFile refuses files over the limit; a header is all we need.
    auto text = ReadFile(it->path(), 1u << 20);
    if (!text) continue;
    if (text->substr(0, kPstoreHeaderBytes).find("Panic") == std::string::npos) continue;
    names.push_back(name);
    if (names.size() >= kMaxPanicRecords) break;
  }
  std::sort(names.begin(), names.end());
  return names;
}

Expected<BootRecord> BootRecord::Open(BootRecordOptions options) {
  BootRecord record(std::move(options));
  auto id_text = ReadFile(record.options_.boot_id_file, 4096);
  if (!id_text) return WrapError(id_text.error(), "reading the boot id");
  record.boot_id_ = Trim(*id_text);
  if (record.boot_id_.empty() || record.boot_id_.size() > kMaxBootIdBytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "boot id in " + record.options_.boot_id_file.string() + " is empty or longer than 64 bytes");
  }
  const TimePoint now = record.options_.now ? record.options_.now() : Clock::now();
  record.started_at_ = FormatRfc3339(now);
  CITADEL_TRY_VOID(EnsureDirectory(record.options_.reports_dir, 0700));
  record.panic_records_ = PstorePanicRecords(record.options_.pstore_root);

  auto previous = ReadPrevious(record.options_.reports_dir / kBootFile);
  if (previous && !previous->clean) {
    FailureEvent event;
    event.time = now;
    if (previous->boot_id == record.boot_id_) {
      event.failure_class = "runtime-error";
      event.error_code = "runtime-restart";
      event.message = "citadeld restarted without a clean stop (boot " + record.boot_id_ + ")";
    } else {
      event.failure_class = "unplanned-reboot";
      event.error_code = record.DetectRebootReason(previous->panic_records);
      event.message = "the device rebooted while citadeld was running (" + event.error_code + "; previous boot " +
                      previous->boot_id + ")";
    }
    log::Warn("previous run did not stop cleanly", {{"class", event.failure_class}, {"reason", event.error_code}});
    record.start_event_ = std::move(event);
  }
  CITADEL_TRY_VOID(record.Write(false, ""));
  return record;
}

std::string BootRecord::DetectRebootReason(const std::vector<std::string>& known_panics) {
  if (WatchdogCausedReset(options_.watchdog_root)) return "watchdog";
  for (const auto& name : panic_records_) {
    if (std::find(known_panics.begin(), known_panics.end(), name) == known_panics.end()) return "kernel-panic";
  }
  return "power-loss";
}

Expected<void> BootRecord::Write(bool clean, std::string_view reason) {
  Json json = {{"boot_id", boot_id_},
               {"clean", clean},
               {"reason", std::string(reason)},
               {"started_at", started_at_},
               {"panic_records", panic_records_}};
  auto written = WriteFileAtomic(options_.reports_dir / kBootFile, json.dump(), 0600);
  if (!written) return WrapError(written.error(), "writing the boot record");
  return kOk;
}

Expected<void> BootRecord::MarkClean(std::string_view reason) { return Write(true, reason); }

}  // namespace citadel::reports
