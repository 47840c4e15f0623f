#include "cli/repository_ceremony.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <utility>

#include "common/encoding.hpp"
#include "common/file.hpp"
#include "crypto/crypto.hpp"

namespace citadel::cli {
namespace {

namespace fs = std::filesystem;

// Key files are small; a larger file is not one of ours.
constexpr std::size_t kMaxKeyFileBytes = 64 << 10;
// Root and targets files: the service's bound on a request body is 1 MiB.
constexpr std::size_t kMaxMetadataFileBytes = 1 << 20;
// Keys per role and root versions walked in one go: far above any real
// ceremony, low enough that a hostile answer cannot keep the CLI busy.
constexpr std::size_t kMaxRoleKeys = 64;
constexpr std::int64_t kMaxChainSteps = 1024;
// Shortest key id prefix --remove-key accepts.
constexpr std::size_t kMinKeyIdPrefix = 8;

bool IsLowerHex(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string Lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// fsyncs a directory so that a new entry in it survives a power cut.
Expected<void> SyncDirectory(const fs::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return MakeError(ErrorCode::kIo, "cannot open " + dir.string() + ": " + std::strerror(errno));
  const int synced = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  if (synced != 0) return MakeError(ErrorCode::kIo, "cannot sync " + dir.string() + ": " + std::strerror(saved));
  return kOk;
}

// Writes data to a path that must not exist yet: written completely under a
// temporary name first, then hard-linked to `path` (link fails with EEXIST
// instead of replacing, unlike rename), so `path` is either absent or whole.
Expected<void> WriteNewFile(const fs::path& path, std::string_view data, unsigned mode) {
  const fs::path temporary =
      path.parent_path() / ("." + path.filename().string() + ".new." + HexEncode(crypto::RandomBytes(8)));
  CITADEL_TRY_VOID(WriteFileAtomic(temporary, data, mode));
  const int linked = ::link(temporary.c_str(), path.c_str());
  const int saved = errno;
  std::error_code ignored;
  fs::remove(temporary, ignored);
  if (linked != 0) {
    if (saved == EEXIST) return MakeError(ErrorCode::kAlreadyExists, path.string() + " already exists");
    return MakeError(ErrorCode::kIo, "cannot create " + path.string() + ": " + std::strerror(saved));
  }
  return SyncDirectory(path.parent_path());
}

Expected<std::string> KeyIdOf(const tuf::Key& key) { return key.ComputeKeyId(); }

// The key ids of `role` in root, or an empty list.
const std::vector<std::string>& RoleKeyIds(const tuf::Root& root, std::string_view role) {
  static const std::vector<std::string> kNone;
  auto found = root.roles.find(std::string(role));
  return found == root.roles.end() ? kNone : found->second.keyids;
}

std::set<std::string> OnlineKeyIds(const OnlineKeys& online) {
  std::set<std::string> ids;
  for (const auto* roles : {&online.image, &online.director}) {
    for (const auto& [role, entry] : *roles) ids.insert(entry.key_id);
  }
  return ids;
}

std::set<std::string> OnlineMaterial(const OnlineKeys& online) {
  std::set<std::string> material;
  for (const auto* roles : {&online.image, &online.director}) {
    for (const auto& [role, entry] : *roles) material.insert(entry.key.material_id());
  }
  return material;
}

// The roles of a repository the service signs online.
std::vector<std::string> OnlineRoles(RepositoryKind kind) {
  if (kind == RepositoryKind::kImage) return {std::string(tuf::kSnapshotRole), std::string(tuf::kTimestampRole)};
  return {std::string(tuf::kTargetsRole), std::string(tuf::kSnapshotRole), std::string(tuf::kTimestampRole)};
}

bool IsOfflineRole(RepositoryKind kind, std::string_view role) {
  return role == tuf::kRootRole || (kind == RepositoryKind::kImage && role == tuf::kTargetsRole);
}

Expected<void> CheckThresholdRange(std::string_view role, std::int64_t threshold, std::size_t key_count) {
  if (key_count == 0) return MakeError(ErrorCode::kInvalidArgument, "the " + std::string(role) + " role needs a key");
  if (key_count > kMaxRoleKeys) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the " + std::string(role) + " role may list at most " + std::to_string(kMaxRoleKeys) + " keys");
  }
  if (threshold < 1 || threshold > static_cast<std::int64_t>(key_count)) {
    return MakeError(ErrorCode::kInvalidArgument, "the " + std::string(role) + " threshold must be 1.." +
                                                      std::to_string(key_count) + " (the number of its keys), not " +
                                                      std::to_string(threshold));
  }
  return kOk;
}

// An offline key must never be one of the service's online keys: a root
// listing one would let a compromised service sign what devices install.
Expected<void> CheckNotOnline(const PublicKeyFile& key, const std::set<std::string>& online_ids,
                              const std::set<std::string>& online_material, std::string_view role) {
  if (online_ids.contains(key.key_id) || online_material.contains(key.key.material_id())) {
    return MakeError(ErrorCode::kInvalidArgument, "key " + key.key_id + " is one of the service's online keys; the " +
                                                      std::string(role) + " role must use offline keys you hold");
  }
  return kOk;
}

void SetOnlineRoles(tuf::Root& root, RepositoryKind kind, const OnlineKeys& online) {
  for (const auto& [role, entry] : online.For(kind)) {
    root.roles[role] = tuf::RoleKeys{{}, 1};
    root.AddKey(entry.key, entry.key_id, role);
  }
}

// Drops keys no role lists any more.
void DropUnusedKeys(tuf::Root& root) {
  std::set<std::string> used;
  for (const auto& [role, keys] : root.roles) used.insert(keys.keyids.begin(), keys.keyids.end());
  std::erase_if(root.keys, [&](const auto& entry) { return !used.contains(entry.first); });
}

Expected<std::string> ResolveKeyId(const std::vector<std::string>& listed, const std::string& given,
                                   std::string_view role) {
  const std::string wanted = Lower(given);
  if (wanted.size() < kMinKeyIdPrefix || !IsLowerHex(wanted)) {
    return MakeError(ErrorCode::kInvalidArgument, "\"" + given + "\" is not a key id (give at least " +
                                                      std::to_string(kMinKeyIdPrefix) + " hex digits of one)");
  }
  std::vector<std::string> matches;
  for (const auto& id : listed) {
    if (id.starts_with(wanted)) matches.push_back(id);
  }
  if (matches.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "key " + given + " is not a " + std::string(role) + " key");
  }
  if (matches.size() > 1) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "key id prefix " + given + " matches several " + std::string(role) + " keys; give more digits");
  }
  return matches.front();
}

}  // namespace

