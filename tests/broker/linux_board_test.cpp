// Tests of the Linux hardware backend. This machine has no GPIO chips, I2C
// adapters or spidev nodes, so:
//   * UART is tested for real on a pseudo-terminal (the board's UART is the
//     pty's slave; the test plays the device on the master), directly and
//     through a Broker with a real applibs app;
//   * PWM and ADC run against a temporary sysfs tree (LinuxBoardOptions);
//   * GPIO, I2C and SPI are tested on their error paths (missing nodes,
//     nodes of the wrong kind) and through their pure helpers.
// LinuxBoardTest.* are unit tests; LinuxBrokerTest.* run forked apps.
#include "broker/linux_board.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "app/manifest.hpp"
#include "app/policy.hpp"
#include "applibs/applibs.h"
#include "broker/broker.hpp"
#include "support/temp_dir.hpp"

#include "app_process.hpp"

namespace citadel::broker {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using citadel::testing::TempDir;
using testing::RunApp;

// A LinuxBoard over a temporary tree. Setting the time fails the test: no
// test may move the machine's clock.
LinuxBoardOptions TestOptions(const fs::path& dev_dir, const fs::path& sysfs_dir) {
  LinuxBoardOptions options;
  options.dev_dir = dev_dir;
  options.sysfs_dir = sysfs_dir;
  options.set_realtime_clock = [](const timespec&) {
    ADD_FAILURE() << "a test tried to set the system clock";
    errno = EPERM;
    return -1;
  };
  return options;
}

constexpr const char* kAppA = "aaaaaaaa-0000-4000-8000-00000000000a";

// ---- helpers ------------------------------------------------------------------

void WriteText(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

app::Peripheral MakePeripheral(app::PeripheralKind kind, std::string name, std::string device,
                               std::optional<std::uint32_t> index = std::nullopt) {
  app::Peripheral peripheral;
  peripheral.kind = kind;
  peripheral.name = std::move(name);
  peripheral.device = std::move(device);
  peripheral.index = index;
  return peripheral;
}

// The message contains every needle (an error a person can act on).
::testing::AssertionResult Mentions(const Error& error, std::initializer_list<std::string_view> needles) {
  for (std::string_view needle : needles) {
    if (error.message().find(needle) == std::string::npos) {
      return ::testing::AssertionFailure() << "\"" << error.message() << "\" does not mention \"" << needle << "\"";
    }
  }
  return ::testing::AssertionSuccess();
}

// A pseudo-terminal: the board's UART is the slave, the test is the device
// on the master (non-blocking).
struct Pty {
  Pty() {
    int master_fd = -1;
    int slave_fd = -1;
    if (::openpty(&master_fd, &slave_fd, nullptr, nullptr, nullptr) != 0) std::abort();
    master.Reset(master_fd);
    slave.Reset(slave_fd);
    std::array<char, 128> name{};
    if (::ptsname_r(master.get(), name.data(), name.size()) != 0) std::abort();
    path = name.data();
    int flags = ::fcntl(master.get(), F_GETFL);
    if (flags < 0 || ::fcntl(master.get(), F_SETFL, flags | O_NONBLOCK) != 0) std::abort();
  }
  UniqueFd master;
  UniqueFd slave;  // kept open so the master never sees the slave side vanish
  std::string path;
};

// Every byte value, so raw mode is checked too (^C, ^S/^Q, CR, NL, DEL...).
std::string Pattern(std::size_t size, std::size_t seed) {
  std::string text(size, '\0');
  for (std::size_t i = 0; i < size; ++i) text[i] = static_cast<char>((i * 7 + seed) & 0xFF);
  return text;
}

// ---- pure helpers -------------------------------------------------------------

TEST(LinuxBoardTest, GpioLineRequestForAnOutputCarriesItsInitialLevel) {
  gpio_v2_line_request request = MakeGpioLineRequest(17, true, 1, "citadel:aaaaaaaa-0000-4000-8000-00000000000a");
  EXPECT_EQ(request.num_lines, 1U);
  EXPECT_EQ(request.offsets[0], 17U);
  EXPECT_EQ(request.config.flags, static_cast<std::uint64_t>(GPIO_V2_LINE_FLAG_OUTPUT));
  ASSERT_EQ(request.config.num_attrs, 1U);
  EXPECT_EQ(request.config.attrs[0].attr.id, static_cast<std::uint32_t>(GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES));
  EXPECT_EQ(request.config.attrs[0].attr.values, 1U);
  EXPECT_EQ(request.config.attrs[0].mask, 1U);
  // Cut to the kernel's 31 bytes plus the terminator.
  EXPECT_EQ(std::string(request.consumer), std::string("citadel:aaaaaaaa-0000-4000-8000-00000000000a").substr(0, 31));
  EXPECT_EQ(request.event_buffer_size, 0U);

  gpio_v2_line_request low = MakeGpioLineRequest(0, true, 0, "citadel");
  EXPECT_EQ(low.config.attrs[0].attr.values, 0U);
  EXPECT_EQ(low.config.attrs[0].mask, 1U);
  EXPECT_EQ(std::string(low.consumer), "citadel");
}

TEST(LinuxBoardTest, GpioLineRequestForAnInputDrivesNothing) {
  gpio_v2_line_request request = MakeGpioLineRequest(4, false, 1, "citadel");
  EXPECT_EQ(request.offsets[0], 4U);
  EXPECT_EQ(request.config.flags, static_cast<std::uint64_t>(GPIO_V2_LINE_FLAG_INPUT));
  EXPECT_EQ(request.config.num_attrs, 0U);
}

TEST(LinuxBoardTest, ParsesIioScanElementTypes) {
  EXPECT_EQ(ParseIioSampleBits("le:u12/16>>0"), 12U);
  EXPECT_EQ(ParseIioSampleBits("le:u12/16>>0\n"), 12U);
  EXPECT_EQ(ParseIioSampleBits("be:s16/16>>0\n"), 16U);
  EXPECT_EQ(ParseIioSampleBits("le:s12/16X2>>4"), 12U);
  EXPECT_EQ(ParseIioSampleBits("le:u24/32>>8"), 24U);
  EXPECT_EQ(ParseIioSampleBits("be:u32/32>>0"), 32U);
  for (std::string_view bad : {"", "12", "xx:u12/16>>0", "le:f12/16>>0", "le:u12/16", "le:u12>>0", "le:u/16>>0",
                               "le:u12/16>>", "le:u12/16>>0 ", "le:u12/16X>>0", "le:u12/16>>0\n\n"}) {
    auto bits = ParseIioSampleBits(bad);
    ASSERT_FALSE(bits) << bad;
    EXPECT_EQ(bits.error().code(), ErrorCode::kParse) << bad;
  }
  auto zero = ParseIioSampleBits("le:u0/16>>0");
  ASSERT_FALSE(zero);
  EXPECT_TRUE(Mentions(zero.error(), {"0 bits"}));
  EXPECT_FALSE(ParseIioSampleBits("le:u33/64>>0"));  // wider than a sample the API returns
  EXPECT_FALSE(ParseIioSampleBits("le:u12/8>>0"));   // more bits than storage
}

// Applies the planned writes to a model of the kernel's PWM state, which
// refuses (like the kernel) any write that leaves duty > period or a zero
// period, and checks every intermediate state.
void ExpectPlanIsAccepted(std::uint64_t period, std::uint64_t duty, const PwmState& target) {
  bool enabled = true;
  for (const SysfsWrite& write : PlanPwmWrites(period, duty, target)) {
    std::uint64_t value = std::stoull(write.value);
    if (write.attribute == "period") {
      ASSERT_NE(value, 0U) << "zero period";
      ASSERT_LE(duty, value) << "period " << value << " below duty " << duty;
      period = value;
    } else if (write.attribute == "duty_cycle") {
      ASSERT_LE(value, period) << "duty " << value << " above period " << period;
      duty = value;
    } else {
      ASSERT_EQ(write.attribute, "enable");
      enabled = value == 1;
    }
  }
  EXPECT_EQ(enabled, target.enabled);
  if (target.period_ns != 0) {
    EXPECT_EQ(period, target.period_ns);
    EXPECT_EQ(duty, target.duty_cycle_ns);
  }
}

TEST(LinuxBoardTest, PwmWritesNeverLeaveTheDutyAboveThePeriod) {
  // Growing: period first. Shrinking: duty first. Disable first, enable last.
  EXPECT_EQ(PlanPwmWrites(0, 0, PwmState{20000, 5000, true}),
            (std::vector<SysfsWrite>{{"period", "20000"}, {"duty_cycle", "5000"}, {"enable", "1"}}));
  EXPECT_EQ(PlanPwmWrites(20000, 15000, PwmState{1000, 500, true}),
            (std::vector<SysfsWrite>{{"duty_cycle", "500"}, {"period", "1000"}, {"enable", "1"}}));
  EXPECT_EQ(PlanPwmWrites(20000, 5000, PwmState{10000, 2000, false}),
            (std::vector<SysfsWrite>{{"enable", "0"}, {"duty_cycle", "2000"}, {"period", "10000"}}));
  // The kernel refuses a zero period: disabling with one keeps the timing.
  EXPECT_EQ(PlanPwmWrites(20000, 5000, PwmState{0, 0, false}), (std::vector<SysfsWrite>{{"enable", "0"}}));

  const std::array<std::uint64_t, 5> periods{0, 1, 1000, 20000, 4000000000};
  for (std::uint64_t period : periods) {
    for (std::uint64_t duty : periods) {
      if (duty > period) continue;  // the kernel never holds such a state
      for (std::uint32_t target_period : {0U, 1U, 1000U, 20000U, 4000000000U}) {
        for (std::uint32_t target_duty : {0U, 1U, 999U, 20000U, 4000000000U}) {
          if (target_duty > target_period) continue;  // refused by the broker
          for (bool enabled : {false, true}) {
            if (enabled && target_period == 0) continue;
            SCOPED_TRACE(std::to_string(period) + "/" + std::to_string(duty) + " -> " + std::to_string(target_period) +
                         "/" + std::to_string(target_duty) + (enabled ? " on" : " off"));
            ExpectPlanIsAccepted(period, duty, PwmState{target_period, target_duty, enabled});
          }
        }
      }
    }
  }
}

TEST(LinuxBoardTest, RawTermiosIsEightNoneOneWithoutFlowControlAtTheSameSpeed) {
  termios settings{};
  settings.c_iflag = ICRNL | IXON | IXOFF | BRKINT;
  settings.c_oflag = OPOST | ONLCR;
  settings.c_cflag = CS7 | PARENB | CSTOPB | CRTSCTS | HUPCL;
  settings.c_lflag = ICANON | ECHO | ISIG | IEXTEN;
  ASSERT_EQ(::cfsetispeed(&settings, B9600), 0);
  ASSERT_EQ(::cfsetospeed(&settings, B9600), 0);
  ConfigureRawTermios(settings);
  EXPECT_EQ(settings.c_lflag & (ICANON | ECHO | ISIG | IEXTEN), 0U);
  EXPECT_EQ(settings.c_iflag & (ICRNL | IXON | IXOFF | IXANY | BRKINT), 0U);
  EXPECT_EQ(settings.c_oflag & OPOST, 0U);
  EXPECT_EQ(settings.c_cflag & CSIZE, static_cast<tcflag_t>(CS8));
  EXPECT_EQ(settings.c_cflag & (PARENB | CSTOPB | CRTSCTS), 0U);
  EXPECT_EQ(settings.c_cflag & (CLOCAL | CREAD), static_cast<tcflag_t>(CLOCAL | CREAD));
  EXPECT_EQ(settings.c_cc[VMIN], 1);
  EXPECT_EQ(settings.c_cc[VTIME], 0);
  EXPECT_EQ(::cfgetispeed(&settings), static_cast<speed_t>(B9600));
  EXPECT_EQ(::cfgetospeed(&settings), static_cast<speed_t>(B9600));
}

TEST(LinuxBoardTest, TheBoardDefinitionChoosesTheBackend) {
  app::BoardDefinition board;
  board.backend = app::BoardBackend::kSimulated;
  EXPECT_EQ(CreatePeripheralBackend(board, {})->name(), "simulated");
  board.backend = app::BoardBackend::kLinux;
  EXPECT_EQ(CreatePeripheralBackend(board, {})->name(), "linux");
  EXPECT_EQ(ErrnoForBackendError(Error(ErrorCode::kInvalidArgument, "")), EINVAL);
  EXPECT_EQ(ErrnoForBackendError(Error(ErrorCode::kAlreadyExists, "")), EBUSY);
  EXPECT_EQ(ErrnoForBackendError(Error(ErrorCode::kNotFound, "")), EIO);  // an I2C NACK
  EXPECT_EQ(ErrnoForBackendError(Error(ErrorCode::kIo, "")), EIO);
}

// ---- GPIO, I2C, SPI: error paths -----------------------------------------------

TEST(LinuxBoardTest, GpioOnAMissingChipNamesThePeripheralAndThePath) {
  TempDir root;
  LinuxBoard board(TestOptions(root.path(), root.path()));
  auto led = MakePeripheral(app::PeripheralKind::kGpio, "LED1", "gpiochip0", 17);
  EXPECT_EQ(board.DevicePath(led), root.path() / "gpiochip0");
  auto opened = board.Open(led, OpenRequest{true, 1, "citadel:test"});
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code(), ErrorCode::kIo);
  EXPECT_TRUE(Mentions(opened.error(),
                       {"Gpio LED1", (root.path() / "gpiochip0").string(), "No such file", "board definition"}));
  // Never opened: every operation fails, none crashes.
  EXPECT_FALSE(board.ReadGpio(led));
  EXPECT_FALSE(board.WriteGpio(led, 1));
  board.Close(led);
}

TEST(LinuxBoardTest, GpioOnANonDeviceFileFailsTheLineRequestClearly) {
  TempDir root;
  WriteText(root.path() / "gpiochip0", "not a chip");
  LinuxBoard board(TestOptions(root.path(), root.path()));
  auto led = MakePeripheral(app::PeripheralKind::kGpio, "LED1", "gpiochip0", 17);
  auto opened = board.Open(led, OpenRequest{false, 0, "citadel:test"});
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code(), ErrorCode::kIo);
  EXPECT_TRUE(Mentions(opened.error(), {"Gpio LED1: requesting line 17 of " + (root.path() / "gpiochip0").string(),
                                        "Inappropriate ioctl", "GPIO character device"}));
  auto read = board.ReadGpio(led);
  ASSERT_FALSE(read);
  EXPECT_TRUE(Mentions(read.error(), {"Gpio LED1", "not open"}));
}

