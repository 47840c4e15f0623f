// The canonical byte form TUF signatures cover: securesystemslib's
// encode_canonical, i.e. OLPC canonical JSON (http://wiki.laptop.org/go/Canonical_JSON).
//
// This is NOT common/canonical_json.hpp (RFC 8785 / JCS): the two disagree on
// string escaping, so a TUF signature made over JCS bytes would not verify
// in python-tuf, go-tuf or any other TUF client, and the reverse. The rules:
//   * no white space at all;
//   * object members sorted by key, comparing the UTF-8 bytes (which is the
//     Unicode code point order Python sorts by);
//   * strings escape ONLY '\\' and '"'; every other byte, control
//     characters and non-ASCII UTF-8 included, is written raw (a PEM key's
//     newlines stay newlines — the output is then not valid JSON text, on
//     purpose: it is only ever hashed or signed, never parsed);
//   * integers in decimal, any magnitude JSON parsing produced; floats are
//     refused; true, false, null.
#pragma once

#include <string>

#include "common/canonical_json.hpp"  // Json
#include "common/error.hpp"

namespace citadel::tuf {

// The canonical bytes of value. Fails (kInvalidArgument) on a float, on a
// binary or discarded value, and on nesting deeper than 64 levels.
Expected<std::string> EncodeCanonical(const Json& value);

}  // namespace citadel::tuf
