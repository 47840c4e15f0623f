// The TUF key ceremony behind `citadel keys` and `citadel repo` (issue 4,
// docs/ARCHITECTURE.md "Over-the-air updates"): offline key files, the
// tenant's image and director roots, root rotation, image targets, and
// adding and counting signatures. No network here: the commands
// (commands_repository.cpp) fetch from and push to the service; everything
// that decides what gets signed lives here so it can be tested without one.
//
// Rules the service enforces on what we build (src/server/repository.cpp),
// kept here too so a ceremony fails before anyone signs:
//   * consistent_snapshot is true;
//   * the online roles (image: snapshot, timestamp; director: targets,
//     snapshot, timestamp) list exactly the service's online key, threshold
//     1, and never change;
//   * root (both repositories) and the image's targets are offline keys the
//     maker holds, never an online key;
//   * root version N+1 carries signatures meeting the root threshold of
//     version N and of itself.
//
// Key material: private keys only exist as tuf::SigningKey (never copied,
// never printed) and in their 0600 files. Error messages name files and key
// ids, never key bytes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/canonical_json.hpp"  // Json
#include "common/error.hpp"
#include "tuf/keys.hpp"
#include "tuf/metadata.hpp"

namespace citadel::cli {

enum class RepositoryKind { kImage, kDirector };
std::string_view RepositoryKindName(RepositoryKind kind);  // "image", "director"
std::optional<RepositoryKind> ParseRepositoryKind(std::string_view name);

// ---- key files --------------------------------------------------------------

inline constexpr std::string_view kPrivateKeySuffix = ".key";
inline constexpr std::string_view kPublicKeySuffix = ".pub.json";

struct KeyFilePaths {
  std::filesystem::path private_key;  // DIR/NAME.key
  std::filesystem::path public_key;   // DIR/NAME.pub.json
};
KeyFilePaths KeyFilesFor(const std::filesystem::path& dir_and_name);

struct CreatedKey {
  KeyFilePaths files;
  std::string key_id;
};

// Generates an ECDSA P-256 key and writes DIR/NAME.key (PKCS#8 PEM, mode
// 0600) and DIR/NAME.pub.json (the TUF key object, 0644). DIR is created
// with mode 0700 when missing. Never replaces a file: kAlreadyExists when
// either exists (each file is linked into place, so of two racing runs one
// loses). kInvalidArgument for an empty or "."/".." NAME.
Expected<CreatedKey> CreateKeyFiles(const std::filesystem::path& dir_and_name);

// Loads a private key file (PEM). kNotFound / kInvalidArgument naming the
// file; the key bytes never appear in an error.
Expected<tuf::SigningKey> LoadSigningKey(const std::filesystem::path& path);

// A public key from NAME.pub.json (a TUF key object) or from a private key
// file (its public half), with the key id securesystemslib assigns.
struct PublicKeyFile {
  tuf::Key key;
  std::string key_id;
};
Expected<PublicKeyFile> LoadPublicKey(const std::filesystem::path& path);

// DIR/<prefix>-<N>.key files, ordered by N (root-1.key, root-2.key, ...,
// root-10.key). Empty when there are none or DIR does not exist.
std::vector<std::filesystem::path> FindKeyFiles(const std::filesystem::path& dir, std::string_view prefix);
// True when DIR holds any *.key file.
bool HoldsKeyFiles(const std::filesystem::path& dir);

// ---- online keys ------------------------------------------------------------

// The service's online keys per repository and role, as POST
// .../repository/online-keys answers them.
struct OnlineKeys {
  struct Entry {
    tuf::Key key;
    std::string key_id;
  };
  std::map<std::string, Entry> image;     // snapshot, timestamp
  std::map<std::string, Entry> director;  // targets, snapshot, timestamp
  const std::map<std::string, Entry>& For(RepositoryKind kind) const {
    return kind == RepositoryKind::kImage ? image : director;
  }
};
// kInvalidArgument when a role is missing or a key does not parse or is
// not usable.
Expected<OnlineKeys> ParseOnlineKeys(const Json& answer);

// ---- roots ------------------------------------------------------------------

struct RoleKeySet {
  std::vector<PublicKeyFile> keys;
  std::int64_t threshold = 1;
};

// Root version 1 of `kind`: root = root_keys; image targets = targets_keys
// (ignored for the director, whose targets are online); the online roles
// the service's keys with threshold 1; consistent_snapshot true.
// kInvalidArgument when a threshold is out of 1..number of keys, a key is
// listed twice, or an offline role lists an online key.
Expected<tuf::Root> BuildInitialRoot(RepositoryKind kind, const RoleKeySet& root_keys, const RoleKeySet& targets_keys,
                                     const OnlineKeys& online, std::int64_t expires);

// One rotation step of the offline role `role` ("root", or "targets" of the
// image repository).
struct RootChange {
  std::string role;
  std::vector<PublicKeyFile> add_keys;
  // Full key ids or unambiguous prefixes of at least 8 hex digits.
  std::vector<std::string> remove_key_ids;
  std::optional<std::int64_t> threshold;  // unchanged when absent
  std::int64_t expires = 0;
  // The service's online key ids of both repositories (GET .../repository,
  // "online_key_ids"): never allowed as offline keys. The online keys the
  // current root lists are refused without being named here.
  std::set<std::string> online_key_ids;
};

// The next root (version + 1, the given expiry): current with the change
// applied; keys no role uses any more leave "keys". A change without keys or
// threshold is allowed: it re-signs the root to extend its life. Refuses
// (kInvalidArgument) an online role (director targets included), an
// unknown or ambiguous key id to remove, a key already in the role, an
// online key, and a threshold outside 1..number of keys.
Expected<tuf::Root> NextRoot(RepositoryKind kind, const tuf::Root& current, const RootChange& change);

// Walks a maker's trusted root forward to `latest_version` as a TUF client
// does (spec 5.3.4): each next version must be exactly one higher and be
// signed by the root threshold of the previous version and of itself.
// fetch(v) returns the document of version v. Returns the latest, now
// trusted. kCrypto / kInvalidArgument naming the version that failed.
Expected<tuf::Metadata<tuf::Root>> WalkRootChain(tuf::Metadata<tuf::Root> trusted, std::int64_t latest_version,
                                                 const std::function<Expected<std::string>(std::int64_t)>& fetch);

// ---- signatures ---------------------------------------------------------------

// How far one threshold is from being met.
struct ThresholdCheck {
  std::string what;  // e.g. "root version 2 (its own root keys)"
  std::int64_t threshold = 0;
  std::int64_t valid = 0;
  bool met = false;
  std::vector<std::string> missing_key_ids;  // authorised keys without a valid signature
};

// met is decided by tuf::VerifySignatures (the same rule devices and the
// service apply); valid and missing_key_ids explain it.
ThresholdCheck CheckThreshold(std::string what, const std::map<std::string, tuf::Key>& keys, const tuf::RoleKeys& role,
                              const tuf::Envelope& md);

// The root's own root threshold and, for a rotation, the previous root's
// (previous must be version md.version - 1; otherwise it is not checked).
std::vector<ThresholdCheck> CheckRootSignatures(const tuf::Metadata<tuf::Root>& md, const tuf::Root* previous);
// Image targets under the image root's targets role.
ThresholdCheck CheckTargetsSignatures(const tuf::Envelope& md, const tuf::Root& image_root);

bool AllMet(const std::vector<ThresholdCheck>& checks);
// One line per check not met: "root version 1 (the previous root's keys):
// 1 valid of 2 needed; 1 more from keys 3f2a..., 77aa...".
std::vector<std::string> DescribeMissing(const std::vector<ThresholdCheck>& checks);

// The key ids that may sign a root: its root role, and the previous root's
// when given (a rotation needs both thresholds).
std::set<std::string> RootSigners(const tuf::Root& root, const tuf::Root* previous);

enum class SignOutcome { kAdded, kAlreadySigned };
// Adds key's signature to md unless a signature of this key already
// verifies (signing is idempotent per key: a second run changes nothing).
// authorised: the key ids allowed to sign; a key outside it is refused
// (kPermissionDenied naming the key id and `role_description`). nullptr
// skips the check.
Expected<SignOutcome> AddSignature(tuf::Envelope& md, const tuf::SigningKey& key,
                                   const std::set<std::string>* authorised, std::string_view role_description);

// ---- metadata files -------------------------------------------------------------

// A metadata file as `citadel keys sign` sees it: root or targets.
struct MetadataFile {
  std::string type;  // "root" or "targets"
  tuf::Envelope envelope;
  std::optional<tuf::Root> root;
  std::optional<tuf::Targets> targets;
  std::int64_t version = 0;
};
// kInvalidArgument for snapshot and timestamp (the service signs those
// online) and anything that does not parse as TUF metadata.
Expected<MetadataFile> ReadMetadataFile(const std::filesystem::path& path);
Expected<tuf::Metadata<tuf::Root>> ReadRootFile(const std::filesystem::path& path);
// Writes the envelope, indented for people to review (signatures cover the
// canonical form of "signed", not the file's layout), mode 0644, atomically.
Expected<void> WriteMetadataFile(const std::filesystem::path& path, const tuf::Envelope& md);
// The envelope as JSON (the request body of a push).
Expected<Json> EnvelopeJson(const tuf::Envelope& md);

// ---- image targets --------------------------------------------------------------

struct TargetsChange {
  std::vector<std::string> added;      // names newly listed
  std::vector<std::string> unchanged;  // asked for but already listed as registered
  std::vector<std::string> removed;
};

// The next image targets: latest (nullopt before the first) with `images`
// added and `remove` taken out, version + 1 (1 for the first), the given
// expiry, unsigned. images are entries of GET /v1/tenants/{t}/images
// ({"target_name", "target": {length, hashes, custom}}). Members of the
// latest "signed" object this CLI does not know are kept. Refuses
// (kInvalidArgument) removing a name that is not listed, a name both added
// and removed, and an image entry that does not parse; an image already
// listed with another entry is replaced (its registration is what the
// service checks).
Expected<tuf::Metadata<tuf::Targets>> NextImageTargets(const std::optional<tuf::Metadata<tuf::Targets>>& latest,
                                                       const std::vector<Json>& images,
                                                       const std::vector<std::string>& remove, std::int64_t expires,
                                                       TargetsChange* change);

// Verifies the latest image targets the service holds before its entries are
// carried into a new version: signed by the targets threshold of the current
// (trusted) image root or, after a targets key rotation, of an earlier root
// version the current one vouches for (walked back through fetch, at most
// max_steps versions, each earlier root checked to be self-signed and to sign
// its successor). Returns the root version it verified under; kCrypto when no
// root vouches for it (the service's copy is not what the maker signed).
Expected<std::int64_t> VerifyLatestTargets(const tuf::Envelope& targets, const tuf::Metadata<tuf::Root>& current_root,
                                           const std::function<Expected<std::string>(std::int64_t)>& fetch,
                                           int max_steps);

}  // namespace citadel::cli