TEST(LinuxBoardTest, I2cAndSpiOnMissingNodesNameThePeripheralAndThePath) {
  LinuxBoard board;
  auto i2c = MakePeripheral(app::PeripheralKind::kI2cMaster, "I2C7", "/dev/i2c-citadel-test-missing");
  auto opened = board.Open(i2c, {});
  ASSERT_FALSE(opened);
  EXPECT_TRUE(Mentions(opened.error(),
                       {"I2cMaster I2C7", "/dev/i2c-citadel-test-missing", "No such file", "board definition"}));
  auto spi = MakePeripheral(app::PeripheralKind::kSpiMaster, "SPI7", "/dev/spidev-citadel-test-missing");
  opened = board.Open(spi, {});
  ASSERT_FALSE(opened);
  EXPECT_TRUE(Mentions(opened.error(), {"SpiMaster SPI7", "/dev/spidev-citadel-test-missing", "No such file"}));
  auto transfer = board.TransferI2c(i2c, 0x48, {}, 2);
  ASSERT_FALSE(transfer);
  EXPECT_TRUE(Mentions(transfer.error(), {"not open"}));
  EXPECT_FALSE(board.TransferSpi(spi, Bytes{1, 2}));
}

TEST(LinuxBoardTest, I2cAndSpiOnNodesOfTheWrongKindAreRefusedAtOpen) {
  TempDir root;
  WriteText(root.path() / "regular", "x");
  LinuxBoard board;
  for (const std::string& device : {std::string("/dev/null"), (root.path() / "regular").string()}) {
    auto i2c = MakePeripheral(app::PeripheralKind::kI2cMaster, "I2C0", device);
    auto opened = board.Open(i2c, {});
    ASSERT_FALSE(opened) << device;
    EXPECT_TRUE(Mentions(opened.error(), {"I2cMaster I2C0", device, "is not an I2C adapter", "i2c-dev"}));
    auto spi = MakePeripheral(app::PeripheralKind::kSpiMaster, "SPI0", device);
    opened = board.Open(spi, {});
    ASSERT_FALSE(opened) << device;
    EXPECT_TRUE(Mentions(opened.error(), {"SpiMaster SPI0", device, "is not an spidev device"}));
  }
  // A refused open holds nothing: the same peripheral can be tried again.
  auto i2c = MakePeripheral(app::PeripheralKind::kI2cMaster, "I2C0", "/dev/null");
  auto again = board.Open(i2c, {});
  ASSERT_FALSE(again);
  EXPECT_FALSE(Mentions(again.error(), {"already open"}));
  auto address = board.TransferI2c(i2c, 0x80, {}, 1);
  ASSERT_FALSE(address);
  EXPECT_EQ(address.error().code(), ErrorCode::kInvalidArgument);
}

