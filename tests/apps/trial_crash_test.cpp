// Kill-safety of app installs and update trials: a child process runs one
// operation (install, trial, commit, revert) and is SIGKILLed at its N-th
// durable step, for every N; then AppStore::Open repairs the state
// directory, which must hold the app in exactly one complete, valid version
// (or not at all, for a first install), with claims and files to match,
// and the operation can be completed afterwards. A second kill during that
// repair is tried at every step too.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <optional>
#include <set>

#include "apps/app_store.hpp"
#include "trial_support.hpp"

namespace citadel::apps {
namespace {

namespace fs = std::filesystem;
using testing::kLed1;
using testing::kLed2;
using testing::kTrialAppId;
using testing::Snapshot;

using Operation = std::function<Expected<void>(AppStore& store)>;

struct ChildRun {
  std::vector<std::string> labels;  // fault points crossed, the killing one last
  bool killed = false;
  int exit_code = -1;
};

// What Open() left installed.
struct Outcome {
  std::string version;  // "" when the app is not installed
  bool trial = false;
  bool has_previous = false;
};

class TrialCrashTest : public testing::TrialStoreFixture {
 protected:
  void SetUp() override {
    TrialStoreFixture::SetUp();
    // Reference trees of both versions, installed without interruption.
    for (const auto& [version, file] : {std::pair{"1.0", v1_file_}, std::pair{"2.0", v2_file_}}) {
      auto store = OpenAt(dir_.path() / ("reference-" + std::string(version)));
      ASSERT_TRUE(store);
      auto installed = store->InstallFile(file, InstallSource::kTenant);
      ASSERT_TRUE(installed) << installed.error().message();
      reference_tree_[version] = Snapshot(store->RootOf(kTrialAppId));
      reference_digest_[version] = installed->digest;
    }
  }

  // Runs `operation` on a store over state_dir in a forked child that is
  // SIGKILLed at its kill_at-th fault point (0: never).
  ChildRun RunChild(const fs::path& state_dir, std::size_t kill_at, const Operation& operation) {
    std::array<int, 2> fds{};
    EXPECT_EQ(::pipe(fds.data()), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      std::size_t crossed = 0;
      auto store = AppStore::Open(Options(state_dir, [&](std::string_view label) {
        std::string line = std::string(label) + "\n";
        (void)!::write(fds[1], line.data(), line.size());
        if (++crossed == kill_at) ::kill(::getpid(), SIGKILL);
      }));
      if (!store) ::_exit(3);
      if (operation && !operation(**store)) ::_exit(4);
      ::_exit(0);
    }
    ::close(fds[1]);
    std::string text;
    std::array<char, 4096> buffer{};
    for (ssize_t got; (got = ::read(fds[0], buffer.data(), buffer.size())) > 0;) {
      text.append(buffer.data(), static_cast<std::size_t>(got));
    }
    ::close(fds[0]);
    int status = 0;
    EXPECT_EQ(::waitpid(pid, &status, 0), pid);
    ChildRun run;
    run.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    for (std::size_t start = 0, end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
      run.labels.push_back(text.substr(start, end - start));
    }
    return run;
  }

  // Opens (and so repairs) the store and checks every invariant of an
  // installed app; `where` names the run in failures.
  Outcome CheckInstalled(AppStore& store, const std::string& where) {
    Outcome outcome;
    const fs::path app_dir = AppDir(store);
    auto app = store.Resolve(kTrialAppId);
    if (!app) {
      EXPECT_FALSE(fs::exists(app_dir)) << where << ": files of an app that is not installed";
      EXPECT_FALSE(store.HolderOf(kLed1)) << where;
      EXPECT_FALSE(store.HolderOf(kLed2)) << where;
      EXPECT_TRUE(LoadAppsState(store.state_file())->apps.empty()) << where;
      return outcome;
    }
    outcome.version = app->version;
    EXPECT_TRUE(outcome.version == "1.0" || outcome.version == "2.0") << where << ": version " << outcome.version;
    if (outcome.version != "1.0" && outcome.version != "2.0") return outcome;
    EXPECT_EQ(Snapshot(store.RootOf(kTrialAppId)), reference_tree_[outcome.version]) << where << ": tree";
    EXPECT_EQ(app->digest, reference_digest_[outcome.version]) << where;
    EXPECT_EQ(app->image_sha256, Sha(Image(outcome.version))) << where;
    auto image = ReadFile(store.ImageFileOf(kTrialAppId), 1u << 24);
    EXPECT_TRUE(image && *image == AsText(Image(outcome.version))) << where << ": image file";
    EXPECT_EQ(store.Problem(kTrialAppId), "") << where;
    EXPECT_TRUE(store.PolicyOf(kTrialAppId)) << where;
    auto saved = LoadAppsState(store.state_file());
    EXPECT_TRUE(saved && saved->apps.at(kTrialAppId) == *app) << where << ": state file";

    auto trial = store.TrialOf(kTrialAppId);
    outcome.trial = trial.has_value();
    outcome.has_previous = trial && trial->previous.has_value();
    std::set<std::string> expected_entries{"root", "image.img"};
    const char* own = outcome.version == "1.0" ? kLed1 : kLed2;
    const char* other = outcome.version == "1.0" ? kLed2 : kLed1;
    EXPECT_EQ(store.HolderOf(own)->component_id, kTrialAppId) << where;
    if (outcome.has_previous) {
      EXPECT_EQ(outcome.version, "2.0") << where;
      EXPECT_EQ(trial->previous->version, "1.0") << where;
      EXPECT_EQ(Snapshot(app_dir / "root.previous"), reference_tree_["1.0"]) << where << ": previous tree";
      auto previous_image = ReadFile(app_dir / "image.previous", 1u << 24);
      EXPECT_TRUE(previous_image && *previous_image == AsText(v1_)) << where << ": previous image";
      EXPECT_TRUE(store.HolderOf(other)) << where << ": the previous version's claims";
      expected_entries.insert({"root.previous", "image.previous"});
    } else {
      EXPECT_FALSE(store.HolderOf(other)) << where;
    }
    std::set<std::string> entries;
    for (const auto& entry : fs::directory_iterator(app_dir)) entries.insert(entry.path().filename().string());
    EXPECT_EQ(entries, expected_entries) << where << ": leftovers";
    return outcome;
  }

