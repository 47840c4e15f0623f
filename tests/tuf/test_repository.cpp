#include "tuf/test_repository.hpp"

#include <algorithm>

#include "crypto/crypto.hpp"
#include "tuf/updater.hpp"

namespace citadel::tuf::testing {

Expected<std::unique_ptr<TestRepository>> TestRepository::Create(MemoryFetcher& fetcher, RepositoryOptions options) {
  std::unique_ptr<TestRepository> repo(new TestRepository(fetcher, std::move(options)));
  const std::int64_t expires = repo->Expiry(repo->options_.lifetime);
  repo->root.expires = expires;
  repo->root.consistent_snapshot = repo->options_.consistent_snapshot;
  repo->timestamp.expires = expires;
  repo->snapshot.expires = expires;
  Targets top;
  top.expires = expires;
  repo->targets.emplace(std::string(kTargetsRole), std::move(top));
  for (auto role : {kRootRole, kTimestampRole, kSnapshotRole, kTargetsRole}) {
    repo->root.roles[std::string(role)].threshold = 1;
    CITADEL_TRY_VOID(repo->AddKey(role));
  }
  CITADEL_TRY_VOID(repo->Publish(kRootRole));
  CITADEL_TRY_VOID(repo->Publish(kTargetsRole));
  repo->snapshot.meta["targets.json"] = MetaFile{1, std::nullopt, {}};
  CITADEL_TRY_VOID(repo->Publish(kSnapshotRole));
  repo->timestamp.snapshot_meta = MetaFile{1, std::nullopt, {}};
  CITADEL_TRY_VOID(repo->Publish(kTimestampRole));
  return repo;
}

SignedCommon* TestRepository::Common(std::string_view role) {
  if (role == kRootRole) return &root;
  if (role == kTimestampRole) return &timestamp;
  if (role == kSnapshotRole) return &snapshot;
  auto found = targets.find(std::string(role));
  return found == targets.end() ? nullptr : &found->second;
}

Expected<std::string> TestRepository::Sign(Envelope& envelope, std::string_view role) const {
  if (auto found = signers.find(std::string(role)); found != signers.end()) {
    for (const auto& signer : found->second) CITADEL_TRY_VOID(envelope.Sign(*signer));
  }
  return envelope.Serialize();
}

Expected<void> TestRepository::Publish(std::string_view role) {
  std::string bytes;
  std::int64_t version = 0;
  if (role == kRootRole) {
    CITADEL_TRY(auto md, MakeMetadata(root));
    CITADEL_TRY(bytes, Sign(md, role));
    version = root.version;
  } else if (role == kTimestampRole) {
    CITADEL_TRY(auto md, MakeMetadata(timestamp));
    CITADEL_TRY(bytes, Sign(md, role));
    version = timestamp.version;
  } else if (role == kSnapshotRole) {
    CITADEL_TRY(auto md, MakeMetadata(snapshot));
    CITADEL_TRY(bytes, Sign(md, role));
    version = snapshot.version;
  } else {
    auto found = targets.find(std::string(role));
    if (found == targets.end()) return MakeError(ErrorCode::kNotFound, "no targets role " + std::string(role));
    CITADEL_TRY(auto md, MakeMetadata(found->second));
    CITADEL_TRY(bytes, Sign(md, role));
    version = found->second.version;
  }
  ServeMetadata(role, version, bytes);
  if (role != kRootRole) ServeMetadata(role, std::nullopt, std::move(bytes));
  last_published_[std::string(role)] = version;
  return kOk;
}

Expected<void> TestRepository::Bump(std::string_view role) {
  SignedCommon* common = Common(role);
  if (common == nullptr) return MakeError(ErrorCode::kNotFound, "no role " + std::string(role));
  ++common->version;
  return Publish(role);
}

Expected<void> TestRepository::UpdateSnapshot() {
  for (const auto& [role, body] : targets) {
    const std::int64_t version = LatestVersion(role);
    if (version == 0) continue;  // never published
    MetaFile meta{version, std::nullopt, {}};
    if (options_.hashes_in_meta) meta = MetaFile::FromData(version, Published(role, version));
    snapshot.meta[role + ".json"] = meta;
  }
  CITADEL_TRY_VOID(Bump(kSnapshotRole));
  return UpdateTimestamp();
}

Expected<void> TestRepository::UpdateTimestamp() {
  const std::int64_t version = LatestVersion(kSnapshotRole);
  timestamp.snapshot_meta = MetaFile{version, std::nullopt, {}};
  if (options_.hashes_in_meta) timestamp.snapshot_meta = MetaFile::FromData(version, Published(kSnapshotRole, version));
  return Bump(kTimestampRole);
}

void TestRepository::ServeMetadata(std::string_view role, std::optional<std::int64_t> version, std::string bytes) {
  if (version) {
    published_[std::string(role)][*version] = bytes;
    fetcher_.Put(MetadataUrl(role, *version), std::move(bytes));
  } else {
    fetcher_.Put(MetadataUrl(role, 0), std::move(bytes));
  }
}

Expected<TestRepository::Signer> TestRepository::NewSigner() const {
  CITADEL_TRY(SigningKey key, SigningKey::Generate(options_.algorithm));
  return std::make_shared<const SigningKey>(std::move(key));
}

Expected<TestRepository::Signer> TestRepository::AddKey(std::string_view role, std::string_view delegator) {
  CITADEL_TRY(Signer signer, NewSigner());
  if (delegator == kRootRole) {
    root.AddKey(signer->PublicKey(), signer->KeyId(), role);
  } else {
    auto found = targets.find(std::string(delegator));
    if (found == targets.end() || !found->second.delegations) {
      return MakeError(ErrorCode::kNotFound, std::string(delegator) + " has no delegations");
    }
    Delegations& delegations = *found->second.delegations;
    delegations.keys.insert_or_assign(signer->KeyId(), signer->PublicKey());
    auto delegated = std::find_if(delegations.roles.begin(), delegations.roles.end(),
                                  [&](const DelegatedRole& candidate) { return candidate.name == role; });
    if (delegated == delegations.roles.end()) {
      return MakeError(ErrorCode::kNotFound, std::string(delegator) + " does not delegate " + std::string(role));
    }
    delegated->keyids.push_back(signer->KeyId());
  }
  signers[std::string(role)].push_back(signer);
  return signer;
}

Expected<void> TestRepository::RotateKeys(std::string_view role) {
  auto& entry = root.roles[std::string(role)];
  entry.keyids.clear();
  signers[std::string(role)].clear();
  for (std::int64_t i = 0; i < entry.threshold; ++i) CITADEL_TRY_VOID(AddKey(role));
  return kOk;
}

Expected<void> TestRepository::AddDelegation(std::string_view delegator, DelegatedRole role) {
  auto found = targets.find(std::string(delegator));
  if (found == targets.end()) return MakeError(ErrorCode::kNotFound, "no targets role " + std::string(delegator));
  if (!found->second.delegations) found->second.delegations = Delegations{};
  const bool needs_key = role.keyids.empty();
  const std::string name = role.name;
  found->second.delegations->roles.push_back(std::move(role));
  if (!targets.contains(name)) {
    Targets body;
    body.expires = Expiry(options_.lifetime);
    targets.emplace(name, std::move(body));
  }
  if (needs_key) CITADEL_TRY_VOID(AddKey(name, delegator));
  return kOk;
}

void TestRepository::AddTarget(std::string_view role, const std::string& path, std::string data, Json custom) {
  TargetFile file = TargetFile::FromData(path, data, std::move(custom));
  targets[std::string(role)].targets.insert_or_assign(path, file);
  fetcher_.Put(TargetUrl(path, false), data);
  for (const auto& [algorithm, hash] : file.hashes) {
    const auto slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
    const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    std::string url = options_.targets_url;
    url.append("/").append(dir).append(hash).append(".").append(name);
    fetcher_.Put(url, data);
  }
  artifacts[path] = std::move(data);
}

std::string TestRepository::Published(std::string_view role, std::int64_t version) const {
  auto found = published_.find(role);
  if (found == published_.end()) return "";
  if (version == 0) version = LatestVersion(role);
  auto bytes = found->second.find(version);
  return bytes == found->second.end() ? "" : bytes->second;
}

std::int64_t TestRepository::LatestVersion(std::string_view role) const {
  auto found = last_published_.find(role);
  return found == last_published_.end() ? 0 : found->second;
}

std::string TestRepository::MetadataUrl(std::string_view role, std::int64_t version) const {
  std::string url = options_.metadata_url + "/";
  if (version > 0) url += std::to_string(version) + ".";
  return url + EscapeRoleName(role) + ".json";
}

std::string TestRepository::TargetUrl(const std::string& path, bool hash_prefixed) const {
  if (!hash_prefixed) return options_.targets_url + "/" + path;
  auto found = artifacts.find(path);
  const std::string hash = found == artifacts.end() ? "" : crypto::Sha256Hex(found->second);
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  return options_.targets_url + "/" + dir + hash + "." + name;
}

}  // namespace citadel::tuf::testing
