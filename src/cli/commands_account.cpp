// login, logout, tenant, token.
#include <CLI/CLI.hpp>

#include "cli/command_context.hpp"
#include "cli/table.hpp"

namespace citadel::cli {
namespace {

using nlohmann::json;

constexpr const char* kShownOnceWarning =
    "this token is shown only once (the service keeps only its hash); store it in a password "
    "manager now. Use it with `citadel login --token TOKEN` or CITADEL_TOKEN.";

void PrintTokenBlock(CommandContext& context, const json& token) {
  RenderKeyValues(context.out(), {{"  ID", JsonText(token, "id")},
                                  {"  Name", JsonText(token, "name")},
                                  {"  Role", JsonText(token, "role")},
                                  {"  Token", JsonText(token, "token")}});
}

// ---- login / logout ---------------------------------------------------------

Result<void> Login(CommandContext& context) {
  CITADEL_TRY(auto settings, context.Connection(/*require=*/false));
  if (settings.server.empty() || settings.token.empty() || settings.ca_pem.empty()) {
    return Fail(ExitCode::kUsage, "login needs the server URL, a token and the service CA",
                "run `citadel login --server https://HOST:PORT --token TOKEN --ca DATA/service-ca.pem`");
  }
  CITADEL_TRY(auto api, context.Connect(settings));
  CITADEL_TRY(auto health, api->Health());
  if (JsonText(health, "status") != "ok") {
    return Fail(ExitCode::kError,
                "the server at " + settings.server + " reports status \"" + JsonText(health, "status") + "\"",
                "check the server's log");
  }
  auto answer = api->Get("/v1/tenants");
  if (!answer) {
    auto failure = answer.error();
    if (failure.exit_code == ExitCode::kAuth) {
      failure.message = "the server refused the token: " + failure.message;
      failure.hint =
          "check the token; tokens are shown once when created: ask a tenant admin for a new "
          "one (`citadel token create`)";
    }
    return std::unexpected(failure);
  }
  CITADEL_TRY(auto path, context.ConfigFile());
  if (auto saved = SaveConfig(path, Config{settings.server, settings.token, settings.ca_pem}); !saved) {
    return Fail(ExitCode::kError, "cannot save the login: " + saved.error().message(),
                "set CITADEL_CONFIG to a writable path");
  }

  json tenants = JsonArray(*answer, "tenants");
  std::string role = JsonText(*answer, "role");
  if (context.json()) {
    json result = {{"server", settings.server}, {"tenants", tenants}, {"config", path.string()}};
    if (!role.empty()) result["role"] = role;
    context.PrintJson(result);
    return {};
  }
  context.out() << "Logged in to " << settings.server << "\n";
  std::vector<std::pair<std::string, std::string>> rows;
  if (tenants.size() == 1 && role != "operator") {
    rows.emplace_back("Tenant", JsonText(tenants[0], "name") + " (" + JsonText(tenants[0], "id") + ")");
    if (!role.empty()) rows.emplace_back("Role", role);
  } else {
    rows.emplace_back("Tenants", std::to_string(tenants.size()) + " visible");
    rows.emplace_back("Role", role.empty() ? "operator (sees every tenant)" : role);
  }
  rows.emplace_back("Config", path.string() + " (mode 0600)");
  RenderKeyValues(context.out(), rows);
  if (tenants.size() != 1) {
    context.out() << "Tenant commands need --tenant ID with this token (see `citadel tenant list`).\n";
  }
  return {};
}

Result<void> Logout(CommandContext& context) {
  CITADEL_TRY(auto path, context.ConfigFile());
  auto removed = RemoveConfig(path);
  if (!removed) return Fail(ExitCode::kError, removed.error().message());
  if (context.json()) {
    context.PrintJson({{"logged_out", *removed}, {"config", path.string()}});
    return {};
  }
  if (*removed) {
    context.out() << "Logged out: removed " << path.string() << ".\n"
                  << "The token itself stays valid; if it may have leaked, revoke it with "
                     "`citadel token revoke ID`.\n";
  } else {
    context.out() << "Not logged in (no " << path.string() << ").\n";
  }
  return {};
}

// ---- tenant -----------------------------------------------------------------

Result<void> TenantCreate(CommandContext& context, const std::string& name) {
  CITADEL_TRY(auto* api, context.Api());
  FailureContext failure_context;
  failure_context.forbidden_hint =
      "creating tenants needs the platform operator token (citadel-server writes it to DATA/operator-token)";
  CITADEL_TRY(auto answer, api->Post("/v1/tenants", {{"name", name}}, failure_context));
  if (context.json()) {
    context.PrintJson(answer);
    return {};
  }
  const json tenant = answer.value("tenant", json::object());
  const json token = answer.value("admin_token", json::object());
  context.out() << "Created tenant " << SanitizeForTerminal(JsonText(tenant, "name")) << " (" << JsonText(tenant, "id")
                << ").\n\nAdmin token:\n";
  PrintTokenBlock(context, token);
  context.Warn(kShownOnceWarning);
  return {};
}

Result<void> TenantList(CommandContext& context) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto answer, api->Get("/v1/tenants"));
  if (context.json()) {
    context.PrintJson(answer);
    return {};
  }
  auto tenants = JsonArray(answer, "tenants");
  if (tenants.empty()) {
    context.out() << "No tenants. Create one with `citadel tenant create NAME` (operator token).\n";
    return {};
  }
  Table table({"ID", "NAME", "CREATED"});
  for (const auto& tenant : tenants) {
    table.AddRow({JsonText(tenant, "id"), JsonText(tenant, "name"), TimeCell(tenant, "created_at", context.now())});
  }
  table.Render(context.out());
  return {};
}

