// image pack / show and publisher-key create / show: local, no server.
// publisher-key register / list / revoke: the tenant's publisher keys at the
// service, which devices learn at check-in (docs/PROTOCOL.md, "App trust").
// The format and its checks live in src/image; this file only reads and
// writes files, calls the API and renders results.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <set>
#include <system_error>

#include "cli/command_context.hpp"
#include "cli/table.hpp"
#include "common/file.hpp"
#include "image/image.hpp"
#include "symbols/dwarf_symbols.hpp"
#include "symbols/symbol_file.hpp"

namespace citadel::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr std::size_t kMaxKeyFileBytes = 64 << 10;
constexpr const char* kPrivateKeyFile = "publisher.key";
constexpr const char* kPublicKeyFile = "publisher.pem";

// PackImage has already refused trees beyond the image limits; this bounds
// the symbol walk on its own anyway.
constexpr std::size_t kMaxSymbolWalkFiles = 100'000;

struct PackOptions {
  fs::path directory;
  fs::path key_file;
  fs::path output;
  fs::path symbols;  // empty: no symbol file
};

struct ShowOptions {
  fs::path image;
  std::vector<fs::path> publisher_keys;
};

Result<crypto::PrivateKey> LoadPrivateKey(const fs::path& path) {
  auto pem = ReadFile(path, kMaxKeyFileBytes);
  if (!pem) {
    auto failure = FailureFromError(pem.error(), {});
    failure.hint = "create a publisher key with `citadel publisher-key create --out DIR`";
    return std::unexpected(failure);
  }
  auto key = crypto::PrivateKey::FromPem(crypto::SecretBytes(std::move(*pem)));
  if (!key) {
    return Fail(ExitCode::kUsage, path.string() + " is not a PEM private key: " + key.error().message(),
                "pass the publisher.key written by `citadel publisher-key create`");
  }
  return std::move(*key);
}

// A public key from a PEM public key, or derived from a PEM private key.
Result<crypto::PublicKey> LoadPublicKey(const fs::path& path) {
  auto pem = ReadFile(path, kMaxKeyFileBytes);
  if (!pem) return std::unexpected(FailureFromError(pem.error(), {}));
  if (pem->find("PRIVATE KEY") != std::string::npos) {
    CITADEL_TRY(auto key, LoadPrivateKey(path));
    return key.Public();
  }
  auto key = crypto::PublicKey::FromPem(*pem);
  if (!key) {
    return Fail(ExitCode::kUsage, path.string() + " is not a PEM public key: " + key.error().message(),
                "pass the publisher.pem written by `citadel publisher-key create`");
  }
  if (!key->IsP256()) return Fail(ExitCode::kUsage, path.string() + ": publisher keys are ECDSA P-256 keys");
  return *key;
}

json DescribeImage(const image::ImageInfo& info) {
  return {{"image", info.label},
          {"name", JsonText(info.manifest, "Name")},
          {"component_id", JsonText(info.manifest, "ComponentId")},
          {"version", JsonText(info.manifest, "Version")},
          {"digest", info.digest},
          {"key_id", info.key_id},
          {"file_count", info.files.size()},
          {"total_size", info.total_size},
          {"payload_size", info.payload_size},
          {"manifest", info.manifest}};
}

std::vector<std::pair<std::string, std::string>> ImageRows(const image::ImageInfo& info) {
  std::vector<std::pair<std::string, std::string>> rows = {
      {"  Name", JsonText(info.manifest, "Name")},
      {"  Component ID", JsonText(info.manifest, "ComponentId")},
  };
  if (auto version = JsonText(info.manifest, "Version"); !version.empty()) rows.emplace_back("  Version", version);
  rows.emplace_back("  Digest", "sha256:" + info.digest);
  rows.emplace_back("  Signer key ID", info.key_id);
  rows.emplace_back("  Files", std::to_string(info.files.size()) + " (" + std::to_string(info.total_size) + " bytes, " +
                                   std::to_string(info.payload_size) + " compressed)");
  return rows;
}

