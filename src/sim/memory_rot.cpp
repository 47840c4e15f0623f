#include "sim/memory_rot.hpp"

#include <utility>

namespace citadel::sim {

MemoryRootOfTrust::MemoryRootOfTrust(crypto::PrivateKey identity, crypto::PrivateKey tls)
    : identity_key_(std::move(identity)),
      identity_public_(identity_key_.Public()),
      tls_key_(std::move(tls)),
      registers_(rot::kRegisterCount, crypto::Sha256Digest{}) {}

Expected<std::unique_ptr<MemoryRootOfTrust>> MemoryRootOfTrust::Generate() {
  CITADEL_TRY(auto identity, crypto::PrivateKey::GenerateP256());
  CITADEL_TRY(auto tls, crypto::PrivateKey::GenerateP256());
  return std::unique_ptr<MemoryRootOfTrust>(new MemoryRootOfTrust(std::move(identity), std::move(tls)));
}

Expected<std::unique_ptr<MemoryRootOfTrust>> MemoryRootOfTrust::FromPem(const crypto::SecretBytes& identity_pem,
                                                                        const crypto::SecretBytes& tls_pem) {
  CITADEL_TRY(auto identity, crypto::PrivateKey::FromPem(identity_pem));
  CITADEL_TRY(auto tls, crypto::PrivateKey::FromPem(tls_pem));
  if (!identity.Public().IsP256() || !tls.Public().IsP256()) {
    return MakeError(ErrorCode::kInvalidArgument, "device keys must be EC P-256");
  }
  return std::unique_ptr<MemoryRootOfTrust>(new MemoryRootOfTrust(std::move(identity), std::move(tls)));
}

Expected<Bytes> MemoryRootOfTrust::SignWithIdentity(const crypto::Sha256Digest& digest) {
  return identity_key_.SignDigest(digest);
}

Expected<std::vector<crypto::Certificate>> MemoryRootOfTrust::ManufacturerChain() const {
  std::lock_guard lock(mutex_);
  if (chain_.empty()) return MakeError(ErrorCode::kNotFound, "no manufacturer chain stored");
  return chain_;
}

Expected<void> MemoryRootOfTrust::StoreManufacturerChain(const std::vector<crypto::Certificate>& chain) {
  if (chain.empty()) return MakeError(ErrorCode::kInvalidArgument, "empty manufacturer chain");
  if (!(chain.front().SubjectPublicKey() == identity_public_)) {
    return MakeError(ErrorCode::kInvalidArgument, "the manufacturer certificate does not certify the identity key");
  }
  std::lock_guard lock(mutex_);
  chain_ = chain;
  return kOk;
}

Expected<void> MemoryRootOfTrust::Extend(const rot::MeasurementEvent& event) {
  if (event.register_index >= rot::kRegisterCount) {
    return MakeError(ErrorCode::kInvalidArgument, "register index out of range");
  }
  std::lock_guard lock(mutex_);
  auto& slot = registers_[event.register_index];
  slot = rot::ExtendRegister(slot, rot::EventDigest(event));
  log_.push_back(event);
  return kOk;
}

std::vector<crypto::Sha256Digest> MemoryRootOfTrust::ReadRegisters() const {
  std::lock_guard lock(mutex_);
  return registers_;
}

std::vector<rot::MeasurementEvent> MemoryRootOfTrust::MeasurementLog() const {
  std::lock_guard lock(mutex_);
  return log_;
}

Expected<rot::Quote> MemoryRootOfTrust::CreateQuote(std::span<const std::uint8_t> nonce) {
  if (nonce.empty()) return MakeError(ErrorCode::kInvalidArgument, "a quote nonce must not be empty");
  rot::Quote quote;
  quote.registers = ReadRegisters();
  quote.nonce.assign(nonce.begin(), nonce.end());
  CITADEL_TRY(quote.signature, SignWithIdentity(rot::QuoteDigest(quote.registers, quote.nonce)));
  return quote;
}

Expected<std::uint64_t> MemoryRootOfTrust::ReadCounter(std::string_view name) const {
  CITADEL_TRY_VOID(rot::CheckCounterName(name));
  std::lock_guard lock(mutex_);
  auto found = counters_.find(name);
  return found == counters_.end() ? 0 : found->second;
}

Expected<std::uint64_t> MemoryRootOfTrust::IncrementCounter(std::string_view name) {
  CITADEL_TRY_VOID(rot::CheckCounterName(name));
  std::lock_guard lock(mutex_);
  auto [it, inserted] = counters_.try_emplace(std::string(name), 0);
  (void)inserted;
  return ++it->second;
}

}  // namespace citadel::sim
