// TPM 2.0 public areas (TPM2B_PUBLIC) as the wire carries them: parsing,
// object names, and the OpenSSL public key they hold.
//
// Untrusted input: a public area comes from a device. Parsing is bounded
// (the marshalled size is at most sizeof(TPM2B_PUBLIC)), refuses trailing
// bytes, and accepts only what Citadel uses: ECC NIST P-256 and RSA 2048
// keys with SHA-256 as the name algorithm.
//
// Thread safety: pure functions.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <span>
#include <string>

#include "common/encoding.hpp"
#include "common/error.hpp"
#include "crypto/crypto.hpp"

namespace citadel::tpm {

// "0x81000002": a handle, algorithm or attribute value for messages.
std::string HandleHex(std::uint32_t value);

// A parsed public area with the bytes it came from.
struct PublicArea {
  TPMT_PUBLIC area{};
  Bytes marshalled;  // TPMT_PUBLIC as the TPM marshals it (the name's input)
};

// Parses a marshalled TPM2B_PUBLIC (size-prefixed). kParse with the reason
// for malformed or trailing bytes; kInvalidArgument for an algorithm,
// curve, key size or name algorithm Citadel does not use.
[[nodiscard]] Expected<PublicArea> ParsePublic(std::span<const std::uint8_t> tpm2b_public);
// Marshals a TPMT_PUBLIC as a TPM2B_PUBLIC (for evidence and tests).
[[nodiscard]] Expected<Bytes> MarshalPublic(const TPMT_PUBLIC& area);

// The object's name: nameAlg (2 bytes, big-endian) || SHA-256(TPMT_PUBLIC).
Bytes ObjectName(const PublicArea& area);

// The public key the area holds, as an OpenSSL key (ECC P-256 point or
// RSA modulus with its exponent, 0 meaning 65537).
[[nodiscard]] Expected<crypto::PublicKey> ToPublicKey(const PublicArea& area);

// What the verifier requires of an attestation key before it trusts a
// quote: ECC P-256, restricted signing with ECDSA-SHA256, created inside
// the TPM (fixedTPM, fixedParent, sensitiveDataOrigin), not a decryption
// key, usable with its authValue (userWithAuth) and with no admin policy
// and an empty authPolicy, so that TPM2_ActivateCredential needs the
// object's private part and a public-only copy loaded with
// TPM2_LoadExternal cannot pass it. kFailedPrecondition naming the
// attribute that is wrong.
[[nodiscard]] Expected<void> CheckAttestationKey(const PublicArea& area);

}  // namespace citadel::tpm
