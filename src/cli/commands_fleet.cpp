// product, device-group, device (including enable-/disable-development),
// ca-certificate.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "cli/command_context.hpp"
#include "cli/table.hpp"
#include "common/file.hpp"
#include "crypto/crypto.hpp"

namespace citadel::cli {
namespace {

using nlohmann::json;

constexpr std::size_t kDeviceIdLength = 64;
// --all and prefix lookups stop after this many pages, so a server that
// keeps answering with a cursor cannot keep the CLI looping forever.
constexpr int kMaxPages = 10'000;

bool IsHex(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); });
}

std::string Lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

void RenderDeviceGroups(CommandContext& context, const json& groups) {
  Table table({"ID", "NAME", "PRODUCT", "CREATED"});
  for (const auto& group : groups) {
    table.AddRow({JsonText(group, "id"), JsonText(group, "name"), JsonText(group, "product_id"),
                  TimeCell(group, "created_at", context.now())});
  }
  table.Render(context.out());
}

// ---- product ----------------------------------------------------------------

struct ProductCreateOptions {
  std::string name;
  std::string description;
};

Result<void> ProductCreate(CommandContext& context, const ProductCreateOptions& options) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/products"));
  CITADEL_TRY(auto answer, api->Post(path, {{"name", options.name}, {"description", options.description}}));
  if (context.json()) {
    context.PrintJson(answer);
    return {};
  }
  const json product = answer.value("product", json::object());
  context.out() << "Created product " << SanitizeForTerminal(JsonText(product, "name")) << " ("
                << JsonText(product, "id") << ").\n";
  auto groups = JsonArray(answer, "device_groups");
  if (!groups.empty()) {
    context.out() << "\nDevice groups:\n";
    RenderDeviceGroups(context, groups);
    context.out() << "\nClaim a device into one with `citadel device claim DEVICE_ID --device-group ID`.\n";
  }
  return {};
}

Result<void> ProductList(CommandContext& context) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/products"));
  CITADEL_TRY(auto answer, api->Get(path));
  if (context.json()) {
    context.PrintJson(answer);
    return {};
  }
  auto products = JsonArray(answer, "products");
  if (products.empty()) {
    context.out() << "No products. Create one with `citadel product create NAME`.\n";
    return {};
  }
  Table table({"ID", "NAME", "DESCRIPTION", "CREATED"});
  for (const auto& product : products) {
    table.AddRow({JsonText(product, "id"), JsonText(product, "name"), JsonText(product, "description"),
                  TimeCell(product, "created_at", context.now())});
  }
  table.Render(context.out());
  return {};
}

// ---- device-group -----------------------------------------------------------

Result<void> DeviceGroupList(CommandContext& context, const std::string& product) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/device-groups" + QueryString({{"product", product}})));
  CITADEL_TRY(auto answer, api->Get(path));
  if (context.json()) {
    context.PrintJson(answer);
    return {};
  }
  auto groups = JsonArray(answer, "device_groups");
  if (groups.empty()) {
    context.out() << "No device groups. `citadel product create NAME` creates a product with its default groups.\n";
    return {};
  }
  RenderDeviceGroups(context, groups);
  return {};
}

struct DeviceGroupCreateOptions {
  std::string product;
  std::string name;
};

Result<void> DeviceGroupCreate(CommandContext& context, const DeviceGroupCreateOptions& options) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/device-groups"));
  FailureContext failure_context;
  failure_context.not_found_hint = "list products with `citadel product list`";
  CITADEL_TRY(auto answer, api->Post(path, {{"product_id", options.product}, {"name", options.name}}, failure_context));
  if (context.json()) {
    context.PrintJson(answer);
    return {};
  }
  context.out() << "Created device group " << SanitizeForTerminal(JsonText(answer, "name")) << " ("
                << JsonText(answer, "id") << ") in product " << SanitizeForTerminal(options.product) << ".\n";
  return {};
}

// ---- device -----------------------------------------------------------------

struct DeviceClaimOptions {
  std::string device;
  std::string device_group;
};

