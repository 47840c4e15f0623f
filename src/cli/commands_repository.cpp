// keys, repo: the TUF key ceremony and signing of issue 4 (docs/PROTOCOL.md,
// "Updates"; docs/ARCHITECTURE.md, "Over-the-air updates"). The offline keys
// live in files on the maker's machine; what gets built and signed is
// decided in repository_ceremony.hpp; this file reads and writes files, calls
// the management API and tells the person what to do next.
//
// Trust: before signing anything that extends what the service holds (a
// new root, the next image targets), the CLI checks what it fetched: the
// service's current root must chain from a root in the key directory
// (DIR/<repository>-root.<N>.json, kept by init and rotate), and the latest
// image targets must be signed by the maker's targets keys. So a
// compromised service cannot slip its own keys or images into what the
// offline keys sign.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <system_error>

#include "cli/command_context.hpp"
#include "cli/repository_ceremony.hpp"
#include "cli/table.hpp"
#include "common/file.hpp"

namespace citadel::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr std::int64_t kDay = 24 * 60 * 60;
constexpr std::int64_t kMaxExpiresDays = 3650;
constexpr std::int64_t kMaxCeremonyKeys = 16;
// Pages of GET .../images read for `repo publish`; bounded so a server that
// keeps answering with a cursor cannot keep the CLI looping.
constexpr int kMaxImagePages = 1000;
constexpr const char* kImagePageSize = "1000";
// Earlier image roots walked back to verify targets signed before a targets
// key rotation.
constexpr int kMaxRootsWalkedBack = 64;

constexpr const char* kGlobalNote =
    "Global options (see `citadel --help`): --json, --server URL, --token TOKEN, --ca FILE, --tenant ID";

// ---- small helpers ------------------------------------------------------------

// An Expected from the ceremony or file layer as a Failure, with a hint.
template <typename T>
Result<T> Check(Expected<T> value, const std::string& hint = {}) {
  if (value) return std::move(*value);
  auto failure = FailureFromError(value.error(), {});
  if (!hint.empty()) failure.hint = hint;
  return std::unexpected(failure);
}

Result<void> CheckVoid(const Expected<void>& value, const std::string& hint = {}) {
  if (value) return {};
  auto failure = FailureFromError(value.error(), {});
  if (!hint.empty()) failure.hint = hint;
  return std::unexpected(failure);
}

// A repeatable option that takes one value per occurrence, so that
// `--remove A NAME` leaves NAME to the positional arguments.
CLI::Option* Repeatable(CLI::Option* option) {
  return option->expected(1)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
}

void Teach(CLI::App* command, const std::string& what, const std::string& example, const std::string& next) {
  command->footer(what + "\n\nExample:\n  " + example + "\n\nNext: " + next + "\n\n" + kGlobalNote);
}

std::int64_t NowSeconds(CommandContext& context) { return ToUnixSeconds(context.now()); }

Result<std::int64_t> ExpiresIn(CommandContext& context, std::int64_t days) {
  if (days < 1 || days > kMaxExpiresDays) {
    return Fail(ExitCode::kUsage, "--expires-days must be 1.." + std::to_string(kMaxExpiresDays));
  }
  return NowSeconds(context) + days * kDay;
}

std::string ExpiresText(std::int64_t unix_seconds) { return tuf::FormatExpires(unix_seconds); }

Result<RepositoryKind> RepositoryOption(const std::string& name) {
  auto kind = ParseRepositoryKind(name);
  if (!kind) return Fail(ExitCode::kUsage, "--repository must be image or director (got \"" + name + "\")");
  return *kind;
}

// DIR/image-root.3.json
fs::path RootFileIn(const fs::path& dir, RepositoryKind kind, std::int64_t version) {
  return dir / (std::string(RepositoryKindName(kind)) + "-root." + std::to_string(version) + ".json");
}

// The repository a root file belongs to, guessed from its name, for the
// next-step hint; "image|director" when the name does not say.
std::string RepositoryFromName(const fs::path& path) {
  const std::string name = path.filename().string();
  if (name.find("director") != std::string::npos) return "director";
  if (name.find("image") != std::string::npos) return "image";
  return "image|director";
}

bool Exists(const fs::path& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

json ChecksJson(const std::vector<ThresholdCheck>& checks) {
  json out = json::array();
  for (const auto& check : checks) {
    out.push_back({{"what", check.what},
                   {"threshold", check.threshold},
                   {"valid", check.valid},
                   {"met", check.met},
                   {"missing_key_ids", check.missing_key_ids}});
  }
  return out;
}

void PrintChecks(CommandContext& context, const std::vector<ThresholdCheck>& checks) {
  for (const auto& check : checks) {
    context.out() << "  " << (check.met ? "[ok] " : "[  ] ") << check.what << ": " << check.valid << " valid, "
                  << check.threshold << " needed" << '\n';
    if (!check.met) {
      for (const auto& id : check.missing_key_ids) context.out() << "         could sign: " << id << '\n';
    }
  }
}

// Warns when a private key file is readable by others (it should be 0600).
void WarnIfOpen(CommandContext& context, const fs::path& key_file) {
  if (IsAccessibleByOthers(key_file)) {
    context.Warn(key_file.string() + " is readable by other users; run `chmod 600 " + key_file.string() + "`");
  }
}

Result<tuf::SigningKey> LoadKey(CommandContext& context, const fs::path& path) {
  WarnIfOpen(context, path);
  return Check(LoadSigningKey(path), "pass a NAME.key written by `citadel keys create` or `citadel repo init`");
}

// ---- the service ----------------------------------------------------------------

struct RepositoryState {
  json status;
  std::optional<std::int64_t> image_root;
  std::optional<std::int64_t> director_root;
  std::vector<std::string> groups;

  std::optional<std::int64_t> RootVersion(RepositoryKind kind) const {
    return kind == RepositoryKind::kImage ? image_root : director_root;
  }
};

std::optional<std::int64_t> VersionAt(const json& status, const char* repository, const char* role) {
  if (!status.is_object() || !status.contains(repository)) return std::nullopt;
  const json& roles = status[repository];
  if (!roles.is_object() || !roles.contains(role) || !roles[role].is_object()) return std::nullopt;
  const json& entry = roles[role];
  if (!entry.contains("version") || !entry["version"].is_number_integer()) return std::nullopt;
  return entry["version"].get<std::int64_t>();
}

Result<RepositoryState> GetRepositoryState(CommandContext& context) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/repository"));
  CITADEL_TRY(auto status, api->Get(path));
  RepositoryState state;
  state.image_root = VersionAt(status, "image", "root");
  state.director_root = VersionAt(status, "director", "root");
  if (status.is_object() && status.contains("director") && status["director"].is_object()) {
    const json& groups = status["director"].value("groups", json::object());
    if (groups.is_object()) {
      for (const auto& [group, roles] : groups.items()) state.groups.push_back(group);
    }
  }
  state.status = std::move(status);
  return state;
}

// "/v1/repo/<tenant>/image/3.root.json" (the director's root is tenant-wide,
// served under any of the tenant's groups).
Result<std::string> RootFilePath(CommandContext& context, RepositoryKind kind, const RepositoryState& state,
                                 std::int64_t version) {
  CITADEL_TRY(auto tenant, context.Tenant());
  const std::string file = std::to_string(version) + ".root.json";
  if (kind == RepositoryKind::kImage) return "/v1/repo/" + PercentEncode(tenant) + "/image/" + file;
  if (state.groups.empty()) {
    return Fail(ExitCode::kNotFound,
                "the service serves the director root under a device group, and the tenant has none",
                "pass --keys DIR holding director-root." + std::to_string(version) +
                    ".json (written by `citadel repo init` or `citadel repo rotate`)");
  }
  return "/v1/repo/" + PercentEncode(tenant) + "/director/" + PercentEncode(state.groups.front()) + "/" + file;
}

