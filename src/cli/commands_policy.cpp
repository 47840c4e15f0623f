// policy, audit.
#include <CLI/CLI.hpp>

#include <algorithm>

#include "cli/command_context.hpp"
#include "cli/table.hpp"

namespace citadel::cli {
namespace {

using nlohmann::json;

constexpr const char* kRevokedOsVersion = "revoked-os-version";
constexpr const char* kRevokedRuntimeDigest = "revoked-runtime-digest";
constexpr const char* kAcceptedRuntimeDigest = "accepted-runtime-digest";
constexpr const char* kRequirePublishedApps = "require-published-apps";

FailureContext PolicyFailureContext() {
  FailureContext context;
  context.forbidden_hint = "changing the attestation policy needs an admin token of this tenant";
  return context;
}

Result<void> PolicyList(CommandContext& context) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/policy"));
  CITADEL_TRY(auto answer, api->Get(path));
  if (context.json()) {
    context.PrintJson(answer);
    return {};
  }
  auto rules = JsonArray(answer, "rules");
  if (rules.empty()) {
    context.out() << "No policy rules: every genuine, consistent device of this tenant is accepted.\n";
    return {};
  }
  Table table({"KIND", "VALUE", "CREATED"});
  for (const auto& rule : rules) {
    table.AddRow({JsonText(rule, "kind"), JsonText(rule, "value"), TimeCell(rule, "created_at", context.now())});
  }
  table.Render(context.out());
  return {};
}

Result<void> PolicyAdd(CommandContext& context, const std::string& kind, const std::string& value) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/policy/rules"));
  CITADEL_TRY(auto answer, api->Post(path, {{"kind", kind}, {"value", value}}, PolicyFailureContext()));
  if (context.json()) {
    context.PrintJson(answer.is_null() ? json{{"kind", kind}, {"value", value}} : answer);
    return {};
  }
  if (kind == kAcceptedRuntimeDigest) {
    context.out() << "Accepted runtime digest " << value
                  << ".\nDevices measuring any other runtime fail attestation from their next attestation on.\n";
  } else if (kind == kRequirePublishedApps) {
    context.out() << "Devices running an app image this tenant did not publish fail attestation from their next "
                     "attestation on.\n";
  } else {
    if (kind == kRevokedOsVersion) {
      context.out() << "Revoked OS version " << SanitizeForTerminal(value) << ".\n";
    } else {
      context.out() << "Revoked runtime digest " << value << ".\n";
    }
    context.out() << "Devices reporting it fail attestation from their next attestation on.\n";
  }
  context.out() << "(undo with `citadel policy remove --kind " << kind << " --value " << SanitizeForTerminal(value)
                << "`)\n";
  return {};
}

// kind: revoked-runtime-digest or accepted-runtime-digest.
Result<void> PolicyRuntimeDigest(CommandContext& context, const char* kind, const std::string& given) {
  std::string digest = given;
  std::transform(digest.begin(), digest.end(), digest.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  bool hex = std::all_of(digest.begin(), digest.end(),
                         [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
  if (digest.size() != 64 || !hex) {
    return Fail(ExitCode::kUsage, "a runtime digest is a SHA-256 in hex (64 characters); got \"" + given + "\"",
                "take it from `citadel device show DEVICE_ID --json` or from the runtime's build");
  }
  return PolicyAdd(context, kind, digest);
}

struct PolicyRemoveOptions {
  std::string kind;
  std::string value;
};

Result<void> PolicyRemove(CommandContext& context, const PolicyRemoveOptions& options) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path,
              context.TenantPath("/policy/rules" + QueryString({{"kind", options.kind}, {"value", options.value}})));
  FailureContext failure_context = PolicyFailureContext();
  failure_context.not_found_hint = "list the rules with `citadel policy list`";
  CITADEL_TRY(auto answer, api->Delete(path, failure_context));
  if (context.json()) {
    context.PrintJson({{"kind", options.kind}, {"value", options.value}, {"removed", true}});
    return {};
  }
  context.out() << "Removed the " << options.kind << " rule for " << SanitizeForTerminal(options.value) << ".\n";
  return {};
}

Result<void> AuditList(CommandContext& context, int limit) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path,
              context.TenantPath("/audit" + QueryString({{"limit", limit > 0 ? std::to_string(limit) : ""}})));
  FailureContext failure_context;
  failure_context.forbidden_hint = "reading the audit log needs an admin token of this tenant";
  CITADEL_TRY(auto answer, api->Get(path, failure_context));
  if (context.json()) {
    context.PrintJson(answer);
    return {};
  }
  auto events = JsonArray(answer, "events");
  if (events.empty()) {
    context.out() << "No audit events.\n";
    return {};
  }
  Table table({"TIME", "ACTOR", "ACTION", "TARGET", "DETAILS"});
  for (const auto& event : events) {
    std::string target = JsonText(event, "target");
    if (target.size() == 64) target = ShortenId(target);
    std::string details;
    if (event.is_object() && event.contains("details")) {
      const auto& value = event["details"];
      details = value.is_string() ? value.get<std::string>() : value.dump();
    }
    if (details == "{}" || details == "null") details.clear();
    std::string time_key = event.is_object() && event.contains("time") ? "time" : "created_at";
    table.AddRow({TimeCell(event, time_key, context.now()), JsonText(event, "actor"), JsonText(event, "action"), target,
                  details});
  }
  table.Render(context.out());
  return {};
}

}  // namespace

