#include "rot/software/software_rot.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>

#include "common/canonical_json.hpp"
#include "common/file.hpp"
#include "common/log.hpp"

namespace citadel::rot {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kMaxCounterValue = (std::uint64_t{1} << 53) - 1;  // canonical JSON range
constexpr std::size_t kMaxKeyFileBytes = 64 * 1024;
constexpr std::size_t kMaxCountersFileBytes = 1 << 20;
constexpr std::size_t kMaxChainFileBytes = 256 * 1024;
constexpr std::size_t kMaxChainCertificates = 8;
constexpr std::size_t kMaxQuoteNonceBytes = 1024;

using CounterMap = std::map<std::string, std::uint64_t, std::less<>>;

fs::path IdentityKeyPath(const fs::path& dir) { return dir / "identity.key"; }
fs::path TlsKeyPath(const fs::path& dir) { return dir / "tls.key"; }
fs::path ChainPath(const fs::path& dir) { return dir / "manufacturer-chain.pem"; }
fs::path CountersPath(const fs::path& dir) { return dir / "counters.json"; }

std::string OctalMode(mode_t mode) {
  char text[8];
  if (std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777)) < 0) return "?";
  return text;
}

// Reads a key file through one descriptor, so the mode that is checked is
// the mode of the file that is read (no symlink, no swap in between).
Expected<crypto::SecretBytes> ReadOwnerOnlyKeyFile(const fs::path& path, std::string_view purpose) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ELOOP) {
      return MakeError(ErrorCode::kPermissionDenied, path.string() + " is a symbolic link; refusing to use it as the " +
                                                         std::string(purpose) + " key");
    }
    return MakeError(ErrorCode::kIo, "cannot open " + path.string() + ": " + std::strerror(errno));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return MakeError(ErrorCode::kIo, "cannot stat " + path.string() + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return MakeError(
        ErrorCode::kPermissionDenied,
        path.string() + " is not a regular file; refusing to use it as the " + std::string(purpose) + " key");
  }
  if ((st.st_mode & 0077) != 0) {
    return MakeError(ErrorCode::kPermissionDenied,
                     path.string() + " has mode " + OctalMode(st.st_mode) + ", so other users may read the " +
                         std::string(purpose) + " key; a key file must be 0600. If nobody else could have read it, " +
                         "run `chmod 600 " + path.string() + "`; otherwise delete the RoT state and re-provision " +
                         "the device");
  }
  if (st.st_size < 0 || static_cast<std::size_t>(st.st_size) > kMaxKeyFileBytes) {
    return MakeError(ErrorCode::kTooLarge, path.string() + " is too large to be a key file");
  }
  std::string data(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::read(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      crypto::SecretBytes wipe(std::move(data));
      return MakeError(ErrorCode::kIo, "cannot read " + path.string());
    }
    done += static_cast<std::size_t>(n);
  }
  return crypto::SecretBytes(std::move(data));
}

// Loads a PKCS#8 key file, or creates it (0600) when it does not exist yet.
// A key file other users can read is refused rather than silently chmod'ed:
// the key may already have leaked, and the operator must decide.
Expected<crypto::PrivateKey> LoadOrCreateKey(const fs::path& path, std::string_view purpose) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      return MakeError(ErrorCode::kIo, "cannot stat " + path.string() + ": " + std::strerror(errno));
    }
    CITADEL_TRY(auto key, crypto::PrivateKey::GenerateP256());
    CITADEL_TRY(auto pem, key.ToPem());
    auto written = WriteFileAtomic(path, pem.reveal(), 0600);
    if (!written) return WrapError(written.error(), "writing the " + std::string(purpose) + " key");
    log::Info("software root of trust: created key", {{"key", purpose}, {"path", path.string()}});
    return key;
  }
  CITADEL_TRY(auto pem, ReadOwnerOnlyKeyFile(path, purpose));
  auto key = crypto::PrivateKey::FromPem(pem);
  if (!key) return WrapError(key.error(), "loading " + path.string());
  if (!key->Public().IsP256()) {
    return MakeError(ErrorCode::kCrypto, path.string() + " does not hold a P-256 key");
  }
  return std::move(*key);
}

