// The TLS client key as an OpenSSL EC key whose signing method calls
// TPM2_Sign (docs/ARCHITECTURE.md, "TLS key without exporting it").
//
// EC_KEY, EC_KEY_METHOD and EVP_PKEY_assign are deprecated in OpenSSL 3,
// and the project otherwise uses EVP only. They are used here, and only
// here, on purpose: a provider would have to open its own TPM connection,
// which swtpm (one client at a time) and a TPM without a resource manager
// cannot serve next to citadeld's. A key with a non-default EC_KEY_METHOD
// is "foreign" to OpenSSL 3: every EVP operation on it takes the legacy
// path into these callbacks, and it is never exported to a provider.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstring>

#include "common/log.hpp"
#include "rot/tpm2/esys_device.hpp"

namespace citadel::rot::tpm2 {
namespace {

constexpr std::size_t kP256DigestBytes = 32;

// What a TPM-backed EC_KEY carries in its ex_data slot.
struct SigningContext {
  std::shared_ptr<EsysDevice> device;
  ESYS_TR key = ESYS_TR_NONE;
};

void FreeSigningContext(void* /*parent*/, void* pointer, CRYPTO_EX_DATA* /*data*/, int /*index*/, long /*argl*/,
                        void* /*argp*/) {
  delete static_cast<SigningContext*>(pointer);
}

int SigningContextIndex() {
  static const int index =
      CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_EC_KEY, 0, nullptr, nullptr, nullptr, FreeSigningContext);
  return index;
}

BIGNUM* ToBignum(const TPM2B_ECC_PARAMETER& value) {
  return BN_bin2bn(value.buffer, static_cast<int>(std::min<std::size_t>(value.size, sizeof value.buffer)), nullptr);
}

// ECDSA uses the leftmost bits of the digest up to the order's size
// (256 bits for P-256), and a shorter digest is the same integer when
// zero-padded on the left: TPM2_Sign takes exactly 32 bytes, and the
// signature is valid for the digest OpenSSL passed.
TPM2B_DIGEST FitDigest(const unsigned char* digest, std::size_t length) {
  TPM2B_DIGEST fitted{};
  fitted.size = kP256DigestBytes;
  if (length >= kP256DigestBytes) {
    std::memcpy(fitted.buffer, digest, kP256DigestBytes);
  } else {
    std::memcpy(fitted.buffer + (kP256DigestBytes - length), digest, length);
  }
  return fitted;
}

ECDSA_SIG* TpmSignSig(const unsigned char* digest, int digest_length, const BIGNUM* /*kinv*/, const BIGNUM* /*r*/,
                      EC_KEY* ec_key) {
  auto* context = static_cast<SigningContext*>(EC_KEY_get_ex_data(ec_key, SigningContextIndex()));
  if (context == nullptr || digest == nullptr || digest_length <= 0) {
    ERR_raise(ERR_LIB_EC, ERR_R_PASSED_INVALID_ARGUMENT);
    return nullptr;
  }
  TPM2B_DIGEST fitted = FitDigest(digest, static_cast<std::size_t>(digest_length));
  TPMT_SIG_SCHEME scheme{};
  scheme.scheme = TPM2_ALG_ECDSA;
  scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
  // A null ticket: the TLS key is unrestricted, so the TPM signs any digest.
  TPMT_TK_HASHCHECK validation{};
  validation.tag = TPM2_ST_HASHCHECK;
  validation.hierarchy = TPM2_RH_NULL;
  EsysOut<TPMT_SIGNATURE> signature;
  TSS2_RC rc = TSS2_RC_SUCCESS;
  {
    std::lock_guard lock(context->device->mutex());
    rc = Esys_Sign(context->device->esys(), context->key, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &fitted,
                   &scheme, &validation, signature.put());
  }
  if (rc != TSS2_RC_SUCCESS) {
    log::Error("TLS client key: the TPM did not sign", {{"error", TpmError("TPM2_Sign", rc).message()}});
    ERR_raise(ERR_LIB_EC, ERR_R_OPERATION_FAIL);
    return nullptr;
  }
  if (signature->sigAlg != TPM2_ALG_ECDSA) {
    ERR_raise(ERR_LIB_EC, ERR_R_INTERNAL_ERROR);
    return nullptr;
  }
  BIGNUM* r = ToBignum(signature->signature.ecdsa.signatureR);
  BIGNUM* s = ToBignum(signature->signature.ecdsa.signatureS);
  ECDSA_SIG* result = ECDSA_SIG_new();
  if (r == nullptr || s == nullptr || result == nullptr || ECDSA_SIG_set0(result, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(result);
    ERR_raise(ERR_LIB_EC, ERR_R_MALLOC_FAILURE);
    return nullptr;
  }
  return result;
}

int TpmSign(int /*type*/, const unsigned char* digest, int digest_length, unsigned char* out, unsigned int* out_length,
            const BIGNUM* kinv, const BIGNUM* r, EC_KEY* ec_key) {
  *out_length = 0;
  ECDSA_SIG* signature = TpmSignSig(digest, digest_length, kinv, r, ec_key);
  if (signature == nullptr) return 0;
  unsigned char* cursor = out;  // i2d advances the pointer it is given
  int length = i2d_ECDSA_SIG(signature, &cursor);
  ECDSA_SIG_free(signature);
  if (length <= 0) return 0;
  *out_length = static_cast<unsigned int>(length);
  return 1;
}

// OpenSSL's default EC method with the two signing entry points replaced;
// created once, never freed (keys may use it until the process exits).
const EC_KEY_METHOD* TpmEcMethod() {
  static EC_KEY_METHOD* const method = [] {
    EC_KEY_METHOD* created = EC_KEY_METHOD_new(EC_KEY_OpenSSL());
    if (created == nullptr) return created;
    int (*sign_setup)(EC_KEY*, BN_CTX*, BIGNUM**, BIGNUM**) = nullptr;
    EC_KEY_METHOD_get_sign(EC_KEY_OpenSSL(), nullptr, &sign_setup, nullptr);
    EC_KEY_METHOD_set_sign(created, TpmSign, sign_setup, TpmSignSig);
    return created;
  }();
  return method;
}

}  // namespace

Expected<crypto::PrivateKey> MakeTpmSigningKey(std::shared_ptr<EsysDevice> device, ESYS_TR key,
                                               const crypto::PublicKey& public_key) {
  const EC_KEY_METHOD* method = TpmEcMethod();
  if (method == nullptr || SigningContextIndex() < 0) {
    return MakeError(ErrorCode::kInternal, "TLS client key: cannot create the OpenSSL EC method");
  }
  Bytes spki = public_key.SpkiDer();
  const unsigned char* cursor = spki.data();
  EC_KEY* ec_key = d2i_EC_PUBKEY(nullptr, &cursor, static_cast<long>(spki.size()));
  if (ec_key == nullptr) {
    ERR_clear_error();
    return MakeError(ErrorCode::kInvalidArgument, "TLS client key: the TPM key's public part is not an EC key");
  }
  auto* context = new SigningContext{std::move(device), key};
  if (EC_KEY_set_method(ec_key, method) != 1 || EC_KEY_set_ex_data(ec_key, SigningContextIndex(), context) != 1) {
    delete context;
    EC_KEY_free(ec_key);
    ERR_clear_error();
    return MakeError(ErrorCode::kInternal, "TLS client key: cannot attach the TPM signing method");
  }
  // From here the EC_KEY owns the context (freed with its ex_data).
  EVP_PKEY* pkey = EVP_PKEY_new();
  if (pkey == nullptr || EVP_PKEY_assign_EC_KEY(pkey, ec_key) != 1) {
    EVP_PKEY_free(pkey);
    EC_KEY_free(ec_key);
    ERR_clear_error();
    return MakeError(ErrorCode::kInternal, "TLS client key: cannot wrap the EC key");
  }
  return crypto::PrivateKey::Adopt(pkey);
}

}  // namespace citadel::rot::tpm2

#pragma GCC diagnostic pop