// A root version: from the key directory when it holds that version, else
// from the service.
std::function<Expected<std::string>(std::int64_t)> RootFetcher(CommandContext& context, RepositoryKind kind,
                                                               const RepositoryState& state,
                                                               const std::optional<fs::path>& keys_dir) {
  return [&context, kind, &state, keys_dir](std::int64_t version) -> Expected<std::string> {
    if (keys_dir) {
      const auto local = RootFileIn(*keys_dir, kind, version);
      if (Exists(local)) return ReadFile(local, 1 << 20);
    }
    auto path = RootFilePath(context, kind, state, version);
    if (!path) return MakeError(ErrorCode::kNotFound, path.error().message);
    auto api = context.Api();
    if (!api) return MakeError(ErrorCode::kUnavailable, api.error().message);
    auto text = (*api)->GetText(*path);
    if (!text)
      return MakeError(ErrorCode::kNotFound, "root version " + std::to_string(version) + ": " + text.error().message);
    return std::move(*text);
  };
}

// The newest DIR/<kind>-root.<K>.json with K <= max_version.
std::optional<std::pair<std::int64_t, fs::path>> NewestLocalRoot(const fs::path& dir, RepositoryKind kind,
                                                                 std::int64_t max_version) {
  std::optional<std::pair<std::int64_t, fs::path>> best;
  const std::string head = std::string(RepositoryKindName(kind)) + "-root.";
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return std::nullopt;
  for (const auto& entry : it) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(head) || !name.ends_with(".json")) continue;
    const std::string number = name.substr(head.size(), name.size() - head.size() - 5);
    if (number.empty() || number.size() > 9 || number.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto version = static_cast<std::int64_t>(std::stoll(number));
    if (version < 1 || version > max_version) continue;
    if (!best || version > best->first) best = std::make_pair(version, entry.path());
  }
  return best;
}

struct TrustedRoot {
  tuf::Metadata<tuf::Root> md;
  std::optional<fs::path> anchor;  // the local root the chain was walked from
};

// The repository's current root, verified: walked from the newest root in
// keys_dir when there is one (a TUF client's check), else only checked to be
// self-signed (trust on first use, with a warning). Saves the current root
// as DIR/<kind>-root.<N>.json when keys_dir lacks it, so the chain stays
// complete and `citadel keys sign` finds the previous root of a rotation.
Result<TrustedRoot> FetchTrustedRoot(CommandContext& context, RepositoryKind kind, const RepositoryState& state,
                                     const std::optional<fs::path>& keys_dir) {
  const std::string name(RepositoryKindName(kind));
  auto current = state.RootVersion(kind);
  if (!current) {
    return Fail(ExitCode::kNotFound, "the tenant's " + name + " repository has no root yet",
                "set the repositories up first: `citadel repo init --keys DIR`");
  }
  auto fetch = RootFetcher(context, kind, state, keys_dir);
  TrustedRoot trusted;
  std::optional<std::pair<std::int64_t, fs::path>> local;
  if (keys_dir) local = NewestLocalRoot(*keys_dir, kind, *current);
  if (local) {
    CITADEL_TRY(auto anchor, Check(ReadRootFile(local->second)));
    if (anchor.body.version != local->first || !anchor.body.VerifyDelegate(tuf::kRootRole, anchor)) {
      return Fail(ExitCode::kError,
                  local->second.string() + " is not a complete root version " + std::to_string(local->first),
                  "finish it (`citadel keys sign`, `citadel repo push-root`) or move it out of " + keys_dir->string());
    }
    auto walked = WalkRootChain(std::move(anchor), *current, fetch);
    if (!walked) {
      return Fail(ExitCode::kError,
                  "the service's " + name + " root does not chain from " + local->second.string() + ": " +
                      walked.error().message(),
                  "do not sign anything for this repository until you know why (a compromised service, or a "
                  "ceremony done from another key directory)");
    }
    trusted.md = std::move(*walked);
    trusted.anchor = local->second;
  } else {
    CITADEL_TRY(auto document, Check(fetch(*current)));
    CITADEL_TRY(auto md, Check(tuf::ParseMetadata<tuf::Root>(document)));
    if (md.body.version != *current || !md.body.VerifyDelegate(tuf::kRootRole, md)) {
      return Fail(ExitCode::kError, "the service's " + name + " root version " + std::to_string(*current) +
                                        " is not signed by its own root threshold");
    }
    trusted.md = std::move(md);
    context.Warn("no " + name + "-root.*.json in the key directory to check the service's root against; trusting " +
                 "the service's version " + std::to_string(*current) + " (pass --keys DIR from `citadel repo init`)");
  }
  if (keys_dir) {
    const auto path = RootFileIn(*keys_dir, kind, trusted.md.body.version);
    if (!Exists(path)) CITADEL_TRY_VOID(CheckVoid(WriteMetadataFile(path, trusted.md)));
  }
  return trusted;
}

// POSTs a root; 201 (new) or 200 (the same root again).
Result<json> PushRoot(CommandContext& context, RepositoryKind kind, const tuf::Envelope& md,
                      const std::string& file_hint) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/repository/" + std::string(RepositoryKindName(kind)) + "/root"));
  CITADEL_TRY(auto body, Check(EnvelopeJson(md)));
  FailureContext failure_context;
  failure_context.forbidden_hint = "uploading a root needs an admin token of this tenant";
  auto answer = api->Post(path, body, failure_context);
  if (!answer) {
    auto failure = answer.error();
    if (failure.message.find("not signed by the threshold of root version") != std::string::npos) {
      failure.hint = "a rotation needs the previous root's threshold too: `citadel keys sign " + file_hint +
                     " --key OLD.key --previous-root PREVIOUS.json`, then push again";
    } else if (failure.message.find("version") != std::string::npos && failure.exit_code == ExitCode::kConflict) {
      failure.hint = "the service moved on; see `citadel repo status` and rotate from its current root";
    }
    return std::unexpected(failure);
  }
  return *answer;
}

// ---- keys create ------------------------------------------------------------------

Result<void> KeysCreate(CommandContext& context, const fs::path& dir_and_name) {
  auto created = CreateKeyFiles(dir_and_name);
  if (!created) {
    auto failure = FailureFromError(created.error(), {});
    if (created.error().code() == ErrorCode::kAlreadyExists) {
      failure.hint = "a key file is never replaced (what it signed would stop verifying); choose another name";
    }
    return std::unexpected(failure);
  }
  if (context.json()) {
    context.PrintJson({{"key_id", created->key_id},
                       {"private_key_file", created->files.private_key.string()},
                       {"public_key_file", created->files.public_key.string()},
                       {"keytype", "ecdsa-sha2-nistp256"}});
    return {};
  }
  context.out() << "Created a TUF signing key (ECDSA P-256):\n";
  RenderKeyValues(context.out(), {{"  Key ID", created->key_id},
                                  {"  Private key", created->files.private_key.string() + " (mode 0600; keep offline)"},
                                  {"  Public key", created->files.public_key.string()}});
  const bool targets_key = dir_and_name.filename().string().starts_with("targets");
  context.out() << "\nAdd it to a role with `citadel repo rotate --keys DIR --repository "
                << (targets_key ? "image --role targets" : "image|director --role root") << " --add-key "
                << created->files.public_key.string() << "`.\n";
  return {};
}

// ---- keys sign --------------------------------------------------------------------