std::string_view RepositoryKindName(RepositoryKind kind) {
  return kind == RepositoryKind::kImage ? "image" : "director";
}

std::optional<RepositoryKind> ParseRepositoryKind(std::string_view name) {
  if (name == "image") return RepositoryKind::kImage;
  if (name == "director") return RepositoryKind::kDirector;
  return std::nullopt;
}

// ---- key files ------------------------------------------------------------------

KeyFilePaths KeyFilesFor(const fs::path& dir_and_name) {
  const std::string name = dir_and_name.filename().string();
  return {dir_and_name.parent_path() / (name + std::string(kPrivateKeySuffix)),
          dir_and_name.parent_path() / (name + std::string(kPublicKeySuffix))};
}

Expected<CreatedKey> CreateKeyFiles(const fs::path& dir_and_name) {
  const std::string name = dir_and_name.filename().string();
  if (name.empty() || name == "." || name == "..") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "\"" + dir_and_name.string() + "\" does not end in a key name (e.g. keys/root-1)");
  }
  CreatedKey created{KeyFilesFor(dir_and_name), {}};
  for (const auto& path : {created.files.private_key, created.files.public_key}) {
    std::error_code ec;
    if (fs::exists(path, ec) || ec) {
      return MakeError(ErrorCode::kAlreadyExists, path.string() + " already exists; refusing to replace a key");
    }
  }
  const fs::path dir = dir_and_name.parent_path();
  if (!dir.empty()) CITADEL_TRY_VOID(EnsureDirectory(dir, 0700));
  CITADEL_TRY(tuf::SigningKey key, tuf::SigningKey::Generate(tuf::KeyAlgorithm::kEcdsaP256));
  CITADEL_TRY(crypto::SecretBytes pem, key.ToPem());
  CITADEL_TRY_VOID(WriteNewFile(created.files.private_key, pem.reveal(), 0600));
  if (auto written = WriteNewFile(created.files.public_key, key.PublicKey().json().dump(2) + "\n", 0644); !written) {
    // Without its public half the private key would be an orphan nobody
    // knows the id of; it was made just now, so removing it loses nothing.
    std::error_code ignored;
    fs::remove(created.files.private_key, ignored);
    return std::unexpected(written.error());
  }
  created.key_id = key.KeyId();
  return created;
}

