#include "tuf/keys.hpp"

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>

#include <array>
#include <memory>
#include <utility>

#include "common/encoding.hpp"
#include "common/json_fields.hpp"
#include "tuf/canonical.hpp"

namespace citadel::tuf {
namespace {

namespace jf = json_fields;

// Bounds on untrusted key text: a 16384-bit RSA PEM is ~2.9 KB.
constexpr std::size_t kMaxKeyTextBytes = 16 * 1024;
constexpr std::size_t kMaxNameBytes = 256;
constexpr int kMinRsaBits = 2048;

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

enum class Family { kEd25519, kEcdsa, kRsaPss, kRsaPkcs1 };

struct Scheme {
  std::string_view name;
  Family family;
  const EVP_MD* (*digest)();  // nullptr: the algorithm hashes internally (ed25519)
  int curve_nid;              // ECDSA only
  std::array<std::string_view, 2> keytypes;
};

constexpr std::array kSchemes = {
    Scheme{"ed25519", Family::kEd25519, nullptr, 0, {"ed25519", ""}},
    Scheme{"ecdsa-sha2-nistp256", Family::kEcdsa, EVP_sha256, NID_X9_62_prime256v1, {"ecdsa", "ecdsa-sha2-nistp256"}},
    Scheme{"ecdsa-sha2-nistp384", Family::kEcdsa, EVP_sha384, NID_secp384r1, {"ecdsa", "ecdsa-sha2-nistp384"}},
    Scheme{"rsassa-pss-sha256", Family::kRsaPss, EVP_sha256, 0, {"rsa", ""}},
    Scheme{"rsassa-pss-sha384", Family::kRsaPss, EVP_sha384, 0, {"rsa", ""}},
    Scheme{"rsassa-pss-sha512", Family::kRsaPss, EVP_sha512, 0, {"rsa", ""}},
    Scheme{"rsa-pkcs1v15-sha256", Family::kRsaPkcs1, EVP_sha256, 0, {"rsa", ""}},
    Scheme{"rsa-pkcs1v15-sha384", Family::kRsaPkcs1, EVP_sha384, 0, {"rsa", ""}},
    Scheme{"rsa-pkcs1v15-sha512", Family::kRsaPkcs1, EVP_sha512, 0, {"rsa", ""}},
};

const Scheme* FindScheme(std::string_view keytype, std::string_view scheme) {
  for (const auto& candidate : kSchemes) {
    if (candidate.name != scheme) continue;
    for (auto allowed : candidate.keytypes) {
      if (!allowed.empty() && allowed == keytype) return &candidate;
    }
  }
  return nullptr;
}

int CurveNid(EVP_PKEY* key) {
  char group[64] = {};
  std::size_t length = 0;
  if (EVP_PKEY_get_group_name(key, group, sizeof group, &length) != 1) {
    ERR_clear_error();
    return NID_undef;
  }
  // Providers spell curves "prime256v1", "P-256", "secp384r1", "P-384".
  int nid = OBJ_txt2nid(group);
  if (nid == NID_undef) nid = EC_curve_nist2nid(group);
  ERR_clear_error();
  return nid;
}

// Checks that key is the kind of key scheme needs; an empty string when so.
std::string CheckKeyFitsScheme(EVP_PKEY* key, const Scheme& scheme) {
  switch (scheme.family) {
    case Family::kEd25519:
      return EVP_PKEY_is_a(key, "ED25519") == 1 ? "" : "not an ed25519 key";
    case Family::kEcdsa:
      if (EVP_PKEY_is_a(key, "EC") != 1) return "not an EC key";
      return CurveNid(key) == scheme.curve_nid ? "" : "EC key on the wrong curve for " + std::string(scheme.name);
    case Family::kRsaPss:
    case Family::kRsaPkcs1:
      if (EVP_PKEY_is_a(key, "RSA") != 1) return "not an RSA key";
      return EVP_PKEY_get_bits(key) >= kMinRsaBits ? "" : "RSA key shorter than 2048 bits";
  }
  return "unknown scheme family";
}

// Sets RSA padding on a digest-sign/verify context; no-op for other keys.
bool ConfigurePadding(EVP_PKEY_CTX* pctx, const Scheme& scheme, bool verifying) {
  if (scheme.family == Family::kRsaPss) {
    // Verification accepts whatever salt length the signer chose (the
    // encoded length is recovered from the signature); signing uses the
    // digest length, as securesystemslib does.
    const int salt = verifying ? RSA_PSS_SALTLEN_AUTO : RSA_PSS_SALTLEN_DIGEST;
    return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, salt) == 1;
  }
  if (scheme.family == Family::kRsaPkcs1) return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) == 1;
  return true;
}

