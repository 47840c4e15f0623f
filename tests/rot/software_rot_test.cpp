#include "rot/software/software_rot.hpp"

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/file.hpp"

namespace citadel::rot {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class SoftwareRootOfTrustTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "citadel-rot-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    state_dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(state_dir_); }

  std::unique_ptr<SoftwareRootOfTrust> OpenOrFail() {
    auto rot = SoftwareRootOfTrust::Open(state_dir_);
    EXPECT_TRUE(rot.has_value()) << (rot ? "" : rot.error().message());
    return rot ? std::move(*rot) : nullptr;
  }

  fs::path RotFile(std::string_view name) const { return state_dir_ / "rot" / name; }

  static unsigned ModeOf(const fs::path& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  }

  fs::path state_dir_;
};

MeasurementEvent Event(std::uint32_t reg, std::string name, std::string_view content) {
  return {
      .register_index = reg, .type = "app", .name = std::move(name), .version = "1", .digest = crypto::Sha256(content)};
}

// A manufacturer CA and a leaf for `key`, the way a factory provisions.
struct Manufacturer {
  crypto::PrivateKey ca_key;
  crypto::Certificate ca;

  static Manufacturer Create() {
    auto key = crypto::PrivateKey::GenerateP256();
    EXPECT_TRUE(key.has_value());
    crypto::CertificateSpec spec;
    spec.common_name = "Test Manufacturer CA";
    spec.is_ca = true;
    spec.lifetime = std::chrono::hours(24 * 365);
    auto ca = crypto::IssueCertificate(spec, key->Public(), nullptr, *key);
    EXPECT_TRUE(ca.has_value()) << (ca ? "" : ca.error().message());
    return Manufacturer{std::move(*key), std::move(*ca)};
  }

  crypto::Certificate IssueLeaf(const crypto::PublicKey& device_key, const std::string& device_id) const {
    crypto::CertificateSpec spec;
    spec.common_name = device_id;
    spec.lifetime = std::chrono::hours(24 * 365);
    auto leaf = crypto::IssueCertificate(spec, device_key, &ca, ca_key);
    EXPECT_TRUE(leaf.has_value()) << (leaf ? "" : leaf.error().message());
    return std::move(*leaf);
  }
};

TEST_F(SoftwareRootOfTrustTest, DeviceIdIsSha256OfIdentitySpkiOnDisk) {
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  EXPECT_EQ(rot->Backend(), "software");

  // Recompute from the key file itself, not through the RoT.
  auto pem = ReadFile(RotFile("identity.key"));
  ASSERT_TRUE(pem.has_value());
  EXPECT_THAT(*pem, HasSubstr("-----BEGIN PRIVATE KEY-----"));  // PKCS#8
  auto key = crypto::PrivateKey::FromPem(crypto::SecretBytes(std::move(*pem)));
  ASSERT_TRUE(key.has_value());
  Bytes spki = key->Public().SpkiDer();
  std::string expected = HexEncode(crypto::Sha256(std::span<const std::uint8_t>(spki)));
  EXPECT_EQ(rot->DeviceId(), expected);
  EXPECT_EQ(rot->DeviceId().size(), 64u);
  EXPECT_TRUE(rot->IdentityPublicKey().IsP256());
}

TEST_F(SoftwareRootOfTrustTest, KeysPersistAcrossReopen) {
  auto first = OpenOrFail();
  ASSERT_TRUE(first);
  std::string device_id = first->DeviceId();
  std::string tls_public = first->TlsClientKey().Public().Pem();
  first.reset();

  auto second = OpenOrFail();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->DeviceId(), device_id);
  EXPECT_EQ(second->TlsClientKey().Public().Pem(), tls_public);
  // Identity and TLS keys are distinct keys.
  EXPECT_FALSE(second->TlsClientKey().Public() == second->IdentityPublicKey());

  // A different state directory is a different device.
  auto other_dir = state_dir_ / "other";
  auto other = SoftwareRootOfTrust::Open(other_dir);
  ASSERT_TRUE(other.has_value());
  EXPECT_NE((*other)->DeviceId(), device_id);
}

TEST_F(SoftwareRootOfTrustTest, KeyFilesAreOwnerOnly) {
  ASSERT_TRUE(OpenOrFail());
  EXPECT_EQ(ModeOf(RotFile("identity.key")), 0600u);
  EXPECT_EQ(ModeOf(RotFile("tls.key")), 0600u);
}

TEST_F(SoftwareRootOfTrustTest, PermissiveKeyFileModeIsRefused) {
  ASSERT_TRUE(OpenOrFail());
  for (const char* name : {"identity.key", "tls.key"}) {
    for (unsigned mode : {0644u, 0640u, 0604u, 0660u}) {
      ASSERT_EQ(::chmod(RotFile(name).c_str(), mode), 0);
      auto rot = SoftwareRootOfTrust::Open(state_dir_);
      ASSERT_FALSE(rot.has_value()) << name << " mode " << mode;
      EXPECT_EQ(rot.error().code(), ErrorCode::kPermissionDenied);
      EXPECT_THAT(rot.error().message(), HasSubstr(name));
      EXPECT_THAT(rot.error().message(), HasSubstr("0600"));
    }
    ASSERT_EQ(::chmod(RotFile(name).c_str(), 0600), 0);
  }
  // And it was refused, not repaired: fixing the mode makes it usable again.
  EXPECT_TRUE(OpenOrFail());
}

