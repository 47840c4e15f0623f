#include "boot/uboot/uboot_boot_control.hpp"

#include <string>
#include <vector>

#include "boot/kernel_cmdline.hpp"
#include "boot/program.hpp"
#include "common/file.hpp"

namespace citadel::boot {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kPackage = "libubootenv-tool";
constexpr std::size_t kMaxConfigBytes = 64 * 1024;

// libubootenv's script format: one NAME=value per line; NAME= deletes.
std::string SetenvScript(const EnvAssignments& assignments) {
  std::string script;
  for (const auto& [name, value] : assignments) script += name + "=" + value.value_or("") + "\n";
  return script;
}

}  // namespace

Expected<std::unique_ptr<UbootBootControl>> UbootBootControl::Open(const fs::path& config, const OpenOptions& options) {
  if (config.empty()) return MakeError(ErrorCode::kInvalidArgument, "uboot boot control: empty fw_env.config path");
  if (auto text = ReadFile(config, kMaxConfigBytes); !text) {
    return WrapError(text.error(), "U-Boot environment configuration (fw_env.config)");
  }
  CITADEL_TRY(fs::path printenv, FindTool("fw_printenv", kPackage, options.tool_directories));
  CITADEL_TRY(fs::path setenv, FindTool("fw_setenv", kPackage, options.tool_directories));
  return std::unique_ptr<UbootBootControl>(new UbootBootControl(config, printenv, setenv, options));
}

Expected<StoredBootState> UbootBootControl::ReadStored() {
  std::vector<std::string> args = {"-c", config_.string()};
  CITADEL_TRY(ToolResult result, RunTool(printenv_, args, options_.tool_directories, options_.tool_timeout));
  if (result.exit_code != 0) {
    return MakeError(ErrorCode::kIo, "reading the U-Boot environment: " + DescribeFailure(printenv_, args, result));
  }
  auto stored = DecodeUbootState(ParseEnvListing(result.out));
  if (!stored) return WrapError(stored.error(), "U-Boot environment of " + config_.string());
  return *stored;
}

Expected<StoredBootControl::Snapshot> UbootBootControl::Load() {
  CITADEL_TRY(StoredBootState stored, ReadStored());
  CITADEL_TRY(Slot booted, ReadBootedSlot(options_.kernel_cmdline));
  return Snapshot{std::move(stored), booted};
}

Expected<void> UbootBootControl::Store(const StoredBootState& stored, Slot /*booted*/) {
  CITADEL_TRY(ScratchFile script, ScratchFile::Create("fw-setenv", SetenvScript(EncodeUbootState(stored))));
  std::vector<std::string> args = {"-c", config_.string(), "-s", script.path().string()};
  CITADEL_TRY(ToolResult result, RunTool(setenv_, args, options_.tool_directories, options_.tool_timeout));
  if (result.exit_code != 0) {
    return MakeError(ErrorCode::kIo, "writing the U-Boot environment: " + DescribeFailure(setenv_, args, result));
  }
  CITADEL_TRY(StoredBootState written, ReadStored());
  if (written != stored) {
    return MakeError(ErrorCode::kIo, setenv_.string() +
                                         " reported success but the U-Boot environment does not hold the new "
                                         "values; it must be libubootenv's fw_setenv (script lines NAME=value)");
  }
  return kOk;
}

}  // namespace citadel::boot
