// Conformance-style tests of citadel-tuf-client, the command line the public
// TUF conformance suite drives (tuf-conformance CLIENT-CLI.md): the real
// binary, run as a separate process against a repository served over HTTP
// on loopback by a real server, checked the way the suite checks a client —
// exit codes, the metadata it keeps (non-versioned names), the files it
// downloads, and the requests it makes.
//
// The repository is built and signed with TestRepository (tests/tuf), then
// mirrored into the directory the FileServer serves. Its clock is the real
// one, because the client reads time(2); expiry is tested by running the
// client under faketime(1).
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/file.hpp"
#include "common/subprocess.hpp"
#include "support/file_server.hpp"
#include "support/temp_dir.hpp"
#include "tuf/memory_fetcher.hpp"
#include "tuf/metadata.hpp"
#include "tuf/test_repository.hpp"
#include "tuf/updater.hpp"

namespace citadel::tuf {
namespace {

using citadel::testing::FileServer;
using citadel::testing::FileServerFault;
using citadel::testing::TempDir;
using testing::kDay;
using testing::MemoryFetcher;
using testing::RepositoryOptions;
using testing::TestRepository;

constexpr auto kClientTimeout = std::chrono::seconds(60);
constexpr std::size_t kMaxClientOutput = 1 << 20;

struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs argv (argv[0] is the program's path) in this process's environment
// with stdout+stderr captured, bounded by kClientTimeout (then SIGKILL and
// exit_code -1, the error as output).
RunResult RunProgram(const std::vector<std::string>& argv) {
  auto result = RunSubprocess({.argv = argv,
                               .timeout = kClientTimeout,
                               .max_stdout_bytes = kMaxClientOutput,
                               .stdout_overflow_is_error = false,
                               .merge_stderr_into_stdout = true});
  if (!result) return {.exit_code = -1, .output = result.error().message()};
  return {.exit_code = result->exit_code, .output = std::move(result->out)};
}

class ConformanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = FileServer::Start({.root = served_.path()});
    ASSERT_TRUE(server) << server.error().message();
    server_ = std::move(*server);
    RepositoryOptions options;
    options.metadata_url = server_->Url("/metadata");
    options.targets_url = server_->Url("/targets");
    options.now = std::time(nullptr);
    options.lifetime = 30 * kDay;
    auto repo = TestRepository::Create(fetcher_, options);
    ASSERT_TRUE(repo) << repo.error().message();
    repo_ = std::move(*repo);
    metadata_dir_ = client_.path() / "metadata";
    target_dir_ = client_.path() / "targets";
    root_file_ = client_.path() / "initial_root.json";
    ASSERT_TRUE(WriteFileAtomic(root_file_, repo_->PublishedRoot(1)));
    Mirror();
  }

  // Writes every file the repository serves into the served directory.
  void Mirror() {
    const std::string base = server_->BaseUrl();
    for (const auto& [url, bytes] : fetcher_.files()) {
      ASSERT_EQ(url.rfind(base, 0), 0U) << url;
      auto path = served_.path() / url.substr(base.size() + 1);
      std::filesystem::create_directories(path.parent_path());
      ASSERT_TRUE(WriteFileAtomic(path, bytes));
    }
  }

  void Publish(const std::function<Expected<void>()>& change) {
    auto changed = change();
    ASSERT_TRUE(changed) << changed.error().message();
    Mirror();
  }

  // targets version + 1, then snapshot and timestamp follow.
  void PublishTargets() {
    Publish([&]() -> Expected<void> {
      CITADEL_TRY_VOID(repo_->Bump("targets"));
      return repo_->UpdateSnapshot();
    });
  }

