// Certificates, PEM chains and chain verification.
#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cctype>
#include <ctime>

#include "crypto/crypto.hpp"
#include "crypto/openssl_util.hpp"

namespace citadel::crypto {

using internal::BioContents;
using internal::MakeOpenSslError;
using internal::ReadBio;

namespace {

// sk_X509_free is a macro, so it cannot be a Free<> argument. Frees only the
// stack: the certificates are borrowed.
struct X509StackDeleter {
  void operator()(STACK_OF(X509) * stack) const { sk_X509_free(stack); }
};

std::shared_ptr<X509> ShareX509(X509* owned) { return {owned, X509Deleter{}}; }

std::string NameCommonName(const X509_NAME* name) {
  if (name == nullptr) return {};
  int index = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (index < 0) return {};
  const ASN1_STRING* value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
  unsigned char* utf8 = nullptr;
  int length = ASN1_STRING_to_UTF8(&utf8, value);
  if (length < 0) {
    ERR_clear_error();
    return {};
  }
  std::string out(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(length));
  OPENSSL_free(utf8);
  return out;
}

std::string NameRfc2253(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || name == nullptr || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) {
    ERR_clear_error();
    return {};
  }
  return BioContents(bio.get());
}

TimePoint FromAsn1Time(const ASN1_TIME* time) {
  std::tm tm{};
  if (time == nullptr || ASN1_TIME_to_tm(time, &tm) != 1) {
    ERR_clear_error();
    return TimePoint{};
  }
  using namespace std::chrono;
  const year_month_day date{year{tm.tm_year + 1900}, month{static_cast<unsigned>(tm.tm_mon + 1)},
                            day{static_cast<unsigned>(tm.tm_mday)}};
  return time_point_cast<Clock::duration>(sys_days{date} + hours{tm.tm_hour} + minutes{tm.tm_min} + seconds{tm.tm_sec});
}

std::vector<std::string> SansOfType(const X509* cert, int type) {
  std::vector<std::string> out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) {
    ERR_clear_error();
    return out;
  }
  GeneralNamesPtr owner(names);
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    int name_type = 0;
    const auto* value = static_cast<const ASN1_STRING*>(GENERAL_NAME_get0_value(name, &name_type));
    if (name_type != type || value == nullptr) continue;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(value)),
                     static_cast<std::size_t>(ASN1_STRING_length(value)));
  }
  return out;
}

// Certificates whose key OpenSSL cannot decode are refused at parse time so
// that SubjectPublicKey() always has a key to return.
Expected<Certificate> RequireKey(X509* owned, std::string_view what) {
  Certificate cert = Certificate::FromX509(owned);
  X509_free(owned);  // FromX509 took its own reference.
  if (X509_get0_pubkey(cert.x509()) == nullptr) {
    return MakeOpenSslError(ErrorCode::kParse, std::string(what) + ": unsupported public key");
  }
  return cert;
}

}  // namespace

// -------------------------------------------------------------- Certificate

Expected<Certificate> Certificate::FromPem(std::string_view pem) {
  BioPtr bio = ReadBio(pem);
  if (!bio) return MakeError(ErrorCode::kTooLarge, "certificate: PEM too large");
  X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
  if (cert == nullptr) return MakeOpenSslError(ErrorCode::kParse, "certificate: not a PEM CERTIFICATE");
  return RequireKey(cert, "certificate");
}

Expected<Certificate> Certificate::FromDer(std::span<const std::uint8_t> der) {
  if (der.empty() || der.size() > static_cast<std::size_t>(LONG_MAX)) {
    return MakeError(ErrorCode::kParse, "certificate: empty or oversized DER");
  }
  const unsigned char* cursor = der.data();
  X509* cert = d2i_X509(nullptr, &cursor, static_cast<long>(der.size()));
  if (cert == nullptr) return MakeOpenSslError(ErrorCode::kParse, "certificate: not a DER X.509 certificate");
  if (cursor != der.data() + der.size()) {
    X509_free(cert);
    return MakeError(ErrorCode::kParse, "certificate: trailing bytes after the certificate");
  }
  return RequireKey(cert, "certificate");
}