Expected<tuf::SigningKey> LoadSigningKey(const fs::path& path) {
  auto text = ReadFile(path, kMaxKeyFileBytes);
  if (!text) return std::unexpected(text.error());
  crypto::SecretBytes pem(std::move(*text));
  if (pem.reveal().find("PRIVATE KEY-----") == std::string_view::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     path.string() + " is not a PEM private key (pass a NAME.key written by `citadel keys create`)");
  }
  auto key = tuf::SigningKey::FromPem(pem);
  if (!key) return WrapError(key.error(), path.string());
  return key;
}

Expected<PublicKeyFile> LoadPublicKey(const fs::path& path) {
  auto text = ReadFile(path, kMaxKeyFileBytes);
  if (!text) return std::unexpected(text.error());
  if (text->find("PRIVATE KEY-----") != std::string::npos) {
    crypto::SecretBytes pem(std::move(*text));
    auto key = tuf::SigningKey::FromPem(pem);
    if (!key) return WrapError(key.error(), path.string());
    return PublicKeyFile{key->PublicKey(), key->KeyId()};
  }
  auto json = ParseJsonStrict(*text);
  if (!json) {
    return MakeError(ErrorCode::kInvalidArgument,
                     path.string() + " is neither a TUF key object (NAME.pub.json) nor a PEM private key");
  }
  auto key = tuf::Key::FromJson(*json, path.string());
  if (!key) return std::unexpected(key.error());
  if (!key->usable()) return MakeError(ErrorCode::kInvalidArgument, path.string() + ": " + key->unusable_reason());
  CITADEL_TRY(std::string key_id, KeyIdOf(*key));
  return PublicKeyFile{std::move(*key), std::move(key_id)};
}

std::vector<fs::path> FindKeyFiles(const fs::path& dir, std::string_view prefix) {
  std::vector<std::pair<std::uint64_t, fs::path>> found;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return {};
  const std::string head = std::string(prefix) + "-";
  for (const auto& entry : it) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(head) || !name.ends_with(kPrivateKeySuffix)) continue;
    const std::string number = name.substr(head.size(), name.size() - head.size() - kPrivateKeySuffix.size());
    if (number.empty() || number.size() > 9 || number.find_first_not_of("0123456789") != std::string::npos) continue;
    found.emplace_back(std::stoull(number), entry.path());
  }
  std::sort(found.begin(), found.end());
  std::vector<fs::path> paths;
  paths.reserve(found.size());
  for (auto& [number, path] : found) paths.push_back(std::move(path));
  return paths;
}

bool HoldsKeyFiles(const fs::path& dir) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return false;
  return std::any_of(fs::begin(it), fs::end(it), [](const fs::directory_entry& entry) {
    return entry.path().filename().string().ends_with(kPrivateKeySuffix);
  });
}

// ---- online keys ----------------------------------------------------------------

