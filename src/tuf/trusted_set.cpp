#include "tuf/trusted_set.hpp"

#include "common/json_fields.hpp"

namespace citadel::tuf {
namespace {

std::string Quoted(std::string_view text) { return json_fields::Quote(text); }

Error Wrapped(const Error& error, std::string_view role) { return error.Wrap(std::string(role)); }

}  // namespace

Expected<TrustedMetadataSet> TrustedMetadataSet::Create(std::string_view root_bytes, std::int64_t reference_time) {
  auto root = ParseMetadata<Root>(root_bytes);
  if (!root) return std::unexpected(Wrapped(root.error(), "trusted root"));
  auto self_signed = root->body.VerifyDelegate(kRootRole, *root);
  if (!self_signed) return std::unexpected(Wrapped(self_signed.error(), "trusted root"));
  return TrustedMetadataSet(*std::move(root), reference_time);
}

Expected<void> TrustedMetadataSet::UpdateRoot(std::string_view bytes) {
  if (timestamp_) return MakeError(ErrorCode::kFailedPrecondition, "cannot update root after timestamp");
  auto new_root = ParseMetadata<Root>(bytes);
  if (!new_root) return std::unexpected(Wrapped(new_root.error(), "new root"));
  // Signed by the trusted root first: until then nothing in it is trusted.
  auto by_trusted = root_.body.VerifyDelegate(kRootRole, *new_root);
  if (!by_trusted) return std::unexpected(Wrapped(by_trusted.error(), "new root (keys of the trusted root)"));
  const std::int64_t expected = root_.body.version + 1;
  if (new_root->body.version != expected) {
    return MakeError(ErrorCode::kConflict, "root version " + std::to_string(new_root->body.version) +
                                               " is not the expected " + std::to_string(expected));
  }
  auto by_itself = new_root->body.VerifyDelegate(kRootRole, *new_root);
  if (!by_itself) return std::unexpected(Wrapped(by_itself.error(), "new root (its own keys)"));
  root_ = *std::move(new_root);
  return kOk;
}

Expected<TimestampUpdate> TrustedMetadataSet::UpdateTimestamp(std::string_view bytes) {
  if (snapshot_) return MakeError(ErrorCode::kFailedPrecondition, "cannot update timestamp after snapshot");
  // 5.3.10: the final root must not be expired. No new root can come after
  // this point, so this is where the root walk's result is checked.
  if (root_.body.IsExpired(reference_time_)) {
    return MakeError(ErrorCode::kExpired, "root version " + std::to_string(root_.body.version) + " expired at " +
                                              FormatExpires(root_.body.expires));
  }
  auto new_timestamp = ParseMetadata<Timestamp>(bytes);
  if (!new_timestamp) return std::unexpected(Wrapped(new_timestamp.error(), "timestamp"));
  auto signed_ok = root_.body.VerifyDelegate(kTimestampRole, *new_timestamp);
  if (!signed_ok) return std::unexpected(signed_ok.error());

  if (timestamp_) {
    const std::int64_t trusted = timestamp_->body.version;
    const std::int64_t offered = new_timestamp->body.version;
    if (offered < trusted) {
      return MakeError(ErrorCode::kConflict, "timestamp version " + std::to_string(offered) +
                                                 " is older than trusted " + std::to_string(trusted));
    }
    if (offered == trusted) return TimestampUpdate::kUnchanged;
    const std::int64_t trusted_snapshot = timestamp_->body.snapshot_meta.version;
    const std::int64_t offered_snapshot = new_timestamp->body.snapshot_meta.version;
    if (offered_snapshot < trusted_snapshot) {
      return MakeError(ErrorCode::kConflict, "timestamp lists snapshot version " + std::to_string(offered_snapshot) +
                                                 ", older than trusted " + std::to_string(trusted_snapshot));
    }
  }
  // Kept even if expired: see the header (intermediate metadata).
  timestamp_ = *std::move(new_timestamp);
  CITADEL_TRY_VOID(CheckFinalTimestamp());
  return TimestampUpdate::kUpdated;
}

Expected<void> TrustedMetadataSet::CheckFinalTimestamp() const {
  if (timestamp_->body.IsExpired(reference_time_)) {
    return MakeError(ErrorCode::kExpired, "timestamp version " + std::to_string(timestamp_->body.version) +
                                              " expired at " + FormatExpires(timestamp_->body.expires));
  }
  return kOk;
}

Expected<void> TrustedMetadataSet::UpdateSnapshot(std::string_view bytes, bool trusted_local_copy) {
  if (!timestamp_) return MakeError(ErrorCode::kFailedPrecondition, "cannot update snapshot before timestamp");
  if (targets_.contains(kTargetsRole)) {
    return MakeError(ErrorCode::kFailedPrecondition, "cannot update snapshot after targets");
  }
  CITADEL_TRY_VOID(CheckFinalTimestamp());
  const MetaFile& expected = timestamp_->body.snapshot_meta;
  if (!trusted_local_copy) CITADEL_TRY_VOID(expected.VerifyLengthAndHashes(bytes, "snapshot"));

  auto new_snapshot = ParseMetadata<Snapshot>(bytes);
  if (!new_snapshot) return std::unexpected(Wrapped(new_snapshot.error(), "snapshot"));
  auto signed_ok = root_.body.VerifyDelegate(kSnapshotRole, *new_snapshot);
  if (!signed_ok) return std::unexpected(signed_ok.error());

  // Version against the timestamp is checked after the rollback checks so
  // that an older local copy still serves them (intermediate snapshot).
  if (snapshot_) {
    for (const auto& [name, trusted] : snapshot_->body.meta) {
      auto offered = new_snapshot->body.meta.find(name);
      if (offered == new_snapshot->body.meta.end()) {
        return MakeError(ErrorCode::kConflict,
                         "snapshot no longer lists " + Quoted(name) + ", which the trusted snapshot lists");
      }
      if (offered->second.version < trusted.version) {
        return MakeError(ErrorCode::kConflict, "snapshot lists " + Quoted(name) + " version " +
                                                   std::to_string(offered->second.version) + ", older than trusted " +
                                                   std::to_string(trusted.version));
      }
    }
  }
  snapshot_ = *std::move(new_snapshot);
  return CheckFinalSnapshot();
}

Expected<void> TrustedMetadataSet::CheckFinalSnapshot() const {
  if (snapshot_->body.IsExpired(reference_time_)) {
    return MakeError(ErrorCode::kExpired, "snapshot version " + std::to_string(snapshot_->body.version) +
                                              " expired at " + FormatExpires(snapshot_->body.expires));
  }
  const std::int64_t expected = timestamp_->body.snapshot_meta.version;
  if (snapshot_->body.version != expected) {
    return MakeError(ErrorCode::kConflict, "snapshot version " + std::to_string(snapshot_->body.version) +
                                               " is not the version " + std::to_string(expected) +
                                               " the timestamp lists");
  }
  return kOk;
}

Expected<void> TrustedMetadataSet::UpdateTargets(std::string_view bytes) {
  return UpdateDelegatedTargets(bytes, kTargetsRole, kRootRole);
}

Expected<void> TrustedMetadataSet::UpdateDelegatedTargets(std::string_view bytes, std::string_view role_name,
                                                          std::string_view delegator_name) {
  if (!snapshot_) return MakeError(ErrorCode::kFailedPrecondition, "cannot load targets before snapshot");
  CITADEL_TRY_VOID(CheckFinalSnapshot());
  const bool top_level = role_name == kTargetsRole;
  const Metadata<Targets>* delegator = top_level ? nullptr : targets(delegator_name);
  if (!top_level && delegator == nullptr) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "cannot load " + Quoted(role_name) + " before its delegator " + Quoted(delegator_name));
  }
  const std::string meta_name = std::string(role_name) + ".json";
  auto listed = snapshot_->body.meta.find(meta_name);
  if (listed == snapshot_->body.meta.end()) {
    return MakeError(ErrorCode::kNotFound, "snapshot does not list " + Quoted(meta_name));
  }
  CITADEL_TRY_VOID(listed->second.VerifyLengthAndHashes(bytes, Quoted(role_name)));

  auto new_targets = ParseMetadata<Targets>(bytes);
  if (!new_targets) return std::unexpected(Wrapped(new_targets.error(), Quoted(role_name)));
  auto signed_ok = top_level ? root_.body.VerifyDelegate(kTargetsRole, *new_targets)
                             : delegator->body.VerifyDelegate(role_name, *new_targets);
  if (!signed_ok) return std::unexpected(signed_ok.error());
  if (new_targets->body.version != listed->second.version) {
    return MakeError(ErrorCode::kConflict, Quoted(role_name) + " version " + std::to_string(new_targets->body.version) +
                                               " is not the version " + std::to_string(listed->second.version) +
                                               " the snapshot lists");
  }
  if (new_targets->body.IsExpired(reference_time_)) {
    return MakeError(ErrorCode::kExpired, Quoted(role_name) + " version " + std::to_string(new_targets->body.version) +
                                              " expired at " + FormatExpires(new_targets->body.expires));
  }
  targets_.insert_or_assign(std::string(role_name), *std::move(new_targets));
  return kOk;
}

Expected<void> TrustedMetadataSet::VerifyLoadedDelegate(std::string_view role_name,
                                                        std::string_view delegator_name) const {
  const Metadata<Targets>* loaded = targets(role_name);
  const Metadata<Targets>* delegator = targets(delegator_name);
  if (loaded == nullptr || delegator == nullptr) {
    return MakeError(ErrorCode::kFailedPrecondition, "role " + Quoted(role_name) + " or its delegator is not loaded");
  }
  return delegator->body.VerifyDelegate(role_name, *loaded);
}

const Metadata<Targets>* TrustedMetadataSet::targets(std::string_view role_name) const {
  auto found = targets_.find(role_name);
  return found == targets_.end() ? nullptr : &found->second;
}

}  // namespace citadel::tuf