Result<void> TenantShow(CommandContext& context, const std::string& id) {
  CITADEL_TRY(auto* api, context.Api());
  std::string tenant = id;
  if (tenant.empty()) {
    CITADEL_TRY(tenant, context.Tenant());
  }
  FailureContext failure_context;
  failure_context.not_found_hint = "list the tenants you can see with `citadel tenant list`";
  CITADEL_TRY(auto answer, api->Get("/v1/tenants/" + PercentEncode(tenant), failure_context));
  if (context.json()) {
    context.PrintJson(answer);
    return {};
  }
  RenderKeyValues(context.out(), {{"ID", JsonText(answer, "id")},
                                  {"Name", JsonText(answer, "name")},
                                  {"Created", TimeDetail(answer, "created_at", context.now())}});
  return {};
}

// ---- token ------------------------------------------------------------------

struct TokenCreateOptions {
  std::string name;
  std::string role;
};

Result<void> TokenCreate(CommandContext& context, const TokenCreateOptions& options) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/tokens"));
  FailureContext failure_context;
  failure_context.forbidden_hint = "creating tokens needs an admin token of this tenant";
  CITADEL_TRY(auto answer, api->Post(path, {{"name", options.name}, {"role", options.role}}, failure_context));
  if (context.json()) {
    context.PrintJson(answer);
    return {};
  }
  context.out() << "Created token " << SanitizeForTerminal(JsonText(answer, "name")) << ":\n";
  PrintTokenBlock(context, answer);
  context.Warn(kShownOnceWarning);
  return {};
}

Result<void> TokenList(CommandContext& context) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/tokens"));
  FailureContext failure_context;
  failure_context.forbidden_hint = "listing tokens needs an admin token of this tenant";
  CITADEL_TRY(auto answer, api->Get(path, failure_context));
  if (context.json()) {
    context.PrintJson(answer);
    return {};
  }
  auto tokens = JsonArray(answer, "tokens");
  if (tokens.empty()) {
    context.out() << "No tokens.\n";
    return {};
  }
  Table table({"ID", "NAME", "ROLE", "CREATED", "STATUS"});
  for (const auto& token : tokens) {
    bool revoked = token.is_object() && token.value("revoked", false);
    table.AddRow({JsonText(token, "id"), JsonText(token, "name"), JsonText(token, "role"),
                  TimeCell(token, "created_at", context.now()), revoked ? "revoked" : "active"});
  }
  table.Render(context.out());
  return {};
}

Result<void> TokenRevoke(CommandContext& context, const std::string& id) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/tokens/" + PercentEncode(id)));
  FailureContext failure_context;
  failure_context.not_found_hint = "list the tenant's tokens with `citadel token list`";
  failure_context.forbidden_hint = "revoking tokens needs an admin token of this tenant";
  CITADEL_TRY(auto answer, api->Delete(path, failure_context));
  if (context.json()) {
    context.PrintJson({{"id", id}, {"revoked", true}});
    return {};
  }
  context.out() << "Revoked token " << SanitizeForTerminal(id) << ". Requests with it are refused from now on.\n";
  return {};
}

}  // namespace

void RegisterAccountCommands(CommandSet& commands) {
  CLI::App* root = &commands.root();

  commands.Command(root, "login", "Check the server and token, then save them for later commands",
                   "citadel login --server https://127.0.0.1:8443 --token cit_... --ca /var/lib/citadel/service-ca.pem",
                   Login);
  commands.Command(root, "logout", "Forget the saved server, token and CA (deletes the config file)", "citadel logout",
                   Logout);

  auto* tenant = commands.Group(root, "tenant", "Create and inspect tenants (organisations)");
  auto tenant_name = std::make_shared<std::string>();
  commands
      .Command(tenant, "create", "Create a tenant and its first admin token (operator token)",
               "citadel tenant create acme",
               [tenant_name](CommandContext& context) { return TenantCreate(context, *tenant_name); })
      ->add_option("NAME", *tenant_name, "Tenant name")
      ->type_name("")
      ->required();
  commands.Command(tenant, "list", "List the tenants this token can see", "citadel tenant list", TenantList);
  auto tenant_id = std::make_shared<std::string>();
  commands
      .Command(tenant, "show", "Show a tenant (default: the token's own)", "citadel tenant show",
               [tenant_id](CommandContext& context) { return TenantShow(context, *tenant_id); })
      ->add_option("ID", *tenant_id, "Tenant ID")
      ->type_name("");

  auto* token = commands.Group(root, "token", "Manage the tenant's API tokens (admin)");
  auto create_options = std::make_shared<TokenCreateOptions>();
  auto* token_create =
      commands.Command(token, "create", "Create an API token; the token is shown once",
                       "citadel token create --name ci-pipeline --role contributor",
                       [create_options](CommandContext& context) { return TokenCreate(context, *create_options); });
  token_create->add_option("--name", create_options->name, "A name that says who or what uses it")
      ->type_name("NAME")
      ->required();
  token_create->add_option("--role", create_options->role, "What it may do: admin > contributor > reader")
      ->type_name("ROLE")
      ->required()
      ->check(CLI::IsMember({"admin", "contributor", "reader"}));
  commands.Command(token, "list", "List the tenant's tokens (never their secrets)", "citadel token list", TokenList);
  auto revoke_id = std::make_shared<std::string>();
  commands
      .Command(token, "revoke", "Revoke a token so the service refuses it from now on", "citadel token revoke 7c1e2a90",
               [revoke_id](CommandContext& context) { return TokenRevoke(context, *revoke_id); })
      ->add_option("ID", *revoke_id, "Token ID (from `citadel token list`)")
      ->type_name("")
      ->required();
}

}  // namespace citadel::cli
