#include "protocol/failure_report.hpp"

#include <algorithm>
#include <csignal>

#include "common/json_fields.hpp"
#include "common/time.hpp"
#include "protocol/fields.hpp"

namespace citadel::protocol {

using detail::IsLowerHex;
using detail::OptionalString;
using detail::ParseBody;
using detail::RequiredBase64;
using detail::RequiredInteger;
using detail::RequiredString;
using json_fields::Child;
using json_fields::Element;
using json_fields::ExpectArray;
using json_fields::ExpectObject;
using json_fields::FieldError;
using json_fields::Find;
using json_fields::ReadString;
using json_fields::Require;
using json_fields::UnknownFields;

namespace {

constexpr std::size_t kMaxVersionText = 64;
constexpr std::size_t kMaxRegisterName = 16;
constexpr std::size_t kMaxTimeText = 40;
constexpr std::size_t kMaxAddressText = 18;  // "0x" + 16 hex digits

// Addresses travel as "0x" + lower-case hex: 64-bit values do not survive
// JSON numbers (2^53).
std::string AddressText(std::uint64_t value) {
  static constexpr std::string_view kDigits = "0123456789abcdef";
  if (value == 0) return "0x0";
  std::string digits;
  while (value != 0) {
    digits.push_back(kDigits[value & 0xfU]);
    value >>= 4U;
  }
  std::reverse(digits.begin(), digits.end());
  return "0x" + digits;
}

Expected<std::uint64_t> ReadAddress(const Json& value, std::string_view path) {
  constexpr std::string_view kExpected = "expected \"0x\" and 1 to 16 lower-case hex digits";
  if (!value.is_string()) return FieldError(path, kExpected);
  const auto& text = value.get_ref<const std::string&>();
  if (text.size() < 3 || text.size() > kMaxAddressText || text.compare(0, 2, "0x") != 0 ||
      !IsLowerHex(std::string_view(text).substr(2))) {
    return FieldError(path, kExpected);
  }
  std::uint64_t result = 0;
  for (char c : std::string_view(text).substr(2)) {
    result = (result << 4U) | static_cast<std::uint64_t>(HexDigitValue(c));
  }
  return result;
}

Expected<std::string> ReadTime(const Json& object, std::string_view path, std::string_view key) {
  CITADEL_TRY(auto text, RequiredString(object, path, key, kMaxTimeText, /*allow_empty=*/false));
  if (!ParseRfc3339(text)) return FieldError(Child(path, key), "expected an RFC 3339 UTC time");
  return text;
}

bool IsRegisterName(std::string_view name) {
  return !name.empty() && name.size() <= kMaxRegisterName &&
         std::all_of(name.begin(), name.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); });
}

// A module name is a file name: no path, no control bytes.
bool IsModuleName(std::string_view name) {
  return !name.empty() && name.size() <= kMaxModuleNameBytes && name != "." && name != ".." &&
         std::none_of(name.begin(), name.end(), [](char c) {
           auto byte = static_cast<unsigned char>(c);
           return c == '/' || byte < 0x20 || byte == 0x7f;
         });
}

Json CrashToJson(const CrashDetails& crash) {
  Json registers = Json::object();
  for (const auto& [name, value] : crash.registers) registers[name] = AddressText(value);
  Json frames = Json::array();
  for (const auto& frame : crash.frames) {
    frames.push_back({{"module", frame.module}, {"build_id", frame.build_id}, {"offset", AddressText(frame.offset)}});
  }
  Json out = {{"signal", crash.signal},
              {"signal_code", crash.signal_code},
              {"fault_address", AddressText(crash.fault_address)},
              {"registers", std::move(registers)},
              {"frames", std::move(frames)}};
  if (crash.dump) {
    out["dump"] = {{"stack_address", AddressText(crash.dump->stack_address)},
                   {"stack", Base64Encode(crash.dump->stack)}};
  }
  return out;
}

Expected<CrashFrame> FrameFromJson(const Json& value, std::string_view path) {
  CITADEL_TRY_VOID(ExpectObject(value, path, {"module", "build_id", "offset"}, UnknownFields::kRefuse));
  CrashFrame frame;
  CITADEL_TRY(frame.module, RequiredString(value, path, "module", kMaxModuleNameBytes, /*allow_empty=*/false));
  if (!IsModuleName(frame.module)) return FieldError(Child(path, "module"), "expected a file name");
  CITADEL_TRY(frame.build_id, RequiredString(value, path, "build_id", 2 * kMaxBuildIdBytes, /*allow_empty=*/true));
  if (frame.build_id.size() % 2 != 0 || !IsLowerHex(frame.build_id)) {
    return FieldError(Child(path, "build_id"), "expected lower-case hex");
  }
  CITADEL_TRY(const Json* offset, Require(value, path, "offset"));
  CITADEL_TRY(frame.offset, ReadAddress(*offset, Child(path, "offset")));
  return frame;
}

