// libapplibs.so: the C API of applibs.h over the broker channel
// (src/broker/protocol.hpp). Everything but the API is hidden
// (-fvisibility=hidden); the API's declarations get default visibility from
// the pragma around the header include below.
//
// SECURITY: this library runs inside the app and is not trusted by the
// broker; it enforces nothing. It only turns calls into requests and
// responses into return values and errno.
//
// Threading: see applibs.h; C++ exceptions never cross the C boundary.

#pragma GCC visibility push(default)
#include "applibs/applibs.h"
#pragma GCC visibility pop

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>

#include "applibs/channel.hpp"
#include "broker/protocol.hpp"
#include "common/fd_passing.hpp"

namespace {

using citadel::ReceiveWithFds;
using citadel::applibs::CallBroker;
using citadel::applibs::CallHandle;
using citadel::applibs::HexDecode;
using citadel::applibs::HexEncode;
using citadel::applibs::Json;
namespace protocol = citadel::broker::protocol;

constexpr std::size_t kMaxLogLineBytes = 4096;
constexpr const char* kDefaultStorageDirectory = "/mnt/config";
// Tests and development hosts may point storage elsewhere; inside the
// sandbox the variable is unset (the runtime passes a fixed environment) and
// the app can only reach what its mounts and Landlock rules allow anyway.
constexpr const char* kStorageDirectoryEnv = "CITADEL_MUTABLE_STORAGE_DIR";
constexpr const char* kMutableFileName = "mutable";

// Runs body, turning exceptions (allocation failure, a JSON type surprise)
// into -1/errno so they never unwind into C callers.
template <typename Result, typename Body>
Result Guarded(Result failure, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    errno = ENOMEM;
  } catch (...) {
    errno = EIO;
  }
  return failure;
}

int OpenPeripheral(const char* kind, const char* name, Json extra = Json::object()) {
  if (name == nullptr) {
    errno = EINVAL;
    return -1;
  }
  Json request = std::move(extra);
  request["op"] = protocol::kOpOpen;
  request["kind"] = kind;
  request["name"] = name;
  Json response;
  int fd = -1;
  if (!CallBroker(std::move(request), &response, &fd)) return -1;
  if (fd < 0) {
    errno = EIO;
    return -1;
  }
  return fd;
}

// Reads an unsigned result field; EIO when the broker sent something else.
bool ResultUnsigned(const Json& response, const char* name, std::uint64_t* out) {
  auto field = response.find(name);
  if (field == response.end() || !field->is_number_unsigned()) {
    errno = EIO;
    return false;
  }
  *out = field->get<std::uint64_t>();
  return true;
}

bool ResultBytes(const Json& response, const char* name, std::string* out) {
  auto field = response.find(name);
  if (field == response.end() || !field->is_string() || !HexDecode(field->get<std::string>(), out)) {
    errno = EIO;
    return false;
  }
  return true;
}

ssize_t I2cTransfer(int fd, std::uint16_t address, const std::uint8_t* write_data, std::size_t write_length,
                    std::uint8_t* read_data, std::size_t read_length) {
  if (address > 0x7F || (write_data == nullptr && write_length > 0) || (read_data == nullptr && read_length > 0) ||
      write_length > protocol::kMaxTransferBytes || read_length > protocol::kMaxTransferBytes) {
    errno = EINVAL;
    return -1;
  }
  Json request = {{"op", protocol::kOpI2cTransfer},
                  {"address", address},
                  {"write", HexEncode(write_data, write_length)},
                  {"read_length", read_length}};
  Json response;
  if (!CallHandle(fd, std::move(request), &response)) return -1;
  std::string data;
  if (!ResultBytes(response, "data", &data)) return -1;
  if (data.size() != read_length) {
    errno = EIO;
    return -1;
  }
  if (read_data != nullptr && read_length > 0) std::memcpy(read_data, data.data(), read_length);
  return static_cast<ssize_t>(write_length + read_length);
}

std::string StorageDirectory() {
  const char* override_dir = std::getenv(kStorageDirectoryEnv);  // NOLINT(concurrency-mt-unsafe)
  return override_dir != nullptr && *override_dir != '\0' ? override_dir : kDefaultStorageDirectory;
}

