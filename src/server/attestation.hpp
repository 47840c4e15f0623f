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
  std::vector<crypto::Certificate> manufacturer_cas;
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

  const AttestorOptions& options() const { return options_; }

 private:
  AttestationOutcome Appraise(const protocol::SignedEvidence& evidence, TimePoint now, std::string& tenant_id);
  void RecordVerdict(std::string_view device_id, std::string_view tenant_id, std::string_view verdict,
                     std::string_view detail, std::string_view os_version, TimePoint now);

  store::Store& store_;
  TenantCaCache& authorities_;
  AttestorOptions options_;
};

protocol::Problem MakeProblem(int status, std::string_view name, std::string_view title, std::string detail);

}  // namespace citadel::server