Error CorruptCounters(const fs::path& path, std::string_view why) {
  return Error(ErrorCode::kParse,
               path.string() + " is corrupt (" + std::string(why) +
                   "); refusing to reset the monotonic counters, which would re-enable rollback. Restore the "
                   "file from a backup or re-provision the device");
}

// Missing file = no counter has been incremented yet. Anything unreadable is
// an error: treating it as "all zero" would let an attacker who can corrupt
// the file roll the counters back.
Expected<CounterMap> LoadCounters(const fs::path& path) {
  auto text = ReadFile(path, kMaxCountersFileBytes);
  if (!text) {
    if (text.error().code() == ErrorCode::kNotFound) return CounterMap{};
    return std::unexpected(CorruptCounters(path, text.error().message()));
  }
  auto parsed = ParseJsonStrict(*text);
  if (!parsed) return std::unexpected(CorruptCounters(path, parsed.error().message()));
  if (!parsed->is_object()) return std::unexpected(CorruptCounters(path, "not a JSON object"));
  CounterMap counters;
  for (const auto& [name, value] : parsed->items()) {
    if (!CheckCounterName(name)) return std::unexpected(CorruptCounters(path, "bad counter name"));
    if (!value.is_number_unsigned() || value.get<std::uint64_t>() > kMaxCounterValue) {
      return std::unexpected(CorruptCounters(path, "counter \"" + name + "\" is not a non-negative integer"));
    }
    counters.emplace(name, value.get<std::uint64_t>());
  }
  return counters;
}

Expected<void> SaveCounters(const fs::path& path, const CounterMap& counters) {
  Json document = Json::object();
  for (const auto& [name, value] : counters) document[name] = value;
  CITADEL_TRY(auto text, CanonicalJson(document));
  text += '\n';
  return WriteFileAtomic(path, text, 0600);
}

}  // namespace

SoftwareRootOfTrust::SoftwareRootOfTrust(std::filesystem::path dir, crypto::PrivateKey identity, crypto::PrivateKey tls)
    : dir_(std::move(dir)),
      identity_key_(std::move(identity)),
      identity_public_(identity_key_.Public()),
      tls_key_(std::move(tls)),
      registers_(kRegisterCount, crypto::Sha256Digest{}) {}

Expected<std::unique_ptr<SoftwareRootOfTrust>> SoftwareRootOfTrust::Open(const std::filesystem::path& state_dir) {
  auto dir = state_dir / "rot";
  log::Warn(
      "software root of trust is for DEVELOPMENT ONLY: the device keys are plain files, and anyone who can read "
      "them can clone this device. Use the TPM 2.0 backend on real hardware",
      {{"dir", dir.string()}});
  CITADEL_TRY_VOID(EnsureDirectory(dir, 0700));
  CITADEL_TRY(auto identity, LoadOrCreateKey(IdentityKeyPath(dir), "identity"));
  CITADEL_TRY(auto tls, LoadOrCreateKey(TlsKeyPath(dir), "TLS"));
  // Validate the counters now so a corrupt file stops the device at boot,
  // not at the first update.
  CITADEL_TRY_VOID(LoadCounters(CountersPath(dir)));
  return std::unique_ptr<SoftwareRootOfTrust>(
      new SoftwareRootOfTrust(std::move(dir), std::move(identity), std::move(tls)));
}

Expected<Bytes> SoftwareRootOfTrust::SignWithIdentity(const crypto::Sha256Digest& digest) {
  return identity_key_.SignDigest(digest);
}

