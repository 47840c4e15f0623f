// TUF metadata (specification 1.0.x): the four top-level roles, delegated
// targets, their parsing from untrusted bytes, signature-threshold
// verification, and — for the repository side — building, signing and
// serialising them.
//
// Parsing contract (ParseMetadata):
//   * never throws; bytes go through ParseJsonStrict (invalid UTF-8,
//     duplicate keys, excessive nesting refused: kParse);
//   * shape errors are kInvalidArgument "path: reason" (json_fields), e.g.
//     "signed.roles.snapshot.threshold: must be at least 1";
//   * strict types: "_type" must be the expected role type, "spec_version"
//     major 1 ("1.x" or "1.x.y"), "version" an integer >= 1, "expires"
//     exactly "YYYY-MM-DDTHH:MM:SSZ", thresholds >= 1, lengths >= 0, hash
//     maps non-empty, signature key ids unique (spec: "multiple signatures
//     with the same keyid are not allowed");
//   * unknown members are accepted and KEPT: the signatures are verified
//     over the canonical encoding (tuf/canonical.hpp) of the "signed" object
//     exactly as received (Envelope::signed_json / signed_bytes). The typed
//     view (Metadata<T>::body) is what the client logic reads.
//
// Deliberate leniencies, as in python-tuf (the reference client the
// conformance suite is written against): key ids listed for a role need not
// name a key in "keys" (such an id simply never counts towards the
// threshold), and key ids are not recomputed from the keys (keys with extra
// members keep the id they were given).
//
// Threshold rule (VerifySignatures): the number of DISTINCT authorised keys
// with a verifying signature must reach the threshold. A key id listed twice
// for a role counts once; two key ids bound to the same key material count
// once; signatures by keys not authorised for the role are ignored; a bad
// signature from an authorised key does not fail by itself if others reach
// the threshold.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/canonical_json.hpp"  // Json
#include "common/error.hpp"
#include "tuf/keys.hpp"

typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace citadel::tuf {

// The spec version this library writes into metadata it builds.
inline constexpr std::string_view kSpecVersion = "1.0.31";

inline constexpr std::string_view kRootRole = "root";
inline constexpr std::string_view kTimestampRole = "timestamp";
inline constexpr std::string_view kSnapshotRole = "snapshot";
inline constexpr std::string_view kTargetsRole = "targets";
bool IsTopLevelRole(std::string_view name);

// "YYYY-MM-DDTHH:MM:SSZ" <-> Unix seconds (UTC), years 0001-9999. Kept in
// seconds, not a TimePoint: year 9999 does not fit a nanosecond clock.
Expected<std::int64_t> ParseExpires(std::string_view text);
std::string FormatExpires(std::int64_t unix_seconds);

// Streams data through every hash a file description lists and compares
// the digests at the end. Supported: sha224, sha256, sha384, sha512,
// blake2b (512-bit), blake2s (256-bit). An unknown algorithm fails Create
// (fail closed, like python-tuf): a file whose only hash this client cannot
// compute is never accepted.
class HashVerifier {
 public:
  static Expected<HashVerifier> Create(const std::map<std::string, std::string>& expected);
  void Update(std::string_view chunk);
  // kCrypto "what: sha256 mismatch" on the first differing digest.
  [[nodiscard]] Expected<void> Finish(std::string_view what);

 private:
  struct MdCtxDeleter {
    void operator()(EVP_MD_CTX* ctx) const;
  };
  struct Entry {
    std::string algorithm;
    std::string expected_hex;
    std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx;
  };
  HashVerifier() = default;
  std::vector<Entry> entries_;
};

struct Signature {
  std::string keyid{};
  std::string sig{};  // hex; any string is accepted when parsing
};

// What a role's delegator says about it: which keys, how many must sign.
struct RoleKeys {
  std::vector<std::string> keyids{};
  std::int64_t threshold = 1;
};

// METAFILES entry: a metadata file described by timestamp or snapshot.
struct MetaFile {
  std::int64_t version = 1;
  std::optional<std::int64_t> length{};
  std::map<std::string, std::string> hashes{};  // empty: not listed

  static Expected<MetaFile> FromJson(const Json& json, std::string_view path);
  Json ToJson() const;
  // Checks the length and every hash that is listed; kCrypto naming `what`
  // on a mismatch.
  [[nodiscard]] Expected<void> VerifyLengthAndHashes(std::string_view data, std::string_view what) const;
  // Describes data exactly (version, length and sha256).
  static MetaFile FromData(std::int64_t version, std::string_view data);
};

// TARGETS entry.
struct TargetFile {
  std::string path{};  // the TARGETPATH (the map key in metadata)
  std::int64_t length = 0;
  std::map<std::string, std::string> hashes{};  // never empty once parsed
  Json custom{};                                // null when absent

  static Expected<TargetFile> FromJson(std::string target_path, const Json& json, std::string_view path);
  Json ToJson() const;
  [[nodiscard]] Expected<void> VerifyLengthAndHashes(std::string_view data) const;
  // Describes data with its length, sha256 and sha512.
  static TargetFile FromData(std::string target_path, std::string_view data, Json custom = nullptr);
};

// Shell-style match of one TARGETPATH against one PATHPATTERN, as
// python-tuf does it: both are split at '/', the component counts must be
// equal and each component must fnmatch ('*' any run, '?' one character,
// "[seq]" / "[!seq]" a set; no escapes). So '*' never crosses a '/'.
bool MatchPathPattern(std::string_view pattern, std::string_view target_path);

struct DelegatedRole {
  std::string name{};
  std::vector<std::string> keyids{};
  std::int64_t threshold = 1;
  bool terminating = false;
  // Exactly one of the two is set.
  std::optional<std::vector<std::string>> paths{};
  std::optional<std::vector<std::string>> path_hash_prefixes{};

  // True when this role is trusted for target_path.
  bool IsDelegatedPath(std::string_view target_path) const;
};

// TAP 15 hash-bin delegation ("succinct_roles"): 2^bit_length bins named
// "<name_prefix>-<hex bin>", all signed by the same keys; a target goes to
// the bin given by the first bit_length bits of SHA-256(target path).
struct SuccinctRoles {
  std::vector<std::string> keyids{};
  std::int64_t threshold = 1;
  int bit_length = 1;
  std::string name_prefix{};

  std::string RoleForTarget(std::string_view target_path) const;
  bool IsDelegatedRole(std::string_view role_name) const;
};

struct Delegations {
  std::map<std::string, Key> keys{};
  std::vector<DelegatedRole> roles{};             // used when succinct_roles is empty
  std::optional<SuccinctRoles> succinct_roles{};  // exactly one of the two forms

  // The (role name, terminating) pairs trusted for target_path, in order of
  // appearance (the order of trust).
  std::vector<std::pair<std::string, bool>> RolesForTarget(std::string_view target_path) const;
  // The keys and threshold of a delegated role, or nullopt if not delegated.
  std::optional<RoleKeys> KeysForRole(std::string_view role_name) const;
};

// Fields every role's "signed" object has.
struct SignedCommon {
  std::string spec_version{kSpecVersion};
  std::int64_t version = 1;
  std::int64_t expires = 0;  // Unix seconds, UTC

  // Expired when the reference time has reached "expires" (the spec wants
  // expires strictly after the update start time).
  bool IsExpired(std::int64_t reference_time) const { return reference_time >= expires; }
};

// The signed metadata envelope: {"signed": ..., "signatures": [...]}.
struct Envelope {
  Json signed_json = Json::object();  // the "signed" object as received or built
  std::string signed_bytes;           // EncodeCanonical(signed_json): what signatures cover
  std::vector<Signature> signatures;

  // Replaces the signed object and its canonical bytes, and drops every
  // signature (none covers the new bytes).
  [[nodiscard]] Expected<void> SetSigned(Json signed_object);
  // Adds key's signature over signed_bytes, replacing an earlier signature
  // with the same key id.
  [[nodiscard]] Expected<void> Sign(const SigningKey& key);
  // The file form: compact JSON text {"signatures":[...],"signed":{...}}.
  Expected<std::string> Serialize() const;
};

// Checks that md carries valid signatures of at least `threshold` distinct
// keys among `keyids` (looked up in `keys`). kCrypto naming role_name and the
// count otherwise.
[[nodiscard]] Expected<void> VerifySignatures(std::string_view role_name, const std::map<std::string, Key>& keys,
                                              const RoleKeys& authorised, const Envelope& md);

struct Root : SignedCommon {
  static constexpr std::string_view kType = "root";
  bool consistent_snapshot = true;  // false when absent in parsed metadata
  std::map<std::string, Key> keys;
  std::map<std::string, RoleKeys> roles;  // at least root, timestamp, snapshot, targets

  static Expected<Root> FromJson(const Json& signed_json);
  Json ToJson() const;
  // Adds key under key_id (to "keys" and, once, to roles[role].keyids).
  void AddKey(const Key& key, const std::string& key_id, std::string_view role);
  // Verifies md as metadata of top-level role `role` signed by this root's
  // keys for it (kCrypto; kInvalidArgument for an unknown role).
  [[nodiscard]] Expected<void> VerifyDelegate(std::string_view role, const Envelope& md) const;
};

struct Timestamp : SignedCommon {
  static constexpr std::string_view kType = "timestamp";
  MetaFile snapshot_meta;  // meta["snapshot.json"]

  static Expected<Timestamp> FromJson(const Json& signed_json);
  Json ToJson() const;
};

struct Snapshot : SignedCommon {
  static constexpr std::string_view kType = "snapshot";
  std::map<std::string, MetaFile> meta;  // "targets.json", "<role>.json"

  static Expected<Snapshot> FromJson(const Json& signed_json);
  Json ToJson() const;
};

struct Targets : SignedCommon {
  static constexpr std::string_view kType = "targets";
  std::map<std::string, TargetFile> targets;
  std::optional<Delegations> delegations;

  static Expected<Targets> FromJson(const Json& signed_json);
  Json ToJson() const;
  // Verifies md as metadata of the role this targets metadata delegates to
  // under role_name (kCrypto; kNotFound when it does not delegate it).
  [[nodiscard]] Expected<void> VerifyDelegate(std::string_view role_name, const Envelope& md) const;
};

template <typename T>
struct Metadata : Envelope {
  T body;  // the typed view of signed_json
};

// Parses untrusted metadata bytes of role type T (Root, Timestamp, Snapshot,
// Targets). Does not verify signatures: that is the delegator's job
// (Root::VerifyDelegate / Targets::VerifyDelegate).
template <typename T>
Expected<Metadata<T>> ParseMetadata(std::string_view bytes);

// Repository side: unsigned metadata for body (sign it with Envelope::Sign).
template <typename T>
Expected<Metadata<T>> MakeMetadata(const T& body);

// Typed views of a role, with the envelope fields shared.
extern template Expected<Metadata<Root>> ParseMetadata<Root>(std::string_view);
extern template Expected<Metadata<Timestamp>> ParseMetadata<Timestamp>(std::string_view);
extern template Expected<Metadata<Snapshot>> ParseMetadata<Snapshot>(std::string_view);
extern template Expected<Metadata<Targets>> ParseMetadata<Targets>(std::string_view);
extern template Expected<Metadata<Root>> MakeMetadata<Root>(const Root&);
extern template Expected<Metadata<Timestamp>> MakeMetadata<Timestamp>(const Timestamp&);
extern template Expected<Metadata<Snapshot>> MakeMetadata<Snapshot>(const Snapshot&);
extern template Expected<Metadata<Targets>> MakeMetadata<Targets>(const Targets&);

}  // namespace citadel::tuf