// ---- PWM and ADC on a temporary sysfs tree ------------------------------------

class LinuxBoardSysfsTest : public ::testing::Test {
 protected:
  fs::path Chip() const { return root_.path() / "sys/class/pwm/pwmchip0"; }
  fs::path Channel() const { return Chip() / "pwm1"; }
  fs::path Iio() const { return root_.path() / "sys/bus/iio/devices/iio:device0"; }

  void MakeChip() {
    WriteText(Chip() / "export", "");
    WriteText(Chip() / "npwm", "2\n");
  }
  void MakeChannel() {
    WriteText(Channel() / "period", "0\n");
    WriteText(Channel() / "duty_cycle", "0\n");
    WriteText(Channel() / "enable", "0\n");
  }

  TempDir root_;
  LinuxBoard board_{TestOptions(root_.path() / "dev", root_.path() / "sys")};
  app::Peripheral pwm_ = MakePeripheral(app::PeripheralKind::kPwm, "PWM0", "pwmchip0", 1);
  app::Peripheral adc_ = MakePeripheral(app::PeripheralKind::kAdc, "ADC0", "iio:device0", 2);
};

TEST_F(LinuxBoardSysfsTest, PwmOnAMissingChipNamesThePath) {
  auto opened = board_.Open(pwm_, {});
  ASSERT_FALSE(opened);
  EXPECT_TRUE(Mentions(opened.error(), {"Pwm PWM0", Chip().string(), "does not exist", "board definition"}));
}

