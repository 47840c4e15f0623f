// Anti-rollback floors: per component, the lowest security version this
// device still installs, kept in a RoT monotonic counter so it survives
// power loss and cannot be lowered (a TPM NV counter on real hardware).
//
// Counter name: "floor.<component_id>" (ARCHITECTURE.md writes
// "floor:<component>"; the RoT's counter names allow only [A-Za-z0-9._-],
// hence the dot). Component ids are checked by the selection parser to fit.
//
// Counters only increment by one, so raising a floor to S increments until
// the counter equals S; S is bounded (kMaxFloor) so a hostile security
// version cannot make the device spin. Raising is idempotent and a no-op when
// the floor is already at or above S: a kill half-way leaves a value between
// the old floor and S, and the next call finishes the job.
//
// Threading: Floors serialises its own calls. It is the only user of the
// RoT's counter methods in citadeld; the agent uses the RoT's keys and
// registers, which do not share state with the counters in either backend.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "rot/rot.hpp"

namespace citadel::update {

inline constexpr std::int64_t kMaxFloor = 1'000'000;

std::string FloorCounterName(std::string_view component_id);

class Floors {
 public:
  // The RoT must outlive this object.
  explicit Floors(rot::RootOfTrust& rot) : rot_(rot) {}

  Expected<std::uint64_t> Read(std::string_view component_id) const;
  // Raises the floor of component_id to security_version (0..kMaxFloor).
  [[nodiscard]] Expected<void> Raise(std::string_view component_id, std::int64_t security_version);

 private:
  rot::RootOfTrust& rot_;
  mutable std::mutex mutex_;
};

}  // namespace citadel::update
