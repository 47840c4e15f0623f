// DIR/status.json: the runtime's state for other tools (the simulator's and
// the CLI's status tables, tests). Rewritten atomically after every state
// change, so a reader sees either the old or the new document.
//
// {"device_id","state","tenant_id","certificate_serial",
//  "certificate_expires_at","last_check_in","last_error",
//  "last_problem_type","attestations","check_ins"}
// Times are RFC 3339 UTC, "" when never. It holds no secrets.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "common/canonical_json.hpp"
#include "common/error.hpp"

namespace citadel::device {

inline constexpr std::string_view kStatusFile = "status.json";

enum class AgentState {
  kStarting,   // measuring, loading the stored certificate
  kAttesting,  // asking the service for a verdict
  kUnclaimed,  // genuine, but no tenant has claimed the device yet
  kAttested,   // holds a valid device certificate and checks in
  kBackoff,    // the service is unreachable or failing; waiting to retry
  kRefused,    // the service refused (problem+json); waiting to retry
};
std::string_view AgentStateName(AgentState state);
Expected<AgentState> ParseAgentState(std::string_view name);

struct DeviceStatus {
  std::string device_id;
  AgentState state = AgentState::kStarting;
  std::string tenant_id;
  std::string certificate_serial;
  std::string certificate_expires_at;
  std::string last_check_in;
  std::string last_error;         // human text of the last failure, "" after a success
  std::string last_problem_type;  // the service's problem type, "" after a success
  std::int64_t attestations = 0;  // attestations that returned a certificate, this run
  std::int64_t check_ins = 0;     // successful check-ins, this run

  bool operator==(const DeviceStatus&) const = default;
};

Json StatusToJson(const DeviceStatus& status);
Expected<DeviceStatus> ParseStatus(std::string_view text);

// Writes state_dir/status.json atomically (mode 0644).
Expected<void> WriteStatus(const std::filesystem::path& state_dir, const DeviceStatus& status);
Expected<DeviceStatus> ReadStatus(const std::filesystem::path& state_dir);

}  // namespace citadel::device
