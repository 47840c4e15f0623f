#include "update/update_state.hpp"

#include <array>
#include <limits>
#include <utility>

#include "common/file.hpp"
#include "common/json_fields.hpp"
#include "update/fault.hpp"

namespace citadel::update {
namespace {

namespace jf = json_fields;

constexpr std::size_t kMaxStateBytes = 4u << 20;
constexpr std::size_t kMaxText = 1024;
constexpr std::size_t kMaxEntries = 1024;
constexpr std::int64_t kMaxInteger = (std::int64_t{1} << 53) - 1;

constexpr std::array<std::pair<WorkStep, std::string_view>, 5> kStepNames{{
    {WorkStep::kDownloading, "downloading"},
    {WorkStep::kInstalling, "installing"},
    {WorkStep::kTrial, "trial"},
    {WorkStep::kPendingReboot, "pending-reboot"},
    {WorkStep::kOsTrial, "os-trial"},
}};

Expected<WorkStep> ParseWorkStep(std::string_view name, std::string_view path) {
  for (const auto& [step, known] : kStepNames) {
    if (known == name) return step;
  }
  return jf::FieldError(path, "unknown step " + jf::Quote(name));
}

Json IdentityToJson(const TargetIdentity& identity) {
  return Json{{"kind", identity.kind},
              {"component_id", identity.component_id},
              {"version", identity.version},
              {"security_version", identity.security_version}};
}

Expected<std::string> Text(const Json& object, std::string_view path, std::string_view key) {
  CITADEL_TRY(const Json* value, jf::Require(object, path, key));
  return jf::ReadString(*value, jf::Child(path, key), kMaxText, /*allow_empty=*/true);
}

Expected<std::int64_t> Integer(const Json& object, std::string_view path, std::string_view key) {
  CITADEL_TRY(const Json* value, jf::Require(object, path, key));
  return jf::ReadInteger(*value, jf::Child(path, key), 0, kMaxInteger);
}

Expected<TargetIdentity> ParseIdentity(const Json& json, std::string_view path) {
  CITADEL_TRY_VOID(jf::ExpectObject(json, path, {"kind", "component_id", "version", "security_version"},
                                    jf::UnknownFields::kIgnore));
  TargetIdentity identity;
  CITADEL_TRY(identity.kind, Text(json, path, "kind"));
  CITADEL_TRY(identity.component_id, Text(json, path, "component_id"));
  CITADEL_TRY(identity.version, Text(json, path, "version"));
  CITADEL_TRY(identity.security_version, Integer(json, path, "security_version"));
  return identity;
}

Expected<std::map<std::string, std::string>> ParseStringMap(const Json& json, std::string_view path) {
  if (!json.is_object()) return jf::FieldError(path, "expected an object");
  if (json.size() > kMaxEntries) return jf::FieldError(path, "too many entries");
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : json.items()) {
    CITADEL_TRY(out[key], jf::ReadString(value, jf::Child(path, key), kMaxText, true));
  }
  return out;
}

Json WorkItemToJson(const WorkItem& item) {
  return Json{{"identity", IdentityToJson(item.identity)},
              {"target_name", item.target_name},
              {"deployment_id", item.deployment_id},
              {"length", item.length},
              {"hashes", item.hashes},
              {"step", std::string(WorkStepName(item.step))},
              {"slot", item.slot},
              {"trial_started_at", item.trial_started_at},
              {"last_reported", item.last_reported}};
}

Expected<WorkItem> ParseWorkItem(const Json& json, std::string_view path) {
  CITADEL_TRY_VOID(jf::ExpectObject(json, path,
                                    {"identity", "target_name", "deployment_id", "length", "hashes", "step", "slot",
                                     "trial_started_at", "last_reported"},
                                    jf::UnknownFields::kIgnore));
  WorkItem item;
  CITADEL_TRY(const Json* identity, jf::Require(json, path, "identity"));
  CITADEL_TRY(item.identity, ParseIdentity(*identity, jf::Child(path, "identity")));
  CITADEL_TRY(item.target_name, Text(json, path, "target_name"));
  CITADEL_TRY(item.deployment_id, Text(json, path, "deployment_id"));
  CITADEL_TRY(item.length, Integer(json, path, "length"));
  CITADEL_TRY(const Json* hashes, jf::Require(json, path, "hashes"));
  CITADEL_TRY(item.hashes, ParseStringMap(*hashes, jf::Child(path, "hashes")));
  CITADEL_TRY(std::string step, Text(json, path, "step"));
  CITADEL_TRY(item.step, ParseWorkStep(step, jf::Child(path, "step")));
  CITADEL_TRY(item.slot, Text(json, path, "slot"));
  CITADEL_TRY(item.trial_started_at, Integer(json, path, "trial_started_at"));
  CITADEL_TRY(item.last_reported, Text(json, path, "last_reported"));
  return item;
}

Json ReportToJson(const Report& report) {
  return Json{{"sequence", report.sequence},       {"deployment_id", report.deployment_id},
              {"target_name", report.target_name}, {"state", report.state},
              {"reason", report.reason},           {"reported_at", report.reported_at}};
}

Expected<Report> ParseReport(const Json& json, std::string_view path) {
  CITADEL_TRY_VOID(jf::ExpectObject(json, path,
                                    {"sequence", "deployment_id", "target_name", "state", "reason", "reported_at"},
                                    jf::UnknownFields::kIgnore));
  Report report;
  CITADEL_TRY(std::int64_t sequence, Integer(json, path, "sequence"));
  report.sequence = static_cast<std::uint64_t>(sequence);
  CITADEL_TRY(report.deployment_id, Text(json, path, "deployment_id"));
  CITADEL_TRY(report.target_name, Text(json, path, "target_name"));
  CITADEL_TRY(report.state, Text(json, path, "state"));
  CITADEL_TRY(report.reason, Text(json, path, "reason"));
  CITADEL_TRY(report.reported_at, Text(json, path, "reported_at"));
  return report;
}

Json SlotRecordToJson(const SlotRecord& record) {
  return Json{{"target_name", record.target_name},
              {"version", record.version},
              {"security_version", record.security_version},
              {"sha256", record.sha256}};
}

Expected<SlotRecord> ParseSlotRecord(const Json& json, std::string_view path) {
  CITADEL_TRY_VOID(jf::ExpectObject(json, path, {"target_name", "version", "security_version", "sha256"},
                                    jf::UnknownFields::kIgnore));
  SlotRecord record;
  CITADEL_TRY(record.target_name, Text(json, path, "target_name"));
  CITADEL_TRY(record.version, Text(json, path, "version"));
  CITADEL_TRY(record.security_version, Integer(json, path, "security_version"));
  CITADEL_TRY(record.sha256, Text(json, path, "sha256"));
  return record;
}

// Cuts at a byte bound without splitting a UTF-8 sequence.
std::string Bounded(std::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  std::size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return std::string(text.substr(0, end));
}

}  // namespace

