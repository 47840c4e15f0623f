#include "server/repository.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <set>
#include <utility>

#include "common/encoding.hpp"
#include "common/log.hpp"
#include "common/time.hpp"

namespace citadel::server {
namespace {

using store::TufRepository;
using store::TufRole;

// Rounds of read-decide-write one publish may take when replicas race
// (each lost insert costs one); bounded so a pathological race fails
// (kUnavailable, the client retries) instead of spinning.
constexpr int kMaxPublishAttempts = 8;

struct OnlineRole {
  TufRepository repository;
  TufRole role;
};
constexpr std::array<OnlineRole, 5> kOnlineRoles = {{
    {TufRepository::kImage, TufRole::kSnapshot},
    {TufRepository::kImage, TufRole::kTimestamp},
    {TufRepository::kDirector, TufRole::kTargets},
    {TufRepository::kDirector, TufRole::kSnapshot},
    {TufRepository::kDirector, TufRole::kTimestamp},
}};

std::string SealingContext(std::string_view tenant_id, TufRepository repository, TufRole role) {
  return "tuf-online-key:" + std::string(tenant_id) + ":" + std::string(store::TufRepositoryName(repository)) + ":" +
         std::string(store::TufRoleName(role));
}

std::string RepositoryLabel(TufRepository repository) {
  return repository == TufRepository::kImage ? "image repository" : "director";
}

std::int64_t Lifetime(TufRepository repository, TufRole role) {
  if (repository == TufRepository::kDirector) return kDirectorLifetime;
  return role == TufRole::kSnapshot ? kImageSnapshotLifetime : kImageTimestampLifetime;
}

// Online metadata is re-signed once less than half its lifetime remains.
bool NeedsResigning(std::int64_t expires, std::int64_t lifetime, std::int64_t now) {
  return (expires - now) * 2 < lifetime;
}

template <typename T>
Expected<tuf::Metadata<T>> ParseStored(const store::RepositoryMetadata& record) {
  auto parsed = tuf::ParseMetadata<T>(record.document);
  if (!parsed) {
    return MakeError(ErrorCode::kInternal, "stored " + std::string(store::TufRoleName(record.role)) + " version " +
                                               std::to_string(record.version) +
                                               " does not parse: " + parsed.error().message());
  }
  return parsed;
}

// The latest version of a role, or nullopt when none was published.
Expected<std::optional<store::RepositoryMetadata>> Latest(store::Store& store, std::string_view tenant_id,
                                                          TufRepository repository, std::string_view scope,
                                                          TufRole role) {
  auto latest = store.GetLatestRepositoryMetadata(tenant_id, repository, scope, role);
  if (latest) return std::optional<store::RepositoryMetadata>(std::move(*latest));
  if (latest.error().code() == ErrorCode::kNotFound) return std::optional<store::RepositoryMetadata>();
  return std::unexpected(latest.error());
}

// Stores maker-signed metadata; a version another request stored first is
// a conflict the maker resolves (kConflict with `advice`).
Expected<void> StoreUpload(store::Store& store, const store::RepositoryMetadata& record, std::string_view advice) {
  auto added = store.AddRepositoryMetadata(record);
  if (added || added.error().code() != ErrorCode::kAlreadyExists) return added;
  return MakeError(ErrorCode::kConflict,
                   std::string(store::TufRoleName(record.role)) + ": version " + std::to_string(record.version) +
                       " was uploaded at the same time by another request; " + std::string(advice));
}

Json RoleStatus(const std::optional<store::RepositoryMetadata>& record) {
  if (!record) return nullptr;
  return {{"version", record->version}, {"expires", FormatRfc3339(FromUnixSeconds(record->expires_at))}};
}

}  // namespace

Json ImageTargetCustom(const store::Image& image) {
  return {{"citadel",
           {{"kind", std::string(store::ImageKindName(image.kind))},
            {"component_id", image.component_id},
            {"version", image.version},
            {"security_version", image.security_version}}}};
}

Json OnlineKeys::ToJson() const {
  Json out = Json::object();
  for (const auto& [repository, roles] : keys) {
    Json entries = Json::object();
    for (const auto& [role, entry] : roles) entries[std::string(store::TufRoleName(role))] = entry.key;
    out[std::string(store::TufRepositoryName(repository))] = std::move(entries);
  }
  return out;
}

// ------------------------------------------------------------ online keys

Expected<OnlineKeys> Repository::EnsureOnlineKeys(std::string_view tenant_id, std::int64_t now) {
  bool created = false;
  for (const auto& [repository, role] : kOnlineRoles) {
    auto existing = store_.GetRepositoryKey(tenant_id, repository, role);
    if (existing) continue;
    if (existing.error().code() != ErrorCode::kNotFound) return std::unexpected(existing.error());
    CITADEL_TRY(tuf::SigningKey key, tuf::SigningKey::Generate(tuf::KeyAlgorithm::kEcdsaP256));
    CITADEL_TRY(crypto::SecretBytes pem, key.ToPem());
    CITADEL_TRY(Bytes sealed,
                crypto::SealSecret(master_key_, pem.reveal(), SealingContext(tenant_id, repository, role)));
    store::RepositoryKey record;
    record.tenant_id = std::string(tenant_id);
    record.repository = repository;
    record.role = role;
    record.key_id = key.KeyId();
    record.public_key_json = key.PublicKey().json().dump();
    record.sealed_private_key = Base64Encode(sealed);
    record.created_at = now;
    if (auto put = store_.PutRepositoryKey(record); put) {
      created = true;
    } else if (put.error().code() != ErrorCode::kAlreadyExists) {  // else: a replica's key won; it is used
      return std::unexpected(put.error());
    }
  }
  CITADEL_TRY(OnlineKeys keys, GetOnlineKeys(tenant_id));
  keys.created = created;
  return keys;
}

Expected<OnlineKeys> Repository::GetOnlineKeys(std::string_view tenant_id) {
  CITADEL_TRY(auto records, store_.ListRepositoryKeys(tenant_id));
  OnlineKeys keys;
  for (const auto& record : records) {
    auto json = ParseJsonStrict(record.public_key_json);
    if (!json) return MakeError(ErrorCode::kInternal, "stored online key " + record.key_id + " does not parse");
    keys.keys[record.repository][record.role] = OnlineKeys::Entry{record.key_id, std::move(*json)};
  }
  for (const auto& [repository, role] : kOnlineRoles) {
    if (!keys.keys[repository].contains(role)) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "the tenant has no online repository keys yet: create them first "
                       "(POST /v1/tenants/{tenant}/repository/online-keys)");
    }
  }
  return keys;
}

