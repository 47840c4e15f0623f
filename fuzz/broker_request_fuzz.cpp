// Fuzzes the peripheral broker's request parser (src/broker/request.hpp)
// and the crash request's parser (src/broker/crash_notice.hpp): every
// message on an app's broker channel is untrusted. Properties: nothing
// crashes or throws; a refusal carries an errno and a message; an accepted
// request has an op, and the response builders accept it; an accepted crash
// notice is within the failure-report bounds.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "broker/crash_notice.hpp"
#include "broker/protocol.hpp"
#include "broker/request.hpp"
#include "common/encoding.hpp"
#include "protocol/failure_report.hpp"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "broker_request_fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::optional<std::uint64_t> id;
  auto request = citadel::broker::ParseRequest(citadel::AsText({data, size}), &id);
  if (!request) {
    if (request.error().error_number == 0 || request.error().message.empty()) Fail("refused without errno/reason");
    (void)citadel::broker::ErrorResponse(id, request.error());
    return 0;
  }
  if (request->op.empty()) Fail("accepted a request without an op");
  // The typed accessors must refuse, not crash, on whatever the body holds.
  (void)citadel::broker::StringField(request->body, "name", 64);
  (void)citadel::broker::UnsignedField(request->body, "address", 127);
  (void)citadel::broker::IntegerField(request->body, "value");
  (void)citadel::broker::BoolField(request->body, "enabled");
  (void)citadel::broker::HexField(request->body, "data", 8192, true);
  (void)citadel::broker::OkResponse(request->id, citadel::Json::object(), false);
  // Any op: the crash parser must refuse what is not a crash request.
  auto crash = citadel::broker::ParseCrashNotice(request->body);
  if (!crash) {
    if (crash.error().error_number != EINVAL || crash.error().message.empty()) Fail("crash refused without EINVAL");
    return 0;
  }
  if (crash->signal < 1 || crash->signal > 64) Fail("accepted a crash with a bad signal");
  if (crash->registers.size() > citadel::protocol::kMaxCrashRegisters) Fail("accepted too many registers");
  if (crash->pcs.size() > citadel::protocol::kMaxCrashFrames) Fail("accepted too many pcs");
  if (crash->stack.size() > citadel::broker::protocol::kMaxCrashStackBytes) Fail("accepted too much stack");
  if (!crash->component_id.empty()) Fail("the request chose the crash's component id");
  return 0;
}
