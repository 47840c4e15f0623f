#include "device/measurement.hpp"

#include <gtest/gtest.h>

#include "common/encoding.hpp"
#include "common/file.hpp"
#include "device/commands.hpp"
#include "rot/software/software_rot.hpp"
#include "support/temp_dir.hpp"

namespace citadel::device {
namespace {

RunSettings SampleSettings() {
  RunSettings settings;
  settings.state_dir = "/var/lib/citadel";
  settings.server_url = "https://127.0.0.1:8443";
  settings.server_ca_path = "/etc/citadel/service-ca.pem";
  settings.os_name = "citadel-os";
  settings.os_version = "1.0.0";
  settings.check_in_interval = std::chrono::seconds(60);
  settings.unclaimed_retry = std::chrono::seconds(60);
  settings.max_backoff = std::chrono::seconds(60);
  return settings;
}

crypto::Sha256Digest EffectiveDigest(const RunSettings& settings, std::string_view ca_pem = "CA") {
  auto digest = ConfigDigest(EffectiveConfigToJson(MakeEffectiveConfig(settings, ca_pem)));
  EXPECT_TRUE(digest) << digest.error().message();
  return digest.value_or(crypto::Sha256Digest{});
}

TEST(ConfigMeasurementTest, SameConfigurationSameDigest) {
  EXPECT_EQ(EffectiveDigest(SampleSettings()), EffectiveDigest(SampleSettings()));
}

TEST(ConfigMeasurementTest, DigestIsOfTheCanonicalJson) {
  auto json = EffectiveConfigToJson(MakeEffectiveConfig(SampleSettings(), "CA"));
  auto canonical = CanonicalJson(json);
  ASSERT_TRUE(canonical);
  EXPECT_EQ(EffectiveDigest(SampleSettings()), crypto::Sha256(*canonical));
  // The pinned CA is measured by fingerprint, not by path.
  EXPECT_EQ(json["server_ca_sha256"], crypto::Sha256Hex("CA"));
}

TEST(ConfigMeasurementTest, EverySecurityRelevantSettingChangesTheDigest) {
  auto base = EffectiveDigest(SampleSettings());
  auto changed = [&](auto mutate) {
    auto settings = SampleSettings();
    mutate(settings);
    return EffectiveDigest(settings);
  };
  EXPECT_NE(base, changed([](RunSettings& s) { s.server_url = "https://10.0.0.1:8443"; }));
  EXPECT_NE(base, changed([](RunSettings& s) { s.os_version = "1.0.1"; }));
  EXPECT_NE(base, changed([](RunSettings& s) { s.os_image = "/boot/os.img"; }));
  EXPECT_NE(base, changed([](RunSettings& s) { s.check_in_interval = std::chrono::seconds(30); }));
  EXPECT_NE(base, changed([](RunSettings& s) { s.backend = RotBackend::kTpm2; }));
  EXPECT_NE(base, EffectiveDigest(SampleSettings(), "another CA"));
  // Not part of the measured configuration: where state lives and --once.
  EXPECT_EQ(base, changed([](RunSettings& s) { s.state_dir = "/tmp/elsewhere"; }));
  EXPECT_EQ(base, changed([](RunSettings& s) { s.once = true; }));
}

TEST(ConfigMeasurementTest, ConfigFileDigestIgnoresFormattingButNotContent) {
  testing::TempDir dir;
  auto a = dir.path() / "a.json";
  auto b = dir.path() / "b.json";
  auto c = dir.path() / "c.json";
  ASSERT_TRUE(WriteFileAtomic(a, R"({"mqtt":{"host":"broker","port":8883},"telemetry":true})"));
  ASSERT_TRUE(WriteFileAtomic(b, "{\n  \"telemetry\": true,\n  \"mqtt\": {\"port\": 8883, \"host\": \"broker\"}\n}\n"));
  ASSERT_TRUE(WriteFileAtomic(c, R"({"mqtt":{"host":"broker","port":1883},"telemetry":true})"));
  auto da = ConfigFileDigest(a), db = ConfigFileDigest(b), dc = ConfigFileDigest(c);
  ASSERT_TRUE(da && db && dc);
  EXPECT_EQ(*da, *db);
  EXPECT_NE(*da, *dc);
  auto expected = CanonicalJson(*ParseJsonStrict(R"({"mqtt":{"host":"broker","port":8883},"telemetry":true})"));
  EXPECT_EQ(*da, crypto::Sha256(*expected));
}

TEST(ConfigMeasurementTest, ConfigFileMustBeStrictJson) {
  testing::TempDir dir;
  auto duplicate = dir.path() / "dup.json";
  ASSERT_TRUE(WriteFileAtomic(duplicate, R"({"a":1,"a":2})"));
  EXPECT_FALSE(ConfigFileDigest(duplicate));
  auto floats = dir.path() / "float.json";
  ASSERT_TRUE(WriteFileAtomic(floats, R"({"a":1.5})"));
  EXPECT_FALSE(ConfigFileDigest(floats));
  EXPECT_FALSE(ConfigFileDigest(dir.path() / "missing.json"));
}

TEST(Sha256FileTest, MatchesInMemoryHashAcrossChunkBoundaries) {
  testing::TempDir dir;
  std::string data(200'000, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31 % 251);
  ASSERT_TRUE(WriteFileAtomic(dir.path() / "image", data));
  auto digest = Sha256File(dir.path() / "image");
  ASSERT_TRUE(digest);
  EXPECT_EQ(*digest, crypto::Sha256(data));
  auto missing = Sha256File(dir.path() / "missing");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
}

TEST(BootMeasurementTest, EventsDescribeOsRuntimeAndConfig) {
  testing::TempDir dir;
  ASSERT_TRUE(WriteFileAtomic(dir.path() / "os.img", "os image"));
  ASSERT_TRUE(WriteFileAtomic(dir.path() / "citadeld", "runtime binary"));
  MeasurementInputs inputs;
  inputs.os_name = "citadel-os";
  inputs.os_version = "2.1.0";
  inputs.os_image = dir.path() / "os.img";
  inputs.runtime_binary = dir.path() / "citadeld";
  inputs.config_digest = crypto::Sha256("config");
  auto events = BootMeasurements(inputs);
  ASSERT_TRUE(events) << events.error().message();
  ASSERT_EQ(events->size(), 3u);
  const auto& os = (*events)[0];
  EXPECT_EQ(os.register_index, 0u);
  EXPECT_EQ(os.type, "os");
  EXPECT_EQ(os.name, "citadel-os");
  EXPECT_EQ(os.version, "2.1.0");
  EXPECT_EQ(os.digest, crypto::Sha256("os image"));
  const auto& runtime = (*events)[1];
  EXPECT_EQ(runtime.register_index, 1u);
  EXPECT_EQ(runtime.type, "runtime");
  EXPECT_EQ(runtime.name, "citadeld");
  EXPECT_EQ(runtime.version, "0.1.0");
  EXPECT_EQ(runtime.digest, crypto::Sha256("runtime binary"));
  const auto& config = (*events)[2];
  EXPECT_EQ(config.register_index, 2u);
  EXPECT_EQ(config.type, "config");
  EXPECT_EQ(config.name, "device-config");
  EXPECT_EQ(config.version, "");
  EXPECT_EQ(config.digest, crypto::Sha256("config"));
}

TEST(BootMeasurementTest, WithoutAnImageMeasuresOsRelease) {
  testing::TempDir dir;
  ASSERT_TRUE(WriteFileAtomic(dir.path() / "os-release", "ID=citadel\n"));
  MeasurementInputs inputs;
  inputs.os_release_path = dir.path() / "os-release";
  auto events = BootMeasurements(inputs);
  ASSERT_TRUE(events) << events.error().message();
  EXPECT_EQ((*events)[0].digest, crypto::Sha256("ID=citadel\n"));
  // The default runtime binary is this process's own executable.
  auto self = Sha256File("/proc/self/exe");
  ASSERT_TRUE(self);
  EXPECT_EQ((*events)[1].digest, *self);
}

TEST(BootMeasurementTest, MeasureBootExtendsTheRegistersTheLogReplaysTo) {
  testing::TempDir dir;
  ASSERT_TRUE(WriteFileAtomic(dir.path() / "os-release", "ID=citadel\n"));
  auto rot = rot::SoftwareRootOfTrust::Open(dir.path() / "state");
  ASSERT_TRUE(rot) << rot.error().message();
  MeasurementInputs inputs;
  inputs.os_release_path = dir.path() / "os-release";
  inputs.config_digest = crypto::Sha256("config");
  ASSERT_TRUE(MeasureBoot(**rot, inputs));
  auto log = (*rot)->MeasurementLog();
  ASSERT_EQ(log.size(), 3u);
  auto registers = (*rot)->ReadRegisters();
  EXPECT_EQ(registers, rot::ReplayLog(log));
  for (std::uint32_t r = 0; r < 3; ++r) EXPECT_NE(registers[r], crypto::Sha256Digest{}) << r;
  for (std::uint32_t r = 3; r < rot::kRegisterCount; ++r) EXPECT_EQ(registers[r], crypto::Sha256Digest{}) << r;
}

}  // namespace
}  // namespace citadel::device
