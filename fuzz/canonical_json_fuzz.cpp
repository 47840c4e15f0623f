// Fuzzes the strict JSON parser and the canonical form every signature
// covers. Property: for any input the parser accepts and that has a
// canonical form, that form parses again and is a fixed point:
//   canonical(parse(canonical(x))) == canonical(x).
// A failure would mean a signer and a verifier can disagree on the bytes of
// the same document.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "common/canonical_json.hpp"
#include "common/encoding.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto parsed = citadel::ParseJsonStrict(citadel::AsText({data, size}));
  if (!parsed) return 0;
  auto canonical = citadel::CanonicalJson(*parsed);
  if (!canonical) return 0;  // floats and out-of-range integers have no canonical form

  auto reparsed = citadel::ParseJsonStrict(*canonical);
  if (!reparsed) {
    std::fprintf(stderr, "canonical form does not parse: %s\n", reparsed.error().message().c_str());
    std::abort();
  }
  auto again = citadel::CanonicalJson(*reparsed);
  if (!again) {
    std::fprintf(stderr, "re-parsed canonical form has no canonical form: %s\n", again.error().message().c_str());
    std::abort();
  }
  if (*again != *canonical) {
    std::fprintf(stderr, "canonical form is not a fixed point\n");
    std::abort();
  }
  if (*reparsed != *parsed) {
    std::fprintf(stderr, "canonical form changed the document's value\n");
    std::abort();
  }
  return 0;
}
