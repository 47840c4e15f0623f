// The service's data directory (--data DIR):
//
//   DIR/citadel.db            SQLite store (unless --database postgresql://...)
//   DIR/blobs/                content-addressed blobs (later issues)
//   DIR/master.key            32-byte key sealing tenant CA keys (0600)
//   DIR/service-ca.pem        service TLS CA: devices and the CLI pin this
//   DIR/service-ca.key        its key (0600)
//   DIR/server.pem/.key       the TLS server certificate chain and key (0600)
//   DIR/operator-token        the first operator token (0600), written once
//   DIR/manufacturer-cas/     trusted manufacturer root CAs (*.pem)
//
// Everything is created on first start; later starts reuse it. Replicas on
// one PostgreSQL must share master.key and the service CA (docs).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "crypto/crypto.hpp"
#include "store/store.hpp"

namespace citadel::server {

struct ServiceIdentity {
  crypto::Certificate ca;        // the service CA, or the last certificate of a configured chain
  std::string server_chain_pem;  // server leaf then service CA
  crypto::PrivateKey server_key;
};

class DataDirectory {
 public:
  static Expected<DataDirectory> Open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path DatabasePath() const { return path_ / "citadel.db"; }

  Expected<crypto::SecretBytes> LoadOrCreateMasterKey() const;
  // Creates the service CA and server certificate on first use; renews the
  // server certificate when it expires within 30 days. host_names are added
  // as SANs next to localhost, 127.0.0.1 and ::1.
  Expected<ServiceIdentity> LoadOrCreateServiceIdentity(const std::vector<std::string>& host_names) const;
  // Loads an operator-provided TLS chain and key (no service CA involved).
  static Expected<ServiceIdentity> LoadConfiguredIdentity(const std::filesystem::path& chain_file,
                                                          const std::filesystem::path& key_file);
  // Loads DIR/<subdirectory>/*.pem plus extra_files: "manufacturer-cas"
  // (software-RoT manufacturers) or "tpm-manufacturer-cas" (TPM vendors,
  // whose CAs certify endorsement keys).
  Expected<std::vector<crypto::Certificate>> LoadManufacturerCas(
      std::string_view subdirectory, const std::vector<std::filesystem::path>& extra_files) const;
  // Creates an operator token if the store has none, writing it to
  // DIR/operator-token (0600). The token text never reaches a log.
  Expected<void> EnsureOperatorToken(store::Store& store) const;

 private:
  explicit DataDirectory(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;
};

// A new random API token "cit_<base64url of 32 bytes>" and its stored hash.
struct NewToken {
  std::string text;
  std::string hash_hex;
};
NewToken GenerateApiToken();
std::string HashApiToken(std::string_view text);
// Random identifier with a readable prefix, e.g. "ten_3kq9...".
std::string GenerateId(std::string_view prefix);

}  // namespace citadel::server