Expected<CrashDetails> CrashFromJson(const Json& value, std::string_view path) {
  CITADEL_TRY_VOID(ExpectObject(value, path, {"signal", "signal_code", "fault_address", "registers", "frames", "dump"},
                                UnknownFields::kRefuse));
  CrashDetails crash;
  CITADEL_TRY(auto signal, RequiredInteger(value, path, "signal", 1, 64));
  crash.signal = static_cast<int>(signal);
  CITADEL_TRY(auto code, RequiredInteger(value, path, "signal_code", -128, 128));
  crash.signal_code = static_cast<int>(code);
  CITADEL_TRY(const Json* fault, Require(value, path, "fault_address"));
  CITADEL_TRY(crash.fault_address, ReadAddress(*fault, Child(path, "fault_address")));

  const auto registers_path = Child(path, "registers");
  CITADEL_TRY(const Json* registers, Require(value, path, "registers"));
  if (!registers->is_object()) return FieldError(registers_path, "expected an object");
  if (registers->size() > kMaxCrashRegisters) {
    return FieldError(registers_path, "more than " + std::to_string(kMaxCrashRegisters) + " registers");
  }
  for (const auto& [name, register_value] : registers->items()) {
    if (!IsRegisterName(name)) return FieldError(registers_path, "register names are lower-case letters and digits");
    CITADEL_TRY(auto number, ReadAddress(register_value, Child(registers_path, name)));
    crash.registers.emplace_back(name, number);
  }

  const auto frames_path = Child(path, "frames");
  CITADEL_TRY(const Json* frames, Require(value, path, "frames"));
  CITADEL_TRY_VOID(ExpectArray(*frames, frames_path, kMaxCrashFrames));
  for (std::size_t i = 0; i < frames->size(); ++i) {
    CITADEL_TRY(auto frame, FrameFromJson((*frames)[i], Element(frames_path, i)));
    crash.frames.push_back(std::move(frame));
  }

  if (const Json* dump = Find(value, "dump"); dump != nullptr) {
    const auto dump_path = Child(path, "dump");
    CITADEL_TRY_VOID(ExpectObject(*dump, dump_path, {"stack_address", "stack"}, UnknownFields::kRefuse));
    CrashDump parsed;
    CITADEL_TRY(const Json* address, Require(*dump, dump_path, "stack_address"));
    CITADEL_TRY(parsed.stack_address, ReadAddress(*address, Child(dump_path, "stack_address")));
    CITADEL_TRY(parsed.stack, RequiredBase64(*dump, dump_path, "stack", kMaxCrashDumpBytes));
    crash.dump = std::move(parsed);
  }
  return crash;
}

}  // namespace

bool IsFailureClass(std::string_view name) {
  return std::find(kFailureClasses.begin(), kFailureClasses.end(), name) != kFailureClasses.end();
}

Json FailureReportToJson(const FailureReport& report) {
  Json out = {{"report_id", report.report_id},
              {"class", report.failure_class},
              {"occurred_at", report.occurred_at},
              {"last_occurred_at", report.last_occurred_at},
              {"occurrences", report.occurrences},
              {"component_id", report.component_id},
              {"component_version", report.component_version},
              {"os_version", report.os_version},
              {"runtime_version", report.runtime_version},
              {"error_code", report.error_code},
              {"message", report.message}};
  if (report.crash) out["crash"] = CrashToJson(*report.crash);
  return out;
}

Expected<FailureReport> FailureReportFromJson(const Json& value, std::string_view path) {
  CITADEL_TRY_VOID(
      ExpectObject(value, path,
                   {"report_id", "class", "occurred_at", "last_occurred_at", "occurrences", "component_id",
                    "component_version", "os_version", "runtime_version", "error_code", "message", "crash"},
                   UnknownFields::kRefuse));
  FailureReport report;
  CITADEL_TRY(report.report_id, RequiredString(value, path, "report_id", 2 * kReportIdBytes, /*allow_empty=*/false));
  if (report.report_id.size() != 2 * kReportIdBytes || !IsLowerHex(report.report_id)) {
    return FieldError(Child(path, "report_id"), "expected 32 lower-case hex characters");
  }
  CITADEL_TRY(report.failure_class, RequiredString(value, path, "class", 32, /*allow_empty=*/false));
  if (!IsFailureClass(report.failure_class)) {
    return FieldError(Child(path, "class"), "unknown failure class " + json_fields::Quote(report.failure_class));
  }
  CITADEL_TRY(report.occurred_at, ReadTime(value, path, "occurred_at"));
  CITADEL_TRY(report.last_occurred_at, ReadTime(value, path, "last_occurred_at"));
  CITADEL_TRY(report.occurrences, RequiredInteger(value, path, "occurrences", 1, kMaxOccurrences));
  CITADEL_TRY(report.component_id, OptionalString(value, path, "component_id", 128));
  CITADEL_TRY(report.component_version, OptionalString(value, path, "component_version", kMaxVersionText));
  CITADEL_TRY(report.os_version, OptionalString(value, path, "os_version", kMaxVersionText * 2));
  CITADEL_TRY(report.runtime_version, OptionalString(value, path, "runtime_version", kMaxVersionText));
  CITADEL_TRY(report.error_code, RequiredString(value, path, "error_code", kMaxErrorCodeBytes, /*allow_empty=*/false));
  CITADEL_TRY(report.message, OptionalString(value, path, "message", kMaxReportMessageBytes));
  if (const Json* crash = Find(value, "crash"); crash != nullptr) {
    if (report.failure_class != "app-crash")
      return FieldError(Child(path, "crash"), "only an app-crash has crash details");
    CITADEL_TRY(report.crash, CrashFromJson(*crash, Child(path, "crash")));
  }
  return report;
}

