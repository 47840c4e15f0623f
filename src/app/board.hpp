// A board definition: the peripheral names apps use in their manifests,
// mapped to the board's real resources (docs/MANIFEST.md, "Board
// definition"). The runtime loads one per device; boards/simulated.json is
// the simulated board used by tests and `make run`.
//
// Contract: a parsed BoardDefinition never maps two names to the same
// resource, so exclusivity (resources.hpp) cannot be bypassed by asking for
// one pin under two names.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace citadel::app {

inline constexpr std::size_t kMaxBoardBytes = 256 * 1024;
inline constexpr std::size_t kMaxBoardPeripheralsPerKind = 256;

enum class PeripheralKind { kGpio, kUart, kI2cMaster, kSpiMaster, kPwm, kAdc };

// The manifest/board key of a kind: "Gpio", "Uart", "I2cMaster", ...
std::string_view PeripheralKindName(PeripheralKind kind);

struct Peripheral {
  PeripheralKind kind = PeripheralKind::kGpio;
  std::string name;  // e.g. "LED1"
  // gpio, pwm: the chip name ("gpiochip0", "pwmchip0"); uart, i2c, spi: the
  // device node ("/dev/ttyS0"); adc: the IIO device ("iio:device0").
  std::string device;
  // gpio: the line offset; pwm, adc: the channel; absent for uart, i2c, spi.
  std::optional<std::uint32_t> index;
  std::string description;  // free text for people, e.g. the sensor address

  // The identity of the underlying resource, equal for two peripherals
  // exactly when they are the same hardware, e.g. "gpio:gpiochip0:17".
  std::string ResourceKey() const;
  // Human form for messages, e.g. "Gpio LED1 (gpiochip0 line 17)".
  std::string Describe() const;

  bool operator==(const Peripheral&) const = default;
};

// Which implementation serves the board's peripherals (the broker picks it,
// src/broker/peripheral_backend.hpp): the real Linux device interfaces, or
// the simulation (boards/simulated.json, tests, `make run`).
enum class BoardBackend { kLinux, kSimulated };

// The board-definition value of a backend: "linux", "simulated".
std::string_view BoardBackendName(BoardBackend backend);

struct BoardDefinition {
  std::string name;
  // "Backend" in the file; absent means a real board (kLinux).
  BoardBackend backend = BoardBackend::kLinux;
  std::vector<Peripheral> peripherals;  // grouped by kind, sorted by name

  // The peripheral of that kind and name, or nullptr.
  const Peripheral* Find(PeripheralKind kind, std::string_view peripheral_name) const;
};

// Parses a board definition strictly: unknown fields, malformed names and
// devices, and two names for one resource are refused with the field path.
[[nodiscard]] Expected<BoardDefinition> ParseBoardDefinition(std::string_view json);
[[nodiscard]] Expected<BoardDefinition> LoadBoardDefinition(const std::filesystem::path& path);

}  // namespace citadel::app
