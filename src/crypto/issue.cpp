// IssueCertificate: X.509 v3 certificates for CAs and leaves, ECDSA-SHA256.
#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/objects.h>

#include <algorithm>

#include "crypto/crypto.hpp"
#include "crypto/openssl_util.hpp"

namespace citadel::crypto {

using internal::MakeOpenSslError;

namespace {

constexpr std::size_t kMaxSerialHexDigits = 40;  // RFC 5280: at most 20 octets

Expected<void> SetSerial(X509* cert, const std::optional<std::string>& serial_hex) {
  BignumPtr serial;
  if (serial_hex && !serial_hex->empty()) {
    const std::string& hex = *serial_hex;
    if (hex.size() > kMaxSerialHexDigits ||
        !std::all_of(hex.begin(), hex.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); })) {
      return MakeError(ErrorCode::kInvalidArgument, "serial_hex must be 1-40 hex digits");
    }
    BIGNUM* parsed = nullptr;
    if (BN_hex2bn(&parsed, hex.c_str()) != static_cast<int>(hex.size())) {
      BN_free(parsed);
      return MakeOpenSslError(ErrorCode::kInvalidArgument, "serial_hex does not parse");
    }
    serial.reset(parsed);
    if (BN_is_zero(serial.get())) return MakeError(ErrorCode::kInvalidArgument, "serial must be positive");
  } else {
    // 128 random bits with the top bit clear: positive, unpredictable and
    // well inside the 20-octet limit. Zero has probability 2^-127.
    Bytes random = RandomBytes(16);
    random[0] &= 0x7F;
    random[15] |= 0x01;  // never zero
    serial.reset(BN_bin2bn(random.data(), static_cast<int>(random.size()), nullptr));
  }
  if (!serial || BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert)) == nullptr) {
    return MakeOpenSslError(ErrorCode::kInternal, "setting the serial number");
  }
  return kOk;
}

Expected<X509NamePtr> MakeName(const CertificateSpec& spec) {
  if (spec.common_name.empty()) return MakeError(ErrorCode::kInvalidArgument, "common_name is required");
  X509NamePtr name(X509_NAME_new());
  auto add = [&](int nid, const std::string& value) {
    return X509_NAME_add_entry_by_NID(name.get(), nid, MBSTRING_UTF8,
                                      reinterpret_cast<const unsigned char*>(value.c_str()),
                                      static_cast<int>(value.size()), -1, 0) == 1;
  };
  if (!name) return MakeOpenSslError(ErrorCode::kInternal, "X509_NAME_new");
  if (!spec.organization.empty() && !add(NID_organizationName, spec.organization)) {
    return MakeOpenSslError(ErrorCode::kInvalidArgument, "organization is not a valid name (1-64 characters)");
  }
  if (!add(NID_commonName, spec.common_name)) {
    return MakeOpenSslError(ErrorCode::kInvalidArgument, "common_name is not a valid name (1-64 characters)");
  }
  return name;
}

Expected<void> AddConfExtension(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  X509ExtensionPtr extension(X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str()));
  if (!extension || X509_add_ext(cert, extension.get(), -1) != 1) {
    return MakeOpenSslError(ErrorCode::kInternal, std::string("adding extension ") + OBJ_nid2sn(nid));
  }
  return kOk;
}