TEST_F(LinuxBoardSysfsTest, PwmExportsAMissingChannel) {
  MakeChip();
  auto opened = board_.Open(pwm_, {});
  // The export was written; a real kernel creates pwm1 at once, this tree
  // cannot, so the open fails saying exactly that.
  EXPECT_EQ(ReadText(Chip() / "export"), "1");
  ASSERT_FALSE(opened);
  EXPECT_TRUE(Mentions(opened.error(), {"Pwm PWM0", "exported channel 1", Channel().string(), "did not appear"}));
  // A chip whose export refuses the channel (here: no export file).
  fs::remove(Chip() / "export");
  opened = board_.Open(pwm_, {});
  ASSERT_FALSE(opened);
  EXPECT_TRUE(Mentions(opened.error(), {"Pwm PWM0: writing 1 to " + (Chip() / "export").string(), "npwm"}));
}

TEST_F(LinuxBoardSysfsTest, PwmWritesPeriodDutyAndEnable) {
  MakeChip();
  MakeChannel();
  ASSERT_TRUE(board_.Open(pwm_, {}));
  EXPECT_EQ(ReadText(Chip() / "export"), "");  // already exported: left alone
  auto again = board_.Open(pwm_, {});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kAlreadyExists);

  ASSERT_TRUE(board_.ConfigurePwm(pwm_, PwmState{20000, 5000, true}));
  EXPECT_EQ(ReadText(Channel() / "period"), "20000");
  EXPECT_EQ(ReadText(Channel() / "duty_cycle"), "5000");
  EXPECT_EQ(ReadText(Channel() / "enable"), "1");

  ASSERT_TRUE(board_.ConfigurePwm(pwm_, PwmState{1000, 250, true}));
  EXPECT_EQ(ReadText(Channel() / "period"), "1000");
  EXPECT_EQ(ReadText(Channel() / "duty_cycle"), "250");

  ASSERT_TRUE(board_.ConfigurePwm(pwm_, PwmState{0, 0, false}));
  EXPECT_EQ(ReadText(Channel() / "enable"), "0");
  EXPECT_EQ(ReadText(Channel() / "period"), "1000");  // a zero period is never written

  auto refused = board_.ConfigurePwm(pwm_, PwmState{1000, 2000, true});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ReadText(Channel() / "duty_cycle"), "250");

  fs::remove(Channel() / "duty_cycle");
  auto missing = board_.ConfigurePwm(pwm_, PwmState{3000, 1000, true});
  ASSERT_FALSE(missing);
  EXPECT_TRUE(Mentions(missing.error(), {"Pwm PWM0", (Channel() / "duty_cycle").string(), "No such file"}));

  WriteText(Channel() / "duty_cycle", "garbage\n");
  auto garbage = board_.ConfigurePwm(pwm_, PwmState{3000, 1000, true});
  ASSERT_FALSE(garbage);
  EXPECT_TRUE(Mentions(garbage.error(), {(Channel() / "duty_cycle").string(), "not an unsigned number"}));

  board_.Close(pwm_);
  EXPECT_TRUE(board_.Open(pwm_, {}));  // free again after Close
}

