// Internal to src/rot/tpm2: one ESAPI connection to a TPM, and the small
// RAII helpers every ESAPI call site needs. Not part of the RoT interface.
//
// Threading: EsysDevice::mutex guards every use of `esys`. ESAPI contexts
// are not thread-safe, and swtpm (like a TPM without a resource manager)
// serves one connection, so the RoT and the TLS key's signing callback
// share this one context and this one mutex.
#pragma once

#include <tss2/tss2_esys.h>
#include <tss2/tss2_tctildr.h>

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "crypto/crypto.hpp"

namespace citadel::rot::tpm2 {

// "TPM2_Quote: tpm:parameter(1):value is out of range ... (0x2c4)".
// kUnavailable for TCTI (connection) errors, kPermissionDenied for failed
// authorisations and policies, kCrypto for the rest.
Error TpmError(std::string_view command, TSS2_RC rc);
// kOk for TSS2_RC_SUCCESS, TpmError(command, rc) otherwise.
[[nodiscard]] Expected<void> CheckRc(std::string_view command, TSS2_RC rc);

// Owns a TCTI and the ESAPI context on it.
class EsysDevice {
 public:
  // Tss2_TctiLdr_Initialize(tcti) + Esys_Initialize.
  static Expected<std::shared_ptr<EsysDevice>> Connect(const std::string& tcti);
  ~EsysDevice();
  EsysDevice(const EsysDevice&) = delete;
  EsysDevice& operator=(const EsysDevice&) = delete;

  ESYS_CONTEXT* esys() const { return esys_; }
  std::mutex& mutex() { return mutex_; }

 private:
  EsysDevice(TSS2_TCTI_CONTEXT* tcti, ESYS_CONTEXT* esys) : tcti_(tcti), esys_(esys) {}
  TSS2_TCTI_CONTEXT* tcti_;
  ESYS_CONTEXT* esys_;
  std::mutex mutex_;
};

// An ESAPI output parameter (allocated by ESAPI, released with Esys_Free).
template <typename T>
class EsysOut {
 public:
  EsysOut() = default;
  ~EsysOut() { Esys_Free(value_); }
  EsysOut(const EsysOut&) = delete;
  EsysOut& operator=(const EsysOut&) = delete;

  T** put() {
    Esys_Free(value_);
    value_ = nullptr;
    return &value_;
  }
  T* get() const { return value_; }
  T* operator->() const { return value_; }
  T& operator*() const { return *value_; }

 private:
  T* value_ = nullptr;
};

// Flushes a transient object or session from the TPM when it goes away:
// without a resource manager nobody else would, and a TPM holds only a few.
class FlushOnExit {
 public:
  FlushOnExit(ESYS_CONTEXT* esys, ESYS_TR handle) : esys_(esys), handle_(handle) {}
  ~FlushOnExit() {
    if (handle_ != ESYS_TR_NONE) (void)Esys_FlushContext(esys_, handle_);
  }
  FlushOnExit(const FlushOnExit&) = delete;
  FlushOnExit& operator=(const FlushOnExit&) = delete;

 private:
  ESYS_CONTEXT* esys_;
  ESYS_TR handle_;
};

// Releases ESAPI's metadata for a persistent object or NV index handle
// (Esys_TR_Close: nothing changes in the TPM).
class CloseOnExit {
 public:
  CloseOnExit(ESYS_CONTEXT* esys, ESYS_TR handle) : esys_(esys), handle_(handle) {}
  ~CloseOnExit() {
    if (handle_ != ESYS_TR_NONE) (void)Esys_TR_Close(esys_, &handle_);
  }
  CloseOnExit(const CloseOnExit&) = delete;
  CloseOnExit& operator=(const CloseOnExit&) = delete;

 private:
  ESYS_CONTEXT* esys_;
  ESYS_TR handle_;
};

// The TLS client key as an OpenSSL key whose signatures are made by
// TPM2_Sign with `key` (a persistent ECC P-256 signing key) over `device`.
// The EVP_PKEY holds a reference to the device, so it stays usable (and
// the ESAPI context open) as long as OpenSSL holds the key. No private
// value ever exists outside the TPM: export and private-parameter queries
// fail. `public_key` must be the key's public part.
[[nodiscard]] Expected<crypto::PrivateKey> MakeTpmSigningKey(std::shared_ptr<EsysDevice> device, ESYS_TR key,
                                                             const crypto::PublicKey& public_key);

}  // namespace citadel::rot::tpm2
