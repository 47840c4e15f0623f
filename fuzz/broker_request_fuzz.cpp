// Fuzzes the peripheral broker's request parser (src/broker/request.hpp):
// every message on an app's broker channel is untrusted. Properties:
// nothing crashes or throws; a refusal carries an errno and a message; an
// accepted request has an op, and the response builders accept it.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "broker/request.hpp"
#include "common/encoding.hpp"

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
  return 0;
}