TEST_F(LinuxBoardSysfsTest, AdcReadsTheRawValueAndTheBitsOfItsScanElement) {
  WriteText(Iio() / "in_voltage2_raw", "1234\n");
  WriteText(Iio() / "scan_elements/in_voltage2_type", "le:u12/16>>0\n");
  ASSERT_TRUE(board_.Open(adc_, {}));
  EXPECT_EQ(board_.ReadAdc(adc_), 1234U);
  EXPECT_EQ(board_.AdcBits(adc_), 12U);
  WriteText(Iio() / "in_voltage2_raw", "4095");
  EXPECT_EQ(board_.ReadAdc(adc_), 4095U);
  WriteText(Iio() / "scan_elements/in_voltage2_type", "be:s16/16>>0\n");
  EXPECT_EQ(board_.AdcBits(adc_), 16U);

  WriteText(Iio() / "in_voltage2_raw", "-12\n");
  auto negative = board_.ReadAdc(adc_);
  ASSERT_FALSE(negative);
  EXPECT_TRUE(Mentions(negative.error(), {"Adc ADC0", "in_voltage2_raw", "-12", "signed"}));

  WriteText(Iio() / "scan_elements/in_voltage2_type", "twelve\n");
  auto bad_type = board_.AdcBits(adc_);
  ASSERT_FALSE(bad_type);
  EXPECT_TRUE(Mentions(bad_type.error(), {"Adc ADC0", "in_voltage2_type", "twelve"}));

  // No scan element type: the width is unknown and not guessed; sampling works.
  fs::remove(Iio() / "scan_elements/in_voltage2_type");
  WriteText(Iio() / "in_voltage2_raw", "7\n");
  auto unknown = board_.AdcBits(adc_);
  ASSERT_FALSE(unknown);
  EXPECT_TRUE(Mentions(unknown.error(), {"Adc ADC0", "sample width is unknown", "in_voltage2_type"}));
  EXPECT_EQ(board_.ReadAdc(adc_), 7U);
}

TEST_F(LinuxBoardSysfsTest, AdcOnAMissingDeviceOrChannelNamesThePath) {
  auto opened = board_.Open(adc_, {});
  ASSERT_FALSE(opened);
  EXPECT_TRUE(Mentions(opened.error(), {"Adc ADC0", Iio().string(), "does not exist", "board definition"}));
  WriteText(Iio() / "in_voltage0_raw", "1\n");  // another channel
  opened = board_.Open(adc_, {});
  ASSERT_FALSE(opened);
  EXPECT_TRUE(Mentions(opened.error(), {"Adc ADC0", (Iio() / "in_voltage2_raw").string(), "voltage channel 2"}));
}

// ---- UART on a pseudo-terminal ---------------------------------------------------

