// CertificateRequest: PKCS#10 with proof of possession.
#include <openssl/err.h>
#include <openssl/pem.h>

#include "crypto/crypto.hpp"
#include "crypto/openssl_util.hpp"

namespace citadel::crypto {

using internal::BioContents;
using internal::MakeOpenSslError;

namespace {
std::shared_ptr<X509_REQ> ShareReq(X509_REQ* owned) { return {owned, X509ReqDeleter{}}; }
}  // namespace

Expected<CertificateRequest> CertificateRequest::Create(const PrivateKey& key, std::string_view common_name) {
  if (key.evp() == nullptr) return MakeError(ErrorCode::kInvalidArgument, "certificate request: no key");
  if (common_name.empty()) return MakeError(ErrorCode::kInvalidArgument, "certificate request: empty common name");
  if (common_name.size() > 64) {
    return MakeError(ErrorCode::kInvalidArgument, "certificate request: common name longer than 64 characters");
  }
  auto req = ShareReq(X509_REQ_new());
  if (!req || X509_REQ_set_version(req.get(), X509_REQ_VERSION_1) != 1) {
    return MakeOpenSslError(ErrorCode::kInternal, "certificate request: X509_REQ_new");
  }
  X509_NAME* subject = X509_REQ_get_subject_name(req.get());
  if (X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(common_name.data()),
                                 static_cast<int>(common_name.size()), -1, 0) != 1) {
    return MakeOpenSslError(ErrorCode::kInvalidArgument, "certificate request: invalid common name");
  }
  if (X509_REQ_set_pubkey(req.get(), key.evp()) != 1) {
    return MakeOpenSslError(ErrorCode::kCrypto, "certificate request: setting the public key");
  }
  if (X509_REQ_sign(req.get(), key.evp(), EVP_sha256()) <= 0) {
    return MakeOpenSslError(ErrorCode::kCrypto, "certificate request: signing");
  }
  return CertificateRequest(std::move(req));
}

Expected<CertificateRequest> CertificateRequest::FromPem(std::string_view pem) {
  BioPtr bio = internal::ReadBio(pem);
  if (!bio) return MakeError(ErrorCode::kTooLarge, "certificate request: PEM too large");
  X509_REQ* req = PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr);
  if (req == nullptr) {
    return MakeOpenSslError(ErrorCode::kParse, "certificate request: not a PEM CERTIFICATE REQUEST");
  }
  auto shared = ShareReq(req);
  if (X509_REQ_get0_pubkey(req) == nullptr) {
    return MakeOpenSslError(ErrorCode::kParse, "certificate request: unsupported public key");
  }
  return CertificateRequest(std::move(shared));
}

std::string CertificateRequest::Pem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || !req_ || PEM_write_bio_X509_REQ(bio.get(), req_.get()) != 1) {
    ERR_clear_error();
    return {};
  }
  return BioContents(bio.get());
}

PublicKey CertificateRequest::SubjectPublicKey() const {
  return PublicKey::FromEvp(req_ ? X509_REQ_get0_pubkey(req_.get()) : nullptr);
}

std::string CertificateRequest::SubjectCommonName() const {
  if (!req_) return {};
  const X509_NAME* name = X509_REQ_get_subject_name(req_.get());
  const int index = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (index < 0) return {};
  unsigned char* utf8 = nullptr;
  const int length = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index)));
  if (length < 0) {
    ERR_clear_error();
    return {};
  }
  std::string out(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(length));
  OPENSSL_free(utf8);
  return out;
}

bool CertificateRequest::VerifySignature() const {
  if (!req_) return false;
  EVP_PKEY* key = X509_REQ_get0_pubkey(req_.get());
  const bool ok = key != nullptr && X509_REQ_verify(req_.get(), key) == 1;
  ERR_clear_error();
  return ok;
}

}  // namespace citadel::crypto
