// What the broker needs from the hardware: the one interface between the
// Broker (policy, handles, wire protocol) and the peripherals themselves.
// Backends beside it:
//   SimulatedBoard (simulated_board.hpp)  the simulation, for boards whose
//                                         definition says "Backend": "simulated"
//   LinuxBoard     (linux_board.hpp)      the kernel's device interfaces
//                                         (GPIO character device, i2c-dev,
//                                         spidev, PWM and IIO sysfs, tty)
// CreatePeripheralBackend below is the one place the backend is chosen, from
// the board definition's Backend field.
//
// Contract: the broker has already checked the app's policy; a backend only
// serves peripherals of its board definition, named by the app::Peripheral
// the broker looked up. Every failure is an Error whose message names the
// peripheral, the device path and what to check; the broker turns it into
// an errno for the app (ErrnoForBackendError) and never falls back to
// anything else (fail closed). Error codes a backend uses:
//   kInvalidArgument  the request is not possible (bad address, too long for
//                     the device)                              -> EINVAL
//   kAlreadyExists    the peripheral is held by another handle -> EBUSY
//   kNotFound         no I2C device acknowledged the address   -> EIO
//   anything else     the device or its driver failed          -> EIO
//
// Lifetime: Open (or OpenUart) is called when an app opens a handle; Close is
// called exactly once for every successful Open/OpenUart, when the handle
// goes away (the app closed it, RemoveApp, or the broker failed to hand it
// over). Operations on a peripheral are only called between the two.
//
// Threading: the broker calls a backend from its event-loop thread and from
// RemoveApp, always under its own lock; backends are thread-safe anyway
// (tests inspect the simulated board from other threads).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "app/board.hpp"
#include "common/encoding.hpp"
#include "common/error.hpp"
#include "common/unique_fd.hpp"

namespace citadel::broker {

struct PwmState {
  std::uint32_t period_ns = 0;
  std::uint32_t duty_cycle_ns = 0;
  bool enabled = false;
  bool operator==(const PwmState&) const = default;
};

// How a handle opens its peripheral.
struct OpenRequest {
  bool gpio_output = false;    // Gpio: output (else input)
  int gpio_initial_value = 0;  // Gpio output: level driven from the start, 0 or 1
  // Who holds the peripheral, shown by the kernel where it has a label
  // (the GPIO line consumer), e.g. "citadel:<component id>".
  std::string consumer;
};

class PeripheralBackend {
 public:
  virtual ~PeripheralBackend() = default;

  // "simulated" or "linux", for logs.
  virtual std::string_view name() const = 0;

  // Acquires a peripheral of any kind but Uart for one handle: a GPIO line
  // is requested with its direction (an output driven at its initial value
  // at once), a bus device is opened and checked, a PWM channel exported.
  virtual Expected<void> Open(const app::Peripheral& peripheral, const OpenRequest& request) = 0;
  // Opens a UART and returns the descriptor whose bytes the broker relays to
  // and from the app (non-blocking, close-on-exec, raw mode); an invalid
  // UniqueFd means "loopback": the broker echoes the app's bytes. The broker
  // closes the descriptor when the handle goes away, on its only thread:
  // that close must not block (LinuxBoard hands out a duplicate and keeps
  // the tty open itself).
  virtual Expected<UniqueFd> OpenUart(const app::Peripheral& uart) = 0;
  // Releases what Open/OpenUart acquired (a GPIO line goes back to the
  // kernel). Never fails visibly.
  virtual void Close(const app::Peripheral& peripheral) = 0;

  virtual Expected<int> ReadGpio(const app::Peripheral& gpio) = 0;  // 0 or 1
  virtual Expected<void> WriteGpio(const app::Peripheral& gpio, int level) = 0;

  // One I2C transaction at a 7-bit address: writes `write` then reads
  // read_length bytes with a repeated start (either may be empty).
  virtual Expected<Bytes> TransferI2c(const app::Peripheral& bus, std::uint16_t address,
                                      std::span<const std::uint8_t> write, std::size_t read_length) = 0;
  // Full duplex: clocks out tx and returns the tx.size() bytes clocked in.
  virtual Expected<Bytes> TransferSpi(const app::Peripheral& bus, std::span<const std::uint8_t> tx) = 0;

  // state.duty_cycle_ns <= state.period_ns, and a period when enabled (the
  // broker checks both).
  virtual Expected<void> ConfigurePwm(const app::Peripheral& pwm, const PwmState& state) = 0;

  virtual Expected<std::uint32_t> ReadAdc(const app::Peripheral& adc) = 0;
  virtual Expected<std::uint32_t> AdcBits(const app::Peripheral& adc) = 0;

  // Clock_SetSystemTime (the broker has checked SystemTime): the simulation
  // records an offset; Linux sets CLOCK_REALTIME (citadeld holds
  // CAP_SYS_TIME, the app does not).
  virtual Expected<void> SetSystemTime(std::chrono::system_clock::time_point time) = 0;
};

// Where LinuxBoard finds what the board definition names. Device nodes given
// as absolute paths in the board (Uart, I2cMaster, SpiMaster) are used as
// given; the roots exist so tests can point the backend at a temporary tree.
struct LinuxBoardOptions {
  std::filesystem::path dev_dir = "/dev";    // GPIO chips: dev_dir/<gpiochipN>
  std::filesystem::path sysfs_dir = "/sys";  // PWM: class/pwm/<pwmchipN>, ADC: bus/iio/devices/<iio:deviceN>
  // Sets CLOCK_REALTIME (0, or -1 with errno). Null: clock_settime(2).
  // Tests replace it: they must never move the machine's clock.
  std::function<int(const timespec&)> set_realtime_clock;
};

// The backend the board's definition asks for (its Backend field): a
// SimulatedBoard or a LinuxBoard built with linux_options.
std::unique_ptr<PeripheralBackend> CreatePeripheralBackend(const app::BoardDefinition& board,
                                                           const LinuxBoardOptions& linux_options);

// The errno an app sees for a backend error (see the codes above).
int ErrnoForBackendError(const Error& error);

}  // namespace citadel::broker
