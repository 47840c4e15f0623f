// Software root of trust: DEVELOPMENT ONLY. Keys are PEM files (mode 0600)
// in the device state directory; anyone who can read them can clone the
// device. Opening one logs a warning saying so. Used by `make run`, the
// virtual fleet and tests; real devices use the TPM 2.0 backend.
//
// Files under state_dir/rot/: identity.key, tls.key (0600),
// manufacturer-chain.pem, counters.json (written atomically).
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>

#include "rot/rot.hpp"

namespace citadel::rot {

class SoftwareRootOfTrust final : public RootOfTrust {
 public:
  // Opens the RoT in state_dir, creating identity and TLS keys on first use.
  static Expected<std::unique_ptr<SoftwareRootOfTrust>> Open(const std::filesystem::path& state_dir);

  std::string_view Backend() const override { return "software"; }
  const crypto::PublicKey& IdentityPublicKey() const override { return identity_public_; }
  Expected<Bytes> SignWithIdentity(const crypto::Sha256Digest& digest) override;
  Expected<std::vector<crypto::Certificate>> ManufacturerChain() const override;
  Expected<void> StoreManufacturerChain(const std::vector<crypto::Certificate>& chain) override;
  const crypto::PrivateKey& TlsClientKey() const override { return tls_key_; }
  Expected<void> Extend(const MeasurementEvent& event) override;
  std::vector<crypto::Sha256Digest> ReadRegisters() const override {
    std::lock_guard lock(measurements_mutex_);
    return registers_;
  }
  std::vector<MeasurementEvent> MeasurementLog() const override {
    std::lock_guard lock(measurements_mutex_);
    return log_;
  }
  Expected<Quote> CreateQuote(std::span<const std::uint8_t> nonce) override;
  Expected<std::uint64_t> ReadCounter(std::string_view name) const override;
  Expected<std::uint64_t> IncrementCounter(std::string_view name) override;

 private:
  SoftwareRootOfTrust(std::filesystem::path dir, crypto::PrivateKey identity, crypto::PrivateKey tls);

  std::filesystem::path dir_;
  crypto::PrivateKey identity_key_;
  crypto::PublicKey identity_public_;
  crypto::PrivateKey tls_key_;
  // Apps are measured from the app manager's threads while the agent reads.
  mutable std::mutex measurements_mutex_;
  std::vector<crypto::Sha256Digest> registers_;
  std::vector<MeasurementEvent> log_;
};

}  // namespace citadel::rot