Expected<OnlineKeys> ParseOnlineKeys(const Json& answer) {
  OnlineKeys online;
  for (const auto kind : {RepositoryKind::kImage, RepositoryKind::kDirector}) {
    const std::string repository(RepositoryKindName(kind));
    auto& entries = kind == RepositoryKind::kImage ? online.image : online.director;
    for (const auto& role : OnlineRoles(kind)) {
      std::string path = repository;
      path += '.';
      path += role;
      if (!answer.is_object() || !answer.contains(repository) || !answer[repository].is_object() ||
          !answer[repository].contains(role)) {
        return MakeError(ErrorCode::kInvalidArgument, "the service's online keys lack " + path);
      }
      CITADEL_TRY(tuf::Key key, tuf::Key::FromJson(answer[repository][role], path));
      if (!key.usable()) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "the service's online key " + path + ": " + key.unusable_reason());
      }
      CITADEL_TRY(std::string key_id, KeyIdOf(key));
      entries.emplace(role, OnlineKeys::Entry{std::move(key), std::move(key_id)});
    }
  }
  return online;
}

// ---- roots ----------------------------------------------------------------------

Expected<tuf::Root> BuildInitialRoot(RepositoryKind kind, const RoleKeySet& root_keys, const RoleKeySet& targets_keys,
                                     const OnlineKeys& online, std::int64_t expires) {
  const auto online_ids = OnlineKeyIds(online);
  const auto online_material = OnlineMaterial(online);
  tuf::Root root;
  root.version = 1;
  root.expires = expires;
  root.consistent_snapshot = true;
  std::vector<std::pair<std::string, const RoleKeySet*>> offline = {{std::string(tuf::kRootRole), &root_keys}};
  if (kind == RepositoryKind::kImage) offline.emplace_back(std::string(tuf::kTargetsRole), &targets_keys);
  for (const auto& [role, set] : offline) {
    CITADEL_TRY_VOID(CheckThresholdRange(role, set->threshold, set->keys.size()));
    std::set<std::string> seen;
    for (const auto& key : set->keys) {
      if (!seen.insert(key.key.material_id()).second) {
        return MakeError(ErrorCode::kInvalidArgument, "key " + key.key_id + " is listed twice for " + role);
      }
      CITADEL_TRY_VOID(CheckNotOnline(key, online_ids, online_material, role));
      root.AddKey(key.key, key.key_id, role);
    }
    root.roles[role].threshold = set->threshold;
  }
  SetOnlineRoles(root, kind, online);
  return root;
}

Expected<tuf::Root> NextRoot(RepositoryKind kind, const tuf::Root& current, const RootChange& change) {
  if (!IsOfflineRole(kind, change.role)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the " + std::string(RepositoryKindName(kind)) + " " + change.role +
                         " role is signed online by the service, with keys it keeps fixed; rotate root" +
                         (kind == RepositoryKind::kImage ? " or targets" : "") + " instead");
  }
  tuf::Root next = current;
  next.version = current.version + 1;
  next.expires = change.expires;
  next.consistent_snapshot = true;
  auto& role = next.roles[change.role];

  for (const auto& given : change.remove_key_ids) {
    CITADEL_TRY(std::string key_id, ResolveKeyId(role.keyids, given, change.role));
    std::erase(role.keyids, key_id);
  }

  // The online keys, to refuse one as an offline key (they are the keys
  // the root lists for the online roles).
  std::set<std::string> online_ids = change.online_key_ids;
  std::set<std::string> online_material;
  for (const auto& online_role : OnlineRoles(kind)) {
    for (const auto& id : RoleKeyIds(current, online_role)) {
      online_ids.insert(id);
      if (auto key = current.keys.find(id); key != current.keys.end()) {
        online_material.insert(key->second.material_id());
      }
    }
  }
  for (const auto& key : change.add_keys) {
    const bool listed = std::any_of(role.keyids.begin(), role.keyids.end(), [&](const std::string& id) {
      auto existing = next.keys.find(id);
      return id == key.key_id ||
             (existing != next.keys.end() && existing->second.material_id() == key.key.material_id());
    });
    if (listed) {
      return MakeError(ErrorCode::kInvalidArgument, "key " + key.key_id + " is already a " + change.role + " key");
    }
    CITADEL_TRY_VOID(CheckNotOnline(key, online_ids, online_material, change.role));
    next.AddKey(key.key, key.key_id, change.role);
  }
  if (change.threshold) role.threshold = *change.threshold;
  CITADEL_TRY_VOID(CheckThresholdRange(change.role, role.threshold, role.keyids.size()));
  DropUnusedKeys(next);
  return next;
}

