// Fuzzes what the service parses from a device's failure-report upload
// (and what a device reads back from its own queue files): the batch and
// the single report. Properties: nothing crashes; a refusal has a reason;
// an accepted batch encodes to JSON that parses to the same batch (the
// service stores the re-encoded form, so it must be lossless).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "common/encoding.hpp"
#include "protocol/failure_report.hpp"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "report_batch_fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = citadel::AsText({data, size});
  auto batch = citadel::protocol::ParseReportBatch(text);
  if (!batch) {
    if (batch.error().message().empty()) Fail("batch refused without a reason");
  } else {
    const auto encoded = citadel::protocol::ReportBatchToJson(*batch).dump();
    auto again = citadel::protocol::ParseReportBatch(encoded);
    if (!again) Fail("an accepted batch does not parse after encoding");
    if (citadel::protocol::ReportBatchToJson(*again).dump() != encoded) Fail("encoding is not stable");
  }
  auto report = citadel::protocol::ParseFailureReport(text);
  if (!report && report.error().message().empty()) Fail("report refused without a reason");
  auto reply = citadel::protocol::ParseReportBatchReply(text);
  if (!reply && reply.error().message().empty()) Fail("reply refused without a reason");
  return 0;
}
