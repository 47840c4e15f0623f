#include "sim/repository.hpp"

#include "tuf/updater.hpp"

namespace citadel::sim {
namespace {

std::string RolePath(const std::string& base, std::string_view role, std::optional<std::int64_t> version) {
  std::string path = base + "/";
  if (version) path += std::to_string(*version) + ".";
  return path + tuf::EscapeRoleName(role) + ".json";
}

std::uint64_t LengthOr(const tuf::MetaFile& meta, std::uint64_t fallback) {
  return meta.length && *meta.length > 0 ? static_cast<std::uint64_t>(*meta.length) : fallback;
}

}  // namespace

boost::asio::awaitable<Expected<tuf::TrustedMetadataSet>> RefreshRepository(const FetchFile& fetch,
                                                                            const std::string& base,
                                                                            RepositoryTrust& trust,
                                                                            std::int64_t reference_time) {
  if (trust.root.empty()) {
    auto first = co_await fetch(RolePath(base, tuf::kRootRole, 1), kRootMaxLength);
    if (!first) co_return WrapError(first.error(), "fetching the first root of " + base);
    trust.root = std::move(*first);
  }
  auto created = tuf::TrustedMetadataSet::Create(trust.root, reference_time);
  if (!created) {
    trust.root.clear();  // start over from 1.root.json next time
    co_return WrapError(created.error(), base);
  }
  tuf::TrustedMetadataSet trusted = std::move(*created);

  for (std::int64_t step = 0; step < kMaxRootRotations; ++step) {
    const std::int64_t next = trusted.root().body.version + 1;
    auto data = co_await fetch(RolePath(base, tuf::kRootRole, next), kRootMaxLength);
    if (!data) {
      if (data.error().code() == ErrorCode::kNotFound) break;
      co_return WrapError(data.error(), base + " root " + std::to_string(next));
    }
    if (auto updated = trusted.UpdateRoot(*data); !updated) co_return WrapError(updated.error(), base);
    trust.root = std::move(*data);
  }

  auto timestamp = co_await fetch(RolePath(base, tuf::kTimestampRole, std::nullopt), kTimestampMaxLength);
  if (!timestamp) co_return WrapError(timestamp.error(), base + " timestamp");
  if (auto updated = trusted.UpdateTimestamp(*timestamp); !updated) co_return WrapError(updated.error(), base);

  const bool consistent = trusted.root().body.consistent_snapshot;
  const tuf::MetaFile snapshot_meta = trusted.timestamp()->body.snapshot_meta;
  auto snapshot = co_await fetch(
      RolePath(base, tuf::kSnapshotRole, consistent ? std::optional(snapshot_meta.version) : std::nullopt),
      LengthOr(snapshot_meta, kSnapshotMaxLength));
  if (!snapshot) co_return WrapError(snapshot.error(), base + " snapshot");
  if (auto updated = trusted.UpdateSnapshot(*snapshot); !updated) co_return WrapError(updated.error(), base);

  const auto& meta = trusted.snapshot()->body.meta;
  auto listed = meta.find(std::string(tuf::kTargetsRole) + ".json");
  if (listed == meta.end()) co_return MakeError(ErrorCode::kNotFound, base + ": snapshot does not list targets");
  const tuf::MetaFile targets_meta = listed->second;
  auto targets =
      co_await fetch(RolePath(base, tuf::kTargetsRole, consistent ? std::optional(targets_meta.version) : std::nullopt),
                     LengthOr(targets_meta, kTargetsMaxLength));
  if (!targets) co_return WrapError(targets.error(), base + " targets");
  if (auto updated = trusted.UpdateTargets(*targets); !updated) co_return WrapError(updated.error(), base);
  co_return trusted;
}

std::string TargetPath(const std::string& image_base, const tuf::TargetFile& target, bool consistent_snapshot) {
  std::string_view path = target.path;
  std::string out = image_base + "/targets";
  const auto slash = path.rfind('/');
  std::string_view dir = slash == std::string_view::npos ? std::string_view() : path.substr(0, slash);
  std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  while (!dir.empty()) {
    const auto next = dir.find('/');
    out += "/" + tuf::EscapeRoleName(dir.substr(0, next));
    dir = next == std::string_view::npos ? std::string_view() : dir.substr(next + 1);
  }
  out += "/";
  if (consistent_snapshot) {
    auto sha256 = target.hashes.find("sha256");
    out += (sha256 != target.hashes.end() ? sha256->second : target.hashes.begin()->second) + ".";
  }
  return out + tuf::EscapeRoleName(name);
}

}  // namespace citadel::sim