Expected<tuf::Metadata<tuf::Root>> WalkRootChain(tuf::Metadata<tuf::Root> trusted, std::int64_t latest_version,
                                                 const std::function<Expected<std::string>(std::int64_t)>& fetch) {
  if (latest_version < trusted.body.version) {
    return MakeError(ErrorCode::kInvalidArgument, "the service's root version " + std::to_string(latest_version) +
                                                      " is older than the trusted version " +
                                                      std::to_string(trusted.body.version));
  }
  if (latest_version - trusted.body.version > kMaxChainSteps) {
    return MakeError(ErrorCode::kInvalidArgument, "more than " + std::to_string(kMaxChainSteps) +
                                                      " root versions to walk; start from a newer trusted root");
  }
  for (std::int64_t version = trusted.body.version + 1; version <= latest_version; ++version) {
    const std::string what = "root version " + std::to_string(version);
    CITADEL_TRY(std::string document, fetch(version));
    auto next = tuf::ParseMetadata<tuf::Root>(document);
    if (!next) return WrapError(next.error(), what);
    if (next->body.version != version) {
      return MakeError(ErrorCode::kCrypto, what + " says it is version " + std::to_string(next->body.version));
    }
    if (auto signed_by_previous = trusted.body.VerifyDelegate(tuf::kRootRole, *next); !signed_by_previous) {
      return WrapError(signed_by_previous.error(),
                       what + " is not signed by the threshold of version " + std::to_string(version - 1));
    }
    if (auto self_signed = next->body.VerifyDelegate(tuf::kRootRole, *next); !self_signed) {
      return WrapError(self_signed.error(), what + " is not signed by the threshold of its own root keys");
    }
    trusted = std::move(*next);
  }
  return trusted;
}

// ---- signatures -------------------------------------------------------------------

ThresholdCheck CheckThreshold(std::string what, const std::map<std::string, tuf::Key>& keys, const tuf::RoleKeys& role,
                              const tuf::Envelope& md) {
  ThresholdCheck check;
  check.what = std::move(what);
  check.threshold = role.threshold;
  std::set<std::string> counted_ids;
  std::set<std::string> counted_material;
  for (const auto& key_id : role.keyids) {
    if (!counted_ids.insert(key_id).second) continue;
    auto key = keys.find(key_id);
    auto signature = std::find_if(md.signatures.begin(), md.signatures.end(),
                                  [&](const tuf::Signature& candidate) { return candidate.keyid == key_id; });
    const bool verifies =
        key != keys.end() && signature != md.signatures.end() && key->second.Verify(md.signed_bytes, signature->sig);
    if (!verifies) {
      check.missing_key_ids.push_back(key_id);
      continue;
    }
    if (counted_material.insert(key->second.material_id()).second) ++check.valid;
  }
  check.met = tuf::VerifySignatures(check.what, keys, role, md).has_value();
  return check;
}

std::vector<ThresholdCheck> CheckRootSignatures(const tuf::Metadata<tuf::Root>& md, const tuf::Root* previous) {
  std::vector<ThresholdCheck> checks;
  const std::string version = std::to_string(md.body.version);
  const tuf::RoleKeys empty;
  auto own = md.body.roles.find(std::string(tuf::kRootRole));
  checks.push_back(CheckThreshold("root version " + version + " (its own root keys)", md.body.keys,
                                  own == md.body.roles.end() ? empty : own->second, md));
  if (previous != nullptr && previous->version + 1 == md.body.version) {
    auto before = previous->roles.find(std::string(tuf::kRootRole));
    checks.push_back(CheckThreshold("root version " + std::to_string(previous->version) + " (the previous root's keys)",
                                    previous->keys, before == previous->roles.end() ? empty : before->second, md));
  }
  return checks;
}

ThresholdCheck CheckTargetsSignatures(const tuf::Envelope& md, const tuf::Root& image_root) {
  const tuf::RoleKeys empty;
  auto role = image_root.roles.find(std::string(tuf::kTargetsRole));
  return CheckThreshold("targets (the targets keys of image root version " + std::to_string(image_root.version) + ")",
                        image_root.keys, role == image_root.roles.end() ? empty : role->second, md);
}

