#include "broker/linux_board.hpp"

#include <fcntl.h>
#include <linux/i2c-dev.h>
#include <linux/i2c.h>
#include <linux/spi/spidev.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <system_error>

namespace citadel::broker {
namespace {

namespace fs = std::filesystem;

// Largest sysfs attribute value we read (a number and a newline).
constexpr std::size_t kMaxAttributeBytes = 64;
constexpr std::uint32_t kMaxAdcBits = 32;
constexpr std::uint16_t kMaxI2cAddress = 0x7F;

std::string ErrnoText(int error_number) { return std::strerror(error_number); }  // NOLINT(concurrency-mt-unsafe)

// "Gpio LED1": how messages name a peripheral.
std::string Label(const app::Peripheral& peripheral) {
  return std::string(app::PeripheralKindName(peripheral.kind)) + " " + peripheral.name;
}

// What to check when opening `path` failed with error_number.
std::string OpenHint(int error_number) {
  switch (error_number) {
    case ENOENT:
    case ENODEV:
    case ENXIO:
      return "is the board definition right for this hardware (and its driver loaded)?";
    case EACCES:
    case EPERM:
      return "citadeld needs read and write access to it";
    case EBUSY:
      return "another program holds it";
    default:
      return "check the device and its driver";
  }
}

Error OpenError(const app::Peripheral& peripheral, const fs::path& path, int error_number) {
  return Error(error_number == EBUSY ? ErrorCode::kAlreadyExists : ErrorCode::kIo,
               Label(peripheral) + ": opening " + path.string() + ": " + ErrnoText(error_number) + "; " +
                   OpenHint(error_number));
}

Expected<UniqueFd> OpenDevice(const app::Peripheral& peripheral, const fs::path& path, int flags) {
  int fd = -1;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return std::unexpected(OpenError(peripheral, path, errno));
  return UniqueFd(fd);
}

int RetryIoctl(int fd, unsigned long request, void* argument) {
  int result = -1;
  do {
    result = ::ioctl(fd, request, argument);
  } while (result < 0 && errno == EINTR);
  return result;
}

Expected<std::uint64_t> ParseUnsigned(std::string_view text) {
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  std::uint64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
    return MakeError(ErrorCode::kParse, "\"" + std::string(text.substr(0, 32)) + "\" is not an unsigned number");
  }
  return value;
}

// One sysfs attribute's text (sysfs hands the whole value to one read).
Expected<std::string> ReadAttribute(const app::Peripheral& peripheral, const fs::path& path) {
  CITADEL_TRY(UniqueFd fd, OpenDevice(peripheral, path, O_RDONLY));
  std::array<char, kMaxAttributeBytes> buffer{};
  ssize_t got = -1;
  do {
    got = ::read(fd.get(), buffer.data(), buffer.size());
  } while (got < 0 && errno == EINTR);
  if (got < 0) {
    return MakeError(ErrorCode::kIo, Label(peripheral) + ": reading " + path.string() + ": " + ErrnoText(errno));
  }
  return std::string(buffer.data(), static_cast<std::size_t>(got));
}

Expected<std::uint64_t> ReadUnsignedAttribute(const app::Peripheral& peripheral, const fs::path& path) {
  CITADEL_TRY(auto text, ReadAttribute(peripheral, path));
  auto value = ParseUnsigned(text);
  if (!value) return WrapError(value.error(), Label(peripheral) + ": reading " + path.string());
  return value;
}

// Writes one sysfs attribute with a single write(2), as the kernel expects;
// the file must exist (nothing is created).
Expected<void> WriteAttribute(const app::Peripheral& peripheral, const fs::path& path, std::string_view value,
                              std::string_view hint) {
  auto fail = [&](int error_number) {
    return MakeError(ErrorCode::kIo, Label(peripheral) + ": writing " + std::string(value) + " to " + path.string() +
                                         ": " + ErrnoText(error_number) + "; " + std::string(hint));
  };
  int fd = -1;
  do {
    fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return fail(errno);
  UniqueFd owned(fd);
  ssize_t put = -1;
  do {
    put = ::write(owned.get(), value.data(), value.size());
  } while (put < 0 && errno == EINTR);
  if (put < 0) return fail(errno);
  if (static_cast<std::size_t>(put) != value.size()) return fail(EIO);
  return kOk;
}

std::string AddressText(std::uint16_t address) {
  constexpr std::string_view kHex = "0123456789abcdef";
  std::string text = "0x";
  text += kHex[(address >> 4) & 0xF];
  text += kHex[address & 0xF];
  return text;
}

}  // namespace

gpio_v2_line_request MakeGpioLineRequest(std::uint32_t line, bool output, int initial_value,
                                         std::string_view consumer) {
  gpio_v2_line_request request{};
  request.offsets[0] = line;
  request.num_lines = 1;
  const std::size_t length = std::min(consumer.size(), sizeof(request.consumer) - 1);
  std::copy_n(consumer.begin(), length, std::begin(request.consumer));
  if (output) {
    request.config.flags = GPIO_V2_LINE_FLAG_OUTPUT;
    // The initial level is part of the request, so the line is never driven
    // at a level the app did not ask for.
    request.config.num_attrs = 1;
    request.config.attrs[0].attr.id = GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES;
    request.config.attrs[0].attr.values = initial_value != 0 ? 1U : 0U;
    request.config.attrs[0].mask = 1;  // bit 0: the request's one line
  } else {
    request.config.flags = GPIO_V2_LINE_FLAG_INPUT;
  }
  return request;
}

Expected<std::uint32_t> ParseIioSampleBits(std::string_view type) {
  const std::string original(type.substr(0, 32));
  auto fail = [&] {
    return MakeError(ErrorCode::kParse, "\"" + original + "\" is not an IIO scan element type (e.g. \"le:u12/16>>0\")");
  };
  if (!type.empty() && type.back() == '\n') type.remove_suffix(1);
  if (!(type.starts_with("le:") || type.starts_with("be:"))) return fail();
  type.remove_prefix(3);
  if (type.empty() || (type.front() != 'u' && type.front() != 's')) return fail();
  type.remove_prefix(1);
  // Reads a decimal number at the front of `type`.
  auto number = [&type]() -> std::optional<std::uint32_t> {
    std::uint32_t value = 0;
    auto [end, error] = std::from_chars(type.data(), type.data() + type.size(), value);
    if (error != std::errc()) return std::nullopt;
    type.remove_prefix(static_cast<std::size_t>(end - type.data()));
    return value;
  };
  auto bits = number();
  if (!bits || !type.starts_with('/')) return fail();
  type.remove_prefix(1);
  auto storage = number();
  if (!storage) return fail();
  if (type.starts_with('X')) {
    type.remove_prefix(1);
    if (!number()) return fail();
  }
  if (!type.starts_with(">>")) return fail();
  type.remove_prefix(2);
  if (!number() || !type.empty()) return fail();
  if (*bits == 0 || *bits > kMaxAdcBits || *bits > *storage) {
    return MakeError(ErrorCode::kParse, "\"" + original + "\" has " + std::to_string(*bits) +
                                            " bits per sample; 1 to 32 (and at most the storage size) are supported");
  }
  return *bits;
}

std::vector<SysfsWrite> PlanPwmWrites(std::uint64_t current_period_ns, std::uint64_t current_duty_ns,
                                      const PwmState& target) {
  (void)current_duty_ns;  // the kernel keeps duty <= period, so the period decides the order
  std::vector<SysfsWrite> writes;
  if (!target.enabled) writes.push_back({"enable", "0"});
  if (target.period_ns != 0) {
    SysfsWrite period{"period", std::to_string(target.period_ns)};
    SysfsWrite duty{"duty_cycle", std::to_string(target.duty_cycle_ns)};
    if (target.period_ns >= current_period_ns) {
      // Growing: the old duty fits the new period; then the new duty.
      writes.push_back(std::move(period));
      writes.push_back(std::move(duty));
    } else {
      // Shrinking: the new duty fits the old period; then the new period.
      writes.push_back(std::move(duty));
      writes.push_back(std::move(period));
    }
  }
  if (target.enabled) writes.push_back({"enable", "1"});
  return writes;
}

void ConfigureRawTermios(termios& settings) {
  ::cfmakeraw(&settings);
  settings.c_cflag &= ~static_cast<tcflag_t>(CSTOPB | CRTSCTS);
  settings.c_cflag |= static_cast<tcflag_t>(CLOCAL | CREAD);
  settings.c_iflag &= ~static_cast<tcflag_t>(IXON | IXOFF | IXANY);
  settings.c_cc[VMIN] = 1;
  settings.c_cc[VTIME] = 0;
}

LinuxBoard::LinuxBoard(LinuxBoardOptions options) : options_(std::move(options)) {}

LinuxBoard::~LinuxBoard() {
  // The last close of a tty waits for its output to drain (up to 30 s on a
  // stalled port); at shutdown, drop it instead.
  for (auto& [key, tty] : ttys_) (void)::tcflush(tty.get(), TCOFLUSH);
}

fs::path LinuxBoard::DevicePath(const app::Peripheral& peripheral) const {
  switch (peripheral.kind) {
    case app::PeripheralKind::kGpio:
      return options_.dev_dir / peripheral.device;
    case app::PeripheralKind::kPwm:
      return options_.sysfs_dir / "class/pwm" / peripheral.device /
             ("pwm" + std::to_string(peripheral.index.value_or(0)));
    case app::PeripheralKind::kAdc:
      return options_.sysfs_dir / "bus/iio/devices" / peripheral.device;
    case app::PeripheralKind::kUart:
    case app::PeripheralKind::kI2cMaster:
    case app::PeripheralKind::kSpiMaster:
      break;
  }
  return peripheral.device;
}

Expected<void> LinuxBoard::Open(const app::Peripheral& peripheral, const OpenRequest& request) {
  std::lock_guard lock(mutex_);
  const std::string key = peripheral.ResourceKey();
  if (held_.contains(key)) {
    return MakeError(ErrorCode::kAlreadyExists, Label(peripheral) + " is already open in another handle");
  }
  Expected<Held> held = [&]() -> Expected<Held> {
    switch (peripheral.kind) {
      case app::PeripheralKind::kGpio:
        return OpenGpio(peripheral, request);
      case app::PeripheralKind::kI2cMaster:
      case app::PeripheralKind::kSpiMaster:
        return OpenBus(peripheral);
      case app::PeripheralKind::kPwm:
        return OpenPwm(peripheral);
      case app::PeripheralKind::kAdc:
        return OpenAdc(peripheral);
      case app::PeripheralKind::kUart:
        break;
    }
    return MakeError(ErrorCode::kInternal, Label(peripheral) + ": a UART is opened with OpenUart");
  }();
  if (!held) return std::unexpected(held.error());
  held_.emplace(key, std::move(*held));
  return kOk;
}

Expected<LinuxBoard::Held> LinuxBoard::OpenGpio(const app::Peripheral& gpio, const OpenRequest& request) const {
  const fs::path chip_path = DevicePath(gpio);
  CITADEL_TRY(UniqueFd chip, OpenDevice(gpio, chip_path, O_RDWR));
  const std::uint32_t line = gpio.index.value_or(0);
  gpio_v2_line_request line_request =
      MakeGpioLineRequest(line, request.gpio_output, request.gpio_initial_value, request.consumer);
  if (RetryIoctl(chip.get(), GPIO_V2_GET_LINE_IOCTL, &line_request) < 0) {
    const int error_number = errno;
    std::string hint = "check the chip and the line";
    if (error_number == EBUSY) {
      hint = "another program holds the line (see gpioinfo)";
    } else if (error_number == ENOTTY) {
      hint = "is it a GPIO character device (kernel 5.10 or later for uAPI v2)?";
    } else if (error_number == EINVAL) {
      hint = "does the chip have that line?";
    }
    return MakeError(error_number == EBUSY ? ErrorCode::kAlreadyExists : ErrorCode::kIo,
                     Label(gpio) + ": requesting line " + std::to_string(line) + " of " + chip_path.string() + ": " +
                         ErrnoText(error_number) + "; " + hint);
  }
  Held held;
  held.fd.Reset(line_request.fd);
  held.path = chip_path;
  return held;
}

Expected<LinuxBoard::Held> LinuxBoard::OpenBus(const app::Peripheral& bus) const {
  const fs::path path = DevicePath(bus);
  CITADEL_TRY(UniqueFd fd, OpenDevice(bus, path, O_RDWR));
  // Ask the driver something only the right kind of device answers, so a
  // board that names the wrong node fails here, not at the first transfer.
  if (bus.kind == app::PeripheralKind::kI2cMaster) {
    unsigned long functions = 0;  // NOLINT(google-runtime-int): the ioctl's type
    if (RetryIoctl(fd.get(), I2C_FUNCS, &functions) < 0) {
      return MakeError(ErrorCode::kIo, Label(bus) + ": " + path.string() + " is not an I2C adapter (I2C_FUNCS: " +
                                           ErrnoText(errno) + "); is it an i2c-dev node (modprobe i2c-dev)?");
    }
    if ((functions & I2C_FUNC_I2C) == 0) {
      return MakeError(ErrorCode::kIo, Label(bus) + ": the adapter behind " + path.string() +
                                           " supports only SMBus transfers, not plain I2C (I2C_RDWR)");
    }
  } else {
    std::uint8_t mode = 0;
    if (RetryIoctl(fd.get(), SPI_IOC_RD_MODE, &mode) < 0) {
      return MakeError(ErrorCode::kIo, Label(bus) + ": " + path.string() +
                                           " is not an spidev device (SPI_IOC_RD_MODE: " + ErrnoText(errno) +
                                           "); is the board definition right for this hardware?");
    }
  }
  Held held;
  held.fd = std::move(fd);
  held.path = path;
  return held;
}

Expected<LinuxBoard::Held> LinuxBoard::OpenPwm(const app::Peripheral& pwm) const {
  const fs::path channel_path = DevicePath(pwm);
  const fs::path chip_path = channel_path.parent_path();
  std::error_code error;
  if (!fs::is_directory(chip_path, error)) {
    return MakeError(ErrorCode::kIo, Label(pwm) + ": " + chip_path.string() +
                                         " does not exist; is the board definition right for this hardware (and "
                                         "the PWM driver loaded)?");
  }
  if (!fs::is_directory(channel_path, error)) {
    const std::string channel = std::to_string(pwm.index.value_or(0));
    CITADEL_TRY_VOID(WriteAttribute(pwm, chip_path / "export", channel,
                                    "does the chip have that channel (see " + (chip_path / "npwm").string() + ")?"));
    // The kernel creates the channel's directory before the write returns.
    if (!fs::is_directory(channel_path, error)) {
      return MakeError(ErrorCode::kIo, Label(pwm) + ": exported channel " + channel + " but " + channel_path.string() +
                                           " did not appear");
    }
  }
  Held held;
  held.path = channel_path;
  return held;
}

Expected<LinuxBoard::Held> LinuxBoard::OpenAdc(const app::Peripheral& adc) const {
  const fs::path device_path = DevicePath(adc);
  std::error_code error;
  if (!fs::is_directory(device_path, error)) {
    return MakeError(ErrorCode::kIo, Label(adc) + ": " + device_path.string() +
                                         " does not exist; is the board definition right for this hardware (and "
                                         "the ADC driver loaded)?");
  }
  const fs::path raw = device_path / ("in_voltage" + std::to_string(adc.index.value_or(0)) + "_raw");
  if (::access(raw.c_str(), R_OK) != 0) {
    return MakeError(ErrorCode::kIo, Label(adc) + ": " + raw.string() + ": " + ErrnoText(errno) +
                                         "; does the IIO device have voltage channel " +
                                         std::to_string(adc.index.value_or(0)) + "?");
  }
  Held held;
  held.path = device_path;
  return held;
}

Expected<UniqueFd> LinuxBoard::OpenUart(const app::Peripheral& uart) {
  std::lock_guard lock(mutex_);
  const std::string key = uart.ResourceKey();
  if (held_.contains(key)) {
    return MakeError(ErrorCode::kAlreadyExists, Label(uart) + " is already open in another handle");
  }
  const fs::path path = DevicePath(uart);
  termios settings{};
  auto kept = ttys_.find(key);
  if (kept != ttys_.end() && ::tcgetattr(kept->second.get(), &settings) != 0) {
    ttys_.erase(kept);  // hung up (e.g. a USB adapter went away): open it afresh
    kept = ttys_.end();
  }
  if (kept == ttys_.end()) {
    CITADEL_TRY(UniqueFd fd, OpenDevice(uart, path, O_RDWR | O_NOCTTY | O_NONBLOCK));
    if (::tcgetattr(fd.get(), &settings) != 0) {
      return MakeError(ErrorCode::kIo, Label(uart) + ": " + path.string() + " is not a terminal (tcgetattr: " +
                                           ErrnoText(errno) + "); is the board definition right for this hardware?");
    }
    kept = ttys_.emplace(key, std::move(fd)).first;
  }
  const int tty = kept->second.get();
  ConfigureRawTermios(settings);
  if (::tcsetattr(tty, TCSANOW, &settings) != 0) {
    return MakeError(ErrorCode::kIo, Label(uart) + ": setting raw mode on " + path.string() + ": " + ErrnoText(errno));
  }
  // Nothing received before this open reaches the new holder. Output still
  // queued from the previous one keeps going out.
  if (::tcflush(tty, TCIFLUSH) != 0) {
    return MakeError(ErrorCode::kIo, Label(uart) + ": flushing " + path.string() + ": " + ErrnoText(errno));
  }
  UniqueFd handle(::fcntl(tty, F_DUPFD_CLOEXEC, 0));
  if (!handle) {
    return MakeError(ErrorCode::kIo,
                     Label(uart) + ": duplicating the descriptor of " + path.string() + ": " + ErrnoText(errno));
  }
  Held held;
  held.path = path;
  held_.emplace(key, std::move(held));
  return handle;
}

void LinuxBoard::Close(const app::Peripheral& peripheral) {
  std::lock_guard lock(mutex_);
  // Closing the GPIO line descriptor hands the line back to the kernel.
  held_.erase(peripheral.ResourceKey());
}

Expected<LinuxBoard::Held*> LinuxBoard::Find(const app::Peripheral& peripheral) {
  auto it = held_.find(peripheral.ResourceKey());
  if (it == held_.end()) return MakeError(ErrorCode::kFailedPrecondition, Label(peripheral) + " is not open");
  return &it->second;
}

Expected<int> LinuxBoard::ReadGpio(const app::Peripheral& gpio) {
  std::lock_guard lock(mutex_);
  CITADEL_TRY(Held * held, Find(gpio));
  gpio_v2_line_values values{};
  values.mask = 1;
  if (RetryIoctl(held->fd.get(), GPIO_V2_LINE_GET_VALUES_IOCTL, &values) < 0) {
    return MakeError(ErrorCode::kIo, Label(gpio) + ": reading line " + std::to_string(gpio.index.value_or(0)) + " of " +
                                         held->path.string() + ": " + ErrnoText(errno));
  }
  return (values.bits & 1U) != 0 ? 1 : 0;
}

Expected<void> LinuxBoard::WriteGpio(const app::Peripheral& gpio, int level) {
  std::lock_guard lock(mutex_);
  CITADEL_TRY(Held * held, Find(gpio));
  gpio_v2_line_values values{};
  values.mask = 1;
  values.bits = level != 0 ? 1U : 0U;
  if (RetryIoctl(held->fd.get(), GPIO_V2_LINE_SET_VALUES_IOCTL, &values) < 0) {
    return MakeError(ErrorCode::kIo, Label(gpio) + ": setting line " + std::to_string(gpio.index.value_or(0)) + " of " +
                                         held->path.string() + ": " + ErrnoText(errno));
  }
  return kOk;
}

Expected<Bytes> LinuxBoard::TransferI2c(const app::Peripheral& bus, std::uint16_t address,
                                        std::span<const std::uint8_t> write, std::size_t read_length) {
  if (address > kMaxI2cAddress) {
    return MakeError(ErrorCode::kInvalidArgument, Label(bus) + ": I2C address is not a 7-bit address");
  }
  if (write.size() > UINT16_MAX || read_length > UINT16_MAX) {
    return MakeError(ErrorCode::kInvalidArgument, Label(bus) + ": an I2C message is at most 65535 bytes");
  }
  std::lock_guard lock(mutex_);
  CITADEL_TRY(Held * held, Find(bus));
  Bytes out(write.begin(), write.end());  // i2c_msg wants a mutable buffer
  Bytes in(read_length);
  std::array<i2c_msg, 2> messages{};
  std::uint32_t count = 0;
  // Nothing to write or read is a zero-length write: the address alone,
  // which tells whether a device answers there.
  if (!out.empty() || in.empty()) {
    messages[count++] = i2c_msg{address, 0, static_cast<std::uint16_t>(out.size()), out.data()};
  }
  if (!in.empty()) {
    messages[count++] = i2c_msg{address, I2C_M_RD, static_cast<std::uint16_t>(in.size()), in.data()};
  }
  i2c_rdwr_ioctl_data transfer{messages.data(), count};
  int done = RetryIoctl(held->fd.get(), I2C_RDWR, &transfer);
  if (done < 0) {
    const int error_number = errno;
    if (error_number == ENXIO || error_number == EREMOTEIO) {
      return MakeError(ErrorCode::kNotFound, Label(bus) + ": no device acknowledged address " + AddressText(address) +
                                                 " on " + held->path.string());
    }
    if (error_number == EOPNOTSUPP) {
      return MakeError(ErrorCode::kInvalidArgument,
                       Label(bus) + ": the adapter behind " + held->path.string() + " does not support this transfer");
    }
    return MakeError(ErrorCode::kIo, Label(bus) + ": transfer at " + AddressText(address) + " on " +
                                         held->path.string() + " failed: " + ErrnoText(error_number));
  }
  if (static_cast<std::uint32_t>(done) != count) {
    return MakeError(ErrorCode::kIo, Label(bus) + ": transfer at " + AddressText(address) + " on " +
                                         held->path.string() + " stopped after " + std::to_string(done) + " of " +
                                         std::to_string(count) + " messages");
  }
  return in;
}

Expected<Bytes> LinuxBoard::TransferSpi(const app::Peripheral& bus, std::span<const std::uint8_t> tx) {
  if (tx.size() > UINT32_MAX) {
    return MakeError(ErrorCode::kInvalidArgument, Label(bus) + ": the SPI transfer is too long");
  }
  std::lock_guard lock(mutex_);
  CITADEL_TRY(Held * held, Find(bus));
  Bytes rx(tx.size());
  if (tx.empty()) return rx;  // nothing to clock
  spi_ioc_transfer transfer{};
  transfer.tx_buf = reinterpret_cast<std::uintptr_t>(tx.data());  // NOLINT: the uAPI carries pointers as u64
  transfer.rx_buf = reinterpret_cast<std::uintptr_t>(rx.data());  // NOLINT: the uAPI carries pointers as u64
  transfer.len = static_cast<std::uint32_t>(tx.size());
  if (RetryIoctl(held->fd.get(), SPI_IOC_MESSAGE(1), &transfer) < 0) {
    const int error_number = errno;
    if (error_number == EMSGSIZE) {
      return MakeError(ErrorCode::kInvalidArgument,
                       Label(bus) + ": " + std::to_string(tx.size()) + " bytes exceed what " + held->path.string() +
                           " takes in one transfer (spidev's bufsiz module parameter, 4096 by default)");
    }
    return MakeError(ErrorCode::kIo,
                     Label(bus) + ": transfer on " + held->path.string() + " failed: " + ErrnoText(error_number));
  }
  return rx;
}

Expected<void> LinuxBoard::ConfigurePwm(const app::Peripheral& pwm, const PwmState& state) {
  if (state.duty_cycle_ns > state.period_ns || (state.enabled && state.period_ns == 0)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     Label(pwm) + ": the duty cycle exceeds the period, or an enabled PWM has none");
  }
  std::lock_guard lock(mutex_);
  CITADEL_TRY(Held * held, Find(pwm));
  const fs::path& channel = held->path;
  CITADEL_TRY(std::uint64_t period, ReadUnsignedAttribute(pwm, channel / "period"));
  CITADEL_TRY(std::uint64_t duty, ReadUnsignedAttribute(pwm, channel / "duty_cycle"));
  for (const SysfsWrite& write : PlanPwmWrites(period, duty, state)) {
    CITADEL_TRY_VOID(WriteAttribute(pwm, channel / write.attribute, write.value,
                                    "does the hardware support this period and duty cycle?"));
  }
  return kOk;
}

