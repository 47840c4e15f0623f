#include "tuf/updater.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <set>
#include <utility>
#include <vector>

#include "common/file.hpp"
#include "common/json_fields.hpp"
#include "common/log.hpp"
#include "common/unique_fd.hpp"

namespace citadel::tuf {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kReadChunk = 64 * 1024;

std::string Quoted(std::string_view text) { return json_fields::Quote(text); }

std::string TrimTrailingSlashes(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

bool IsUnreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

std::string PercentEncode(std::string_view text, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (IsUnreserved(byte) || (keep_slash && c == '/')) {
      out += c;
    } else {
      out += '%';
      out += kHex[byte >> 4U];
      out += kHex[byte & 0xFU];
    }
  }
  return out;
}

// True when `role`'s keys differ between two roots (key ids, or the key a
// key id stands for). A threshold change alone is not a rotation.
bool RoleKeysChanged(const Root& before, const Root& after, std::string_view role) {
  auto old_role = before.roles.find(std::string(role));
  auto new_role = after.roles.find(std::string(role));
  if (old_role == before.roles.end() || new_role == after.roles.end()) return true;
  const std::set<std::string> old_ids(old_role->second.keyids.begin(), old_role->second.keyids.end());
  const std::set<std::string> new_ids(new_role->second.keyids.begin(), new_role->second.keyids.end());
  if (old_ids != new_ids) return true;
  for (const auto& keyid : old_ids) {
    auto old_key = before.keys.find(keyid);
    auto new_key = after.keys.find(keyid);
    const bool old_present = old_key != before.keys.end();
    const bool new_present = new_key != after.keys.end();
    if (old_present != new_present) return true;
    if (old_present && old_key->second.json() != new_key->second.json()) return true;
  }
  return false;
}

Error ErrnoError(ErrorCode code, const std::string& what) { return Error(code, what + ": " + std::strerror(errno)); }

// Writes all of data at the current offset.
Expected<void> WriteAll(int fd, std::string_view data, const fs::path& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(ErrnoError(ErrorCode::kIo, "cannot write " + path.string()));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return kOk;
}

// Hashes an open file from its start; kCrypto when its length or a hash
// differs from info. Reads at most info.length + 1 bytes.
Expected<void> VerifyFile(int fd, const TargetFile& info, const fs::path& path) {
  if (::lseek(fd, 0, SEEK_SET) != 0) return std::unexpected(ErrnoError(ErrorCode::kIo, "cannot seek " + path.string()));
  CITADEL_TRY(HashVerifier verifier, HashVerifier::Create(info.hashes));
  const auto expected = static_cast<std::uint64_t>(info.length);
  std::uint64_t total = 0;
  std::array<char, kReadChunk> buffer{};
  while (true) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(ErrnoError(ErrorCode::kIo, "cannot read " + path.string()));
    }
    if (n == 0) break;
    total += static_cast<std::uint64_t>(n);
    if (total > expected) break;
    verifier.Update(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
  }
  if (total != expected) {
    return MakeError(ErrorCode::kCrypto, "target " + Quoted(info.path) + ": " +
                                             (total > expected ? "longer than" : "shorter than") + " the " +
                                             std::to_string(expected) + " bytes listed");
  }
  return verifier.Finish("target " + Quoted(info.path));
}

void SyncDirectory(const fs::path& dir) {
  UniqueFd dir_fd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd) (void)::fsync(dir_fd.get());
}

}  // namespace

std::string EscapeRoleName(std::string_view name) { return PercentEncode(name, /*keep_slash=*/false); }

Updater::Updater(UpdaterConfig config, Fetcher& fetcher) : config_(std::move(config)), fetcher_(fetcher) {
  config_.metadata_base_url = TrimTrailingSlashes(std::move(config_.metadata_base_url));
  config_.target_base_url = TrimTrailingSlashes(std::move(config_.target_base_url));
}

