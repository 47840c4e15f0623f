// The canonical byte form TUF signatures cover: securesystemslib's
// encode_canonical, i.e. OLPC canonical JSON (http://wiki.laptop.org/go/Canonical_JSON).
// One encoder serves both canonical forms: common/canonical_json.hpp
// (CanonicalForm::kOlpc says how it differs from Citadel's JCS form).
#pragma once

#include <string>

#include "common/canonical_json.hpp"  // Json
#include "common/error.hpp"

namespace citadel::tuf {

// The canonical bytes of value. Fails (kInvalidArgument) on a float, on a
// binary or discarded value, and on nesting deeper than 64 levels.
inline Expected<std::string> EncodeCanonical(const Json& value) { return CanonicalJson(value, CanonicalForm::kOlpc); }

}  // namespace citadel::tuf