Expected<crypto::PublicKey> DecodePublicKey(const Scheme& scheme, const std::string& text) {
  if (scheme.family == Family::kEd25519) {
    if (text.size() != 64) return MakeError(ErrorCode::kParse, "ed25519 public key is not 64 hex digits");
    CITADEL_TRY(Bytes raw, HexDecode(text));
    PkeyPtr key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, raw.data(), raw.size()));
    ERR_clear_error();
    if (!key) return MakeError(ErrorCode::kParse, "ed25519 public key does not decode");
    return crypto::PublicKey::FromEvp(key.get());
  }
  CITADEL_TRY(crypto::PublicKey key, crypto::PublicKey::FromPem(text));
  std::string misfit = CheckKeyFitsScheme(key.evp(), scheme);
  if (!misfit.empty()) return MakeError(ErrorCode::kParse, misfit);
  return key;
}

std::string DescribeKey(std::string_view keytype, std::string_view scheme) {
  return jf::Quote(keytype) + "/" + jf::Quote(scheme);
}

}  // namespace

// ---------------------------------------------------------------------- Key

Expected<Key> Key::FromJson(const Json& json, std::string_view path) {
  CITADEL_TRY_VOID(jf::ExpectObject(json, path, {}, jf::UnknownFields::kIgnore));
  Key key;
  CITADEL_TRY(const Json* keytype, jf::Require(json, path, "keytype"));
  CITADEL_TRY(key.keytype_, jf::ReadString(*keytype, jf::Child(path, "keytype"), kMaxNameBytes));
  CITADEL_TRY(const Json* scheme, jf::Require(json, path, "scheme"));
  CITADEL_TRY(key.scheme_, jf::ReadString(*scheme, jf::Child(path, "scheme"), kMaxNameBytes));
  CITADEL_TRY(const Json* keyval, jf::Require(json, path, "keyval"));
  const std::string keyval_path = jf::Child(path, "keyval");
  CITADEL_TRY_VOID(jf::ExpectObject(*keyval, keyval_path, {}, jf::UnknownFields::kIgnore));
  CITADEL_TRY(const Json* public_value, jf::Require(*keyval, keyval_path, "public"));
  CITADEL_TRY(key.public_, jf::ReadString(*public_value, jf::Child(keyval_path, "public"), kMaxKeyTextBytes));
  key.json_ = json;

  const Scheme* known = FindScheme(key.keytype_, key.scheme_);
  if (known == nullptr) {
    key.unusable_reason_ = "unsupported key type and scheme " + DescribeKey(key.keytype_, key.scheme_);
    return key;
  }
  auto decoded = DecodePublicKey(*known, key.public_);
  if (!decoded) {
    key.unusable_reason_ = DescribeKey(key.keytype_, key.scheme_) + " key: " + decoded.error().message();
    return key;
  }
  key.material_id_ = crypto::Sha256Hex(AsText(decoded->SpkiDer()));
  key.public_key_ = *std::move(decoded);
  return key;
}

Expected<std::string> Key::ComputeKeyId() const {
  Json identity = {{"keytype", keytype_}, {"scheme", scheme_}, {"keyval", json_.at("keyval")}};
  CITADEL_TRY(std::string canonical, EncodeCanonical(identity));
  return crypto::Sha256Hex(canonical);
}

Expected<void> Key::Verify(std::string_view message, std::string_view signature_hex) const {
  if (!public_key_) return MakeError(ErrorCode::kCrypto, unusable_reason_);
  const Scheme* scheme = FindScheme(keytype_, scheme_);
  if (scheme == nullptr) return MakeError(ErrorCode::kInternal, "usable key without a scheme");
  if (signature_hex.empty()) return MakeError(ErrorCode::kCrypto, "empty signature");
  auto signature = HexDecode(signature_hex);
  if (!signature) return MakeError(ErrorCode::kCrypto, "signature is not hex");

  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  const EVP_MD* digest = scheme->digest != nullptr ? scheme->digest() : nullptr;
  const bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), &pctx, digest, nullptr, public_key_->evp()) == 1 &&
                  ConfigurePadding(pctx, *scheme, /*verifying=*/true) &&
                  EVP_DigestVerify(ctx.get(), signature->data(), signature->size(),
                                   reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  ERR_clear_error();
  if (!ok) return MakeError(ErrorCode::kCrypto, "signature does not verify");
  return kOk;
}

// --------------------------------------------------------------- SigningKey

namespace {

Expected<std::string> PublicText(const crypto::PrivateKey& key, Family family) {
  if (family == Family::kEd25519) {
    std::array<unsigned char, 32> raw{};
    std::size_t length = raw.size();
    if (EVP_PKEY_get_raw_public_key(key.evp(), raw.data(), &length) != 1 || length != raw.size()) {
      ERR_clear_error();
      return MakeError(ErrorCode::kCrypto, "cannot read the ed25519 public key");
    }
    return HexEncode(raw);
  }
  std::string pem = key.Public().Pem();
  if (pem.empty()) return MakeError(ErrorCode::kCrypto, "cannot encode the public key as PEM");
  return pem;
}

}  // namespace