Expected<void> Updater::InitTrustedRoot(const fs::path& metadata_dir, std::string_view root_bytes) {
  // The reference time is irrelevant: creating a trusted set checks no expiry.
  auto trusted = TrustedMetadataSet::Create(root_bytes, 0);
  if (!trusted) return std::unexpected(trusted.error().Wrap("initial trusted root refused"));
  CITADEL_TRY_VOID(EnsureDirectory(metadata_dir, 0755));
  return WriteFileAtomic(metadata_dir / "root.json", root_bytes, 0644);
}

// ---------------------------------------------------------------- metadata

Expected<std::string> Updater::FetchMetadata(std::string_view role, std::optional<std::int64_t> version,
                                             std::uint64_t max_length) {
  std::string url = config_.metadata_base_url + "/";
  if (version) url += std::to_string(*version) + ".";
  url += EscapeRoleName(role) + ".json";
  std::string data;
  const FetchSink sink = [&](std::uint64_t position, std::string_view chunk) -> Expected<void> {
    if (position == 0) data.clear();
    if (position != data.size()) return MakeError(ErrorCode::kIo, "fetcher delivered bytes out of order");
    if (chunk.size() > max_length - data.size()) {
      return MakeError(ErrorCode::kTooLarge, "longer than the " + std::to_string(max_length) + " bytes allowed");
    }
    data.append(chunk);
    return kOk;
  };
  auto fetched = fetcher_.Fetch(FetchRequest{url, max_length, 0}, sink);
  if (!fetched) return WrapError(fetched.error(), "fetching " + url);
  return data;
}

Expected<std::string> Updater::ReadLocalMetadata(std::string_view role, std::uint64_t max_length) const {
  return ReadFile(config_.metadata_dir / (EscapeRoleName(role) + ".json"), static_cast<std::size_t>(max_length));
}

Expected<void> Updater::PersistMetadata(std::string_view role, std::string_view data) const {
  return WriteFileAtomic(config_.metadata_dir / (EscapeRoleName(role) + ".json"), data, 0644);
}

Expected<void> Updater::UpdateRootChain(TrustedMetadataSet& trusted) {
  for (std::int64_t step = 0; step < config_.max_root_rotations; ++step) {
    const std::int64_t next = trusted.root().body.version + 1;
    auto data = FetchMetadata(kRootRole, next, config_.root_max_length);
    if (!data) {
      if (data.error().code() == ErrorCode::kNotFound) return kOk;  // the newest root is trusted
      return std::unexpected(data.error());
    }
    CITADEL_TRY_VOID(trusted.UpdateRoot(*data));
    CITADEL_TRY_VOID(PersistMetadata(kRootRole, *data));
    log::Info("TUF root updated", {{"version", std::to_string(next)}});
  }
  return kOk;
}

Expected<void> Updater::UpdateTimestamp(TrustedMetadataSet& trusted, bool use_local) {
  if (use_local) {
    if (auto local = ReadLocalMetadata(kTimestampRole, config_.timestamp_max_length)) {
      // A local copy that fails (even expired) is not fatal; an expired one
      // is still kept by the trusted set for the rollback check below.
      if (auto loaded = trusted.UpdateTimestamp(*local); !loaded) {
        log::Debug("local timestamp not usable as final", {{"reason", loaded.error().message()}});
      }
    }
  }
  CITADEL_TRY(std::string data, FetchMetadata(kTimestampRole, std::nullopt, config_.timestamp_max_length));
  CITADEL_TRY(TimestampUpdate outcome, trusted.UpdateTimestamp(data));
  if (outcome == TimestampUpdate::kUnchanged) return kOk;
  return PersistMetadata(kTimestampRole, data);
}