Expected<std::shared_ptr<const tuf::SigningKey>> Repository::OnlineKey(std::string_view tenant_id,
                                                                       TufRepository repository, TufRole role) {
  KeyIndex index{std::string(tenant_id), repository, role};
  {
    std::lock_guard lock(mutex_);
    if (auto it = keys_.find(index); it != keys_.end()) return it->second;
  }
  auto record = store_.GetRepositoryKey(tenant_id, repository, role);
  if (!record) {
    if (record.error().code() == ErrorCode::kNotFound) {
      return MakeError(ErrorCode::kFailedPrecondition, "the tenant has no online " + RepositoryLabel(repository) + " " +
                                                           std::string(store::TufRoleName(role)) + " key yet");
    }
    return std::unexpected(record.error());
  }
  const std::string context = SealingContext(tenant_id, repository, role);
  CITADEL_TRY(Bytes sealed, Base64Decode(record->sealed_private_key));
  auto pem = crypto::OpenSecret(master_key_, sealed, context);
  if (!pem) return WrapError(pem.error(), "unsealing the online key " + context);
  CITADEL_TRY(tuf::SigningKey key, tuf::SigningKey::FromPem(*pem));
  if (key.KeyId() != record->key_id) {
    return MakeError(ErrorCode::kInternal, "the online key " + context + " does not match its stored key id");
  }
  auto shared = std::make_shared<const tuf::SigningKey>(std::move(key));
  std::lock_guard lock(mutex_);
  return keys_.try_emplace(std::move(index), std::move(shared)).first->second;
}

// ------------------------------------------------------------------- roots