  RunResult Client(std::vector<std::string> args, const std::string& faketime = "") {
    std::vector<std::string> argv;
    if (!faketime.empty()) {
      // faketime preloads libfaketime ahead of the sanitizer runtime, which
      // ASan refuses by default; its interceptors still work after it.
      const char* asan = std::getenv("ASAN_OPTIONS");
      std::string asan_options = asan != nullptr ? std::string(asan) + ":" : "";
      argv = {"/usr/bin/env", "ASAN_OPTIONS=" + asan_options + "verify_asan_link_order=0", "faketime", "-f", faketime};
    }
    argv.emplace_back(CITADEL_TUF_CLIENT);
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProgram(argv);
  }
  RunResult Init() { return Client({"--metadata-dir", metadata_dir_.string(), "init", root_file_.string()}); }
  RunResult Refresh(const std::string& faketime = "") {
    return Client({"--metadata-dir", metadata_dir_.string(), "--metadata-url", server_->Url("/metadata"), "refresh"},
                  faketime);
  }
  RunResult Download(const std::vector<std::string>& names) {
    std::vector<std::string> args = {
        "--metadata-dir",    metadata_dir_.string(),   "--metadata-url", server_->Url("/metadata"),
        "--target-base-url", server_->Url("/targets"), "--target-dir",   target_dir_.string()};
    for (const auto& name : names) {
      args.emplace_back("--target-name");
      args.push_back(name);
    }
    args.emplace_back("download");
    return Client(args);
  }

  // The version of the client's trusted copy of role, 0 when absent.
  std::int64_t TrustedVersion(const std::string& role) const {
    auto bytes = ReadFile(metadata_dir_ / (role + ".json"));
    if (!bytes) return 0;
    auto envelope = ParseJsonStrict(*bytes);
    if (!envelope) return 0;
    return (*envelope)["signed"]["version"].get<std::int64_t>();
  }
  std::string TrustedBytes(const std::string& role) const {
    auto bytes = ReadFile(metadata_dir_ / (role + ".json"));
    return bytes ? *bytes : std::string();
  }
  std::uint64_t Requests(const std::string& path) const { return server_->RequestCount(path); }
  std::string TargetPath(const std::string& name) const { return repo_->TargetUrl(name, true); }
  std::size_t FilesIn(const std::filesystem::path& dir) const {
    std::error_code error;
    std::size_t count = 0;
    for (auto it = std::filesystem::directory_iterator(dir, error);
         !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
      ++count;
    }
    return count;
  }

