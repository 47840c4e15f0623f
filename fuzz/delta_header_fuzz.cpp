// Fuzzes the delta file header parser (src/delta), the first thing a device
// reads from a downloaded delta. Properties: nothing crashes; a refusal has
// a reason; an accepted header is within the bounds and re-serializes to
// exactly the bytes it was parsed from (one encoding per header).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "delta/delta.hpp"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "delta_header_fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace delta = citadel::delta;
  auto header = delta::ParseDeltaHeader({data, size});
  if (!header) {
    if (header.error().message().empty()) Fail("header refused without a reason");
    return 0;
  }
  if (header->source_length > delta::kMaxImageBytes || header->target_length > delta::kMaxImageBytes) {
    Fail("accepted a length above the bound");
  }
  const auto bytes = delta::SerializeDeltaHeader(*header);
  if (!std::equal(bytes.begin(), bytes.end(), data)) Fail("accepted header does not re-serialize to its bytes");
  return 0;
}