Result<void> DeviceClaim(CommandContext& context, const DeviceClaimOptions& options) {
  std::string device = Lower(options.device);
  if (device.size() != kDeviceIdLength || !IsHex(device)) {
    return Fail(ExitCode::kUsage, "a device ID is 64 hex characters (got \"" + options.device + "\")",
                "the device prints its ID (the SHA-256 of its identity key); pass it in full");
  }
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/devices/" + device + "/claim"));
  json body = json::object();
  if (!options.device_group.empty()) body["device_group_id"] = options.device_group;
  FailureContext failure_context;
  failure_context.not_found_hint = "list device groups with `citadel device-group list`";
  CITADEL_TRY(auto answer, api->Post(path, body, failure_context));
  if (context.json()) {
    context.PrintJson(answer);
    return {};
  }
  context.out() << "Claimed device " << device;
  if (auto group = JsonText(answer, "device_group_id"); !group.empty()) {
    context.out() << " into device group " << SanitizeForTerminal(group);
  }
  context.out() << ".\nIt receives its device certificate at its next attestation.\n";
  return {};
}

struct DeviceListOptions {
  std::string device_group;
  std::string os_version;
  std::string health;
  std::string after;
  int limit = 0;
  bool all = false;
};

Result<void> DeviceList(CommandContext& context, const DeviceListOptions& options) {
  CITADEL_TRY(auto* api, context.Api());
  json devices = json::array();
  std::string cursor = options.after;
  std::set<std::string> seen_cursors;
  json next = nullptr;
  for (int page = 0; page < kMaxPages; ++page) {
    CITADEL_TRY(
        auto path,
        context.TenantPath("/devices" + QueryString({{"device_group", options.device_group},
                                                     {"os_version", options.os_version},
                                                     {"health", options.health},
                                                     {"limit", options.limit > 0 ? std::to_string(options.limit) : ""},
                                                     {"after", cursor}})));
    CITADEL_TRY(auto answer, api->Get(path));
    for (auto& device : JsonArray(answer, "devices")) devices.push_back(std::move(device));
    next = answer.is_object() ? answer.value("next", json()) : json();
    if (!options.all || !next.is_string() || next.get<std::string>().empty()) break;
    cursor = next.get<std::string>();
    if (!seen_cursors.insert(cursor).second) {
      return Fail(ExitCode::kError, "the server returned the cursor \"" + cursor + "\" twice",
                  "the device list is not advancing; report this with the server's version");
    }
  }
  if (options.all && next.is_string() && !next.get<std::string>().empty()) {
    return Fail(ExitCode::kError, "stopped after " + std::to_string(kMaxPages) + " pages",
                "narrow the list with --device-group or --os-version");
  }
  if (next.is_string() && next.get<std::string>().empty()) next = nullptr;

  if (context.json()) {
    context.PrintJson({{"devices", devices}, {"next", next}});
    return {};
  }
  if (devices.empty()) {
    context.out() << "No devices. A device appears when it attests; claim it with "
                     "`citadel device claim DEVICE_ID`.\n";
    return {};
  }
  // People read group names; fall back to ids if the names cannot be had.
  std::map<std::string, std::string> group_names;
  if (auto groups_path = context.TenantPath("/device-groups"); groups_path) {
    if (auto groups = api->Get(*groups_path); groups) {
      for (const auto& group : JsonArray(*groups, "device_groups")) {
        group_names[JsonText(group, "id")] = JsonText(group, "name");
      }
    }
  }
  auto group_cell = [&](const json& device) {
    auto id = JsonText(device, "device_group_id");
    auto it = group_names.find(id);
    return it == group_names.end() ? id : it->second;
  };
  Table table({"DEVICE", "GROUP", "OS", "RUNTIME", "VERDICT", "LAST SEEN"});
  for (const auto& device : devices) {
    std::string verdict =
        device.is_object() && device.value("revoked", false) ? "revoked" : JsonText(device, "last_verdict");
    table.AddRow({ShortenId(JsonText(device, "id")), group_cell(device), JsonText(device, "os_version"),
                  JsonText(device, "runtime_version"), verdict, TimeCell(device, "last_seen", context.now())});
  }
  table.Render(context.out());
  if (next.is_string()) {
    context.err() << "More devices: run again with --after " << SanitizeForTerminal(next.get<std::string>())
                  << ", or with --all.\n";
  }
  return {};
}

