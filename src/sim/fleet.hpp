// The virtual fleet's identities: per device an in-memory root of trust
// (identity + TLS key) with a manufacturer chain issued by the manufacturer
// CA, and the boot measurements citadeld would extend (OS, runtime, config).
//
// Fleet file (--fleet-file): JSON {"version": 1, "devices": [{"identity_key",
// "tls_key" (PKCS#8 PEM), "manufacturer_chain" (PEM, leaf first)}]}, written
// atomically with mode 0600 — it holds every device's private keys. A run
// reuses the first N devices of the file and appends new ones when it needs
// more, so a second run speaks for the same (already claimed) devices.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "sim/memory_rot.hpp"

namespace citadel::sim {

struct FleetSpec {
  std::size_t devices = 0;
  std::filesystem::path manufacturer_dir;  // needed only when devices must be made
  std::filesystem::path fleet_file;        // empty: fresh devices, nothing written
  std::string os_name = "citadel-os";
  std::string os_version = "1.0.0";
};

struct Fleet {
  std::vector<std::unique_ptr<MemoryRootOfTrust>> devices;
  std::size_t reused = 0;  // devices read from the fleet file
};

// Loads/creates the identities and measures each device's boot.
Expected<Fleet> PrepareFleet(const FleetSpec& spec);

// The events a virtual device's boot extends, like device::BootMeasurements:
// OS name/version with a digest of the version (there is no image), the
// runtime, and the configuration.
std::vector<rot::MeasurementEvent> SimulatedBootEvents(const std::string& os_name, const std::string& os_version);

}  // namespace citadel::sim