namespace {

Error NotTheOnlineKey(const std::string& role, TufRepository repository, const std::string& key_id) {
  return Error(ErrorCode::kInvalidArgument,
               "roles." + role + " must list exactly the service's online " + RepositoryLabel(repository) + " " + role +
                   " key " + key_id +
                   " with threshold 1 (GET /v1/tenants/{tenant}/repository lists the online keys; the service keeps "
                   "them fixed)");
}

Error NotOffline(const std::string& role, const std::string& key_id) {
  return Error(ErrorCode::kInvalidArgument,
               "roles." + role + " lists the service's online key " + key_id + ": the " + role +
                   " role must be kept offline (keys made by the maker, e.g. citadel repo init), so that a "
                   "compromised service cannot sign what devices install");
}

// The online roles must be exactly the service's keys; the offline roles
// must not contain any of them (a service that could sign root or image
// targets would defeat keeping them offline).
Expected<void> CheckOnlineRoles(const tuf::Root& root, TufRepository repository, const OnlineKeys& online) {
  std::set<std::string> online_ids;
  std::set<std::string> online_material;
  for (const auto& [repo, roles] : online.keys) {
    for (const auto& [role, entry] : roles) {
      online_ids.insert(entry.key_id);
      CITADEL_TRY(tuf::Key key, tuf::Key::FromJson(entry.key));
      if (!key.material_id().empty()) online_material.insert(key.material_id());
    }
  }
  for (const auto& [role, entry] : online.keys.at(repository)) {
    const std::string name(store::TufRoleName(role));
    const auto& role_keys = root.roles.at(name);
    if (role_keys.threshold != 1 || role_keys.keyids != std::vector<std::string>{entry.key_id}) {
      return std::unexpected(NotTheOnlineKey(name, repository, entry.key_id));
    }
    CITADEL_TRY(tuf::Key expected, tuf::Key::FromJson(entry.key));
    auto listed = root.keys.find(entry.key_id);
    if (listed == root.keys.end() || listed->second.material_id() != expected.material_id() ||
        expected.material_id().empty()) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "keys." + entry.key_id + " must be the service's online " + name + " key");
    }
  }
  std::vector<std::string> offline_roles = {std::string(tuf::kRootRole)};
  if (repository == TufRepository::kImage) offline_roles.emplace_back(tuf::kTargetsRole);
  for (const auto& name : offline_roles) {
    for (const auto& key_id : root.roles.at(name).keyids) {
      auto listed = root.keys.find(key_id);
      const bool online_key = online_ids.contains(key_id) ||
                              (listed != root.keys.end() && online_material.contains(listed->second.material_id()));
      if (online_key) return std::unexpected(NotOffline(name, key_id));
    }
  }
  return kOk;
}

}  // namespace

Expected<Repository::RootUpload> Repository::AddRoot(std::string_view tenant_id, TufRepository repository,
                                                     std::string_view document, std::int64_t now) {
  auto parsed = tuf::ParseMetadata<tuf::Root>(document);
  if (!parsed) return WrapError(parsed.error(), "root");
  const tuf::Root& root = parsed->body;
  if (!root.consistent_snapshot) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "root: consistent_snapshot must be true (the service serves versioned N.snapshot.json and "
                     "N.targets.json files)");
  }
  if (root.IsExpired(now)) {
    return MakeError(ErrorCode::kInvalidArgument, "root: expired at " + tuf::FormatExpires(root.expires));
  }
  CITADEL_TRY(OnlineKeys online, GetOnlineKeys(tenant_id));
  if (auto checked = CheckOnlineRoles(root, repository, online); !checked) return WrapError(checked.error(), "root");
  CITADEL_TRY(std::string serialized, parsed->Serialize());

  CITADEL_TRY(auto latest, Latest(store_, tenant_id, repository, "", TufRole::kRoot));
  if (latest && root.version <= latest->version) {
    // The same root again (a retried upload) is fine; anything else at a
    // taken version is not.
    auto same = store_.GetRepositoryMetadata(tenant_id, repository, "", TufRole::kRoot, root.version);
    if (same && same->document == serialized) return RootUpload{root.version, root.expires, false};
    return MakeError(ErrorCode::kConflict, "root: version " + std::to_string(root.version) + " exists; the next is " +
                                               std::to_string(latest->version + 1));
  }
  const std::int64_t expected_version = latest ? latest->version + 1 : 1;
  if (root.version != expected_version) {
    return MakeError(ErrorCode::kInvalidArgument, "root: version must be " + std::to_string(expected_version) +
                                                      (latest ? " (the next after the current root)" : " (the first)"));
  }
  if (latest) {
    CITADEL_TRY(auto previous, ParseStored<tuf::Root>(*latest));
    if (auto signed_by_previous = previous.body.VerifyDelegate(tuf::kRootRole, *parsed); !signed_by_previous) {
      return WrapError(signed_by_previous.error(),
                       "root: not signed by the threshold of root version " + std::to_string(latest->version));
    }
  }
  if (auto self_signed = root.VerifyDelegate(tuf::kRootRole, *parsed); !self_signed) {
    return WrapError(self_signed.error(), "root: not signed by the threshold of its own root keys");
  }

  CITADEL_TRY_VOID(StoreUpload(
      store_, {std::string(tenant_id), repository, "", TufRole::kRoot, root.version, root.expires, serialized, now},
      "fetch the status and try again"));
  // A first root turns the tenant's directors on: no group waits out a
  // remembered "not set up".
  director_memo_.ForgetIf([&](const GroupIndex& group) { return group.first == tenant_id; });
  return RootUpload{root.version, root.expires, true};
}