TEST_F(SoftwareRootOfTrustTest, SymlinkedKeyFileIsRefused) {
  ASSERT_TRUE(OpenOrFail());
  // The link target is 0600, so only the link itself can be the reason.
  auto elsewhere = state_dir_ / "elsewhere.key";
  fs::rename(RotFile("identity.key"), elsewhere);
  fs::create_symlink(elsewhere, RotFile("identity.key"));
  auto rot = SoftwareRootOfTrust::Open(state_dir_);
  ASSERT_FALSE(rot.has_value());
  EXPECT_EQ(rot.error().code(), ErrorCode::kPermissionDenied);
  EXPECT_THAT(rot.error().message(), HasSubstr("symbolic link"));
}

TEST_F(SoftwareRootOfTrustTest, ExtendMatchesReplayOfTheLog) {
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  std::vector<MeasurementEvent> events = {
      {.register_index = 0, .type = "os", .name = "citadel-os", .version = "1.0.0", .digest = crypto::Sha256("os")},
      {.register_index = 1, .type = "runtime", .name = "citadeld", .version = "0.1.0", .digest = crypto::Sha256("rt")},
      Event(3, "app-a", "a"),
      Event(3, "app-b", "b"),
  };
  for (const auto& event : events) ASSERT_TRUE(rot->Extend(event).has_value());

  auto registers = rot->ReadRegisters();
  ASSERT_EQ(registers.size(), kRegisterCount);
  EXPECT_EQ(registers, ReplayLog(rot->MeasurementLog()));
  EXPECT_EQ(rot->MeasurementLog().size(), events.size());
  EXPECT_EQ(registers[0], ExtendRegister(crypto::Sha256Digest{}, EventDigest(events[0])));
  EXPECT_EQ(registers[3],
            ExtendRegister(ExtendRegister(crypto::Sha256Digest{}, EventDigest(events[2])), EventDigest(events[3])));
  EXPECT_EQ(registers[2], crypto::Sha256Digest{});

  // A log that lies about one event does not replay to these registers.
  auto forged = rot->MeasurementLog();
  forged[2].digest[0] ^= 0x01;
  EXPECT_NE(ReplayLog(forged), registers);
}

TEST_F(SoftwareRootOfTrustTest, ExtendRefusesRegisterOutOfRange) {
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  auto result = rot->Extend(Event(kRegisterCount, "x", "x"));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(rot->MeasurementLog().empty());
  EXPECT_EQ(rot->ReadRegisters(), std::vector<crypto::Sha256Digest>(kRegisterCount, crypto::Sha256Digest{}));
}

TEST_F(SoftwareRootOfTrustTest, RegistersStartAtZeroOnEachOpen) {
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  ASSERT_TRUE(rot->Extend(Event(0, "x", "x")).has_value());
  rot.reset();
  rot = OpenOrFail();
  ASSERT_TRUE(rot);
  EXPECT_TRUE(rot->MeasurementLog().empty());
  EXPECT_EQ(rot->ReadRegisters(), std::vector<crypto::Sha256Digest>(kRegisterCount, crypto::Sha256Digest{}));
}

TEST_F(SoftwareRootOfTrustTest, QuoteVerifiesWithIdentityKeyAndBindsNonce) {
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  ASSERT_TRUE(rot->Extend(Event(3, "app", "content")).has_value());
  Bytes nonce = crypto::RandomBytes(32);
  auto quote = rot->CreateQuote(nonce);
  ASSERT_TRUE(quote.has_value()) << quote.error().message();
  EXPECT_EQ(quote->registers, rot->ReadRegisters());
  EXPECT_EQ(quote->nonce, nonce);

  const auto& key = rot->IdentityPublicKey();
  EXPECT_TRUE(key.VerifyDigest(QuoteDigest(quote->registers, nonce), quote->signature));

  Bytes other_nonce = nonce;
  other_nonce[0] ^= 0x80;
  EXPECT_FALSE(key.VerifyDigest(QuoteDigest(quote->registers, other_nonce), quote->signature));

  auto other_registers = quote->registers;
  other_registers[3][0] ^= 0x01;
  EXPECT_FALSE(key.VerifyDigest(QuoteDigest(other_registers, nonce), quote->signature));

  // Not signed by the TLS key.
  EXPECT_FALSE(rot->TlsClientKey().Public().VerifyDigest(QuoteDigest(quote->registers, nonce), quote->signature));

  EXPECT_FALSE(rot->CreateQuote({}).has_value());
}

TEST_F(SoftwareRootOfTrustTest, SignWithIdentityVerifies) {
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  auto digest = crypto::Sha256("message");
  auto signature = rot->SignWithIdentity(digest);
  ASSERT_TRUE(signature.has_value());
  EXPECT_TRUE(rot->IdentityPublicKey().VerifyDigest(digest, *signature));
  EXPECT_FALSE(rot->IdentityPublicKey().VerifyDigest(crypto::Sha256("other"), *signature));
}

