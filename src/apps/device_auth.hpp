// The broker's DeviceAuthProvider over the device's stored certificate and
// its RoT TLS client key: apps with DeviceAuthentication get the chain
// (certs/device-full-chain.pem) and signatures by the key, never the key.
//
// Security contract: the chain is re-read on every call (the agent renews
// the certificate) and refused when its leaf is not for the TLS key, so an
// app never presents a certificate the device cannot sign for. Before the
// device attested, CertificateChainPem fails with kUnavailable.
//
// Threading: safe from any thread (PrivateKey's const methods are).
#pragma once

#include <filesystem>
#include <string>

#include "broker/broker.hpp"
#include "crypto/crypto.hpp"

namespace citadel::apps {

class StoredDeviceAuth : public broker::DeviceAuthProvider {
 public:
  // tls_key must outlive this object (rot::RootOfTrust::TlsClientKey()).
  StoredDeviceAuth(std::filesystem::path state_dir, const crypto::PrivateKey& tls_key, std::string device_id)
      : state_dir_(std::move(state_dir)), tls_key_(tls_key), device_id_(std::move(device_id)) {}

  Expected<std::string> CertificateChainPem() override;
  Expected<Bytes> SignDigest(const crypto::Sha256Digest& digest) override;
  std::string TenantId() override;

 private:
  Expected<std::vector<crypto::Certificate>> LoadChain() const;

  std::filesystem::path state_dir_;
  const crypto::PrivateKey& tls_key_;
  std::string device_id_;
};

}  // namespace citadel::apps
