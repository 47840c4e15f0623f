// citadel-tuf-client: Citadel's TUF client (src/tuf) behind the command line
// the public TUF conformance suite drives (tuf-conformance, CLIENT-CLI.md):
//
//   citadel-tuf-client --metadata-dir DIR init TRUSTED_ROOT
//   citadel-tuf-client --metadata-dir DIR --metadata-url URL refresh
//   citadel-tuf-client --metadata-dir DIR --metadata-url URL
//       --target-name NAME [--target-name NAME2 ...] --target-base-url URL
//       --target-dir DIR download
//
// Options may come before or after the command, in any order. Exit codes:
// 0 when the command fully succeeded, 1 when any part failed (the reason on
// stderr), CLI11's codes (>= 100) for usage errors.
//
// Semantics: `init` installs the trusted root without touching the network
// (it must parse and be signed by its own threshold); `refresh` runs the
// full top-level workflow and keeps metadata under non-versioned names
// (root.json...); `download` refreshes first, then takes the targets in the
// order given, with one updater, stopping at the first failure; a target
// already in TARGET_DIR with matching length and hashes is not fetched
// again, and a target keeps its file name (the escaped target path) when
// its content changes.
//
// Time comes from time(2), so libfaketime moves it (the conformance suite
// tests expiry that way).
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/file.hpp"
#include "tuf/http_fetcher.hpp"
#include "tuf/updater.hpp"

namespace {

constexpr int kExitFailure = 1;
// A TUF root is small; anything larger is not a root.
constexpr std::size_t kMaxTrustedRootBytes = 512000;

struct Options {
  std::string metadata_dir;
  std::string metadata_url;
  std::vector<std::string> target_names;
  std::string target_base_url;
  std::string target_dir;
  std::string trusted_root;
};

int Fail(std::string_view what, const citadel::Error& error) {
  std::cerr << "citadel-tuf-client: " << what << ": " << error.message() << "\n";
  return kExitFailure;
}

int Init(const Options& options) {
  auto root = citadel::ReadFile(options.trusted_root, kMaxTrustedRootBytes);
  if (!root) return Fail("init", root.error());
  if (auto done = citadel::tuf::Updater::InitTrustedRoot(options.metadata_dir, *root); !done) {
    return Fail("init", done.error());
  }
  return 0;
}

citadel::Expected<std::unique_ptr<citadel::tuf::HttpFetcher>> MakeFetcher() {
  // Plain http (the conformance suite) needs no CA; https would need one and
  // is refused without it by the downloader.
  citadel::http::DownloaderOptions options;
  options.user_agent = "citadel-tuf-client";
  return citadel::tuf::HttpFetcher::Create(std::move(options));
}

int Refresh(const Options& options) {
  auto fetcher = MakeFetcher();
  if (!fetcher) return Fail("refresh", fetcher.error());
  citadel::tuf::Updater updater({.metadata_dir = options.metadata_dir, .metadata_base_url = options.metadata_url},
                                **fetcher);
  if (auto refreshed = updater.Refresh(); !refreshed) return Fail("refresh", refreshed.error());
  return 0;
}

int Download(const Options& options) {
  auto fetcher = MakeFetcher();
  if (!fetcher) return Fail("download", fetcher.error());
  citadel::tuf::Updater updater({.metadata_dir = options.metadata_dir,
                                 .metadata_base_url = options.metadata_url,
                                 .target_base_url = options.target_base_url,
                                 .target_dir = options.target_dir},
                                **fetcher);
  if (auto refreshed = updater.Refresh(); !refreshed) return Fail("download: refresh", refreshed.error());
  std::error_code mkdir_error;
  std::filesystem::create_directories(options.target_dir, mkdir_error);
  if (mkdir_error) {
    return Fail("download",
                citadel::Error(citadel::ErrorCode::kIo, "cannot create the target directory " + options.target_dir +
                                                            ": " + mkdir_error.message()));
  }
  // Partial downloads wait in the metadata directory, so TARGET_DIR only
  // ever holds complete, verified files (a cut transfer resumes next time).
  const std::filesystem::path partial_dir = std::filesystem::path(options.metadata_dir) / ".partial";
  std::filesystem::create_directories(partial_dir, mkdir_error);
  if (mkdir_error) {
    return Fail("download", citadel::Error(citadel::ErrorCode::kIo,
                                           "cannot create " + partial_dir.string() + ": " + mkdir_error.message()));
  }
  for (const auto& name : options.target_names) {
    std::string what = "download " + name;
    auto info = updater.GetTargetInfo(name);
    if (!info) return Fail(what, info.error());
    auto path = updater.DefaultTargetPath(*info);
    if (!path) return Fail(what, path.error());
    if (updater.FindCachedTarget(*info, *path)) continue;
    const auto staging = partial_dir / path->filename();
    if (auto downloaded = updater.DownloadTarget(*info, staging); !downloaded) return Fail(what, downloaded.error());
    std::filesystem::rename(staging, *path, mkdir_error);
    if (mkdir_error) {
      return Fail(what, citadel::Error(citadel::ErrorCode::kIo, "cannot move the verified target to " + path->string() +
                                                                    ": " + mkdir_error.message()));
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  CLI::App app(
      "Citadel's TUF client, for the TUF conformance suite and for inspecting a repository by hand.\n"
      "Example:\n"
      "  citadel-tuf-client --metadata-dir /tmp/md init root.json\n"
      "  citadel-tuf-client --metadata-dir /tmp/md --metadata-url http://127.0.0.1:8080/metadata refresh",
      "citadel-tuf-client");
  app.require_subcommand(1);
  app.add_option("--metadata-dir", options.metadata_dir,
                 "Directory of the client's trusted metadata (root.json, timestamp.json, ...)")
      ->required();
  app.add_option("--metadata-url", options.metadata_url, "Base URL of the repository's metadata (http or https)");
  app.add_option("--target-name", options.target_names, "A target path to download; repeat for several, in order");
  app.add_option("--target-base-url", options.target_base_url, "Base URL of the repository's targets");
  app.add_option("--target-dir", options.target_dir, "Directory the verified targets are written to");

  auto* init = app.add_subcommand("init", "Install the trusted root (no network): exit 0 or 1");
  init->add_option("TRUSTED_ROOT", options.trusted_root, "A root.json obtained out of band")->required();
  auto* refresh = app.add_subcommand("refresh", "Update the top-level metadata from --metadata-url");
  auto* download = app.add_subcommand("download", "Refresh, then download each --target-name into --target-dir");
  for (auto* command : {init, refresh, download}) command->fallthrough();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }

  if (init->parsed()) return Init(options);
  if (options.metadata_url.empty()) {
    std::cerr << "citadel-tuf-client: --metadata-url is required for " << (refresh->parsed() ? "refresh" : "download")
              << "\n";
    return kExitFailure;
  }
  if (refresh->parsed()) return Refresh(options);
  if (options.target_names.empty() || options.target_base_url.empty() || options.target_dir.empty()) {
    std::cerr << "citadel-tuf-client: download needs --target-name, --target-base-url and --target-dir\n";
    return kExitFailure;
  }
  return Download(options);
}
