// A valid FailureReport for the reports tests (the queue refuses invalid
// ones), identified by a number carried in its message.
#pragma once

#include <cstdint>
#include <string>

#include "common/encoding.hpp"
#include "crypto/crypto.hpp"
#include "protocol/failure_report.hpp"

namespace citadel::reports::testing {

inline protocol::FailureReport MakeReport(std::uint64_t number, std::size_t message_bytes = 0) {
  protocol::FailureReport report;
  report.report_id = HexEncode(crypto::RandomBytes(protocol::kReportIdBytes));
  report.failure_class = "app-crash";
  report.occurred_at = "2026-11-22T10:00:00Z";
  report.last_occurred_at = report.occurred_at;
  report.component_id = "queue-test";
  report.component_version = "1.0.0";
  report.os_version = "1.0.0";
  report.runtime_version = "0.1.0";
  report.error_code = "SIGSEGV";
  report.message = std::to_string(number);
  if (message_bytes > report.message.size()) report.message += std::string(message_bytes - report.message.size(), 'x');
  return report;
}

// The number MakeReport put in the message.
inline std::uint64_t NumberOf(const protocol::FailureReport& report) {
  return std::stoull(report.message.substr(0, report.message.find('x')));
}

}  // namespace citadel::reports::testing
