// What the CLI tells a person when something fails: one "error: ..." line,
// a hint of what to do next, and a documented exit code. Service errors
// arrive as RFC 9457 problem details (docs/PROTOCOL.md); this maps their
// stable `type` (and the HTTP status when the body is not a problem) to the
// message, hint and exit code.
#pragma once

#include <expected>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include "common/error.hpp"

namespace citadel::cli {

// Exit codes, documented in `citadel --help`. Scripts branch on them.
enum class ExitCode : int {
  kOk = 0,
  kError = 1,
  kUsage = 2,
  kAuth = 3,  // authentication failed or permission denied
  kNotFound = 4,
  kConflict = 5,
  kUnreachable = 6,  // the server could not be reached
};

struct Failure {
  ExitCode exit_code = ExitCode::kError;
  std::string message;  // printed as "error: <message>"
  std::string hint;     // printed as "hint: <hint>" when not empty
};

template <typename T>
using Result = std::expected<T, Failure>;

inline std::unexpected<Failure> Fail(ExitCode code, std::string message, std::string hint = {}) {
  return std::unexpected<Failure>(Failure{code, std::move(message), std::move(hint)});
}

// Prints "error: ..." and "hint: ..." lines.
void PrintFailure(std::ostream& err, const Failure& failure);

// An RFC 9457 problem document.
struct Problem {
  std::string type;  // "urn:citadel:problem:not-found"
  std::string title;
  int status = 0;
  std::string detail;

  // The part after "urn:citadel:problem:" ("" for other types).
  std::string Name() const;
};

// Parses a problem+json body; nullopt when it is not one (no "type").
std::optional<Problem> ParseProblem(std::string_view body);

// What the command was doing, to make hints concrete.
struct FailureContext {
  std::string server;          // base URL, for "is citadel-server running at ...?"
  std::string not_found_hint;  // e.g. "list devices with `citadel device list`"
  std::string forbidden_hint;  // e.g. "creating tenants needs the operator token"
};

// Maps a non-2xx HTTP answer to a Failure.
Failure FailureFromResponse(int status, std::string_view body, const FailureContext& context);

// Maps a local or transport error (citadel::Error) to a Failure.
Failure FailureFromError(const Error& error, const FailureContext& context);

// The exit code for an ErrorCode (used by FailureFromError).
ExitCode ExitCodeFor(ErrorCode code);

}  // namespace citadel::cli