struct KeysSignOptions {
  fs::path file;
  std::vector<fs::path> keys;
  fs::path output;
  fs::path previous_root;
  fs::path root;
};

// The previous version of a root file beside it: "x.<N>.json" -> "x.<N-1>.json",
// "<N>.root.json" -> "<N-1>.root.json".
std::optional<fs::path> SiblingPreviousRoot(const fs::path& file, std::int64_t version) {
  if (version <= 1) return std::nullopt;
  const std::string name = file.filename().string();
  const std::string current = std::to_string(version);
  const std::string previous = std::to_string(version - 1);
  std::string candidate;
  if (name == current + ".root.json") {
    candidate = previous + ".root.json";
  } else if (name.ends_with("." + current + ".json")) {
    candidate = name.substr(0, name.size() - current.size() - 5) + previous + ".json";
  } else {
    return std::nullopt;
  }
  fs::path path = file.parent_path() / candidate;
  if (!Exists(path)) return std::nullopt;
  return path;
}

Result<void> KeysSign(CommandContext& context, const KeysSignOptions& options) {
  if (options.keys.empty()) return Fail(ExitCode::kUsage, "name at least one --key K.key");
  CITADEL_TRY(auto file, Check(ReadMetadataFile(options.file)));
  std::optional<tuf::Metadata<tuf::Root>> authority;  // previous root (root) or image root (targets)
  std::optional<fs::path> authority_file;
  std::set<std::string> authorised;
  std::string description;
  bool checked = true;

  if (file.type == tuf::kRootRole) {
    authority_file = options.previous_root.empty() ? SiblingPreviousRoot(options.file, file.version)
                                                   : std::optional<fs::path>(options.previous_root);
    if (authority_file) {
      CITADEL_TRY(auto previous, Check(ReadRootFile(*authority_file)));
      if (previous.body.version + 1 != file.version) {
        return Fail(ExitCode::kUsage, authority_file->string() + " is root version " +
                                          std::to_string(previous.body.version) + ", not the previous version of " +
                                          options.file.string() + " (" + std::to_string(file.version) + ")");
      }
      authority = std::move(previous);
    }
    authorised = RootSigners(*file.root, authority ? &authority->body : nullptr);
    description = "root version " + std::to_string(file.version) +
                  (authority ? " (neither its root keys nor those of version " + std::to_string(file.version - 1) + ")"
                             : " (not one of its root keys)");
  } else {
    if (!options.root.empty()) {
      CITADEL_TRY(auto root, Check(ReadRootFile(options.root)));
      authority = std::move(root);
      authority_file = options.root;
      for (const auto& [role, keys] : authority->body.roles) {
        if (role == tuf::kTargetsRole) authorised.insert(keys.keyids.begin(), keys.keyids.end());
      }
      description = "image targets (not a targets key of " + options.root.string() + ")";
    } else {
      checked = false;
    }
  }

  // Every key is loaded and checked before any signature is added, so a
  // refused key leaves the file as it was.
  std::vector<tuf::SigningKey> keys;
  for (const auto& path : options.keys) {
    CITADEL_TRY(auto key, LoadKey(context, path));
    if (checked && !authorised.contains(key.KeyId())) {
      std::string hint = "sign with one of the authorised keys:";
      for (const auto& id : authorised) hint += " " + id;
      if (file.type == tuf::kRootRole && file.version > 1 && !authority) {
        hint += "; a key of the previous root may sign too: pass --previous-root with root version " +
                std::to_string(file.version - 1);
      }
      return Fail(ExitCode::kAuth, path.string() + " (key " + key.KeyId() + ") may not sign " + description, hint);
    }
    keys.push_back(std::move(key));
  }
  json signed_by = json::array();
  bool changed = false;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    CITADEL_TRY(auto outcome,
                Check(AddSignature(file.envelope, keys[i], checked ? &authorised : nullptr, description)));
    changed = changed || outcome == SignOutcome::kAdded;
    signed_by.push_back({{"key_id", keys[i].KeyId()},
                         {"key_file", options.keys[i].string()},
                         {"outcome", outcome == SignOutcome::kAdded ? "signed" : "already-signed"}});
  }
  const fs::path output = options.output.empty() ? options.file : options.output;
  if (changed || output != options.file) CITADEL_TRY_VOID(CheckVoid(WriteMetadataFile(output, file.envelope)));

  std::vector<ThresholdCheck> checks;
  if (file.type == tuf::kRootRole) {
    tuf::Metadata<tuf::Root> md;
    static_cast<tuf::Envelope&>(md) = file.envelope;
    md.body = *file.root;
    checks = CheckRootSignatures(md, authority ? &authority->body : nullptr);
  } else if (authority) {
    checks.push_back(CheckTargetsSignatures(file.envelope, authority->body));
  }
  const bool previous_unchecked = file.type == tuf::kRootRole && file.version > 1 && !authority;
  const bool complete = AllMet(checks) && checked && !previous_unchecked;

  if (context.json()) {
    context.PrintJson({{"file", output.string()},
                       {"type", file.type},
                       {"version", file.version},
                       {"signed_by", signed_by},
                       {"thresholds", ChecksJson(checks)},
                       {"complete", complete}});
    return {};
  }
  for (const auto& entry : signed_by) {
    context.out() << (entry["outcome"] == "signed" ? "Signed " : "Already signed by ") << JsonText(entry, "key_id")
                  << (entry["outcome"] == "signed" ? "" : " (left as it was)") << '\n';
  }
  context.out() << "\n" << file.type << " version " << file.version << " in " << output.string() << ":\n";
  PrintChecks(context, checks);
  if (!checked) {
    context.out() << "  (authorisation not checked: pass --root IMAGE-ROOT.json to check the targets keys)\n";
  }
  if (previous_unchecked) {
    context.out() << "  (the previous root's threshold is not checked: pass --previous-root FILE)\n";
  }
  context.out() << '\n';
  if (file.type == tuf::kRootRole) {
    if (AllMet(checks)) {
      context.out() << "Next: `citadel repo push-root " << output.string() << " --repository "
                    << RepositoryFromName(output) << "`.\n";
    } else {
      context.out() << "Next: the other key holders run `citadel keys sign " << output.string()
                    << " --key THEIR.key`, then `citadel repo push-root " << output.string() << " --repository "
                    << RepositoryFromName(output) << "`.\n";
    }
  } else {
    context.out() << (AllMet(checks) && checked ? "Next: " : "Next, once enough targets keys signed: ")
                  << "`citadel repo push-targets " << output.string() << "`.\n";
  }
  return {};
}

// ---- repo init ---------------------------------------------------------------------

struct RepoInitOptions {
  fs::path keys_dir;
  std::int64_t root_keys = 3;
  std::int64_t root_threshold = 2;
  std::int64_t targets_keys = 1;
  std::int64_t targets_threshold = 1;
  std::int64_t expires_days = 365;
  bool no_push = false;
};

Result<void> CheckCeremonyShape(std::string_view role, std::int64_t keys, std::int64_t threshold) {
  if (keys < 1 || keys > kMaxCeremonyKeys) {
    return Fail(ExitCode::kUsage, "--" + std::string(role) + "-keys must be 1.." + std::to_string(kMaxCeremonyKeys));
  }
  if (threshold < 1 || threshold > keys) {
    return Fail(ExitCode::kUsage, "--" + std::string(role) + "-threshold must be 1.." + std::to_string(keys) +
                                      " (at most the number of " + std::string(role) + " keys)");
  }
  return {};
}

struct MadeKeys {
  std::vector<CreatedKey> created;
  RoleKeySet set;
};

