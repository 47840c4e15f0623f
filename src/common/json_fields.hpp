// Strict readers for fields of untrusted JSON documents: app manifests, board
// definitions and the device <-> service messages all go through these, so a
// document means the same thing to every parser in Citadel.
//
// Contract:
//   * Strict. A value of the wrong type, a string or array over its limit, an
//     integer outside [min, max] (floats included) and, unless the caller
//     opts out, an unknown object member are refused; nothing is coerced or
//     truncated.
//   * Every error is kInvalidArgument with the message "path: reason", where
//     path points at the value the way a person would:
//     "Capabilities.Gpio[3]: expected a string". The top-level value (empty
//     path) is called "document". Build paths with Child() and Element().
//   * Input is untrusted. The readers never throw and never echo a value's
//     bytes unbounded into a message: text taken from the document goes
//     through Quote() first.
//   * The value must already have been parsed with ParseJsonStrict (bounded
//     size and depth, no duplicate keys); these readers check shape only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "common/canonical_json.hpp"
#include "common/error.hpp"

namespace citadel::json_fields {

// What ExpectObject does with a member whose key is not in `known`. kIgnore
// is for documents from a peer that may be newer than this reader (a
// service's replies); everything a device or developer sends is kRefuse.
enum class UnknownFields { kRefuse, kIgnore };

// "path.key", or "key" at the top level.
std::string Child(std::string_view path, std::string_view key);
// "path[index]".
std::string Element(std::string_view path, std::size_t index);

// "path: reason" (or "document: reason" for the empty path), code
// kInvalidArgument.
std::unexpected<Error> FieldError(std::string_view path, std::string_view reason);

// Text for an untrusted string inside an error message: quoted, control and
// non-ASCII bytes escaped as \xNN, cut to a bounded length.
std::string Quote(std::string_view text);

// Refuses a non-object and, under kRefuse, any member whose key is not in
// `known`.
Expected<void> ExpectObject(const Json& value, std::string_view path, std::initializer_list<std::string_view> known,
                            UnknownFields unknown = UnknownFields::kRefuse);

// The member `key` of `object`, or nullptr when absent (or when `object` is
// not an object).
const Json* Find(const Json& object, std::string_view key);
// The member `key` of `object` (at `path`), or a "missing field" error.
Expected<const Json*> Require(const Json& object, std::string_view path, std::string_view key);

// A string of at most max_bytes bytes; empty only when allow_empty.
Expected<std::string> ReadString(const Json& value, std::string_view path, std::size_t max_bytes,
                                 bool allow_empty = false);
// An integer in [min, max]. Floats, even integral ones, are refused.
Expected<std::int64_t> ReadInteger(const Json& value, std::string_view path, std::int64_t min, std::int64_t max);
Expected<bool> ReadBool(const Json& value, std::string_view path);
// Checks that value is an array of at most max_elements entries; the caller
// reads the entries (naming each with Element()).
Expected<void> ExpectArray(const Json& value, std::string_view path, std::size_t max_elements);

}  // namespace citadel::json_fields
