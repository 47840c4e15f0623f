// Updater: the TUF client workflow (specification section 5) on top of a
// Fetcher (tuf/fetcher.hpp) and a local metadata directory, with
// python-tuf's Updater semantics (tuf/ngclient/updater.py).
//
// Typical use (one process = one refresh, as on a device or in the CLI):
//   Updater::InitTrustedRoot(dir, shipped_root)   // once, out of band
//   Updater updater(config, fetcher);
//   CITADEL_TRY_VOID(updater.Refresh());
//   CITADEL_TRY(TargetFile info, updater.GetTargetInfo("apps/thermostat.img"));
//   if (!updater.FindCachedTarget(info, path)) CITADEL_TRY(auto r, updater.DownloadTarget(info, path));
//
// Local state (metadata_dir): the last trusted copy of each role under its
// non-versioned name — root.json, timestamp.json, snapshot.json,
// targets.json, and "<role>.json" for delegated roles with the role name
// percent-escaped (EscapeRoleName), so no role name can reach outside the
// directory. Files are only ever replaced atomically, and only by metadata
// that passed every check; a failed refresh leaves them as they were.
//
// Fast-forward recovery (spec 5.3.11): when the root walk of a refresh
// rotates the timestamp or snapshot keys, the local timestamp and snapshot
// are not trusted for that refresh (no rollback check against them). They
// are not deleted: a refresh that then fails leaves the last trusted files
// in place (the conformance suite reads them), and copies signed by
// rotated-away keys no longer verify under the new root in later refreshes.
//
// Security: every byte from the fetcher is bounded (per-role maximum
// lengths, the lengths snapshot/timestamp/targets list); targets are
// written to "<path>.part" and renamed only after their length and every
// listed hash verified.
//
// Threading: not thread-safe; one Updater per metadata directory at a time
// (two processes sharing a directory are not supported either).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "tuf/fetcher.hpp"
#include "tuf/metadata.hpp"
#include "tuf/trusted_set.hpp"

namespace citadel::tuf {

struct UpdaterConfig {
  // The {} initializers let callers use designated initializers and leave
  // fields out without -Wmissing-field-initializers.
  std::filesystem::path metadata_dir{};
  std::string metadata_base_url{};     // ".../metadata"; a trailing '/' is optional
  std::string target_base_url{};       // ".../targets"; needed by DownloadTarget
  std::filesystem::path target_dir{};  // optional: DefaultTargetPath's directory

  // Spec "Y": most new root versions one refresh walks (python-tuf's
  // default). A repository that rotated more often between two refreshes
  // is caught up over several refreshes.
  std::int64_t max_root_rotations = 256;
  // Most roles one target lookup visits (spec 5.6.7.1).
  std::int64_t max_delegations = 32;
  // Download bounds when the length is not known from signed metadata.
  std::uint64_t root_max_length = 512000;
  std::uint64_t timestamp_max_length = 16384;
  std::uint64_t snapshot_max_length = 2000000;
  std::uint64_t targets_max_length = 5000000;
  // With consistent snapshots, fetch targets as "<dir>/<sha256>.<name>".
  bool prefix_targets_with_hash = true;

  // Where the refresh's reference time comes from, read ONCE per Refresh()
  // (spec 5.1). Empty: time(2) — the normal clock, so libfaketime moves it.
  // Unit tests inject a fixed time here.
  std::function<std::int64_t()> now_unix_seconds{};
};

// bytes_done / bytes_total of the whole target file.
using DownloadProgress = std::function<void(std::uint64_t bytes_done, std::uint64_t bytes_total)>;

struct DownloadResult {
  std::filesystem::path path{};
  std::uint64_t bytes_fetched = 0;  // body bytes that crossed the network in this call
  bool resumed = false;             // an earlier ".part" was continued with a range request
};

// A role name or target path as one path segment: RFC 3986 unreserved
// characters (A-Z a-z 0-9 - . _ ~) kept, every other byte %XX (upper case),
// like Python's urllib.parse.quote(name, safe=""). Used in metadata URLs and
// local file names.
std::string EscapeRoleName(std::string_view name);

class Updater {
 public:
  // The fetcher must outlive the Updater.
  Updater(UpdaterConfig config, Fetcher& fetcher);

