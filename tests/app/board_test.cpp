#include "app/board.hpp"

#include <string>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace citadel::app {
namespace {

TEST(BoardTest, SimulatedBoardParses) {
  auto board = LoadBoardDefinition(testing::kSimulatedBoardPath);
  ASSERT_TRUE(board) << board.error().message();
  EXPECT_EQ(board->name, "citadel-simulated");
  EXPECT_EQ(board->backend, BoardBackend::kSimulated);
  for (const char* led : {"LED1", "LED2", "LED3", "LED4", "BUTTON_A"}) {
    EXPECT_NE(board->Find(PeripheralKind::kGpio, led), nullptr) << led;
  }
  const Peripheral* led1 = board->Find(PeripheralKind::kGpio, "LED1");
  ASSERT_NE(led1, nullptr);
  EXPECT_EQ(led1->device, "gpiochip0");
  EXPECT_EQ(led1->index, 0U);
  EXPECT_EQ(led1->ResourceKey(), "gpio:gpiochip0#0");
  const Peripheral* i2c = board->Find(PeripheralKind::kI2cMaster, "I2C0");
  ASSERT_NE(i2c, nullptr);
  EXPECT_EQ(i2c->device, "/dev/i2c-0");
  EXPECT_FALSE(i2c->index.has_value());
  EXPECT_NE(i2c->description.find("0x48"), std::string::npos);
  EXPECT_NE(board->Find(PeripheralKind::kUart, "UART0"), nullptr);
  EXPECT_NE(board->Find(PeripheralKind::kSpiMaster, "SPI0"), nullptr);
  EXPECT_NE(board->Find(PeripheralKind::kPwm, "PWM0"), nullptr);
  const Peripheral* adc = board->Find(PeripheralKind::kAdc, "ADC0");
  ASSERT_NE(adc, nullptr);
  EXPECT_EQ(adc->device, "iio:device0");
  EXPECT_EQ(adc->index, 0U);
  // Kinds are separate name spaces: LED1 is not a UART.
  EXPECT_EQ(board->Find(PeripheralKind::kUart, "LED1"), nullptr);
}

void ExpectBoardError(const std::string& json, const std::string& needle) {
  auto board = ParseBoardDefinition(json);
  ASSERT_FALSE(board) << json;
  EXPECT_NE(board.error().message().find(needle), std::string::npos) << board.error().message();
}

TEST(BoardTest, RefusesMalformedDefinitions) {
  ExpectBoardError(R"({"SchemaVersion":1,"Name":"b","Gpio":{"LED1":{"Device":"gpiochip0","Line":0}},"Extra":1})",
                   "Extra: unknown field");
  ExpectBoardError(R"({"SchemaVersion":2,"Name":"b"})", "SchemaVersion");
  ExpectBoardError(R"({"SchemaVersion":1,"Name":"b","Gpio":{"LED1":{"Device":"gpiochip0"}}})",
                   "Gpio.LED1.Line: missing field");
  ExpectBoardError(R"({"SchemaVersion":1,"Name":"b","Gpio":{"LED1":{"Device":"gpiochip0","Line":-1}}})",
                   "Gpio.LED1.Line");
  ExpectBoardError(R"({"SchemaVersion":1,"Name":"b","Uart":{"U":{"Device":"/etc/passwd"}}})", "Uart.U.Device");
  ExpectBoardError(R"({"SchemaVersion":1,"Name":"b","Uart":{"U":{"Device":"/dev/../etc/shadow"}}})", "Uart.U.Device");
  ExpectBoardError(R"({"SchemaVersion":1,"Name":"b","Uart":{"U":{"Device":"/dev/ttyS0","Line":1}}})",
                   "Uart.U.Line: unknown field");
  ExpectBoardError(R"({"SchemaVersion":1,"Name":"b","Gpio":{"1LED":{"Device":"gpiochip0","Line":0}}})", "Gpio.1LED");
}

TEST(BoardTest, BackendDefaultsToLinuxAndIsStrict) {
  auto real = ParseBoardDefinition(R"({"SchemaVersion":1,"Name":"b"})");
  ASSERT_TRUE(real) << real.error().message();
  EXPECT_EQ(real->backend, BoardBackend::kLinux);  // absent: a real board
  auto linux_board = ParseBoardDefinition(R"({"SchemaVersion":1,"Name":"b","Backend":"linux"})");
  ASSERT_TRUE(linux_board) << linux_board.error().message();
  EXPECT_EQ(linux_board->backend, BoardBackend::kLinux);
  auto simulated = ParseBoardDefinition(R"({"SchemaVersion":1,"Name":"b","Backend":"simulated"})");
  ASSERT_TRUE(simulated) << simulated.error().message();
  EXPECT_EQ(simulated->backend, BoardBackend::kSimulated);
  EXPECT_EQ(BoardBackendName(BoardBackend::kLinux), "linux");
  EXPECT_EQ(BoardBackendName(BoardBackend::kSimulated), "simulated");
  ExpectBoardError(R"({"SchemaVersion":1,"Name":"b","Backend":"Simulated"})",
                   "Backend: \"Simulated\" is not a backend");
  ExpectBoardError(R"({"SchemaVersion":1,"Name":"b","Backend":"tpm"})", "Backend");
  ExpectBoardError(R"({"SchemaVersion":1,"Name":"b","Backend":1})", "Backend");
  ExpectBoardError(R"({"SchemaVersion":1,"Name":"b","Backend":""})", "Backend");
}

TEST(BoardTest, RefusesTwoNamesForOneResource) {
  // Otherwise an app could hold a pin as "ALIAS" while another holds it as "LED1".
  ExpectBoardError(R"({"SchemaVersion":1,"Name":"b","Gpio":{
      "LED1":{"Device":"gpiochip0","Line":3},"ALIAS":{"Device":"gpiochip0","Line":3}}})",
                   "same resource as Gpio");
}

}  // namespace
}  // namespace citadel::app