TEST(LinuxBoardTest, UartOpensTheTtyRawNonBlockingAndFlushed) {
  Pty pty;
  // Bytes from before the open (a previous holder's) must not reach the new one.
  ASSERT_EQ(::write(pty.master.get(), "stale\n", 6), 6);
  LinuxBoard board;
  auto uart = MakePeripheral(app::PeripheralKind::kUart, "UART1", pty.path);
  auto fd = board.OpenUart(uart);
  ASSERT_TRUE(fd) << fd.error().message();
  ASSERT_TRUE(fd->valid());
  int flags = ::fcntl(fd->get(), F_GETFL);
  EXPECT_NE(flags & O_NONBLOCK, 0);
  EXPECT_EQ(flags & O_ACCMODE, O_RDWR);
  EXPECT_NE(::fcntl(fd->get(), F_GETFD) & FD_CLOEXEC, 0);
  termios settings{};
  ASSERT_EQ(::tcgetattr(fd->get(), &settings), 0);
  EXPECT_EQ(settings.c_lflag & (ICANON | ECHO | ISIG), 0U);
  EXPECT_EQ(settings.c_cflag & CSIZE, static_cast<tcflag_t>(CS8));
  std::array<char, 16> buffer{};
  EXPECT_EQ(::read(fd->get(), buffer.data(), buffer.size()), -1);
  EXPECT_EQ(errno, EAGAIN);

  // One holder at a time, until Close.
  auto second = board.OpenUart(uart);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), ErrorCode::kAlreadyExists);
  fd->Reset();
  board.Close(uart);
  // What arrives between two holders is not handed to the next one.
  ASSERT_EQ(::write(pty.master.get(), "between", 7), 7);
  auto next = board.OpenUart(uart);
  ASSERT_TRUE(next) << next.error().message();
  EXPECT_EQ(::read(next->get(), buffer.data(), buffer.size()), -1);
  EXPECT_EQ(errno, EAGAIN);
  ASSERT_EQ(::write(pty.master.get(), "fresh", 5), 5);
  pollfd poll_fd{next->get(), POLLIN, 0};
  ASSERT_EQ(::poll(&poll_fd, 1, 5000), 1);
  EXPECT_EQ(::read(next->get(), buffer.data(), buffer.size()), 5);
  EXPECT_EQ(std::string(buffer.data(), 5), "fresh");
  next->Reset();
  board.Close(uart);

  // The tty hangs up (here: the pty's master goes away): the kept descriptor
  // is not handed out again; the port is opened afresh, which fails.
  pty.master.Reset();
  auto after_hangup = board.OpenUart(uart);
  ASSERT_FALSE(after_hangup);
  EXPECT_TRUE(Mentions(after_hangup.error(), {"Uart UART1", pty.path}));
}

TEST(LinuxBoardTest, UartOnANonTerminalOrMissingNodeIsRefused) {
  LinuxBoard board;
  auto null_uart = MakePeripheral(app::PeripheralKind::kUart, "UART1", "/dev/null");
  auto opened = board.OpenUart(null_uart);
  ASSERT_FALSE(opened);
  EXPECT_TRUE(Mentions(opened.error(), {"Uart UART1", "/dev/null", "is not a terminal", "board definition"}));
  auto missing = MakePeripheral(app::PeripheralKind::kUart, "UART1", "/dev/ttyCITADELMISSING");
  opened = board.OpenUart(missing);
  ASSERT_FALSE(opened);
  EXPECT_TRUE(Mentions(opened.error(), {"Uart UART1", "/dev/ttyCITADELMISSING", "No such file"}));
  auto retry = board.OpenUart(null_uart);  // a refused open holds nothing
  ASSERT_FALSE(retry);
  EXPECT_FALSE(Mentions(retry.error(), {"already open"}));
}

// ---- through the Broker -------------------------------------------------------

std::string Manifest(std::string_view capabilities) {
  return R"({"SchemaVersion":1,"Name":"TestApp","ComponentId":")" + std::string(kAppA) +
         R"(","EntryPoint":"/bin/app","ApplicationType":"Default","Capabilities":)" + std::string(capabilities) + "}";
}

class LinuxBrokerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string json = R"({"SchemaVersion":1,"Name":"test-linux","Backend":"linux",
      "Gpio":{"LED1":{"Device":"gpiochip0","Line":3}},
      "Uart":{"UART1":{"Device":")" +
                       pty_.path + R"("}},
      "Pwm":{"PWM0":{"Device":"pwmchip0","Channel":1}},
      "Adc":{"ADC0":{"Device":"iio:device0","Channel":2}}})";
    auto board = app::ParseBoardDefinition(json);
    ASSERT_TRUE(board) << board.error().message();
    board_ = *board;
    BrokerOptions options;
    options.board = board_;
    options.linux_board.dev_dir = root_.path() / "dev";
    options.linux_board.sysfs_dir = root_.path() / "sys";
    // Never the machine's clock: record what would be set; one value fails
    // as a citadeld without CAP_SYS_TIME would.
    options.linux_board.set_realtime_clock = [this](const timespec& value) {
      if (value.tv_sec == 1'900'000'001) {
        errno = EPERM;
        return -1;
      }
      std::lock_guard lock(mutex_);
      clock_set_.push_back(value);
      return 0;
    };
    options.violations = [this](const ViolationReport&) {
      std::lock_guard lock(mutex_);
      ++violations_;
    };
    auto broker = Broker::Create(std::move(options));
    ASSERT_TRUE(broker) << broker.error().message();
    broker_ = std::move(*broker);
  }

  UniqueFd AddApp(std::string_view capabilities) {
    auto manifest = app::ParseManifest(Manifest(capabilities));
    EXPECT_TRUE(manifest) << manifest.error().message();
    if (!manifest) return {};
    auto policy = app::BuildPolicy(*manifest, board_, app::DevicePolicy{});
    EXPECT_TRUE(policy) << policy.error().message();
    if (!policy) return {};
    auto channel = broker_->AddApp(*policy);
    EXPECT_TRUE(channel) << channel.error().message();
    return channel ? std::move(*channel) : UniqueFd();
  }

  int violations() {
    std::lock_guard lock(mutex_);
    return violations_;
  }

  TempDir root_;
  Pty pty_;
  app::BoardDefinition board_;
  std::mutex mutex_;
  int violations_ = 0;
  std::vector<timespec> clock_set_;
  std::unique_ptr<Broker> broker_;
};