// --------------------------------------------------------- signing, refresh

template <typename T>
Expected<std::string> Repository::SignAndStore(std::string_view tenant_id, TufRepository repository,
                                               std::string_view scope, TufRole role, const T& body, const Json& custom,
                                               std::int64_t now) {
  CITADEL_TRY(auto key, OnlineKey(tenant_id, repository, role));
  CITADEL_TRY(tuf::Metadata<T> md, tuf::MakeMetadata(body));
  if (!custom.is_null()) {
    Json signed_json = md.signed_json;
    signed_json["custom"] = custom;
    CITADEL_TRY_VOID(md.SetSigned(std::move(signed_json)));
  }
  CITADEL_TRY_VOID(md.Sign(*key));
  CITADEL_TRY(std::string document, md.Serialize());
  store::RepositoryMetadata record{std::string(tenant_id), repository,   std::string(scope), role,
                                   body.version,           body.expires, document,           now};
  CITADEL_TRY_VOID(store_.AddRepositoryMetadata(record));
  Prune(tenant_id, repository, scope, role);
  return document;
}

void Repository::Prune(std::string_view tenant_id, TufRepository repository, std::string_view scope, TufRole role) {
  if (auto pruned = store_.PruneRepositoryMetadata(tenant_id, repository, scope, role, kKeptVersions); !pruned) {
    log::Warn("pruning old repository metadata failed",
              {{"tenant", tenant_id}, {"role", store::TufRoleName(role)}, {"error", pruned.error().message()}});
  }
}

