// How the TUF updater gets bytes: an interface, so the client workflow is
// tested with an in-memory repository and runs over HTTP(S) on a device.
//
// Contract for every implementation (each bound protects the device from a
// hostile or broken server — TUF's "endless data" and "slow retrieval"):
//   * the body is streamed to `sink` as it arrives, never buffered whole;
//   * `offset` > 0 asks for the body from that byte on (an HTTP Range
//     request). A server that ignores the Range and sends the whole body is
//     fine: the first chunk then arrives with position 0 and the sink must
//     start over (truncate);
//   * no more than `max_length` bytes of the whole file (counted from
//     position 0) ever reach the sink: the fetch fails with kTooLarge the
//     moment more would arrive;
//   * a transfer slower than the implementation's minimum speed, or silent
//     for longer than its timeout, fails with kUnavailable;
//   * 403 and 404 fail with kNotFound (the updater's root walk stops on it);
//     any other failure is kUnavailable (connection) or kIo.
// A sink error aborts the transfer and is returned as is.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/error.hpp"

namespace citadel::tuf {

// position: the byte offset in the file where chunk starts.
using FetchSink = std::function<Expected<void>(std::uint64_t position, std::string_view chunk)>;

struct FetchRequest {
  std::string url;
  std::uint64_t max_length = 0;
  std::uint64_t offset = 0;
};

struct FetchResult {
  std::uint64_t bytes_received = 0;  // body bytes that crossed the network in this call
  bool resumed = false;              // the server honoured offset > 0 (206)
};

class Fetcher {
 public:
  virtual ~Fetcher() = default;
  virtual Expected<FetchResult> Fetch(const FetchRequest& request, const FetchSink& sink) = 0;
};

}  // namespace citadel::tuf