Expected<void> Updater::UpdateSnapshot(TrustedMetadataSet& trusted, bool use_local) {
  if (use_local) {
    if (auto local = ReadLocalMetadata(kSnapshotRole, config_.snapshot_max_length)) {
      auto loaded = trusted.UpdateSnapshot(*local, /*trusted_local_copy=*/true);
      if (loaded) return kOk;  // still current: nothing to download
      log::Debug("local snapshot not usable as final", {{"reason", loaded.error().message()}});
    }
  }
  const MetaFile& meta = trusted.timestamp()->body.snapshot_meta;
  const std::uint64_t max_length =
      meta.length && *meta.length > 0 ? static_cast<std::uint64_t>(*meta.length) : config_.snapshot_max_length;
  std::optional<std::int64_t> version;
  if (trusted.root().body.consistent_snapshot) version = meta.version;
  CITADEL_TRY(std::string data, FetchMetadata(kSnapshotRole, version, max_length));
  CITADEL_TRY_VOID(trusted.UpdateSnapshot(data));
  return PersistMetadata(kSnapshotRole, data);
}

Expected<const Metadata<Targets>*> Updater::LoadTargets(TrustedMetadataSet& trusted, const std::string& role,
                                                        const std::string& delegator) {
  if (const Metadata<Targets>* loaded = trusted.targets(role)) {
    // Loaded earlier, possibly through another delegator: a role is only
    // trusted for what the delegator at hand authorises.
    if (role != kTargetsRole) CITADEL_TRY_VOID(trusted.VerifyLoadedDelegate(role, delegator));
    return loaded;
  }
  if (auto local = ReadLocalMetadata(role, config_.targets_max_length)) {
    auto loaded = trusted.UpdateDelegatedTargets(*local, role, delegator);
    if (loaded) return trusted.targets(role);
    log::Debug("local targets metadata not usable", {{"role", role}, {"reason", loaded.error().message()}});
  }
  const auto& meta = trusted.snapshot()->body.meta;
  auto listed = meta.find(role + ".json");
  if (listed == meta.end()) {
    return MakeError(ErrorCode::kNotFound, "role " + Quoted(role) + " is delegated but not listed in snapshot");
  }
  const std::uint64_t max_length = listed->second.length && *listed->second.length > 0
                                       ? static_cast<std::uint64_t>(*listed->second.length)
                                       : config_.targets_max_length;
  std::optional<std::int64_t> version;
  if (trusted.root().body.consistent_snapshot) version = listed->second.version;
  CITADEL_TRY(std::string data, FetchMetadata(role, version, max_length));
  CITADEL_TRY_VOID(trusted.UpdateDelegatedTargets(data, role, delegator));
  CITADEL_TRY_VOID(PersistMetadata(role, data));
  return trusted.targets(role);
}

Expected<void> Updater::Refresh() {
  trusted_.reset();
  // 5.1: the fixed update start time, taken once.
  const std::int64_t now =
      config_.now_unix_seconds ? config_.now_unix_seconds() : static_cast<std::int64_t>(std::time(nullptr));

  // 5.2: the local trusted root. Nothing is fetched unless it verifies.
  auto root_bytes = ReadLocalMetadata(kRootRole, config_.root_max_length);
  if (!root_bytes) return WrapError(root_bytes.error(), "loading the trusted root (run init first)");
  CITADEL_TRY(TrustedMetadataSet trusted, TrustedMetadataSet::Create(*root_bytes, now));
  const Root initial_root = trusted.root().body;

  // 5.3: walk the root chain.
  CITADEL_TRY_VOID(UpdateRootChain(trusted));
  // 5.3.11: after a rotation of the timestamp or snapshot keys, the local
  // copies are not used for rollback checks (fast-forward recovery).
  const bool keys_rotated = RoleKeysChanged(initial_root, trusted.root().body, kTimestampRole) ||
                            RoleKeysChanged(initial_root, trusted.root().body, kSnapshotRole);
  if (keys_rotated) log::Info("TUF timestamp or snapshot keys rotated: local timestamp and snapshot not used");

  // 5.4 (and 5.3.10, inside UpdateTimestamp), 5.5, 5.6.
  CITADEL_TRY_VOID(UpdateTimestamp(trusted, !keys_rotated));
  CITADEL_TRY_VOID(UpdateSnapshot(trusted, !keys_rotated));
  CITADEL_TRY_VOID(LoadTargets(trusted, std::string(kTargetsRole), std::string(kRootRole)));
  trusted_ = std::move(trusted);
  return kOk;
}