// The symbols of every ELF file under `directory` that has a build id and
// names at least one function (DWARF or symbol table), in path order; an ELF
// present twice (same build id) once.
Result<std::vector<symbols::ModuleSymbols>> ExtractTreeSymbols(const fs::path& directory) {
  std::vector<fs::path> files;
  std::error_code error;
  for (fs::recursive_directory_iterator it(directory, fs::directory_options::none, error), end; !error && it != end;
       it.increment(error)) {
    if (it->is_regular_file(error) && !it->is_symlink(error)) files.push_back(it->path());
    if (files.size() > kMaxSymbolWalkFiles) {
      return Fail(ExitCode::kUsage, directory.string() + " holds more than 100000 files");
    }
  }
  if (error) return Fail(ExitCode::kError, "reading " + directory.string() + ": " + error.message());
  std::sort(files.begin(), files.end());
  std::vector<symbols::ModuleSymbols> modules;
  std::set<std::string> build_ids;
  for (const auto& file : files) {
    auto module = symbols::ExtractSymbols(file);
    if (!module) {
      return Fail(ExitCode::kError, "reading symbols: " + module.error().message(),
                  "pack without --symbols, or rebuild the file");
    }
    if (!*module || (*module)->functions.empty() || !build_ids.insert((*module)->build_id).second) continue;
    modules.push_back(std::move(**module));
  }
  if (modules.size() > symbols::kMaxModulesPerFile) {
    return Fail(ExitCode::kUsage, "the image holds " + std::to_string(modules.size()) +
                                      " ELF files with symbols; a symbol file takes " +
                                      std::to_string(symbols::kMaxModulesPerFile));
  }
  return modules;
}

json DescribeSymbols(const fs::path& file, const std::vector<symbols::ModuleSymbols>& modules) {
  json described = json::array();
  for (const auto& module : modules) {
    described.push_back({{"name", module.name},
                         {"build_id", module.build_id},
                         {"functions", module.functions.size()},
                         {"lines", module.lines.size()}});
  }
  return {{"file", file.string()}, {"modules", described}};
}

Result<void> Pack(CommandContext& context, const PackOptions& options) {
  CITADEL_TRY(auto key, LoadPrivateKey(options.key_file));
  auto packed = image::PackImage(options.directory, key);
  if (!packed) {
    auto failure = FailureFromError(packed.error(), {});
    failure.exit_code = ExitCode::kError;
    return std::unexpected(failure);
  }
  // Symbols before the image is written: a failure leaves no image without
  // its symbols behind.
  std::optional<std::vector<symbols::ModuleSymbols>> modules;
  if (!options.symbols.empty()) {
    CITADEL_TRY(modules, ExtractTreeSymbols(options.directory));
  }
  auto written = WriteFileAtomic(options.output, AsText(*packed), 0644);
  if (written && modules) written = WriteFileAtomic(options.symbols, symbols::WriteSymbolFile(*modules), 0644);
  if (!written) return std::unexpected(FailureFromError(written.error(), {}));
  // Re-read what was written: the summary describes the file, not our intent.
  auto info = image::ParseImageFile(options.output);
  if (!info) return Fail(ExitCode::kError, info.error().message());
  if (context.json()) {
    auto description = DescribeImage(*info);
    if (modules) description["symbols"] = DescribeSymbols(options.symbols, *modules);
    context.PrintJson(description);
    return {};
  }
  context.out() << "Packed " << options.output.string() << ":\n";
  auto rows = ImageRows(*info);
  if (modules) {
    std::string names;
    for (const auto& module : *modules) names += (names.empty() ? "" : ", ") + module.name;
    rows.emplace_back("  Symbols", options.symbols.string() + ": " + std::to_string(modules->size()) + " modules" +
                                       (names.empty() ? "" : " (" + SanitizeForTerminal(names) + ")"));
  }
  RenderKeyValues(context.out(), rows);
  if (modules && modules->empty()) {
    context.Warn(
        "no ELF file in " + options.directory.string() +
        " has a build id and symbols; build the app's programs with -g to see crashes as function (file:line)");
  }
  return {};
}

