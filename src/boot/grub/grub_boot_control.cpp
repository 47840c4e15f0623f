#include "boot/grub/grub_boot_control.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "boot/kernel_cmdline.hpp"
#include "boot/program.hpp"
#include "common/file.hpp"

namespace citadel::boot {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kPackage = "grub-common";
// GRUB's block is 1 KiB; anything far larger is not one.
constexpr std::size_t kMaxBlockBytes = 64 * 1024;

}  // namespace

Expected<std::unique_ptr<GrubBootControl>> GrubBootControl::Open(const fs::path& grubenv, const OpenOptions& options) {
  if (grubenv.empty()) return MakeError(ErrorCode::kInvalidArgument, "grub boot control: empty grubenv path");
  CITADEL_TRY(fs::path editenv, FindTool("grub-editenv", kPackage, options.tool_directories));
  std::unique_ptr<GrubBootControl> control(new GrubBootControl(grubenv, editenv, options));
  CITADEL_TRY_VOID(control->ReadBlock());
  return control;
}

Expected<std::string> GrubBootControl::ReadBlock() const {
  auto block = ReadFile(grubenv_, kMaxBlockBytes);
  if (!block && block.error().code() == ErrorCode::kNotFound) {
    return MakeError(ErrorCode::kNotFound, "GRUB environment block " + grubenv_.string() +
                                               " does not exist; create it with `grub-editenv " + grubenv_.string() +
                                               " create`");
  }
  if (!block) return WrapError(block.error(), "GRUB environment block");
  return block;
}

Expected<std::string> GrubBootControl::Edit(const fs::path& file, std::vector<std::string> args) const {
  args.insert(args.begin(), file.string());
  CITADEL_TRY(ToolResult result, RunTool(editenv_, args, options_.tool_directories, options_.tool_timeout));
  if (result.exit_code != 0) {
    return MakeError(ErrorCode::kIo,
                     "GRUB environment block " + grubenv_.string() + ": " + DescribeFailure(editenv_, args, result));
  }
  return std::move(result.out);
}

Expected<StoredBootControl::Snapshot> GrubBootControl::Load() {
  CITADEL_TRY(std::string block, ReadBlock());
  CITADEL_TRY(ScratchFile copy, ScratchFile::Create("grubenv", block));
  CITADEL_TRY(std::string listing, Edit(copy.path(), {"list"}));
  auto stored = DecodeGrubState(ParseEnvListing(listing));
  if (!stored) return WrapError(stored.error(), "GRUB environment block " + grubenv_.string());
  CITADEL_TRY(Slot booted, ReadBootedSlot(options_.kernel_cmdline));
  return Snapshot{std::move(*stored), booted};
}

Expected<void> GrubBootControl::Store(const StoredBootState& stored, Slot /*booted*/) {
  std::vector<std::string> set = {"set"};
  std::vector<std::string> unset = {"unset"};
  for (const auto& [name, value] : EncodeGrubState(stored)) {
    if (value) {
      set.push_back(name + "=" + *value);
    } else {
      unset.push_back(name);
    }
  }
  CITADEL_TRY(std::string block, ReadBlock());
  CITADEL_TRY(ScratchFile copy, ScratchFile::Create("grubenv", block));
  CITADEL_TRY_VOID(Edit(copy.path(), set));
  if (unset.size() > 1) CITADEL_TRY_VOID(Edit(copy.path(), unset));
  CITADEL_TRY(std::string edited, ReadFile(copy.path(), kMaxBlockBytes));
  struct stat info {};
  unsigned mode = ::stat(grubenv_.c_str(), &info) == 0 ? (info.st_mode & 07777U) : 0644U;
  return WriteFileAtomic(grubenv_, edited, mode);
}

}  // namespace citadel::boot
