// The one place citadeld chooses its root-of-trust backend.
//
// Backends: "software" (development only; keys in files, see
// rot/software/software_rot.hpp) and, later, "tpm2". Every command that
// needs the RoT goes through OpenRootOfTrust so adding the TPM backend is a
// change to this file alone.
#pragma once

#include <filesystem>
#include <memory>
#include <string_view>

#include "common/error.hpp"
#include "rot/rot.hpp"

namespace citadel::device {

enum class RotBackend { kSoftware, kTpm2 };

// Parses a --rot value. "tpm2" parses (so the error can say what to do) but
// OpenRootOfTrust refuses it until the backend exists.
Expected<RotBackend> ParseRotBackend(std::string_view name);
std::string_view RotBackendName(RotBackend backend);

enum class RotOpenMode {
  kCreateIfMissing,  // provisioning: create the identity on first use
  kMustExist,        // every other command: refuse an unprovisioned state dir
};

// Opens the RoT for the device whose state lives in state_dir. With
// kMustExist, a state dir without an identity is refused with kNotFound and
// a message that says to run `citadeld provision` first.
Expected<std::unique_ptr<rot::RootOfTrust>> OpenRootOfTrust(RotBackend backend, const std::filesystem::path& state_dir,
                                                            RotOpenMode mode);

}  // namespace citadel::device
