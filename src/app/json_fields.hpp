// Strict readers shared by the manifest and board parsers (internal to
// citadel_app). Each names the value's path in its error the way a person
// would point at it: "Capabilities.Gpio[3]: expected a string".
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "common/canonical_json.hpp"
#include "common/error.hpp"

namespace citadel::app::detail {

std::string Child(std::string_view path, std::string_view key);
std::string Element(std::string_view path, std::size_t index);

// "path: reason", code kInvalidArgument.
std::unexpected<Error> FieldError(std::string_view path, std::string_view reason);

// Text for an untrusted string inside an error message: quoted, control and
// non-ASCII bytes escaped as \xNN, cut to a bounded length.
std::string Quote(std::string_view text);

// Refuses a non-object and any member whose key is not in `known`.
Expected<void> ExpectObject(const Json& value, std::string_view path, std::initializer_list<std::string_view> known);

// The member `key` of `object`, or nullptr when absent.
const Json* Find(const Json& object, std::string_view key);
Expected<const Json*> Require(const Json& object, std::string_view path, std::string_view key);

Expected<std::string> ReadString(const Json& value, std::string_view path, std::size_t max_bytes);
Expected<std::int64_t> ReadInteger(const Json& value, std::string_view path, std::int64_t min, std::int64_t max);
Expected<bool> ReadBool(const Json& value, std::string_view path);
// Checks that value is an array of at most max_elements entries.
Expected<void> ExpectArray(const Json& value, std::string_view path, std::size_t max_elements);

}  // namespace citadel::app::detail
