#include "common/canonical_json.hpp"

#include <algorithm>
#include <cstdint>
#include <set>
#include <vector>

namespace citadel {
namespace {

constexpr std::int64_t kMaxSafeInteger = (std::int64_t{1} << 53) - 1;
// Deeper than any document Citadel or TUF signs; ParseJsonStrict stops at
// 32 already, this guards values built in code.
constexpr std::size_t kMaxCanonicalDepth = 64;

void AppendEscaped(std::string& out, const std::string& text, CanonicalForm form) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (char c : text) {
    if (form == CanonicalForm::kOlpc) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
      continue;
    }
    auto byte = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (byte < 0x20) {
          out += "\\u00";
          out += kHex[byte >> 4];
          out += kHex[byte & 0xF];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

Expected<void> Append(std::string& out, const Json& value, CanonicalForm form, std::size_t depth) {
  if (depth > kMaxCanonicalDepth) return MakeError(ErrorCode::kInvalidArgument, "canonical JSON: nesting too deep");
  const bool any_integer = form == CanonicalForm::kOlpc;
  switch (value.type()) {
    case Json::value_t::null:
      out += "null";
      return kOk;
    case Json::value_t::boolean:
      out += value.get<bool>() ? "true" : "false";
      return kOk;
    case Json::value_t::number_integer: {
      auto n = value.get<std::int64_t>();
      if (!any_integer && (n > kMaxSafeInteger || n < -kMaxSafeInteger)) {
        return MakeError(ErrorCode::kInvalidArgument, "integer outside the canonical range");
      }
      out += std::to_string(n);
      return kOk;
    }
    case Json::value_t::number_unsigned: {
      auto n = value.get<std::uint64_t>();
      if (!any_integer && n > static_cast<std::uint64_t>(kMaxSafeInteger)) {
        return MakeError(ErrorCode::kInvalidArgument, "integer outside the canonical range");
      }
      out += std::to_string(n);
      return kOk;
    }
    case Json::value_t::number_float:
      return MakeError(ErrorCode::kInvalidArgument, "floating-point numbers have no canonical form");
    case Json::value_t::string:
      AppendEscaped(out, value.get_ref<const std::string&>(), form);
      return kOk;
    case Json::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& element : value) {
        if (!first) out += ',';
        first = false;
        CITADEL_TRY_VOID(Append(out, element, form, depth + 1));
      }
      out += ']';
      return kOk;
    }
    case Json::value_t::object: {
      // nlohmann's object is a std::map ordered by std::string's operator<,
      // which compares bytes; still sort explicitly so the rule is visible.
      std::vector<const std::string*> keys;
      keys.reserve(value.size());
      for (const auto& [key, _] : value.items()) keys.push_back(&key);
      std::sort(keys.begin(), keys.end(), [](const auto* a, const auto* b) { return *a < *b; });
      out += '{';
      bool first = true;
      for (const auto* key : keys) {
        if (!first) out += ',';
        first = false;
        AppendEscaped(out, *key, form);
        out += ':';
        CITADEL_TRY_VOID(Append(out, value.at(*key), form, depth + 1));
      }
      out += '}';
      return kOk;
    }
    case Json::value_t::binary:
    case Json::value_t::discarded:
      return MakeError(ErrorCode::kInvalidArgument, "value has no JSON form");
  }
  return MakeError(ErrorCode::kInternal, "unknown JSON type");
}

}  // namespace

Expected<Json> ParseJsonStrict(std::string_view text, std::size_t max_depth) {
  // One key set per open container; arrays push an empty set that is never
  // consulted, which keeps the stack aligned with nesting.
  std::vector<std::set<std::string>> open_keys;
  std::string failure;
  auto callback = [&](int depth, Json::parse_event_t event, Json& parsed) -> bool {
    if (!failure.empty()) return false;
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        if (static_cast<std::size_t>(depth) >= max_depth) {
          failure = "nesting deeper than " + std::to_string(max_depth);
          return false;
        }
        open_keys.emplace_back();
        break;
      case Json::parse_event_t::object_end:
      case Json::parse_event_t::array_end:
        if (!open_keys.empty()) open_keys.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!open_keys.empty() && !open_keys.back().insert(parsed.get<std::string>()).second) {
          failure = "duplicate key \"" + parsed.get<std::string>() + "\"";
          return false;
        }
        break;
      case Json::parse_event_t::value:
        break;
    }
    return true;
  };
  try {
    Json result = Json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true,
                              /*ignore_comments=*/false);
    if (!failure.empty()) return MakeError(ErrorCode::kParse, "invalid JSON: " + failure);
    if (result.is_discarded()) return MakeError(ErrorCode::kParse, "invalid JSON");
    return result;
  } catch (const Json::exception& e) {
    if (!failure.empty()) return MakeError(ErrorCode::kParse, "invalid JSON: " + failure);
    // nlohmann's messages name the byte offset and what was expected.
    std::string what = e.what();
    auto pos = what.find("] ");
    return MakeError(ErrorCode::kParse, "invalid JSON: " + (pos == std::string::npos ? what : what.substr(pos + 2)));
  }
}

Expected<std::string> CanonicalJson(const Json& value, CanonicalForm form) {
  std::string out;
  CITADEL_TRY_VOID(Append(out, value, form, 0));
  return out;
}

}  // namespace citadel
