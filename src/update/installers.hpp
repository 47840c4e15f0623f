// What the update client (src/update) needs from the rest of the device,
// as interfaces: the app subsystem installs app images as trials
// (implemented by apps::AppManager), the OS side writes slots and talks to
// the bootloader (implemented in src/update over boot::BootControl).
// Fixed contract between the update client and its installers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace citadel::update {

struct InstalledApp {
  std::string component_id;
  std::string version;                // manifest Version ("" when none)
  std::int64_t security_version = 0;  // manifest SecurityVersion
  std::string image_sha256;           // lower-case hex of the image file
  std::filesystem::path image_file;   // the installed image, kept as the delta base; may be empty
};

enum class TrialHealth {
  kNoTrial,    // no trial for this component
  kRunning,    // started, not yet healthy
  kHealthy,    // ran for the trial period without exiting
  kCrashLoop,  // exited repeatedly during the trial
  kFailed,     // could not start (policy, resources...); reason in TrialFailure
};

// Implemented by the app subsystem. Threading: any thread.
class AppInstaller {
 public:
  virtual ~AppInstaller() = default;

  virtual std::vector<InstalledApp> InstalledApps() = 0;

  // Verifies the image (publisher signature, manifest, board policy,
  // resources) and installs it as a trial: the previous version's tree and
  // image file stay until CommitTrial/RevertTrial; the new version starts
  // at once if the app was meant to run. Refuses an image whose component
  // id is not expected_component_id. Idempotent: the same image while its
  // trial is open is a no-op; after a power cut the trial is still open
  // (persisted). Nothing changes when it fails.
  [[nodiscard]] virtual Expected<void> BeginTrial(const std::filesystem::path& image_file,
                                                  std::string_view expected_component_id) = 0;
  virtual TrialHealth Trial(std::string_view component_id) = 0;
  virtual std::string TrialFailure(std::string_view component_id) = 0;
  // Healthy trial: the previous version is deleted; the new one stays.
  [[nodiscard]] virtual Expected<void> CommitTrial(std::string_view component_id) = 0;
  // Failed trial: the previous version is back (tree, image, state) and
  // running as it was; the trial version is deleted.
  [[nodiscard]] virtual Expected<void> RevertTrial(std::string_view component_id) = 0;
};

}  // namespace citadel::update
