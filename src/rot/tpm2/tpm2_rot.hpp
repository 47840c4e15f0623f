// TPM 2.0 root of trust: the device's keys live in a TPM and never leave
// it (docs/ARCHITECTURE.md, "Hardware root of trust: TPM 2.0").
//
// Objects (owner hierarchy): EK 0x81010001 (the manufacturer's; its
// certificate in NV 0x01C00002), SRK 0x81000001, AK 0x81000002 (restricted
// signing: the identity key, signs quotes only), TLS key 0x81000003
// (unrestricted signing). Open() creates SRK, AK and TLS key when missing.
//
// Registers: rot register i is PCR 8 + i (SHA-256 bank). The event log of
// the current TPM boot is state_dir/tpm2/eventlog-<resetCount>.json; an
// event is logged before it is extended. If at Open() the log cannot
// explain the PCRs, the RoT still opens, but quotes (SignWithIdentity,
// CreateQuote) fail until the TPM is reset (a reboot): attesting would
// present a log that is not what was measured.
//
// Identity signatures are quotes: SignWithIdentity(digest) returns
// TPM2B_ATTEST || TPMT_SIGNATURE (each Tss2_MU-marshalled) of a TPM2_Quote
// by the AK over PCRs 8-15 with qualifyingData = digest, not a DER
// signature; the verifier is src/tpm.
//
// Counters: NV counters (0x015xxxxx) with a write-once base
// (0x016xxxxx), both platform-created with TPMA_NV_POLICY_DELETE, so only
// TPM2_NV_UndefineSpaceSpecial under platform authorisation deletes them.
//
// Threading: every method may be called from any thread; one mutex
// serialises all TPM use, including TLS signatures made through
// TlsClientKey() by OpenSSL on other threads. The TlsClientKey() EVP_PKEY
// keeps the TPM connection alive while OpenSSL holds a reference to it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "rot/rot.hpp"

namespace citadel::rot {

namespace tpm2 {
class EsysDevice;
}

struct Tpm2Options {
  // TCTI configuration for Tss2_TctiLdr_Initialize, e.g.
  // "swtpm:host=127.0.0.1,port=2321" or "device:/dev/tpmrm0"; empty = the
  // loader's default.
  std::string tcti;
  // Device state directory; the RoT keeps its files in state_dir/tpm2/.
  std::filesystem::path state_dir;
};

class Tpm2RootOfTrust final : public RootOfTrust {
 public:
  static constexpr std::uint32_t kEkHandle = 0x81010001;
  static constexpr std::uint32_t kEkCertificateIndex = 0x01C00002;
  static constexpr std::uint32_t kSrkHandle = 0x81000001;
  static constexpr std::uint32_t kAkHandle = 0x81000002;
  static constexpr std::uint32_t kTlsKeyHandle = 0x81000003;
  static constexpr std::uint32_t kFirstPcr = kTpmFirstRegisterPcr;  // rot register i = PCR kFirstPcr + i

  // Connects, provisions what is missing (idempotent) and checks this
  // boot's event log against the PCRs. kFailedPrecondition when the TPM
  // has no EK at 0x81010001; kUnavailable when the TCTI cannot connect.
  static Expected<std::unique_ptr<Tpm2RootOfTrust>> Open(const Tpm2Options& options);
  ~Tpm2RootOfTrust() override;
  Tpm2RootOfTrust(const Tpm2RootOfTrust&) = delete;
  Tpm2RootOfTrust& operator=(const Tpm2RootOfTrust&) = delete;

  std::string_view Backend() const override { return "tpm2"; }
  // The AK's public key.
  const crypto::PublicKey& IdentityPublicKey() const override { return ak_public_key_; }
  // TPM2B_ATTEST || TPMT_SIGNATURE of a quote (see the file comment).
  Expected<Bytes> SignWithIdentity(const crypto::Sha256Digest& digest) override;
  // [EK certificate read from NV] + the intermediates StoreManufacturerChain kept.
  Expected<std::vector<crypto::Certificate>> ManufacturerChain() const override;
  // chain[0] must be the EK certificate in NV, byte for byte; the rest is
  // stored in state_dir/tpm2/manufacturer-intermediates.pem.
  Expected<void> StoreManufacturerChain(const std::vector<crypto::Certificate>& chain) override;
  const crypto::PrivateKey& TlsClientKey() const override { return tls_key_; }
  Expected<void> Extend(const MeasurementEvent& event) override;
  // PCRs 8-15 as the TPM reports them; empty when the TPM cannot be read
  // (logged), which no verifier accepts.
  std::vector<crypto::Sha256Digest> ReadRegisters() const override;
  std::vector<MeasurementEvent> MeasurementLog() const override;
  Expected<Quote> CreateQuote(std::span<const std::uint8_t> nonce) override;
  Expected<std::uint64_t> ReadCounter(std::string_view name) const override;
  Expected<std::uint64_t> IncrementCounter(std::string_view name) override;

  // Marshalled TPM2B_PUBLIC of the EK and the AK (for evidence).
  std::optional<TpmPublicKeys> TpmKeys() const override { return TpmPublicKeys{ek_public_, ak_public_}; }
  Bytes EkPublic() const { return ek_public_; }
  Bytes AkPublic() const { return ak_public_; }
  // The EK certificate (DER) from NV 0x01C00002, without NV padding.
  [[nodiscard]] Expected<Bytes> ReadEkCertificate() const;
  // TPM2_ActivateCredential(AK, EK): the secret the service protected for
  // this EK and the AK's name. kPermissionDenied/kCrypto when the blob was
  // made for another EK or AK.
  Expected<Bytes> ActivateCredential(std::span<const std::uint8_t> credential_blob,
                                     std::span<const std::uint8_t> encrypted_secret) override;
  // Seals up to 128 bytes under the SRK to the current values of the given
  // registers. Returns TPM2B_PUBLIC || TPM2B_PRIVATE || TPML_PCR_SELECTION
  // (marshalled); the selection tells Unseal which PCRs to replay.
  [[nodiscard]] Expected<Bytes> Seal(std::span<const std::uint8_t> secret, const std::vector<Register>& registers);
  // Fails (kPermissionDenied, TPM_RC_POLICY_FAIL) once a sealed register changed.
  [[nodiscard]] Expected<crypto::SecretBytes> Unseal(std::span<const std::uint8_t> sealed);

 private:
  struct Handles;
  Tpm2RootOfTrust() = default;

  Expected<std::vector<crypto::Sha256Digest>> ReadPcrsLocked() const;
  Expected<Bytes> QuoteLocked(const crypto::Sha256Digest& digest);
  Expected<void> LoadEventLogLocked();
  Expected<void> SaveEventLogLocked(const std::vector<MeasurementEvent>& log) const;
  Expected<Bytes> ReadEkCertificateLocked() const;

  std::shared_ptr<tpm2::EsysDevice> device_;
  std::unique_ptr<Handles> handles_;
  std::filesystem::path dir_;  // state_dir/tpm2
  Bytes ek_public_;
  Bytes ak_public_;
  crypto::PublicKey ak_public_key_ = crypto::PublicKey::FromEvp(nullptr);
  crypto::PrivateKey tls_key_ = crypto::PrivateKey::Adopt(nullptr);
  std::uint32_t reset_count_ = 0;
  std::vector<MeasurementEvent> log_;  // guarded by the device mutex
  // Set when this boot's log does not explain the PCRs: why quotes fail.
  std::optional<std::string> attestation_blocked_;
};

}  // namespace citadel::rot
