#include "update/fault.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace citadel::update {
namespace {

struct FaultConfig {
  bool enabled = false;
  std::uint64_t kill_at = 0;  // 0: never
  std::string count_file;     // empty: no log
};

FaultConfig LoadConfig() {
  FaultConfig config;
  // Read once, before any thread of the process could change the
  // environment (the first FaultPoint call initialises this static).
  if (const char* at = std::getenv("CITADEL_FAULT_AT"); at != nullptr && *at != '\0') {
    std::string_view text(at);
    std::uint64_t value = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    // A malformed value must not silently disable the test that set it.
    if (error != std::errc() || end != text.data() + text.size()) std::abort();
    config.kill_at = value;
  }
  if (const char* file = std::getenv("CITADEL_FAULT_COUNT"); file != nullptr && *file != '\0') {
    config.count_file = file;
  }
  config.enabled = config.kill_at != 0 || !config.count_file.empty();
  return config;
}

const FaultConfig& Config() {
  static const FaultConfig config = LoadConfig();
  return config;
}

void AppendLabel(const std::string& file, std::string_view label) {
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  std::string line(label);
  line += '\n';
  // One write with O_APPEND: lines from concurrent callers do not interleave.
  (void)!::write(fd, line.data(), line.size());
  ::close(fd);
}

}  // namespace

void FaultPoint(std::string_view label) {
  const FaultConfig& config = Config();
  if (!config.enabled) return;
  static std::atomic<std::uint64_t> calls{0};
  const std::uint64_t call = calls.fetch_add(1, std::memory_order_relaxed) + 1;
  if (!config.count_file.empty()) AppendLabel(config.count_file, label);
  if (call == config.kill_at) ::kill(::getpid(), SIGKILL);
}

}  // namespace citadel::update
