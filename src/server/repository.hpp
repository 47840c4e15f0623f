// A tenant's two TUF repositories on the service (docs/ARCHITECTURE.md,
// "Over-the-air updates"; docs/PROTOCOL.md, "Updates"): the image
// repository (what exists and is genuine) and the director (what each
// device group should run now).
//
// Who signs what:
//   * offline, by the maker (uploaded here, only checked): both roots, and
//     the image repository's targets;
//   * online, by this class with keys sealed in the store: the image
//     repository's snapshot and timestamp, and the director's targets,
//     snapshot and timestamp (one set of director keys per tenant; one
//     director metadata chain per device group, scope = group id).
//
// Online keys are ECDSA P-256 (tuf::SigningKey), made once per tenant by
// EnsureOnlineKeys, their private halves sealed with crypto::SealSecret
// under the master key with "tuf-online-key:<tenant>:<repository>:<role>"
// as associated data (a sealed key cannot be moved to another tenant's or
// role's row). Unsealed keys are cached for the process lifetime, like the
// tenant CA keys (docs/THREAT_MODEL.md).
//
// Online keys are fixed: every root (version 1 and every rotation) must
// name exactly the service's online key, threshold 1, for each online role,
// and none of them for root or (image) targets. A root that drops or
// replaces an online key is refused; rotating online keys would need a
// key-replacement step that does not exist yet.
//
// Freshness: online metadata is re-signed (as a new version) when less than
// half of its lifetime remains, whenever a publish or a read of
// timestamp.json finds it so (Refresh). A timestamp is never signed to
// outlive the online snapshot or director targets it vouches for.
//
// Replicas: every version is an INSERT on the store's primary key, so of
// two replicas publishing the same next version exactly one wins; the other
// (kAlreadyExists) re-reads and converges. Old snapshot, targets and
// timestamp versions are pruned to the latest kKeptVersions per scope;
// every root version stays (a device walks the whole chain).
//
// Threading: safe from all request threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "common/canonical_json.hpp"
#include "common/error.hpp"
#include "common/ttl_memo.hpp"
#include "crypto/crypto.hpp"
#include "store/store.hpp"
#include "tuf/keys.hpp"
#include "tuf/metadata.hpp"

namespace citadel::server {

// Lifetimes of the online metadata (seconds).
inline constexpr std::int64_t kImageTimestampLifetime = 24 * 60 * 60;
inline constexpr std::int64_t kImageSnapshotLifetime = 7 * 24 * 60 * 60;
inline constexpr std::int64_t kDirectorLifetime = 24 * 60 * 60;  // targets, snapshot, timestamp
// Versions of snapshot, targets and timestamp kept per scope.
inline constexpr std::int64_t kKeptVersions = 10;

// One entry of a group's director targets (docs/PROTOCOL.md, "Updates").
struct DirectorTarget {
  std::string name;
  std::uint64_t length = 0;
  std::map<std::string, std::string> hashes;
  Json custom;
};

// The online keys of a tenant, as the public TUF key objects.
struct OnlineKeys {
  struct Entry {
    std::string key_id;
    Json key;  // {"keytype","scheme","keyval":{"public"}}
  };
  std::map<store::TufRepository, std::map<store::TufRole, Entry>> keys;
  bool created = false;  // this call made at least one of them

  // {"image":{"snapshot":<key>,"timestamp":<key>},
  //  "director":{"targets":<key>,"snapshot":<key>,"timestamp":<key>}}
  Json ToJson() const;
};

// custom for an image's TUF target entry: {"citadel":{"kind",
// "component_id","version","security_version"}} (docs/PROTOCOL.md).
Json ImageTargetCustom(const store::Image& image);

// The versions a publish left current.
struct PublishedVersions {
  std::int64_t targets = 0;
  std::int64_t snapshot = 0;
  std::int64_t timestamp = 0;
};

class Repository {
 public:
  // store and master_key must outlive the repository.
  Repository(store::Store& store, const crypto::SecretBytes& master_key) : store_(store), master_key_(master_key) {}

  // Makes the tenant's five online keys that do not exist yet (idempotent;
  // of replicas racing, the first stored key of each role wins) and returns
  // all of them.
  Expected<OnlineKeys> EnsureOnlineKeys(std::string_view tenant_id, std::int64_t now);
  // The keys as they are; kFailedPrecondition when EnsureOnlineKeys has not
  // made them all yet.
  Expected<OnlineKeys> GetOnlineKeys(std::string_view tenant_id);

