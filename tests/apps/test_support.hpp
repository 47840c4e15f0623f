// Shared fixtures for the apps tests: temporary state directories (under
// the build tree, not /tmp), signed test images, a test tenant CA that
// issues development capabilities, and a fake launcher whose instances the
// test crashes and stops at will.
#pragma once

#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "app/board.hpp"
#include "apps/launcher.hpp"
#include "apps/trust.hpp"
#include "common/canonical_json.hpp"
#include "common/encoding.hpp"
#include "common/file.hpp"
#include "common/unique_fd.hpp"
#include "crypto/crypto.hpp"
#include "image/image.hpp"
#include "reports/failure_event.hpp"
#include "support/temp_dir.hpp"

namespace citadel::apps::testing {

namespace fs = std::filesystem;

inline fs::path TestTempRoot() {
  if (const char* dir = std::getenv("CITADEL_TEST_TMPDIR"); dir != nullptr && *dir != '\0') return dir;
  return CITADEL_APPS_TEST_TMP;
}

// A state directory under TestTempRoot() (/tmp may be small).
inline citadel::testing::TempDir StateTempDir() { return citadel::testing::TempDir("t", {.parent = TestTempRoot()}); }

inline void WriteText(const fs::path& path, const std::string& text, fs::perms perms = fs::perms(0644)) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
  fs::permissions(path, perms);
}

inline const char* kBoardJson = R"({"SchemaVersion":1,"Name":"citadel-simulated","Backend":"simulated",
  "Gpio":{"LED1":{"Device":"gpiochip0","Line":0},"LED2":{"Device":"gpiochip0","Line":1}},
  "Uart":{"UART0":{"Device":"/dev/ttyS0"}}})";

inline app::BoardDefinition TestBoard() {
  auto board = app::ParseBoardDefinition(kBoardJson);
  EXPECT_TRUE(board) << board.error().message();
  return *board;
}

// A manifest JSON; `capabilities` is the Capabilities object's text.
inline std::string Manifest(const std::string& name, const std::string& component_id,
                            const std::string& capabilities = "{}") {
  return R"({"SchemaVersion":1,"Name":")" + name + R"(","ComponentId":")" + component_id +
         R"(","EntryPoint":"/bin/app","CmdArgs":[],"ApplicationType":"Default","Capabilities":)" + capabilities + "}";
}

// A manifest with the Version and SecurityVersion of an update.
inline std::string VersionedManifest(const std::string& name, const std::string& component_id,
                                     const std::string& version, std::int64_t security_version,
                                     const std::string& capabilities = "{}") {
  return R"({"SchemaVersion":1,"Name":")" + name + R"(","ComponentId":")" + component_id + R"(","Version":")" +
         version + R"(","SecurityVersion":)" + std::to_string(security_version) +
         R"(,"EntryPoint":"/bin/app","CmdArgs":[],"ApplicationType":"Default","Capabilities":)" + capabilities + "}";
}

inline Bytes PackApp(const fs::path& work, const crypto::PrivateKey& key, const std::string& manifest) {
  static std::atomic<int> counter{0};
  fs::path dir = work / ("src-" + std::to_string(counter++));
  WriteText(dir / "app_manifest.json", manifest);
  WriteText(dir / "bin" / "app", "#!/bin/sh\necho hello\n", fs::perms(0755));
  WriteText(dir / "share" / "data.txt", "data\n");
  auto packed = image::PackImage(dir, key);
  EXPECT_TRUE(packed) << packed.error().message();
  return packed ? *packed : Bytes{};
}

inline crypto::PrivateKey NewKey() {
  auto key = crypto::PrivateKey::GenerateP256();
  EXPECT_TRUE(key);
  return std::move(*key);
}

// trust/publisher-keys.json trusting `keys`.
inline void TrustPublishers(const fs::path& state_dir, const std::vector<const crypto::PrivateKey*>& keys) {
  Json list = Json::array();
  for (const auto* key : keys) {
    list.push_back({{"key_id", image::PublisherKeyId(key->Public())}, {"public_key_pem", key->Public().Pem()}});
  }
  fs::create_directories(state_dir / "trust");
  ASSERT_TRUE(
      WriteFileAtomic(state_dir / "trust" / "publisher-keys.json", Json{{"publisher_keys", list}}.dump(), 0600));
}

// A tenant issuing CA and the identity of a device it certified.
struct TestTenant {
  crypto::PrivateKey ca_key = NewKey();
  crypto::Certificate ca = MakeCa(ca_key, "Tenant Issuing CA");
  std::string tenant_id = "tenant-a";
  std::string device_id = std::string(64, 'a');