Expected<PublishedVersions> Repository::Refresh(std::string_view tenant_id, TufRepository repository,
                                                std::string_view scope, std::int64_t now) {
  const bool director = repository == TufRepository::kDirector;
  for (int attempt = 0; attempt < kMaxPublishAttempts; ++attempt) {
    CITADEL_TRY(auto targets, store_.GetLatestRepositoryMetadata(tenant_id, repository, scope, TufRole::kTargets));
    if (director && NeedsResigning(targets.expires_at, kDirectorLifetime, now)) {
      CITADEL_TRY(auto current, ParseStored<tuf::Targets>(targets));
      tuf::Targets body = current.body;
      body.version = targets.version + 1;
      body.expires = now + kDirectorLifetime;
      const auto custom = current.signed_json.find("custom");
      auto stored = SignAndStore(tenant_id, repository, scope, TufRole::kTargets, body,
                                 custom == current.signed_json.end() ? Json() : *custom, now);
      if (!stored && stored.error().code() != ErrorCode::kAlreadyExists) return std::unexpected(stored.error());
      continue;  // re-read what is now the latest
    }

    CITADEL_TRY(auto snapshot, Latest(store_, tenant_id, repository, scope, TufRole::kSnapshot));
    const std::int64_t snapshot_lifetime = Lifetime(repository, TufRole::kSnapshot);
    bool snapshot_current = false;
    if (snapshot) {
      CITADEL_TRY(auto parsed, ParseStored<tuf::Snapshot>(*snapshot));
      auto listed = parsed.body.meta.find("targets.json");
      snapshot_current = listed != parsed.body.meta.end() && listed->second.version == targets.version &&
                         !NeedsResigning(snapshot->expires_at, snapshot_lifetime, now);
    }
    if (!snapshot_current) {
      tuf::Snapshot body;
      body.version = snapshot ? snapshot->version + 1 : 1;
      body.expires = now + snapshot_lifetime;
      body.meta["targets.json"] = tuf::MetaFile::FromData(targets.version, targets.document);
      auto stored = SignAndStore(tenant_id, repository, scope, TufRole::kSnapshot, body, Json(), now);
      if (!stored && stored.error().code() != ErrorCode::kAlreadyExists) return std::unexpected(stored.error());
      continue;
    }

    CITADEL_TRY(auto timestamp, Latest(store_, tenant_id, repository, scope, TufRole::kTimestamp));
    const std::int64_t timestamp_lifetime = Lifetime(repository, TufRole::kTimestamp);
    bool timestamp_current = false;
    if (timestamp) {
      CITADEL_TRY(auto parsed, ParseStored<tuf::Timestamp>(*timestamp));
      timestamp_current = parsed.body.snapshot_meta.version == snapshot->version &&
                          !NeedsResigning(timestamp->expires_at, timestamp_lifetime, now);
    }
    if (!timestamp_current) {
      tuf::Timestamp body;
      body.version = timestamp ? timestamp->version + 1 : 1;
      // Never vouch for online metadata past its own expiry.
      body.expires = std::min(now + timestamp_lifetime, snapshot->expires_at);
      if (director) body.expires = std::min(body.expires, targets.expires_at);
      body.snapshot_meta = tuf::MetaFile::FromData(snapshot->version, snapshot->document);
      auto stored = SignAndStore(tenant_id, repository, scope, TufRole::kTimestamp, body, Json(), now);
      if (!stored && stored.error().code() != ErrorCode::kAlreadyExists) return std::unexpected(stored.error());
      continue;
    }
    return PublishedVersions{targets.version, snapshot->version, timestamp->version};
  }
  return MakeError(ErrorCode::kUnavailable, "the " + RepositoryLabel(repository) +
                                                " metadata is being published by several requests at once; retry");
}

// ----------------------------------------------------------- image targets