  // Installs the out-of-band trusted root: it must parse and be signed by a
  // threshold of its own root keys; then it is written (atomically) to
  // metadata_dir/root.json, creating the directory if needed. Expiry is not
  // checked (a shipped root may be old; the first refresh walks forward).
  static Expected<void> InitTrustedRoot(const std::filesystem::path& metadata_dir, std::string_view root_bytes);

  // The top-level workflow, spec 5.1-5.6: reference time, local root (must
  // exist and verify, else nothing is fetched), root walk (N+1.root.json
  // until not found), timestamp, snapshot, top-level targets — each checked
  // by TrustedMetadataSet and persisted when accepted. Local timestamp,
  // snapshot and targets are used as trusted copies when they verify;
  // errors loading them are not fatal (they are fetched instead). May be
  // called again: each call starts from the files on disk.
  [[nodiscard]] Expected<void> Refresh();

  // Spec 5.6.7: preorder depth-first search of the delegation graph for
  // target_path, loading delegated targets metadata on demand (local copy
  // first, then fetched). kNotFound when no trusted role lists the target;
  // other errors when a role on the way fails to load. Needs a successful
  // Refresh() (kFailedPrecondition otherwise).
  [[nodiscard]] Expected<TargetFile> GetTargetInfo(std::string_view target_path);

  // True when path holds exactly the target (length and every hash).
  bool FindCachedTarget(const TargetFile& info, const std::filesystem::path& path) const;

  // Spec 5.7: downloads the target into path. Bytes go to path + ".part"; a
  // ".part" left by a cut transfer is resumed from its size (a range
  // request; a server that ignores it restarts the file). Never more than
  // info.length bytes are accepted (kTooLarge, the ".part" is deleted).
  // After the transfer the whole file's length and every listed hash are
  // verified: on a mismatch, or when the server's complete file is shorter,
  // the ".part" is deleted (kCrypto); on success it is renamed to path. A
  // transfer error (kUnavailable, kIo...) keeps the ".part" for the next
  // call. Needs a successful Refresh().
  [[nodiscard]] Expected<DownloadResult> DownloadTarget(const TargetFile& info, const std::filesystem::path& path,
                                                        const DownloadProgress& progress = {});

  // target_dir / EscapeRoleName(info.path): one flat file per target path.
  Expected<std::filesystem::path> DefaultTargetPath(const TargetFile& info) const;

  // The metadata trusted by the last successful Refresh(), or nullptr.
  const TrustedMetadataSet* trusted() const { return trusted_ ? &*trusted_ : nullptr; }

 private:
  Expected<std::string> FetchMetadata(std::string_view role, std::optional<std::int64_t> version,
                                      std::uint64_t max_length);
  Expected<std::string> ReadLocalMetadata(std::string_view role, std::uint64_t max_length) const;
  Expected<void> PersistMetadata(std::string_view role, std::string_view data) const;
  Expected<void> UpdateRootChain(TrustedMetadataSet& trusted);
  Expected<void> UpdateTimestamp(TrustedMetadataSet& trusted, bool use_local);
  Expected<void> UpdateSnapshot(TrustedMetadataSet& trusted, bool use_local);
  Expected<const Metadata<Targets>*> LoadTargets(TrustedMetadataSet& trusted, const std::string& role,
                                                 const std::string& delegator);
  std::string TargetUrl(const TargetFile& info) const;

  UpdaterConfig config_;
  Fetcher& fetcher_;
  std::optional<TrustedMetadataSet> trusted_;
};

}  // namespace citadel::tuf
