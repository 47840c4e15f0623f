#include "tpm/public_area.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <tss2/tss2_mu.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include "crypto/openssl_ptr.hpp"

namespace citadel::tpm {
namespace {

// An EVP_PKEY from parameters built by `fill` (the EC or RSA key data).
template <typename Fill>
Expected<crypto::PublicKey> KeyFromParams(const char* type, Fill fill) {
  crypto::OsslParamBldPtr build(OSSL_PARAM_BLD_new());
  if (!build || !fill(build.get())) return MakeError(ErrorCode::kInternal, "tpm: building key parameters");
  crypto::OsslParamPtr params(OSSL_PARAM_BLD_to_param(build.get()));
  crypto::EvpPkeyCtxPtr context(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* key = nullptr;
  if (!params || !context || EVP_PKEY_fromdata_init(context.get()) != 1 ||
      EVP_PKEY_fromdata(context.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1 || key == nullptr) {
    return MakeError(ErrorCode::kInvalidArgument,
                     std::string("tpm: the public area's ") + type + " key is not a valid key (not on the curve?)");
  }
  crypto::PublicKey result = crypto::PublicKey::FromEvp(key);
  EVP_PKEY_free(key);
  return result;
}

}  // namespace

std::string HandleHex(std::uint32_t value) {
  char text[16];
  (void)std::snprintf(text, sizeof text, "0x%08x", value);
  return text;
}

Expected<PublicArea> ParsePublic(std::span<const std::uint8_t> tpm2b_public) {
  if (tpm2b_public.size() > sizeof(TPM2B_PUBLIC)) {
    return MakeError(ErrorCode::kParse, "tpm: public area of " + std::to_string(tpm2b_public.size()) +
                                            " bytes is larger than any TPM2B_PUBLIC");
  }
  // The size prefix must cover exactly the rest: the name is computed over
  // these bytes, so they must be the TPMT_PUBLIC and nothing else.
  if (tpm2b_public.size() < 2 ||
      ((static_cast<std::size_t>(tpm2b_public[0]) << 8) | tpm2b_public[1]) != tpm2b_public.size() - 2) {
    return MakeError(ErrorCode::kParse, "tpm: the TPM2B_PUBLIC's size prefix does not match its length");
  }
  TPM2B_PUBLIC parsed{};
  std::size_t offset = 0;
  if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(tpm2b_public.data(), tpm2b_public.size(), &offset, &parsed) != 0) {
    return MakeError(ErrorCode::kParse, "tpm: malformed TPM2B_PUBLIC");
  }
  if (offset != tpm2b_public.size()) {
    return MakeError(ErrorCode::kParse,
                     "tpm: " + std::to_string(tpm2b_public.size() - offset) + " bytes after the TPM2B_PUBLIC");
  }
  PublicArea result;
  result.area = parsed.publicArea;
  const TPMT_PUBLIC& area = result.area;
  if (area.nameAlg != TPM2_ALG_SHA256) {
    return MakeError(ErrorCode::kInvalidArgument, "tpm: name algorithm " + HandleHex(area.nameAlg) + " is not SHA-256");
  }
  if (area.type == TPM2_ALG_ECC) {
    if (area.parameters.eccDetail.curveID != TPM2_ECC_NIST_P256) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "tpm: ECC curve " + HandleHex(area.parameters.eccDetail.curveID) + " is not NIST P-256");
    }
    if (area.unique.ecc.x.size != 32 || area.unique.ecc.y.size != 32) {
      return MakeError(ErrorCode::kInvalidArgument, "tpm: a P-256 point needs 32-byte coordinates");
    }
  } else if (area.type == TPM2_ALG_RSA) {
    if (area.parameters.rsaDetail.keyBits != 2048 || area.unique.rsa.size != 256) {
      return MakeError(ErrorCode::kInvalidArgument, "tpm: only RSA 2048 keys are used");
    }
  } else {
    return MakeError(ErrorCode::kInvalidArgument, "tpm: key type " + HandleHex(area.type) + " is not ECC or RSA");
  }
  // The name covers the TPMT_PUBLIC exactly as marshalled.
  result.marshalled.assign(tpm2b_public.begin() + 2, tpm2b_public.end());
  return result;
}

Expected<Bytes> MarshalPublic(const TPMT_PUBLIC& area) {
  TPM2B_PUBLIC wrapped{};
  wrapped.publicArea = area;
  Bytes out(sizeof(TPM2B_PUBLIC));
  std::size_t offset = 0;
  if (Tss2_MU_TPM2B_PUBLIC_Marshal(&wrapped, out.data(), out.size(), &offset) != 0) {
    return MakeError(ErrorCode::kInvalidArgument, "tpm: the public area cannot be marshalled");
  }
  out.resize(offset);
  return out;
}

