// The development interface's wire format, shared by citadeld's DevServer
// and the `citadel device ...` client. One request per connection over a
// unix stream socket (STATE/dev.sock, mode 0600):
//
//   request:  u32be header length | JSON header {"op": "...", ...}
//             [u64be body length | body bytes]   only for ops that carry a
//                                                body (sideload, app-install,
//                                                apply-capability)
//   response: u32be length | JSON {"ok": true, "result": ...}
//                              or {"ok": false, "error": {"code", "message"}}
//
// Ops: sideload, app-install, apply-capability, app-list, app-start,
// app-stop, app-remove, app-logs ({"app": NAME_OR_CID, "lines": N}).
//
// Security contract: every length is bounded before anything is allocated
// (header kMaxDevHeaderBytes, body the caller's maximum, response
// kMaxDevResponseBytes) and every read and write has a deadline, so a peer
// that stalls or lies about lengths costs one connection slot for at most
// the timeout.
//
// Threading: free functions; safe from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "common/canonical_json.hpp"
#include "common/encoding.hpp"
#include "common/error.hpp"

namespace citadel::apps {

inline constexpr std::string_view kDevSocketName = "dev.sock";
inline constexpr std::size_t kMaxDevHeaderBytes = 64 * 1024;
inline constexpr std::size_t kMaxDevResponseBytes = 4u << 20;
inline constexpr std::size_t kMaxLogLinesPerRequest = 256;

using Deadline = std::chrono::steady_clock::time_point;

// True for the ops whose request carries a body.
bool DevOpHasBody(std::string_view op);

// A directory means DIR/dev.sock; anything else is the socket itself.
std::filesystem::path ResolveDevSocket(const std::filesystem::path& dir_or_socket);

// Exact-length I/O on a blocking or non-blocking socket with a deadline.
Expected<void> WriteAll(int fd, std::span<const std::uint8_t> bytes, Deadline deadline);
Expected<void> ReadExact(int fd, std::span<std::uint8_t> bytes, Deadline deadline);

// u32be length + text.
Expected<void> WriteFrame(int fd, std::string_view text, Deadline deadline);
// Reads a u32be-framed text of at most max_bytes (kTooLarge beyond; an
// empty frame is kParse).
Expected<std::string> ReadFrame(int fd, std::size_t max_bytes, Deadline deadline);

// {"ok": false, "error": {...}} for an Error.
Json DevErrorResponse(const Error& error);
Json DevOkResponse(Json result);

// Client side: connects to the socket (a directory means DIR/dev.sock), sends one request, returns the response's
// "result", or the server's error as an Error (its code parsed back).
Expected<Json> DevCall(const std::filesystem::path& socket_path, const Json& header,
                       std::span<const std::uint8_t> body = {},
                       std::chrono::milliseconds timeout = std::chrono::seconds(120));

}  // namespace citadel::apps
