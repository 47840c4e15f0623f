#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <set>

#include "crypto/crypto.hpp"

namespace citadel::crypto {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

PrivateKey NewKey() {
  auto key = PrivateKey::GenerateP256();
  EXPECT_TRUE(key.has_value());
  return *std::move(key);
}

// Designated initializers of CertificateSpec trip -Wmissing-field-initializers
// under g++ 12, so specs are built by assignment.
CertificateSpec Spec(std::string common_name) {
  CertificateSpec spec;
  spec.common_name = std::move(common_name);
  return spec;
}

template <typename Customize>
CertificateSpec Spec(std::string common_name, Customize customize) {
  CertificateSpec spec = Spec(std::move(common_name));
  customize(spec);
  return spec;
}

ChainVerification ForPurpose(ExtendedKeyUsage usage) {
  ChainVerification options;
  options.purpose = usage;
  return options;
}

ChainVerification AtTime(TimePoint at) {
  ChainVerification options;
  options.at = at;
  return options;
}

Certificate Issue(const CertificateSpec& spec, const PublicKey& subject, const Certificate* issuer,
                  const PrivateKey& issuer_key) {
  auto cert = IssueCertificate(spec, subject, issuer, issuer_key);
  EXPECT_TRUE(cert.has_value()) << cert.error().message();
  return *std::move(cert);
}

std::string WrapPem(std::string_view label, std::span<const std::uint8_t> der) {
  const std::string body = Base64Encode(der);
  std::string out = "-----BEGIN " + std::string(label) + "-----\n";
  for (std::size_t i = 0; i < body.size(); i += 64) out += body.substr(i, 64) + "\n";
  out += "-----END " + std::string(label) + "-----\n";
  return out;
}

Bytes PemBody(std::string_view pem) {
  std::string body;
  std::size_t start = pem.find('\n') + 1;
  std::size_t end = pem.find("-----END");
  for (char c : pem.substr(start, end - start)) {
    if (c != '\n') body += c;
  }
  auto der = Base64Decode(body);
  EXPECT_TRUE(der.has_value());
  return *der;
}

void ReplaceOnce(Bytes& der, std::string_view from, std::string_view to) {
  ASSERT_EQ(from.size(), to.size());
  auto it = std::search(der.begin(), der.end(), from.begin(), from.end());
  ASSERT_NE(it, der.end());
  std::copy(to.begin(), to.end(), it);
}

// root CA (pathlen 1) -> issuing CA (pathlen 0) -> device leaf (clientAuth)
//                                               -> server leaf (serverAuth)
class ChainTest : public ::testing::Test {
 protected:
  ChainTest()
      : root_key_(NewKey()),
        issuing_key_(NewKey()),
        leaf_key_(NewKey()),
        root_(Issue(Spec("Citadel Root",
                         [](CertificateSpec& s) {
                           s.organization = "Acme";
                           s.lifetime = hours(24 * 365);
                           s.is_ca = true;
                           s.path_length = 1;
                         }),
                    root_key_.Public(), nullptr, root_key_)),
        issuing_(Issue(Spec("Citadel Issuing",
                            [](CertificateSpec& s) {
                              s.organization = "Acme";
                              s.lifetime = hours(24 * 30);
                              s.is_ca = true;
                              s.path_length = 0;
                            }),
                       issuing_key_.Public(), &root_, root_key_)),
        leaf_(Issue(Spec("device-1234",
                         [](CertificateSpec& s) {
                           s.organization = "Acme";
                           s.extended_key_usages = {ExtendedKeyUsage::kClientAuth};
                           s.uri_sans = {"urn:citadel:device:1234"};
                         }),
                    leaf_key_.Public(), &issuing_, issuing_key_)) {}

  PrivateKey root_key_;
  PrivateKey issuing_key_;
  PrivateKey leaf_key_;
  Certificate root_;
  Certificate issuing_;
  Certificate leaf_;
};

TEST_F(ChainTest, ChainVerifies) {
  const Certificate intermediates[] = {issuing_};
  const Certificate roots[] = {root_};
  auto result = VerifyCertificateChain(leaf_, intermediates, roots);
  EXPECT_TRUE(result) << result.error().message();
  result = VerifyCertificateChain(leaf_, intermediates, roots, ForPurpose(ExtendedKeyUsage::kClientAuth));
  EXPECT_TRUE(result) << result.error().message();
  // The issuing CA itself chains to the root.
  EXPECT_TRUE(VerifyCertificateChain(issuing_, {}, roots));
}

TEST_F(ChainTest, MissingIntermediateFails) {
  const Certificate roots[] = {root_};
  auto result = VerifyCertificateChain(leaf_, {}, roots);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kCrypto);
  EXPECT_NE(result.error().message().find("unable to get local issuer certificate"), std::string::npos)
      << result.error().message();
}