Expected<PublishedVersions> Repository::AddImageTargets(std::string_view tenant_id, std::string_view document,
                                                        std::int64_t now, const HashCheck& verify_other_hashes) {
  auto parsed = tuf::ParseMetadata<tuf::Targets>(document);
  if (!parsed) return WrapError(parsed.error(), "targets");
  const tuf::Targets& targets = parsed->body;
  CITADEL_TRY(auto root_record, Latest(store_, tenant_id, TufRepository::kImage, "", TufRole::kRoot));
  if (!root_record) {
    return MakeError(ErrorCode::kFailedPrecondition, "upload the image repository's root before its targets");
  }
  CITADEL_TRY(auto root, ParseStored<tuf::Root>(*root_record));
  if (targets.IsExpired(now)) {
    return MakeError(ErrorCode::kInvalidArgument, "targets: expired at " + tuf::FormatExpires(targets.expires));
  }
  if (targets.delegations && (!targets.delegations->roles.empty() || targets.delegations->succinct_roles)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "targets: delegations are not supported by the service; list every image in targets");
  }
  CITADEL_TRY(std::string serialized, parsed->Serialize());
  CITADEL_TRY(auto latest, Latest(store_, tenant_id, TufRepository::kImage, "", TufRole::kTargets));
  const std::int64_t expected_version = latest ? latest->version + 1 : 1;
  if (latest && targets.version == latest->version && latest->document == serialized) {
    return Refresh(tenant_id, TufRepository::kImage, "", now);  // a retried upload
  }
  if (targets.version != expected_version) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "targets: version must be " + std::to_string(expected_version) +
                         (latest ? " (the latest is " + std::to_string(latest->version) + "; fetch it, edit, re-sign)"
                                 : " (the first)"));
  }
  if (auto verified = root.body.VerifyDelegate(tuf::kTargetsRole, *parsed); !verified) {
    return WrapError(verified.error(), "targets: not signed by the threshold of the image root's targets keys");
  }

  std::optional<tuf::Targets> previous;
  if (latest) {
    CITADEL_TRY(auto previous_md, ParseStored<tuf::Targets>(*latest));
    previous = std::move(previous_md.body);
  }
  for (const auto& [path, target] : targets.targets) {
    const std::string what = "targets: " + path;
    auto image = store_.GetImageByTargetName(tenant_id, path);
    if (!image) {
      if (image.error().code() == ErrorCode::kNotFound) {
        return MakeError(ErrorCode::kInvalidArgument,
                         what + " is not an uploaded image (upload and register it first: citadel image upload)");
      }
      return std::unexpected(image.error());
    }
    if (target.length != image->length) {
      return MakeError(ErrorCode::kInvalidArgument, what + ": length " + std::to_string(target.length) +
                                                        " differs from the uploaded image's " +
                                                        std::to_string(image->length));
    }
    auto sha256 = target.hashes.find("sha256");
    if (sha256 == target.hashes.end() || sha256->second != image->sha256) {
      return MakeError(ErrorCode::kInvalidArgument,
                       what + ": hashes.sha256 must be the uploaded image's " + image->sha256);
    }
    const Json expected_custom = ImageTargetCustom(*image);
    const auto listed_citadel = target.custom.is_object() ? target.custom.find("citadel") : target.custom.end();
    if (!target.custom.is_object() || listed_citadel == target.custom.end() ||
        *listed_citadel != expected_custom["citadel"]) {
      return MakeError(ErrorCode::kInvalidArgument, what + ": custom.citadel must be " +
                                                        expected_custom["citadel"].dump() + " (the image as uploaded)");
    }
    if (target.hashes.size() > 1) {
      // Hashes other than sha256 are checked against the bytes, once: an
      // entry unchanged since the previous version was checked then.
      bool checked_before = false;
      if (previous) {
        auto before = previous->targets.find(path);
        checked_before = before != previous->targets.end() && before->second.length == target.length &&
                         before->second.hashes == target.hashes;
      }
      if (!checked_before) {
        if (auto verified = verify_other_hashes(*image, target); !verified) return WrapError(verified.error(), what);
      }
    }
  }

  CITADEL_TRY_VOID(StoreUpload(store_,
                               {std::string(tenant_id), TufRepository::kImage, "", TufRole::kTargets, targets.version,
                                targets.expires, serialized, now},
                               "fetch the latest, edit and re-sign"));
  Prune(tenant_id, TufRepository::kImage, "", TufRole::kTargets);
  return Refresh(tenant_id, TufRepository::kImage, "", now);
}

Expected<tuf::Targets> Repository::LatestImageTargets(std::string_view tenant_id) {
  CITADEL_TRY(auto latest, store_.GetLatestRepositoryMetadata(tenant_id, TufRepository::kImage, "", TufRole::kTargets));
  CITADEL_TRY(auto parsed, ParseStored<tuf::Targets>(latest));
  return std::move(parsed.body);
}

// --------------------------------------------------------- director targets

