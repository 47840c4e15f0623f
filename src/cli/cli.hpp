// The `citadel` command line: parses arguments (CLI11), runs one command and
// returns its exit code (see ExitCode in cli/failure.hpp). Everything the
// process touches (environment, output streams, the HTTPS client, the clock)
// comes in through Environment, so tests drive the whole CLI in-process.
#pragma once

#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "cli/config.hpp"
#include "common/error.hpp"
#include "common/time.hpp"
#include "http/http.hpp"

namespace citadel::cli {

using ClientFactory = std::function<Expected<std::unique_ptr<http::Client>>(http::ClientOptions options)>;

struct Environment {
  EnvLookup env;                   // ProcessEnvironment() in main()
  std::ostream* out = nullptr;     // results (tables, JSON)
  std::ostream* err = nullptr;     // errors, hints, warnings
  ClientFactory make_client;       // http::Client::Create in main()
  std::function<TimePoint()> now;  // Clock::now in main()
};

// The environment of a real process: getenv, std::cout/std::cerr,
// http::Client::Create and the system clock.
Environment ProcessEnvironmentForMain();

// args[0] is the program name.
int RunCli(const std::vector<std::string>& args, const Environment& environment);

}  // namespace citadel::cli
