#include "cli/manufacturer.hpp"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include "common/file.hpp"
#include "support/temp_dir.hpp"

namespace citadel::cli {
namespace {

using citadel::testing::TempDir;

TEST(ManufacturerCaTest, CreatesACaTheCryptoApiVerifies) {
  TempDir dir;
  auto created = CreateManufacturerCa({dir.path() / "mfg", "Acme Dev Manufacturer", false});
  ASSERT_TRUE(created.has_value()) << created.error().message();

  auto pem = ReadFile(dir.path() / "mfg" / "manufacturer-ca.pem");
  ASSERT_TRUE(pem.has_value());
  auto ca = crypto::Certificate::FromPem(*pem);
  ASSERT_TRUE(ca.has_value());
  EXPECT_TRUE(ca->IsCa());
  EXPECT_EQ(ca->SubjectCommonName(), "Acme Dev Manufacturer");
  EXPECT_TRUE(ca->SubjectPublicKey().IsP256());
  auto years = std::chrono::duration_cast<std::chrono::hours>(ca->NotAfter() - ca->NotBefore()).count() / (24 * 365);
  EXPECT_GE(years, 20);
  EXPECT_LT(years, 21);

  // Self-signed root: verifies against itself.
  std::vector<crypto::Certificate> roots = {*ca};
  auto self = crypto::VerifyCertificateChain(*ca, {}, roots);
  EXPECT_TRUE(self.has_value()) << self.error().message();

  // The key file is the CA's key (PKCS#8, 0600) and can issue a device
  // identity certificate that chains to the CA.
  auto key_path = dir.path() / "mfg" / "manufacturer-ca.key";
  struct stat info {};
  ASSERT_EQ(::stat(key_path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  auto key_pem = ReadFile(key_path);
  ASSERT_TRUE(key_pem.has_value());
  EXPECT_NE(key_pem->find("BEGIN PRIVATE KEY"), std::string::npos);
  auto key = crypto::PrivateKey::FromPem(crypto::SecretBytes(std::move(*key_pem)));
  ASSERT_TRUE(key.has_value());
  EXPECT_TRUE(key->Public() == ca->SubjectPublicKey());

  auto device_key = crypto::PrivateKey::GenerateP256();
  ASSERT_TRUE(device_key.has_value());
  crypto::CertificateSpec spec;
  spec.common_name = crypto::Sha256Hex(AsText(device_key->Public().SpkiDer()));
  spec.lifetime = std::chrono::hours(24 * 365);
  auto device = crypto::IssueCertificate(spec, device_key->Public(), &*ca, *key);
  ASSERT_TRUE(device.has_value()) << device.error().message();
  auto chained = crypto::VerifyCertificateChain(*device, {}, roots);
  EXPECT_TRUE(chained.has_value()) << chained.error().message();

  // A different CA does not vouch for it.
  TempDir other_dir;
  auto other = CreateManufacturerCa({other_dir.path(), "Other", false});
  ASSERT_TRUE(other.has_value());
  std::vector<crypto::Certificate> other_roots = {other->certificate};
  EXPECT_FALSE(crypto::VerifyCertificateChain(*device, {}, other_roots).has_value());
}

TEST(ManufacturerCaTest, RefusesToOverwriteWithoutForce) {
  TempDir dir;
  auto first = CreateManufacturerCa({dir.path(), kDefaultManufacturerName, false});
  ASSERT_TRUE(first.has_value());
  auto pem_before = ReadFile(dir.path() / "manufacturer-ca.pem");
  auto key_before = ReadFile(dir.path() / "manufacturer-ca.key");

  auto again = CreateManufacturerCa({dir.path(), kDefaultManufacturerName, false});
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), ErrorCode::kAlreadyExists);
  EXPECT_EQ(*ReadFile(dir.path() / "manufacturer-ca.pem"), *pem_before);
  EXPECT_EQ(*ReadFile(dir.path() / "manufacturer-ca.key"), *key_before);

  // A lone key file (e.g. the certificate was deleted) also blocks.
  std::filesystem::remove(dir.path() / "manufacturer-ca.pem");
  EXPECT_FALSE(CreateManufacturerCa({dir.path(), kDefaultManufacturerName, false}).has_value());

  auto forced = CreateManufacturerCa({dir.path(), kDefaultManufacturerName, true});
  ASSERT_TRUE(forced.has_value());
  EXPECT_NE(*ReadFile(dir.path() / "manufacturer-ca.key"), *key_before);
}

TEST(ManufacturerCaTest, LoadChecksTheKeyBelongsToTheCertificate) {
  TempDir dir;
  TempDir other;
  ASSERT_TRUE(CreateManufacturerCa({dir.path(), kDefaultManufacturerName, false}).has_value());
  ASSERT_TRUE(CreateManufacturerCa({other.path(), kDefaultManufacturerName, false}).has_value());
  auto loaded = LoadManufacturerCa(dir.path());
  ASSERT_TRUE(loaded.has_value()) << loaded.error().message();
  EXPECT_EQ(loaded->certificate.SubjectCommonName(), kDefaultManufacturerName);

  std::filesystem::copy_file(other.path() / "manufacturer-ca.key", dir.path() / "manufacturer-ca.key",
                             std::filesystem::copy_options::overwrite_existing);
  auto mismatched = LoadManufacturerCa(dir.path());
  ASSERT_FALSE(mismatched.has_value());
  EXPECT_EQ(mismatched.error().code(), ErrorCode::kCrypto);

  auto missing = LoadManufacturerCa(dir.path() / "nothing-here");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace citadel::cli
