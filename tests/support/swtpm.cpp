#include "support/swtpm.hpp"

#include <chrono>
#include <utility>
#include <vector>

#include "common/subprocess.hpp"

namespace citadel::testing {

SoftwareTpm::SoftwareTpm(std::filesystem::path dir, std::filesystem::path ca_dir)
    : dir_(std::move(dir)), ca_dir_(std::move(ca_dir)) {}

SoftwareTpm::~SoftwareTpm() {
  if (running_) (void)Stop();
}

Expected<std::string> SoftwareTpm::Run(const std::vector<std::string>& arguments) {
  SubprocessOptions options;
  options.argv = {std::string(CITADEL_SOURCE_DIR) + "/scripts/swtpm-test-server"};
  options.argv.insert(options.argv.end(), arguments.begin(), arguments.end());
  options.timeout = std::chrono::seconds(60);
  CITADEL_TRY(SubprocessResult result, RunSubprocess(options));
  if (result.exit_code != 0) {
    return MakeError(ErrorCode::kUnavailable, DescribeCommand(options.argv) + " failed (exit " +
                                                  std::to_string(result.exit_code) + "): " + result.err +
                                                  " (is swtpm installed? run scripts/install-deps)");
  }
  return result.out;
}

Expected<void> SoftwareTpm::Manufacture() {
  CITADEL_TRY_VOID(Run({"manufacture", dir_.string(), ca_dir_.string()}));
  return kOk;
}

Expected<std::string> SoftwareTpm::Start() {
  CITADEL_TRY(std::string out, Run({"start", dir_.string()}));
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  if (!out.starts_with("swtpm:")) {
    return MakeError(ErrorCode::kInternal, "swtpm-test-server start printed \"" + out + "\", not a TCTI");
  }
  tcti_ = out;
  running_ = true;
  return tcti_;
}

Expected<void> SoftwareTpm::Reboot() {
  CITADEL_TRY_VOID(Run({"reboot", dir_.string()}));
  return kOk;
}

Expected<void> SoftwareTpm::Stop() {
  running_ = false;
  CITADEL_TRY_VOID(Run({"stop", dir_.string()}));
  return kOk;
}

Expected<std::string> SoftwareTpm::ManufactureAndStart() {
  CITADEL_TRY_VOID(Manufacture());
  return Start();
}

}  // namespace citadel::testing