Result<MadeKeys> MakeRoleKeys(const fs::path& dir, std::string_view prefix, std::int64_t count,
                              std::int64_t threshold) {
  MadeKeys made;
  made.set.threshold = threshold;
  for (std::int64_t i = 1; i <= count; ++i) {
    CITADEL_TRY(auto created, Check(CreateKeyFiles(dir / (std::string(prefix) + "-" + std::to_string(i)))));
    CITADEL_TRY(auto key, Check(LoadPublicKey(created.files.public_key)));
    made.set.keys.push_back(std::move(key));
    made.created.push_back(std::move(created));
  }
  return made;
}

json CreatedKeysJson(const std::vector<CreatedKey>& keys) {
  json out = json::array();
  for (const auto& key : keys) {
    out.push_back({{"key_id", key.key_id},
                   {"private_key_file", key.files.private_key.string()},
                   {"public_key_file", key.files.public_key.string()}});
  }
  return out;
}

Result<void> RepoInit(CommandContext& context, const RepoInitOptions& options) {
  CITADEL_TRY_VOID(CheckCeremonyShape("root", options.root_keys, options.root_threshold));
  CITADEL_TRY_VOID(CheckCeremonyShape("targets", options.targets_keys, options.targets_threshold));
  CITADEL_TRY(auto expires, ExpiresIn(context, options.expires_days));
  if (HoldsKeyFiles(options.keys_dir)) {
    return Fail(ExitCode::kConflict, options.keys_dir.string() + " already holds keys; refusing to make new ones there",
                "to change keys of set-up repositories use `citadel repo rotate --keys " + options.keys_dir.string() +
                    "`; for a new ceremony choose an empty directory");
  }

  // Ask the service first: nothing is created when it cannot be reached or
  // when the tenant's repositories are set up already.
  CITADEL_TRY(auto* api, context.Api());
  if (!options.no_push) {
    CITADEL_TRY(auto state, GetRepositoryState(context));
    if (state.image_root || state.director_root) {
      return Fail(
          ExitCode::kConflict,
          "the tenant's repositories are set up already (image root " +
              (state.image_root ? "version " + std::to_string(*state.image_root) : std::string("missing")) +
              ", director root " +
              (state.director_root ? "version " + std::to_string(*state.director_root) : std::string("missing")) + ")",
          "rotate keys with `citadel repo rotate --keys DIR ...`; push a missing root made earlier with "
          "`citadel repo push-root FILE --repository image|director`");
    }
  }
  CITADEL_TRY(auto online_path, context.TenantPath("/repository/online-keys"));
  FailureContext failure_context;
  failure_context.forbidden_hint = "setting up the repositories needs an admin token of this tenant";
  CITADEL_TRY(auto online_answer, api->Post(online_path, json::object(), failure_context));
  CITADEL_TRY(auto online, Check(ParseOnlineKeys(online_answer)));

  CITADEL_TRY_VOID(CheckVoid(EnsureDirectory(options.keys_dir, 0700)));
  if (IsAccessibleByOthers(options.keys_dir)) {
    context.Warn(options.keys_dir.string() + " is open to other users; run `chmod 700 " + options.keys_dir.string() +
                 "`");
  }
  CITADEL_TRY(auto root_keys, MakeRoleKeys(options.keys_dir, "root", options.root_keys, options.root_threshold));
  CITADEL_TRY(auto targets_keys,
              MakeRoleKeys(options.keys_dir, "targets", options.targets_keys, options.targets_threshold));

  std::vector<tuf::SigningKey> signers;
  for (const auto& created : root_keys.created) {
    CITADEL_TRY(auto key, Check(LoadSigningKey(created.files.private_key)));
    signers.push_back(std::move(key));
  }

  json roots = json::object();
  std::vector<std::pair<std::string, std::string>> rows;
  for (const auto kind : {RepositoryKind::kImage, RepositoryKind::kDirector}) {
    const std::string name(RepositoryKindName(kind));
    CITADEL_TRY(auto root, Check(BuildInitialRoot(kind, root_keys.set, targets_keys.set, online, expires)));
    CITADEL_TRY(auto md, Check(tuf::MakeMetadata(root)));
    for (const auto& key : signers) CITADEL_TRY_VOID(CheckVoid(md.Sign(key)));
    if (!AllMet(CheckRootSignatures(md, nullptr))) {
      return Fail(ExitCode::kError, "the new " + name + " root does not verify under its own keys");
    }
    const auto file = RootFileIn(options.keys_dir, kind, 1);
    CITADEL_TRY_VOID(CheckVoid(WriteMetadataFile(file, md)));
    bool pushed = false;
    if (!options.no_push) {
      auto answer = PushRoot(context, kind, md, file.string());
      if (!answer) {
        auto failure = answer.error();
        failure.message = "pushing the " + name + " root: " + failure.message;
        failure.hint = "the keys and roots are in " + options.keys_dir.string() +
                       "; once the cause is fixed, push with `citadel repo push-root " + file.string() +
                       " --repository " + name + "`";
        return std::unexpected(failure);
      }
      pushed = true;
    }
    roots[name] = {{"file", file.string()}, {"version", 1}, {"expires", ExpiresText(expires)}, {"pushed", pushed}};
    rows.emplace_back("  " + name + " root", file.string() + (pushed ? " (pushed)" : " (not pushed)"));
  }

  if (context.json()) {
    context.PrintJson({{"keys_dir", options.keys_dir.string()},
                       {"root_keys", CreatedKeysJson(root_keys.created)},
                       {"root_threshold", options.root_threshold},
                       {"targets_keys", CreatedKeysJson(targets_keys.created)},
                       {"targets_threshold", options.targets_threshold},
                       {"roots", roots}});
    return {};
  }
  context.out() << "Set up the tenant's update repositories in " << options.keys_dir.string() << ":\n\n";
  Table table({"ROLE", "KEY FILE", "KEY ID"});
  for (const auto& key : root_keys.created) table.AddRow({"root", key.files.private_key.string(), key.key_id});
  for (const auto& key : targets_keys.created) table.AddRow({"targets", key.files.private_key.string(), key.key_id});
  table.Render(context.out());
  context.out() << '\n';
  rows.insert(rows.begin(), {{"  Root threshold",
                              std::to_string(options.root_threshold) + " of " + std::to_string(options.root_keys)},
                             {"  Targets threshold", std::to_string(options.targets_threshold) + " of " +
                                                         std::to_string(options.targets_keys)},
                             {"  Roots expire", ExpiresText(expires)}});
  RenderKeyValues(context.out(), rows);
  context.out() << "\nKeep the .key files offline and apart (one holder per root key). Devices may be provisioned "
                   "with\n"
                << RootFileIn(options.keys_dir, RepositoryKind::kImage, 1).string() << " and "
                << RootFileIn(options.keys_dir, RepositoryKind::kDirector, 1).string() << ".\n";
  if (options.no_push) {
    context.out() << "\nNext: push both roots with `citadel repo push-root FILE --repository image|director`.\n";
  } else {
    context.out() << "\nNext: upload an image (`citadel image upload app.img`), then sign it into the image "
                     "repository:\n  citadel repo publish --all-unpublished --keys "
                  << options.keys_dir.string() << "\n";
  }
  return {};
}

// ---- repo push-root ------------------------------------------------------------------

struct PushRootOptions {
  fs::path file;
  std::string repository;
};