// ----------------------------------------------------------------- targets

Expected<TargetFile> Updater::GetTargetInfo(std::string_view target_path) {
  if (!trusted_) return MakeError(ErrorCode::kFailedPrecondition, "TUF metadata not refreshed: call Refresh() first");
  // (role, delegator) pairs still to visit; the back is visited next.
  std::vector<std::pair<std::string, std::string>> to_visit = {{std::string(kTargetsRole), std::string(kRootRole)}};
  std::set<std::string> visited;
  while (static_cast<std::int64_t>(visited.size()) <= config_.max_delegations && !to_visit.empty()) {
    auto [role, delegator] = std::move(to_visit.back());
    to_visit.pop_back();
    if (visited.contains(role)) continue;  // cycles in the delegation graph

    auto loaded = LoadTargets(*trusted_, role, delegator);
    if (!loaded) {
      return WrapError(loaded.error(), "looking up target " + Quoted(target_path) + ": role " + Quoted(role));
    }
    const Targets& targets = (*loaded)->body;
    if (auto found = targets.targets.find(std::string(target_path)); found != targets.targets.end()) {
      return found->second;
    }
    visited.insert(role);
    if (!targets.delegations) continue;

    std::vector<std::pair<std::string, std::string>> children;
    for (auto& [child, terminating] : targets.delegations->RolesForTarget(target_path)) {
      children.emplace_back(std::move(child), role);
      if (terminating) {
        // Nothing outside this role's subtree may speak for the target.
        to_visit.clear();
        break;
      }
    }
    to_visit.insert(to_visit.end(), children.rbegin(), children.rend());
  }
  if (!to_visit.empty()) {
    log::Warn("TUF delegation search stopped at the role limit",
              {{"target", target_path}, {"max_delegations", std::to_string(config_.max_delegations)}});
  }
  return MakeError(ErrorCode::kNotFound, "target " + Quoted(target_path) + " is not listed by any trusted role");
}

Expected<fs::path> Updater::DefaultTargetPath(const TargetFile& info) const {
  if (config_.target_dir.empty()) return MakeError(ErrorCode::kInvalidArgument, "no target directory configured");
  std::string name = EscapeRoleName(info.path);
  // "." and ".." survive escaping (dots are unreserved) but name
  // directories; the empty path names none. "%" alone is a name no escaped
  // path produces ('%' itself is escaped).
  if (name == ".") name = "%2E";
  if (name == "..") name = "%2E%2E";
  if (name.empty()) name = "%";
  return config_.target_dir / name;
}

bool Updater::FindCachedTarget(const TargetFile& info, const fs::path& path) const {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return false;
  return VerifyFile(fd.get(), info, path).has_value();
}

std::string Updater::TargetUrl(const TargetFile& info) const {
  std::string_view target = info.path;
  const auto slash = target.rfind('/');
  const std::string_view dir = slash == std::string_view::npos ? std::string_view() : target.substr(0, slash + 1);
  const std::string_view name = slash == std::string_view::npos ? target : target.substr(slash + 1);
  std::string url = config_.target_base_url + "/" + PercentEncode(dir, /*keep_slash=*/true);
  if (trusted_->root().body.consistent_snapshot && config_.prefix_targets_with_hash) {
    auto sha256 = info.hashes.find("sha256");
    url += (sha256 != info.hashes.end() ? sha256->second : info.hashes.begin()->second) + ".";
  }
  return url + PercentEncode(name, /*keep_slash=*/false);
}

