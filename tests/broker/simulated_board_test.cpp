// Unit tests of the simulated peripherals (no broker, no sockets).
#include "broker/simulated_board.hpp"

#include <gtest/gtest.h>

#include "app/board.hpp"

namespace citadel::broker {
namespace {

app::BoardDefinition LoadBoard() {
  auto board = app::LoadBoardDefinition(CITADEL_SOURCE_DIR "/boards/simulated.json");
  EXPECT_TRUE(board) << board.error().message();
  return board ? *board : app::BoardDefinition{};
}

TEST(SimulatedBoardTest, Tmp102EncodingMatchesTheDatasheet) {
  EXPECT_EQ(Tmp102Register(21.5), 0x1580);  // 344 counts << 4
  EXPECT_EQ(Tmp102Register(0.0), 0x0000);
  EXPECT_EQ(Tmp102Register(-0.0625), 0xFFF0);  // -1 count, two's complement
  EXPECT_EQ(Tmp102Register(-25.0), 0xE700);    // datasheet table: -25 C = 0xE70
  EXPECT_EQ(Tmp102Register(127.9375), 0x7FF0);
  EXPECT_EQ(Tmp102Register(500.0), 0x7FF0);  // clamped
  EXPECT_DOUBLE_EQ(Tmp102Celsius(0x1580), 21.5);
  EXPECT_DOUBLE_EQ(Tmp102Celsius(0xE700), -25.0);
}

TEST(SimulatedBoardTest, I2cReadsTheTemperatureRegisterAndNacksOtherAddresses) {
  SimulatedBoard board(LoadBoard());
  Bytes pointer{0x00};
  auto data = board.I2cTransfer("I2C0", kTmp102Address, pointer, 2);
  ASSERT_TRUE(data) << data.error().message();
  EXPECT_EQ(*data, (Bytes{0x15, 0x80}));
  board.SetTemperatureCelsius(-25.0);
  data = board.I2cTransfer("I2C0", kTmp102Address, {}, 2);  // pointer stays at 0
  ASSERT_TRUE(data);
  EXPECT_EQ(*data, (Bytes{0xE7, 0x00}));
  auto nack = board.I2cTransfer("I2C0", 0x49, pointer, 2);
  ASSERT_FALSE(nack);
  EXPECT_EQ(nack.error().code(), ErrorCode::kNotFound);
  EXPECT_FALSE(board.I2cTransfer("I2C0", 0x80, pointer, 2));
  EXPECT_FALSE(board.I2cTransfer("I2C0", kTmp102Address, Bytes{0x09}, 2));
}

TEST(SimulatedBoardTest, Tmp102ConfigRegisterIsWritable) {
  SimulatedBoard board(LoadBoard());
  auto initial = board.I2cTransfer("I2C0", kTmp102Address, Bytes{0x01}, 2);
  ASSERT_TRUE(initial);
  EXPECT_EQ(*initial, (Bytes{0x60, 0xA0}));
  ASSERT_TRUE(board.I2cTransfer("I2C0", kTmp102Address, Bytes{0x01, 0x61, 0xA0}, 0));
  EXPECT_EQ(*board.I2cTransfer("I2C0", kTmp102Address, Bytes{0x01}, 2), (Bytes{0x61, 0xA0}));
}

TEST(SimulatedBoardTest, GpioPwmAdcAndSpiState) {
  SimulatedBoard board(LoadBoard());
  EXPECT_EQ(board.GpioLevel("BUTTON_A"), 1);  // not pressed
  EXPECT_TRUE(board.SetGpioLevel("BUTTON_A", 0));
  EXPECT_EQ(board.GpioLevel("BUTTON_A"), 0);
  EXPECT_FALSE(board.SetGpioLevel("NOPE", 1));
  EXPECT_FALSE(board.GpioLevel("NOPE"));
  board.ApplyPwm("PWM0", PwmState{1000, 250, true});
  EXPECT_EQ(board.Pwm("PWM0"), (PwmState{1000, 250, true}));
  EXPECT_EQ(board.AdcSample("ADC0"), kDefaultAdcSample);
  board.SetAdcSample("ADC0", 4095);
  EXPECT_EQ(board.AdcSample("ADC0"), 4095U);
  Bytes tx{1, 2, 3};
  EXPECT_EQ(board.SpiTransfer("SPI0", tx), tx);
}

}  // namespace
}  // namespace citadel::broker