bool AllMet(const std::vector<ThresholdCheck>& checks) {
  return std::all_of(checks.begin(), checks.end(), [](const ThresholdCheck& check) { return check.met; });
}

std::vector<std::string> DescribeMissing(const std::vector<ThresholdCheck>& checks) {
  std::vector<std::string> lines;
  for (const auto& check : checks) {
    if (check.met) continue;
    const std::int64_t more = check.threshold - check.valid;
    std::string line = check.what + ": " + std::to_string(check.valid) + " valid of " +
                       std::to_string(check.threshold) + " needed; " + std::to_string(more) + " more from " +
                       (check.missing_key_ids.size() == 1 ? "key " : "keys ");
    for (std::size_t i = 0; i < check.missing_key_ids.size(); ++i) {
      if (i > 0) line += ", ";
      line += check.missing_key_ids[i];
    }
    lines.push_back(std::move(line));
  }
  return lines;
}

std::set<std::string> RootSigners(const tuf::Root& root, const tuf::Root* previous) {
  std::set<std::string> ids;
  for (const auto& id : RoleKeyIds(root, tuf::kRootRole)) ids.insert(id);
  if (previous != nullptr) {
    for (const auto& id : RoleKeyIds(*previous, tuf::kRootRole)) ids.insert(id);
  }
  return ids;
}

Expected<SignOutcome> AddSignature(tuf::Envelope& md, const tuf::SigningKey& key,
                                   const std::set<std::string>* authorised, std::string_view role_description) {
  if (authorised != nullptr && !authorised->contains(key.KeyId())) {
    return MakeError(ErrorCode::kPermissionDenied,
                     "key " + key.KeyId() + " is not authorised to sign " + std::string(role_description));
  }
  for (const auto& signature : md.signatures) {
    if (signature.keyid == key.KeyId() && key.PublicKey().Verify(md.signed_bytes, signature.sig)) {
      return SignOutcome::kAlreadySigned;
    }
  }
  CITADEL_TRY_VOID(md.Sign(key));
  return SignOutcome::kAdded;
}

// ---- metadata files ---------------------------------------------------------------

Expected<MetadataFile> ReadMetadataFile(const fs::path& path) {
  CITADEL_TRY(std::string text, ReadFile(path, kMaxMetadataFileBytes));
  auto json = ParseJsonStrict(text);
  if (!json) return WrapError(json.error(), path.string());
  std::string type;
  if (json->is_object() && json->contains("signed") && (*json)["signed"].is_object() &&
      (*json)["signed"].contains("_type") && (*json)["signed"]["_type"].is_string()) {
    type = (*json)["signed"]["_type"].get<std::string>();
  }
  MetadataFile file;
  file.type = type;
  if (type == tuf::kRootRole) {
    auto md = tuf::ParseMetadata<tuf::Root>(text);
    if (!md) return WrapError(md.error(), path.string());
    file.version = md->body.version;
    file.root = md->body;
    file.envelope = std::move(*md);
    return file;
  }
  if (type == tuf::kTargetsRole) {
    auto md = tuf::ParseMetadata<tuf::Targets>(text);
    if (!md) return WrapError(md.error(), path.string());
    file.version = md->body.version;
    file.targets = md->body;
    file.envelope = std::move(*md);
    return file;
  }
  if (type == tuf::kSnapshotRole || type == tuf::kTimestampRole) {
    return MakeError(ErrorCode::kInvalidArgument,
                     path.string() + " is " + type + " metadata, which the service signs with its online keys");
  }
  return MakeError(ErrorCode::kInvalidArgument, path.string() + " is not TUF root or targets metadata");
}

Expected<tuf::Metadata<tuf::Root>> ReadRootFile(const fs::path& path) {
  CITADEL_TRY(std::string text, ReadFile(path, kMaxMetadataFileBytes));
  auto md = tuf::ParseMetadata<tuf::Root>(text);
  if (!md) return WrapError(md.error(), path.string());
  return md;
}

Expected<Json> EnvelopeJson(const tuf::Envelope& md) {
  CITADEL_TRY(std::string text, md.Serialize());
  return ParseJsonStrict(text);
}

