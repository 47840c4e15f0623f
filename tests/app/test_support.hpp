// Shared fixtures for the citadel_app tests.
#pragma once

#include <string>

#include <gtest/gtest.h>

#include "app/board.hpp"

namespace citadel::app::testing {

inline const char* kSimulatedBoardPath = CITADEL_SOURCE_DIR "/boards/simulated.json";

inline BoardDefinition SimulatedBoard() {
  auto board = LoadBoardDefinition(kSimulatedBoardPath);
  if (!board) ADD_FAILURE() << board.error().message();
  return board ? *board : BoardDefinition{};
}

// A manifest with every field and capability set.
inline constexpr const char* kFullManifest = R"({
  "SchemaVersion": 1,
  "Name": "Thermostat",
  "ComponentId": "3F2504E0-4F89-41D3-9A0C-0305E82C3301",
  "EntryPoint": "/bin/thermostat",
  "CmdArgs": ["--interval", "5"],
  "ApplicationType": "Default",
  "Capabilities": {
    "Gpio": ["LED1", "BUTTON_A"],
    "Uart": ["UART0"],
    "I2cMaster": ["I2C0"],
    "SpiMaster": ["SPI0"],
    "Pwm": ["PWM0"],
    "Adc": ["ADC0"],
    "AllowedConnections": ["Broker.Example.com", "127.0.0.2", "2001:DB8:0:0::1"],
    "AllowedTcpServerPorts": [8080],
    "AllowedUdpServerPorts": [5683, 8080],
    "AllowedApplicationConnections": ["A1B2C3D4-0000-4000-8000-00000000ABCD"],
    "MutableStorage": {"SizeKB": 256},
    "DeviceAuthentication": "ten_abc123",
    "SystemTime": true,
    "PowerControls": true
  },
  "Resources": {"MemoryMB": 128, "MaxProcesses": 16}
})";

// The smallest valid manifest: nothing asked for.
inline constexpr const char* kEmptyCapabilitiesManifest = R"({
  "SchemaVersion": 1,
  "Name": "Idle",
  "ComponentId": "11111111-2222-4333-8444-555555555555",
  "EntryPoint": "/bin/idle",
  "ApplicationType": "Default",
  "Capabilities": {}
})";

}  // namespace citadel::app::testing
