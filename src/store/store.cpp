#include "store/store.hpp"

#include <array>
#include <cstddef>
#include <string>

#include "store/postgres/postgres_store.hpp"
#include "store/sql_store.hpp"
#include "store/sqlite/sqlite_store.hpp"

namespace citadel::store {

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kOperator:
      return "operator";
    case Role::kAdmin:
      return "admin";
    case Role::kContributor:
      return "contributor";
    case Role::kReader:
      return "reader";
  }
  return "reader";
}

Expected<Role> ParseRole(std::string_view name) {
  for (Role role : {Role::kOperator, Role::kAdmin, Role::kContributor, Role::kReader}) {
    if (name == RoleName(role)) return role;
  }
  return MakeError(ErrorCode::kInvalidArgument, "unknown role \"" + std::string(name.substr(0, 32)) +
                                                    "\"; expected operator, admin, contributor or reader");
}

namespace {

// The stored name of each value of one of the update enums.
template <typename Enum>
struct EnumName {
  Enum value;
  std::string_view name;
};

constexpr std::array<EnumName<TufRepository>, 2> kTufRepositoryNames = {{
    {TufRepository::kImage, "image"},
    {TufRepository::kDirector, "director"},
}};
constexpr std::array<EnumName<TufRole>, 4> kTufRoleNames = {{
    {TufRole::kRoot, "root"},
    {TufRole::kTargets, "targets"},
    {TufRole::kSnapshot, "snapshot"},
    {TufRole::kTimestamp, "timestamp"},
}};
constexpr std::array<EnumName<ImageKind>, 2> kImageKindNames = {{
    {ImageKind::kApp, "app"},
    {ImageKind::kOs, "os"},
}};
constexpr std::array<EnumName<DeploymentState>, 4> kDeploymentStateNames = {{
    {DeploymentState::kActive, "active"},
    {DeploymentState::kPaused, "paused"},
    {DeploymentState::kRolledBack, "rolled-back"},
    {DeploymentState::kSuperseded, "superseded"},
}};
constexpr std::array<EnumName<UpdateState>, 5> kUpdateStateNames = {{
    {UpdateState::kDownloading, "downloading"},
    {UpdateState::kInstalling, "installing"},
    {UpdateState::kPendingReboot, "pending-reboot"},
    {UpdateState::kCommitted, "committed"},
    {UpdateState::kFailed, "failed"},
}};
constexpr std::array<EnumName<IssueState>, 3> kIssueStateNames = {{
    {IssueState::kOpen, "open"},
    {IssueState::kResolved, "resolved"},
    {IssueState::kMuted, "muted"},
}};

template <typename Enum, std::size_t N>
std::string_view NameOf(const std::array<EnumName<Enum>, N>& names, Enum value) {
  for (const auto& entry : names) {
    if (entry.value == value) return entry.name;
  }
  return names.front().name;  // unreachable for a valid enumerator
}

template <typename Enum, std::size_t N>
Expected<Enum> ParseName(const std::array<EnumName<Enum>, N>& names, std::string_view name, std::string_view what) {
  std::string expected;
  for (const auto& entry : names) {
    if (entry.name == name) return entry.value;
    expected += expected.empty() ? "" : ", ";
    expected += entry.name;
  }
  return MakeError(ErrorCode::kInvalidArgument, "unknown " + std::string(what) + " \"" +
                                                    std::string(name.substr(0, 32)) + "\"; expected " + expected);
}

}  // namespace

std::string_view TufRepositoryName(TufRepository repository) { return NameOf(kTufRepositoryNames, repository); }
Expected<TufRepository> ParseTufRepository(std::string_view name) {
  return ParseName(kTufRepositoryNames, name, "repository");
}

std::string_view TufRoleName(TufRole role) { return NameOf(kTufRoleNames, role); }
Expected<TufRole> ParseTufRole(std::string_view name) { return ParseName(kTufRoleNames, name, "TUF role"); }

std::string_view ImageKindName(ImageKind kind) { return NameOf(kImageKindNames, kind); }
Expected<ImageKind> ParseImageKind(std::string_view name) { return ParseName(kImageKindNames, name, "image kind"); }

std::string_view DeploymentStateName(DeploymentState state) { return NameOf(kDeploymentStateNames, state); }
Expected<DeploymentState> ParseDeploymentState(std::string_view name) {
  return ParseName(kDeploymentStateNames, name, "deployment state");
}

std::string_view UpdateStateName(UpdateState state) { return NameOf(kUpdateStateNames, state); }
Expected<UpdateState> ParseUpdateState(std::string_view name) {
  return ParseName(kUpdateStateNames, name, "update state");
}

std::string_view IssueStateName(IssueState state) { return NameOf(kIssueStateNames, state); }
Expected<IssueState> ParseIssueState(std::string_view name) { return ParseName(kIssueStateNames, name, "issue state"); }

std::string_view DeviceHealthName(DeviceHealth health) {
  switch (health) {
    case DeviceHealth::kAny:
      return "";
    case DeviceHealth::kHealthy:
      return "healthy";
    case DeviceHealth::kUnhealthy:
      return "unhealthy";
  }
  return "";
}

bool IsDeviceHealthy(const Device& device, std::int64_t now) {
  return device.last_verdict == "accepted" && !device.revoked && device.certificate_expires_at > now;
}

Expected<DeviceHealth> ParseDeviceHealth(std::string_view name) {
  if (name == DeviceHealthName(DeviceHealth::kHealthy)) return DeviceHealth::kHealthy;
  if (name == DeviceHealthName(DeviceHealth::kUnhealthy)) return DeviceHealth::kUnhealthy;
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown device health \"" + std::string(name.substr(0, 32)) + "\"; expected healthy or unhealthy");
}

std::int64_t CounterDelta(std::int64_t previous, std::int64_t current) {
  if (current < 0) return 0;
  return current >= previous ? current - previous : current;
}

// The one place a backend is chosen.
Expected<std::unique_ptr<Store>> OpenStore(std::string_view location) {
  const std::string target(location);
  const bool postgres = location.starts_with("postgresql://") || location.starts_with("postgres://");
  if (!postgres && target.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the store location is empty; give a SQLite path or a postgresql:// URL");
  }
  auto pool = postgres ? OpenPostgresPool(target) : OpenSqlitePool(target);
  if (!pool) return WrapError(pool.error(), "opening the store");
  return std::unique_ptr<Store>(std::make_unique<SqlStore>(std::move(*pool)));
}

}  // namespace citadel::store
