#include "tuf/canonical.hpp"

#include <cstddef>
#include <cstdint>

namespace citadel::tuf {
namespace {

// Deeper than any TUF document; ParseJsonStrict stops at 32 already, this
// guards values built in code.
constexpr std::size_t kMaxDepth = 64;

void AppendString(std::string& out, const std::string& text) {
  out += '"';
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

Expected<void> Append(std::string& out, const Json& value, std::size_t depth) {
  if (depth > kMaxDepth) return MakeError(ErrorCode::kInvalidArgument, "canonical JSON: nesting too deep");
  switch (value.type()) {
    case Json::value_t::null:
      out += "null";
      return kOk;
    case Json::value_t::boolean:
      out += value.get<bool>() ? "true" : "false";
      return kOk;
    case Json::value_t::number_integer:
      out += std::to_string(value.get<std::int64_t>());
      return kOk;
    case Json::value_t::number_unsigned:
      out += std::to_string(value.get<std::uint64_t>());
      return kOk;
    case Json::value_t::number_float:
      return MakeError(ErrorCode::kInvalidArgument, "canonical JSON: floating-point numbers are not allowed");
    case Json::value_t::string:
      AppendString(out, value.get_ref<const std::string&>());
      return kOk;
    case Json::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& element : value) {
        if (!first) out += ',';
        first = false;
        CITADEL_TRY_VOID(Append(out, element, depth + 1));
      }
      out += ']';
      return kOk;
    }
    case Json::value_t::object: {
      // nlohmann's object is a std::map<std::string, ...>: iteration is in
      // std::string order, which compares bytes as unsigned char — exactly
      // the sorted-by-code-point order encode_canonical produces.
      out += '{';
      bool first = true;
      for (const auto& [key, member] : value.items()) {
        if (!first) out += ',';
        first = false;
        AppendString(out, key);
        out += ':';
        CITADEL_TRY_VOID(Append(out, member, depth + 1));
      }
      out += '}';
      return kOk;
    }
    case Json::value_t::binary:
    case Json::value_t::discarded:
      return MakeError(ErrorCode::kInvalidArgument, "canonical JSON: value has no JSON form");
  }
  return MakeError(ErrorCode::kInternal, "canonical JSON: unknown value type");
}

}  // namespace

Expected<std::string> EncodeCanonical(const Json& value) {
  std::string out;
  CITADEL_TRY_VOID(Append(out, value, 0));
  return out;
}

}  // namespace citadel::tuf
