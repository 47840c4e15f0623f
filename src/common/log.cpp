#include "common/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <memory>
#include <mutex>

namespace citadel::log {
namespace {

std::shared_ptr<spdlog::logger>& Logger() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto l = spdlog::stderr_color_mt("citadel");
    l->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");
    l->set_level(spdlog::level::info);
    return l;
  }();
  return logger;
}

bool g_json = false;

// Values containing spaces or quotes are quoted so key=value stays parseable.
void AppendField(std::string& out, std::string_view key, std::string_view value) {
  out += ' ';
  out += key;
  out += '=';
  bool needs_quotes = value.empty() || value.find_first_of(" \"=\t\n") != std::string_view::npos;
  if (!needs_quotes) {
    out += value;
    return;
  }
  out += nlohmann::json(std::string(value)).dump();
}

void Write(spdlog::level::level_enum level, std::string_view message, Fields fields) {
  auto& logger = Logger();
  if (!logger->should_log(level)) return;
  std::string line;
  if (g_json) {
    nlohmann::json record = {{"msg", std::string(message)}};
    for (const auto& [key, value] : fields) record[std::string(key)] = std::string(value);
    line = record.dump();
  } else {
    line.assign(message);
    for (const auto& [key, value] : fields) AppendField(line, key, value);
  }
  logger->log(level, "{}", line);
}

spdlog::level::level_enum ToSpd(Level level) {
  switch (level) {
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarn:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
    case Level::kOff:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

}  // namespace

void Init(std::string_view component, Level level, bool json) {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  g_json = json;
  auto& logger = Logger();
  auto sink = logger->sinks().front();
  logger = std::make_shared<spdlog::logger>(std::string(component), sink);
  if (json) {
    logger->set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%e","level":"%l","component":"%n","record":%v})");
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [%n] %v");
  }
  logger->set_level(ToSpd(level));
  logger->flush_on(spdlog::level::info);
}

std::expected<Level, std::string> ParseLevel(std::string_view name) {
  if (name == "debug") return Level::kDebug;
  if (name == "info") return Level::kInfo;
  if (name == "warn") return Level::kWarn;
  if (name == "error") return Level::kError;
  if (name == "off") return Level::kOff;
  return std::unexpected("unknown log level '" + std::string(name) + "' (use debug, info, warn, error, off)");
}

void SetLevel(Level level) { Logger()->set_level(ToSpd(level)); }

void Debug(std::string_view message, Fields fields) { Write(spdlog::level::debug, message, fields); }
void Info(std::string_view message, Fields fields) { Write(spdlog::level::info, message, fields); }
void Warn(std::string_view message, Fields fields) { Write(spdlog::level::warn, message, fields); }
void Error(std::string_view message, Fields fields) { Write(spdlog::level::err, message, fields); }

}  // namespace citadel::log