Bytes ObjectName(const PublicArea& area) {
  crypto::Sha256Digest digest = crypto::Sha256(std::span<const std::uint8_t>(area.marshalled));
  Bytes name(2 + digest.size());
  name[0] = static_cast<std::uint8_t>(area.area.nameAlg >> 8);
  name[1] = static_cast<std::uint8_t>(area.area.nameAlg & 0xff);
  std::copy(digest.begin(), digest.end(), name.begin() + 2);
  return name;
}

Expected<crypto::PublicKey> ToPublicKey(const PublicArea& area) {
  const TPMT_PUBLIC& key = area.area;
  if (key.type == TPM2_ALG_ECC) {
    Bytes point(1 + 64);
    point[0] = 0x04;  // uncompressed
    std::copy(key.unique.ecc.x.buffer, key.unique.ecc.x.buffer + 32, point.begin() + 1);
    std::copy(key.unique.ecc.y.buffer, key.unique.ecc.y.buffer + 32, point.begin() + 33);
    return KeyFromParams("EC", [&](OSSL_PARAM_BLD* build) {
      return OSSL_PARAM_BLD_push_utf8_string(build, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) == 1 &&
             OSSL_PARAM_BLD_push_octet_string(build, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) == 1;
    });
  }
  crypto::BignumPtr modulus(BN_bin2bn(key.unique.rsa.buffer, key.unique.rsa.size, nullptr));
  std::uint32_t exponent_value = key.parameters.rsaDetail.exponent == 0 ? 65537 : key.parameters.rsaDetail.exponent;
  crypto::BignumPtr exponent(BN_new());
  if (!modulus || !exponent || BN_set_word(exponent.get(), exponent_value) != 1) {
    return MakeError(ErrorCode::kInternal, "tpm: out of memory");
  }
  return KeyFromParams("RSA", [&](OSSL_PARAM_BLD* build) {
    return OSSL_PARAM_BLD_push_BN(build, OSSL_PKEY_PARAM_RSA_N, modulus.get()) == 1 &&
           OSSL_PARAM_BLD_push_BN(build, OSSL_PKEY_PARAM_RSA_E, exponent.get()) == 1;
  });
}

Expected<void> CheckAttestationKey(const PublicArea& area) {
  const TPMT_PUBLIC& key = area.area;
  auto refuse = [](const std::string& what) {
    return MakeError(ErrorCode::kFailedPrecondition, "tpm: not an attestation key: " + what);
  };
  if (key.type != TPM2_ALG_ECC) return refuse("not an ECC key");
  const TPMA_OBJECT attributes = key.objectAttributes;
  struct Required {
    TPMA_OBJECT bit;
    bool set;
    const char* name;
  };
  constexpr Required kRequired[] = {
      {TPMA_OBJECT_FIXEDTPM, true, "fixedTPM must be set"},
      {TPMA_OBJECT_FIXEDPARENT, true, "fixedParent must be set"},
      {TPMA_OBJECT_SENSITIVEDATAORIGIN, true, "sensitiveDataOrigin must be set (the TPM made the key)"},
      {TPMA_OBJECT_RESTRICTED, true, "restricted must be set"},
      {TPMA_OBJECT_SIGN_ENCRYPT, true, "sign must be set"},
      {TPMA_OBJECT_DECRYPT, false, "decrypt must be clear"},
      {TPMA_OBJECT_USERWITHAUTH, true, "userWithAuth must be set"},
      {TPMA_OBJECT_ADMINWITHPOLICY, false, "adminWithPolicy must be clear"},
  };
  for (const Required& required : kRequired) {
    if (((attributes & required.bit) != 0) != required.set) return refuse(required.name);
  }
  if (key.authPolicy.size != 0) return refuse("authPolicy must be empty");
  const TPMT_ECC_SCHEME& scheme = key.parameters.eccDetail.scheme;
  if (scheme.scheme != TPM2_ALG_ECDSA || scheme.details.ecdsa.hashAlg != TPM2_ALG_SHA256) {
    return refuse("its scheme must be ECDSA with SHA-256");
  }
  if (key.parameters.eccDetail.symmetric.algorithm != TPM2_ALG_NULL) return refuse("a signing key has no symmetric");
  return kOk;
}

}  // namespace citadel::tpm
