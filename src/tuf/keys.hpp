// TUF keys: the public KEY objects metadata carries, and the private
// SigningKey the repository side (service, CLI key ceremony, tests) signs
// metadata with.
//
// Supported (keytype / scheme / keyval.public / signature bytes):
//   ed25519 / ed25519 / hex of the raw 32-byte key / raw 64 bytes
//   ecdsa or ecdsa-sha2-nistp256 / ecdsa-sha2-nistp256 / PEM SPKI, P-256 /
//       DER ECDSA-Sig-Value over SHA-256
//   ecdsa or ecdsa-sha2-nistp384 / ecdsa-sha2-nistp384 / PEM SPKI, P-384 /
//       DER ECDSA-Sig-Value over SHA-384
//   rsa / rsassa-pss-sha{256,384,512} / PEM SPKI, >= 2048 bits / PSS with
//       MGF1 of the same digest; verification accepts any salt length
//       (securesystemslib signs with salt = digest length, verifies "auto")
//   rsa / rsa-pkcs1v15-sha{256,384,512} / PEM SPKI, >= 2048 bits / PKCS#1 v1.5
// A key of any other type, or whose material does not decode, still parses
// (metadata may list keys this client cannot use) but never verifies.
//
// Signatures travel in metadata as hex ("sig"); Verify and Sign take and
// give that hex form. Key ids: see ComputeKeyId.
//
// Threading: Key is immutable after FromJson and safe to share; SigningKey's
// const methods may be called from several threads.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/canonical_json.hpp"  // Json
#include "common/error.hpp"
#include "crypto/crypto.hpp"

namespace citadel::tuf {

class Key {
 public:
  // Parses a KEY object: "keytype" and "scheme" strings, "keyval" an object
  // whose "public" is a string. Unknown members are kept (they are part of
  // the signed bytes). path names the value in error messages. Fails only on
  // a wrong shape (kInvalidArgument), never on key material.
  static Expected<Key> FromJson(const Json& json, std::string_view path = "key");

  const std::string& keytype() const { return keytype_; }
  const std::string& scheme() const { return scheme_; }
  const std::string& public_value() const { return public_; }
  // The KEY object exactly as parsed (unknown members included).
  const Json& json() const { return json_; }

  // True when this client can verify signatures with the key; otherwise
  // unusable_reason() says why ("unsupported keytype/scheme ...").
  bool usable() const { return public_key_.has_value(); }
  const std::string& unusable_reason() const { return unusable_reason_; }

  // Lower-case hex SHA-256 of the canonical encoding of
  // {"keytype", "scheme", "keyval"} — the key id securesystemslib assigns.
  // Clients do not recompute key ids of keys in metadata (python-tuf does
  // not either: keys carrying extra members such as "keyid_hash_algorithms"
  // keep the id they were given); this is for the repository side.
  Expected<std::string> ComputeKeyId() const;

  // A stable identity of the key material (SHA-256 of its SPKI DER), so that
  // two key ids bound to the same key count once towards a threshold. Empty
  // for an unusable key.
  const std::string& material_id() const { return material_id_; }

  // Verifies signature_hex over message. kCrypto with the reason on any
  // failure (unusable key, bad hex, wrong signature).
  [[nodiscard]] Expected<void> Verify(std::string_view message, std::string_view signature_hex) const;

 private:
  Key() = default;

  std::string keytype_;
  std::string scheme_;
  std::string public_;
  Json json_;
  std::optional<crypto::PublicKey> public_key_;
  std::string unusable_reason_;
  std::string material_id_;
};

enum class KeyAlgorithm {
  kEcdsaP256,  // our default: keytype "ecdsa-sha2-nistp256"
  kEd25519,
};

// A private TUF signing key. Not copyable; the private half only leaves
// through ToPem (PKCS#8, in SecretBytes) and never reaches a log line.
class SigningKey {
 public:
  static Expected<SigningKey> Generate(KeyAlgorithm algorithm = KeyAlgorithm::kEcdsaP256);
  // Loads an unencrypted PKCS#8 (or traditional) PEM private key: ed25519,
  // EC P-256 / P-384, or RSA >= 2048 bits. scheme picks the signature scheme
  // where the key type allows several (RSA: "rsassa-pss-sha256" by default,
  // or "rsa-pkcs1v15-sha256", ...); empty means the type's default.
  static Expected<SigningKey> FromPem(const crypto::SecretBytes& pem, std::string_view scheme = {});

  SigningKey(const SigningKey&) = delete;
  SigningKey& operator=(const SigningKey&) = delete;
  SigningKey(SigningKey&&) noexcept = default;
  SigningKey& operator=(SigningKey&&) noexcept = default;
  ~SigningKey() = default;

  Expected<crypto::SecretBytes> ToPem() const { return private_key_.ToPem(); }
  // The public KEY object that goes into root or delegations.
  const Key& PublicKey() const { return public_key_; }
  const std::string& KeyId() const { return key_id_; }
  // Signs message (the canonical "signed" bytes) and returns the hex "sig".
  Expected<std::string> Sign(std::string_view message) const;

 private:
  SigningKey(crypto::PrivateKey key, Key public_key, std::string key_id)
      : private_key_(std::move(key)), public_key_(std::move(public_key)), key_id_(std::move(key_id)) {}

  crypto::PrivateKey private_key_;
  Key public_key_;
  std::string key_id_;
};

}  // namespace citadel::tuf