Result<void> RepoPushRoot(CommandContext& context, const PushRootOptions& options) {
  CITADEL_TRY(auto kind, RepositoryOption(options.repository));
  CITADEL_TRY(auto md, Check(ReadRootFile(options.file)));
  auto own = CheckRootSignatures(md, nullptr);
  if (!AllMet(own)) {
    std::string message = options.file.string() + " is not signed enough to push";
    for (const auto& line : DescribeMissing(own)) message += "; " + line;
    return Fail(ExitCode::kError, message,
                "the key holders sign it with `citadel keys sign " + options.file.string() + " --key THEIR.key`");
  }
  CITADEL_TRY(auto answer, PushRoot(context, kind, md, options.file.string()));
  if (context.json()) {
    context.PrintJson(answer);
    return {};
  }
  context.out() << "The " << RepositoryKindName(kind) << " root is now version " << JsonText(answer, "version")
                << " (expires " << JsonText(answer, "expires") << ").\n"
                << "Devices walk to it at their next update check. `citadel repo status` shows every role.\n";
  return {};
}

// ---- repo rotate -----------------------------------------------------------------------

struct RotateOptions {
  fs::path keys_dir;
  std::string repository;
  std::string role;
  std::vector<fs::path> add_keys;
  std::vector<std::string> remove_keys;
  std::int64_t threshold = 0;  // 0: unchanged
  std::vector<fs::path> sign_with;
  std::int64_t expires_days = 365;
  fs::path output;
  bool no_push = false;
};

Result<void> RepoRotate(CommandContext& context, const RotateOptions& options) {
  CITADEL_TRY(auto kind, RepositoryOption(options.repository));
  const std::string name(RepositoryKindName(kind));
  if (options.role != tuf::kRootRole && options.role != tuf::kTargetsRole) {
    return Fail(ExitCode::kUsage, "--role must be root or targets (got \"" + options.role + "\")",
                "snapshot and timestamp keys are the service's online keys and stay fixed");
  }
  if (options.role == tuf::kTargetsRole && kind == RepositoryKind::kDirector) {
    return Fail(ExitCode::kUsage, "the director's targets are signed online by the service; only its root rotates",
                "rotate the image repository's targets keys with --repository image --role targets");
  }
  CITADEL_TRY(auto expires, ExpiresIn(context, options.expires_days));
  RootChange change;
  change.role = options.role;
  change.expires = expires;
  change.remove_key_ids = options.remove_keys;
  if (options.threshold != 0) change.threshold = options.threshold;
  for (const auto& path : options.add_keys) {
    CITADEL_TRY(auto key, Check(LoadPublicKey(path), "pass a NAME.pub.json written by `citadel keys create`"));
    change.add_keys.push_back(std::move(key));
  }
  // Signing keys are read before the service is asked anything.
  std::vector<fs::path> key_files = options.sign_with;
  const bool explicit_signers = !key_files.empty();
  if (!explicit_signers) key_files = FindKeyFiles(options.keys_dir, "root");
  std::vector<tuf::SigningKey> keys;
  for (const auto& path : key_files) {
    CITADEL_TRY(auto key, LoadKey(context, path));
    keys.push_back(std::move(key));
  }

  CITADEL_TRY(auto state, GetRepositoryState(context));
  CITADEL_TRY(auto current, FetchTrustedRoot(context, kind, state, options.keys_dir));
  for (const char* repository : {"image", "director"}) {
    const json& status = state.status;
    if (!status.is_object() || !status.contains(repository) || !status[repository].is_object()) continue;
    const json ids = status[repository].value("online_key_ids", json::object());
    if (!ids.is_object()) continue;
    for (const auto& [role, id] : ids.items()) {
      if (id.is_string()) change.online_key_ids.insert(id.get<std::string>());
    }
  }
  CITADEL_TRY(auto next, Check(NextRoot(kind, current.md.body, change)));
  CITADEL_TRY(auto md, Check(tuf::MakeMetadata(next)));
  const auto authorised = RootSigners(next, &current.md.body);
  const std::string description = "root version " + std::to_string(next.version) + " (neither its root keys nor " +
                                  "those of version " + std::to_string(current.md.body.version) + ")";
  json signed_by = json::array();
  std::vector<std::string> skipped;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (!authorised.contains(keys[i].KeyId())) {
      if (explicit_signers) {
        return Fail(ExitCode::kAuth,
                    key_files[i].string() + " (key " + keys[i].KeyId() + ") may not sign " + description);
      }
      skipped.push_back(key_files[i].string());  // e.g. a key retired in an earlier rotation
      continue;
    }
    CITADEL_TRY(auto outcome, Check(AddSignature(md, keys[i], &authorised, description)));
    (void)outcome;
    signed_by.push_back({{"key_id", keys[i].KeyId()}, {"key_file", key_files[i].string()}});
  }
  const auto checks = CheckRootSignatures(md, &current.md.body);
  const bool complete = AllMet(checks);

  const fs::path file = options.output.empty() ? RootFileIn(options.keys_dir, kind, next.version) : options.output;
  if (Exists(file)) {
    return Fail(
        ExitCode::kConflict,
        file.string() + " exists already (an earlier rotation to version " + std::to_string(next.version) + "?)",
        "finish that one (`citadel keys sign " + file.string() + " --key K.key`, then `citadel repo " + "push-root " +
            file.string() + " --repository " + name + "`), or delete it to start again");
  }
  CITADEL_TRY_VOID(CheckVoid(WriteMetadataFile(file, md)));

  bool pushed = false;
  if (complete && !options.no_push) {
    CITADEL_TRY(auto answer, PushRoot(context, kind, md, file.string()));
    (void)answer;
    pushed = true;
  }
  if (context.json()) {
    context.PrintJson({{"repository", name},
                       {"role", options.role},
                       {"file", file.string()},
                       {"version", next.version},
                       {"previous_version", current.md.body.version},
                       {"expires", ExpiresText(expires)},
                       {"signed_by", signed_by},
                       {"skipped_keys", skipped},
                       {"thresholds", ChecksJson(checks)},
                       {"complete", complete},
                       {"pushed", pushed}});
    return {};
  }
  const auto& role_keys = next.roles.at(options.role);
  context.out() << "Built " << name << " root version " << next.version << " (" << options.role << ": "
                << role_keys.threshold << " of " << role_keys.keyids.size() << " keys; expires " << ExpiresText(expires)
                << ") in " << file.string() << ":\n";
  PrintChecks(context, checks);
  for (const auto& path : skipped) {
    context.out() << "  (not signed with " << path << ": no longer a root key)\n";
  }
  context.out() << '\n';
  if (pushed) {
    context.out() << "Pushed: the " << name << " root is now version " << next.version
                  << ". Devices walk to it at their next update check.\n";
  } else if (complete) {
    context.out() << "Not pushed (--no-push). Next: `citadel repo push-root " << file.string() << " --repository "
                  << name << "`.\n";
  } else {
    context.out() << "Not pushed: signatures are missing.\n";
    for (const auto& line : DescribeMissing(checks)) context.out() << "  " << line << '\n';
    context.out() << "Next: each missing key holder runs `citadel keys sign " << file.string()
                  << " --key THEIR.key`\n(the previous root "
                  << RootFileIn(options.keys_dir, kind, next.version - 1).string()
                  << " lies beside it), then `citadel repo push-root " << file.string() << " --repository " << name
                  << "`.\n";
  }
  return {};
}

// ---- repo publish ------------------------------------------------------------------------

struct PublishOptions {
  std::vector<std::string> targets;
  bool all_unpublished = false;
  std::vector<std::string> remove;
  std::optional<fs::path> keys_dir;
  std::vector<fs::path> targets_keys;
  std::int64_t expires_days = 90;
  fs::path output;
  bool no_push = false;
};