Expected<std::vector<crypto::Certificate>> SoftwareRootOfTrust::ManufacturerChain() const {
  auto path = ChainPath(dir_);
  auto text = ReadFile(path, kMaxChainFileBytes);
  if (!text) {
    if (text.error().code() == ErrorCode::kNotFound) {
      return MakeError(ErrorCode::kNotFound, "no manufacturer chain is provisioned (" + path.string() +
                                                 " is missing); provision the device first");
    }
    return std::unexpected(text.error());
  }
  auto chain = crypto::ParsePemChain(*text, kMaxChainCertificates);
  if (!chain) return WrapError(chain.error(), "reading " + path.string());
  if (chain->empty()) return MakeError(ErrorCode::kParse, path.string() + " holds no certificate");
  if (!(chain->front().SubjectPublicKey() == identity_public_)) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     path.string() + ": the leaf certificate is for another key than this RoT's identity key");
  }
  return std::move(*chain);
}

Expected<void> SoftwareRootOfTrust::StoreManufacturerChain(const std::vector<crypto::Certificate>& chain) {
  if (chain.empty()) return MakeError(ErrorCode::kInvalidArgument, "the manufacturer chain is empty");
  if (chain.size() > kMaxChainCertificates) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the manufacturer chain has more than " + std::to_string(kMaxChainCertificates) + " certificates");
  }
  if (!(chain.front().SubjectPublicKey() == identity_public_)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the manufacturer chain's leaf certificate (" + chain.front().SubjectOneLine() +
                         ") certifies another key than this device's identity key " + DeviceId());
  }
  return WriteFileAtomic(ChainPath(dir_), crypto::ToPemChain(chain), 0644);
}

Expected<void> SoftwareRootOfTrust::Extend(const MeasurementEvent& event) {
  if (event.register_index >= kRegisterCount) {
    return MakeError(ErrorCode::kInvalidArgument, "register " + std::to_string(event.register_index) +
                                                      " does not exist (registers are 0-" +
                                                      std::to_string(kRegisterCount - 1) + ")");
  }
  std::lock_guard lock(measurements_mutex_);
  auto& reg = registers_[event.register_index];
  reg = ExtendRegister(reg, EventDigest(event));
  log_.push_back(event);
  return kOk;
}

Expected<Quote> SoftwareRootOfTrust::CreateQuote(std::span<const std::uint8_t> nonce) {
  if (nonce.empty() || nonce.size() > kMaxQuoteNonceBytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "a quote nonce must be 1-" + std::to_string(kMaxQuoteNonceBytes) + " bytes");
  }
  Quote quote;
  quote.registers = ReadRegisters();
  quote.nonce.assign(nonce.begin(), nonce.end());
  CITADEL_TRY(quote.signature, SignWithIdentity(QuoteDigest(quote.registers, quote.nonce)));
  return quote;
}

Expected<std::uint64_t> SoftwareRootOfTrust::ReadCounter(std::string_view name) const {
  CITADEL_TRY_VOID(CheckCounterName(name));
  CITADEL_TRY(auto counters, LoadCounters(CountersPath(dir_)));
  auto it = counters.find(name);
  return it == counters.end() ? 0 : it->second;
}

Expected<std::uint64_t> SoftwareRootOfTrust::IncrementCounter(std::string_view name) {
  CITADEL_TRY_VOID(CheckCounterName(name));
  auto path = CountersPath(dir_);
  CITADEL_TRY(auto counters, LoadCounters(path));
  auto& value = counters[std::string(name)];
  if (value >= kMaxCounterValue) {
    return MakeError(ErrorCode::kFailedPrecondition, "counter \"" + std::string(name) + "\" is exhausted");
  }
  ++value;
  std::uint64_t incremented = value;
  // The new value is durable (fsync + rename) before it is returned, so a
  // caller never acts on a value a power loss could take back.
  auto saved = SaveCounters(path, counters);
  if (!saved) return WrapError(saved.error(), "incrementing counter \"" + std::string(name) + "\"");
  return incremented;
}

}  // namespace citadel::rot
