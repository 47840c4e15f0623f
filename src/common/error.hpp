// Error values and Expected<T> used across every module boundary.
//
// Contract: functions that can fail return Expected<T>; library exceptions
// are caught in the wrapper that calls the library and turned into an Error.
// An Error carries a stable category (ErrorCode) for programs and a human
// message for people; Wrap() adds context the way a path is built:
//   "loading manifest app.json: Gpio[3]: pin 99 is not on this board".
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace citadel {

enum class ErrorCode {
  kInvalidArgument,     // the caller's input is malformed or out of range
  kNotFound,            // the thing asked for does not exist
  kAlreadyExists,       // creating something that exists
  kConflict,            // state forbids it (e.g. device claimed by another tenant)
  kPermissionDenied,    // authenticated, but not allowed
  kUnauthenticated,     // no or bad credentials
  kFailedPrecondition,  // something must happen first
  kExpired,             // a nonce, certificate or token is past its lifetime
  kTooLarge,            // input exceeds a size bound
  kCrypto,              // a cryptographic operation or check failed
  kIo,                  // file system or network I/O
  kParse,               // bytes did not parse
  kUnavailable,         // a dependency (server, database) is not reachable
  kInternal,            // a bug or an invariant broken
};

std::string_view ErrorCodeName(ErrorCode code);

class [[nodiscard]] Error {
 public:
  constexpr Error(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // Returns a copy whose message is "context: message".
  Error Wrap(std::string_view context) const;

 private:
  ErrorCode code_;
  std::string message_;
};

template <typename T>
using Expected = std::expected<T, Error>;

// The empty success value for Expected<void>-returning functions.
inline constexpr auto kOk = Expected<void>{};

inline std::unexpected<Error> MakeError(ErrorCode code, std::string message) {
  return std::unexpected<Error>(Error(code, std::move(message)));
}

inline std::unexpected<Error> WrapError(const Error& error, std::string_view context) {
  return std::unexpected<Error>(error.Wrap(context));
}

}  // namespace citadel

// CITADEL_TRY(auto value, Expression()) declares value from an Expected, or
// returns the error to the caller. CITADEL_TRY_VOID for Expected<void>.
#define CITADEL_CONCAT_INNER(a, b) a##b
#define CITADEL_CONCAT(a, b) CITADEL_CONCAT_INNER(a, b)
#define CITADEL_TRY_IMPL(tmp, decl, expr)                   \
  auto tmp = (expr);                                        \
  if (!tmp) return std::unexpected(std::move(tmp).error()); \
  decl = std::move(*tmp)
#define CITADEL_TRY(decl, expr) CITADEL_TRY_IMPL(CITADEL_CONCAT(citadel_try_, __LINE__), decl, expr)
#define CITADEL_TRY_VOID(expr)                                                            \
  do {                                                                                    \
    auto citadel_try_void_ = (expr);                                                      \
    if (!citadel_try_void_) return std::unexpected(std::move(citadel_try_void_).error()); \
  } while (false)