bool IsIa5(const std::string& text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// SANs are built as ASN.1 objects, not via a config string, so a value
// containing ',' or ':' cannot inject another name.
Expected<void> AddSubjectAltNames(X509* cert, const CertificateSpec& spec) {
  if (spec.uri_sans.empty() && spec.dns_sans.empty() && spec.ip_sans.empty()) return kOk;
  GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  if (!names) return MakeOpenSslError(ErrorCode::kInternal, "allocating subjectAltName");

  auto push = [&](int type, ASN1_STRING* value) -> bool {
    GENERAL_NAME* name = GENERAL_NAME_new();
    if (name == nullptr || value == nullptr) {
      GENERAL_NAME_free(name);
      ASN1_STRING_free(value);
      return false;
    }
    GENERAL_NAME_set0_value(name, type, value);
    if (sk_GENERAL_NAME_push(names.get(), name) <= 0) {
      GENERAL_NAME_free(name);
      return false;
    }
    return true;
  };
  auto ia5 = [](const std::string& text) -> ASN1_STRING* {
    ASN1_IA5STRING* value = ASN1_IA5STRING_new();
    if (value != nullptr && ASN1_STRING_set(value, text.data(), static_cast<int>(text.size())) != 1) {
      ASN1_IA5STRING_free(value);
      return nullptr;
    }
    return value;
  };

  for (const std::string& uri : spec.uri_sans) {
    if (uri.empty() || !IsIa5(uri))
      return MakeError(ErrorCode::kInvalidArgument, "URI SAN must be non-empty ASCII: " + uri);
    if (!push(GEN_URI, ia5(uri))) return MakeOpenSslError(ErrorCode::kInternal, "adding a URI SAN");
  }
  for (const std::string& dns : spec.dns_sans) {
    if (dns.empty() || !IsIa5(dns))
      return MakeError(ErrorCode::kInvalidArgument, "DNS SAN must be non-empty ASCII: " + dns);
    if (!push(GEN_DNS, ia5(dns))) return MakeOpenSslError(ErrorCode::kInternal, "adding a DNS SAN");
  }
  for (const std::string& ip : spec.ip_sans) {
    ASN1_OCTET_STRING* address = a2i_IPADDRESS(ip.c_str());
    if (address == nullptr) {
      ERR_clear_error();
      return MakeError(ErrorCode::kInvalidArgument, "IP SAN is not an IPv4 or IPv6 address: " + ip);
    }
    if (!push(GEN_IPADD, address)) return MakeOpenSslError(ErrorCode::kInternal, "adding an IP SAN");
  }
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) != 1) {
    return MakeOpenSslError(ErrorCode::kInternal, "adding subjectAltName");
  }
  return kOk;
}

// Key identifiers per RFC 5280 section 4.2.1.2 method 1 (SHA-1 of the
// subjectPublicKey BIT STRING), computed directly rather than through the
// config-string machinery so self-signed and issued certificates take the
// same path.
Expected<void> AddKeyIdentifiers(X509* cert, X509* issuer) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (X509_pubkey_digest(cert, EVP_sha1(), digest, &length) != 1) {
    return MakeOpenSslError(ErrorCode::kInternal, "computing the subject key identifier");
  }
  std::unique_ptr<ASN1_OCTET_STRING, Free<ASN1_OCTET_STRING_free>> subject_id(ASN1_OCTET_STRING_new());
  if (!subject_id || ASN1_OCTET_STRING_set(subject_id.get(), digest, static_cast<int>(length)) != 1 ||
      X509_add1_ext_i2d(cert, NID_subject_key_identifier, subject_id.get(), 0, X509V3_ADD_DEFAULT) != 1) {
    return MakeOpenSslError(ErrorCode::kInternal, "adding subjectKeyIdentifier");
  }

  std::unique_ptr<AUTHORITY_KEYID, Free<AUTHORITY_KEYID_free>> authority(AUTHORITY_KEYID_new());
  if (!authority) return MakeOpenSslError(ErrorCode::kInternal, "allocating authorityKeyIdentifier");
  const ASN1_OCTET_STRING* issuer_id = issuer != nullptr ? X509_get0_subject_key_id(issuer) : subject_id.get();
  if (issuer_id != nullptr) {
    authority->keyid = ASN1_OCTET_STRING_dup(issuer_id);
  } else {
    // An issuer without a subjectKeyIdentifier: derive it the same way.
    if (X509_pubkey_digest(issuer, EVP_sha1(), digest, &length) != 1) {
      return MakeOpenSslError(ErrorCode::kInternal, "computing the authority key identifier");
    }
    authority->keyid = ASN1_OCTET_STRING_new();
    if (authority->keyid != nullptr && ASN1_OCTET_STRING_set(authority->keyid, digest, static_cast<int>(length)) != 1) {
      return MakeOpenSslError(ErrorCode::kInternal, "computing the authority key identifier");
    }
  }
  if (authority->keyid == nullptr ||
      X509_add1_ext_i2d(cert, NID_authority_key_identifier, authority.get(), 0, X509V3_ADD_DEFAULT) != 1) {
    return MakeOpenSslError(ErrorCode::kInternal, "adding authorityKeyIdentifier");
  }
  return kOk;
}

