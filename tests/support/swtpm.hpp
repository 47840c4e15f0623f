// A software TPM 2.0 for a test: scripts/swtpm-test-server made callable
// from C++. Manufacture() makes a new TPM (endorsement keys and their
// certificates from the manufacturer CA in ca_dir, shared by every TPM of
// the test that uses the same ca_dir), Start() runs it on loopback and
// returns the TCTI configuration, Reboot() power-cycles it (PCRs reset, NV
// and persistent keys stay), Stop() ends it. The destructor stops it.
//
// A missing swtpm is a test failure (the error says to run
// scripts/install-deps), never a skip.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "common/error.hpp"

namespace citadel::testing {

class SoftwareTpm {
 public:
  // dir: where this TPM's state lives (wiped by Manufacture); ca_dir: the
  // manufacturer CA's directory.
  SoftwareTpm(std::filesystem::path dir, std::filesystem::path ca_dir);
  ~SoftwareTpm();
  SoftwareTpm(const SoftwareTpm&) = delete;
  SoftwareTpm& operator=(const SoftwareTpm&) = delete;

  [[nodiscard]] Expected<void> Manufacture();
  // Returns the TCTI configuration, e.g. "swtpm:host=127.0.0.1,port=41234".
  [[nodiscard]] Expected<std::string> Start();
  [[nodiscard]] Expected<void> Reboot();
  [[nodiscard]] Expected<void> Stop();

  // Manufacture() then Start(): the usual first step of a test.
  [[nodiscard]] Expected<std::string> ManufactureAndStart();

  const std::string& tcti() const { return tcti_; }
  // The manufacturer CA: root and intermediate certificates (PEM files).
  std::filesystem::path RootCaPath() const { return ca_dir_ / "swtpm-localca-rootca-cert.pem"; }
  std::filesystem::path IntermediateCaPath() const { return ca_dir_ / "issuercert.pem"; }

 private:
  [[nodiscard]] Expected<std::string> Run(const std::vector<std::string>& arguments);

  std::filesystem::path dir_;
  std::filesystem::path ca_dir_;
  std::string tcti_;
  bool running_ = false;
};

}  // namespace citadel::testing
