#include "cli/failure.hpp"

#include <nlohmann/json.hpp>

#include "cli/table.hpp"

namespace citadel::cli {
namespace {

constexpr std::string_view kProblemPrefix = "urn:citadel:problem:";

constexpr std::string_view kLoginHint = "run `citadel login --server URL --token TOKEN --ca FILE` with a valid token";

std::string ServerOrDefault(const FailureContext& context) {
  return context.server.empty() ? std::string("the configured URL") : context.server;
}

// Hints for the problem types the service documents; "" when the type has
// no specific advice and the status-based hint applies.
std::string HintForType(std::string_view name, const FailureContext& context) {
  if (name == "device-unknown") {
    return "the service has not seen this device yet: it must attest once (power it on with network "
           "access to the service) before it can be claimed";
  }
  if (name == "device-claimed-elsewhere") {
    return "the device belongs to another tenant; it can be claimed only after that tenant releases it";
  }
  if (name == "device-already-claimed") {
    return "nothing to do: the device is already yours (see `citadel device show DEVICE_ID`)";
  }
  if (name == "device-group-required") {
    return "name a device group with --device-group ID (`citadel device-group list` shows them)";
  }
  if (name == "already-exists") return "choose another name, or use the existing one";
  if (name == "invalid-request" || name == "malformed-request") {
    return "check the command's arguments with `--help`";
  }
  if (name == "unsupported-media-type") {
    return "the server refused the request format; make sure the CLI and server versions match";
  }
  (void)context;
  return {};
}

ExitCode ExitCodeForStatus(int status) {
  switch (status) {
    case 401:
    case 403:
      return ExitCode::kAuth;
    case 404:
    case 410:
      return ExitCode::kNotFound;
    case 409:
      return ExitCode::kConflict;
    default:
      return ExitCode::kError;
  }
}

std::string HintForStatus(int status, const FailureContext& context) {
  switch (status) {
    case 401:
      return std::string(kLoginHint);
    case 403:
      if (!context.forbidden_hint.empty()) return context.forbidden_hint;
      return "your token's role does not allow this (admin > contributor > reader); "
             "ask a tenant admin for a token with the needed role (`citadel token create`)";
    case 404:
      if (!context.not_found_hint.empty()) return context.not_found_hint;
      return "check the ID; another tenant's resources are reported as not found";
    case 409:
      return "the resource already exists or is in a state that forbids this";
    case 413:
      return "the request is larger than the server accepts";
    case 429:
    case 503:
      return "the server is busy; try again shortly";
    default:
      if (status >= 500) return "the server failed; its log at " + ServerOrDefault(context) + " says why";
      return {};
  }
}

}  // namespace

void PrintFailure(std::ostream& err, const Failure& failure) {
  err << "error: " << SanitizeForTerminal(failure.message) << '\n';
  if (!failure.hint.empty()) err << "hint: " << SanitizeForTerminal(failure.hint) << '\n';
}

std::string Problem::Name() const {
  if (type.starts_with(kProblemPrefix)) return type.substr(kProblemPrefix.size());
  return {};
}

std::optional<Problem> ParseProblem(std::string_view body) {
  auto json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return std::nullopt;
  auto type = json.find("type");
  if (type == json.end() || !type->is_string()) return std::nullopt;
  Problem problem;
  problem.type = type->get<std::string>();
  auto text = [&](const char* key) -> std::string {
    auto it = json.find(key);
    return it != json.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  problem.title = text("title");
  problem.detail = text("detail");
  if (auto status = json.find("status"); status != json.end() && status->is_number_integer()) {
    problem.status = status->get<int>();
  }
  return problem;
}

Failure FailureFromResponse(int status, std::string_view body, const FailureContext& context) {
  Failure failure;
  failure.exit_code = ExitCodeForStatus(status);
  failure.hint = HintForStatus(status, context);
  auto problem = ParseProblem(body);
  if (!problem) {
    failure.message = "the server answered HTTP " + std::to_string(status);
    return failure;
  }
  if (!problem->detail.empty()) {
    failure.message = problem->detail;
  } else if (!problem->title.empty()) {
    failure.message = problem->title;
  } else {
    failure.message = "the server answered HTTP " + std::to_string(status) + " (" + problem->type + ")";
  }
  if (auto specific = HintForType(problem->Name(), context); !specific.empty()) failure.hint = specific;
  return failure;
}

ExitCode ExitCodeFor(ErrorCode code) {
  switch (code) {
    case ErrorCode::kUnauthenticated:
    case ErrorCode::kPermissionDenied:
      return ExitCode::kAuth;
    case ErrorCode::kNotFound:
      return ExitCode::kNotFound;
    case ErrorCode::kAlreadyExists:
    case ErrorCode::kConflict:
      return ExitCode::kConflict;
    case ErrorCode::kUnavailable:
      return ExitCode::kUnreachable;
    case ErrorCode::kInvalidArgument:
      return ExitCode::kUsage;
    default:
      return ExitCode::kError;
  }
}

Failure FailureFromError(const Error& error, const FailureContext& context) {
  Failure failure{ExitCodeFor(error.code()), error.message(), {}};
  switch (error.code()) {
    case ErrorCode::kUnavailable:
      failure.hint = "is citadel-server running at " + ServerOrDefault(context) +
                     "? Check the URL (--server, CITADEL_SERVER or `citadel login`)";
      break;
    case ErrorCode::kCrypto:
      failure.hint =
          "the server's TLS certificate must chain to the CA you pinned: pass the server's "
          "DATA/service-ca.pem with --ca (or run `citadel login` again)";
      break;
    case ErrorCode::kUnauthenticated:
      failure.hint = std::string(kLoginHint);
      break;
    default:
      break;
  }
  return failure;
}

}  // namespace citadel::cli