  // Prepares a state directory with `setup`, then for every fault point of
  // `operation`: kills a child there (and, for each, kills the repairing
  // Open() at each of its own points), checks the repaired state with
  // `check_outcome` and completes the work with `complete`, which must end
  // in `final_version`. Returns the number of points tried.
  std::size_t KillAtEveryPoint(const std::string& name, const Operation& setup, const Operation& operation,
                               const std::function<void(const Outcome&, const std::string&)>& check_outcome,
                               const std::function<Expected<void>(AppStore&, const Outcome&)>& complete,
                               const std::string& final_version) {
    const fs::path base = dir_.path() / name;
    const fs::path prepared = base / "prepared";
    {
      auto store = OpenAt(prepared);
      EXPECT_TRUE(store);
      if (!store) return 0;
      if (setup) {
        auto done = setup(*store);
        EXPECT_TRUE(done) << name << ": setup: " << done.error().message();
      }
    }
    auto copy = [&](const std::string& run) {
      fs::path target = base / run;
      fs::copy(prepared, target, fs::copy_options::recursive);
      return target;
    };
    auto full = RunChild(copy("count"), 0, operation);
    EXPECT_FALSE(full.killed);
    EXPECT_EQ(full.exit_code, 0) << name << ": the operation failed without a fault";
    EXPECT_FALSE(full.labels.empty()) << name;
    constexpr std::size_t kMaxRepairPoints = 32;  // bounds the nested loop
    std::size_t tried = 0;
    for (std::size_t point = 1; point <= full.labels.size(); ++point) {
      const std::string where = name + " killed at " + std::to_string(point) + " (" + full.labels[point - 1] + ")";
      const fs::path state_dir = copy("kill-" + std::to_string(point));
      auto killed = RunChild(state_dir, point, operation);
      EXPECT_TRUE(killed.killed) << where;
      ++tried;
      // A second power cut while Open() repairs: at each of its points.
      const fs::path plain = base / ("plain-" + std::to_string(point));
      fs::copy(state_dir, plain, fs::copy_options::recursive);
      auto repair = RunChild(plain, 0, {});
      EXPECT_EQ(repair.exit_code, 0) << where;
      for (std::size_t repair_point = 1; repair_point <= std::min(repair.labels.size(), kMaxRepairPoints);
           ++repair_point) {
        const std::string twice = where + ", repair killed at " + std::to_string(repair_point);
        const fs::path twice_dir = base / ("kill-" + std::to_string(point) + "-" + std::to_string(repair_point));
        fs::copy(state_dir, twice_dir, fs::copy_options::recursive);
        EXPECT_TRUE(RunChild(twice_dir, repair_point, {}).killed) << twice;
        ++tried;
        auto store = OpenAt(twice_dir);
        if (store) check_outcome(CheckInstalled(*store, twice), twice);
      }

      auto store = OpenAt(state_dir);
      EXPECT_TRUE(store) << where;
      if (!store) continue;
      auto outcome = CheckInstalled(*store, where);
      check_outcome(outcome, where);
      auto completed = complete(*store, outcome);
      EXPECT_TRUE(completed) << where << ": completing: " << completed.error().message();
      store.reset();
      store = OpenAt(state_dir);
      auto final_outcome = CheckInstalled(*store, where + ", completed");
      EXPECT_EQ(final_outcome.version, final_version) << where;
      EXPECT_FALSE(final_outcome.trial) << where;
    }
    return tried;
  }

