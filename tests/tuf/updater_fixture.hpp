// Shared fixture of the Updater tests: a TestRepository served by a
// MemoryFetcher, a client metadata directory initialised with root v1, and
// helpers to run refreshes at a chosen reference time and to snapshot the
// client's files (every attack test asserts they did not change).
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "common/canonical_json.hpp"
#include "common/file.hpp"
#include "support/temp_dir.hpp"
#include "tuf/memory_fetcher.hpp"
#include "tuf/test_repository.hpp"
#include "tuf/updater.hpp"

namespace citadel::tuf::testing {

class UpdaterFixture : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(MakeRepository({})); }

  // (Re)creates the repository with options and initialises the client.
  void MakeRepository(RepositoryOptions options) {
    repo_.reset();
    fetcher_ = std::make_unique<MemoryFetcher>();
    auto repo = TestRepository::Create(*fetcher_, std::move(options));
    ASSERT_TRUE(repo) << repo.error().message();
    repo_ = *std::move(repo);
    std::filesystem::remove_all(metadata_dir());
    std::filesystem::remove_all(target_dir());
    std::filesystem::create_directories(target_dir());
    ASSERT_TRUE(Updater::InitTrustedRoot(metadata_dir(), repo_->PublishedRoot(1)));
  }

  std::filesystem::path metadata_dir() const { return temp_.path() / "metadata"; }
  std::filesystem::path target_dir() const { return temp_.path() / "targets"; }

  UpdaterConfig Config(std::int64_t now = kRepositoryNow) const {
    return UpdaterConfig{.metadata_dir = metadata_dir(),
                         .metadata_base_url = std::string(kMetadataUrl),
                         .target_base_url = std::string(kTargetsUrl),
                         .target_dir = target_dir(),
                         .now_unix_seconds = [now] { return now; }};
  }
  std::unique_ptr<Updater> NewUpdater(std::int64_t now = kRepositoryNow) const {
    return std::make_unique<Updater>(Config(now), *fetcher_);
  }
  Expected<void> Refresh(std::int64_t now = kRepositoryNow) { return NewUpdater(now)->Refresh(); }

  // Every file of the client's metadata directory, name -> bytes.
  std::map<std::string, std::string> ClientFiles() const {
    std::map<std::string, std::string> files;
    for (const auto& entry : std::filesystem::directory_iterator(metadata_dir())) {
      files[entry.path().filename().string()] = ReadFile(entry.path()).value_or("<unreadable>");
    }
    return files;
  }
  // The version of the client's copy of role, or 0 when it has none.
  std::int64_t ClientVersion(const std::string& role) const {
    auto bytes = ReadFile(metadata_dir() / (EscapeRoleName(role) + ".json"));
    if (!bytes) return 0;
    auto json = ParseJsonStrict(*bytes);
    if (!json) return -1;
    return (*json)["signed"]["version"].get<std::int64_t>();
  }
  // Target files in target_dir (".part" files included).
  std::map<std::string, std::string> TargetFiles() const {
    std::map<std::string, std::string> files;
    for (const auto& entry : std::filesystem::directory_iterator(target_dir())) {
      files[entry.path().filename().string()] = ReadFile(entry.path()).value_or("<unreadable>");
    }
    return files;
  }

  // Every client file but timestamp.json is as in `before`. For attacks
  // refused at the snapshot step or later: the new timestamp passed every
  // check and is persisted first (spec 5.4.5), as in python-tuf.
  void ExpectUnchangedExceptTimestamp(const std::map<std::string, std::string>& before) const {
    auto after = ClientFiles();
    auto expected = before;
    after.erase("timestamp.json");
    expected.erase("timestamp.json");
    EXPECT_EQ(after, expected);
  }

  static void ExpectRefused(const Expected<void>& result, ErrorCode code, std::string_view needle = {}) {
    ASSERT_FALSE(result) << "expected a refusal";
    EXPECT_EQ(result.error().code(), code) << result.error().message();
    EXPECT_NE(result.error().message().find(needle), std::string::npos) << result.error().message();
  }

  citadel::testing::TempDir temp_{"tuf-updater"};
  std::unique_ptr<MemoryFetcher> fetcher_;
  std::unique_ptr<TestRepository> repo_;
};

}  // namespace citadel::tuf::testing
