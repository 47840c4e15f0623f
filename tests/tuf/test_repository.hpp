// TestRepository: builds, signs and publishes a TUF repository into a
// MemoryFetcher, the way a repository (or an attacker who holds some keys)
// would — for the TUF client's tests and the attack/conformance tests built
// on them. Modelled on the conformance suite's RepositorySimulator.
//
//   MemoryFetcher fetcher;
//   auto repo = TestRepository::Create(fetcher).value();   // v1 of every role, published
//   repo->AddTarget("targets", "app.img", "bytes");
//   repo->Bump("targets"); repo->UpdateSnapshot();        // snapshot + timestamp follow
//   Updater::InitTrustedRoot(dir, repo->PublishedRoot(1));
//
// The metadata bodies (root, timestamp, snapshot, targets[role]) are plain
// public members: edit them freely, then Publish()/Bump() a role to sign it
// with signers[role] and serve it. Nothing is served until published.
//
// Served URLs: <metadata_url>/<V>.<role>.json for every published version
// (root always; others too, for consistent snapshots), <metadata_url>/
// <role>.json for the latest of each non-root role, and every target at
// <targets_url>/<path> and <targets_url>/<dir>/<hash>.<name>.
//
// Threading: none.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "tuf/keys.hpp"
#include "tuf/memory_fetcher.hpp"
#include "tuf/metadata.hpp"

namespace citadel::tuf::testing {

inline constexpr std::string_view kMetadataUrl = "http://127.0.0.1/metadata";
inline constexpr std::string_view kTargetsUrl = "http://127.0.0.1/targets";
// The repository's notion of "now" (2030-01-01T00:00:00Z) — give the same
// time to the Updater (UpdaterConfig::now_unix_seconds).
inline constexpr std::int64_t kRepositoryNow = 1893456000;
inline constexpr std::int64_t kDay = 86400;

struct RepositoryOptions {
  bool consistent_snapshot = true;
  KeyAlgorithm algorithm = KeyAlgorithm::kEd25519;  // fast to generate
  std::int64_t now = kRepositoryNow;
  std::int64_t lifetime = 30 * kDay;  // expiry of new metadata: now + lifetime
  // List length and sha256 of snapshot in timestamp and of targets roles in
  // snapshot (python-tuf's compute_metafile_hashes_length).
  bool hashes_in_meta = false;
  std::string metadata_url{kMetadataUrl};
  std::string targets_url{kTargetsUrl};
};

class TestRepository {
 public:
  using Signer = std::shared_ptr<const SigningKey>;

  // One new key per top-level role (threshold 1), every role at version 1,
  // all published.
  static Expected<std::unique_ptr<TestRepository>> Create(MemoryFetcher& fetcher, RepositoryOptions options = {});

  // -- editable state --------------------------------------------------
  Root root;
  Timestamp timestamp;
  Snapshot snapshot;
  std::map<std::string, Targets> targets;              // "targets" and delegated roles
  std::map<std::string, std::vector<Signer>> signers;  // who signs each role on Publish
  std::map<std::string, std::string> artifacts;        // target path -> content

  // -- publishing ---------------------------------------------------------
  // Signs the role's current body with signers[role] and serves it (the
  // version is not changed: publishing twice replaces the served bytes).
  Expected<void> Publish(std::string_view role);
  // version += 1, then Publish.
  Expected<void> Bump(std::string_view role);
  // Points snapshot.meta at the latest published version of every targets
  // role (with lengths and hashes when options.hashes_in_meta), bumps and
  // publishes snapshot, then UpdateTimestamp().
  Expected<void> UpdateSnapshot();
  // Points timestamp at the latest published snapshot, bumps and publishes.
  Expected<void> UpdateTimestamp();
  // Serves hand-made bytes as a role version (tampered or re-signed files);
  // version nullopt: only the non-versioned "<role>.json".
  void ServeMetadata(std::string_view role, std::optional<std::int64_t> version, std::string bytes);

  // -- building -------------------------------------------------------------
  Expected<Signer> NewSigner() const;
  // A new key for role, added to its delegator's metadata ("root" for
  // top-level roles) and to signers[role]. The delegator is not published.
  Expected<Signer> AddKey(std::string_view role, std::string_view delegator = "root");
  // Replaces role's keys in root by `threshold` new ones (and its signers).
  Expected<void> RotateKeys(std::string_view role);
  // Adds a delegation from delegator to role (one new key unless
  // role.keyids is already filled) and an empty targets body for it
  // (version 1, not published; Publish it, then Bump the delegator).
  Expected<void> AddDelegation(std::string_view delegator, DelegatedRole role);
  // Adds data under path to targets[role] (not published) and serves it.
  void AddTarget(std::string_view role, const std::string& path, std::string data, Json custom = nullptr);

  // -- reading -------------------------------------------------------------
  // Published bytes of role version (version 0: the version last published
  // with Publish/Bump), or "" if none.
  std::string Published(std::string_view role, std::int64_t version = 0) const;
  std::string PublishedRoot(std::int64_t version) const { return Published("root", version); }
  // The version last published with Publish/Bump (0: never).
  std::int64_t LatestVersion(std::string_view role) const;
  // The URL a client fetches for role (version 0: non-versioned name).
  std::string MetadataUrl(std::string_view role, std::int64_t version = 0) const;
  std::string TargetUrl(const std::string& path, bool hash_prefixed) const;
  std::int64_t Expiry(std::int64_t seconds_from_now) const { return options_.now + seconds_from_now; }
  const RepositoryOptions& options() const { return options_; }
  MemoryFetcher& fetcher() { return fetcher_; }

 private:
  TestRepository(MemoryFetcher& fetcher, RepositoryOptions options) : fetcher_(fetcher), options_(std::move(options)) {}
  Expected<std::string> Sign(Envelope& envelope, std::string_view role) const;
  SignedCommon* Common(std::string_view role);

  MemoryFetcher& fetcher_;
  RepositoryOptions options_;
  std::map<std::string, std::map<std::int64_t, std::string>, std::less<>> published_;
  std::map<std::string, std::int64_t, std::less<>> last_published_;
};

}  // namespace citadel::tuf::testing
