// TPM 2.0 credential protection (TPM 2.0 Part 1 §24, the TPM2_MakeCredential
// computation done outside the TPM): the service wraps a secret so that only
// the TPM holding a given endorsement key, and only for an object with a
// given name loaded in it, returns the secret from TPM2_ActivateCredential.
//
// What a successful activation proves to the service: the object named
// `object_name` is loaded in the TPM that holds the EK's private part. That
// binds an attestation key to an EK only if the caller first checked the
// key with CheckAttestationKey (public_area.hpp): a public-only copy of a
// key loaded with TPM2_LoadExternal could otherwise satisfy the name.
//
// Only RSA 2048 endorsement keys of the TCG EK template (restricted
// decryption key, AES-128-CFB symmetric, SHA-256 name algorithm) are used.
//
// Thread safety: pure functions (OpenSSL's DRBG supplies the seed).
#pragma once

#include <cstdint>
#include <span>

#include "common/encoding.hpp"
#include "common/error.hpp"
#include "tpm/public_area.hpp"

namespace citadel::tpm {

// TPM2_ActivateCredential's two inputs, marshalled as the TPM takes them.
struct Credential {
  Bytes credential_blob;   // TPM2B_ID_OBJECT: TPM2B_DIGEST(outer HMAC) || encrypted identity
  Bytes encrypted_secret;  // TPM2B_ENCRYPTED_SECRET: the seed, RSA-OAEP-encrypted to the EK
};

// The largest secret: the EK's name algorithm digest (SHA-256).
inline constexpr std::size_t kMaxCredentialSecretSize = 32;

// Wraps `secret` (1..32 bytes) for the object named `object_name` (the
// TPM name: 0x000B || SHA-256 of its public area) in the TPM holding `ek`.
// kInvalidArgument for an ECC EK ("only RSA endorsement keys"), an EK that
// is not a restricted decryption key with the EK template's symmetric
// parameters, a name that is not a SHA-256 name, or a secret size out of
// range. The secret travels inside the blob; the seed and the keys derived
// from it are wiped before returning.
[[nodiscard]] Expected<Credential> MakeCredential(const PublicArea& ek, std::span<const std::uint8_t> object_name,
                                                  std::span<const std::uint8_t> secret);

}  // namespace citadel::tpm