TEST_F(LinuxBrokerTest, UartBytesAreRelayedBetweenTheAppAndTheTtyBothWays) {
  UniqueFd channel = AddApp(R"({"Uart":["UART1"]})");
  // Several times the broker's 64 KiB buffers and the pty's own, each way at
  // once, with every byte value.
  constexpr std::size_t kTotal = 256 * 1024;
  const std::string from_app = Pattern(kTotal, 1);
  const std::string from_device = Pattern(kTotal, 2);
  testing::RunningApp app = testing::StartApp(channel.get(), [&] {
    int uart = UART_Open("UART1");
    CHILD_CHECK(uart >= 0);
    CHILD_CHECK(UART_Open("UART1") == -1 && errno == EBUSY);  // one handle per app
    std::string received;
    std::size_t written = 0;
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while ((received.size() < kTotal || written < kTotal) && std::chrono::steady_clock::now() < deadline) {
      pollfd poll_fd{uart, static_cast<short>(POLLIN | (written < kTotal ? POLLOUT : 0)), 0};
      if (::poll(&poll_fd, 1, 1000) <= 0) continue;
      if ((poll_fd.revents & POLLOUT) != 0) {
        ssize_t n =
            ::send(uart, from_app.data() + written, std::min<std::size_t>(8192, kTotal - written), MSG_DONTWAIT);
        if (n > 0) written += static_cast<std::size_t>(n);
      }
      if ((poll_fd.revents & POLLIN) != 0) {
        std::array<char, 8192> buffer{};
        ssize_t n = ::recv(uart, buffer.data(), buffer.size(), MSG_DONTWAIT);
        CHILD_CHECK(n != 0);  // the broker did not close the relay
        if (n > 0) received.append(buffer.data(), static_cast<std::size_t>(n));
      }
    }
    CHILD_CHECK(written == kTotal);
    CHILD_CHECK(received == from_device);
    // Closes at once: what is still on its way to the device gets there.
    CHILD_CHECK(::close(uart) == 0);
    return std::string("ok");
  });

  // The device: it speaks only once the app's first bytes show the port is
  // open (the broker flushes the tty when it opens it).
  std::string received;
  std::size_t written = 0;
  auto deadline = std::chrono::steady_clock::now() + 25s;
  while ((received.size() < kTotal || written < kTotal) && std::chrono::steady_clock::now() < deadline) {
    const bool may_write = !received.empty() && written < kTotal;
    pollfd poll_fd{pty_.master.get(), static_cast<short>(POLLIN | (may_write ? POLLOUT : 0)), 0};
    if (::poll(&poll_fd, 1, 1000) <= 0) continue;
    if ((poll_fd.revents & POLLIN) != 0) {
      std::array<char, 8192> buffer{};
      ssize_t n = ::read(pty_.master.get(), buffer.data(), buffer.size());
      if (n > 0) received.append(buffer.data(), static_cast<std::size_t>(n));
    }
    if (may_write && (poll_fd.revents & POLLOUT) != 0) {
      ssize_t n =
          ::write(pty_.master.get(), from_device.data() + written, std::min<std::size_t>(4096, kTotal - written));
      if (n > 0) written += static_cast<std::size_t>(n);
    }
  }
  EXPECT_EQ(testing::WaitApp(app), "ok");
  EXPECT_EQ(written, kTotal);
  ASSERT_EQ(received.size(), kTotal);
  EXPECT_TRUE(received == from_app) << "the bytes from the app arrived changed";

  // Closing released the port: it opens again, and again after a close.
  EXPECT_EQ(RunApp(channel.get(),
                   [] {
                     int uart = UART_Open("UART1");
                     CHILD_CHECK(uart >= 0);
                     CHILD_CHECK(::close(uart) == 0);
                     uart = UART_Open("UART1");
                     CHILD_CHECK(uart >= 0);
                     return std::string("ok");
                   }),
            "ok");
  EXPECT_EQ(violations(), 0);
}

