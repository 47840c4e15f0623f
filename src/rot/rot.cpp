#include "rot/rot.hpp"

#include <algorithm>
#include <cstdlib>

#include "common/canonical_json.hpp"
#include "common/log.hpp"

namespace citadel::rot {
namespace {

// The documents hashed here hold only strings and arrays of strings, which
// always have a canonical form; a failure is a broken invariant, and hashing
// anything else instead would let two different events share a digest.
std::string CanonicalOrDie(const Json& value) {
  auto canonical = CanonicalJson(value);
  if (!canonical) {
    log::Error("canonical JSON of a measurement document failed", {{"error", canonical.error().message()}});
    std::abort();
  }
  return std::move(*canonical);
}

}  // namespace

Expected<void> CheckCounterName(std::string_view name) {
  constexpr std::size_t kMaxCounterNameLength = 64;
  bool valid =
      !name.empty() && name.size() <= kMaxCounterNameLength && std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
               c == '-';
      });
  if (!valid) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "counter name \"" + std::string(name) + "\" must be 1-64 characters of [A-Za-z0-9._-]");
  }
  return kOk;
}

crypto::Sha256Digest EventDigest(const MeasurementEvent& event) {
  Json document = {
      {"digest", HexEncode(event.digest)},
      {"name", event.name},
      {"type", event.type},
      {"version", event.version},
  };
  return crypto::Sha256(CanonicalOrDie(document));
}

crypto::Sha256Digest ExtendRegister(const crypto::Sha256Digest& current, const crypto::Sha256Digest& event_digest) {
  std::array<std::uint8_t, 64> input{};
  std::copy(current.begin(), current.end(), input.begin());
  std::copy(event_digest.begin(), event_digest.end(), input.begin() + 32);
  return crypto::Sha256(std::span<const std::uint8_t>(input));
}

std::vector<crypto::Sha256Digest> ReplayLog(const std::vector<MeasurementEvent>& log) {
  std::vector<crypto::Sha256Digest> registers(kRegisterCount, crypto::Sha256Digest{});
  for (const auto& event : log) {
    // RootOfTrust::Extend and the evidence parser refuse such events, so a
    // log holding one never reaches an appraiser.
    if (event.register_index >= kRegisterCount) continue;
    auto& reg = registers[event.register_index];
    reg = ExtendRegister(reg, EventDigest(event));
  }
  return registers;
}

crypto::Sha256Digest QuoteDigest(const std::vector<crypto::Sha256Digest>& registers,
                                 std::span<const std::uint8_t> nonce) {
  Json hex_registers = Json::array();
  for (const auto& reg : registers) hex_registers.push_back(HexEncode(reg));
  Json document = {{"nonce", HexEncode(nonce)}, {"registers", std::move(hex_registers)}};
  return crypto::Sha256(CanonicalOrDie(document));
}

std::string RootOfTrust::DeviceId() const {
  Bytes spki = IdentityPublicKey().SpkiDer();
  return HexEncode(crypto::Sha256(std::span<const std::uint8_t>(spki)));
}

}  // namespace citadel::rot
