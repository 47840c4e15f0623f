#include "broker/peripheral_backend.hpp"

#include <cerrno>

#include "broker/linux_board.hpp"
#include "broker/simulated_board.hpp"

namespace citadel::broker {

std::unique_ptr<PeripheralBackend> CreatePeripheralBackend(const app::BoardDefinition& board,
                                                           const LinuxBoardOptions& linux_options) {
  switch (board.backend) {
    case app::BoardBackend::kSimulated:
      return std::make_unique<SimulatedBoard>(board);
    case app::BoardBackend::kLinux:
      break;
  }
  return std::make_unique<LinuxBoard>(linux_options);
}

int ErrnoForBackendError(const Error& error) {
  switch (error.code()) {
    case ErrorCode::kInvalidArgument:
      return EINVAL;
    case ErrorCode::kAlreadyExists:
      return EBUSY;
    default:
      return EIO;
  }
}

}  // namespace citadel::broker
