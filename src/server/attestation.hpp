// Attestation: appraises a device's evidence and, when it passes, issues the
// device's 24-hour certificate (docs/PROTOCOL.md, "Appraisal").
//
// Security: every check fails closed; the first failing check is the
// verdict, returned as a problem with a stable type. Nonces are consumed
// atomically in the store, so two replicas cannot both accept one nonce.
// Evidence, signatures and keys are never logged.
//
// Threading: Attestor is used concurrently by all request threads.
#pragma once

#include <chrono>
#include <expected>
#include <string_view>
#include <vector>

#include "common/time.hpp"
#include "crypto/crypto.hpp"
#include "protocol/protocol.hpp"
#include "server/tenant_ca.hpp"
#include "store/store.hpp"

namespace citadel::server {

struct AttestorOptions {
  // Manufacturers of software-RoT devices: their CAs certify identity keys.
  std::vector<crypto::Certificate> manufacturer_cas;
  // TPM manufacturers: their CAs certify endorsement keys. The chain a
  // device sends decides which kind of device it is, never its "rot" word.
  std::vector<crypto::Certificate> tpm_manufacturer_cas;
  std::chrono::seconds activation_lifetime{5 * 60};
  std::chrono::seconds nonce_lifetime{60};
  std::chrono::seconds certificate_lifetime{24 * 60 * 60};
  std::chrono::seconds unclaimed_retry{30};
};

using AttestationOutcome = std::expected<protocol::AttestationResult, protocol::Problem>;

class Attestor {
 public:
  Attestor(store::Store& store, TenantCaCache& authorities, AttestorOptions options)
      : store_(store), authorities_(authorities), options_(std::move(options)) {}

  Expected<protocol::Challenge> CreateChallenge(TimePoint now);
  // Appraises an evidence request body and records the verdict (device
  // record, audit log). Never throws.
  AttestationOutcome Attest(std::string_view body, TimePoint now);
  // Completes a TPM credential activation (POST /v1/attest/activate): the
  // secret must be the one inside the credential, which only the TPM
  // holding both the EK and the AK could open. One try per activation.
  std::expected<void, protocol::Problem> Activate(std::string_view body, TimePoint now);

  const AttestorOptions& options() const { return options_; }

 private:
  AttestationOutcome Appraise(const protocol::SignedEvidence& evidence, TimePoint now, std::string& tenant_id);
  // Steps 1 and 2 for each kind of device: the identity key, certified by
  // a manufacturer of that kind, signed the evidence.
  struct Genuine;
  std::expected<Genuine, protocol::Problem> VerifySoftwareDevice(const protocol::SignedEvidence& evidence,
                                                                 const std::vector<crypto::Certificate>& chain,
                                                                 TimePoint now);
  std::expected<Genuine, protocol::Problem> VerifyTpmDevice(const protocol::SignedEvidence& evidence,
                                                            const std::vector<crypto::Certificate>& chain,
                                                            TimePoint now);
  // The activation a TPM device must complete before its AK is trusted;
  // nullopt when it already did, for this EK.
  std::expected<std::optional<protocol::AttestationResult>, protocol::Problem> RequireActivation(
      const protocol::Evidence& evidence, const Genuine& genuine, TimePoint now);
  void RecordVerdict(std::string_view device_id, std::string_view tenant_id, std::string_view verdict,
                     std::string_view detail, std::string_view os_version, TimePoint now);

  store::Store& store_;
  TenantCaCache& authorities_;
  AttestorOptions options_;
};

protocol::Problem MakeProblem(int status, std::string_view name, std::string_view title, std::string detail);

}  // namespace citadel::server
