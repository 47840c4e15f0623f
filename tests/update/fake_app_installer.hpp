// FakeAppInstaller: the AppInstaller contract (src/update/installers.hpp) in
// memory, for the update client's logic tests. Images are copied into its
// own directory (the installed image file is the next delta base, and the
// client deletes its download after install). Trial health follows a script
// set by the test; the last entry repeats.
//
// Threading: one test thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/file.hpp"
#include "crypto/crypto.hpp"
#include "update/installers.hpp"

namespace citadel::update::testing {

class FakeAppInstaller final : public AppInstaller {
 public:
  explicit FakeAppInstaller(std::filesystem::path directory) : directory_(std::move(directory)) {
    std::filesystem::create_directories(directory_);
  }

  // An app installed before the test (a committed version).
  void Install(const std::string& component_id, const std::string& version, std::int64_t security_version,
               const std::string& image) {
    installed_[component_id] = Store(component_id, version, security_version, image, "installed");
  }

  std::vector<InstalledApp> InstalledApps() override {
    std::vector<InstalledApp> apps;
    for (const auto& [id, app] : installed_) apps.push_back(app);
    return apps;
  }

  Expected<void> BeginTrial(const std::filesystem::path& image_file, std::string_view expected_component_id) override {
    ++begin_calls;
    if (refuse_reason) return MakeError(ErrorCode::kInvalidArgument, *refuse_reason);
    auto image = ReadFile(image_file, 64u << 20);
    if (!image) return std::unexpected(image.error());
    const std::string component(expected_component_id);
    auto& trial = trials_[component];
    if (trial.open && trial.next.image_sha256 == crypto::Sha256Hex(*image)) return kOk;  // idempotent
    trial.open = true;
    trial.polls = 0;
    auto previous = installed_.find(component);
    trial.previous = previous == installed_.end() ? std::nullopt : std::optional<InstalledApp>(previous->second);
    trial.next = Store(component, next_version, next_security_version, *image, "trial");
    installed_[component] = trial.next;
    return kOk;
  }

  TrialHealth Trial(std::string_view component_id) override {
    auto found = trials_.find(std::string(component_id));
    if (found == trials_.end() || !found->second.open) return TrialHealth::kNoTrial;
    const std::size_t index = std::min(found->second.polls++, health_script.size() - 1);
    return health_script[index];
  }

  std::string TrialFailure(std::string_view) override { return failure_reason; }

  Expected<void> CommitTrial(std::string_view component_id) override {
    ++commit_calls;
    trials_[std::string(component_id)].open = false;
    return kOk;
  }

  Expected<void> RevertTrial(std::string_view component_id) override {
    ++revert_calls;
    auto& trial = trials_[std::string(component_id)];
    trial.open = false;
    if (trial.previous) {
      installed_[std::string(component_id)] = *trial.previous;
    } else {
      installed_.erase(std::string(component_id));
    }
    return kOk;
  }

  // What the next BeginTrial installs claims (the fake does not read
  // manifests).
  std::string next_version = "2.0.0";
  std::int64_t next_security_version = 2;
  std::vector<TrialHealth> health_script{TrialHealth::kHealthy};
  std::string failure_reason;
  std::optional<std::string> refuse_reason;
  std::atomic<int> begin_calls{0};  // read by a test's other thread
  int commit_calls = 0;
  int revert_calls = 0;

 private:
  struct OpenTrial {
    bool open = false;
    std::size_t polls = 0;
    std::optional<InstalledApp> previous;
    InstalledApp next;
  };

  InstalledApp Store(const std::string& component_id, const std::string& version, std::int64_t security_version,
                     const std::string& image, const std::string& label) {
    const auto path = directory_ / (component_id + "." + label + "." + std::to_string(++files_) + ".img");
    if (!WriteFileAtomic(path, image)) std::abort();
    return InstalledApp{component_id, version, security_version, crypto::Sha256Hex(image), path};
  }

  std::filesystem::path directory_;
  std::map<std::string, InstalledApp> installed_;
  std::map<std::string, OpenTrial> trials_;
  int files_ = 0;
};

}  // namespace citadel::update::testing