std::string_view WorkStepName(WorkStep step) {
  for (const auto& [value, name] : kStepNames) {
    if (value == step) return name;
  }
  return "unknown";
}

std::string WorkItem::Sha256() const {
  auto found = hashes.find("sha256");
  return found == hashes.end() ? std::string() : found->second;
}

void UpdateState::AddReport(std::string_view deployment_id, std::string_view target_name, std::string_view state,
                            std::string_view reason, std::string reported_at) {
  Report report;
  report.sequence = next_sequence++;
  report.deployment_id = std::string(deployment_id);
  report.target_name = std::string(target_name);
  report.state = std::string(state);
  report.reason = Bounded(reason, kMaxReasonBytes);
  report.reported_at = std::move(reported_at);
  reports.push_back(std::move(report));
  if (reports.size() > kMaxQueuedReports) {
    reports.erase(reports.begin(), reports.begin() + static_cast<std::ptrdiff_t>(reports.size() - kMaxQueuedReports));
  }
}

Json UpdateStateToJson(const UpdateState& state) {
  Json work = Json::object();
  for (const auto& [component, item] : state.work) work[component] = WorkItemToJson(item);
  Json reports = Json::array();
  for (const auto& report : state.reports) reports.push_back(ReportToJson(report));
  Json slots = Json::object();
  for (const auto& [slot, record] : state.os_slots) slots[slot] = SlotRecordToJson(record);
  return Json{{"format", 1},
              {"image_repository", state.image_repository},
              {"director", state.director},
              {"director_timestamp_version", state.director_timestamp_version},
              {"deferred_by_window", state.deferred_by_window},
              {"work", std::move(work)},
              {"refused", state.refused},
              {"reports", std::move(reports)},
              {"next_sequence", state.next_sequence},
              {"os_slots", std::move(slots)}};
}

