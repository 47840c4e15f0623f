#include "protocol/failure_report.hpp"

#include <csignal>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "protocol/protocol.hpp"

namespace citadel::protocol {
namespace {

using ::testing::HasSubstr;

FailureReport CrashReport() {
  FailureReport report;
  report.report_id = "00112233445566778899aabbccddeeff";
  report.failure_class = "app-crash";
  report.occurred_at = "2026-11-22T10:00:00Z";
  report.last_occurred_at = "2026-11-22T10:00:09Z";
  report.occurrences = 3;
  report.component_id = "b1b2c3d4-0000-4000-8000-000000000001";
  report.component_version = "1.2.0";
  report.os_version = "1.0.0";
  report.runtime_version = "0.1.0";
  report.error_code = "SIGSEGV";
  report.message = "crashy was killed by SIGSEGV";
  CrashDetails crash;
  crash.signal = SIGSEGV;
  crash.signal_code = 1;
  crash.fault_address = 0;
  crash.registers = {{"rip", 0xffff'8000'0000'1139ULL}, {"rsp", 0x7ffc'0000'0000ULL}};
  crash.frames = {{"crashy", "a1b2c3", 0x1139}, {"libc.so.6", "", 0x29d90}};
  crash.dump = CrashDump{0x7ffc'0000'0000ULL, Bytes{0, 1, 2, 3}};
  report.crash = crash;
  return report;
}

std::string BatchText(const FailureReport& report) {
  ReportBatch batch;
  batch.reports.push_back(report);
  batch.dropped = 2;
  return ReportBatchToJson(batch).dump();
}

// Replaces the first occurrence of `from` in the encoded batch.
std::string Mutated(std::string text, std::string_view from, std::string_view to) {
  auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

TEST(FailureReportTest, BatchRoundTripsEveryMemberIncludingSixtyFourBitAddresses) {
  auto parsed = ParseReportBatch(BatchText(CrashReport()));
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  ASSERT_EQ(parsed->reports.size(), 1U);
  EXPECT_EQ(parsed->dropped, 2);
  const auto& report = parsed->reports[0];
  EXPECT_EQ(report.occurrences, 3);
  EXPECT_EQ(report.error_code, "SIGSEGV");
  ASSERT_TRUE(report.crash.has_value());
  EXPECT_EQ(report.crash->registers[0].second, 0xffff'8000'0000'1139ULL);
  ASSERT_EQ(report.crash->frames.size(), 2U);
  EXPECT_EQ(report.crash->frames[0].offset, 0x1139U);
  EXPECT_EQ(report.crash->frames[1].module, "libc.so.6");
  ASSERT_TRUE(report.crash->dump.has_value());
  EXPECT_EQ(report.crash->dump->stack, (Bytes{0, 1, 2, 3}));
  EXPECT_EQ(ReportBatchToJson(*parsed).dump(), BatchText(CrashReport()));
}

TEST(FailureReportTest, RefusesMalformedReportsNamingTheField) {
  const std::string good = BatchText(CrashReport());
  struct Case {
    std::string text;
    std::string field;
  };
  const Case cases[] = {
      {Mutated(good, "\"app-crash\"", "\"app-melted\""), "reports[0].class"},
      {Mutated(good, "00112233445566778899aabbccddeeff", "0011"), "reports[0].report_id"},
      {Mutated(good, "\"occurrences\":3", "\"occurrences\":0"), "reports[0].occurrences"},
      {Mutated(good, "2026-11-22T10:00:00Z", "yesterday"), "reports[0].occurred_at"},
      {Mutated(good, "\"0x1139\"", "\"4409\""), "reports[0].crash.frames[0].offset"},
      {Mutated(good, "\"0x1139\"", "\"0x11223344556677889\""), "reports[0].crash.frames[0].offset"},
      {Mutated(good, "\"crashy\"", "\"../etc/passwd\""), "reports[0].crash.frames[0].module"},
      {Mutated(good, "\"a1b2c3\"", "\"A1B2C3\""), "reports[0].crash.frames[0].build_id"},
      {Mutated(good, "\"signal\":11", "\"signal\":99"), "reports[0].crash.signal"},
      {Mutated(good, "\"rip\"", "\"RIP!\""), "reports[0].crash.registers"},
      {Mutated(good, "\"dropped\":2", "\"dropped\":-1"), "dropped"},
      {Mutated(good, "\"message\"", "\"extra\":1,\"message\""), "reports[0]"},
  };
  for (const auto& c : cases) {
    auto parsed = ParseReportBatch(c.text);
    ASSERT_FALSE(parsed.has_value()) << c.text;
    EXPECT_THAT(parsed.error().message(), HasSubstr(c.field)) << c.text;
  }
}

TEST(FailureReportTest, CrashDetailsOnlyOnAnAppCrash) {
  auto report = CrashReport();
  report.failure_class = "app-exit";
  auto parsed = ParseReportBatch(BatchText(report));
  ASSERT_FALSE(parsed.has_value());
  EXPECT_THAT(parsed.error().message(), HasSubstr("only an app-crash"));
}

TEST(FailureReportTest, BatchBoundsAndDuplicateIds) {
  ReportBatch empty;
  auto parsed = ParseReportBatch(ReportBatchToJson(empty).dump());
  ASSERT_FALSE(parsed.has_value());
  EXPECT_THAT(parsed.error().message(), HasSubstr("at least one report"));

  ReportBatch twice;
  twice.reports = {CrashReport(), CrashReport()};
  parsed = ParseReportBatch(ReportBatchToJson(twice).dump());
  ASSERT_FALSE(parsed.has_value());
  EXPECT_THAT(parsed.error().message(), HasSubstr("appears twice"));

  ReportBatch too_many;
  for (std::size_t i = 0; i <= kMaxReportsPerBatch; ++i) {
    auto report = CrashReport();
    report.report_id = std::string(30, '0') + (i < 10 ? "0" : "") + std::to_string(i);
    too_many.reports.push_back(report);
  }
  parsed = ParseReportBatch(ReportBatchToJson(too_many).dump());
  ASSERT_FALSE(parsed.has_value());
  EXPECT_THAT(parsed.error().message(), HasSubstr("reports"));

  const std::string huge(kMaxReportBatchBytes + 1, ' ');
  parsed = ParseReportBatch(huge);
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error().code(), ErrorCode::kTooLarge);
}

TEST(FailureReportTest, OversizedDumpIsRefused) {
  auto report = CrashReport();
  report.crash->dump->stack.assign(kMaxCrashDumpBytes + 1, 0xab);
  auto parsed = ParseReportBatch(BatchText(report));
  ASSERT_FALSE(parsed.has_value());
  EXPECT_THAT(parsed.error().message(), HasSubstr("dump.stack"));
}

TEST(FailureReportTest, ReplyListsAcknowledgedIds) {
  auto reply = ParseReportBatchReply(R"({"acknowledged":["00112233445566778899aabbccddeeff"],"later":1})");
  ASSERT_TRUE(reply.has_value()) << reply.error().message();
  EXPECT_EQ(reply->acknowledged, std::vector<std::string>{"00112233445566778899aabbccddeeff"});
  EXPECT_FALSE(ParseReportBatchReply(R"({"acknowledged":["nothex"]})").has_value());
}

TEST(FailureReportTest, SignalNames) {
  EXPECT_EQ(SignalName(SIGSEGV), "SIGSEGV");
  EXPECT_EQ(SignalName(SIGSYS), "SIGSYS");
  EXPECT_EQ(SignalName(40), "SIG40");
}

TEST(CheckInTelemetryTest, TelemetryAndReportingSettingsRoundTrip) {
  CheckIn check_in;
  check_in.os_version = "1.0.0";
  check_in.telemetry = CheckInTelemetry{4, 1000, 2000, 7};
  auto parsed = ParseCheckIn(CheckInToJson(check_in).dump());
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  ASSERT_TRUE(parsed->telemetry.has_value());
  EXPECT_EQ(parsed->telemetry->app_restarts, 4);
  EXPECT_EQ(parsed->telemetry->tx_bytes, 2000);
  EXPECT_EQ(parsed->telemetry->reports_queued, 7);
  EXPECT_FALSE(ParseCheckIn(R"({"os_version":"","runtime_version":"","uptime_seconds":1,"free_memory_kb":1,)"
                            R"("telemetry":{"app_restarts":-1,"rx_bytes":0,"tx_bytes":0,"reports_queued":0}})")
                   .has_value());

  CheckInReply reply;
  reply.device_id = "d";
  reply.reporting = ReportingSettings{true};
  auto parsed_reply = ParseCheckInReply(CheckInReplyToJson(reply).dump());
  ASSERT_TRUE(parsed_reply.has_value()) << parsed_reply.error().message();
  ASSERT_TRUE(parsed_reply->reporting.has_value());
  EXPECT_TRUE(parsed_reply->reporting->crash_dumps);
  auto older = ParseCheckInReply(R"({"device_id":"d"})");
  ASSERT_TRUE(older.has_value());
  EXPECT_FALSE(older->reporting.has_value());
}

}  // namespace
}  // namespace citadel::protocol