  static crypto::Certificate MakeCa(const crypto::PrivateKey& key, const std::string& name) {
    crypto::CertificateSpec spec;
    spec.common_name = name;
    spec.is_ca = true;
    auto cert = crypto::IssueCertificate(spec, key.Public(), nullptr, key);
    EXPECT_TRUE(cert) << cert.error().message();
    return *cert;
  }

  DeviceIdentity Identity() const { return DeviceIdentity{device_id, tenant_id, ca}; }

  Json Capability(const std::vector<const crypto::PrivateKey*>& developer_keys = {}) const {
    Json capability{{"Type", "AppDevelopment"},
                    {"DeviceId", device_id},
                    {"TenantId", tenant_id},
                    {"IssuedAt", "2026-11-22T00:00:00Z"},
                    {"CapabilityId", "5b0e6c3a-1f2d-4e5f-8a9b-0c1d2e3f4a5b"}};
    if (!developer_keys.empty()) {
      Json keys = Json::array();
      for (const auto* key : developer_keys) keys.push_back(Base64Encode(key->Public().SpkiDer()));
      capability["DeveloperKeys"] = keys;
    }
    return capability;
  }

  // The envelope signed by `signer` (the tenant CA unless given) carrying `certificate`.
  std::string Envelope(const Json& capability, const crypto::PrivateKey* signer = nullptr,
                       const crypto::Certificate* certificate = nullptr) const {
    auto canonical = CanonicalJson(capability);
    EXPECT_TRUE(canonical);
    auto signature = (signer != nullptr ? *signer : ca_key).Sign(AsBytes(*canonical));
    EXPECT_TRUE(signature);
    return Json{{"capability", capability},
                {"signature", Base64Encode(*signature)},
                {"certificate", (certificate != nullptr ? *certificate : ca).Pem()}}
        .dump();
  }
};

// Every path under root with its type, mode and contents: two snapshots
// compare equal exactly when nothing changed.
inline std::string Snapshot(const fs::path& root) {
  std::vector<std::string> entries;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    auto status = it->symlink_status();
    std::string entry = fs::relative(it->path(), root).string() + " " +
                        std::to_string(static_cast<int>(status.type())) + " " +
                        std::to_string(static_cast<unsigned>(status.permissions()));
    if (status.type() == fs::file_type::regular) entry += " " + *ReadFile(it->path(), 1u << 24);
    entries.push_back(entry);
  }
  std::sort(entries.begin(), entries.end());
  std::string text;
  for (const auto& entry : entries) text += entry + "\n";
  return text;
}

// ---- fake launcher ----------------------------------------------------------

struct FakeBehaviour {
  bool fail_launch = false;
  bool exit_at_once = false;  // crashes (status 1) right after launching
  bool ignore_sigterm = false;
  std::string output;  // written to the log pipe at launch

  static FakeBehaviour With(bool FakeBehaviour::*flag) {
    FakeBehaviour behaviour;
    behaviour.*flag = true;
    return behaviour;
  }
  static FakeBehaviour Writing(std::string text) {
    FakeBehaviour behaviour;
    behaviour.output = std::move(text);
    return behaviour;
  }
};

class FakeApp : public RunningApp {
 public:
  FakeApp(pid_t pid, UniqueFd log, bool ignore_sigterm)
      : pid_(pid),
        exit_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
        log_(std::move(log)),
        ignore_sigterm_(ignore_sigterm) {}

  pid_t pid() const override { return pid_; }
  int exit_fd() const override { return exit_.get(); }
  Expected<void> Signal(int signal_number) override {
    std::lock_guard lock(mutex_);
    signals_.push_back(signal_number);
    if (signal_number == SIGTERM && ignore_sigterm_) return kOk;
    FinishLocked(ExitStatus{false, 0, signal_number, false});
    return kOk;
  }
  Expected<void> KillAll() override {
    std::lock_guard lock(mutex_);
    kill_all_ = true;
    FinishLocked(ExitStatus{false, 0, SIGKILL, false});
    return kOk;
  }
  Expected<ExitStatus> Reap() override {
    std::lock_guard lock(mutex_);
    reaped_ = true;
    return status_;
  }
  void Exit(ExitStatus status) {
    std::lock_guard lock(mutex_);
    FinishLocked(status);
  }
  std::vector<int> signals() const {
    std::lock_guard lock(mutex_);
    return signals_;
  }
  bool kill_all() const {
    std::lock_guard lock(mutex_);
    return kill_all_;
  }

 private:
  void FinishLocked(ExitStatus status) {
    if (finished_) return;
    finished_ = true;
    status_ = status;
    log_.Reset();
    std::uint64_t one = 1;
    (void)!::write(exit_.get(), &one, sizeof one);
  }