// A full device ID, or the one device in the tenant whose ID starts with
// the given prefix (list views show 12 characters).
Result<std::string> ResolveDeviceId(CommandContext& context, ApiClient& api, const std::string& given) {
  std::string id = Lower(given);
  if (id.empty() || !IsHex(id) || id.size() > kDeviceIdLength) {
    return Fail(ExitCode::kUsage, "a device ID is hex (64 characters, or a unique prefix); got \"" + given + "\"");
  }
  if (id.size() == kDeviceIdLength) return id;
  std::vector<std::string> matches;
  std::string cursor;
  for (int page = 0; page < kMaxPages; ++page) {
    CITADEL_TRY(auto path, context.TenantPath("/devices" + QueryString({{"after", cursor}})));
    CITADEL_TRY(auto answer, api.Get(path));
    for (const auto& device : JsonArray(answer, "devices")) {
      auto device_id = JsonText(device, "id");
      if (device_id.starts_with(id)) matches.push_back(device_id);
    }
    auto next = JsonText(answer, "next");
    if (next.empty() || next == cursor || matches.size() > 1) break;
    cursor = next;
  }
  if (matches.empty()) {
    return Fail(ExitCode::kNotFound, "no device of this tenant has an ID starting with " + id,
                "list devices with `citadel device list`");
  }
  if (matches.size() > 1) {
    return Fail(ExitCode::kUsage, "the prefix " + id + " matches several devices", "give more characters");
  }
  return matches.front();
}

Result<void> DeviceShow(CommandContext& context, const std::string& given) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto id, ResolveDeviceId(context, *api, given));
  CITADEL_TRY(auto path, context.TenantPath("/devices/" + id));
  FailureContext failure_context;
  failure_context.not_found_hint =
      "list devices with `citadel device list`; an unclaimed device must be "
      "claimed first (`citadel device claim DEVICE_ID`)";
  CITADEL_TRY(auto device, api->Get(path, failure_context));
  if (context.json()) {
    context.PrintJson(device);
    return {};
  }
  auto now = context.now();
  auto text_or = [&](std::string_view key, std::string_view fallback) {
    auto text = JsonText(device, key);
    return text.empty() ? std::string(fallback) : text;
  };
  RenderKeyValues(context.out(), {{"ID", JsonText(device, "id")},
                                  {"Tenant", JsonText(device, "tenant_id")},
                                  {"Product", JsonText(device, "product_id")},
                                  {"Device group", JsonText(device, "device_group_id")},
                                  {"Root of trust", JsonText(device, "rot")},
                                  {"Revoked", text_or("revoked", "no")},
                                  {"Last verdict", text_or("last_verdict", "-")},
                                  {"OS version", text_or("os_version", "-")},
                                  {"Runtime version", text_or("runtime_version", "-")},
                                  {"Uptime (s)", text_or("uptime_seconds", "-")},
                                  {"Free memory (KiB)", text_or("free_memory_kb", "-")},
                                  {"First seen", TimeDetail(device, "first_seen", now)},
                                  {"Last seen", TimeDetail(device, "last_seen", now)},
                                  {"Claimed", TimeDetail(device, "claimed_at", now)},
                                  {"Last attested", TimeDetail(device, "last_attested_at", now)},
                                  {"Certificate serial", text_or("certificate_serial", "-")},
                                  {"Certificate expires", TimeDetail(device, "certificate_expires_at", now)}});
  return {};
}

Result<void> DeviceRevokeCertificate(CommandContext& context, const std::string& given) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto id, ResolveDeviceId(context, *api, given));
  CITADEL_TRY(auto path, context.TenantPath("/devices/" + id + "/certificate/revoke"));
  FailureContext failure_context;
  failure_context.not_found_hint = "list devices with `citadel device list`";
  failure_context.forbidden_hint = "revoking certificates needs an admin token of this tenant";
  CITADEL_TRY(auto answer, api->Post(path, json::object(), failure_context));
  if (context.json()) {
    context.PrintJson(answer);
    return {};
  }
  context.out() << "Revoked the certificate of device " << id;
  if (auto serial = JsonText(answer, "revoked"); !serial.empty()) {
    context.out() << " (serial " << SanitizeForTerminal(serial) << ")";
  }
  context.out() << ".\nThe device must attest again to get a new one.\n";
  return {};
}

