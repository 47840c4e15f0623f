// What an attacker without the TPM can make in software: TPM2 quotes signed
// by a software P-256 key, and a TPM2B_PUBLIC that claims that key is a
// TPM-resident attestation key (every attribute a real AK has). Tests use
// it to show that such evidence is refused, and the quote tests use it to
// exercise the verifier's checks one by one. Header-only; needs citadel_tpm.
#pragma once

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <tss2/tss2_mu.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "crypto/crypto.hpp"
#include "crypto/openssl_ptr.hpp"
#include "rot/rot.hpp"
#include "tpm/public_area.hpp"
#include "tpm/quote.hpp"

namespace citadel::testing {

inline TPM2B_ATTEST MarshalAttest(const TPMS_ATTEST& attest) {
  TPM2B_ATTEST out{};
  std::size_t offset = 0;
  EXPECT_EQ(Tss2_MU_TPMS_ATTEST_Marshal(&attest, out.attestationData, sizeof out.attestationData, &offset), 0U);
  out.size = static_cast<UINT16>(offset);
  return out;
}

// The TPMT_SIGNATURE a TPM would make with `key` over the attested bytes.
inline TPMT_SIGNATURE SignAttest(const crypto::PrivateKey& key, const TPM2B_ATTEST& attest) {
  auto der = key.SignDigest(crypto::Sha256(std::span<const std::uint8_t>(attest.attestationData, attest.size)));
  EXPECT_TRUE(der.has_value());
  const std::uint8_t* cursor = der->data();
  crypto::EcdsaSigPtr parsed(d2i_ECDSA_SIG(nullptr, &cursor, static_cast<long>(der->size())));
  EXPECT_NE(parsed, nullptr);
  TPMT_SIGNATURE signature{};
  signature.sigAlg = TPM2_ALG_ECDSA;
  signature.signature.ecdsa.hash = TPM2_ALG_SHA256;
  signature.signature.ecdsa.signatureR.size = 32;
  signature.signature.ecdsa.signatureS.size = 32;
  EXPECT_EQ(BN_bn2binpad(ECDSA_SIG_get0_r(parsed.get()), signature.signature.ecdsa.signatureR.buffer, 32), 32);
  EXPECT_EQ(BN_bn2binpad(ECDSA_SIG_get0_s(parsed.get()), signature.signature.ecdsa.signatureS.buffer, 32), 32);
  return signature;
}

// A quote of the measurement PCRs (rot::kTpmFirstRegisterPcr...) holding
// `registers`, with `extra_data` as qualifying data, signed by `key`.
inline Bytes ForgeQuote(const crypto::PrivateKey& key, const crypto::Sha256Digest& extra_data,
                        const std::vector<crypto::Sha256Digest>& registers) {
  TPMS_ATTEST attest{};
  attest.magic = TPM2_GENERATED_VALUE;
  attest.type = TPM2_ST_ATTEST_QUOTE;
  attest.qualifiedSigner.size = 34;
  attest.extraData.size = 32;
  std::copy(extra_data.begin(), extra_data.end(), attest.extraData.buffer);
  attest.clockInfo.safe = TPM2_YES;
  TPML_PCR_SELECTION& selection = attest.attested.quote.pcrSelect;
  selection.count = 1;
  selection.pcrSelections[0].hash = TPM2_ALG_SHA256;
  selection.pcrSelections[0].sizeofSelect = 3;
  for (std::uint32_t i = 0; i < registers.size(); ++i) {
    std::uint32_t pcr = rot::kTpmFirstRegisterPcr + i;
    selection.pcrSelections[0].pcrSelect[pcr / 8] |= static_cast<std::uint8_t>(1U << (pcr % 8));
  }
  const crypto::Sha256Digest digest = tpm::PcrDigest(registers);
  attest.attested.quote.pcrDigest.size = 32;
  std::copy(digest.begin(), digest.end(), attest.attested.quote.pcrDigest.buffer);
  const TPM2B_ATTEST marshalled = MarshalAttest(attest);
  return tpm::MarshalQuoteBlob(marshalled, SignAttest(key, marshalled));
}

// A TPM2B_PUBLIC claiming `key` is a restricted, fixedTPM attestation key.
inline Bytes ForgeAttestationKeyPublic(const crypto::PrivateKey& key) {
  TPMT_PUBLIC area{};
  area.type = TPM2_ALG_ECC;
  area.nameAlg = TPM2_ALG_SHA256;
  area.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                          TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED |
                          TPMA_OBJECT_SIGN_ENCRYPT;
  area.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
  area.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
  area.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
  area.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
  area.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  std::uint8_t point[65];
  std::size_t length = 0;
  EXPECT_EQ(EVP_PKEY_get_octet_string_param(key.evp(), OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point, &length), 1);
  EXPECT_EQ(length, 65U);
  area.unique.ecc.x.size = 32;
  area.unique.ecc.y.size = 32;
  std::copy(point + 1, point + 33, area.unique.ecc.x.buffer);
  std::copy(point + 33, point + 65, area.unique.ecc.y.buffer);
  auto marshalled = tpm::MarshalPublic(area);
  EXPECT_TRUE(marshalled.has_value());
  return marshalled.value_or(Bytes{});
}

}  // namespace citadel::testing
