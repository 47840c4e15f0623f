// The root of trust (RoT): the one place a device's identity key lives.
//
// Backends: software/ (development and the virtual fleet: keys in 0600 files,
// NOT a security boundary) and, later, tpm2/ (keys inside a TPM 2.0). The
// interface is shaped so a TPM fits: keys are used through the RoT, never
// exported; measurements are extend-only registers (PCR-like) with an event
// log; Quote() signs the registers and a verifier's nonce; counters are
// monotonic (NV counters on a TPM).
//
// Threading: a RootOfTrust is used from one thread at a time; callers that
// share it serialise access.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"
#include "crypto/crypto.hpp"

namespace citadel::rot {

// Registers measured state is extended into (like TPM PCR indexes).
inline constexpr std::uint32_t kRegisterCount = 8;
// On a TPM, register i is PCR kTpmFirstRegisterPcr + i of the SHA-256 bank
// (PCRs 0-7 stay the firmware's and the bootloader's).
inline constexpr std::uint32_t kTpmFirstRegisterPcr = 8;
enum class Register : std::uint32_t {
  kOs = 0,       // OS image: version and image digest
  kRuntime = 1,  // citadeld binary
  kConfig = 2,   // device configuration
  kApps = 3,     // installed application images
};

// One event in the measurement log: what was measured and into which
// register. `digest` is the SHA-256 of the measured object; `name` and
// `version` identify it for the appraiser.
struct MeasurementEvent {
  std::uint32_t register_index = 0;
  std::string type;     // "os", "runtime", "config", "app"
  std::string name;     // e.g. OS name, app component id
  std::string version;  // may be empty
  crypto::Sha256Digest digest{};

  bool operator==(const MeasurementEvent&) const = default;
};

// The digest an event extends into its register:
//   SHA-256(canonical JSON {"digest","name","type","version"}).
crypto::Sha256Digest EventDigest(const MeasurementEvent& event);
// register' = SHA-256(register || event_digest), as a TPM PCR extend.
crypto::Sha256Digest ExtendRegister(const crypto::Sha256Digest& current, const crypto::Sha256Digest& event_digest);
// Replays a log from all-zero registers.
std::vector<crypto::Sha256Digest> ReplayLog(const std::vector<MeasurementEvent>& log);

// Counter names, the same for every backend: 1-64 characters of
// [A-Za-z0-9._-]. kInvalidArgument naming the rule otherwise.
[[nodiscard]] Expected<void> CheckCounterName(std::string_view name);

// A signed statement over the current registers and a verifier's nonce.
struct Quote {
  std::vector<crypto::Sha256Digest> registers;  // kRegisterCount entries
  Bytes nonce;
  Bytes signature;  // identity key over QuoteDigest(registers, nonce)
};
crypto::Sha256Digest QuoteDigest(const std::vector<crypto::Sha256Digest>& registers,
                                 std::span<const std::uint8_t> nonce);

// A TPM-backed root of trust's endorsement key and attestation key as the
// TPM marshals them (TPM2B_PUBLIC): evidence carries both, and the service
// makes its activation credential from them.
struct TpmPublicKeys {
  Bytes ek_public;
  Bytes ak_public;
};

class RootOfTrust {
 public:
  virtual ~RootOfTrust() = default;

  // "software" or "tpm2"; appears in evidence and logs.
  virtual std::string_view Backend() const = 0;

  // The identity key: created once at provisioning, never leaves the RoT.
  virtual const crypto::PublicKey& IdentityPublicKey() const = 0;
  // Lower-case hex SHA-256 of IdentityPublicKey().SpkiDer().
  std::string DeviceId() const;
  // DER ECDSA signature by the identity key over a digest.
  [[nodiscard]] virtual Expected<Bytes> SignWithIdentity(const crypto::Sha256Digest& digest) = 0;

  // The manufacturer chain, leaf first: the leaf certifies the identity key
  // and is issued by a manufacturer CA; intermediates may follow.
  virtual Expected<std::vector<crypto::Certificate>> ManufacturerChain() const = 0;
  // Stores the chain at provisioning; refuses a leaf whose key is not the
  // identity key.
  [[nodiscard]] virtual Expected<void> StoreManufacturerChain(const std::vector<crypto::Certificate>& chain) = 0;

  // The key the device uses for TLS client authentication. Separate from
  // the identity key so a TPM can keep the identity key restricted.
  virtual const crypto::PrivateKey& TlsClientKey() const = 0;

  // Measurements. Registers start at all zeros when the RoT is opened (a
  // boot) and can only be extended.
  [[nodiscard]] virtual Expected<void> Extend(const MeasurementEvent& event) = 0;
  virtual std::vector<crypto::Sha256Digest> ReadRegisters() const = 0;
  virtual std::vector<MeasurementEvent> MeasurementLog() const = 0;
  [[nodiscard]] virtual Expected<Quote> CreateQuote(std::span<const std::uint8_t> nonce) = 0;

  // Monotonic counters by name: Increment returns the new value; a counter
  // never goes down, even across power loss.
  virtual Expected<std::uint64_t> ReadCounter(std::string_view name) const = 0;
  [[nodiscard]] virtual Expected<std::uint64_t> IncrementCounter(std::string_view name) = 0;

  // TPM backends only (the defaults say there is no TPM). With a TPM the
  // identity key is the attestation key (AK), SignWithIdentity returns a
  // TPM2 quote over the measurement PCRs with the digest as qualifying data
  // (TPM2B_ATTEST || TPMT_SIGNATURE), and the service trusts the AK only
  // after the device opened a credential the service made for it
  // (TPM2_ActivateCredential; docs/ARCHITECTURE.md, "Credential activation").
  virtual std::optional<TpmPublicKeys> TpmKeys() const { return std::nullopt; }
  [[nodiscard]] virtual Expected<Bytes> ActivateCredential(std::span<const std::uint8_t> credential_blob,
                                                           std::span<const std::uint8_t> encrypted_secret) {
    (void)credential_blob;
    (void)encrypted_secret;
    return MakeError(ErrorCode::kFailedPrecondition, "this root of trust has no TPM");
  }
};

}  // namespace citadel::rot
