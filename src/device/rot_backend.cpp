#include "device/rot_backend.hpp"

#include <string>
#include <system_error>

#include "rot/software/software_rot.hpp"
#include "rot/tpm2/tpm2_rot.hpp"

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
                                                            RotOpenMode mode, std::string_view tcti) {
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
    case RotBackend::kTpm2: {
      // The keys live in the TPM (Open creates them when missing); the
      // state dir's tpm2/ holds the event log and the EK's intermediates,
      // and its absence means "never provisioned".
      std::error_code ec;
      if (mode == RotOpenMode::kMustExist && !std::filesystem::exists(state_dir / "tpm2", ec)) {
        return MakeError(ErrorCode::kNotFound, "no TPM device state in " + state_dir.string() +
                                                   "; run `citadeld provision --rot tpm2 --state " +
                                                   state_dir.string() + " --tcti ...` first");
      }
      auto opened = rot::Tpm2RootOfTrust::Open(rot::Tpm2Options{std::string(tcti), state_dir});
      if (!opened) {
        return WrapError(opened.error(), "opening the TPM root of trust (tcti \"" + std::string(tcti) + "\")");
      }
      return std::unique_ptr<rot::RootOfTrust>(std::move(*opened));
    }
  }
  return MakeError(ErrorCode::kInternal, "unhandled root-of-trust backend");
}

}  // namespace citadel::device