Expected<FailureReport> ParseFailureReport(std::string_view text) {
  CITADEL_TRY(auto json, ParseBody(text, kMaxReportBatchBytes, "failure report"));
  return FailureReportFromJson(json);
}

Json ReportBatchToJson(const ReportBatch& batch) {
  Json reports = Json::array();
  for (const auto& report : batch.reports) reports.push_back(FailureReportToJson(report));
  return {{"reports", std::move(reports)}, {"dropped", batch.dropped}};
}

Expected<ReportBatch> ParseReportBatch(std::string_view body) {
  CITADEL_TRY(auto json, ParseBody(body, kMaxReportBatchBytes, "report batch"));
  CITADEL_TRY_VOID(ExpectObject(json, "", {"reports", "dropped"}, UnknownFields::kRefuse));
  ReportBatch batch;
  CITADEL_TRY(batch.dropped, RequiredInteger(json, "", "dropped", 0, detail::kMaxSafeInteger));
  CITADEL_TRY(const Json* reports, Require(json, "", "reports"));
  CITADEL_TRY_VOID(ExpectArray(*reports, "reports", kMaxReportsPerBatch));
  if (reports->empty()) return FieldError("reports", "a batch holds at least one report");
  for (std::size_t i = 0; i < reports->size(); ++i) {
    CITADEL_TRY(auto report, FailureReportFromJson((*reports)[i], Element("reports", i)));
    const bool repeated = std::any_of(batch.reports.begin(), batch.reports.end(),
                                      [&](const FailureReport& seen) { return seen.report_id == report.report_id; });
    if (repeated) return FieldError(Element("reports", i), "report_id appears twice in the batch");
    batch.reports.push_back(std::move(report));
  }
  return batch;
}

Json ReportBatchReplyToJson(const ReportBatchReply& reply) { return {{"acknowledged", reply.acknowledged}}; }

Expected<ReportBatchReply> ParseReportBatchReply(std::string_view body) {
  CITADEL_TRY(auto json, ParseBody(body, kMaxReportBatchBytes, "report batch reply"));
  CITADEL_TRY_VOID(ExpectObject(json, "", {"acknowledged"}, UnknownFields::kIgnore));
  CITADEL_TRY(const Json* ids, Require(json, "", "acknowledged"));
  CITADEL_TRY_VOID(ExpectArray(*ids, "acknowledged", kMaxReportsPerBatch));
  ReportBatchReply reply;
  for (std::size_t i = 0; i < ids->size(); ++i) {
    CITADEL_TRY(auto id, ReadString((*ids)[i], Element("acknowledged", i), 2 * kReportIdBytes));
    if (id.size() != 2 * kReportIdBytes || !IsLowerHex(id)) {
      return FieldError(Element("acknowledged", i), "expected 32 lower-case hex characters");
    }
    reply.acknowledged.push_back(std::move(id));
  }
  return reply;
}

std::string SignalName(int signal) {
  switch (signal) {
    case SIGSEGV:
      return "SIGSEGV";
    case SIGBUS:
      return "SIGBUS";
    case SIGILL:
      return "SIGILL";
    case SIGFPE:
      return "SIGFPE";
    case SIGABRT:
      return "SIGABRT";
    case SIGTRAP:
      return "SIGTRAP";
    case SIGSYS:
      return "SIGSYS";
    case SIGKILL:
      return "SIGKILL";
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    case SIGHUP:
      return "SIGHUP";
    case SIGPIPE:
      return "SIGPIPE";
    case SIGQUIT:
      return "SIGQUIT";
    case SIGXCPU:
      return "SIGXCPU";
    case SIGXFSZ:
      return "SIGXFSZ";
    case SIGALRM:
      return "SIGALRM";
    case SIGUSR1:
      return "SIGUSR1";
    case SIGUSR2:
      return "SIGUSR2";
    default:
      return "SIG" + std::to_string(signal);
  }
}

}  // namespace citadel::protocol
