// Which installed app holds which exclusive resource. Board peripherals
// (one GPIO line, one UART, ...) and listening TCP/UDP ports belong to at
// most one installed app; installing a second app that asks for a held
// resource fails and names both apps.
//
// Threading: not synchronised; the app manager owns one registry and
// serialises installs and removals.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "app/policy.hpp"
#include "common/error.hpp"

namespace citadel::app {

struct ResourceHolder {
  std::string component_id;
  std::string app_name;
  std::string resource;  // human form, e.g. "Gpio LED1 (gpiochip0 line 0)"
};

class ResourceRegistry {
 public:
  // Claims every exclusive resource of `policy` for its app, all or nothing:
  // on failure (kConflict, naming the resource and both apps) nothing
  // changes. Claiming again for the same component id (an update) replaces
  // that app's previous claims.
  [[nodiscard]] Expected<void> Claim(const Policy& policy);
  // Frees everything the app holds; unknown ids are a no-op.
  void Release(std::string_view component_id);

  // The holder of a resource key (Peripheral::ResourceKey(), or "tcp:PORT" /
  // "udp:PORT"), or nullopt.
  std::optional<ResourceHolder> HolderOf(std::string_view resource_key) const;
  std::size_t size() const { return holders_.size(); }

 private:
  std::map<std::string, ResourceHolder, std::less<>> holders_;
};

// The exclusive resources of a policy: resource key -> human description.
std::map<std::string, std::string> ExclusiveResources(const Policy& policy);

}  // namespace citadel::app