void RegisterPolicyCommands(CommandSet& commands) {
  CLI::App* root = &commands.root();

  auto* policy = commands.Group(root, "policy", "The tenant's attestation policy (admin to change)");
  commands.Command(policy, "list", "List the policy rules", "citadel policy list", PolicyList);
  auto os_version = std::make_shared<std::string>();
  commands
      .Command(policy, "revoke-os-version", "Refuse attestation to devices running an OS version",
               "citadel policy revoke-os-version 1.0.0",
               [os_version](CommandContext& context) { return PolicyAdd(context, kRevokedOsVersion, *os_version); })
      ->add_option("VERSION", *os_version, "OS version as devices report it")
      ->type_name("")
      ->required();
  auto digest = std::make_shared<std::string>();
  commands
      .Command(
          policy, "revoke-runtime-digest", "Refuse attestation to devices measuring a runtime digest",
          "citadel policy revoke-runtime-digest 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
          [digest](CommandContext& context) { return PolicyRuntimeDigest(context, kRevokedRuntimeDigest, *digest); })
      ->add_option("HEX", *digest, "SHA-256 of the runtime, 64 hex characters")
      ->type_name("")
      ->required();
  auto accepted = std::make_shared<std::string>();
  commands
      .Command(policy, "accept-runtime-digest",
               "Accept a runtime digest; once any is accepted, devices measuring another runtime are refused",
               "citadel policy accept-runtime-digest 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
               [accepted](CommandContext& context) {
                 return PolicyRuntimeDigest(context, kAcceptedRuntimeDigest, *accepted);
               })
      ->add_option("HEX", *accepted, "SHA-256 of the runtime binary, 64 hex characters")
      ->type_name("")
      ->required();
  commands.Command(policy, "require-published-apps",
                   "Refuse devices running an app image this tenant did not publish (measured app images)",
                   "citadel policy require-published-apps",
                   [](CommandContext& context) { return PolicyAdd(context, kRequirePublishedApps, "true"); });
  auto remove_options = std::make_shared<PolicyRemoveOptions>();
  auto* remove = commands.Command(
      policy, "remove", "Remove a policy rule", "citadel policy remove --kind revoked-os-version --value 1.0.0",
      [remove_options](CommandContext& context) { return PolicyRemove(context, *remove_options); });
  remove->add_option("--kind", remove_options->kind, "the rule's kind, as `citadel policy list` shows it")
      ->type_name("KIND")
      ->required()
      ->check(CLI::IsMember({kRevokedOsVersion, kRevokedRuntimeDigest, kAcceptedRuntimeDigest, kRequirePublishedApps}));
  remove->add_option("--value", remove_options->value, "The rule's value")->type_name("VALUE")->required();

  auto* audit = commands.Group(root, "audit", "The tenant's audit log (admin)");
  auto limit = std::make_shared<int>(0);
  commands
      .Command(audit, "list", "List recent audit events, newest first", "citadel audit list --limit 20",
               [limit](CommandContext& context) { return AuditList(context, *limit); })
      ->add_option("--limit", *limit, "At most this many events (1-1000; default 100)")
      ->type_name("N")
      ->check(CLI::Range(1, 1000).description(""));
}

}  // namespace citadel::cli
