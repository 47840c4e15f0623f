#include "device/measurement.hpp"

#include <openssl/evp.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <vector>

#include "common/encoding.hpp"
#include "common/file.hpp"

#ifndef CITADEL_VERSION
#error "CITADEL_VERSION must be defined by the build"
#endif

namespace citadel::device {
namespace {

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

// Device configuration documents are small; anything larger is a mistake.
constexpr std::size_t kMaxConfigBytes = 1u << 20;

}  // namespace

std::string_view RuntimeVersion() { return CITADEL_VERSION; }

Expected<crypto::Sha256Digest> Sha256File(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    auto code = errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo;
    return MakeError(code, "cannot open " + path.string() + ": " + std::strerror(errno));
  }
  std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return MakeError(ErrorCode::kCrypto, "cannot initialise SHA-256");
  }
  std::vector<char> buffer(1u << 16);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    auto count = in.gcount();
    if (count > 0 && EVP_DigestUpdate(ctx.get(), buffer.data(), static_cast<std::size_t>(count)) != 1) {
      return MakeError(ErrorCode::kCrypto, "SHA-256 update failed");
    }
  }
  if (in.bad()) return MakeError(ErrorCode::kIo, "cannot read " + path.string());
  crypto::Sha256Digest digest{};
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(ctx.get(), digest.data(), &length) != 1 || length != digest.size()) {
    return MakeError(ErrorCode::kCrypto, "SHA-256 final failed");
  }
  return digest;
}

Json EffectiveConfigToJson(const EffectiveConfig& config) {
  return Json{
      {"rot", config.rot_backend},
      {"server", config.server_url},
      {"server_ca_sha256", config.server_ca_sha256},
      {"os_name", config.os_name},
      {"os_version", config.os_version},
      {"os_image", config.os_image},
      {"check_in_interval_seconds", config.check_in_interval.count()},
      {"unclaimed_retry_seconds", config.unclaimed_retry.count()},
      {"max_backoff_seconds", config.max_backoff.count()},
  };
}

Expected<crypto::Sha256Digest> ConfigDigest(const Json& config) {
  auto canonical = CanonicalJson(config);
  if (!canonical) return WrapError(canonical.error(), "canonicalising the device configuration");
  return crypto::Sha256(*canonical);
}

Expected<crypto::Sha256Digest> ConfigFileDigest(const std::filesystem::path& path) {
  auto text = ReadFile(path, kMaxConfigBytes);
  if (!text) return WrapError(text.error(), "reading device configuration");
  auto parsed = ParseJsonStrict(*text);
  if (!parsed) return WrapError(parsed.error(), "parsing device configuration " + path.string());
  auto digest = ConfigDigest(*parsed);
  if (!digest) return WrapError(digest.error(), path.string());
  return digest;
}

Expected<std::vector<rot::MeasurementEvent>> BootMeasurements(const MeasurementInputs& inputs) {
  std::vector<rot::MeasurementEvent> events;

  const auto& os_source = inputs.os_image.empty() ? inputs.os_release_path : inputs.os_image;
  auto os_digest = Sha256File(os_source);
  if (!os_digest) return WrapError(os_digest.error(), "measuring the OS");
  events.push_back(
      {static_cast<std::uint32_t>(rot::Register::kOs), "os", inputs.os_name, inputs.os_version, *os_digest});

  auto runtime_digest = Sha256File(inputs.runtime_binary);
  if (!runtime_digest) return WrapError(runtime_digest.error(), "measuring the runtime");
  events.push_back({static_cast<std::uint32_t>(rot::Register::kRuntime), "runtime", std::string(kRuntimeName),
                    std::string(RuntimeVersion()), *runtime_digest});

  events.push_back({static_cast<std::uint32_t>(rot::Register::kConfig), "config", std::string(kConfigName), "",
                    inputs.config_digest});
  return events;
}

Expected<void> MeasureBoot(rot::RootOfTrust& rot, const MeasurementInputs& inputs) {
  CITADEL_TRY(auto events, BootMeasurements(inputs));
  for (const auto& event : events) {
    auto extended = rot.Extend(event);
    if (!extended) return WrapError(extended.error(), "extending register " + std::to_string(event.register_index));
  }
  return kOk;
}

}  // namespace citadel::device