Result<std::vector<json>> ListImages(CommandContext& context) {
  CITADEL_TRY(auto* api, context.Api());
  std::vector<json> images;
  std::string after;
  for (int page = 0; page < kMaxImagePages; ++page) {
    CITADEL_TRY(auto path, context.TenantPath("/images" + QueryString({{"limit", kImagePageSize}, {"after", after}})));
    CITADEL_TRY(auto answer, api->Get(path));
    for (const auto& image : JsonArray(answer, "images")) images.push_back(image);
    after = JsonText(answer, "next");
    if (after.empty()) return images;
  }
  return Fail(ExitCode::kError, "the image list did not end after " + std::to_string(kMaxImagePages) + " pages");
}

// The latest image targets at the service; nullopt before the first.
Result<std::optional<tuf::Metadata<tuf::Targets>>> LatestTargets(CommandContext& context) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/repository/image/targets"));
  auto text = api->GetText(path);
  if (!text) {
    if (text.error().exit_code == ExitCode::kNotFound) return std::optional<tuf::Metadata<tuf::Targets>>();
    return std::unexpected(text.error());
  }
  CITADEL_TRY(auto md, Check(tuf::ParseMetadata<tuf::Targets>(*text)));
  return std::optional<tuf::Metadata<tuf::Targets>>(std::move(md));
}

Result<void> RepoPublish(CommandContext& context, const PublishOptions& options) {
  CITADEL_TRY(auto expires, ExpiresIn(context, options.expires_days));
  std::vector<fs::path> key_files = options.targets_keys;
  const bool explicit_signers = !key_files.empty();
  if (!explicit_signers && options.keys_dir) key_files = FindKeyFiles(*options.keys_dir, "targets");
  if (key_files.empty()) {
    return Fail(ExitCode::kUsage, "no targets key to sign with",
                "pass --keys DIR (the directory of `citadel repo init`, holding targets-N.key) or --targets-key K.key");
  }
  std::vector<tuf::SigningKey> keys;
  for (const auto& path : key_files) {
    CITADEL_TRY(auto key, LoadKey(context, path));
    keys.push_back(std::move(key));
  }

  CITADEL_TRY(auto state, GetRepositoryState(context));
  CITADEL_TRY(auto root, FetchTrustedRoot(context, RepositoryKind::kImage, state, options.keys_dir));
  CITADEL_TRY(auto latest, LatestTargets(context));
  if (latest) {
    auto verified = VerifyLatestTargets(
        *latest, root.md, RootFetcher(context, RepositoryKind::kImage, state, options.keys_dir), kMaxRootsWalkedBack);
    if (!verified) {
      return Fail(ExitCode::kError,
                  "image targets version " + std::to_string(latest->body.version) +
                      " at the service: " + verified.error().message(),
                  "do not publish until you know why: the service may be compromised");
    }
  }

  CITADEL_TRY(auto images, ListImages(context));
  std::vector<json> adding;
  for (const auto& name : options.targets) {
    auto found = std::find_if(images.begin(), images.end(),
                              [&](const json& image) { return JsonText(image, "target_name") == name; });
    if (found == images.end()) {
      return Fail(ExitCode::kNotFound, name + " is not an uploaded image of this tenant",
                  "upload it first (`citadel image upload FILE`); `citadel image list` shows the target names");
    }
    adding.push_back(*found);
  }
  if (options.all_unpublished) {
    for (const auto& image : images) {
      const std::string name = JsonText(image, "target_name");
      const bool listed = latest && latest->body.targets.contains(name);
      const bool named = std::find(options.targets.begin(), options.targets.end(), name) != options.targets.end();
      const bool removed = std::find(options.remove.begin(), options.remove.end(), name) != options.remove.end();
      if (!listed && !named && !removed) adding.push_back(image);
    }
  }
  TargetsChange change;
  CITADEL_TRY(auto md, Check(NextImageTargets(latest, adding, options.remove, expires, &change),
                             "`citadel repo status` and `citadel image list` show what is there"));

  const auto& targets_role = root.md.body.roles.at(std::string(tuf::kTargetsRole));
  const std::set<std::string> authorised(targets_role.keyids.begin(), targets_role.keyids.end());
  const std::string description =
      "image targets (not a targets key of image root version " + std::to_string(root.md.body.version) + ")";
  std::vector<std::string> skipped;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (!explicit_signers && !authorised.contains(keys[i].KeyId())) {
      skipped.push_back(key_files[i].string());  // retired by a targets key rotation
      continue;
    }
    auto outcome = AddSignature(md, keys[i], &authorised, description);
    if (!outcome) {
      return Fail(ExitCode::kAuth, key_files[i].string() + ": " + outcome.error().message(),
                  "sign with the targets keys of the current image root (rotated? use the new keys)");
    }
  }
  const std::vector<ThresholdCheck> checks = {CheckTargetsSignatures(md, root.md.body)};
  const bool complete = AllMet(checks);

  std::optional<fs::path> file;
  if (!options.output.empty()) {
    file = options.output;
  } else if (!complete) {
    file = (options.keys_dir ? *options.keys_dir : fs::path(".")) /
           ("targets." + std::to_string(md.body.version) + ".json");
  }
  fs::path root_file;
  if (file) {
    CITADEL_TRY_VOID(CheckVoid(WriteMetadataFile(*file, md)));
    // Co-signers check their targets keys against the image root.
    root_file = RootFileIn(options.keys_dir ? *options.keys_dir : file->parent_path(), RepositoryKind::kImage,
                           root.md.body.version);
    if (!Exists(root_file)) CITADEL_TRY_VOID(CheckVoid(WriteMetadataFile(root_file, root.md)));
  }

  json published = nullptr;
  if (complete && !options.no_push) {
    CITADEL_TRY(auto* api, context.Api());
    CITADEL_TRY(auto path, context.TenantPath("/repository/image/targets"));
    CITADEL_TRY(auto body, Check(EnvelopeJson(md)));
    FailureContext failure_context;
    failure_context.forbidden_hint = "publishing image targets needs a contributor or admin token of this tenant";
    CITADEL_TRY(published, api->Post(path, body, failure_context));
  }
  if (context.json()) {
    json out = {{"version", md.body.version},
                {"expires", ExpiresText(expires)},
                {"added", change.added},
                {"unchanged", change.unchanged},
                {"removed", change.removed},
                {"targets", md.body.targets.size()},
                {"thresholds", ChecksJson(checks)},
                {"complete", complete},
                {"pushed", !published.is_null()},
                {"skipped_keys", skipped},
                {"file", file ? json(file->string()) : json(nullptr)}};
    if (!published.is_null()) out["published"] = published;
    context.PrintJson(out);
    return {};
  }
  context.out() << "Image targets version " << md.body.version << " (" << md.body.targets.size() << " target"
                << (md.body.targets.size() == 1 ? "" : "s") << ", expires " << ExpiresText(expires) << "):\n";
  for (const auto& name : change.added) context.out() << "  + " << SanitizeForTerminal(name) << '\n';
  for (const auto& name : change.removed) context.out() << "  - " << SanitizeForTerminal(name) << '\n';
  for (const auto& name : change.unchanged) {
    context.out() << "  = " << SanitizeForTerminal(name) << " (already listed)\n";
  }
  if (change.added.empty() && change.removed.empty()) {
    context.out() << "  (no change of images: re-signed to extend the expiry)\n";
  }
  for (const auto& path : skipped) context.out() << "  (not signed with " << path << ": no longer a targets key)\n";
  if (file) context.out() << "Written to " << file->string() << ".\n";
  if (!published.is_null()) {
    context.out() << "\nPublished: targets version " << JsonText(published, "targets_version") << ", snapshot version "
                  << JsonText(published, "snapshot_version") << ", timestamp version "
                  << JsonText(published, "timestamp_version") << ".\n"
                  << "Next: roll it out with `citadel deployment create --device-group G --images TARGET_NAME`.\n";
  } else if (complete) {
    context.out() << "\nNot pushed (--no-push). Next: `citadel repo push-targets " << file->string() << "`.\n";
  } else {
    context.out() << "\nNot pushed: signatures are missing.\n";
    for (const auto& line : DescribeMissing(checks)) context.out() << "  " << line << '\n';
    context.out() << "Next: each missing key holder runs `citadel keys sign " << file->string()
                  << " --key THEIR.key --root " << root_file.string() << "`, then `citadel repo push-targets "
                  << file->string() << "`.\n";
  }
  return {};
}

