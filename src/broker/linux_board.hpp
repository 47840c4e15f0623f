// The real-hardware PeripheralBackend: serves a board's peripherals through
// the Linux kernel's device interfaces, as the board definition maps them
// (docs/MANIFEST.md, "Board definition"):
//   Gpio       the GPIO character device, uAPI v2 (<linux/gpio.h>): the line
//              is requested on dev_dir/<gpiochipN> when the app opens it
//              (consumer "citadel:<component id>", cut to the kernel's 31
//              bytes) and released when the handle closes; levels are the
//              physical ones (no active-low inversion).
//   I2cMaster  /dev/i2c-N (i2c-dev): one I2C_RDWR ioctl per transfer, a write
//              message and/or a read message (I2C_M_RD) at a 7-bit address.
//              An address that nobody acknowledges (ENXIO/EREMOTEIO) is
//              kNotFound, which the app sees as EIO.
//   SpiMaster  /dev/spidevB.C: one SPI_IOC_MESSAGE(1) full-duplex transfer at
//              the device's configured mode, word size and speed.
//   Pwm        sysfs_dir/class/pwm/<pwmchipN>/pwm<C>: the channel is exported
//              at open when pwm<C> is missing (and left exported and running
//              at close); period, duty_cycle and enable are written in an
//              order that never has the duty cycle above the period
//              (PlanPwmWrites).
//   Adc        sysfs_dir/bus/iio/devices/<iio:deviceN>/in_voltage<C>_raw; the
//              bit count is the real bits of scan_elements/in_voltage<C>_type
//              ("le:u12/16>>0" -> 12). A driver without that file publishes
//              no sample width: AdcBits fails (EIO for the app) rather than
//              guess; sampling still works.
//   Uart       the tty is opened O_RDWR|O_NOCTTY|O_NONBLOCK|O_CLOEXEC once
//              and kept open by the backend; each open sets raw 8N1 without
//              flow control (ConfigureRawTermios) at the speed the port
//              already has, flushes its input (nothing received before the
//              open reaches the new holder) and returns a duplicate for the
//              broker to relay to the app's socket; the app never gets the
//              tty itself. Because the backend's descriptor stays open,
//              closing a handle is never the tty's last close: it neither
//              waits for the port to drain nor discards what the port still
//              has to send. A tty that hung up is opened afresh.
// Every peripheral is held by at most one handle at a time (a second Open
// is kAlreadyExists, EBUSY for the app), on top of the kernel's own
// exclusivity for GPIO lines.
//
// Errors name the peripheral, the path and what to check, e.g.
//   "Gpio LED1: opening /dev/gpiochip0: No such file or directory; is the
//    board definition right for this hardware (and its driver loaded)?"
//
// SECURITY: only the paths the board definition names (under the roots of
// LinuxBoardOptions) are touched. Transfers run synchronously on the
// broker's thread; their length is bounded by protocol::kMaxTransferBytes,
// but a slow bus delays the other apps' requests by as long as it takes.
//
// Threading: every method is thread-safe (one internal mutex).
#pragma once

#include <linux/gpio.h>
#include <termios.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "broker/peripheral_backend.hpp"

namespace citadel::broker {

// The uAPI v2 request for one line: input, or output driven at
// initial_value from the moment it is granted; consumer is cut to fit.
gpio_v2_line_request MakeGpioLineRequest(std::uint32_t line, bool output, int initial_value, std::string_view consumer);

// The real bits of an IIO scan element type, "[be|le]:[s|u]bits/storage
// [Xrepeat]>>shift" with an optional trailing newline, e.g. "le:u12/16>>0"
// -> 12. kParse for anything else or bits outside 1..32.
Expected<std::uint32_t> ParseIioSampleBits(std::string_view type);

// One write to a PWM channel's sysfs attribute.
struct SysfsWrite {
  std::string attribute;  // "period", "duty_cycle" or "enable"
  std::string value;      // as written, e.g. "20000"
  bool operator==(const SysfsWrite&) const = default;
};

// The writes that take a PWM channel from its current period and duty cycle
// to `target`: disable first when the target is disabled, then period and
// duty cycle in the order that keeps duty <= period after every write (the
// kernel refuses anything else), then enable. A zero period (only allowed
// disabled) leaves the timing as it is: the kernel refuses a zero period.
std::vector<SysfsWrite> PlanPwmWrites(std::uint64_t current_period_ns, std::uint64_t current_duty_ns,
                                      const PwmState& target);

// Raw mode for a UART: cfmakeraw, 8 data bits, no parity, one stop bit, no
// hardware or software flow control, modem lines ignored (CLOCAL), receiver
// on, read returns what is there. The speed is left unchanged.
void ConfigureRawTermios(termios& settings);

class LinuxBoard final : public PeripheralBackend {
 public:
  explicit LinuxBoard(LinuxBoardOptions options = {});
  ~LinuxBoard() override;  // discards unsent UART output rather than wait for it
  LinuxBoard(const LinuxBoard&) = delete;
  LinuxBoard& operator=(const LinuxBoard&) = delete;

  std::string_view name() const override { return "linux"; }
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

  // Where a peripheral lives under this backend's roots: the GPIO chip node,
  // the PWM channel directory, the IIO device directory; a device node as
  // given in the board for the other kinds.
  std::filesystem::path DevicePath(const app::Peripheral& peripheral) const;

 private:
  // What one open handle holds.
  struct Held {
    UniqueFd fd;  // GPIO line, I2C or SPI device; none for PWM, ADC, UART
    std::filesystem::path path;
  };

  Expected<Held> OpenGpio(const app::Peripheral& gpio, const OpenRequest& request) const;
  Expected<Held> OpenBus(const app::Peripheral& bus) const;
  Expected<Held> OpenPwm(const app::Peripheral& pwm) const;
  Expected<Held> OpenAdc(const app::Peripheral& adc) const;
  // The held state of an open peripheral (mutex_ held), or an error.
  Expected<Held*> Find(const app::Peripheral& peripheral);

  const LinuxBoardOptions options_;
  std::mutex mutex_;
  std::map<std::string, Held, std::less<>> held_;      // by ResourceKey
  std::map<std::string, UniqueFd, std::less<>> ttys_;  // UARTs opened so far, by ResourceKey
};

}  // namespace citadel::broker
