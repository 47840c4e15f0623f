#include "app/board.hpp"

#include <algorithm>
#include <array>
#include <set>

#include "common/canonical_json.hpp"
#include "common/file.hpp"
#include "common/json_fields.hpp"

namespace citadel::app {
namespace {

using json_fields::Child;
using json_fields::FieldError;
using json_fields::Quote;

constexpr std::size_t kMaxBoardDepth = 6;
constexpr std::size_t kMaxBoardNameBytes = 64;
constexpr std::size_t kMaxDeviceBytes = 128;
constexpr std::size_t kMaxDescriptionBytes = 256;
constexpr std::int64_t kMaxIndex = 65535;

struct KindFormat {
  PeripheralKind kind;
  bool device_is_path;           // a /dev node, else a chip or IIO device name
  std::string_view index_field;  // "" when the kind has no index
};

constexpr std::array<KindFormat, 6> kKinds = {{
    {PeripheralKind::kGpio, false, "Line"},
    {PeripheralKind::kUart, true, ""},
    {PeripheralKind::kI2cMaster, true, ""},
    {PeripheralKind::kSpiMaster, true, ""},
    {PeripheralKind::kPwm, false, "Channel"},
    {PeripheralKind::kAdc, false, "Channel"},
}};

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

Expected<std::string> ReadDevice(const Json& value, std::string_view path, bool is_path) {
  CITADEL_TRY(auto device, json_fields::ReadString(value, path, kMaxDeviceBytes));
  const bool chars_ok = std::all_of(device.begin(), device.end(), [is_path](char c) {
    return IsNameChar(c) || c == '.' || c == '-' || c == ':' || (is_path && c == '/');
  });
  if (!chars_ok) return FieldError(path, Quote(device) + " contains characters outside letters, digits and _ . - :");
  if (is_path) {
    if (!device.starts_with("/dev/") || device.size() == 5) {
      return FieldError(path, Quote(device) + " is not a device node under /dev/");
    }
    if (device.find("/.") != std::string::npos || device.find("//") != std::string::npos || device.back() == '/') {
      return FieldError(path, Quote(device) + " must be a plain path under /dev/ (no \".\" components)");
    }
  } else if (device.front() == '.') {
    return FieldError(path, Quote(device) + " must not start with '.'");
  }
  return device;
}

Expected<Peripheral> ReadPeripheral(const KindFormat& format, std::string_view name, const Json& value,
                                    std::string_view path) {
  if (format.index_field.empty()) {
    CITADEL_TRY_VOID(json_fields::ExpectObject(value, path, {"Device", "Description"}));
  } else {
    CITADEL_TRY_VOID(json_fields::ExpectObject(value, path, {"Device", format.index_field, "Description"}));
  }
  Peripheral peripheral;
  peripheral.kind = format.kind;
  peripheral.name = std::string(name);
  CITADEL_TRY(const Json* device, json_fields::Require(value, path, "Device"));
  CITADEL_TRY(peripheral.device, ReadDevice(*device, Child(path, "Device"), format.device_is_path));
  if (!format.index_field.empty()) {
    CITADEL_TRY(const Json* index, json_fields::Require(value, path, format.index_field));
    CITADEL_TRY(auto number, json_fields::ReadInteger(*index, Child(path, format.index_field), 0, kMaxIndex));
    peripheral.index = static_cast<std::uint32_t>(number);
  }
  if (const Json* description = json_fields::Find(value, "Description")) {
    CITADEL_TRY(peripheral.description,
                json_fields::ReadString(*description, Child(path, "Description"), kMaxDescriptionBytes));
  }
  return peripheral;
}

}  // namespace

std::string_view PeripheralKindName(PeripheralKind kind) {
  switch (kind) {
    case PeripheralKind::kGpio:
      return "Gpio";
    case PeripheralKind::kUart:
      return "Uart";
    case PeripheralKind::kI2cMaster:
      return "I2cMaster";
    case PeripheralKind::kSpiMaster:
      return "SpiMaster";
    case PeripheralKind::kPwm:
      return "Pwm";
    case PeripheralKind::kAdc:
      return "Adc";
  }
  return "unknown";
}

std::string_view BoardBackendName(BoardBackend backend) {
  switch (backend) {
    case BoardBackend::kLinux:
      return "linux";
    case BoardBackend::kSimulated:
      return "simulated";
  }
  return "unknown";
}

std::string Peripheral::ResourceKey() const {
  std::string key;
  switch (kind) {
    case PeripheralKind::kGpio:
      key = "gpio:";
      break;
    case PeripheralKind::kUart:
      key = "uart:";
      break;
    case PeripheralKind::kI2cMaster:
      key = "i2c:";
      break;
    case PeripheralKind::kSpiMaster:
      key = "spi:";
      break;
    case PeripheralKind::kPwm:
      key = "pwm:";
      break;
    case PeripheralKind::kAdc:
      key = "adc:";
      break;
  }
  key += device;
  if (index) key += "#" + std::to_string(*index);
  return key;
}

std::string Peripheral::Describe() const {
  std::string text = std::string(PeripheralKindName(kind)) + " " + name + " (" + device;
  if (index) {
    text += (kind == PeripheralKind::kGpio ? " line " : " channel ") + std::to_string(*index);
  }
  text += ")";
  return text;
}

const Peripheral* BoardDefinition::Find(PeripheralKind kind, std::string_view peripheral_name) const {
  auto it = std::find_if(peripherals.begin(), peripherals.end(), [&](const Peripheral& peripheral) {
    return peripheral.kind == kind && peripheral.name == peripheral_name;
  });
  return it == peripherals.end() ? nullptr : &*it;
}

Expected<BoardDefinition> ParseBoardDefinition(std::string_view json) {
  if (json.size() > kMaxBoardBytes) {
    return MakeError(ErrorCode::kTooLarge, "board definition is " + std::to_string(json.size()) +
                                               " bytes; the limit is " + std::to_string(kMaxBoardBytes));
  }
  auto parsed = ParseJsonStrict(json, kMaxBoardDepth);
  if (!parsed) return WrapError(parsed.error(), "board definition");
  const Json& root = *parsed;
  CITADEL_TRY_VOID(json_fields::ExpectObject(
      root, "", {"SchemaVersion", "Name", "Backend", "Gpio", "Uart", "I2cMaster", "SpiMaster", "Pwm", "Adc"}));
  CITADEL_TRY(const Json* version, json_fields::Require(root, "", "SchemaVersion"));
  if (!version->is_number_integer() || *version != 1) {
    return FieldError("SchemaVersion", version->dump().substr(0, 32) + " is not supported (expected 1)");
  }
  BoardDefinition board;
  CITADEL_TRY(const Json* name, json_fields::Require(root, "", "Name"));
  CITADEL_TRY(board.name, json_fields::ReadString(*name, "Name", kMaxBoardNameBytes));
  if (const Json* backend = json_fields::Find(root, "Backend")) {
    CITADEL_TRY(auto backend_name, json_fields::ReadString(*backend, "Backend", 16));
    if (backend_name == BoardBackendName(BoardBackend::kLinux)) {
      board.backend = BoardBackend::kLinux;
    } else if (backend_name == BoardBackendName(BoardBackend::kSimulated)) {
      board.backend = BoardBackend::kSimulated;
    } else {
      return FieldError("Backend", Quote(backend_name) + " is not a backend (expected \"linux\" or \"simulated\")");
    }
  }
  std::set<std::string, std::less<>> resources;
  for (const KindFormat& format : kKinds) {
    const std::string_view key = PeripheralKindName(format.kind);
    const Json* group = json_fields::Find(root, key);
    if (group == nullptr) continue;
    if (!group->is_object()) return FieldError(key, "expected an object mapping peripheral names to resources");
    if (group->size() > kMaxBoardPeripheralsPerKind) {
      return FieldError(key, "has more than " + std::to_string(kMaxBoardPeripheralsPerKind) + " peripherals");
    }
    for (const auto& [peripheral_name, value] : group->items()) {
      const std::string path = Child(key, peripheral_name);
      const bool name_ok = !peripheral_name.empty() && peripheral_name.size() <= 32 &&
                           !(peripheral_name.front() >= '0' && peripheral_name.front() <= '9') &&
                           peripheral_name.front() != '_' &&
                           std::all_of(peripheral_name.begin(), peripheral_name.end(), IsNameChar);
      if (!name_ok) {
        return FieldError(
            path, Quote(peripheral_name) + " is not a peripheral name (a letter, then up to 31 letters, digits or _)");
      }
      CITADEL_TRY(auto peripheral, ReadPeripheral(format, peripheral_name, value, path));
      const std::string resource = peripheral.ResourceKey();
      if (!resources.insert(resource).second) {
        auto other = std::find_if(board.peripherals.begin(), board.peripherals.end(),
                                  [&](const Peripheral& p) { return p.ResourceKey() == resource; });
        return FieldError(path, "maps to the same resource as " + other->Describe());
      }
      board.peripherals.push_back(std::move(peripheral));
    }
  }
  return board;
}

Expected<BoardDefinition> LoadBoardDefinition(const std::filesystem::path& path) {
  CITADEL_TRY(auto text, ReadFile(path, kMaxBoardBytes));
  auto board = ParseBoardDefinition(text);
  if (!board) return WrapError(board.error(), "loading board definition " + path.string());
  return board;
}

}  // namespace citadel::app