Expected<void> WriteMetadataFile(const fs::path& path, const tuf::Envelope& md) {
  CITADEL_TRY(Json document, EnvelopeJson(md));
  return WriteFileAtomic(path, document.dump(2) + "\n", 0644);
}

// ---- image targets ------------------------------------------------------------------

Expected<tuf::Metadata<tuf::Targets>> NextImageTargets(const std::optional<tuf::Metadata<tuf::Targets>>& latest,
                                                       const std::vector<Json>& images,
                                                       const std::vector<std::string>& remove, std::int64_t expires,
                                                       TargetsChange* change) {
  TargetsChange summary;
  Json signed_json;
  if (latest) {
    signed_json = latest->signed_json;
    signed_json["version"] = latest->body.version + 1;
  } else {
    tuf::Targets first;
    first.version = 1;
    signed_json = first.ToJson();
  }
  signed_json["expires"] = tuf::FormatExpires(expires);
  Json& files = signed_json["targets"];
  if (!files.is_object()) files = Json::object();

  const std::set<std::string> removing(remove.begin(), remove.end());
  for (const auto& image : images) {
    if (!image.is_object() || !image.contains("target_name") || !image["target_name"].is_string() ||
        !image.contains("target")) {
      return MakeError(ErrorCode::kInvalidArgument, "an image without \"target_name\" and \"target\": " + image.dump());
    }
    const std::string name = image["target_name"].get<std::string>();
    if (removing.contains(name)) {
      return MakeError(ErrorCode::kInvalidArgument, name + " is both added and removed");
    }
    CITADEL_TRY(tuf::TargetFile file, tuf::TargetFile::FromJson(name, image["target"], "image " + name));
    const Json entry = file.ToJson();
    if (files.contains(name) && files[name] == entry) {
      summary.unchanged.push_back(name);
      continue;
    }
    files[name] = entry;
    summary.added.push_back(name);
  }
  for (const auto& name : remove) {
    if (!files.contains(name)) {
      return MakeError(ErrorCode::kInvalidArgument, name + " is not in the image targets; nothing to remove");
    }
    files.erase(name);
    summary.removed.push_back(name);
  }

  CITADEL_TRY(tuf::Targets body, tuf::Targets::FromJson(signed_json));
  tuf::Metadata<tuf::Targets> md;
  md.body = std::move(body);
  CITADEL_TRY_VOID(md.SetSigned(std::move(signed_json)));
  if (change != nullptr) *change = std::move(summary);
  return md;
}

Expected<std::int64_t> VerifyLatestTargets(const tuf::Envelope& targets, const tuf::Metadata<tuf::Root>& current_root,
                                           const std::function<Expected<std::string>(std::int64_t)>& fetch,
                                           int max_steps) {
  if (current_root.body.VerifyDelegate(tuf::kTargetsRole, targets)) return current_root.body.version;
  tuf::Metadata<tuf::Root> later = current_root;
  for (int step = 0; step < max_steps && later.body.version > 1; ++step) {
    const std::int64_t version = later.body.version - 1;
    const std::string what = "image root version " + std::to_string(version);
    CITADEL_TRY(std::string document, fetch(version));
    auto earlier = tuf::ParseMetadata<tuf::Root>(document);
    if (!earlier) return WrapError(earlier.error(), what);
    // The trusted later version vouches for this one: it is signed by this
    // one's root threshold, and this one by its own.
    if (earlier->body.version != version || !earlier->body.VerifyDelegate(tuf::kRootRole, *earlier) ||
        !earlier->body.VerifyDelegate(tuf::kRootRole, later)) {
      return MakeError(ErrorCode::kCrypto,
                       what + " from the service does not chain to version " + std::to_string(later.body.version));
    }
    if (earlier->body.VerifyDelegate(tuf::kTargetsRole, targets)) return version;
    later = std::move(*earlier);
  }
  return MakeError(ErrorCode::kCrypto,
                   "the service's latest image targets are not signed by the targets keys of any image root version; "
                   "they are not what your targets keys signed");
}

}  // namespace citadel::cli