Result<void> Show(CommandContext& context, const ShowOptions& options) {
  auto info = image::ParseImageFile(options.image);
  if (!info) {
    auto failure = FailureFromError(info.error(), {});
    if (info.error().code() != ErrorCode::kNotFound) failure.exit_code = ExitCode::kError;
    return std::unexpected(failure);
  }
  std::vector<crypto::PublicKey> publishers;
  for (const auto& path : options.publisher_keys) {
    CITADEL_TRY(auto key, LoadPublicKey(path));
    publishers.push_back(std::move(key));
  }
  bool checked = !publishers.empty();
  if (checked) {
    auto verified = image::VerifyImage(*info, publishers);
    if (!verified) {
      return Fail(ExitCode::kError, verified.error().message(),
                  "do not install this image; ask its publisher for a correctly signed one");
    }
  }
  std::string signature = checked ? "valid, signed by a trusted publisher key" : "not checked";
  if (context.json()) {
    auto description = DescribeImage(*info);
    description["signature_verified"] = checked;
    context.PrintJson(description);
    return {};
  }
  context.out() << "Image " << options.image.string() << ":\n";
  auto rows = ImageRows(*info);
  rows.emplace_back("  Signature", signature);
  RenderKeyValues(context.out(), rows);
  if (!checked) {
    context.out() << "\nNote: signature not checked against a publisher list; pass --publisher-key FILE.pem to "
                     "verify it.\n";
  }
  return {};
}

Result<void> CreatePublisherKey(CommandContext& context, const fs::path& directory) {
  for (const char* name : {kPrivateKeyFile, kPublicKeyFile}) {
    std::error_code ec;
    if (fs::exists(directory / name, ec) || ec) {
      return Fail(ExitCode::kConflict,
                  (directory / name).string() + " already exists; refusing to replace a publisher key",
                  "images signed with it would stop verifying; choose another --out directory");
    }
  }
  auto made = EnsureDirectory(directory, 0700);
  if (!made) return std::unexpected(FailureFromError(made.error(), {}));
  auto key = crypto::PrivateKey::GenerateP256();
  if (!key) return std::unexpected(FailureFromError(key.error(), {}));
  auto pem = key->ToPem();
  if (!pem) return std::unexpected(FailureFromError(pem.error(), {}));
  auto written = WriteFileAtomic(directory / kPrivateKeyFile, pem->reveal(), 0600);
  if (written) written = WriteFileAtomic(directory / kPublicKeyFile, key->Public().Pem(), 0644);
  if (!written) return std::unexpected(FailureFromError(written.error(), {}));
  auto key_id = image::PublisherKeyId(key->Public());
  if (context.json()) {
    context.PrintJson({{"key_file", (directory / kPrivateKeyFile).string()},
                       {"public_key_file", (directory / kPublicKeyFile).string()},
                       {"key_id", key_id}});
    return {};
  }
  context.out() << "Created a publisher key:\n";
  RenderKeyValues(context.out(),
                  {{"  Private key", (directory / kPrivateKeyFile).string() + " (keep private; mode 0600)"},
                   {"  Public key", (directory / kPublicKeyFile).string()},
                   {"  Key ID", key_id}});
  context.out() << "\nSign images with `citadel image pack DIR --key " << (directory / kPrivateKeyFile).string()
                << " -o app.img`;\ndevices accept them once they trust " << (directory / kPublicKeyFile).string()
                << ".\n";
  return {};
}