  // Checks and stores an uploaded root of `repository` (document = the
  // signed metadata JSON). Version 1: signed by its own root threshold.
  // Version N+1: signed by the root threshold of version N and of itself.
  // Always: consistent_snapshot true, expiry after now, online roles exactly
  // the online keys (threshold 1), no online key in root or image targets.
  // Refusals are kInvalidArgument / kCrypto (signatures) /
  // kFailedPrecondition (online keys missing) / kConflict (version taken
  // by another upload). The very same root uploaded again is accepted
  // (returns created = false).
  struct RootUpload {
    std::int64_t version = 0;
    std::int64_t expires = 0;
    bool created = true;
  };
  Expected<RootUpload> AddRoot(std::string_view tenant_id, store::TufRepository repository, std::string_view document,
                               std::int64_t now);

  // Checks and stores a maker-signed image targets metadata, then publishes
  // snapshot and timestamp. Version must be latest + 1 (1 when none); signed
  // by the current image root's targets threshold; expiry after now; no
  // delegations; every target must be an image of the tenant (store) with
  // the same length and sha256 (other hashes listed are checked against the
  // blob via verify_other_hashes), and custom.citadel equal to the image's
  // {kind, component_id, version, security_version}.
  using HashCheck = std::function<Expected<void>(const store::Image& image, const tuf::TargetFile& target)>;
  Expected<PublishedVersions> AddImageTargets(std::string_view tenant_id, std::string_view document, std::int64_t now,
                                              const HashCheck& verify_other_hashes);

  // Publishes the group's director targets as version+1 (plus snapshot
  // and timestamp) unless the latest has the same targets and custom and
  // is valid for more than half its lifetime; returns the timestamp
  // version now current for the group. kFailedPrecondition when the
  // director root or the online keys are missing; kNotFound for a group the
  // tenant does not have.
  Expected<std::int64_t> PublishDirectorTargets(std::string_view tenant_id, std::string_view group_id,
                                                const std::vector<DirectorTarget>& targets, const Json& custom,
                                                std::int64_t now);

  // The director timestamp version check-ins hand out for a group, from a
  // short per-process memo (docs/ARCHITECTURE.md, "Check-in cost"): within
  // kDirectorMemoAge of the last answer for the group it is that answer;
  // otherwise `publish` runs (the deployment service's check and publish of
  // the group's director) and its result is remembered. Remembered are
  // versions and the "repositories not set up" errors (kFailedPrecondition,
  // kNotFound); other errors are passed on and not remembered. Every
  // PublishDirectorTargets of this process refreshes the group's entry and
  // AddRoot forgets the tenant's, so changes made through this replica show
  // at once; changes through another replica, and a staged rollout's next
  // step, show within kDirectorMemoAge.
  using DirectorPublish = std::function<Expected<std::int64_t>()>;
  Expected<std::int64_t> CheckedDirectorVersion(std::string_view tenant_id, std::string_view group_id,
                                                const DirectorPublish& publish);
  static constexpr std::chrono::seconds kDirectorMemoAge{2};
  static constexpr std::size_t kMaxDirectorMemo = 65536;

  // The latest image targets, parsed (kNotFound when none yet).
  Expected<tuf::Targets> LatestImageTargets(std::string_view tenant_id);

  // Versions and expiry of every role of both repositories (per group for
  // the director) and the online key ids, for GET .../repository.
  Expected<Json> Status(std::string_view tenant_id);

  // Brings a scope's online metadata up to date (re-signing what is within
  // half its lifetime of expiring, or out of step with the latest targets)
  // and returns the current versions. scope: "" for the image repository, a
  // group id for the director. kNotFound when the scope has no targets yet.
  Expected<PublishedVersions> Refresh(std::string_view tenant_id, store::TufRepository repository,
                                      std::string_view scope, std::int64_t now);

 private:
  using KeyIndex = std::tuple<std::string, store::TufRepository, store::TufRole>;

  Expected<std::shared_ptr<const tuf::SigningKey>> OnlineKey(std::string_view tenant_id,
                                                             store::TufRepository repository, store::TufRole role);
  // Signs body (its signed object extended by `custom` when not null) and
  // stores it; kAlreadyExists when a replica stored that version first.
  template <typename T>
  Expected<std::string> SignAndStore(std::string_view tenant_id, store::TufRepository repository,
                                     std::string_view scope, store::TufRole role, const T& body, const Json& custom,
                                     std::int64_t now);
  void Prune(std::string_view tenant_id, store::TufRepository repository, std::string_view scope, store::TufRole role);

  using GroupIndex = std::pair<std::string, std::string>;  // tenant, group

  store::Store& store_;
  const crypto::SecretBytes& master_key_;
  std::mutex mutex_;
  std::map<KeyIndex, std::shared_ptr<const tuf::SigningKey>> keys_;  // guarded by mutex_
  TtlMemo<GroupIndex, std::int64_t> director_memo_{kDirectorMemoAge, kMaxDirectorMemo};
};

}  // namespace citadel::server
