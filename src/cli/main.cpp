// `citadel`: the command-line client of citadel-server. All logic lives in
// the citadel_cli library (src/cli/cli.hpp); this only wires the process.
#include <string>
#include <vector>

#include "cli/cli.hpp"
#include "common/log.hpp"

int main(int argc, char** argv) {
  // Library log lines would interleave with tables; errors reach the user
  // as "error: ..." from the command itself.
  citadel::log::Init("citadel", citadel::log::Level::kOff);
  std::vector<std::string> args(argv, argv + argc);
  return citadel::cli::RunCli(args, citadel::cli::ProcessEnvironmentForMain());
}