Result<void> ShowPublisherKey(CommandContext& context, const fs::path& path) {
  CITADEL_TRY(auto key, LoadPublicKey(path));
  auto key_id = image::PublisherKeyId(key);
  if (context.json()) {
    context.PrintJson({{"file", path.string()}, {"key_id", key_id}, {"algorithm", "ECDSA P-256"}});
    return {};
  }
  RenderKeyValues(context.out(), {{"Key ID", key_id}, {"Algorithm", "ECDSA P-256"}});
  return {};
}

// ---- publisher keys at the service -------------------------------------------

struct RegisterKeyOptions {
  fs::path key_file;
  std::string name;
};

Result<void> RegisterPublisherKey(CommandContext& context, const RegisterKeyOptions& options) {
  // Only the public half leaves this machine, whichever file was given.
  CITADEL_TRY(auto key, LoadPublicKey(options.key_file));
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/publisher-keys"));
  FailureContext failure_context;
  failure_context.forbidden_hint = "registering publisher keys needs an admin token of this tenant";
  CITADEL_TRY(auto answer, api->Post(path, {{"name", options.name}, {"public_key_pem", key.Pem()}}, failure_context));
  if (context.json()) {
    context.PrintJson(answer);
    return {};
  }
  context.out() << "Registered publisher key " << SanitizeForTerminal(JsonText(answer, "name")) << ":\n";
  RenderKeyValues(context.out(), {{"  Key ID", JsonText(answer, "key_id")}});
  context.out() << "\nThe tenant's devices accept images signed with it from their next check-in.\n";
  return {};
}

Result<void> ListPublisherKeys(CommandContext& context) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/publisher-keys"));
  CITADEL_TRY(auto answer, api->Get(path));
  if (context.json()) {
    context.PrintJson(answer);
    return {};
  }
  auto keys = JsonArray(answer, "publisher_keys");
  if (keys.empty()) {
    context.out() << "No publisher keys. Register one with `citadel publisher-key register KEY.pem --name NAME`.\n";
    return {};
  }
  Table table({"KEY ID", "NAME", "CREATED", "STATUS"});
  for (const auto& key : keys) {
    bool revoked = key.is_object() && key.value("revoked", false);
    table.AddRow({JsonText(key, "key_id"), JsonText(key, "name"), TimeCell(key, "created_at", context.now()),
                  revoked ? "revoked " + TimeCell(key, "revoked_at", context.now()) : "active"});
  }
  table.Render(context.out());
  return {};
}

Result<void> RevokePublisherKey(CommandContext& context, const std::string& given) {
  std::string key_id = given;
  std::transform(key_id.begin(), key_id.end(), key_id.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (key_id.size() != 64 || key_id.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return Fail(ExitCode::kUsage, "a publisher key ID is 64 hex characters (got \"" + given + "\")",
                "list the IDs with `citadel publisher-key list`");
  }
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/publisher-keys/" + key_id));
  FailureContext failure_context;
  failure_context.not_found_hint = "list the tenant's keys with `citadel publisher-key list`";
  failure_context.forbidden_hint = "revoking publisher keys needs an admin token of this tenant";
  CITADEL_TRY(auto answer, api->Delete(path, failure_context));
  (void)answer;
  if (context.json()) {
    context.PrintJson({{"revoked", key_id}});
    return {};
  }
  context.out() << "Revoked publisher key " << key_id
                << ".\nDevices stop accepting images signed with it from their next check-in.\n";
  return {};
}

}  // namespace

