#include "common/json_fields.hpp"

#include <algorithm>
#include <array>

namespace citadel::json_fields {
namespace {

constexpr std::size_t kMaxQuotedBytes = 64;

}  // namespace

std::string Child(std::string_view path, std::string_view key) {
  std::string out(path);
  if (!out.empty()) out += '.';
  out += key;
  return out;
}

std::string Element(std::string_view path, std::size_t index) {
  return std::string(path) + "[" + std::to_string(index) + "]";
}

std::unexpected<Error> FieldError(std::string_view path, std::string_view reason) {
  std::string message(path.empty() ? std::string_view("document") : path);
  message += ": ";
  message += reason;
  return MakeError(ErrorCode::kInvalidArgument, std::move(message));
}

std::string Quote(std::string_view text) {
  constexpr std::array<char, 16> kHex = {'0', '1', '2', '3', '4', '5', '6', '7',
                                         '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'};
  std::string out = "\"";
  for (std::size_t i = 0; i < text.size() && i < kMaxQuotedBytes; ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte < 0x20 || byte >= 0x7f || byte == '"' || byte == '\\') {
      out += "\\x";
      out += kHex[byte >> 4U];
      out += kHex[byte & 0xfU];
    } else {
      out += static_cast<char>(byte);
    }
  }
  if (text.size() > kMaxQuotedBytes) out += "...";
  out += '"';
  return out;
}

Expected<void> ExpectObject(const Json& value, std::string_view path, std::initializer_list<std::string_view> known,
                            UnknownFields unknown) {
  if (!value.is_object()) return FieldError(path, "expected an object");
  if (unknown == UnknownFields::kIgnore) return kOk;
  for (const auto& [key, _] : value.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return FieldError(Child(path, key), "unknown field");
    }
  }
  return kOk;
}

const Json* Find(const Json& object, std::string_view key) {
  auto it = object.find(std::string(key));
  return it == object.end() ? nullptr : &*it;
}

Expected<const Json*> Require(const Json& object, std::string_view path, std::string_view key) {
  const Json* value = Find(object, key);
  if (value == nullptr) return FieldError(Child(path, key), "missing field");
  return value;
}

Expected<std::string> ReadString(const Json& value, std::string_view path, std::size_t max_bytes, bool allow_empty) {
  if (!value.is_string()) return FieldError(path, "expected a string");
  const auto& text = value.get_ref<const std::string&>();
  if (!allow_empty && text.empty()) return FieldError(path, "must not be empty");
  if (text.size() > max_bytes) {
    return FieldError(path, "is " + std::to_string(text.size()) + " bytes; the limit is " + std::to_string(max_bytes));
  }
  return text;
}

Expected<std::int64_t> ReadInteger(const Json& value, std::string_view path, std::int64_t min, std::int64_t max) {
  const std::string range = " (" + std::to_string(min) + ".." + std::to_string(max) + ")";
  if (!value.is_number_integer()) return FieldError(path, "expected an integer" + range);
  if (value.is_number_unsigned()) {
    // nlohmann stores every non-negative integer it parses as unsigned.
    const auto u = value.get<std::uint64_t>();
    if (max < 0 || u > static_cast<std::uint64_t>(max)) {
      return FieldError(path, std::to_string(u) + " is out of range" + range);
    }
    const auto n = static_cast<std::int64_t>(u);
    if (n < min) return FieldError(path, std::to_string(n) + " is out of range" + range);
    return n;
  }
  const auto n = value.get<std::int64_t>();
  if (n < min || n > max) return FieldError(path, std::to_string(n) + " is out of range" + range);
  return n;
}

Expected<bool> ReadBool(const Json& value, std::string_view path) {
  if (!value.is_boolean()) return FieldError(path, "expected true or false");
  return value.get<bool>();
}

Expected<void> ExpectArray(const Json& value, std::string_view path, std::size_t max_elements) {
  if (!value.is_array()) return FieldError(path, "expected an array");
  if (value.size() > max_elements) {
    return FieldError(path,
                      "has " + std::to_string(value.size()) + " entries; the limit is " + std::to_string(max_elements));
  }
  return kOk;
}

}  // namespace citadel::json_fields