TEST_F(SoftwareRootOfTrustTest, CountersAreMonotonicAcrossReopen) {
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  EXPECT_EQ(rot->ReadCounter("tuf.root").value(), 0u);
  EXPECT_EQ(rot->IncrementCounter("tuf.root").value(), 1u);
  EXPECT_EQ(rot->IncrementCounter("tuf.root").value(), 2u);
  EXPECT_EQ(rot->IncrementCounter("os-version").value(), 1u);
  EXPECT_EQ(rot->ReadCounter("tuf.root").value(), 2u);
  rot.reset();

  rot = OpenOrFail();
  ASSERT_TRUE(rot);
  EXPECT_EQ(rot->ReadCounter("tuf.root").value(), 2u);
  EXPECT_EQ(rot->ReadCounter("os-version").value(), 1u);
  EXPECT_EQ(rot->IncrementCounter("tuf.root").value(), 3u);
  EXPECT_EQ(ModeOf(RotFile("counters.json")), 0600u);
}

TEST_F(SoftwareRootOfTrustTest, CounterNamesAreValidated) {
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  EXPECT_FALSE(rot->IncrementCounter("").has_value());
  EXPECT_FALSE(rot->IncrementCounter("a b").has_value());
  EXPECT_FALSE(rot->ReadCounter(std::string(65, 'a')).has_value());
}

TEST_F(SoftwareRootOfTrustTest, CorruptCountersFileIsRefusedNotReset) {
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  ASSERT_EQ(rot->IncrementCounter("tuf.root").value(), 1u);

  for (std::string corrupt :
       {std::string("{\"tuf.root\":"), std::string(""), std::string("[]"), std::string("{\"tuf.root\":-1}"),
        std::string("{\"tuf.root\":1.5}"), std::string("{\"tuf.root\":\"7\"}"), std::string("{\"a\":1,\"a\":2}")}) {
    ASSERT_TRUE(WriteFileAtomic(RotFile("counters.json"), corrupt, 0600).has_value());
    auto reopened = SoftwareRootOfTrust::Open(state_dir_);
    ASSERT_FALSE(reopened.has_value()) << corrupt;
    EXPECT_THAT(reopened.error().message(), HasSubstr("counters.json"));
    // An already-open RoT refuses too rather than reading zero.
    EXPECT_FALSE(rot->ReadCounter("tuf.root").has_value()) << corrupt;
    EXPECT_FALSE(rot->IncrementCounter("tuf.root").has_value()) << corrupt;
    // And the corrupt file was left for the operator, not overwritten.
    EXPECT_EQ(ReadFile(RotFile("counters.json")).value(), corrupt);
  }
}

TEST_F(SoftwareRootOfTrustTest, ManufacturerChainWithForeignLeafIsRefused) {
  auto rot = OpenOrFail();
  ASSERT_TRUE(rot);
  auto manufacturer = Manufacturer::Create();

  auto missing = rot->ManufacturerChain();
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);

  auto foreign_key = crypto::PrivateKey::GenerateP256();
  ASSERT_TRUE(foreign_key.has_value());
  auto foreign_leaf = manufacturer.IssueLeaf(foreign_key->Public(), rot->DeviceId());
  auto refused = rot->StoreManufacturerChain({foreign_leaf, manufacturer.ca});
  ASSERT_FALSE(refused.has_value());
  EXPECT_THAT(refused.error().message(), HasSubstr("identity key"));
  EXPECT_FALSE(fs::exists(RotFile("manufacturer-chain.pem")));

  // The TLS key is not the identity key either.
  auto tls_leaf = manufacturer.IssueLeaf(rot->TlsClientKey().Public(), rot->DeviceId());
  EXPECT_FALSE(rot->StoreManufacturerChain({tls_leaf}).has_value());
  EXPECT_FALSE(rot->StoreManufacturerChain({}).has_value());

  auto leaf = manufacturer.IssueLeaf(rot->IdentityPublicKey(), rot->DeviceId());
  ASSERT_TRUE(rot->StoreManufacturerChain({leaf, manufacturer.ca}).has_value());
  rot.reset();

  rot = OpenOrFail();
  ASSERT_TRUE(rot);
  auto chain = rot->ManufacturerChain();
  ASSERT_TRUE(chain.has_value()) << chain.error().message();
  ASSERT_EQ(chain->size(), 2u);
  EXPECT_EQ((*chain)[0].FingerprintSha256(), leaf.FingerprintSha256());
  EXPECT_EQ((*chain)[1].FingerprintSha256(), manufacturer.ca.FingerprintSha256());

  // A chain file swapped on disk for another device's is refused on read.
  ASSERT_TRUE(WriteFileAtomic(RotFile("manufacturer-chain.pem"), foreign_leaf.Pem(), 0644).has_value());
  EXPECT_FALSE(rot->ManufacturerChain().has_value());
}

}  // namespace
}  // namespace citadel::rot