Expected<std::uint32_t> LinuxBoard::ReadAdc(const app::Peripheral& adc) {
  std::lock_guard lock(mutex_);
  CITADEL_TRY(Held * held, Find(adc));
  const fs::path raw = held->path / ("in_voltage" + std::to_string(adc.index.value_or(0)) + "_raw");
  CITADEL_TRY(auto text, ReadAttribute(adc, raw));
  auto value = ParseUnsigned(text);
  if (!value || *value > UINT32_MAX) {
    return MakeError(ErrorCode::kIo, Label(adc) + ": " + raw.string() + " holds \"" + std::string(text.substr(0, 32)) +
                                         "\", not an unsigned 32-bit sample (signed channels are not supported)");
  }
  return static_cast<std::uint32_t>(*value);
}

Expected<void> LinuxBoard::SetSystemTime(std::chrono::system_clock::time_point time) {
  auto since_epoch = std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch());
  timespec value{};
  value.tv_sec = static_cast<time_t>(since_epoch.count() / 1'000'000'000);
  value.tv_nsec = static_cast<long>(since_epoch.count() % 1'000'000'000);
  int rc = options_.set_realtime_clock ? options_.set_realtime_clock(value) : ::clock_settime(CLOCK_REALTIME, &value);
  if (rc != 0) {
    int error_number = errno;
    return MakeError(error_number == EPERM ? ErrorCode::kPermissionDenied : ErrorCode::kIo,
                     "setting the system clock: " + ErrnoText(error_number) +
                         (error_number == EPERM ? "; citadeld needs CAP_SYS_TIME" : ""));
  }
  return kOk;
}

Expected<std::uint32_t> LinuxBoard::AdcBits(const app::Peripheral& adc) {
  std::lock_guard lock(mutex_);
  CITADEL_TRY(Held * held, Find(adc));
  const fs::path type = held->path / "scan_elements" / ("in_voltage" + std::to_string(adc.index.value_or(0)) + "_type");
  if (::access(type.c_str(), R_OK) != 0) {
    return MakeError(ErrorCode::kIo, Label(adc) + ": the sample width is unknown: " + type.string() + ": " +
                                         ErrnoText(errno) +
                                         " (the driver publishes no scan element type for this channel)");
  }
  CITADEL_TRY(auto text, ReadAttribute(adc, type));
  auto bits = ParseIioSampleBits(text);
  if (!bits) return WrapError(bits.error(), Label(adc) + ": " + type.string());
  return bits;
}

}  // namespace citadel::broker
