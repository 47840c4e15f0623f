#include "rot/tpm2/esys_device.hpp"

#include <tss2/tss2_rc.h>

#include <cstdio>

namespace citadel::rot::tpm2 {
namespace {

std::string HexRc(TSS2_RC rc) {
  char text[16];
  (void)std::snprintf(text, sizeof text, "0x%x", rc);
  return text;
}

// The TPM's own response code without the handle/parameter/session number
// a format-one code carries.
TSS2_RC BaseTpmCode(TSS2_RC rc) {
  if ((rc & TSS2_RC_LAYER_MASK) != TSS2_TPM_RC_LAYER) return rc;
  return (rc & TPM2_RC_FMT1) != 0 ? (rc & (TPM2_RC_FMT1 | 0x3f)) : (rc & 0xfff);
}

}  // namespace

Error TpmError(std::string_view command, TSS2_RC rc) {
  std::string message = std::string(command) + " failed: " + Tss2_RC_Decode(rc) + " (" + HexRc(rc) + ")";
  TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;
  if (layer == TSS2_TCTI_RC_LAYER) {
    return Error(ErrorCode::kUnavailable, message + "; is the TPM (or swtpm) reachable through the TCTI?");
  }
  switch (BaseTpmCode(rc)) {
    case TPM2_RC_POLICY_FAIL:
    case TPM2_RC_AUTH_FAIL:
    case TPM2_RC_BAD_AUTH:
    case TPM2_RC_AUTH_UNAVAILABLE:
    case TPM2_RC_NV_AUTHORIZATION:
      return Error(ErrorCode::kPermissionDenied, message);
    default:
      return Error(ErrorCode::kCrypto, message);
  }
}

Expected<void> CheckRc(std::string_view command, TSS2_RC rc) {
  if (rc == TSS2_RC_SUCCESS) return kOk;
  return std::unexpected(TpmError(command, rc));
}

Expected<std::shared_ptr<EsysDevice>> EsysDevice::Connect(const std::string& tcti) {
  TSS2_TCTI_CONTEXT* tcti_context = nullptr;
  TSS2_RC rc = Tss2_TctiLdr_Initialize(tcti.empty() ? nullptr : tcti.c_str(), &tcti_context);
  if (rc != TSS2_RC_SUCCESS) {
    return WrapError(TpmError("loading TCTI \"" + tcti + "\"", rc), "connecting to the TPM");
  }
  ESYS_CONTEXT* esys = nullptr;
  rc = Esys_Initialize(&esys, tcti_context, nullptr);
  if (rc != TSS2_RC_SUCCESS) {
    Tss2_TctiLdr_Finalize(&tcti_context);
    return WrapError(TpmError("Esys_Initialize", rc), "connecting to the TPM through \"" + tcti + "\"");
  }
  return std::shared_ptr<EsysDevice>(new EsysDevice(tcti_context, esys));
}

EsysDevice::~EsysDevice() {
  Esys_Finalize(&esys_);
  Tss2_TctiLdr_Finalize(&tcti_);
}

}  // namespace citadel::rot::tpm2