  Expected<void> Begin(AppStore& store, const fs::path& file) {
    CITADEL_TRY_VOID(store.BeginTrial(file, kTrialAppId));
    return kOk;
  }
  Expected<void> Install(AppStore& store, const fs::path& file) {
    CITADEL_TRY_VOID(store.InstallFile(file, InstallSource::kTenant));
    return kOk;
  }

  std::map<std::string, std::string> reference_tree_;
  std::map<std::string, std::string> reference_digest_;
};

TEST_F(TrialCrashTest, BeginTrialLeavesTheOldOrTheNewVersion) {
  auto tried = KillAtEveryPoint(
      "begin", [&](AppStore& store) { return Install(store, v1_file_); },
      [&](AppStore& store) { return Begin(store, v2_file_); },
      [](const Outcome& outcome, const std::string& where) {
        EXPECT_TRUE((outcome.version == "1.0" && !outcome.trial) ||
                    (outcome.version == "2.0" && outcome.trial && outcome.has_previous))
            << where << ": " << outcome.version;
      },
      [&](AppStore& store, const Outcome& outcome) -> Expected<void> {
        if (!outcome.trial) CITADEL_TRY_VOID(Begin(store, v2_file_));
        return store.CommitTrial(kTrialAppId);
      },
      "2.0");
  EXPECT_GE(tried, 6u);
  RecordProperty("fault_points", static_cast<int>(tried));
}

TEST_F(TrialCrashTest, CommitKeepsTheNewVersion) {
  auto tried = KillAtEveryPoint(
      "commit",
      [&](AppStore& store) -> Expected<void> {
        CITADEL_TRY_VOID(Install(store, v1_file_));
        return Begin(store, v2_file_);
      },
      [](AppStore& store) { return store.CommitTrial(kTrialAppId); },
      [](const Outcome& outcome, const std::string& where) { EXPECT_EQ(outcome.version, "2.0") << where; },
      [](AppStore& store, const Outcome&) { return store.CommitTrial(kTrialAppId); }, "2.0");
  EXPECT_GE(tried, 2u);
}

TEST_F(TrialCrashTest, RevertAlwaysEndsOnThePreviousVersion) {
  auto tried = KillAtEveryPoint(
      "revert",
      [&](AppStore& store) -> Expected<void> {
        CITADEL_TRY_VOID(Install(store, v1_file_));
        return Begin(store, v2_file_);
      },
      [](AppStore& store) { return store.RevertTrial(kTrialAppId); },
      [](const Outcome& outcome, const std::string& where) {
        // "reverting" is recorded before the first step: Open() finishes it.
        EXPECT_EQ(outcome.version, "1.0") << where;
        EXPECT_FALSE(outcome.trial) << where;
      },
      [](AppStore& store, const Outcome&) { return store.RevertTrial(kTrialAppId); }, "1.0");
  EXPECT_GE(tried, 6u);
}

TEST_F(TrialCrashTest, PlainInstallOverAnAppLeavesTheOldOrTheNewVersion) {
  auto tried = KillAtEveryPoint(
      "install", [&](AppStore& store) { return Install(store, v1_file_); },
      [&](AppStore& store) { return Install(store, v2_file_); },
      [](const Outcome& outcome, const std::string& where) {
        EXPECT_FALSE(outcome.trial) << where;  // an immediate install is never left as a trial
      },
      [&](AppStore& store, const Outcome& outcome) -> Expected<void> {
        if (outcome.version != "2.0") return Install(store, v2_file_);
        return kOk;
      },
      "2.0");
  EXPECT_GE(tried, 8u);
}

TEST_F(TrialCrashTest, FirstInstallOnTrialLeavesNothingOrTheTrial) {
  auto tried = KillAtEveryPoint(
      "first", {}, [&](AppStore& store) { return Begin(store, v1_file_); },
      [](const Outcome& outcome, const std::string& where) {
        EXPECT_TRUE(outcome.version.empty() || (outcome.version == "1.0" && outcome.trial && !outcome.has_previous))
            << where << ": " << outcome.version;
      },
      [&](AppStore& store, const Outcome& outcome) -> Expected<void> {
        if (!outcome.trial) CITADEL_TRY_VOID(Begin(store, v1_file_));
        return store.CommitTrial(kTrialAppId);
      },
      "1.0");
  EXPECT_GE(tried, 4u);
}

TEST_F(TrialCrashTest, RevertOfAFirstInstallLeavesNothing) {
  auto tried = KillAtEveryPoint(
      "first-revert", [&](AppStore& store) { return Begin(store, v1_file_); },
      [](AppStore& store) { return store.RevertTrial(kTrialAppId); },
      [](const Outcome& outcome, const std::string& where) { EXPECT_EQ(outcome.version, "") << where; },
      [](AppStore& store, const Outcome&) { return store.RevertTrial(kTrialAppId); }, "");
  EXPECT_GE(tried, 3u);
}

}  // namespace
}  // namespace citadel::apps