TEST_F(ChainTest, WrongRootFails) {
  PrivateKey other_key = NewKey();
  // Same name as the real root, different key: only the signature tells them apart.
  const Certificate other_root = Issue(Spec("Citadel Root",
                                            [](CertificateSpec& s) {
                                              s.organization = "Acme";
                                              s.is_ca = true;
                                            }),
                                       other_key.Public(), nullptr, other_key);
  const Certificate intermediates[] = {issuing_};
  const Certificate roots[] = {other_root};
  auto result = VerifyCertificateChain(leaf_, intermediates, roots);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kCrypto);
  EXPECT_FALSE(VerifyCertificateChain(leaf_, intermediates, {}));
}

TEST_F(ChainTest, ExpiredLeafFails) {
  const TimePoint start = Clock::now() - minutes(5);
  const Certificate short_lived = Issue(Spec("device-short",
                                             [&](CertificateSpec& s) {
                                               s.not_before = start;
                                               s.lifetime = hours(1);
                                             }),
                                        leaf_key_.Public(), &issuing_, issuing_key_);
  const Certificate intermediates[] = {issuing_};
  const Certificate roots[] = {root_};
  EXPECT_TRUE(VerifyCertificateChain(short_lived, intermediates, roots, AtTime(start + minutes(30))));
  auto later = VerifyCertificateChain(short_lived, intermediates, roots, AtTime(start + hours(2)));
  ASSERT_FALSE(later);
  EXPECT_EQ(later.error().code(), ErrorCode::kCrypto);
  EXPECT_NE(later.error().message().find("certificate has expired"), std::string::npos) << later.error().message();

  // Issued already expired, verified at the current time.
  const Certificate expired = Issue(Spec("device-old",
                                         [](CertificateSpec& s) {
                                           s.not_before = Clock::now() - hours(3);
                                           s.lifetime = hours(1);
                                         }),
                                    leaf_key_.Public(), &issuing_, issuing_key_);
  EXPECT_FALSE(VerifyCertificateChain(expired, intermediates, roots));
}

TEST_F(ChainTest, NotYetValidFails) {
  const Certificate intermediates[] = {issuing_};
  const Certificate roots[] = {root_};
  auto result = VerifyCertificateChain(leaf_, intermediates, roots, AtTime(Clock::now() - hours(1)));
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("not yet valid"), std::string::npos) << result.error().message();
}

TEST_F(ChainTest, PurposeIsChecked) {
  const Certificate server = Issue(Spec("server.example",
                                        [](CertificateSpec& s) {
                                          s.extended_key_usages = {ExtendedKeyUsage::kServerAuth};
                                          s.dns_sans = {"server.example"};
                                          s.ip_sans = {"127.0.0.1", "::1"};
                                        }),
                                   leaf_key_.Public(), &issuing_, issuing_key_);
  const Certificate intermediates[] = {issuing_};
  const Certificate roots[] = {root_};
  EXPECT_TRUE(VerifyCertificateChain(server, intermediates, roots, ForPurpose(ExtendedKeyUsage::kServerAuth)));
  auto as_client = VerifyCertificateChain(server, intermediates, roots, ForPurpose(ExtendedKeyUsage::kClientAuth));
  ASSERT_FALSE(as_client);
  EXPECT_EQ(as_client.error().code(), ErrorCode::kCrypto);
  EXPECT_NE(as_client.error().message().find("unsuitable certificate purpose"), std::string::npos)
      << as_client.error().message();
  // And the device (clientAuth-only) certificate is not a server certificate.
  EXPECT_FALSE(VerifyCertificateChain(leaf_, intermediates, roots, ForPurpose(ExtendedKeyUsage::kServerAuth)));
  EXPECT_EQ(server.DnsSans(), std::vector<std::string>{"server.example"});
}

TEST_F(ChainTest, PathLengthIsEnforced) {
  // issuing_ has pathlen 0: a CA under it may not issue.
  PrivateKey sub_key = NewKey();
  const Certificate sub_ca =
      Issue(Spec("Sub CA", [](CertificateSpec& s) { s.is_ca = true; }), sub_key.Public(), &issuing_, issuing_key_);
  const Certificate leaf = Issue(Spec("device-deep"), leaf_key_.Public(), &sub_ca, sub_key);
  const Certificate intermediates[] = {sub_ca, issuing_};
  const Certificate roots[] = {root_};
  auto result = VerifyCertificateChain(leaf, intermediates, roots);
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("path length"), std::string::npos) << result.error().message();
}