// ---- device enable-development / disable-development -------------------------

constexpr std::size_t kMaxKeyFileBytes = 64 << 10;

// A developer's public key from a PEM public key, or derived from a PEM
// private key (which never leaves this machine).
Result<crypto::PublicKey> LoadDeveloperKey(const std::string& path) {
  auto pem = ReadFile(path, kMaxKeyFileBytes);
  if (!pem) return std::unexpected(FailureFromError(pem.error(), {}));
  std::optional<crypto::PublicKey> key;
  if (pem->find("PRIVATE KEY") != std::string::npos) {
    auto private_key = crypto::PrivateKey::FromPem(crypto::SecretBytes(std::move(*pem)));
    if (private_key) key = private_key->Public();
  } else if (auto public_key = crypto::PublicKey::FromPem(*pem); public_key) {
    key = *public_key;
  }
  if (!key || !key->IsP256()) {
    return Fail(ExitCode::kUsage, path + " is not an EC P-256 key in PEM form",
                "create one with `citadel publisher-key create --out DIR` and pass DIR/publisher.pem");
  }
  return *key;
}

struct EnableDevelopmentOptions {
  std::string device;
  std::vector<std::string> developer_keys;
  std::string output;
};

Result<void> DeviceEnableDevelopment(CommandContext& context, const EnableDevelopmentOptions& options) {
  json keys = json::array();
  for (const auto& path : options.developer_keys) {
    CITADEL_TRY(auto key, LoadDeveloperKey(path));
    keys.push_back(key.Pem());
  }
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto id, ResolveDeviceId(context, *api, options.device));
  CITADEL_TRY(auto path, context.TenantPath("/devices/" + id + "/app-development"));
  FailureContext failure_context;
  failure_context.not_found_hint = "list the tenant's devices with `citadel device list`; claim it first";
  failure_context.forbidden_hint = "enabling development needs an admin token of this tenant";
  json body = json::object();
  if (!keys.empty()) body["developer_keys"] = keys;
  CITADEL_TRY(auto envelope, api->Post(path, body, failure_context));
  const json capability = envelope.is_object() ? envelope.value("capability", json::object()) : json::object();
  if (!envelope.is_object() || !capability.is_object() || JsonText(capability, "DeviceId") != id) {
    return Fail(ExitCode::kError, "the service answered with something that is not this device's capability",
                "check that --server points at citadel-server");
  }
  if (!options.output.empty()) {
    if (auto written = WriteFileAtomic(options.output, envelope.dump() + "\n", 0644); !written) {
      return Fail(ExitCode::kError, written.error().message());
    }
  }
  if (context.json()) {
    json result = {{"device_id", id}, {"capability", envelope}};
    if (!options.output.empty()) result["file"] = options.output;
    context.PrintJson(result);
    return {};
  }
  std::string developer_keys = std::to_string(JsonArray(capability, "DeveloperKeys").size());
  context.out() << "Enabled app development on device " << id << ":\n";
  std::vector<std::pair<std::string, std::string>> rows = {
      {"  Capability ID", JsonText(capability, "CapabilityId")},
      {"  Issued", JsonText(capability, "IssuedAt")},
      {"  Developer keys", developer_keys},
  };
  if (!options.output.empty()) rows.emplace_back("  Written to", options.output);
  RenderKeyValues(context.out(), rows);
  context.out() << "\nThe device receives it at its next check-in";
  if (!options.output.empty()) context.out() << ", or now over its development interface with " << options.output;
  context.out() << ".\n";
  return {};
}

Result<void> DeviceDisableDevelopment(CommandContext& context, const std::string& given) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto id, ResolveDeviceId(context, *api, given));
  CITADEL_TRY(auto path, context.TenantPath("/devices/" + id + "/app-development"));
  FailureContext failure_context;
  failure_context.not_found_hint = "the device has no development capability, or is not this tenant's";
  failure_context.forbidden_hint = "disabling development needs an admin token of this tenant";
  CITADEL_TRY(auto answer, api->Delete(path, failure_context));
  (void)answer;
  if (context.json()) {
    context.PrintJson({{"device_id", id}, {"app_development", nullptr}});
    return {};
  }
  context.out() << "Disabled app development on device " << id
                << ".\nThe device drops its capability at its next check-in.\n";
  return {};
}