Expected<UpdateState> ParseUpdateState(std::string_view text) {
  CITADEL_TRY(Json json, ParseJsonStrict(text));
  const std::string_view path;
  CITADEL_TRY_VOID(jf::ExpectObject(json, path,
                                    {"format", "image_repository", "director", "director_timestamp_version",
                                     "deferred_by_window", "work", "refused", "reports", "next_sequence", "os_slots"},
                                    jf::UnknownFields::kIgnore));
  CITADEL_TRY(std::int64_t format, Integer(json, path, "format"));
  if (format != 1) return jf::FieldError("format", "unsupported format " + std::to_string(format));
  UpdateState state;
  CITADEL_TRY(state.image_repository, Text(json, path, "image_repository"));
  CITADEL_TRY(state.director, Text(json, path, "director"));
  CITADEL_TRY(state.director_timestamp_version, Integer(json, path, "director_timestamp_version"));
  CITADEL_TRY(const Json* deferred, jf::Require(json, path, "deferred_by_window"));
  CITADEL_TRY(state.deferred_by_window, jf::ReadBool(*deferred, "deferred_by_window"));

  CITADEL_TRY(const Json* work, jf::Require(json, path, "work"));
  if (!work->is_object() || work->size() > kMaxEntries) return jf::FieldError("work", "expected a bounded object");
  for (const auto& [component, item] : work->items()) {
    CITADEL_TRY(state.work[component], ParseWorkItem(item, jf::Child("work", component)));
  }
  CITADEL_TRY(const Json* refused, jf::Require(json, path, "refused"));
  CITADEL_TRY(state.refused, ParseStringMap(*refused, "refused"));

  CITADEL_TRY(const Json* reports, jf::Require(json, path, "reports"));
  CITADEL_TRY_VOID(jf::ExpectArray(*reports, "reports", kMaxQueuedReports));
  for (std::size_t i = 0; i < reports->size(); ++i) {
    CITADEL_TRY(Report report, ParseReport((*reports)[i], jf::Element("reports", i)));
    state.reports.push_back(std::move(report));
  }
  CITADEL_TRY(std::int64_t next, Integer(json, path, "next_sequence"));
  state.next_sequence = static_cast<std::uint64_t>(next);

  CITADEL_TRY(const Json* slots, jf::Require(json, path, "os_slots"));
  CITADEL_TRY_VOID(jf::ExpectObject(*slots, "os_slots", {"A", "B"}));
  for (const auto& [slot, record] : slots->items()) {
    CITADEL_TRY(state.os_slots[slot], ParseSlotRecord(record, jf::Child("os_slots", slot)));
  }
  return state;
}

Expected<std::unique_ptr<StateFile>> StateFile::Open(const std::filesystem::path& path) {
  CITADEL_TRY_VOID(EnsureDirectory(path.parent_path(), 0700));
  auto text = ReadFile(path, kMaxStateBytes);
  if (!text) {
    if (text.error().code() != ErrorCode::kNotFound) return WrapError(text.error(), "reading " + path.string());
    return std::unique_ptr<StateFile>(new StateFile(path, UpdateState{}));
  }
  auto parsed = ParseUpdateState(*text);
  if (!parsed) {
    return MakeError(ErrorCode::kParse, path.string() + " is corrupt (" + parsed.error().message() +
                                            "); move it away to reset the update client (floors are kept in "
                                            "the root of trust, so no rollback becomes possible)");
  }
  return std::unique_ptr<StateFile>(new StateFile(path, std::move(*parsed)));
}

UpdateState StateFile::Snapshot() const {
  std::lock_guard lock(mutex_);
  return state_;
}

Expected<void> StateFile::Update(const std::function<void(UpdateState&)>& change, bool fault_points) {
  std::lock_guard lock(mutex_);
  UpdateState next = state_;
  change(next);
  auto text = UpdateStateToJson(next).dump(1, ' ', false, Json::error_handler_t::replace) + "\n";
  if (fault_points) FaultPoint("update:state-write");
  auto written = WriteFileAtomic(path_, text, 0600);
  if (!written) return WrapError(written.error(), "writing the update state");
  if (fault_points) FaultPoint("update:state-written");
  state_ = std::move(next);
  return kOk;
}

}  // namespace citadel::update