TEST_F(LinuxBrokerTest, UartBytesWrittenBeforeTheAppClosesStillReachTheDevice) {
  UniqueFd channel = AddApp(R"({"Uart":["UART1"]})");
  // More than the broker's buffer and the pty hold together, so part of it
  // is still in the app's socket when the app closes and exits.
  constexpr std::size_t kTotal = 160 * 1024;
  const std::string from_app = Pattern(kTotal, 3);
  EXPECT_EQ(RunApp(channel.get(),
                   [&] {
                     int uart = UART_Open("UART1");
                     CHILD_CHECK(uart >= 0);
                     std::size_t written = 0;
                     while (written < kTotal) {  // blocking: waits while the broker holds 64 KiB
                       ssize_t n = ::send(uart, from_app.data() + written,
                                          std::min<std::size_t>(8192, kTotal - written), MSG_NOSIGNAL);
                       CHILD_CHECK(n > 0);
                       written += static_cast<std::size_t>(n);
                     }
                     CHILD_CHECK(::close(uart) == 0);
                     return std::string("ok");
                   }),
            "ok");
  // The app is gone; only now does the device start reading.
  std::string received;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (received.size() < kTotal && std::chrono::steady_clock::now() < deadline) {
    pollfd poll_fd{pty_.master.get(), POLLIN, 0};
    if (::poll(&poll_fd, 1, 1000) <= 0) continue;
    std::array<char, 8192> buffer{};
    ssize_t n = ::read(pty_.master.get(), buffer.data(), buffer.size());
    if (n > 0) received.append(buffer.data(), static_cast<std::size_t>(n));
  }
  ASSERT_EQ(received.size(), kTotal);
  EXPECT_TRUE(received == from_app) << "the bytes from the app arrived changed";
  // The drained handle is closed: the UART opens again.
  EXPECT_EQ(RunApp(channel.get(),
                   [] {
                     CHILD_CHECK(UART_Open("UART1") >= 0);
                     return std::string("ok");
                   }),
            "ok");
}

TEST_F(LinuxBrokerTest, PeripheralsUseTheRealInterfacesAndFailClosed) {
  // PWM and ADC on the temporary sysfs tree; no GPIO chip at all.
  const fs::path channel_dir = root_.path() / "sys/class/pwm/pwmchip0/pwm1";
  WriteText(channel_dir.parent_path() / "export", "");
  WriteText(channel_dir / "period", "0\n");
  WriteText(channel_dir / "duty_cycle", "0\n");
  WriteText(channel_dir / "enable", "0\n");
  const fs::path iio = root_.path() / "sys/bus/iio/devices/iio:device0";
  WriteText(iio / "in_voltage2_raw", "3071\n");
  WriteText(iio / "scan_elements/in_voltage2_type", "le:u10/16>>0\n");
  UniqueFd channel = AddApp(R"({"Gpio":["LED1"],"Pwm":["PWM0"],"Adc":["ADC0"],"SystemTime":true})");
  std::string result = RunApp(channel.get(), [] {
    // No chip: refused with EIO, not simulated, not a policy violation.
    CHILD_CHECK(GPIO_OpenAsOutput("LED1", GPIO_Value_High) == -1 && errno == EIO);
    CHILD_CHECK(GPIO_OpenAsInput("LED1") == -1 && errno == EIO);
    int pwm = PWM_Open("PWM0");
    CHILD_CHECK(pwm >= 0);
    CHILD_CHECK(PWM_Apply(pwm, 1000, 2000, true) == -1 && errno == EINVAL);
    CHILD_CHECK(PWM_Apply(pwm, 20000, 5000, true) == 0);
    int adc = ADC_Open("ADC0");
    CHILD_CHECK(adc >= 0);
    std::uint32_t sample = 0;
    CHILD_CHECK(ADC_GetSample(adc, &sample) == 0 && sample == 3071);
    CHILD_CHECK(ADC_GetSampleBitCount(adc) == 10);
    // A real board sets CLOCK_REALTIME (through the test's recorder).
    timespec when{1'900'000'000, 250'000'000};
    CHILD_CHECK(Clock_SetSystemTime(&when) == 0);
    timespec refused{1'900'000'001, 0};
    CHILD_CHECK(Clock_SetSystemTime(&refused) == -1 && errno == EPERM);
    return std::string("ok");
  });
  EXPECT_EQ(result, "ok");
  {
    std::lock_guard lock(mutex_);
    ASSERT_EQ(clock_set_.size(), 1U);
    EXPECT_EQ(clock_set_[0].tv_sec, 1'900'000'000);
    EXPECT_EQ(clock_set_[0].tv_nsec, 250'000'000);
  }
  EXPECT_EQ(ReadText(channel_dir / "period"), "20000");
  EXPECT_EQ(ReadText(channel_dir / "duty_cycle"), "5000");
  EXPECT_EQ(ReadText(channel_dir / "enable"), "1");
  EXPECT_EQ(violations(), 0);

  // The app is gone: RemoveApp released its handles, so PWM0 opens again.
  broker_->RemoveApp(kAppA);
  channel = AddApp(R"({"Pwm":["PWM0"]})");
  EXPECT_EQ(RunApp(channel.get(),
                   [] {
                     int pwm = PWM_Open("PWM0");
                     CHILD_CHECK(pwm >= 0);
                     CHILD_CHECK(PWM_Apply(pwm, 20000, 0, false) == 0);
                     return std::string("ok");
                   }),
            "ok");
  EXPECT_EQ(ReadText(channel_dir / "enable"), "0");
  EXPECT_EQ(ReadText(channel_dir / "duty_cycle"), "0");
}

}  // namespace
}  // namespace citadel::broker