// ---- repo push-targets -----------------------------------------------------------------------

Result<void> RepoPushTargets(CommandContext& context, const fs::path& file) {
  CITADEL_TRY(auto metadata, Check(ReadMetadataFile(file)));
  if (metadata.type != tuf::kTargetsRole) {
    return Fail(ExitCode::kUsage, file.string() + " is " + metadata.type + " metadata, not targets",
                "push a root with `citadel repo push-root FILE --repository image|director`");
  }
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/repository/image/targets"));
  CITADEL_TRY(auto body, Check(EnvelopeJson(metadata.envelope)));
  FailureContext failure_context;
  failure_context.forbidden_hint = "publishing image targets needs a contributor or admin token of this tenant";
  CITADEL_TRY(auto published, api->Post(path, body, failure_context));
  if (context.json()) {
    context.PrintJson(published);
    return {};
  }
  context.out() << "Published: targets version " << JsonText(published, "targets_version") << ", snapshot version "
                << JsonText(published, "snapshot_version") << ", timestamp version "
                << JsonText(published, "timestamp_version") << ".\n";
  return {};
}

// ---- repo status -------------------------------------------------------------------------------

Result<void> RepoStatus(CommandContext& context) {
  CITADEL_TRY(auto state, GetRepositoryState(context));
  if (context.json()) {
    context.PrintJson(state.status);
    return {};
  }
  const json& status = state.status;
  Table table({"REPOSITORY", "ROLE", "VERSION", "EXPIRES", "KEYS"});
  auto add = [&](const std::string& repository, const json& roles, const char* role, const char* keys) {
    const json entry = roles.is_object() ? roles.value(role, json()) : json();
    if (!entry.is_object()) {
      table.AddRow({repository, role, "-", "-", keys});
      return;
    }
    table.AddRow({repository, role, JsonText(entry, "version"), TimeCell(entry, "expires", context.now()), keys});
  };
  const json image = status.is_object() ? status.value("image", json::object()) : json::object();
  const json director = status.is_object() ? status.value("director", json::object()) : json::object();
  add("image", image, "root", "offline");
  add("image", image, "targets", "offline");
  add("image", image, "snapshot", "online");
  add("image", image, "timestamp", "online");
  add("director", director, "root", "offline");
  const json groups = director.is_object() ? director.value("groups", json::object()) : json::object();
  if (groups.is_object()) {
    for (const auto& [group, roles] : groups.items()) {
      for (const char* role : {"targets", "snapshot", "timestamp"}) {
        add("director/" + SanitizeForTerminal(group), roles, role, "online");
      }
    }
  }
  table.Render(context.out());
  if (!state.image_root || !state.director_root) {
    context.out() << "\nThe repositories are not set up. Run `citadel repo init --keys DIR` (makes the offline "
                     "keys and both roots).\n";
  } else if (VersionAt(status, "image", "targets") == std::nullopt) {
    context.out() << "\nNo image targets yet: upload an image (`citadel image upload FILE`), then `citadel repo "
                     "publish --all-unpublished --keys DIR`.\n";
  }
  return {};
}

}  // namespace

