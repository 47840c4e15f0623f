#include "common/error.hpp"

namespace citadel {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return "invalid-argument";
    case ErrorCode::kNotFound:
      return "not-found";
    case ErrorCode::kAlreadyExists:
      return "already-exists";
    case ErrorCode::kConflict:
      return "conflict";
    case ErrorCode::kPermissionDenied:
      return "permission-denied";
    case ErrorCode::kUnauthenticated:
      return "unauthenticated";
    case ErrorCode::kFailedPrecondition:
      return "failed-precondition";
    case ErrorCode::kExpired:
      return "expired";
    case ErrorCode::kTooLarge:
      return "too-large";
    case ErrorCode::kCrypto:
      return "crypto";
    case ErrorCode::kIo:
      return "io";
    case ErrorCode::kParse:
      return "parse";
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "unknown";
}

Error Error::Wrap(std::string_view context) const {
  std::string wrapped(context);
  wrapped += ": ";
  wrapped += message_;
  return Error(code_, std::move(wrapped));
}

}  // namespace citadel
