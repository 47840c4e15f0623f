// The simulated peripherals behind the broker on boards without real
// hardware (boards/simulated.json, tests, `make run`). Each peripheral of the
// board definition gets a simulated counterpart:
//   GPIO  one level per line; apps drive outputs, tests drive inputs
//         (buttons, default high = not pressed).
//   I2C   a TMP102-compatible sensor at 0x48 on "I2C0" (register 0 =
//         temperature, 12-bit two's complement << 4, 0.0625 C/LSB, default
//         21.5 C); any other address NACKs (EIO).
//   SPI   loopback: rx = tx.
//   PWM   the last applied period/duty/enabled is recorded.
//   ADC   a settable 12-bit sample (default 2048).
//   UART  loopback; the bytes are echoed by the broker's event loop.
// Plus the effects of privileged calls: reboot requests and the simulated
// clock offset set through Clock_SetSystemTime.
//
// It is the PeripheralBackend of boards whose definition says "Backend":
// "simulated"; the by-name methods below are for tests and diagnostics.
// Unlike LinuxBoard it does not refuse a second open of one peripheral
// (exclusivity between apps is decided at install).
//
// Threading: every method is thread-safe (one internal mutex); tests and the
// runtime read and change state while the broker thread serves apps.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "app/board.hpp"
#include "broker/peripheral_backend.hpp"
#include "common/encoding.hpp"
#include "common/error.hpp"

namespace citadel::broker {

inline constexpr std::uint16_t kTmp102Address = 0x48;
inline constexpr double kDefaultTemperatureCelsius = 21.5;
inline constexpr std::uint32_t kAdcBits = 12;
inline constexpr std::uint32_t kDefaultAdcSample = 2048;

// The TMP102 temperature register for a temperature (clamped to the
// sensor's range), and back.
std::uint16_t Tmp102Register(double celsius);
double Tmp102Celsius(std::uint16_t register_value);

class SimulatedBoard final : public PeripheralBackend {
 public:
  explicit SimulatedBoard(const app::BoardDefinition& board);

  // PeripheralBackend. Opening a GPIO output sets its level; OpenUart
  // returns no descriptor (loopback).
  std::string_view name() const override { return "simulated"; }
  Expected<void> Open(const app::Peripheral& peripheral, const OpenRequest& request) override;
  Expected<UniqueFd> OpenUart(const app::Peripheral& uart) override;
  void Close(const app::Peripheral& peripheral) override;
  Expected<int> ReadGpio(const app::Peripheral& gpio) override;
  Expected<void> WriteGpio(const app::Peripheral& gpio, int level) override;
  Expected<Bytes> TransferI2c(const app::Peripheral& bus, std::uint16_t address, std::span<const std::uint8_t> write,
                              std::size_t read_length) override;
  Expected<Bytes> TransferSpi(const app::Peripheral& bus, std::span<const std::uint8_t> tx) override;
  Expected<void> ConfigurePwm(const app::Peripheral& pwm, const PwmState& state) override;
  Expected<std::uint32_t> ReadAdc(const app::Peripheral& adc) override;
  Expected<std::uint32_t> AdcBits(const app::Peripheral& adc) override;
  Expected<void> SetSystemTime(std::chrono::system_clock::time_point time) override;

  // GPIO levels (0 or 1) by peripheral name; nullopt / false for a name that
  // is not a GPIO of the board.
  std::optional<int> GpioLevel(std::string_view name) const;
  bool SetGpioLevel(std::string_view name, int level);

  double TemperatureCelsius() const;
  void SetTemperatureCelsius(double celsius);

  // One I2C transaction on a bus: writes `write` then reads read_length bytes
  // (either may be empty). kNotFound (-> EIO, a NACK) when no device answers
  // at address, kInvalidArgument for a bad address or register.
  Expected<Bytes> I2cTransfer(std::string_view bus, std::uint16_t address, std::span<const std::uint8_t> write,
                              std::size_t read_length);

  // Loopback: returns tx.
  Bytes SpiTransfer(std::string_view bus, std::span<const std::uint8_t> tx);

  std::optional<PwmState> Pwm(std::string_view name) const;
  void ApplyPwm(std::string_view name, const PwmState& state);

  std::uint32_t AdcSample(std::string_view name) const;
  void SetAdcSample(std::string_view name, std::uint32_t sample);

  // Bytes echoed by the UART loopback, for tests and diagnostics.
  std::uint64_t UartBytesLooped(std::string_view name) const;
  void AddUartBytesLooped(std::string_view name, std::uint64_t count);

  // Privileged effects.
  void RecordReboot();
  int reboot_count() const;
  void SetClockOffset(std::chrono::nanoseconds offset);
  std::optional<std::chrono::nanoseconds> clock_offset() const;

 private:
  struct Tmp102 {
    std::uint8_t pointer = 0;
    std::uint16_t config = 0x60A0;  // power-on defaults from the datasheet
    std::uint16_t t_low = 0x4B00;   // 75 C
    std::uint16_t t_high = 0x5000;  // 80 C
  };

  mutable std::mutex mutex_;
  std::map<std::string, int, std::less<>> gpio_levels_;
  double temperature_celsius_ = kDefaultTemperatureCelsius;
  Tmp102 tmp102_;
  std::map<std::string, PwmState, std::less<>> pwm_;
  std::map<std::string, std::uint32_t, std::less<>> adc_;
  std::map<std::string, std::uint64_t, std::less<>> uart_looped_;
  int reboots_ = 0;
  std::optional<std::chrono::nanoseconds> clock_offset_;
};

}  // namespace citadel::broker
