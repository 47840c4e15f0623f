// The wire protocol between libapplibs.so (inside an app's sandbox) and the
// Broker in citadeld. Header-only constants with no dependency beyond the C++
// standard library, so both sides include the same definitions.
//
// Transport
//   * Every app has one SOCK_SEQPACKET channel (fd 3 in the app, named by
//     CITADEL_BROKER_FD). One message = one request; the broker answers each
//     request with exactly one message, in order.
//   * Every message is one JSON object, UTF-8, at most kMaxMessageBytes. A
//     longer message is truncated by the kernel (MSG_TRUNC) and refused with
//     EMSGSIZE.
//   * Requests: {"op": "<name>", "id": <unsigned integer>, ...arguments}.
//   * Responses: {"id": <id of the request or null>, "ok": true, ...results}
//     or {"id": ..., "ok": false, "errno": <Linux errno>, "error": "<text>"}.
//     A response that hands over a descriptor carries exactly one fd as
//     SCM_RIGHTS ancillary data and "fd": true.
//   * Binary data (I2C/SPI bytes, digests) travels as lower-case hex strings.
//
// Peripheral handles (capabilities)
//   Opening a peripheral on the app channel returns a NEW descriptor bound to
//   that peripheral: holding it is the permission to use it, and close(2)
//   releases it (the broker sees the hang-up). For GPIO, I2C, SPI, PWM and ADC
//   it is a SOCK_SEQPACKET socket speaking this same request/response format
//   with the kOp*Handle operations below; for UART it is a SOCK_STREAM socket
//   carrying the raw bytes of the port. Application_Connect returns a
//   SOCK_STREAM socket connected to the peer app; kOpAppListen returns a
//   SOCK_SEQPACKET socket on which each incoming connection arrives as one
//   message {"op": "incoming", "from": "<component id>"} with its fd.
//
// Untrusted input: the broker parses requests with ParseJsonStrict, checks
// every field's type and bound, and answers malformed requests with EINVAL;
// no request makes it do more than a bounded amount of work
// (kMaxTransferBytes), and it never blocks on one app.
//
// Operations on the app channel (arguments -> results):
//   open        kind ("Gpio", "Uart", ...), name, [direction "input"|"output",
//               value 0|1 for Gpio]                     -> fd
//   net.ready                                           -> ready (bool)
//   auth.chain                                          -> pem (string)
//   auth.sign   digest (64 hex)                         -> signature (hex DER)
//   app.connect target (component id)                   -> fd
//   app.listen                                          -> fd
//   power.reboot                                        -> (nothing)
//   time.set    seconds (int), nanoseconds (0..999999999) -> (nothing)
//   crash       signal (1..64), signal_code (-128..128), fault_address
//               ("0x" hex), registers ({name: "0x.."}, <= 64), pcs (["0x..",
//               ...] absolute, innermost first, <= 64), optionally
//               stack_address ("0x..") with stack (hex, <= kMaxCrashStackBytes)
//                                                       -> (nothing)
//               Sent by applibs' crash handler from inside a signal handler
//               (crash_handler.cpp); the broker hands it to the runtime
//               (BrokerOptions::crashes) before it answers, and the handler
//               waits at most kCrashAnswerTimeoutMs for that answer.
// Operations on a peripheral handle:
//   gpio.set value 0|1; gpio.get -> value
//   i2c.transfer address (0..127), write (hex), read_length -> data (hex)
//   spi.transfer tx (hex, may be absent), length -> data (hex)
//   pwm.apply period_ns, duty_ns, enabled (bool)
//   adc.sample -> value; adc.bits -> bits
#pragma once

#include <cstddef>
#include <cstdint>

namespace citadel::broker::protocol {

inline constexpr std::size_t kMaxMessageBytes = 64 * 1024;
// Largest I2C/SPI transfer in one request; its hex form must fit in a message.
inline constexpr std::size_t kMaxTransferBytes = 8 * 1024;
// Send buffer of the broker's end of an app's incoming-connection socket:
// bounds how many connections can wait for an app that does not accept.
inline constexpr int kIncomingQueueBytes = 16 * 1024;
// The crash handler's stack copy (from the stack pointer up), and how long
// it waits for the broker's answer before it lets the app die anyway.
inline constexpr std::size_t kMaxCrashStackBytes = 16 * 1024;
inline constexpr int kCrashAnswerTimeoutMs = 2000;
// Environment variable naming the app's channel descriptor.
inline constexpr const char* kBrokerFdEnv = "CITADEL_BROKER_FD";

inline constexpr const char* kOpOpen = "open";
inline constexpr const char* kOpNetworkReady = "net.ready";
inline constexpr const char* kOpAuthChain = "auth.chain";
inline constexpr const char* kOpAuthSign = "auth.sign";
inline constexpr const char* kOpAppConnect = "app.connect";
inline constexpr const char* kOpAppListen = "app.listen";
inline constexpr const char* kOpPowerReboot = "power.reboot";
inline constexpr const char* kOpTimeSet = "time.set";
inline constexpr const char* kOpCrash = "crash";

inline constexpr const char* kOpGpioSet = "gpio.set";
inline constexpr const char* kOpGpioGet = "gpio.get";
inline constexpr const char* kOpI2cTransfer = "i2c.transfer";
inline constexpr const char* kOpSpiTransfer = "spi.transfer";
inline constexpr const char* kOpPwmApply = "pwm.apply";
inline constexpr const char* kOpAdcSample = "adc.sample";
inline constexpr const char* kOpAdcBits = "adc.bits";

inline constexpr const char* kIncoming = "incoming";

}  // namespace citadel::broker::protocol
