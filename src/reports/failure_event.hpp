// A failure observed on the device, before rate limiting and queueing
// (docs/ARCHITECTURE.md, "Failure reporting"). Producers (AppManager, the
// update client, the boot record) fill a FailureEvent and hand it to a
// FailureSink; reports::ReportCollector is the sink citadeld uses.
#pragma once

#include <optional>
#include <string>

#include "common/time.hpp"
#include "protocol/failure_report.hpp"

namespace citadel::reports {

struct FailureEvent {
  std::string failure_class;  // one of protocol::kFailureClasses
  TimePoint time{};
  std::string component_id;  // "" for device-level events
  std::string component_version;
  std::string error_code;  // short and stable ("SIGSEGV", "exit-3", "seccomp:ptrace", "power-loss")
  std::string message;     // for humans; cut to protocol::kMaxReportMessageBytes by the collector
  // app-crash only, when the app's handler sent details. The collector
  // drops `dump` unless crash dumps are enabled for the device.
  std::optional<protocol::CrashDetails> crash{};
};

// Contract: Record never blocks for long (it may write one small file) and
// never throws; it is called from any thread, including AppManager's
// supervision thread with its lock held, so it must not call back into the
// producer.
class FailureSink {
 public:
  virtual ~FailureSink() = default;
  virtual void Record(FailureEvent event) = 0;
};

}  // namespace citadel::reports
