#include "app/resources.hpp"

#include <iterator>

namespace citadel::app {

std::map<std::string, std::string> ExclusiveResources(const Policy& policy) {
  std::map<std::string, std::string> resources;
  for (const Peripheral& peripheral : policy.peripherals) {
    resources.emplace(peripheral.ResourceKey(), peripheral.Describe());
  }
  for (std::uint16_t port : policy.tcp_server_ports) {
    resources.emplace("tcp:" + std::to_string(port), "TCP server port " + std::to_string(port));
  }
  for (std::uint16_t port : policy.udp_server_ports) {
    resources.emplace("udp:" + std::to_string(port), "UDP server port " + std::to_string(port));
  }
  return resources;
}

Expected<void> ResourceRegistry::Claim(const Policy& policy) {
  const auto wanted = ExclusiveResources(policy);
  for (const auto& [key, description] : wanted) {
    auto held = holders_.find(key);
    if (held != holders_.end() && held->second.component_id != policy.component_id) {
      return MakeError(ErrorCode::kConflict, "cannot install app \"" + policy.name + "\" (" + policy.component_id +
                                                 "): " + description + " is held by installed app \"" +
                                                 held->second.app_name + "\" (" + held->second.component_id + ")");
    }
  }
  Release(policy.component_id);
  for (const auto& [key, description] : wanted) {
    holders_.emplace(key, ResourceHolder{policy.component_id, policy.name, description});
  }
  return kOk;
}

void ResourceRegistry::Release(std::string_view component_id) {
  for (auto it = holders_.begin(); it != holders_.end();) {
    it = it->second.component_id == component_id ? holders_.erase(it) : std::next(it);
  }
}

std::optional<ResourceHolder> ResourceRegistry::HolderOf(std::string_view resource_key) const {
  auto it = holders_.find(resource_key);
  if (it == holders_.end()) return std::nullopt;
  return it->second;
}

}  // namespace citadel::app