// ---- ca-certificate ---------------------------------------------------------

Result<void> CaCertificateDownload(CommandContext& context, const std::string& output) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/ca-certificates"));
  CITADEL_TRY(auto pem, api->GetText(path));
  auto chain = crypto::ParsePemChain(pem);
  if (!chain || chain->empty()) {
    return Fail(ExitCode::kError, "the server's CA chain is not a PEM certificate bundle",
                "check that --server points at citadel-server");
  }
  if (!output.empty()) {
    if (auto written = WriteFileAtomic(output, pem, 0644); !written) {
      return Fail(ExitCode::kError, written.error().message());
    }
  }
  if (context.json()) {
    json certificates = json::array();
    for (const auto& certificate : *chain) {
      certificates.push_back({{"subject", certificate.SubjectOneLine()},
                              {"issuer", certificate.IssuerOneLine()},
                              {"not_after", FormatRfc3339(certificate.NotAfter())},
                              {"fingerprint_sha256", certificate.FingerprintSha256()}});
    }
    json result = {{"certificates", certificates}, {"pem", pem}};
    if (!output.empty()) result["file"] = output;
    context.PrintJson(result);
    return {};
  }
  if (output.empty()) {
    context.out() << pem;
    if (!pem.ends_with('\n')) context.out() << '\n';
    return {};
  }
  context.out() << "Wrote " << chain->size() << " certificate" << (chain->size() == 1 ? "" : "s") << " to " << output
                << ":\n";
  Table table({"SUBJECT", "EXPIRES", "SHA-256 FINGERPRINT"});
  for (const auto& certificate : *chain) {
    table.AddRow({certificate.SubjectOneLine(), FormatRfc3339(certificate.NotAfter()).substr(0, 10),
                  certificate.FingerprintSha256()});
  }
  table.Render(context.out());
  context.out() << "Register this chain at your broker or cloud as the CA for device client certificates.\n";
  return {};
}

}  // namespace

