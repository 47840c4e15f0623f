#include "device/rot_backend.hpp"

#include <string>
#include <system_error>

#include "rot/software/software_rot.hpp"

namespace citadel::device {

Expected<RotBackend> ParseRotBackend(std::string_view name) {
  if (name == "software") return RotBackend::kSoftware;
  if (name == "tpm2") return RotBackend::kTpm2;
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown root-of-trust backend '" + std::string(name) + "' (use software or tpm2)");
}

std::string_view RotBackendName(RotBackend backend) {
  switch (backend) {
    case RotBackend::kSoftware:
      return "software";
    case RotBackend::kTpm2:
      return "tpm2";
  }
  return "unknown";
}

Expected<std::unique_ptr<rot::RootOfTrust>> OpenRootOfTrust(RotBackend backend, const std::filesystem::path& state_dir,
                                                            RotOpenMode mode) {
  switch (backend) {
    case RotBackend::kSoftware: {
      // The software RoT keeps its identity key in state_dir/rot/identity.key
      // (software_rot.hpp); its absence means "never provisioned".
      std::error_code ec;
      if (mode == RotOpenMode::kMustExist && !std::filesystem::exists(state_dir / "rot" / "identity.key", ec)) {
        return MakeError(ErrorCode::kNotFound, "no device identity in " + state_dir.string() +
                                                   "; run `citadeld provision --state " + state_dir.string() +
                                                   " --manufacturer-ca DIR` first");
      }
      auto opened = rot::SoftwareRootOfTrust::Open(state_dir);
      if (!opened) return WrapError(opened.error(), "opening software root of trust in " + state_dir.string());
      return std::unique_ptr<rot::RootOfTrust>(std::move(*opened));
    }
    case RotBackend::kTpm2:
      return MakeError(ErrorCode::kFailedPrecondition,
                       "the tpm2 root of trust is not available in this build of citadeld yet; "
                       "use --rot software (development only)");
  }
  return MakeError(ErrorCode::kInternal, "unhandled root-of-trust backend");
}

}  // namespace citadel::device