TEST_F(ChainTest, TamperedSignatureFails) {
  Bytes der = leaf_.Der();
  der.back() ^= 0x01;  // last byte of the ECDSA s value
  auto tampered = Certificate::FromDer(der);
  ASSERT_TRUE(tampered) << tampered.error().message();
  const Certificate intermediates[] = {issuing_};
  const Certificate roots[] = {root_};
  auto result = VerifyCertificateChain(*tampered, intermediates, roots);
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("signature"), std::string::npos) << result.error().message();

  // A changed subject invalidates the issuer's signature too.
  Bytes renamed = leaf_.Der();
  ReplaceOnce(renamed, "device-1234", "device-9999");
  auto forged = Certificate::FromDer(renamed);
  ASSERT_TRUE(forged);
  EXPECT_EQ(forged->SubjectCommonName(), "device-9999");
  EXPECT_FALSE(VerifyCertificateChain(*forged, intermediates, roots));
}

TEST_F(ChainTest, FieldsReadBack) {
  EXPECT_TRUE(root_.IsCa());
  EXPECT_TRUE(issuing_.IsCa());
  EXPECT_FALSE(leaf_.IsCa());
  EXPECT_EQ(leaf_.UriSans(), std::vector<std::string>{"urn:citadel:device:1234"});
  EXPECT_TRUE(leaf_.DnsSans().empty());
  EXPECT_TRUE(root_.UriSans().empty());
  EXPECT_EQ(leaf_.SubjectCommonName(), "device-1234");
  EXPECT_EQ(leaf_.SubjectOneLine(), "CN=device-1234,O=Acme");
  EXPECT_EQ(leaf_.IssuerOneLine(), issuing_.SubjectOneLine());
  EXPECT_EQ(root_.IssuerOneLine(), root_.SubjectOneLine());
  EXPECT_TRUE(leaf_.SubjectPublicKey() == leaf_key_.Public());
  EXPECT_TRUE(leaf_.SubjectPublicKey().IsP256());
  EXPECT_EQ(leaf_.FingerprintSha256(), HexEncode(Sha256(leaf_.Der())));
  EXPECT_EQ(leaf_.NotAfter() - leaf_.NotBefore(), hours(24));
  EXPECT_LE(leaf_.NotBefore(), Clock::now() - minutes(4));
  EXPECT_GT(leaf_.NotBefore(), Clock::now() - minutes(6));
  EXPECT_EQ(X509_get_version(leaf_.x509()), X509_VERSION_3);
}

TEST_F(ChainTest, RequiredExtensionsArePresentAndCritical) {
  // -1 when absent, else the extension's critical flag.
  const auto critical = [](const Certificate& cert, int nid) {
    const int index = X509_get_ext_by_NID(cert.x509(), nid, -1);
    return index < 0 ? -1 : X509_EXTENSION_get_critical(X509_get_ext(cert.x509(), index));
  };
  for (const Certificate* cert : {&root_, &issuing_, &leaf_}) {
    EXPECT_EQ(critical(*cert, NID_basic_constraints), 1);
    EXPECT_EQ(critical(*cert, NID_key_usage), 1);
    EXPECT_EQ(critical(*cert, NID_subject_key_identifier), 0);
    EXPECT_EQ(critical(*cert, NID_authority_key_identifier), 0);
  }
  EXPECT_EQ(X509_get_key_usage(root_.x509()), static_cast<std::uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_EQ(X509_get_key_usage(leaf_.x509()), static_cast<std::uint32_t>(KU_DIGITAL_SIGNATURE));
  EXPECT_EQ(X509_get_extended_key_usage(leaf_.x509()), static_cast<std::uint32_t>(XKU_SSL_CLIENT));
  EXPECT_EQ(X509_get_pathlen(root_.x509()), 1);
  EXPECT_EQ(X509_get_pathlen(issuing_.x509()), 0);
  // The leaf's authority key id is the issuing CA's subject key id.
  const ASN1_OCTET_STRING* aki = X509_get0_authority_key_id(leaf_.x509());
  const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(issuing_.x509());
  ASSERT_NE(aki, nullptr);
  ASSERT_NE(ski, nullptr);
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(aki, ski), 0);
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(root_.x509()), X509_get0_subject_key_id(root_.x509())), 0);
}