void RegisterFleetCommands(CommandSet& commands) {
  CLI::App* root = &commands.root();

  auto* product = commands.Group(root, "product", "Create and list products (a kind of device you make)");
  auto product_options = std::make_shared<ProductCreateOptions>();
  auto* product_create =
      commands.Command(product, "create", "Create a product with its default device groups",
                       "citadel product create thermostat --description \"Smart thermostat, rev B\"",
                       [product_options](CommandContext& context) { return ProductCreate(context, *product_options); });
  product_create->add_option("NAME", product_options->name, "Product name")->type_name("")->required();
  product_create->add_option("--description", product_options->description, "What the product is")->type_name("TEXT");
  commands.Command(product, "list", "List the tenant's products", "citadel product list", ProductList);

  auto* group = commands.Group(root, "device-group", "Create and list device groups (devices updated together)");
  auto group_product = std::make_shared<std::string>();
  commands
      .Command(group, "list", "List device groups, optionally of one product",
               "citadel device-group list --product 5d0c7e1b",
               [group_product](CommandContext& context) { return DeviceGroupList(context, *group_product); })
      ->add_option("--product", *group_product, "Only this product's groups")
      ->type_name("ID");
  auto group_options = std::make_shared<DeviceGroupCreateOptions>();
  auto* group_create =
      commands.Command(group, "create", "Create a device group in a product",
                       "citadel device-group create --product 5d0c7e1b \"Beta testers\"",
                       [group_options](CommandContext& context) { return DeviceGroupCreate(context, *group_options); });
  group_create->add_option("--product", group_options->product, "Product ID")->type_name("ID")->required();
  group_create->add_option("NAME", group_options->name, "Device group name")->type_name("")->required();

  auto* device = commands.Group(root, "device", "Claim, list and inspect devices");
  auto claim_options = std::make_shared<DeviceClaimOptions>();
  auto* claim =
      commands.Command(device, "claim", "Claim an attested device into this tenant (irreversible for other tenants)",
                       "citadel device claim 3f2a9c...e41b --device-group 8a1f03d2",
                       [claim_options](CommandContext& context) { return DeviceClaim(context, *claim_options); });
  claim->add_option("DEVICE_ID", claim_options->device, "Full device ID (64 hex characters)")
      ->type_name("")
      ->required();
  claim
      ->add_option("--device-group", claim_options->device_group,
                   "Device group to put it in (default: the product's Development group)")
      ->type_name("ID");
  auto list_options = std::make_shared<DeviceListOptions>();
  auto* list =
      commands.Command(device, "list", "List the tenant's devices (IDs shortened; --json for full records)",
                       "citadel device list --device-group 8a1f03d2 --os-version 1.0.0 --health unhealthy --all",
                       [list_options](CommandContext& context) { return DeviceList(context, *list_options); });
  list->add_option("--device-group", list_options->device_group, "Only devices in this group")->type_name("ID");
  list->add_option("--os-version", list_options->os_version, "Only devices reporting this OS version")
      ->type_name("VERSION");
  list->add_option("--health", list_options->health,
                   "Only healthy devices (attested, certificate valid and not revoked) or unhealthy ones")
      ->check(CLI::IsMember({"healthy", "unhealthy"}));
  list->add_option("--limit", list_options->limit, "Devices per page (1-1000; default: the server's)")
      ->type_name("N")
      ->check(CLI::Range(1, 1000).description(""));
  list->add_option("--after", list_options->after, "Continue after this cursor (printed when there is more)")
      ->type_name("CURSOR");
  list->add_flag("--all", list_options->all, "Follow the cursor and list every device");
  auto show_id = std::make_shared<std::string>();
  commands
      .Command(device, "show", "Show everything known about a device", "citadel device show 3f2a9c0d17b4",
               [show_id](CommandContext& context) { return DeviceShow(context, *show_id); })
      ->add_option("DEVICE_ID", *show_id, "Device ID, or a unique prefix of it")
      ->type_name("")
      ->required();
  auto revoke_id = std::make_shared<std::string>();
  commands
      .Command(device, "revoke-certificate", "Revoke a device's current certificate (it must re-attest)",
               "citadel device revoke-certificate 3f2a9c0d17b4",
               [revoke_id](CommandContext& context) { return DeviceRevokeCertificate(context, *revoke_id); })
      ->add_option("DEVICE_ID", *revoke_id, "Device ID, or a unique prefix of it")
      ->type_name("")
      ->required();

  auto development = std::make_shared<EnableDevelopmentOptions>();
  auto* enable = commands.Command(
      device, "enable-development", "Issue a signed AppDevelopment capability: the device then accepts sideloads",
      "citadel device enable-development 3f2a9c0d17b4 --developer-key ./keys/publisher.pem -o dev-cap.json",
      [development](CommandContext& context) { return DeviceEnableDevelopment(context, *development); });
  enable->add_option("DEVICE_ID", development->device, "Device ID, or a unique prefix of it")
      ->type_name("")
      ->required();
  enable
      ->add_option("--developer-key", development->developer_keys,
                   "Also trust sideloads signed by this key (PEM; public, or private: only its public part is "
                   "sent); repeatable")
      ->type_name("PUB.pem");
  enable
      ->add_option("-o,--output", development->output,
                   "Write the signed capability to FILE, for the device's development interface")
      ->type_name("FILE");
  auto disable_id = std::make_shared<std::string>();
  commands
      .Command(device, "disable-development", "Revoke the device's AppDevelopment capability",
               "citadel device disable-development 3f2a9c0d17b4",
               [disable_id](CommandContext& context) { return DeviceDisableDevelopment(context, *disable_id); })
      ->add_option("DEVICE_ID", *disable_id, "Device ID, or a unique prefix of it")
      ->type_name("")
      ->required();

  auto* ca = commands.Group(root, "ca-certificate", "The tenant's device CA chain, for brokers and clouds");
  auto output = std::make_shared<std::string>();
  commands
      .Command(ca, "download", "Download the CA chain (issuing CA, then root) as PEM",
               "citadel ca-certificate download -o tenant-ca.pem",
               [output](CommandContext& context) { return CaCertificateDownload(context, *output); })
      ->add_option("-o,--output", *output, "Write to FILE instead of standard output")
      ->type_name("FILE");
}

}  // namespace citadel::cli