Expected<std::int64_t> Repository::PublishDirectorTargets(std::string_view tenant_id, std::string_view group_id,
                                                          const std::vector<DirectorTarget>& targets,
                                                          const Json& custom, std::int64_t now) {
  if (!custom.is_null() && !custom.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, "director targets: custom must be an object or null");
  }
  tuf::Targets body;
  for (const auto& target : targets) {
    if (target.name.empty() || target.hashes.empty() ||
        target.length > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "director target " + target.name + ": needs a name, a length and hashes");
    }
    tuf::TargetFile file;
    file.path = target.name;
    file.length = static_cast<std::int64_t>(target.length);
    file.hashes = target.hashes;
    file.custom = target.custom;
    if (!body.targets.emplace(target.name, std::move(file)).second) {
      return MakeError(ErrorCode::kInvalidArgument, "director target " + target.name + " is listed twice");
    }
  }
  const Json targets_json = body.ToJson()["targets"];

  for (int attempt = 0;; ++attempt) {
    if (attempt == kMaxPublishAttempts) {
      return MakeError(ErrorCode::kUnavailable, "the director targets of group " + std::string(group_id) +
                                                    " are being published by several requests at once; retry");
    }
    CITADEL_TRY(auto latest, Latest(store_, tenant_id, TufRepository::kDirector, group_id, TufRole::kTargets));
    if (latest) {
      CITADEL_TRY(auto current, ParseStored<tuf::Targets>(*latest));
      const auto current_custom = current.signed_json.find("custom");
      const bool same = current.signed_json["targets"] == targets_json &&
                        (current_custom == current.signed_json.end() ? custom.is_null() : *current_custom == custom);
      if (same && !NeedsResigning(latest->expires_at, kDirectorLifetime, now)) break;
    } else {
      // The first publish for this scope: the group must be the tenant's
      // (later publishes find it already vetted).
      CITADEL_TRY_VOID(store_.GetDeviceGroup(tenant_id, group_id));
    }
    CITADEL_TRY(auto root, Latest(store_, tenant_id, TufRepository::kDirector, "", TufRole::kRoot));
    if (!root) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "the tenant has no director root yet: upload it (POST .../repository/director/root)");
    }
    body.version = latest ? latest->version + 1 : 1;
    body.expires = now + kDirectorLifetime;
    auto stored = SignAndStore(tenant_id, TufRepository::kDirector, group_id, TufRole::kTargets, body, custom, now);
    if (stored) break;
    if (stored.error().code() != ErrorCode::kAlreadyExists) return std::unexpected(stored.error());
  }
  CITADEL_TRY(PublishedVersions versions, Refresh(tenant_id, TufRepository::kDirector, group_id, now));
  director_memo_.Put(GroupIndex{tenant_id, group_id}, versions.timestamp);
  return versions.timestamp;
}

Expected<std::int64_t> Repository::CheckedDirectorVersion(std::string_view tenant_id, std::string_view group_id,
                                                          const DirectorPublish& publish) {
  return director_memo_.Get(GroupIndex{tenant_id, group_id}, publish, [](const Error& error) {
    return error.code() == ErrorCode::kFailedPrecondition || error.code() == ErrorCode::kNotFound;
  });
}

// ------------------------------------------------------------------ status

Expected<Json> Repository::Status(std::string_view tenant_id) {
  auto roles_of = [&](TufRepository repository, std::string_view scope,
                      std::initializer_list<TufRole> roles) -> Expected<Json> {
    Json out = Json::object();
    for (TufRole role : roles) {
      CITADEL_TRY(auto latest, Latest(store_, tenant_id, repository, scope, role));
      out[std::string(store::TufRoleName(role))] = RoleStatus(latest);
    }
    return out;
  };
  CITADEL_TRY(Json image, roles_of(TufRepository::kImage, "",
                                   {TufRole::kRoot, TufRole::kTargets, TufRole::kSnapshot, TufRole::kTimestamp}));
  CITADEL_TRY(Json director, roles_of(TufRepository::kDirector, "", {TufRole::kRoot}));
  Json groups = Json::object();
  CITADEL_TRY(auto products, store_.ListProducts(tenant_id));
  for (const auto& product : products) {
    CITADEL_TRY(auto product_groups, store_.ListDeviceGroups(tenant_id, product.id));
    for (const auto& group : product_groups) {
      CITADEL_TRY(Json roles, roles_of(TufRepository::kDirector, group.id,
                                       {TufRole::kTargets, TufRole::kSnapshot, TufRole::kTimestamp}));
      groups[group.id] = std::move(roles);
    }
  }
  director["groups"] = std::move(groups);

  Json online_image = Json::object();
  Json online_director = Json::object();
  CITADEL_TRY(auto keys, store_.ListRepositoryKeys(tenant_id));
  for (const auto& key : keys) {
    Json& target = key.repository == TufRepository::kImage ? online_image : online_director;
    target[std::string(store::TufRoleName(key.role))] = key.key_id;
  }
  image["online_key_ids"] = std::move(online_image);
  director["online_key_ids"] = std::move(online_director);
  return Json{{"image", std::move(image)}, {"director", std::move(director)}};
}

}  // namespace citadel::server