  TempDir served_;
  TempDir client_;
  std::unique_ptr<FileServer> server_;
  MemoryFetcher fetcher_;
  std::unique_ptr<TestRepository> repo_;
  std::filesystem::path metadata_dir_;
  std::filesystem::path target_dir_;
  std::filesystem::path root_file_;
};

TEST_F(ConformanceTest, InitMakesNoRequestAndKeepsTheRootAsRootJson) {
  auto init = Init();
  ASSERT_EQ(init.exit_code, 0) << init.output;
  EXPECT_EQ(TrustedBytes("root"), repo_->PublishedRoot(1));
  EXPECT_EQ(server_->ConnectionCount(), 0U);
}

TEST_F(ConformanceTest, RefreshFetchesTheTopLevelRolesInOrderAndStoresNonVersionedNames) {
  ASSERT_EQ(Init().exit_code, 0);
  auto refresh = Refresh();
  ASSERT_EQ(refresh.exit_code, 0) << refresh.output;
  // The suite's expected sequence: root 2 (absent), timestamp, snapshot 1, targets 1.
  EXPECT_EQ(Requests("/metadata/2.root.json"), 1U);
  EXPECT_EQ(Requests("/metadata/timestamp.json"), 1U);
  EXPECT_EQ(Requests("/metadata/1.snapshot.json"), 1U);
  EXPECT_EQ(Requests("/metadata/1.targets.json"), 1U);
  for (const char* role : {"root", "timestamp", "snapshot", "targets"}) EXPECT_EQ(TrustedVersion(role), 1) << role;
  EXPECT_FALSE(std::filesystem::exists(metadata_dir_ / "1.root.json"));
}

TEST_F(ConformanceTest, OptionsMayComeInAnyOrder) {
  ASSERT_EQ(Client({"init", "--metadata-dir", metadata_dir_.string(), root_file_.string()}).exit_code, 0);
  auto refresh =
      Client({"refresh", "--metadata-url", server_->Url("/metadata"), "--metadata-dir", metadata_dir_.string()});
  EXPECT_EQ(refresh.exit_code, 0) << refresh.output;
  repo_->AddTarget("targets", "a.txt", "alpha");
  PublishTargets();
  auto download = Client({"--target-dir", target_dir_.string(), "download", "--target-name", "a.txt", "--metadata-url",
                          server_->Url("/metadata"), "--target-base-url", server_->Url("/targets"), "--metadata-dir",
                          metadata_dir_.string()});
  EXPECT_EQ(download.exit_code, 0) << download.output;
  EXPECT_EQ(ReadFile(target_dir_ / "a.txt").value_or(""), "alpha");
}

TEST_F(ConformanceTest, UsageErrorsAreNotSuccess) {
  EXPECT_NE(Client({"refresh"}).exit_code, 0);                                            // no --metadata-dir
  EXPECT_NE(Client({"--metadata-dir", metadata_dir_.string(), "refresh"}).exit_code, 0);  // no --metadata-url
  EXPECT_NE(Client({"--metadata-dir", metadata_dir_.string()}).exit_code, 0);             // no command
  EXPECT_EQ(server_->ConnectionCount(), 0U);
}

TEST_F(ConformanceTest, AnInvalidOrUnsignedInitialRootFetchesNothing) {
  auto root = ParseJsonStrict(repo_->PublishedRoot(1)).value();
  Json unsigned_root = root;
  unsigned_root["signatures"][0]["sig"] = std::string(128, '0');
  ASSERT_TRUE(WriteFileAtomic(root_file_, unsigned_root.dump()));
  EXPECT_EQ(Init().exit_code, 1);
  EXPECT_EQ(Refresh().exit_code, 1);

  root["signed"].erase("version");
  ASSERT_TRUE(WriteFileAtomic(root_file_, root.dump()));
  EXPECT_EQ(Init().exit_code, 1);
  EXPECT_EQ(Refresh().exit_code, 1);
  EXPECT_EQ(server_->ConnectionCount(), 0U);
}

TEST_F(ConformanceTest, DownloadRefreshesFirstThenCachesAndKeepsTheFileName) {
  repo_->AddTarget("targets", "dir/app.img", "version one");
  PublishTargets();
  ASSERT_EQ(Init().exit_code, 0);
  auto first = Download({"dir/app.img"});
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_EQ(TrustedVersion("targets"), 2);
  const auto file = target_dir_ / EscapeRoleName("dir/app.img");
  EXPECT_EQ(ReadFile(file).value_or(""), "version one");
  const std::string served = "/targets/" + TargetPath("dir/app.img").substr(server_->Url("/targets").size() + 1);
  EXPECT_EQ(Requests(served), 1U);

  // Already there with matching hashes: not fetched again.
  auto again = Download({"dir/app.img"});
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(Requests(served), 1U);

  // New content under the same path: the same file name, the new bytes.
  repo_->AddTarget("targets", "dir/app.img", "version two");
  PublishTargets();
  auto updated = Download({"dir/app.img"});
  ASSERT_EQ(updated.exit_code, 0) << updated.output;
  EXPECT_EQ(ReadFile(file).value_or(""), "version two");
  EXPECT_EQ(FilesIn(target_dir_), 1U);
}

TEST_F(ConformanceTest, DownloadTakesTargetsInOrderAndStopsAtTheFirstFailure) {
  repo_->AddTarget("targets", "one.txt", "1");
  repo_->AddTarget("targets", "three.txt", "3");
  PublishTargets();
  ASSERT_EQ(Init().exit_code, 0);
  auto download = Download({"one.txt", "two.txt", "three.txt"});
  EXPECT_EQ(download.exit_code, 1);
  EXPECT_NE(download.output.find("two.txt"), std::string::npos) << download.output;
  EXPECT_TRUE(std::filesystem::exists(target_dir_ / "one.txt"));
  EXPECT_FALSE(std::filesystem::exists(target_dir_ / "three.txt"));
}

TEST_F(ConformanceTest, ATargetWithWrongBytesIsNotKept) {
  repo_->AddTarget("targets", "app.img", "genuine bytes");
  PublishTargets();
  // The mirror serves other bytes of the same length under the target's name.
  const std::string relative = TargetPath("app.img").substr(server_->Url("/targets").size() + 1);
  ASSERT_TRUE(WriteFileAtomic(served_.path() / "targets" / relative, "altered bytes"));
  ASSERT_EQ(Init().exit_code, 0);
  auto download = Download({"app.img"});
  EXPECT_EQ(download.exit_code, 1) << download.output;
  EXPECT_EQ(FilesIn(target_dir_), 0U);
}

TEST_F(ConformanceTest, ExpiredMetadataFailsUnderAMovedClockAndChangesNothing) {
  ASSERT_EQ(Init().exit_code, 0);
  ASSERT_EQ(Refresh().exit_code, 0);
  const std::string timestamp = TrustedBytes("timestamp");
  Publish([&] { return repo_->UpdateTimestamp(); });
  // 40 days on, every role (30-day lifetime) has expired: a freeze attack.
  auto frozen = Refresh("+40d");
  EXPECT_EQ(frozen.exit_code, 1) << frozen.output;
  EXPECT_NE(frozen.output.find("expired"), std::string::npos) << frozen.output;
  EXPECT_EQ(TrustedBytes("timestamp"), timestamp);
  // Back in the present the same repository is fine.
  EXPECT_EQ(Refresh().exit_code, 0);
  EXPECT_EQ(TrustedVersion("timestamp"), 2);
}

TEST_F(ConformanceTest, ARolledBackTimestampIsRefused) {
  ASSERT_EQ(Init().exit_code, 0);
  Publish([&] { return repo_->UpdateTimestamp(); });
  ASSERT_EQ(Refresh().exit_code, 0);
  ASSERT_EQ(TrustedVersion("timestamp"), 2);
  const std::string trusted = TrustedBytes("timestamp");
  // A mirror serving the older (still validly signed) timestamp.
  ASSERT_TRUE(WriteFileAtomic(served_.path() / "metadata" / "timestamp.json", repo_->Published("timestamp", 1)));
  auto refresh = Refresh();
  EXPECT_EQ(refresh.exit_code, 1) << refresh.output;
  EXPECT_EQ(TrustedBytes("timestamp"), trusted);
}

TEST_F(ConformanceTest, TheClientWalksRootRotations) {
  ASSERT_EQ(Init().exit_code, 0);
  ASSERT_EQ(Refresh().exit_code, 0);
  // Root v2 rotates the root key (signed by the old and the new key); v3
  // rotates the timestamp key.
  auto previous = repo_->signers["root"];
  ASSERT_TRUE(repo_->RotateKeys("root"));
  repo_->signers["root"].insert(repo_->signers["root"].end(), previous.begin(), previous.end());
  Publish([&] { return repo_->Bump("root"); });
  repo_->signers["root"].resize(1);
  Publish([&]() -> Expected<void> {
    CITADEL_TRY_VOID(repo_->RotateKeys("timestamp"));
    return repo_->Bump("root");
  });
  Publish([&] { return repo_->UpdateTimestamp(); });
  auto refresh = Refresh();
  ASSERT_EQ(refresh.exit_code, 0) << refresh.output;
  EXPECT_EQ(TrustedVersion("root"), 3);
  EXPECT_EQ(Requests("/metadata/2.root.json"), 2U);  // absent at the first refresh, then fetched
  EXPECT_EQ(Requests("/metadata/3.root.json"), 1U);
  EXPECT_EQ(Requests("/metadata/4.root.json"), 1U);
}

TEST_F(ConformanceTest, EndlessMetadataIsCutAtItsBound) {
  ASSERT_EQ(Init().exit_code, 0);
  server_->SetFault("/metadata/timestamp.json", FileServerFault::Endless());
  const auto start = std::chrono::steady_clock::now();
  auto refresh = Refresh();
  EXPECT_EQ(refresh.exit_code, 1) << refresh.output;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
  EXPECT_EQ(TrustedVersion("timestamp"), 0);
}

}  // namespace
}  // namespace citadel::tuf
