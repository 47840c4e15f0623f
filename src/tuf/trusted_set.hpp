// TrustedMetadataSet: the client's collection of trusted TUF metadata and
// the rules by which new metadata may join it — the verification steps of
// the specification's detailed client workflow (section 5), with
// python-tuf's semantics (tuf/ngclient/_internal/trusted_metadata_set.py).
// No I/O happens here; the Updater fetches and persists.
//
// Order: root -> timestamp -> snapshot -> targets -> delegated targets.
// Each Update* needs the previous step done (and "final", see below) and is
// refused with kFailedPrecondition once a later step has run (no new root
// after a timestamp, no new timestamp after a snapshot, ...).
//
// Intermediate metadata: a timestamp or snapshot that verifies but is
// expired (or, for the snapshot, whose version differs from the timestamp's
// snapshot version) is STILL KEPT and the update returns the error. Such
// metadata only serves rollback checks of a newer copy of the same role;
// the next step refuses to build on it. This is how an expired local
// timestamp still protects against a rolled-back remote one.
//
// Errors (each message names the role and the rule):
//   kParse / kInvalidArgument  malformed metadata
//   kCrypto                    signature threshold not met, hash or length mismatch
//   kExpired                   expired (freeze attack)
//   kConflict                  rollback or version mismatch
//   kNotFound                  role not listed in snapshot / not delegated
//   kFailedPrecondition        steps out of order
//
// Time: every expiry check uses the reference time given at creation (the
// spec's "fixed update start time"); the caller takes it once per refresh.
//
// Threading: none; one refresh at a time.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "tuf/metadata.hpp"

namespace citadel::tuf {

// What UpdateTimestamp did with a correctly signed timestamp.
enum class TimestampUpdate {
  kUpdated,    // the new timestamp is now trusted (persist it)
  kUnchanged,  // same version as the trusted one: the old one is kept (spec 5.4.3.1)
};

class TrustedMetadataSet {
 public:
  // Loads the trusted root (spec 5.2): it must parse and be signed by a
  // threshold of its own root keys. Its expiry does not matter yet.
  static Expected<TrustedMetadataSet> Create(std::string_view root_bytes, std::int64_t reference_time);

  // Spec 5.3.4-5.3.7: root version N+1 signed by the trusted root's
  // threshold AND its own; version must be exactly trusted + 1. Expiry is
  // not checked here (an intermediate root may be expired).
  [[nodiscard]] Expected<void> UpdateRoot(std::string_view bytes);

  // Spec 5.3.10 (the final root must not be expired) and 5.4: signed by the
  // root's timestamp keys; version and snapshot version must not roll back;
  // an equal version keeps the trusted one (kUnchanged); then expiry.
  [[nodiscard]] Expected<TimestampUpdate> UpdateTimestamp(std::string_view bytes);

  // Spec 5.5: the final timestamp must not be expired; length and hashes
  // must match the timestamp's snapshot meta (skipped when trusted_local_copy:
  // a copy this client persisted after verifying it); signed by the root's
  // snapshot keys; no targets role of the previous trusted snapshot may
  // disappear or roll back; then expiry and version == timestamp's
  // snapshot version.
  [[nodiscard]] Expected<void> UpdateSnapshot(std::string_view bytes, bool trusted_local_copy = false);

  // Spec 5.6: top-level targets, verified by root.
  [[nodiscard]] Expected<void> UpdateTargets(std::string_view bytes);
  // Spec 5.6 for a delegated role: the final snapshot must not be expired
  // and must match the timestamp; the role must be listed in snapshot
  // ("<role>.json"), length/hashes must match when listed, signed by the
  // delegator's keys for the role, version == snapshot's, not expired.
  [[nodiscard]] Expected<void> UpdateDelegatedTargets(std::string_view bytes, std::string_view role_name,
                                                      std::string_view delegator_name);

  // Re-checks that already trusted metadata for role_name is signed by the
  // threshold delegator_name sets for it (a role reached through another
  // delegator than the one it was loaded through).
  [[nodiscard]] Expected<void> VerifyLoadedDelegate(std::string_view role_name, std::string_view delegator_name) const;

  const Metadata<Root>& root() const { return root_; }
  const Metadata<Timestamp>* timestamp() const { return timestamp_ ? &*timestamp_ : nullptr; }
  const Metadata<Snapshot>* snapshot() const { return snapshot_ ? &*snapshot_ : nullptr; }
  // Top-level ("targets") or delegated targets metadata, or nullptr.
  const Metadata<Targets>* targets(std::string_view role_name = kTargetsRole) const;
  std::int64_t reference_time() const { return reference_time_; }

 private:
  TrustedMetadataSet(Metadata<Root> root, std::int64_t reference_time)
      : root_(std::move(root)), reference_time_(reference_time) {}

  Expected<void> CheckFinalTimestamp() const;
  Expected<void> CheckFinalSnapshot() const;

  Metadata<Root> root_;
  std::optional<Metadata<Timestamp>> timestamp_;
  std::optional<Metadata<Snapshot>> snapshot_;
  std::map<std::string, Metadata<Targets>, std::less<>> targets_;  // "targets" and delegated roles
  std::int64_t reference_time_;
};

}  // namespace citadel::tuf
