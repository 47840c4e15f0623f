// manufacturer create-ca / show: local, no server.
#include <CLI/CLI.hpp>

#include "cli/command_context.hpp"
#include "cli/manufacturer.hpp"
#include "cli/table.hpp"

namespace citadel::cli {
namespace {

using nlohmann::json;

json DescribeCa(const ManufacturerCa& ca) {
  return {{"certificate_file", ca.certificate_path.string()},
          {"key_file", ca.key_path.string()},
          {"subject", ca.certificate.SubjectOneLine()},
          {"serial", ca.certificate.SerialHex()},
          {"not_before", FormatRfc3339(ca.certificate.NotBefore())},
          {"not_after", FormatRfc3339(ca.certificate.NotAfter())},
          {"fingerprint_sha256", ca.certificate.FingerprintSha256()},
          {"certificate_pem", ca.certificate.Pem()}};
}

void RenderCa(CommandContext& context, const ManufacturerCa& ca) {
  RenderKeyValues(context.out(), {{"  Certificate", ca.certificate_path.string()},
                                  {"  Key", ca.key_path.string() + " (keep private; mode 0600)"},
                                  {"  Subject", ca.certificate.SubjectOneLine()},
                                  {"  Valid until", FormatRfc3339(ca.certificate.NotAfter())},
                                  {"  SHA-256", ca.certificate.FingerprintSha256()}});
}

Result<void> CreateCa(CommandContext& context, const ManufacturerCaOptions& options) {
  auto ca = CreateManufacturerCa(options);
  if (!ca) {
    auto failure = FailureFromError(ca.error(), {});
    if (ca.error().code() == ErrorCode::kAlreadyExists) {
      failure.hint = "inspect it with `citadel manufacturer show --dir " + options.directory.string() +
                     "`; pass --force to replace it (devices it signed then stop being genuine)";
    }
    return std::unexpected(failure);
  }
  if (context.json()) {
    auto description = DescribeCa(*ca);
    description["development"] = true;
    context.PrintJson(description);
    return {};
  }
  context.out() << "Created a development manufacturer CA:\n";
  RenderCa(context, *ca);
  const auto pem = ca->certificate_path.string();
  context.out() << "\nThis is a DEVELOPMENT CA: its private key is a plain file, not an HSM. Devices whose\n"
                   "identity certificates it signs are genuine only to a service that trusts it.\n"
                   "To make citadel-server trust it, either copy the certificate into its data directory:\n"
                   "  cp "
                << pem
                << " DATA/manufacturer-cas/\n"
                   "or start the server with:\n"
                   "  citadel-server --trust-manufacturer-ca "
                << pem << "\n";
  return {};
}

Result<void> ShowCa(CommandContext& context, const std::filesystem::path& directory) {
  auto ca = LoadManufacturerCa(directory);
  if (!ca) {
    auto failure = FailureFromError(ca.error(), {});
    if (ca.error().code() == ErrorCode::kNotFound) {
      failure.hint = "create one with `citadel manufacturer create-ca --dir " + directory.string() + "`";
    }
    return std::unexpected(failure);
  }
  if (context.json()) {
    context.PrintJson(DescribeCa(*ca));
    return {};
  }
  context.out() << "Manufacturer CA in " << directory.string() << ":\n";
  RenderCa(context, *ca);
  return {};
}

}  // namespace

void RegisterManufacturerCommands(CommandSet& commands) {
  auto* manufacturer =
      commands.Group(&commands.root(), "manufacturer", "Local development manufacturer CA (no server involved)");
  auto options = std::make_shared<ManufacturerCaOptions>();
  auto* create =
      commands.Command(manufacturer, "create-ca", "Create a self-signed development manufacturer CA in a directory",
                       "citadel manufacturer create-ca --dir ./manufacturer --name \"Acme Boards Dev\"",
                       [options](CommandContext& context) { return CreateCa(context, *options); });
  create->add_option("--dir", options->directory, "Directory for manufacturer-ca.pem and manufacturer-ca.key")
      ->type_name("DIR")
      ->required();
  create->add_option("--name", options->name, "The CA's common name")->type_name("NAME")->capture_default_str();
  create->add_flag("--force", options->force, "Replace an existing CA in the directory");

  auto directory = std::make_shared<std::filesystem::path>();
  commands
      .Command(manufacturer, "show", "Show the manufacturer CA in a directory",
               "citadel manufacturer show --dir ./manufacturer",
               [directory](CommandContext& context) { return ShowCa(context, *directory); })
      ->add_option("--dir", *directory, "Directory holding manufacturer-ca.pem")
      ->type_name("DIR")
      ->required();
}

}  // namespace citadel::cli