void RegisterRepositoryCommands(CommandSet& commands) {
  // ---- keys
  auto* keys = commands.Group(&commands.root(), "keys",
                              "Offline TUF signing keys for the update repositories: create, sign (local)");

  auto create_path = std::make_shared<fs::path>();
  auto* create = commands.Command(keys, "create", "Create an ECDSA P-256 TUF signing key: NAME.key and NAME.pub.json",
                                  "citadel keys create ./tuf-keys/root-4",
                                  [create_path](CommandContext& context) { return KeysCreate(context, *create_path); });
  create->add_option("DIR/NAME", *create_path, "Where to write NAME.key (0600) and NAME.pub.json; DIR is made 0700")
      ->required();
  Teach(create,
        "Writes a new private key (PEM PKCS#8, mode 0600, never replaced) and its public TUF key object, and\n"
        "prints the key id. The private key never leaves the file: keep it offline.",
        "citadel keys create ./tuf-keys/root-4",
        "add it to a role: `citadel repo rotate --keys ./tuf-keys --repository image --role root "
        "--add-key ./tuf-keys/root-4.pub.json`");

  auto sign = std::make_shared<KeysSignOptions>();
  auto* sign_command = commands.Command(keys, "sign", "Add your signature to a root or targets metadata file",
                                        "citadel keys sign ./tuf-keys/image-root.2.json --key ./alice/root-2.key",
                                        [sign](CommandContext& context) { return KeysSign(context, *sign); });
  sign_command->add_option("FILE", sign->file, "Root or targets metadata (JSON) to sign")->required();
  Repeatable(sign_command->add_option("--key", sign->keys, "Private key (NAME.key); repeatable"))
      ->type_name("K.key")
      ->required();
  sign_command->add_option("-o,--output", sign->output, "Write the signed file here (default: FILE in place)")
      ->type_name("OUT");
  sign_command
      ->add_option("--previous-root", sign->previous_root,
                   "For root version N+1: root version N, whose keys may sign too and whose threshold counts "
                   "(default: the N file beside FILE)")
      ->type_name("FILE");
  sign_command->add_option("--root", sign->root, "For targets: the image root that names the targets keys")
      ->type_name("IMAGE-ROOT.json");
  Teach(sign_command,
        "The multi-party ceremony: each key holder signs in turn. A key the root does not authorise for the\n"
        "role is refused; signing twice with the same key changes nothing. Shows which thresholds are met.",
        "citadel keys sign ./tuf-keys/image-root.2.json --key ./alice/root-2.key",
        "when every threshold is met, `citadel repo push-root FILE --repository image|director` (a root) or\n"
        "`citadel repo push-targets FILE` (targets)");

  // ---- repo
  auto* repo = commands.Group(&commands.root(), "repo",
                              "The tenant's TUF update repositories: key ceremony, root rotation, publishing images");

  auto init = std::make_shared<RepoInitOptions>();
  auto* init_command =
      commands.Command(repo, "init", "One-shot key ceremony: offline keys plus the image and director roots",
                       "citadel repo init --keys ./tuf-keys --root-keys 3 --root-threshold 2",
                       [init](CommandContext& context) { return RepoInit(context, *init); });
  init_command->add_option("--keys", init->keys_dir, "Directory to create for the keys and roots (mode 0700)")
      ->type_name("DIR")
      ->required();
  init_command->add_option("--root-keys", init->root_keys, "How many root keys to make")->default_val(3);
  init_command->add_option("--root-threshold", init->root_threshold, "How many root keys must sign a root")
      ->default_val(2);
  init_command->add_option("--targets-keys", init->targets_keys, "How many image targets keys to make")->default_val(1);
  init_command->add_option("--targets-threshold", init->targets_threshold, "How many targets keys must sign targets")
      ->default_val(1);
  init_command->add_option("--expires-days", init->expires_days, "Lifetime of both roots in days")->default_val(365);
  init_command->add_flag("--no-push", init->no_push, "Write the roots but do not upload them");
  Teach(init_command,
        "Creates DIR with root-1..N.key and targets-1..M.key (each with NAME.pub.json), asks the service for its\n"
        "online keys (snapshot, timestamp, director targets), builds image root version 1 and director root\n"
        "version 1, signs both with every root key, writes DIR/image-root.1.json and DIR/director-root.1.json\n"
        "(devices may be provisioned with them) and uploads both. Needs an admin token. Refuses a DIR that\n"
        "already holds keys.",
        "citadel repo init --keys ./tuf-keys --root-keys 3 --root-threshold 2",
        "move the root keys offline; `citadel image upload app.img`, then\n"
        "`citadel repo publish --all-unpublished --keys ./tuf-keys`");

  auto push_root = std::make_shared<PushRootOptions>();
  auto* push_root_command =
      commands.Command(repo, "push-root", "Upload a fully signed root (version 1 or the next rotation)",
                       "citadel repo push-root ./tuf-keys/image-root.2.json --repository image",
                       [push_root](CommandContext& context) { return RepoPushRoot(context, *push_root); });
  push_root_command->add_option("FILE", push_root->file, "Signed root metadata (JSON)")->required();
  push_root_command->add_option("--repository", push_root->repository, "image or director")
      ->type_name("image|director")
      ->required();
  Teach(push_root_command,
        "The service accepts version N+1 only when it carries the root threshold of version N and its own.",
        "citadel repo push-root ./tuf-keys/image-root.2.json --repository image", "`citadel repo status`");

  auto rotate = std::make_shared<RotateOptions>();
  auto* rotate_command =
      commands.Command(repo, "rotate", "Make the next root with changed root or targets keys, sign it and upload it",
                       "citadel repo rotate --keys ./tuf-keys --repository image --role root --remove-key 3f2a9c0d "
                       "--add-key ./tuf-keys/root-4.pub.json",
                       [rotate](CommandContext& context) { return RepoRotate(context, *rotate); });
  rotate_command->add_option("--keys", rotate->keys_dir, "The key directory of `citadel repo init`")
      ->type_name("DIR")
      ->required();
  rotate_command->add_option("--repository", rotate->repository, "image or director")
      ->type_name("image|director")
      ->required();
  rotate_command->add_option("--role", rotate->role, "root, or targets (image repository)")
      ->type_name("root|targets")
      ->required();
  Repeatable(rotate_command->add_option("--add-key", rotate->add_keys, "Public key to add (NAME.pub.json); repeatable"))
      ->type_name("PUB.json");
  Repeatable(rotate_command->add_option("--remove-key", rotate->remove_keys,
                                        "Key id (or 8+ digit prefix) to remove; repeatable"))
      ->type_name("KEYID");
  rotate_command->add_option("--threshold", rotate->threshold, "The role's new threshold (default: unchanged)")
      ->type_name("N");
  Repeatable(rotate_command->add_option("--sign-with", rotate->sign_with,
                                        "Private keys to sign with; repeatable (default: DIR/root-*.key)"))
      ->type_name("K.key");
  rotate_command->add_option("--expires-days", rotate->expires_days, "Lifetime of the new root in days")
      ->default_val(365);
  rotate_command->add_option("-o,--output", rotate->output, "Where to write the new root (default: DIR/R-root.N.json)")
      ->type_name("FILE");
  rotate_command->add_flag("--no-push", rotate->no_push, "Write the new root but do not upload it");
  Teach(rotate_command,
        "Fetches the current root N (checked against the roots in DIR), builds N+1 with the change, signs it\n"
        "and uploads it. Version N+1 needs the root threshold of N and of N+1: after a key compromise, remove\n"
        "the compromised key and add a new one; the remaining old keys meet the old threshold. When the local\n"
        "keys do not reach a threshold, the file is written and the missing signatures are listed.",
        "citadel repo rotate --keys ./tuf-keys --repository image --role root --remove-key 3f2a9c0d "
        "--add-key ./tuf-keys/root-4.pub.json",
        "if signatures are missing: `citadel keys sign FILE --key K.key` by each holder, then\n"
        "`citadel repo push-root FILE --repository image|director`");

  auto publish = std::make_shared<PublishOptions>();
  auto publish_keys = std::make_shared<fs::path>();
  auto* publish_command = commands.Command(
      repo, "publish", "Sign uploaded images into the image repository (the next targets version)",
      "citadel repo publish apps/1689d8b2-c835-2e27-27ad-e894d6d15fa9/2.0.0/thermostat.img --keys ./tuf-keys",
      [publish, publish_keys](CommandContext& context) {
        PublishOptions options = *publish;
        if (!publish_keys->empty()) options.keys_dir = *publish_keys;
        return RepoPublish(context, options);
      });
  publish_command->add_option("TARGET_NAME", publish->targets, "Target names of uploaded images to add");
  publish_command->add_flag("--all-unpublished", publish->all_unpublished,
                            "Add every uploaded image the targets do not list yet");
  Repeatable(publish_command->add_option("--remove", publish->remove, "Target name to take out; repeatable"))
      ->type_name("TARGET_NAME");
  publish_command->add_option("--keys", *publish_keys, "The key directory of `citadel repo init` (targets-*.key)")
      ->type_name("DIR");
  Repeatable(publish_command->add_option("--targets-key", publish->targets_keys, "Targets private key; repeatable"))
      ->type_name("K.key");
  publish_command->add_option("--expires-days", publish->expires_days, "Lifetime of the targets in days")
      ->default_val(90);
  publish_command->add_option("-o,--output", publish->output, "Also write the signed targets here")->type_name("FILE");
  publish_command->add_flag("--no-push", publish->no_push, "Sign and write (-o) but do not upload");
  Teach(publish_command,
        "Fetches the latest image targets (checked against your targets keys), adds each named uploaded image\n"
        "(or every unpublished one), removes --remove ones, signs version+1 with the targets keys and uploads\n"
        "it; the service then re-signs snapshot and timestamp. With no names, re-signs the same images to\n"
        "extend the expiry (targets expire: publish at least every --expires-days).",
        "citadel repo publish --all-unpublished --keys ./tuf-keys",
        "`citadel deployment create --device-group G --images TARGET_NAME`");

  auto push_targets_file = std::make_shared<fs::path>();
  auto* push_targets_command = commands.Command(
      repo, "push-targets", "Upload image targets signed with `citadel keys sign`",
      "citadel repo push-targets ./tuf-keys/targets.4.json",
      [push_targets_file](CommandContext& context) { return RepoPushTargets(context, *push_targets_file); });
  push_targets_command->add_option("FILE", *push_targets_file, "Signed targets metadata (JSON)")->required();
  Teach(push_targets_command,
        "For a targets threshold above 1: `citadel repo publish` writes the file, co-signers add their\n"
        "signatures with `citadel keys sign`, and this uploads it.",
        "citadel repo push-targets ./tuf-keys/targets.4.json", "`citadel repo status`");

  auto* status_command =
      commands.Command(repo, "status", "Show every role's version and expiry", "citadel repo status", RepoStatus);
  Teach(status_command,
        "Image repository (root and targets offline; snapshot and timestamp online) and director (root\n"
        "offline; per device group targets, snapshot and timestamp online).",
        "citadel repo status",
        "renew offline roles before they expire: `citadel repo publish --keys DIR` (targets),\n"
        "`citadel repo rotate ... --expires-days 365` (root)");
}

}  // namespace citadel::cli
