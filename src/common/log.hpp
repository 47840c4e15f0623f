// The one logging facade. Every component logs through these functions so
// that format, level and destination are decided in one place.
//
// Levels: Debug (developer detail), Info (state changes an operator cares
// about: attested, claimed, started), Warn (something failed and will be
// retried, or a development-only mode is on), Error (an operation failed and
// will not be retried without action).
//
// Structured fields: pass {"device_id", id} pairs; they are rendered as
// key=value after the message so logs can be grepped and parsed.
//
// SECURITY: never pass key material, tokens or evidence signatures as a field
// or in a message. Types holding secrets have no formatter on purpose.
#pragma once

#include <expected>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace citadel::log {

enum class Level { kDebug, kInfo, kWarn, kError, kOff };

using Field = std::pair<std::string_view, std::string_view>;
using Fields = std::initializer_list<Field>;

// Configures the process logger: component name (e.g. "citadeld"), level,
// and whether to write JSON lines instead of human text. Call once in main().
void Init(std::string_view component, Level level, bool json = false);
std::expected<Level, std::string> ParseLevel(std::string_view name);
void SetLevel(Level level);

void Debug(std::string_view message, Fields fields = {});
void Info(std::string_view message, Fields fields = {});
void Warn(std::string_view message, Fields fields = {});
void Error(std::string_view message, Fields fields = {});

}  // namespace citadel::log
