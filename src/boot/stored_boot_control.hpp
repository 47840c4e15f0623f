// The BootControl operations over a backend that can load and store the
// whole state at once: each operation loads, plans (boot_transitions.hpp)
// and stores once, so a power cut leaves either the old or the new state.
// A plan that changes nothing writes nothing (flash wears).
//
// Internal to src/boot; the backends derive from it.
#pragma once

#include <functional>
#include <string_view>

#include "boot/boot_control.hpp"
#include "boot/boot_transitions.hpp"

namespace citadel::boot {

class StoredBootControl : public BootControl {
 public:
  std::uint32_t MaxTrialTries() const final { return traits_.max_tries; }
  Expected<BootState> ReadState() final;
  [[nodiscard]] Expected<void> StartTrial(Slot slot, std::uint32_t tries) final;
  [[nodiscard]] Expected<void> Commit() final;
  [[nodiscard]] Expected<void> CancelTrial() final;
  [[nodiscard]] Expected<void> FailTrial(std::string_view reason) final;
  [[nodiscard]] Expected<void> AcknowledgeFailure() final;

 protected:
  explicit StoredBootControl(const LoaderTraits& traits) : traits_(traits) {}

  struct Snapshot {
    StoredBootState stored;
    Slot booted = Slot::kA;
  };
  virtual Expected<Snapshot> Load() = 0;
  // One atomic write of `stored` (and, where the backend keeps it, booted).
  [[nodiscard]] virtual Expected<void> Store(const StoredBootState& stored, Slot booted) = 0;

  const LoaderTraits& traits() const { return traits_; }

 private:
  using Plan = std::function<Expected<StoredBootState>(const StoredBootState&, Slot booted)>;
  [[nodiscard]] Expected<void> Apply(std::string_view operation, const Plan& plan);

  LoaderTraits traits_;
};

}  // namespace citadel::boot
