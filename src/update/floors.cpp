#include "update/floors.hpp"

#include "update/fault.hpp"

namespace citadel::update {

std::string FloorCounterName(std::string_view component_id) { return "floor." + std::string(component_id); }

Expected<std::uint64_t> Floors::Read(std::string_view component_id) const {
  std::lock_guard lock(mutex_);
  auto value = rot_.ReadCounter(FloorCounterName(component_id));
  if (!value) return WrapError(value.error(), "reading the floor of " + std::string(component_id));
  return *value;
}

Expected<void> Floors::Raise(std::string_view component_id, std::int64_t security_version) {
  if (security_version < 0 || security_version > kMaxFloor) {
    return MakeError(ErrorCode::kInvalidArgument, "security version " + std::to_string(security_version) +
                                                      " is outside 0.." + std::to_string(kMaxFloor));
  }
  const auto target = static_cast<std::uint64_t>(security_version);
  const std::string name = FloorCounterName(component_id);
  std::lock_guard lock(mutex_);
  auto current = rot_.ReadCounter(name);
  if (!current) return WrapError(current.error(), "reading the floor of " + std::string(component_id));
  // Bounded: at most kMaxFloor increments, and each must move the counter.
  for (std::uint64_t value = *current; value < target;) {
    auto next = rot_.IncrementCounter(name);
    if (!next) return WrapError(next.error(), "raising the floor of " + std::string(component_id));
    if (*next <= value) return MakeError(ErrorCode::kInternal, "counter " + name + " did not increase");
    value = *next;
    FaultPoint("update:floor-increment");
  }
  return kOk;
}

}  // namespace citadel::update