void RegisterImageCommands(CommandSet& commands) {
  auto* group = commands.Group(&commands.root(), "image", "Signed app image packages (local, no server involved)");
  auto pack = std::make_shared<PackOptions>();
  auto* pack_command = commands.Command(group, "pack", "Pack a directory with app_manifest.json into a signed image",
                                        "citadel image pack ./blink --key ./keys/publisher.key -o blink.img "
                                        "--symbols blink.sym",
                                        [pack](CommandContext& context) { return Pack(context, *pack); });
  pack_command->add_option("DIR", pack->directory, "App directory (must hold app_manifest.json)")->required();
  pack_command->add_option("--key", pack->key_file, "Publisher private key (PEM)")->type_name("KEY.pem")->required();
  pack_command->add_option("-o,--output", pack->output, "Image file to write")->type_name("FILE")->required();
  pack_command
      ->add_option("--symbols", pack->symbols,
                   "Also write the symbol file of the image's ELF programs and libraries (e.g. blink.sym)")
      ->type_name("FILE");
  pack_command->footer(
      "--symbols reads the DWARF debug information (and symbol tables) of every ELF file in DIR that has a\n"
      "GNU build id and writes their functions and line tables (docs/PROTOCOL.md, \"Symbol files\"). The image\n"
      "itself is packed as it is: files are not stripped, so strip them before packing to ship smaller images\n"
      "(the build id, and so the symbols, stay valid: `strip` keeps the note). `citadel image upload blink.img`\n"
      "uploads blink.sym beside it; crashes then show function (file:line) in `citadel issue show`.\n\n" +
      pack_command->get_footer());

  auto show = std::make_shared<ShowOptions>();
  auto* show_command =
      commands.Command(group, "show", "Show an image's manifest, digest and signer; verify with --publisher-key",
                       "citadel image show blink.img --publisher-key ./keys/publisher.pem",
                       [show](CommandContext& context) { return Show(context, *show); });
  show_command->add_option("IMAGE", show->image, "Image file")->required();
  show_command->add_option("--publisher-key", show->publisher_keys, "Trusted publisher public key (PEM); repeatable")
      ->type_name("FILE.pem");

  auto* keys = commands.Group(&commands.root(), "publisher-key", "Publisher keys that sign app images");
  auto out_dir = std::make_shared<fs::path>();
  commands
      .Command(keys, "create", "Create a publisher key pair (publisher.key 0600, publisher.pem)",
               "citadel publisher-key create --out ./keys",
               [out_dir](CommandContext& context) { return CreatePublisherKey(context, *out_dir); })
      ->add_option("--out", *out_dir, "Directory for publisher.key and publisher.pem")
      ->type_name("DIR")
      ->required();
  auto key_file = std::make_shared<fs::path>();
  commands
      .Command(keys, "show", "Show a publisher key's ID", "citadel publisher-key show ./keys/publisher.pem",
               [key_file](CommandContext& context) { return ShowPublisherKey(context, *key_file); })
      ->add_option("FILE", *key_file, "Publisher public key (PEM)")
      ->required();

  auto register_options = std::make_shared<RegisterKeyOptions>();
  auto* register_command = commands.Command(
      keys, "register", "Register a publisher key with the service; the tenant's devices then trust it",
      "citadel publisher-key register ./keys/publisher.pem --name release",
      [register_options](CommandContext& context) { return RegisterPublisherKey(context, *register_options); });
  register_command
      ->add_option("KEY", register_options->key_file,
                   "Publisher key (PEM; public, or private: only its public part is sent)")
      ->type_name("KEY.pem")
      ->required();
  register_command->add_option("--name", register_options->name, "A name people recognise")
      ->type_name("NAME")
      ->required();
  commands.Command(keys, "list", "List the tenant's publisher keys at the service", "citadel publisher-key list",
                   ListPublisherKeys);
  auto revoke_id = std::make_shared<std::string>();
  commands
      .Command(keys, "revoke", "Revoke a publisher key: devices stop trusting it at their next check-in",
               "citadel publisher-key revoke 9f86d081884c7d65...",
               [revoke_id](CommandContext& context) { return RevokePublisherKey(context, *revoke_id); })
      ->add_option("KEY_ID", *revoke_id, "Key ID (64 hex characters)")
      ->type_name("")
      ->required();
}

}  // namespace citadel::cli