  pid_t pid_;
  UniqueFd exit_;
  UniqueFd log_;
  bool ignore_sigterm_;
  mutable std::mutex mutex_;
  bool finished_ = false;
  bool reaped_ = false;
  bool kill_all_ = false;
  ExitStatus status_;
  std::vector<int> signals_;
};

// Instances are shared with the test through a registry; the manager owns
// them through a forwarding wrapper so the test can inspect one after the
// manager destroyed its handle.
class FakeLauncher : public AppLauncher {
 public:
  Expected<std::unique_ptr<RunningApp>> Launch(const LaunchRequest& request) override {
    std::lock_guard lock(mutex_);
    const std::string& id = request.policy.component_id;
    launch_times_[id].push_back(std::chrono::steady_clock::now());
    requests_.push_back(request);
    FakeBehaviour behaviour = behaviours_[id];
    if (behaviour.fail_launch) return MakeError(ErrorCode::kIo, "fake launch failure");
    UniqueFd log(::dup(request.log_fd));
    if (!behaviour.output.empty()) (void)!::write(log.get(), behaviour.output.data(), behaviour.output.size());
    auto app = std::make_shared<FakeApp>(next_pid_++, std::move(log), behaviour.ignore_sigterm);
    if (behaviour.exit_at_once) app->Exit(ExitStatus{true, 1, 0, false});
    current_[id] = app;
    return std::unique_ptr<RunningApp>(new Handle(app));
  }

  void Set(const std::string& id, FakeBehaviour behaviour) {
    std::lock_guard lock(mutex_);
    behaviours_[id] = std::move(behaviour);
  }
  std::shared_ptr<FakeApp> Current(const std::string& id) {
    std::lock_guard lock(mutex_);
    return current_[id];
  }
  std::vector<std::chrono::steady_clock::time_point> LaunchTimes(const std::string& id) {
    std::lock_guard lock(mutex_);
    return launch_times_[id];
  }
  std::size_t Launches(const std::string& id) { return LaunchTimes(id).size(); }
  std::vector<LaunchRequest> Requests() {
    std::lock_guard lock(mutex_);
    return requests_;
  }

 private:
  class Handle : public RunningApp {
   public:
    explicit Handle(std::shared_ptr<FakeApp> app) : app_(std::move(app)) {}
    pid_t pid() const override { return app_->pid(); }
    int exit_fd() const override { return app_->exit_fd(); }
    Expected<void> Signal(int signal_number) override { return app_->Signal(signal_number); }
    Expected<void> KillAll() override { return app_->KillAll(); }
    Expected<ExitStatus> Reap() override { return app_->Reap(); }

   private:
    std::shared_ptr<FakeApp> app_;
  };

  std::mutex mutex_;
  pid_t next_pid_ = 1000;
  std::map<std::string, FakeBehaviour> behaviours_;
  std::map<std::string, std::shared_ptr<FakeApp>> current_;
  std::map<std::string, std::vector<std::chrono::steady_clock::time_point>> launch_times_;
  std::vector<LaunchRequest> requests_;
};

// Polls `condition` every 5 ms until it holds or `timeout` passes.
template <typename Condition>
bool WaitUntil(Condition condition, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return condition();
}

// A fixed trust source for store tests.
class StaticTrust : public TrustSource {
 public:
  std::vector<const crypto::PrivateKey*> publishers;
  std::optional<DevelopmentGrant> grant;

  Expected<std::vector<crypto::PublicKey>> PublisherKeys() override {
    std::vector<crypto::PublicKey> keys;
    for (const auto* key : publishers) keys.push_back(key->Public());
    return keys;
  }
  Expected<std::optional<DevelopmentGrant>> Development() override { return grant; }
  Expected<DevelopmentGrant> ApplyDevelopmentCapability(std::string_view) override {
    return MakeError(ErrorCode::kInternal, "not used");
  }
};

// A FailureSink that keeps every event (any thread), for tests to inspect.
class CollectingSink : public reports::FailureSink {
 public:
  void Record(reports::FailureEvent event) override {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(event));
  }
  std::vector<reports::FailureEvent> Events() {
    std::lock_guard lock(mutex_);
    return events_;
  }
  std::size_t Count() { return Events().size(); }
  std::vector<reports::FailureEvent> OfClass(std::string_view failure_class) {
    std::vector<reports::FailureEvent> matching;
    for (auto& event : Events()) {
      if (event.failure_class == failure_class) matching.push_back(std::move(event));
    }
    return matching;
  }

 private:
  std::mutex mutex_;
  std::vector<reports::FailureEvent> events_;
};

}  // namespace citadel::apps::testing