Expected<void> CheckSpec(const CertificateSpec& spec, const PublicKey& subject_key, const Certificate* issuer,
                         const PrivateKey& issuer_key) {
  if (subject_key.evp() == nullptr) return MakeError(ErrorCode::kInvalidArgument, "no subject key");
  if (issuer_key.evp() == nullptr) return MakeError(ErrorCode::kInvalidArgument, "no issuer key");
  if (spec.lifetime <= std::chrono::seconds::zero()) {
    return MakeError(ErrorCode::kInvalidArgument, "certificate lifetime must be positive");
  }
  if (spec.path_length && (!spec.is_ca || *spec.path_length < 0)) {
    return MakeError(ErrorCode::kInvalidArgument, "path_length needs is_ca and must not be negative");
  }
  if (spec.is_ca && !spec.extended_key_usages.empty()) {
    return MakeError(ErrorCode::kInvalidArgument, "extended key usages are for leaf certificates only");
  }
  if (issuer == nullptr) {
    if (!(subject_key == issuer_key.Public())) {
      return MakeError(ErrorCode::kInvalidArgument, "a self-signed certificate needs issuer_key to match subject_key");
    }
  } else {
    if (issuer->x509() == nullptr) return MakeError(ErrorCode::kInvalidArgument, "empty issuer certificate");
    if (!issuer->IsCa()) return MakeError(ErrorCode::kInvalidArgument, "the issuer certificate is not a CA");
    if (X509_check_private_key(issuer->x509(), issuer_key.evp()) != 1) {
      ERR_clear_error();
      return MakeError(ErrorCode::kInvalidArgument, "issuer_key does not match the issuer certificate");
    }
  }
  return kOk;
}

}  // namespace

Expected<Certificate> IssueCertificate(const CertificateSpec& spec, const PublicKey& subject_key,
                                       const Certificate* issuer, const PrivateKey& issuer_key) {
  CITADEL_TRY_VOID(CheckSpec(spec, subject_key, issuer, issuer_key));
  X509Ptr cert(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1) {
    return MakeOpenSslError(ErrorCode::kInternal, "X509_new");
  }
  CITADEL_TRY_VOID(SetSerial(cert.get(), spec.serial_hex));
  CITADEL_TRY(X509NamePtr subject, MakeName(spec));
  const X509_NAME* issuer_name = issuer != nullptr ? X509_get_subject_name(issuer->x509()) : subject.get();
  if (X509_set_subject_name(cert.get(), subject.get()) != 1 || X509_set_issuer_name(cert.get(), issuer_name) != 1) {
    return MakeOpenSslError(ErrorCode::kInternal, "setting names");
  }

  const std::int64_t not_before = ToUnixSeconds(spec.not_before);
  const std::int64_t not_after = not_before + std::chrono::duration_cast<std::chrono::seconds>(spec.lifetime).count();
  if (ASN1_TIME_set(X509_getm_notBefore(cert.get()), static_cast<time_t>(not_before)) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), static_cast<time_t>(not_after)) == nullptr) {
    return MakeOpenSslError(ErrorCode::kInvalidArgument, "setting the validity period");
  }
  if (X509_set_pubkey(cert.get(), subject_key.evp()) != 1) {
    return MakeOpenSslError(ErrorCode::kInvalidArgument, "setting the subject public key");
  }

  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer != nullptr ? issuer->x509() : cert.get(), cert.get(), nullptr, nullptr, 0);
  std::string basic_constraints = spec.is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE";
  if (spec.path_length) basic_constraints += ",pathlen:" + std::to_string(*spec.path_length);
  CITADEL_TRY_VOID(AddConfExtension(cert.get(), &ctx, NID_basic_constraints, basic_constraints));
  CITADEL_TRY_VOID(AddConfExtension(cert.get(), &ctx, NID_key_usage,
                                    spec.is_ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature"));
  CITADEL_TRY_VOID(AddKeyIdentifiers(cert.get(), issuer != nullptr ? issuer->x509() : nullptr));
  if (!spec.extended_key_usages.empty()) {
    const auto has = [&](ExtendedKeyUsage usage) {
      return std::find(spec.extended_key_usages.begin(), spec.extended_key_usages.end(), usage) !=
             spec.extended_key_usages.end();
    };
    std::string usages;
    if (has(ExtendedKeyUsage::kServerAuth)) usages += "serverAuth";
    if (has(ExtendedKeyUsage::kClientAuth)) usages += usages.empty() ? "clientAuth" : ",clientAuth";
    CITADEL_TRY_VOID(AddConfExtension(cert.get(), &ctx, NID_ext_key_usage, usages));
  }
  CITADEL_TRY_VOID(AddSubjectAltNames(cert.get(), spec));

  if (X509_sign(cert.get(), issuer_key.evp(), EVP_sha256()) <= 0) {
    return MakeOpenSslError(ErrorCode::kCrypto, "signing the certificate");
  }
  return Certificate::FromX509(cert.get());
}

}  // namespace citadel::crypto
