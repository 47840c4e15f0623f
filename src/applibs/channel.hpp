// Internal to libapplibs.so: the request/response exchange with the broker
// (src/broker/protocol.hpp) on the app channel and on peripheral handles.
//
// Contract: every function returns false with errno set on failure, as the
// C API reports it; nothing throws across this boundary except std::bad_alloc,
// which the C wrappers turn into ENOMEM. Descriptors received are O_CLOEXEC.
//
// Threading: calls on the app channel are serialised by one mutex, calls on
// peripheral handles by another (a slow signature does not stall a GPIO).
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace citadel::applibs {

using Json = nlohmann::json;

// The broker channel descriptor from CITADEL_BROKER_FD, checked once; -1
// (errno ENOTCONN) when missing or not a SOCK_SEQPACKET socket.
int BrokerChannel();

// Sends `request` (its "id" is filled in) on the app channel and waits for
// the response. When the response carries a descriptor, *fd_out receives it
// (fd_out may be null only for operations that never return one; a stray
// descriptor is closed).
bool CallBroker(Json request, Json* response, int* fd_out = nullptr);

// Same, on a peripheral handle returned by an open; EBADF when handle_fd is
// not such a handle.
bool CallHandle(int handle_fd, Json request, Json* response);

// A fresh request id for the app channel. Lock-free, so the crash handler
// may take one from inside a signal handler.
std::uint64_t NextRequestId();

// Lower-case hex and back; decoding fails (false) on malformed input.
std::string HexEncode(const std::uint8_t* data, std::size_t length);
bool HexDecode(const std::string& text, std::string* out);

}  // namespace citadel::applibs