Certificate Certificate::FromX509(X509* cert) {
  if (cert != nullptr) X509_up_ref(cert);
  return Certificate(ShareX509(cert));
}

std::string Certificate::Pem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || !cert_ || PEM_write_bio_X509(bio.get(), cert_.get()) != 1) {
    ERR_clear_error();
    return {};
  }
  return BioContents(bio.get());
}

Bytes Certificate::Der() const {
  if (!cert_) return {};
  return internal::EncodeDer(cert_.get(), i2d_X509);
}

std::string Certificate::SubjectCommonName() const {
  return cert_ ? NameCommonName(X509_get_subject_name(cert_.get())) : std::string();
}

std::string Certificate::SubjectOneLine() const {
  return cert_ ? NameRfc2253(X509_get_subject_name(cert_.get())) : std::string();
}

std::string Certificate::IssuerOneLine() const {
  return cert_ ? NameRfc2253(X509_get_issuer_name(cert_.get())) : std::string();
}

std::string Certificate::SerialHex() const {
  if (!cert_) return {};
  BignumPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert_.get()), nullptr));
  if (!serial) {
    ERR_clear_error();
    return {};
  }
  char* hex = BN_bn2hex(serial.get());
  if (hex == nullptr) {
    ERR_clear_error();
    return {};
  }
  std::string out(hex);
  OPENSSL_free(hex);
  const bool negative = !out.empty() && out.front() == '-';
  std::string digits = negative ? out.substr(1) : out;
  const auto first = digits.find_first_not_of('0');
  digits = first == std::string::npos ? "0" : digits.substr(first);
  std::transform(digits.begin(), digits.end(), digits.begin(),
                 [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); });
  return negative ? "-" + digits : digits;
}

TimePoint Certificate::NotBefore() const {
  return cert_ ? FromAsn1Time(X509_get0_notBefore(cert_.get())) : TimePoint{};
}

TimePoint Certificate::NotAfter() const { return cert_ ? FromAsn1Time(X509_get0_notAfter(cert_.get())) : TimePoint{}; }

PublicKey Certificate::SubjectPublicKey() const {
  return PublicKey::FromEvp(cert_ ? X509_get0_pubkey(cert_.get()) : nullptr);
}

std::vector<std::string> Certificate::UriSans() const {
  return cert_ ? SansOfType(cert_.get(), GEN_URI) : std::vector<std::string>{};
}

std::vector<std::string> Certificate::DnsSans() const {
  return cert_ ? SansOfType(cert_.get(), GEN_DNS) : std::vector<std::string>{};
}

bool Certificate::IsCa() const {
  if (!cert_) return false;
  // Only an explicit basicConstraints cA=TRUE counts: no v1 or Netscape
  // heuristics.
  const std::uint32_t flags = X509_get_extension_flags(cert_.get());
  ERR_clear_error();
  return (flags & EXFLAG_BCONS) != 0 && (flags & EXFLAG_CA) != 0 && (flags & EXFLAG_INVALID) == 0;
}

std::string Certificate::FingerprintSha256() const {
  if (!cert_) return {};
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (X509_digest(cert_.get(), EVP_sha256(), digest, &length) != 1) {
    ERR_clear_error();
    return {};
  }
  return HexEncode(std::span<const std::uint8_t>(digest, length));
}

// ---------------------------------------------------------------- PEM chains