Expected<SigningKey> SigningKey::Generate(KeyAlgorithm algorithm) {
  crypto::SecretBytes pem;
  if (algorithm == KeyAlgorithm::kEd25519) {
    EVP_PKEY* raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    if (raw == nullptr) {
      ERR_clear_error();
      return MakeError(ErrorCode::kCrypto, "generating an ed25519 key");
    }
    crypto::PrivateKey key = crypto::PrivateKey::Adopt(raw);
    CITADEL_TRY(pem, key.ToPem());
  } else {
    CITADEL_TRY(crypto::PrivateKey key, crypto::PrivateKey::GenerateP256());
    CITADEL_TRY(pem, key.ToPem());
  }
  return FromPem(pem);
}

Expected<SigningKey> SigningKey::FromPem(const crypto::SecretBytes& pem, std::string_view scheme_name) {
  CITADEL_TRY(crypto::PrivateKey key, crypto::PrivateKey::FromPem(pem));
  EVP_PKEY* evp = key.evp();
  std::string_view keytype;
  if (EVP_PKEY_is_a(evp, "ED25519") == 1) {
    keytype = "ed25519";
    if (scheme_name.empty()) scheme_name = "ed25519";
  } else if (EVP_PKEY_is_a(evp, "EC") == 1) {
    const int nid = CurveNid(evp);
    if (nid == NID_X9_62_prime256v1) {
      keytype = "ecdsa-sha2-nistp256";
      if (scheme_name.empty()) scheme_name = "ecdsa-sha2-nistp256";
    } else if (nid == NID_secp384r1) {
      keytype = "ecdsa-sha2-nistp384";
      if (scheme_name.empty()) scheme_name = "ecdsa-sha2-nistp384";
    } else {
      return MakeError(ErrorCode::kInvalidArgument, "signing key: EC keys must be on P-256 or P-384");
    }
  } else if (EVP_PKEY_is_a(evp, "RSA") == 1) {
    keytype = "rsa";
    if (scheme_name.empty()) scheme_name = "rsassa-pss-sha256";
  } else {
    ERR_clear_error();
    return MakeError(ErrorCode::kInvalidArgument, "signing key: not an ed25519, ECDSA or RSA key");
  }
  ERR_clear_error();
  const Scheme* scheme = FindScheme(keytype, scheme_name);
  if (scheme == nullptr) {
    return MakeError(ErrorCode::kInvalidArgument, "signing key: scheme " + jf::Quote(scheme_name) + " does not fit a " +
                                                      std::string(keytype) + " key");
  }
  std::string misfit = CheckKeyFitsScheme(evp, *scheme);
  if (!misfit.empty()) return MakeError(ErrorCode::kInvalidArgument, "signing key: " + misfit);
  CITADEL_TRY(std::string public_text, PublicText(key, scheme->family));
  Json json = {
      {"keytype", std::string(keytype)}, {"scheme", std::string(scheme->name)}, {"keyval", {{"public", public_text}}}};
  CITADEL_TRY(Key public_key, Key::FromJson(json));
  if (!public_key.usable()) return MakeError(ErrorCode::kInternal, public_key.unusable_reason());
  CITADEL_TRY(std::string key_id, public_key.ComputeKeyId());
  return SigningKey(std::move(key), std::move(public_key), std::move(key_id));
}

Expected<std::string> SigningKey::Sign(std::string_view message) const {
  const Scheme* scheme = FindScheme(public_key_.keytype(), public_key_.scheme());
  if (scheme == nullptr) return MakeError(ErrorCode::kInternal, "signing key without a scheme");
  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  const EVP_MD* digest = scheme->digest != nullptr ? scheme->digest() : nullptr;
  const auto* data = reinterpret_cast<const unsigned char*>(message.data());
  std::size_t length = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), &pctx, digest, nullptr, private_key_.evp()) != 1 ||
      !ConfigurePadding(pctx, *scheme, /*verifying=*/false) ||
      EVP_DigestSign(ctx.get(), nullptr, &length, data, message.size()) != 1) {
    ERR_clear_error();
    return MakeError(ErrorCode::kCrypto, "signing TUF metadata failed");
  }
  Bytes signature(length);
  if (EVP_DigestSign(ctx.get(), signature.data(), &length, data, message.size()) != 1) {
    ERR_clear_error();
    return MakeError(ErrorCode::kCrypto, "signing TUF metadata failed");
  }
  signature.resize(length);
  return HexEncode(signature);
}

}  // namespace citadel::tuf
