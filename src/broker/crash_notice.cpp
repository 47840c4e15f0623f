#include "broker/crash_notice.hpp"

#include <algorithm>
#include <cerrno>
#include <set>
#include <string_view>

#include "broker/protocol.hpp"
#include "protocol/failure_report.hpp"

namespace citadel::broker {
namespace {

constexpr std::size_t kMaxRegisterNameBytes = 16;
constexpr std::size_t kMaxAddressTextBytes = 18;  // "0x" + 16 hex digits
constexpr std::int64_t kMaxSignal = 64;
constexpr std::int64_t kMaxSignalCode = 128;

std::string FieldError(std::string_view name, std::string_view problem) {
  return "field \"" + std::string(name) + "\" " + std::string(problem);
}

// "0x" and 1 to 16 lower-case hex digits, as failure reports spell them.
Checked<std::uint64_t> ParseAddress(const Json& value, std::string_view name) {
  if (!value.is_string()) return Fail(EINVAL, FieldError(name, "is not an address string"));
  std::string_view text = value.get_ref<const std::string&>();
  if (text.size() < 3 || text.size() > kMaxAddressTextBytes || !text.starts_with("0x")) {
    return Fail(EINVAL, FieldError(name, "is not \"0x\" and 1 to 16 hex digits"));
  }
  std::uint64_t result = 0;
  for (char c : text.substr(2)) {
    bool digit = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    if (!digit) return Fail(EINVAL, FieldError(name, "is not \"0x\" and 1 to 16 lower-case hex digits"));
    result = (result << 4U) | static_cast<std::uint64_t>(HexDigitValue(c));
  }
  return result;
}

Checked<std::uint64_t> AddressField(const Json& body, std::string_view name) {
  auto it = body.find(name);
  if (it == body.end()) return Fail(EINVAL, FieldError(name, "is missing"));
  return ParseAddress(*it, name);
}

Checked<int> BoundedInt(const Json& body, std::string_view name, std::int64_t minimum, std::int64_t maximum) {
  auto value = IntegerField(body, name);
  if (!value) return std::unexpected(value.error());
  if (*value < minimum || *value > maximum) return Fail(EINVAL, FieldError(name, "is out of range"));
  return static_cast<int>(*value);
}

bool IsRegisterName(std::string_view name) {
  return !name.empty() && name.size() <= kMaxRegisterNameBytes &&
         std::all_of(name.begin(), name.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); });
}

}  // namespace

Checked<CrashNotice> ParseCrashNotice(const Json& body) {
  static const std::set<std::string, std::less<>> kKnown = {
      "op", "id", "signal", "signal_code", "fault_address", "registers", "pcs", "stack_address", "stack"};
  for (const auto& [key, unused] : body.items()) {
    if (!kKnown.contains(key)) return Fail(EINVAL, FieldError(key, "is not a member of a crash request"));
  }
  CrashNotice notice;
  auto signal = BoundedInt(body, "signal", 1, kMaxSignal);
  if (!signal) return std::unexpected(signal.error());
  notice.signal = *signal;
  auto code = BoundedInt(body, "signal_code", -kMaxSignalCode, kMaxSignalCode);
  if (!code) return std::unexpected(code.error());
  notice.signal_code = *code;
  auto fault = AddressField(body, "fault_address");
  if (!fault) return std::unexpected(fault.error());
  notice.fault_address = *fault;

  auto registers = body.find("registers");
  if (registers == body.end() || !registers->is_object()) {
    return Fail(EINVAL, FieldError("registers", "is not an object"));
  }
  if (registers->size() > citadel::protocol::kMaxCrashRegisters)
    return Fail(EINVAL, FieldError("registers", "has too many"));
  for (const auto& [name, value] : registers->items()) {
    if (!IsRegisterName(name)) return Fail(EINVAL, FieldError("registers", "has a name that is not [a-z0-9]{1,16}"));
    auto number = ParseAddress(value, "registers." + name);
    if (!number) return std::unexpected(number.error());
    notice.registers.emplace_back(name, *number);
  }

  auto pcs = body.find("pcs");
  if (pcs == body.end() || !pcs->is_array()) return Fail(EINVAL, FieldError("pcs", "is not an array"));
  if (pcs->size() > citadel::protocol::kMaxCrashFrames) return Fail(EINVAL, FieldError("pcs", "has too many entries"));
  for (const Json& pc : *pcs) {
    auto number = ParseAddress(pc, "pcs");
    if (!number) return std::unexpected(number.error());
    notice.pcs.push_back(*number);
  }

  // The stack copy is optional (too big, or the handler could not tell
  // where the stack ends); its address only comes with it.
  bool has_stack = body.contains("stack");
  if (has_stack != body.contains("stack_address")) {
    return Fail(EINVAL, FieldError("stack", "and \"stack_address\" come together"));
  }
  if (has_stack) {
    auto address = AddressField(body, "stack_address");
    if (!address) return std::unexpected(address.error());
    auto stack =
        HexField(body, "stack", std::min(citadel::protocol::kMaxCrashDumpBytes, protocol::kMaxCrashStackBytes));
    if (!stack) return std::unexpected(stack.error());
    notice.stack_address = *address;
    notice.stack = std::move(*stack);
  }
  return notice;
}

}  // namespace citadel::broker
