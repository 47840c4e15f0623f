#include "device/status.hpp"

#include <array>
#include <utility>

#include "common/file.hpp"

namespace citadel::device {
namespace {

constexpr std::array<std::pair<AgentState, std::string_view>, 6> kStateNames{{
    {AgentState::kStarting, "starting"},
    {AgentState::kAttesting, "attesting"},
    {AgentState::kUnclaimed, "unclaimed"},
    {AgentState::kAttested, "attested"},
    {AgentState::kBackoff, "backoff"},
    {AgentState::kRefused, "refused"},
}};

}  // namespace

std::string_view AgentStateName(AgentState state) {
  for (const auto& [value, name] : kStateNames) {
    if (value == state) return name;
  }
  return "unknown";
}

Expected<AgentState> ParseAgentState(std::string_view name) {
  for (const auto& [value, known] : kStateNames) {
    if (known == name) return value;
  }
  return MakeError(ErrorCode::kParse, "unknown device state '" + std::string(name) + "'");
}

Json StatusToJson(const DeviceStatus& status) {
  return Json{
      {"device_id", status.device_id},
      {"state", std::string(AgentStateName(status.state))},
      {"tenant_id", status.tenant_id},
      {"certificate_serial", status.certificate_serial},
      {"certificate_expires_at", status.certificate_expires_at},
      {"last_check_in", status.last_check_in},
      {"last_error", status.last_error},
      {"last_problem_type", status.last_problem_type},
      {"attestations", status.attestations},
      {"check_ins", status.check_ins},
  };
}

Expected<DeviceStatus> ParseStatus(std::string_view text) {
  auto parsed = ParseJsonStrict(text);
  if (!parsed) return WrapError(parsed.error(), "status.json");
  const Json& json = *parsed;
  if (!json.is_object()) return MakeError(ErrorCode::kParse, "status.json: not an object");
  DeviceStatus status;
  auto text_field = [&](const char* name, std::string& out) -> Expected<void> {
    auto it = json.find(name);
    if (it == json.end() || !it->is_string()) {
      return MakeError(ErrorCode::kParse, std::string("status.json: ") + name + " must be a string");
    }
    out = it->get<std::string>();
    return kOk;
  };
  auto count_field = [&](const char* name, std::int64_t& out) -> Expected<void> {
    auto it = json.find(name);
    if (it == json.end() || !it->is_number_integer()) {
      return MakeError(ErrorCode::kParse, std::string("status.json: ") + name + " must be an integer");
    }
    out = it->get<std::int64_t>();
    return kOk;
  };
  std::string state;
  CITADEL_TRY_VOID(text_field("device_id", status.device_id));
  CITADEL_TRY_VOID(text_field("state", state));
  CITADEL_TRY(status.state, ParseAgentState(state));
  CITADEL_TRY_VOID(text_field("tenant_id", status.tenant_id));
  CITADEL_TRY_VOID(text_field("certificate_serial", status.certificate_serial));
  CITADEL_TRY_VOID(text_field("certificate_expires_at", status.certificate_expires_at));
  CITADEL_TRY_VOID(text_field("last_check_in", status.last_check_in));
  CITADEL_TRY_VOID(text_field("last_error", status.last_error));
  CITADEL_TRY_VOID(text_field("last_problem_type", status.last_problem_type));
  CITADEL_TRY_VOID(count_field("attestations", status.attestations));
  CITADEL_TRY_VOID(count_field("check_ins", status.check_ins));
  return status;
}

Expected<void> WriteStatus(const std::filesystem::path& state_dir, const DeviceStatus& status) {
  auto written = WriteFileAtomic(state_dir / kStatusFile,
                                 StatusToJson(status).dump(2, ' ', false, Json::error_handler_t::replace) + "\n", 0644);
  if (!written) return WrapError(written.error(), "writing device status");
  return kOk;
}

Expected<DeviceStatus> ReadStatus(const std::filesystem::path& state_dir) {
  auto text = ReadFile(state_dir / kStatusFile, 1u << 20);
  if (!text) return std::unexpected(text.error());
  return ParseStatus(*text);
}

}  // namespace citadel::device