Expected<std::vector<Certificate>> ParsePemChain(std::string_view pem, std::size_t max_certificates) {
  if (pem.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return MakeError(ErrorCode::kParse, "certificate chain: empty input");
  }
  BioPtr bio = ReadBio(pem);
  if (!bio) return MakeError(ErrorCode::kTooLarge, "certificate chain: PEM too large");

  std::vector<Certificate> chain;
  ERR_clear_error();
  while (true) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long length = 0;
    if (PEM_read_bio(bio.get(), &name, &header, &data, &length) != 1) {
      const unsigned long error = ERR_peek_last_error();
      if (ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE) {
        ERR_clear_error();
        break;  // no further block
      }
      return MakeOpenSslError(ErrorCode::kParse,
                              "certificate chain: block " + std::to_string(chain.size() + 1) + " is malformed PEM");
    }
    const std::string block_name(name);
    OPENSSL_free(name);
    OPENSSL_free(header);
    const Bytes der(data, data + length);
    OPENSSL_free(data);

    const std::string where = "certificate chain: block " + std::to_string(chain.size() + 1);
    if (block_name != PEM_STRING_X509) {
      std::string message = where;
      message += " is a '";
      message += block_name;
      message += "', not a CERTIFICATE";
      return MakeError(ErrorCode::kParse, std::move(message));
    }
    if (chain.size() == max_certificates) {
      return MakeError(ErrorCode::kTooLarge,
                       "certificate chain: more than " + std::to_string(max_certificates) + " certificates");
    }
    auto cert = Certificate::FromDer(der);
    if (!cert) return WrapError(cert.error(), where);
    chain.push_back(*std::move(cert));
  }
  if (chain.empty()) {
    return MakeError(ErrorCode::kParse, "certificate chain: no PEM CERTIFICATE block found");
  }
  return chain;
}

std::string ToPemChain(std::span<const Certificate> chain) {
  std::string out;
  for (const Certificate& cert : chain) out += cert.Pem();
  return out;
}

// --------------------------------------------------------------- Verification

Expected<void> VerifyCertificateChain(const Certificate& leaf, std::span<const Certificate> intermediates,
                                      std::span<const Certificate> roots, const ChainVerification& options) {
  if (leaf.x509() == nullptr) return MakeError(ErrorCode::kInvalidArgument, "verifying: no leaf certificate");
  X509StorePtr store(X509_STORE_new());
  if (!store) return MakeOpenSslError(ErrorCode::kInternal, "verifying: X509_STORE_new");
  for (const Certificate& root : roots) {
    if (root.x509() == nullptr || X509_STORE_add_cert(store.get(), root.x509()) != 1) {
      // Adding the same root twice is harmless and reported as success.
      return MakeOpenSslError(ErrorCode::kInternal, "verifying: adding a trusted root");
    }
  }
  std::unique_ptr<STACK_OF(X509), X509StackDeleter> untrusted(sk_X509_new_null());
  if (!untrusted) return MakeOpenSslError(ErrorCode::kInternal, "verifying: sk_X509_new_null");
  for (const Certificate& intermediate : intermediates) {
    if (intermediate.x509() == nullptr || sk_X509_push(untrusted.get(), intermediate.x509()) <= 0) {
      return MakeOpenSslError(ErrorCode::kInternal, "verifying: collecting intermediates");
    }
  }

  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), leaf.x509(), untrusted.get()) != 1) {
    return MakeOpenSslError(ErrorCode::kInternal, "verifying: X509_STORE_CTX_init");
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_X509_STRICT);
  if (options.at) X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(ToUnixSeconds(*options.at)));
  if (options.purpose) {
    const int purpose =
        *options.purpose == ExtendedKeyUsage::kServerAuth ? X509_PURPOSE_SSL_SERVER : X509_PURPOSE_SSL_CLIENT;
    if (X509_VERIFY_PARAM_set_purpose(param, purpose) != 1) {
      return MakeOpenSslError(ErrorCode::kInternal, "verifying: setting the purpose");
    }
  }

  const int verified = X509_verify_cert(ctx.get());
  if (verified == 1) {
    ERR_clear_error();
    return kOk;
  }
  const int error = X509_STORE_CTX_get_error(ctx.get());
  ERR_clear_error();
  std::string message = "certificate chain does not verify: ";
  message += X509_verify_cert_error_string(error);
  message += " (depth " + std::to_string(X509_STORE_CTX_get_error_depth(ctx.get())) + ")";
  return MakeError(ErrorCode::kCrypto, std::move(message));
}

}  // namespace citadel::crypto
