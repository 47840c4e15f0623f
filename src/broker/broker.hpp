// The Broker: the runtime side of applibs. Every running app gets one
// channel (protocol.hpp); through it the app opens the peripherals its
// policy lists, uses the device certificate, talks to the apps it is
// allowed to, and asks for the privileged operations its policy grants.
//
// SECURITY contract:
//   * Apps are untrusted. Every request is size-bounded and strictly parsed;
//     a malformed one gets an error response, never a crash. Work per message
//     is bounded and the event loop serves at most one message per ready
//     descriptor per round, so one app flooding its channel cannot starve the
//     others. The broker never blocks on an app (non-blocking sends; a
//     response an app does not read is dropped).
//   * Only what the app's Policy lists is granted. A refusal because the
//     policy does not grant something is EACCES AND a ViolationReport naming
//     the app, the call and the resource.
//   * Peripheral handles are capabilities: a descriptor bound to one
//     peripheral, released when the app closes it (or RemoveApp).
//   * The device key never leaves the DeviceAuthProvider; apps get
//     signatures over digests, only with DeviceAuthentication for the
//     device's own tenant.
//
// Backend: the board definition's Backend field picks what serves the
// peripherals (CreatePeripheralBackend, peripheral_backend.hpp): the Linux
// device interfaces (LinuxBoard, the default for a real board) or the
// simulation (SimulatedBoard). A peripheral the backend cannot open is
// refused to the app (EIO/EBUSY with the reason) and logged; nothing falls
// back to the simulation. UART bytes are relayed by the event loop between
// the app's stream socket and the tty (bounded buffers both ways), so the
// app never holds the tty itself and cannot issue tty ioctls. When the app
// closes a UART descriptor, what it wrote before is still relayed (the
// handle drains); RemoveApp and a new open of the UART drop what is left.
//
// Threading: one internal thread runs the epoll loop. AddApp, RemoveApp and
// simulated() may be called from any thread. Callbacks in BrokerOptions are
// invoked on the broker thread and must not call back into the Broker.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "app/board.hpp"
#include "app/policy.hpp"
#include "broker/crash_notice.hpp"
#include "broker/peripheral_backend.hpp"
#include "broker/simulated_board.hpp"
#include "common/encoding.hpp"
#include "common/error.hpp"
#include "common/unique_fd.hpp"
#include "crypto/crypto.hpp"

namespace citadel::broker {

// Implemented by citadeld over the root of trust.
class DeviceAuthProvider {
 public:
  virtual ~DeviceAuthProvider() = default;
  virtual Expected<std::string> CertificateChainPem() = 0;                     // leaf + issuing CA
  virtual Expected<Bytes> SignDigest(const crypto::Sha256Digest& digest) = 0;  // TLS client key, DER
  virtual std::string TenantId() = 0;                                          // of the device certificate
};

// A refused privileged request (same shape as seccomp::Violation; the
// runtime forwards both to one sink). what: the applibs call, e.g.
// "GPIO_OpenAsOutput"; detail: the resource and why.
struct ViolationReport {
  std::string component_id;
  std::string what;
  std::string detail;
};
using ViolationCallback = std::function<void(const ViolationReport&)>;
// A well-formed "crash" request (crash_notice.hpp), before the broker
// answers it: the crashing app waits for that answer, so the callback can
// still read the app's /proc entries. Bounded work only (the broker thread
// serves every app).
using CrashCallback = std::function<void(const CrashNotice&)>;

struct BrokerOptions {
  app::BoardDefinition board;
  DeviceAuthProvider* device_auth = nullptr;  // may be null: no certificate yet -> EAGAIN
  std::function<bool()> network_ready;        // null: never ready
  std::function<void()> reboot_requested;     // called for PowerManagement_ForceSystemReboot
  ViolationCallback violations;               // every EACCES result is reported here
  CrashCallback crashes;                      // every accepted crash request; null: accepted and dropped
  LinuxBoardOptions linux_board;              // roots for the linux backend (tests use a temporary tree)
};

class Broker {
 public:
  static Expected<std::unique_ptr<Broker>> Create(BrokerOptions options);
  ~Broker();  // stops the thread, closes every channel and handle
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Registers a starting app and returns the app's end of its new
  // SOCK_SEQPACKET channel (O_CLOEXEC set; the launcher clears it when it
  // becomes fd 3). kAlreadyExists if the component is already registered.
  [[nodiscard]] Expected<UniqueFd> AddApp(const app::Policy& policy);
  // Closes the app's channel, its peripheral handles and pending incoming
  // connections. Unknown ids are ignored.
  void RemoveApp(std::string_view component_id);

  // The simulated board, for tests and diagnostics. Only for a board whose
  // Backend is "simulated": on any other board this is a programming error
  // and the process aborts.
  SimulatedBoard& simulated();

  class Impl;

 private:
  explicit Broker(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace citadel::broker
