#include "boot/env_encoding.hpp"

#include "common/json_fields.hpp"

namespace citadel::boot {
namespace {

constexpr std::string_view kPrimary = "CITADEL_PRIMARY";
constexpr std::string_view kTrial = "CITADEL_TRIAL";
constexpr std::string_view kTrialTries = "CITADEL_TRIAL_TRIES";
constexpr std::string_view kFailed = "CITADEL_FAILED";
constexpr std::string_view kFailedReason = "CITADEL_FAILED_REASON";

std::string Key(std::string_view name) { return std::string(name); }

// The value of `name`, or nullopt when missing or empty (U-Boot's hush and
// GRUB both treat an empty variable as unset).
std::optional<std::string> Value(const EnvVariables& variables, std::string_view name) {
  auto it = variables.find(Key(name));
  if (it == variables.end() || it->second.empty()) return std::nullopt;
  return it->second;
}

std::unexpected<Error> BadValue(std::string_view name, std::string_view value, std::string_view expected) {
  return MakeError(ErrorCode::kParse,
                   std::string(name) + "=" + json_fields::Quote(value) + ": expected " + std::string(expected));
}

// "B A"; nullopt (delete the variable) for the empty order, which the
// scripts read as "A B".
std::optional<std::string> OrderValue(const std::vector<Slot>& order) {
  if (order.empty()) return std::nullopt;
  std::string text;
  for (Slot slot : order) {
    if (!text.empty()) text += ' ';
    text += SlotName(slot);
  }
  return text;
}

Expected<std::vector<Slot>> DecodeOrder(const EnvVariables& variables, std::string_view name) {
  std::vector<Slot> order;
  auto text = Value(variables, name);
  if (!text) return order;
  std::size_t position = 0;
  while (position < text->size()) {
    std::size_t end = text->find(' ', position);
    if (end == std::string::npos) end = text->size();
    if (end > position) {
      auto slot = ParseSlot(std::string_view(*text).substr(position, end - position));
      if (!slot) return BadValue(name, *text, "slot names A and B separated by spaces");
      order.push_back(*slot);
    }
    position = end + 1;
  }
  return order;
}

// One decimal digit up to kMaxTrialTries, or `fallback` when missing.
Expected<std::uint32_t> DecodeCount(const EnvVariables& variables, std::string_view name, std::uint32_t fallback) {
  auto text = Value(variables, name);
  if (!text) return fallback;
  if (text->size() != 1 || (*text)[0] < '0' || static_cast<std::uint32_t>((*text)[0] - '0') > kMaxTrialTries) {
    return BadValue(name, *text, "a number from 0 to " + std::to_string(kMaxTrialTries));
  }
  return static_cast<std::uint32_t>((*text)[0] - '0');
}

Expected<std::optional<Slot>> DecodeOptionalSlot(const EnvVariables& variables, std::string_view name) {
  auto text = Value(variables, name);
  if (!text) return std::optional<Slot>();
  auto slot = ParseSlot(*text);
  if (!slot) return BadValue(name, *text, "A or B");
  return std::optional<Slot>(*slot);
}

void EncodeRecord(const BootRecord& record, EnvAssignments& out) {
  out[Key(kPrimary)] = std::string(SlotName(record.primary));
  out[Key(kTrial)] = std::nullopt;
  out[Key(kTrialTries)] = std::nullopt;
  out[Key(kFailed)] = std::nullopt;
  out[Key(kFailedReason)] = std::nullopt;
  if (record.trial) {
    out[Key(kTrial)] = std::string(SlotName(*record.trial));
    out[Key(kTrialTries)] = std::to_string(record.trial_tries);
  }
  if (record.failure) {
    out[Key(kFailed)] = std::string(SlotName(record.failure->slot));
    out[Key(kFailedReason)] = SanitizeReason(record.failure->reason);
  }
}

Expected<BootRecord> DecodeRecord(const EnvVariables& variables, const BootVariables& boot_variables) {
  BootRecord record;
  CITADEL_TRY(std::optional<Slot> primary, DecodeOptionalSlot(variables, kPrimary));
  record.primary = primary.value_or(EffectiveOrder(boot_variables).front());
  CITADEL_TRY(record.trial, DecodeOptionalSlot(variables, kTrial));
  if (record.trial) {
    CITADEL_TRY(record.trial_tries, DecodeCount(variables, kTrialTries, 0));
  }
  CITADEL_TRY(std::optional<Slot> failed, DecodeOptionalSlot(variables, kFailed));
  if (failed) {
    record.failure = TrialFailure{*failed, SanitizeReason(Value(variables, kFailedReason).value_or(""))};
  }
  return record;
}

std::string GrubName(Slot slot, std::string_view suffix) { return std::string(SlotName(slot)) + std::string(suffix); }

}  // namespace

EnvVariables ParseEnvListing(std::string_view text) {
  EnvVariables variables;
  std::size_t position = 0;
  while (position < text.size()) {
    std::size_t end = text.find('\n', position);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(position, end - position);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::size_t equals = line.find('=');
    if (equals != std::string_view::npos && equals > 0) {
      variables[std::string(line.substr(0, equals))] = std::string(line.substr(equals + 1));
    }
    position = end + 1;
  }
  return variables;
}

EnvAssignments EncodeUbootState(const StoredBootState& stored) {
  EnvAssignments out;
  out["BOOT_ORDER"] = OrderValue(stored.variables.order);
  for (Slot slot : {Slot::kA, Slot::kB}) {
    out["BOOT_" + std::string(SlotName(slot)) + "_LEFT"] = std::to_string(stored.variables.tries_left[SlotIndex(slot)]);
  }
  EncodeRecord(stored.record, out);
  return out;
}

Expected<StoredBootState> DecodeUbootState(const EnvVariables& variables) {
  StoredBootState stored;
  CITADEL_TRY(stored.variables.order, DecodeOrder(variables, "BOOT_ORDER"));
  for (Slot slot : {Slot::kA, Slot::kB}) {
    CITADEL_TRY(stored.variables.tries_left[SlotIndex(slot)],
                DecodeCount(variables, "BOOT_" + std::string(SlotName(slot)) + "_LEFT", kDefaultTries));
  }
  CITADEL_TRY(stored.record, DecodeRecord(variables, stored.variables));
  return stored;
}

EnvAssignments EncodeGrubState(const StoredBootState& stored) {
  EnvAssignments out;
  out["ORDER"] = OrderValue(stored.variables.order);
  for (Slot slot : {Slot::kA, Slot::kB}) {
    bool bootable = stored.variables.tries_left[SlotIndex(slot)] > 0;
    out[GrubName(slot, "_OK")] = bootable ? "1" : "0";
    out[GrubName(slot, "_TRY")] = "0";
  }
  EncodeRecord(stored.record, out);
  return out;
}

Expected<StoredBootState> DecodeGrubState(const EnvVariables& variables) {
  StoredBootState stored;
  CITADEL_TRY(stored.variables.order, DecodeOrder(variables, "ORDER"));
  for (Slot slot : {Slot::kA, Slot::kB}) {
    std::string ok = Value(variables, GrubName(slot, "_OK")).value_or(slot == Slot::kA ? "1" : "0");
    std::string tried = Value(variables, GrubName(slot, "_TRY")).value_or("0");
    stored.variables.tries_left[SlotIndex(slot)] = ok == "1" && tried == "0" ? 1 : 0;
  }
  CITADEL_TRY(stored.record, DecodeRecord(variables, stored.variables));
  return stored;
}

}  // namespace citadel::boot