Expected<DownloadResult> Updater::DownloadTarget(const TargetFile& info, const fs::path& path,
                                                 const DownloadProgress& progress) {
  if (!trusted_) return MakeError(ErrorCode::kFailedPrecondition, "TUF metadata not refreshed: call Refresh() first");
  if (config_.target_base_url.empty()) return MakeError(ErrorCode::kInvalidArgument, "no target base URL configured");
  if (info.length < 0 || info.hashes.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "target " + Quoted(info.path) + " has no length or hashes");
  }
  const auto length = static_cast<std::uint64_t>(info.length);
  const std::string context = "downloading target " + Quoted(info.path);
  fs::path part_path = path;
  part_path += ".part";

  UniqueFd part(::open(part_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!part) return std::unexpected(ErrnoError(ErrorCode::kIo, "cannot open " + part_path.string()));
  struct stat status {};
  if (::fstat(part.get(), &status) != 0) {
    return std::unexpected(ErrnoError(ErrorCode::kIo, "cannot stat " + part_path.string()));
  }
  std::uint64_t written = static_cast<std::uint64_t>(status.st_size);
  auto discard_part = [&] {
    part.Reset();
    (void)::unlink(part_path.c_str());
  };
  auto restart = [&]() -> Expected<void> {
    if (::ftruncate(part.get(), 0) != 0 || ::lseek(part.get(), 0, SEEK_SET) != 0) {
      return std::unexpected(ErrnoError(ErrorCode::kIo, "cannot truncate " + part_path.string()));
    }
    written = 0;
    return kOk;
  };
  // A complete leftover is checked before anything is fetched; a longer or
  // wrong one starts over.
  if (written >= length && written > 0) {
    if (written == length && VerifyFile(part.get(), info, part_path)) {
      written = length;
    } else {
      CITADEL_TRY_VOID(restart());
    }
  }
  if (::lseek(part.get(), static_cast<off_t>(written), SEEK_SET) < 0) {
    return std::unexpected(ErrnoError(ErrorCode::kIo, "cannot seek " + part_path.string()));
  }

  DownloadResult result{path, 0, false};
  if (written < length || length == 0) {
    const std::uint64_t offset = written;
    const FetchSink sink = [&](std::uint64_t position, std::string_view chunk) -> Expected<void> {
      if (position == 0 && written != 0) CITADEL_TRY_VOID(restart());  // the server ignored the range
      if (position != written) return MakeError(ErrorCode::kIo, "fetcher delivered bytes out of order");
      if (chunk.size() > length - written) {
        return MakeError(ErrorCode::kTooLarge,
                         "target is longer than the " + std::to_string(length) + " bytes its metadata lists");
      }
      CITADEL_TRY_VOID(WriteAll(part.get(), chunk, part_path));
      written += chunk.size();
      if (progress) progress(written, length);
      return kOk;
    };
    auto fetched = fetcher_.Fetch(FetchRequest{TargetUrl(info), length, offset}, sink);
    if (!fetched) {
      // Too much data is never a prefix of the target: start afresh next
      // time. Anything else (a cut connection) leaves a resumable prefix —
      // if there is one: no empty ".part" stays behind.
      if (fetched.error().code() == ErrorCode::kTooLarge || written == 0) discard_part();
      return WrapError(fetched.error(), context);
    }
    result.bytes_fetched = fetched->bytes_received;
    result.resumed = fetched->resumed && offset > 0;
    if (written < length) {
      // The server says the file is complete: it is not the target.
      discard_part();
      return MakeError(ErrorCode::kCrypto, context + ": the server's file has " + std::to_string(written) +
                                               " bytes, the target " + std::to_string(length));
    }
  }

  if (auto verified = VerifyFile(part.get(), info, part_path); !verified) {
    discard_part();
    return WrapError(verified.error(), context);
  }
  if (::fsync(part.get()) != 0) return std::unexpected(ErrnoError(ErrorCode::kIo, "cannot sync " + part_path.string()));
  part.Reset();
  if (::rename(part_path.c_str(), path.c_str()) != 0) {
    return std::unexpected(ErrnoError(ErrorCode::kIo, "cannot rename " + part_path.string()));
  }
  SyncDirectory(path.parent_path());
  return result;
}

}  // namespace citadel::tuf