// The incoming-connection socket from app.listen, fetched once.
std::mutex g_listen_mutex;
int g_listen_fd = -1;

int ListenSocket() {
  std::lock_guard lock(g_listen_mutex);
  if (g_listen_fd >= 0) return g_listen_fd;
  Json response;
  int fd = -1;
  if (!CallBroker({{"op", protocol::kOpAppListen}}, &response, &fd)) return -1;
  g_listen_fd = fd;
  return fd;
}

void ForgetListenSocket(int fd) {
  std::lock_guard lock(g_listen_mutex);
  if (g_listen_fd == fd) {
    (void)::close(fd);
    g_listen_fd = -1;
  }
}

}  // namespace

extern "C" {

void Log_Debug(const char* format, ...) {
  int saved_errno = errno;
  if (format != nullptr) {
    std::array<char, kMaxLogLineBytes> line{};
    va_list arguments;
    va_start(arguments, format);
    int length = std::vsnprintf(line.data(), line.size(), format, arguments);
    va_end(arguments);
    if (length > 0) {
      std::size_t size = std::min(static_cast<std::size_t>(length), line.size() - 2);
      // One call is one line of the app's log: end it when the caller did not.
      if (line[size - 1] != '\n') line[size++] = '\n';
      std::size_t written = 0;
      while (written < size) {
        ssize_t result = ::write(STDERR_FILENO, line.data() + written, size - written);
        if (result < 0 && errno == EINTR) continue;
        if (result <= 0) break;
        written += static_cast<std::size_t>(result);
      }
    }
  }
  errno = saved_errno;
}

int GPIO_OpenAsOutput(const char* name, GPIO_Value_Type initial_value) {
  return Guarded(-1, [&] {
    if (initial_value != GPIO_Value_Low && initial_value != GPIO_Value_High) {
      errno = EINVAL;
      return -1;
    }
    return OpenPeripheral("Gpio", name, {{"direction", "output"}, {"value", initial_value}});
  });
}

int GPIO_OpenAsInput(const char* name) {
  return Guarded(-1, [&] { return OpenPeripheral("Gpio", name, {{"direction", "input"}}); });
}

int GPIO_SetValue(int fd, GPIO_Value_Type value) {
  return Guarded(-1, [&] {
    if (value != GPIO_Value_Low && value != GPIO_Value_High) {
      errno = EINVAL;
      return -1;
    }
    Json response;
    return CallHandle(fd, {{"op", protocol::kOpGpioSet}, {"value", value}}, &response) ? 0 : -1;
  });
}

int GPIO_GetValue(int fd, GPIO_Value_Type* out_value) {
  return Guarded(-1, [&] {
    if (out_value == nullptr) {
      errno = EINVAL;
      return -1;
    }
    Json response;
    std::uint64_t value = 0;
    if (!CallHandle(fd, {{"op", protocol::kOpGpioGet}}, &response) || !ResultUnsigned(response, "value", &value)) {
      return -1;
    }
    *out_value = value != 0 ? GPIO_Value_High : GPIO_Value_Low;
    return 0;
  });
}

int UART_Open(const char* name) {
  return Guarded(-1, [&] { return OpenPeripheral("Uart", name); });
}

int I2CMaster_Open(const char* name) {
  return Guarded(-1, [&] { return OpenPeripheral("I2cMaster", name); });
}

ssize_t I2CMaster_Write(int fd, uint16_t address, const uint8_t* data, size_t length) {
  return Guarded<ssize_t>(-1, [&] { return I2cTransfer(fd, address, data, length, nullptr, 0); });
}

ssize_t I2CMaster_Read(int fd, uint16_t address, uint8_t* buffer, size_t length) {
  return Guarded<ssize_t>(-1, [&] { return I2cTransfer(fd, address, nullptr, 0, buffer, length); });
}

ssize_t I2CMaster_WriteThenRead(int fd, uint16_t address, const uint8_t* write_data, size_t write_length,
                                uint8_t* read_data, size_t read_length) {
  return Guarded<ssize_t>(-1,
                          [&] { return I2cTransfer(fd, address, write_data, write_length, read_data, read_length); });
}

int SPIMaster_Open(const char* name) {
  return Guarded(-1, [&] { return OpenPeripheral("SpiMaster", name); });
}

ssize_t SPIMaster_Transfer(int fd, const uint8_t* tx, uint8_t* rx, size_t length) {
  return Guarded<ssize_t>(-1, [&]() -> ssize_t {
    if (length > protocol::kMaxTransferBytes) {
      errno = EINVAL;
      return -1;
    }
    Json request = {{"op", protocol::kOpSpiTransfer}, {"length", length}};
    if (tx != nullptr) request["tx"] = HexEncode(tx, length);
    Json response;
    std::string data;
    if (!CallHandle(fd, std::move(request), &response) || !ResultBytes(response, "data", &data)) return -1;
    if (data.size() != length) {
      errno = EIO;
      return -1;
    }
    if (rx != nullptr && length > 0) std::memcpy(rx, data.data(), length);
    return static_cast<ssize_t>(length);
  });
}

int PWM_Open(const char* name) {
  return Guarded(-1, [&] { return OpenPeripheral("Pwm", name); });
}

int PWM_Apply(int fd, uint32_t period_ns, uint32_t duty_cycle_ns, bool enabled) {
  return Guarded(-1, [&] {
    Json response;
    Json request = {
        {"op", protocol::kOpPwmApply}, {"period_ns", period_ns}, {"duty_ns", duty_cycle_ns}, {"enabled", enabled}};
    return CallHandle(fd, std::move(request), &response) ? 0 : -1;
  });
}

int ADC_Open(const char* name) {
  return Guarded(-1, [&] { return OpenPeripheral("Adc", name); });
}

int ADC_GetSample(int fd, uint32_t* out_sample) {
  return Guarded(-1, [&] {
    if (out_sample == nullptr) {
      errno = EINVAL;
      return -1;
    }
    Json response;
    std::uint64_t value = 0;
    if (!CallHandle(fd, {{"op", protocol::kOpAdcSample}}, &response) || !ResultUnsigned(response, "value", &value)) {
      return -1;
    }
    *out_sample = static_cast<uint32_t>(value);
    return 0;
  });
}

int ADC_GetSampleBitCount(int fd) {
  return Guarded(-1, [&] {
    Json response;
    std::uint64_t bits = 0;
    if (!CallHandle(fd, {{"op", protocol::kOpAdcBits}}, &response) || !ResultUnsigned(response, "bits", &bits)) {
      return -1;
    }
    return static_cast<int>(bits);
  });
}

const char* Storage_GetMutableDirectory(void) {
  return Guarded<const char*>(nullptr, []() -> const char* {
    static const std::string directory = StorageDirectory();
    struct stat info {};
    if (::stat(directory.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
      errno = EACCES;  // no MutableStorage: nothing is mounted there
      return nullptr;
    }
    return directory.c_str();
  });
}

int Storage_OpenMutableFile(void) {
  return Guarded(-1, [] {
    const char* directory = Storage_GetMutableDirectory();
    if (directory == nullptr) return -1;
    std::string path = std::string(directory) + "/" + kMutableFileName;
    return ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  });
}

int Storage_DeleteMutableFile(void) {
  return Guarded(-1, [] {
    const char* directory = Storage_GetMutableDirectory();
    if (directory == nullptr) return -1;
    std::string path = std::string(directory) + "/" + kMutableFileName;
    return ::unlink(path.c_str());
  });
}

int Networking_IsNetworkingReady(bool* out_ready) {
  return Guarded(-1, [&] {
    if (out_ready == nullptr) {
      errno = EINVAL;
      return -1;
    }
    Json response;
    if (!CallBroker({{"op", protocol::kOpNetworkReady}}, &response)) return -1;
    auto ready = response.find("ready");
    if (ready == response.end() || !ready->is_boolean()) {
      errno = EIO;
      return -1;
    }
    *out_ready = ready->get<bool>();
    return 0;
  });
}

int DeviceAuth_GetCertificateChainPem(char* buffer, size_t* length) {
  return Guarded(-1, [&] {
    if (length == nullptr) {
      errno = EINVAL;
      return -1;
    }
    Json response;
    if (!CallBroker({{"op", protocol::kOpAuthChain}}, &response)) return -1;
    auto pem = response.find("pem");
    if (pem == response.end() || !pem->is_string()) {
      errno = EIO;
      return -1;
    }
    const auto& text = pem->get_ref<const std::string&>();
    std::size_t needed = text.size() + 1;
    if (buffer == nullptr) {
      *length = needed;
      return 0;
    }
    if (*length < needed) {
      *length = needed;
      errno = ERANGE;
      return -1;
    }
    std::memcpy(buffer, text.c_str(), needed);
    *length = needed;
    return 0;
  });
}

int DeviceAuth_SignDigest(const uint8_t digest[32], uint8_t* signature, size_t* signature_length) {
  return Guarded(-1, [&] {
    if (digest == nullptr || signature == nullptr || signature_length == nullptr) {
      errno = EINVAL;
      return -1;
    }
    Json response;
    std::string der;
    if (!CallBroker({{"op", protocol::kOpAuthSign}, {"digest", HexEncode(digest, 32)}}, &response) ||
        !ResultBytes(response, "signature", &der)) {
      return -1;
    }
    if (der.size() > *signature_length) {
      *signature_length = der.size();
      errno = ERANGE;
      return -1;
    }
    std::copy(der.begin(), der.end(), signature);  // binary DER, not a string
    *signature_length = der.size();
    return 0;
  });
}

int Application_Connect(const char* component_id) {
  return Guarded(-1, [&] {
    if (component_id == nullptr) {
      errno = EINVAL;
      return -1;
    }
    Json response;
    int fd = -1;
    if (!CallBroker({{"op", protocol::kOpAppConnect}, {"target", component_id}}, &response, &fd)) return -1;
    if (fd < 0) {
      errno = EIO;
      return -1;
    }
    return fd;
  });
}

int Application_Accept(int timeout_ms) {
  return Guarded(-1, [&] {
    int listen_fd = ListenSocket();
    if (listen_fd < 0) return -1;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
    while (true) {
      int wait_ms = -1;
      if (timeout_ms >= 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        wait_ms = left.count() > 0 ? static_cast<int>(left.count()) : 0;
      }
      pollfd poll_fd{listen_fd, POLLIN, 0};
      int ready = ::poll(&poll_fd, 1, wait_ms);
      if (ready < 0 && errno == EINTR) continue;
      if (ready < 0) return -1;
      if (ready == 0) {
        errno = ETIMEDOUT;
        return -1;
      }
      std::array<char, 512> text{};
      auto received = ReceiveWithFds(listen_fd, text, MSG_DONTWAIT, 1);
      if (!received && (received.error() == EAGAIN || received.error() == EWOULDBLOCK)) continue;  // another thread won
      if (!received || received->end_of_stream) {
        ForgetListenSocket(listen_fd);  // the runtime closed it; the next call asks again
        errno = EIO;
        return -1;
      }
      // Exactly one connection per announcement; with any other number the
      // message is not one (its descriptors are already closed).
      if (received->fds.size() == 1 && received->fds_discarded == 0 && !received->control_truncated) {
        return received->fds.front().Release();
      }
      // An announcement without a connection: ignore it and keep waiting.
    }
  });
}

int PowerManagement_ForceSystemReboot(void) {
  return Guarded(-1, [] {
    Json response;
    return CallBroker({{"op", protocol::kOpPowerReboot}}, &response) ? 0 : -1;
  });
}

int Clock_SetSystemTime(const struct timespec* new_time) {
  return Guarded(-1, [&] {
    if (new_time == nullptr || new_time->tv_sec < 0 || new_time->tv_nsec < 0 || new_time->tv_nsec > 999'999'999) {
      errno = EINVAL;
      return -1;
    }
    Json response;
    Json request = {{"op", protocol::kOpTimeSet},
                    {"seconds", static_cast<std::int64_t>(new_time->tv_sec)},
                    {"nanoseconds", static_cast<std::int64_t>(new_time->tv_nsec)}};
    return CallBroker(std::move(request), &response) ? 0 : -1;
  });
}

}  // extern "C"
