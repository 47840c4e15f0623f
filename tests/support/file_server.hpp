// A static file server for tests, and a hostile one on demand.
//
// Serves a directory over plain HTTP (or HTTPS with a given identity) on a
// loopback address with an ephemeral port, on its own threads (one per
// connection). GET and HEAD; a single Range ("bytes=N-", "bytes=N-M",
// "bytes=-N") answers 206 with Content-Range, an unsatisfiable one 416 with
// "Content-Range: bytes */<size>"; HTTP/1.1 keep-alive. Paths with ".."
// segments, or leading outside the directory (symlinks included), get 403;
// missing files and directories 404.
//
// Faults (FileServerFault) make it misbehave per path or for every path,
// and can be changed while it runs: answer a status, cut the body, serve
// slowly, serve an endless body, ignore Range, lie about Content-Length.
// Counters record requests and body bytes per path.
//
// Typical use:
//   TempDir dir;  // write dir.path() / "image.bin"
//   auto server = FileServer::Start({.root = dir.path()});
//   ASSERT_TRUE(server) << server.error().message();
//   (*server)->SetFault("/image.bin", FileServerFault::CutAfter(1000, /*times=*/1));
//   ... fetch (*server)->Url("/image.bin") ...
//   (*server)->WaitUntilIdle(5s);
//   EXPECT_EQ((*server)->BodyBytesSent("/image.bin"), ...);
//
// HTTPS: LoopbackServerPki (support/test_pki.hpp) gives an identity for
// .tls and the CA for the client to pin. Link citadel_test_support.
//
// Thread safety: every method may be called from any thread while the
// server runs. Paths given to SetFault and the counters are the request
// path as the client sent it after percent-decoding, without the query
// ("/targets/a.json").
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "http/http.hpp"

namespace citadel::testing {

// What to do wrong for a request; the default does nothing wrong. Build one
// with the named constructors or designated initializers; the fields
// combine (e.g. ignore_range with cut_after).
struct FileServerFault {
  // != 0: answer this status with an empty body instead of the file.
  int status = 0;
  // Send at most this many body bytes, then close the connection.
  std::optional<std::uint64_t> cut_after{};
  // > 0: send slow_bytes body bytes, then pause this long, and so on.
  std::chrono::milliseconds slow_interval{0};
  std::size_t slow_bytes = 1;
  // A chunked body of 'x' that never ends: until the client goes away, the
  // server stops, or a safety bound (60 s, 4 GiB) is reached.
  bool endless = false;
  // Answer 200 with the whole file even to a Range request.
  bool ignore_range = false;
  // Announce this Content-Length; the real body is sent, then the
  // connection is closed.
  std::optional<std::uint64_t> content_length{};
  // > 0: the fault applies to the next `times` requests, then clears itself.
  int times = 0;

  static FileServerFault Status(int status, int times = 0) { return {.status = status, .times = times}; }
  static FileServerFault NotFound(int times = 0) { return Status(404, times); }
  static FileServerFault CutAfter(std::uint64_t bytes, int times = 0) { return {.cut_after = bytes, .times = times}; }
  static FileServerFault Slow(std::chrono::milliseconds interval, std::size_t bytes = 1, int times = 0) {
    return {.slow_interval = interval, .slow_bytes = bytes, .times = times};
  }
  static FileServerFault Endless(int times = 0) { return {.endless = true, .times = times}; }
  static FileServerFault IgnoreRange(int times = 0) { return {.ignore_range = true, .times = times}; }
  static FileServerFault WrongContentLength(std::uint64_t announced, int times = 0) {
    return {.content_length = announced, .times = times};
  }
};

struct FileServerOptions {
  std::filesystem::path root{};
  // A loopback address only: "127.0.0.1" (or another 127/8 address) or "::1".
  std::string address = "127.0.0.1";
  // HTTPS with this identity when set (the key must outlive the server).
  std::optional<http::TlsIdentity> tls{};
  // HTTPS only: when not empty, a client certificate chaining to these CA
  // certificates (PEM) is required.
  std::string client_ca_pem{};
};

class FileServer {
 public:
  // Binds an ephemeral port and starts serving; the server is running when
  // this returns.
  static Expected<std::unique_ptr<FileServer>> Start(FileServerOptions options);
  ~FileServer();  // Stop()
  FileServer(const FileServer&) = delete;
  FileServer& operator=(const FileServer&) = delete;

  // Closes the listening socket and every connection (a slow or endless
  // body is cut off) and joins the threads. Idempotent.
  void Stop();

  // Shuts down every kept-alive connection that is not answering a request,
  // as a server's idle timeout would; clients must notice and reconnect.
  void CloseIdleConnections();

  std::uint16_t port() const;
  // "http://127.0.0.1:<port>" (https, [::1] as configured), no trailing '/'.
  std::string BaseUrl() const;
  // BaseUrl() + path; path starts with '/'.
  std::string Url(std::string_view path) const;

  // A per-path fault wins over the global one.
  void SetFault(std::string path, FileServerFault fault);
  void SetGlobalFault(FileServerFault fault);
  void ClearFaults();

  std::uint64_t RequestCount(std::string_view path) const;
  // Body bytes written to the socket (chunk framing not counted).
  std::uint64_t BodyBytesSent(std::string_view path) const;
  // TCP connections accepted since Start() or ResetCounters().
  std::uint64_t ConnectionCount() const;
  void ResetCounters();

  // Waits until no request is being answered (e.g. after a client gave up
  // on an endless body, until the server noticed); false on timeout.
  // Counters are final for a request once it is no longer being answered.
  bool WaitUntilIdle(std::chrono::milliseconds timeout) const;

 private:
  struct State;
  explicit FileServer(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace citadel::testing
