#include "broker/simulated_board.hpp"

#include <algorithm>
#include <cmath>

namespace citadel::broker {

namespace {

constexpr std::string_view kTmp102Bus = "I2C0";
constexpr double kTmp102CelsiusPerLsb = 0.0625;
constexpr double kTmp102MinCelsius = -128.0;
constexpr double kTmp102MaxCelsius = 127.9375;

}  // namespace

std::uint16_t Tmp102Register(double celsius) {
  double clamped = std::isnan(celsius) ? 0.0 : std::clamp(celsius, kTmp102MinCelsius, kTmp102MaxCelsius);
  auto counts = static_cast<std::int32_t>(std::lround(clamped / kTmp102CelsiusPerLsb));  // 12-bit signed
  return static_cast<std::uint16_t>(static_cast<std::uint32_t>(counts * 16) & 0xFFFFU);
}

double Tmp102Celsius(std::uint16_t register_value) {
  auto signed_value = static_cast<std::int16_t>(register_value);
  // The temperature is the top 12 bits; the low 4 are zero, so the division
  // is exact (and, unlike a shift of a negative value, says what it means).
  const int counts = signed_value / 16;
  return static_cast<double>(counts) * kTmp102CelsiusPerLsb;
}

SimulatedBoard::SimulatedBoard(const app::BoardDefinition& board) {
  for (const app::Peripheral& peripheral : board.peripherals) {
    switch (peripheral.kind) {
      case app::PeripheralKind::kGpio:
        gpio_levels_.emplace(peripheral.name, 1);
        break;
      case app::PeripheralKind::kPwm:
        pwm_.emplace(peripheral.name, PwmState{});
        break;
      case app::PeripheralKind::kAdc:
        adc_.emplace(peripheral.name, kDefaultAdcSample);
        break;
      case app::PeripheralKind::kUart:
        uart_looped_.emplace(peripheral.name, 0);
        break;
      case app::PeripheralKind::kI2cMaster:
      case app::PeripheralKind::kSpiMaster:
        break;
    }
  }
}

Expected<void> SimulatedBoard::Open(const app::Peripheral& peripheral, const OpenRequest& request) {
  if (peripheral.kind == app::PeripheralKind::kGpio && request.gpio_output) {
    (void)SetGpioLevel(peripheral.name, request.gpio_initial_value);
  }
  return kOk;
}

Expected<UniqueFd> SimulatedBoard::OpenUart(const app::Peripheral& /*uart*/) { return UniqueFd(); }

void SimulatedBoard::Close(const app::Peripheral& /*peripheral*/) {}

Expected<int> SimulatedBoard::ReadGpio(const app::Peripheral& gpio) {
  auto level = GpioLevel(gpio.name);
  if (!level) return MakeError(ErrorCode::kNotFound, gpio.Describe() + " is not simulated");
  return *level;
}

Expected<void> SimulatedBoard::WriteGpio(const app::Peripheral& gpio, int level) {
  if (!SetGpioLevel(gpio.name, level)) return MakeError(ErrorCode::kNotFound, gpio.Describe() + " is not simulated");
  return kOk;
}

Expected<Bytes> SimulatedBoard::TransferI2c(const app::Peripheral& bus, std::uint16_t address,
                                            std::span<const std::uint8_t> write, std::size_t read_length) {
  auto data = I2cTransfer(bus.name, address, write, read_length);
  if (!data) return WrapError(data.error(), bus.name);
  return data;
}

Expected<Bytes> SimulatedBoard::TransferSpi(const app::Peripheral& bus, std::span<const std::uint8_t> tx) {
  return SpiTransfer(bus.name, tx);
}

Expected<void> SimulatedBoard::ConfigurePwm(const app::Peripheral& pwm, const PwmState& state) {
  ApplyPwm(pwm.name, state);
  return kOk;
}

Expected<std::uint32_t> SimulatedBoard::ReadAdc(const app::Peripheral& adc) { return AdcSample(adc.name); }

Expected<std::uint32_t> SimulatedBoard::AdcBits(const app::Peripheral& /*adc*/) { return kAdcBits; }

Expected<void> SimulatedBoard::SetSystemTime(std::chrono::system_clock::time_point time) {
  SetClockOffset(std::chrono::duration_cast<std::chrono::nanoseconds>(time - std::chrono::system_clock::now()));
  return kOk;
}

std::optional<int> SimulatedBoard::GpioLevel(std::string_view name) const {
  std::lock_guard lock(mutex_);
  auto it = gpio_levels_.find(name);
  if (it == gpio_levels_.end()) return std::nullopt;
  return it->second;
}

bool SimulatedBoard::SetGpioLevel(std::string_view name, int level) {
  std::lock_guard lock(mutex_);
  auto it = gpio_levels_.find(name);
  if (it == gpio_levels_.end()) return false;
  it->second = level != 0 ? 1 : 0;
  return true;
}

double SimulatedBoard::TemperatureCelsius() const {
  std::lock_guard lock(mutex_);
  return temperature_celsius_;
}

void SimulatedBoard::SetTemperatureCelsius(double celsius) {
  std::lock_guard lock(mutex_);
  temperature_celsius_ = celsius;
}

Expected<Bytes> SimulatedBoard::I2cTransfer(std::string_view bus, std::uint16_t address,
                                            std::span<const std::uint8_t> write, std::size_t read_length) {
  if (address > 0x7F) return MakeError(ErrorCode::kInvalidArgument, "I2C address is not a 7-bit address");
  if (bus != kTmp102Bus || address != kTmp102Address) {
    return MakeError(ErrorCode::kNotFound, "no device acknowledged the address");
  }
  std::lock_guard lock(mutex_);
  // TMP102: the first written byte selects the register; two more bytes
  // write it (config, T_LOW, T_HIGH; the temperature register is read-only).
  if (!write.empty()) {
    if (write[0] > 3) return MakeError(ErrorCode::kInvalidArgument, "TMP102 has registers 0..3");
    tmp102_.pointer = write[0];
    if (write.size() >= 3) {
      auto value = static_cast<std::uint16_t>((write[1] << 8) | write[2]);
      switch (tmp102_.pointer) {
        case 1:
          tmp102_.config = value;
          break;
        case 2:
          tmp102_.t_low = value;
          break;
        case 3:
          tmp102_.t_high = value;
          break;
        default:
          break;  // the temperature register ignores writes
      }
    }
  }
  std::uint16_t value = 0;
  switch (tmp102_.pointer) {
    case 0:
      value = Tmp102Register(temperature_celsius_);
      break;
    case 1:
      value = tmp102_.config;
      break;
    case 2:
      value = tmp102_.t_low;
      break;
    default:
      value = tmp102_.t_high;
      break;
  }
  Bytes data(read_length);
  for (std::size_t i = 0; i < read_length; ++i) {
    // Reads past the two register bytes repeat them, as the sensor does.
    data[i] = (i % 2 == 0) ? static_cast<std::uint8_t>(value >> 8) : static_cast<std::uint8_t>(value & 0xFF);
  }
  return data;
}

Bytes SimulatedBoard::SpiTransfer(std::string_view /*bus*/, std::span<const std::uint8_t> tx) {
  return Bytes(tx.begin(), tx.end());
}

std::optional<PwmState> SimulatedBoard::Pwm(std::string_view name) const {
  std::lock_guard lock(mutex_);
  auto it = pwm_.find(name);
  if (it == pwm_.end()) return std::nullopt;
  return it->second;
}

void SimulatedBoard::ApplyPwm(std::string_view name, const PwmState& state) {
  std::lock_guard lock(mutex_);
  auto it = pwm_.find(name);
  if (it != pwm_.end()) it->second = state;
}

std::uint32_t SimulatedBoard::AdcSample(std::string_view name) const {
  std::lock_guard lock(mutex_);
  auto it = adc_.find(name);
  return it == adc_.end() ? 0 : it->second;
}

void SimulatedBoard::SetAdcSample(std::string_view name, std::uint32_t sample) {
  std::lock_guard lock(mutex_);
  auto it = adc_.find(name);
  if (it != adc_.end()) it->second = sample & ((1U << kAdcBits) - 1);
}

std::uint64_t SimulatedBoard::UartBytesLooped(std::string_view name) const {
  std::lock_guard lock(mutex_);
  auto it = uart_looped_.find(name);
  return it == uart_looped_.end() ? 0 : it->second;
}

void SimulatedBoard::AddUartBytesLooped(std::string_view name, std::uint64_t count) {
  std::lock_guard lock(mutex_);
  auto it = uart_looped_.find(name);
  if (it != uart_looped_.end()) it->second += count;
}

void SimulatedBoard::RecordReboot() {
  std::lock_guard lock(mutex_);
  ++reboots_;
}

int SimulatedBoard::reboot_count() const {
  std::lock_guard lock(mutex_);
  return reboots_;
}

void SimulatedBoard::SetClockOffset(std::chrono::nanoseconds offset) {
  std::lock_guard lock(mutex_);
  clock_offset_ = offset;
}

std::optional<std::chrono::nanoseconds> SimulatedBoard::clock_offset() const {
  std::lock_guard lock(mutex_);
  return clock_offset_;
}

}  // namespace citadel::broker