TEST_F(ChainTest, PemAndDerRoundTrip) {
  auto from_pem = Certificate::FromPem(leaf_.Pem());
  ASSERT_TRUE(from_pem) << from_pem.error().message();
  EXPECT_EQ(from_pem->Der(), leaf_.Der());
  auto from_der = Certificate::FromDer(leaf_.Der());
  ASSERT_TRUE(from_der);
  EXPECT_EQ(from_der->FingerprintSha256(), leaf_.FingerprintSha256());
  Bytes trailing = leaf_.Der();
  trailing.push_back(0);
  EXPECT_FALSE(Certificate::FromDer(trailing));
  auto garbage = Certificate::FromPem("not a certificate");
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().code(), ErrorCode::kParse);
}

TEST_F(ChainTest, SerialNumbers) {
  CertificateSpec spec = Spec("fixed", [](CertificateSpec& s) { s.serial_hex = "00A1B2"; });
  EXPECT_EQ(Issue(spec, leaf_key_.Public(), &issuing_, issuing_key_).SerialHex(), "a1b2");
  std::set<std::string> serials;
  for (int i = 0; i < 8; ++i) {
    const std::string serial = Issue(Spec("random"), leaf_key_.Public(), &issuing_, issuing_key_).SerialHex();
    EXPECT_LE(serial.size(), 32U);
    EXPECT_GE(serial.size(), 16U);  // overwhelmingly likely for 127 random bits
    EXPECT_NE(serial.front(), '-');
    serials.insert(serial);
  }
  EXPECT_EQ(serials.size(), 8U);
  for (const char* bad : {"xyz", "0", "-1", "0123456789abcdef0123456789abcdef0123456789"}) {
    spec.serial_hex = bad;
    auto cert = IssueCertificate(spec, leaf_key_.Public(), &issuing_, issuing_key_);
    ASSERT_FALSE(cert) << bad;
    EXPECT_EQ(cert.error().code(), ErrorCode::kInvalidArgument);
  }
}

TEST_F(ChainTest, SanValuesCannotInjectNames) {
  const Certificate cert = Issue(Spec("inject", [](CertificateSpec& s) { s.uri_sans = {"urn:a,DNS:evil.example"}; }),
                                 leaf_key_.Public(), &issuing_, issuing_key_);
  EXPECT_EQ(cert.UriSans(), std::vector<std::string>{"urn:a,DNS:evil.example"});
  EXPECT_TRUE(cert.DnsSans().empty());
}

