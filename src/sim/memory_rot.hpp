// An in-memory root of trust for the virtual fleet (citadel-sim): one
// identity key and one TLS client key per simulated device, held in this
// process only. Like rot/software it is NOT a security boundary; unlike it,
// it writes nothing to disk, so a fleet of 100,000 devices costs no files
// (the fleet file, when asked for, is written by fleet.hpp).
//
// Threading: one device coroutine uses its RoT at a time (the device
// serialises its own work); the measurement members are still guarded
// because the statistics thread may read registers.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "rot/rot.hpp"

namespace citadel::sim {

class MemoryRootOfTrust final : public rot::RootOfTrust {
 public:
  // Fresh P-256 identity and TLS keys.
  static Expected<std::unique_ptr<MemoryRootOfTrust>> Generate();
  // Keys from PEM (a fleet file written by an earlier run).
  static Expected<std::unique_ptr<MemoryRootOfTrust>> FromPem(const crypto::SecretBytes& identity_pem,
                                                              const crypto::SecretBytes& tls_pem);

  std::string_view Backend() const override { return "software"; }
  const crypto::PublicKey& IdentityPublicKey() const override { return identity_public_; }
  Expected<Bytes> SignWithIdentity(const crypto::Sha256Digest& digest) override;
  Expected<std::vector<crypto::Certificate>> ManufacturerChain() const override;
  Expected<void> StoreManufacturerChain(const std::vector<crypto::Certificate>& chain) override;
  const crypto::PrivateKey& TlsClientKey() const override { return tls_key_; }
  Expected<void> Extend(const rot::MeasurementEvent& event) override;
  std::vector<crypto::Sha256Digest> ReadRegisters() const override;
  std::vector<rot::MeasurementEvent> MeasurementLog() const override;
  Expected<rot::Quote> CreateQuote(std::span<const std::uint8_t> nonce) override;
  Expected<std::uint64_t> ReadCounter(std::string_view name) const override;
  Expected<std::uint64_t> IncrementCounter(std::string_view name) override;

  const crypto::PrivateKey& identity_key() const { return identity_key_; }

 private:
  MemoryRootOfTrust(crypto::PrivateKey identity, crypto::PrivateKey tls);

  crypto::PrivateKey identity_key_;
  crypto::PublicKey identity_public_;
  crypto::PrivateKey tls_key_;
  mutable std::mutex mutex_;
  std::vector<crypto::Certificate> chain_;
  std::vector<crypto::Sha256Digest> registers_;
  std::vector<rot::MeasurementEvent> log_;
  std::map<std::string, std::uint64_t, std::less<>> counters_;
};

}  // namespace citadel::sim
