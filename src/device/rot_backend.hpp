// The one place citadeld chooses its root-of-trust backend.
//
// Backends: "software" (development only; keys in files, see
// rot/software/software_rot.hpp) and "tpm2" (keys in a TPM 2.0 reached
// through a TCTI, see rot/tpm2/tpm2_rot.hpp). Every command that needs the
// RoT goes through OpenRootOfTrust.
#pragma once

#include <filesystem>
#include <memory>
#include <string_view>

#include "common/error.hpp"
#include "rot/rot.hpp"

namespace citadel::device {

enum class RotBackend { kSoftware, kTpm2 };

// Parses a --rot value.
Expected<RotBackend> ParseRotBackend(std::string_view name);
std::string_view RotBackendName(RotBackend backend);

enum class RotOpenMode {
  kCreateIfMissing,  // provisioning: create the identity on first use
  kMustExist,        // every other command: refuse an unprovisioned state dir
};

// Opens the RoT for the device whose state lives in state_dir. With
// kMustExist, a state dir without an identity is refused with kNotFound and
// a message that says to run `citadeld provision` first. tcti: the TPM's
// TCTI configuration (tpm2 only; empty: the loader's default, e.g.
// /dev/tpmrm0).
Expected<std::unique_ptr<rot::RootOfTrust>> OpenRootOfTrust(RotBackend backend, const std::filesystem::path& state_dir,
                                                            RotOpenMode mode, std::string_view tcti = {});

}  // namespace citadel::device