TEST_F(ChainTest, IssuanceRefusesMisuse) {
  const auto code = [](const Expected<Certificate>& result) {
    return result ? std::optional<ErrorCode>() : result.error().code();
  };
  // A leaf cannot issue.
  EXPECT_EQ(code(IssueCertificate(Spec("x"), leaf_key_.Public(), &leaf_, leaf_key_)), ErrorCode::kInvalidArgument);
  // The issuer key must match the issuer certificate.
  EXPECT_EQ(code(IssueCertificate(Spec("x"), leaf_key_.Public(), &issuing_, root_key_)), ErrorCode::kInvalidArgument);
  // Self-signed: subject and issuer key must be the same key.
  EXPECT_EQ(code(IssueCertificate(Spec("x", [](CertificateSpec& s) { s.is_ca = true; }), leaf_key_.Public(), nullptr,
                                  root_key_)),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(IssueCertificate(Spec(""), leaf_key_.Public(), &issuing_, issuing_key_)), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(IssueCertificate(Spec(std::string(65, 'a')), leaf_key_.Public(), &issuing_, issuing_key_)),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(IssueCertificate(Spec("x", [](CertificateSpec& s) { s.lifetime = seconds(0); }), leaf_key_.Public(),
                                  &issuing_, issuing_key_)),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(IssueCertificate(Spec("x", [](CertificateSpec& s) { s.path_length = 0; }), leaf_key_.Public(),
                                  &issuing_, issuing_key_)),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(code(IssueCertificate(Spec("x", [](CertificateSpec& s) { s.ip_sans = {"not-an-ip"}; }), leaf_key_.Public(),
                                  &issuing_, issuing_key_)),
            ErrorCode::kInvalidArgument);
}

// ------------------------------------------------------------- PEM chains

TEST_F(ChainTest, PemChainRoundTripAndBounds) {
  const std::vector<Certificate> chain{leaf_, issuing_, root_};
  const std::string pem = ToPemChain(chain);
  auto parsed = ParsePemChain(pem);
  ASSERT_TRUE(parsed) << parsed.error().message();
  ASSERT_EQ(parsed->size(), 3U);
  EXPECT_EQ((*parsed)[0].Der(), leaf_.Der());
  EXPECT_EQ((*parsed)[1].Der(), issuing_.Der());
  EXPECT_EQ((*parsed)[2].Der(), root_.Der());

  EXPECT_TRUE(ParsePemChain(pem, 3));
  auto too_many = ParsePemChain(pem, 2);
  ASSERT_FALSE(too_many);
  EXPECT_EQ(too_many.error().code(), ErrorCode::kTooLarge);
}

TEST_F(ChainTest, PemChainRefusesGarbage) {
  for (std::string_view input : {"", "  \n", "hello world", "-----BEGIN CERTIFICATE-----\n"}) {
    auto result = ParsePemChain(input);
    ASSERT_FALSE(result) << input;
    EXPECT_EQ(result.error().code(), ErrorCode::kParse) << input;
  }
  // A non-certificate block, even after a valid one.
  auto key_pem = leaf_key_.ToPem();
  ASSERT_TRUE(key_pem);
  auto with_key = ParsePemChain(leaf_.Pem() + std::string(key_pem->reveal()));
  ASSERT_FALSE(with_key);
  EXPECT_EQ(with_key.error().code(), ErrorCode::kParse);
  EXPECT_EQ(with_key.error().message().find("BEGIN"), std::string::npos);  // key text never echoed
  // Valid base64 but not a certificate.
  auto not_der = ParsePemChain(WrapPem("CERTIFICATE", AsBytes(std::string_view("just some bytes here"))));
  ASSERT_FALSE(not_der);
  EXPECT_EQ(not_der.error().code(), ErrorCode::kParse);
  // Broken base64.
  auto broken = ParsePemChain("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
  ASSERT_FALSE(broken);
  EXPECT_EQ(broken.error().code(), ErrorCode::kParse);
}

// ----------------------------------------------------- Certificate requests

TEST(CertificateRequestTest, CreateAndRoundTrip) {
  PrivateKey key = NewKey();
  auto request = CertificateRequest::Create(key, "device-abcd");
  ASSERT_TRUE(request) << request.error().message();
  EXPECT_TRUE(request->VerifySignature());
  EXPECT_EQ(request->SubjectCommonName(), "device-abcd");
  EXPECT_TRUE(request->SubjectPublicKey() == key.Public());
  const std::string pem = request->Pem();
  EXPECT_TRUE(pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
  auto parsed = CertificateRequest::FromPem(pem);
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_TRUE(parsed->VerifySignature());
  EXPECT_EQ(parsed->SubjectCommonName(), "device-abcd");
  EXPECT_TRUE(parsed->SubjectPublicKey() == key.Public());
  EXPECT_EQ(parsed->Pem(), pem);

  auto garbage = CertificateRequest::FromPem("nope");
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().code(), ErrorCode::kParse);
  EXPECT_FALSE(CertificateRequest::Create(key, ""));
}

TEST(CertificateRequestTest, TamperedRequestFails) {
  PrivateKey key = NewKey();
  auto request = CertificateRequest::Create(key, "device-abcd");
  ASSERT_TRUE(request);
  Bytes der = PemBody(request->Pem());
  ReplaceOnce(der, "device-abcd", "device-zzzz");
  auto tampered = CertificateRequest::FromPem(WrapPem("CERTIFICATE REQUEST", der));
  ASSERT_TRUE(tampered) << tampered.error().message();
  EXPECT_EQ(tampered->SubjectCommonName(), "device-zzzz");
  EXPECT_FALSE(tampered->VerifySignature());
}

TEST(CertificateRequestTest, RequestSignedByAnotherKeyFails) {
  // Proof of possession: a request naming key A but signed with key B
  // (built directly with OpenSSL, which the API cannot do) must not verify.
  PrivateKey claimed = NewKey();
  PrivateKey signer = NewKey();
  X509_REQ* raw = X509_REQ_new();
  ASSERT_NE(raw, nullptr);
  X509_NAME_add_entry_by_NID(X509_REQ_get_subject_name(raw), NID_commonName, MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>("victim"), -1, -1, 0);
  ASSERT_EQ(X509_REQ_set_pubkey(raw, claimed.evp()), 1);
  ASSERT_GT(X509_REQ_sign(raw, signer.evp(), EVP_sha256()), 0);
  BIO* bio = BIO_new(BIO_s_mem());
  ASSERT_EQ(PEM_write_bio_X509_REQ(bio, raw), 1);
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio, &data);
  const std::string pem(data, static_cast<std::size_t>(length));
  BIO_free(bio);
  X509_REQ_free(raw);

  auto request = CertificateRequest::FromPem(pem);
  ASSERT_TRUE(request) << request.error().message();
  EXPECT_TRUE(request->SubjectPublicKey() == claimed.Public());
  EXPECT_FALSE(request->VerifySignature());
}

}  // namespace
}  // namespace citadel::crypto
