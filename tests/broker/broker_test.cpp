// Integration tests of the Broker with the real libapplibs.so: each "app" is
// a forked child that sets CITADEL_BROKER_FD to a channel from AddApp and
// calls the C API; the parent checks the simulated board and the violation
// reports. Raw-channel tests speak the wire protocol directly to check the
// broker's handling of hostile input.
#include "broker/broker.hpp"
#include "common/fd_passing.hpp"

#include "app_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "app/manifest.hpp"
#include "app/policy.hpp"
#include "applibs/applibs.h"
#include "broker/protocol.hpp"
#include "common/canonical_json.hpp"
#include "crypto/crypto.hpp"

namespace citadel::broker {
namespace {

using namespace std::chrono_literals;

constexpr const char* kAppA = "aaaaaaaa-0000-4000-8000-00000000000a";
constexpr const char* kAppB = "bbbbbbbb-0000-4000-8000-00000000000b";
constexpr const char* kAppC = "cccccccc-0000-4000-8000-00000000000c";
constexpr const char* kAppD = "dddddddd-0000-4000-8000-00000000000d";
constexpr const char* kTenant = "ten_test";

using testing::RunApp;
using testing::RunningApp;
using testing::StartApp;
using testing::WaitApp;

// ---- PKI and device authentication ----------------------------------------

struct TestPki {
  crypto::PrivateKey ca_key;
  crypto::Certificate ca;
  crypto::PrivateKey device_key;
  crypto::Certificate device;
  crypto::PrivateKey server_key;
  crypto::Certificate server;
};

TestPki MakePki() {
  auto ca_key = crypto::PrivateKey::GenerateP256();
  crypto::CertificateSpec ca_spec;
  ca_spec.common_name = "Test Tenant CA";
  ca_spec.is_ca = true;
  auto ca = crypto::IssueCertificate(ca_spec, ca_key->Public(), nullptr, *ca_key);
  auto device_key = crypto::PrivateKey::GenerateP256();
  crypto::CertificateSpec device_spec;
  device_spec.common_name = "device-0123";
  device_spec.extended_key_usages = {crypto::ExtendedKeyUsage::kClientAuth};
  auto device = crypto::IssueCertificate(device_spec, device_key->Public(), &*ca, *ca_key);
  auto server_key = crypto::PrivateKey::GenerateP256();
  crypto::CertificateSpec server_spec;
  server_spec.common_name = "localhost";
  server_spec.extended_key_usages = {crypto::ExtendedKeyUsage::kServerAuth};
  server_spec.ip_sans = {"127.0.0.1"};
  auto server = crypto::IssueCertificate(server_spec, server_key->Public(), &*ca, *ca_key);
  if (!ca || !device || !server) std::abort();
  return TestPki{std::move(*ca_key), *ca, std::move(*device_key), *device, std::move(*server_key), *server};
}

class TestDeviceAuth : public DeviceAuthProvider {
 public:
  explicit TestDeviceAuth(const TestPki& pki) : pki_(pki) {}
  Expected<std::string> CertificateChainPem() override { return pki_.device.Pem() + pki_.ca.Pem(); }
  Expected<Bytes> SignDigest(const crypto::Sha256Digest& digest) override {
    ++signatures;
    return pki_.device_key.SignDigest(digest);
  }
  std::string TenantId() override { return kTenant; }
  std::atomic<int> signatures{0};

 private:
  const TestPki& pki_;
};

const TestPki& Pki() {
  static const TestPki pki = MakePki();
  return pki;
}

// ---- raw protocol -----------------------------------------------------------

bool SendRaw(int fd, std::string_view text, int pass_fd = -1) {
  return SendWithFd(fd, text, pass_fd, MSG_NOSIGNAL) == static_cast<ssize_t>(text.size());
}

// Reads one response within 5 s; a JSON null when none came.
Json ReceiveRaw(int fd, int* fd_out = nullptr) {
  pollfd poll_fd{fd, POLLIN, 0};
  if (::poll(&poll_fd, 1, 5000) != 1) return nullptr;
  std::string buffer(protocol::kMaxMessageBytes + 1, '\0');
  auto received = ReceiveWithFds(fd, buffer, 0, 1);
  if (!received || received->end_of_stream) return nullptr;
  if (fd_out != nullptr) *fd_out = received->fds.empty() ? -1 : received->fds.front().Release();
  const std::size_t size = received->size;
  auto parsed = ParseJsonStrict(std::string_view(buffer.data(), size));
  return parsed ? *parsed : Json(nullptr);
}

bool SetSocketNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

Json CallRaw(int fd, std::string_view text, int* fd_out = nullptr) {
  if (!SendRaw(fd, text)) return nullptr;
  return ReceiveRaw(fd, fd_out);
}

// ---- fixture ----------------------------------------------------------------

std::string Manifest(std::string_view component_id, std::string_view capabilities) {
  return R"({"SchemaVersion":1,"Name":"TestApp","ComponentId":")" + std::string(component_id) +
         R"(","EntryPoint":"/bin/app","ApplicationType":"Default","Capabilities":)" + std::string(capabilities) + "}";
}

class BrokerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto board = app::LoadBoardDefinition(CITADEL_SOURCE_DIR "/boards/simulated.json");
    ASSERT_TRUE(board) << board.error().message();
    board_ = *board;
    BrokerOptions options;
    options.board = board_;
    options.device_auth = &auth_;
    options.network_ready = [] { return true; };
    options.reboot_requested = [this] { ++reboots_; };
    options.violations = [this](const ViolationReport& report) {
      std::lock_guard lock(mutex_);
      violations_.push_back(report);
    };
    options.crashes = [this](const CrashNotice& notice) {
      std::lock_guard lock(mutex_);
      crashes_.push_back(notice);
    };
    auto broker = Broker::Create(std::move(options));
    ASSERT_TRUE(broker) << broker.error().message();
    broker_ = std::move(*broker);
  }

  // Registers an app built from a manifest and returns its channel.
  UniqueFd AddApp(std::string_view component_id, std::string_view capabilities) {
    auto manifest = app::ParseManifest(Manifest(component_id, capabilities));
    EXPECT_TRUE(manifest) << manifest.error().message();
    if (!manifest) return {};
    auto policy = app::BuildPolicy(*manifest, board_, app::DevicePolicy{});
    EXPECT_TRUE(policy) << policy.error().message();
    if (!policy) return {};
    auto channel = broker_->AddApp(*policy);
    EXPECT_TRUE(channel) << channel.error().message();
    return channel ? std::move(*channel) : UniqueFd();
  }

  // True when a violation was reported for the app and call whose detail
  // mentions `resource`.
  bool Reported(std::string_view component_id, std::string_view call, std::string_view resource) {
    std::lock_guard lock(mutex_);
    for (const ViolationReport& report : violations_) {
      if (report.component_id == component_id && report.what == call &&
          report.detail.find(resource) != std::string::npos) {
        return true;
      }
    }
    return false;
  }

  std::size_t ViolationCount() {
    std::lock_guard lock(mutex_);
    return violations_.size();
  }

  app::BoardDefinition board_;
  TestDeviceAuth auth_{Pki()};
  std::atomic<int> reboots_{0};
  std::mutex mutex_;
  std::vector<ViolationReport> violations_;
  std::vector<CrashNotice> crashes_;
  std::unique_ptr<Broker> broker_;
};

// ---- GPIO ---------------------------------------------------------------------

TEST_F(BrokerTest, GpioOutputIsVisibleOnTheBoardAndInputsReadButtons) {
  UniqueFd channel = AddApp(kAppA, R"({"Gpio":["LED1","BUTTON_A"]})");
  broker_->simulated().SetGpioLevel("BUTTON_A", 0);  // pressed
  std::string result = RunApp(channel.get(), [] {
    int led = GPIO_OpenAsOutput("LED1", GPIO_Value_Low);
    CHILD_CHECK(led >= 0);
    CHILD_CHECK(GPIO_SetValue(led, GPIO_Value_High) == 0);
    GPIO_Value_Type value = -1;
    CHILD_CHECK(GPIO_GetValue(led, &value) == 0 && value == GPIO_Value_High);
    // Exclusive while open; free again once closed.
    CHILD_CHECK(GPIO_OpenAsOutput("LED1", GPIO_Value_Low) == -1 && errno == EBUSY);
    int button = GPIO_OpenAsInput("BUTTON_A");
    CHILD_CHECK(button >= 0);
    CHILD_CHECK(GPIO_GetValue(button, &value) == 0 && value == GPIO_Value_Low);
    CHILD_CHECK(GPIO_SetValue(button, GPIO_Value_High) == -1 && errno == EPERM);
    CHILD_CHECK(::close(button) == 0);
    button = GPIO_OpenAsInput("BUTTON_A");
    CHILD_CHECK(button >= 0);
    CHILD_CHECK(GPIO_SetValue(-1, GPIO_Value_High) == -1 && errno == EBADF);
    return std::string("ok");
  });
  EXPECT_EQ(result, "ok");
  EXPECT_EQ(broker_->simulated().GpioLevel("LED1"), 1);
  EXPECT_EQ(ViolationCount(), 0U);
}

TEST_F(BrokerTest, UnlistedGpioIsRefusedAndReported) {
  UniqueFd channel = AddApp(kAppA, R"({"Gpio":["LED1"]})");
  std::string result = RunApp(channel.get(), [] {
    CHILD_CHECK(GPIO_OpenAsOutput("LED2", GPIO_Value_High) == -1 && errno == EACCES);
    CHILD_CHECK(GPIO_OpenAsInput("PIN99") == -1 && errno == ENOENT);
    CHILD_CHECK(UART_Open("UART0") == -1 && errno == EACCES);
    return std::string("ok");
  });
  EXPECT_EQ(result, "ok");
  EXPECT_TRUE(Reported(kAppA, "GPIO_OpenAsOutput", "LED2"));
  EXPECT_TRUE(Reported(kAppA, "UART_Open", "UART0"));
  EXPECT_EQ(ViolationCount(), 2U);                       // ENOENT is not a violation
  EXPECT_EQ(broker_->simulated().GpioLevel("LED2"), 1);  // untouched
}

// ---- I2C, SPI, PWM, ADC, UART -------------------------------------------------

std::string ReadTemperature(double expected) {
  int bus = I2CMaster_Open("I2C0");
  CHILD_CHECK(bus >= 0);
  std::uint8_t pointer = 0;
  std::array<std::uint8_t, 2> raw{};
  CHILD_CHECK(I2CMaster_WriteThenRead(bus, kTmp102Address, &pointer, 1, raw.data(), raw.size()) == 3);
  auto counts = static_cast<std::int16_t>((raw[0] << 8) | raw[1]) / 16;
  double celsius = counts * 0.0625;
  CHILD_CHECK(celsius == expected);
  CHILD_CHECK(I2CMaster_Read(bus, kTmp102Address, raw.data(), raw.size()) == 2);
  CHILD_CHECK(I2CMaster_Read(bus, 0x49, raw.data(), raw.size()) == -1 && errno == EIO);  // NACK
  CHILD_CHECK(I2CMaster_Write(bus, 0x80, &pointer, 1) == -1 && errno == EINVAL);
  return "ok";
}

TEST_F(BrokerTest, I2cReadsTheTmp102AndFollowsAChange) {
  UniqueFd channel = AddApp(kAppA, R"({"I2cMaster":["I2C0"]})");
  EXPECT_EQ(RunApp(channel.get(), [] { return ReadTemperature(21.5); }), "ok");
  broker_->simulated().SetTemperatureCelsius(-3.25);
  EXPECT_EQ(RunApp(channel.get(), [] { return ReadTemperature(-3.25); }), "ok");
}

TEST_F(BrokerTest, SpiPwmAndAdc) {
  UniqueFd channel = AddApp(kAppA, R"({"SpiMaster":["SPI0"],"Pwm":["PWM0"],"Adc":["ADC0"]})");
  broker_->simulated().SetAdcSample("ADC0", 1234);
  std::string result = RunApp(channel.get(), [] {
    int spi = SPIMaster_Open("SPI0");
    CHILD_CHECK(spi >= 0);
    std::array<std::uint8_t, 4> tx{0xDE, 0xAD, 0xBE, 0xEF};
    std::array<std::uint8_t, 4> rx{};
    CHILD_CHECK(SPIMaster_Transfer(spi, tx.data(), rx.data(), tx.size()) == 4 && rx == tx);
    int pwm = PWM_Open("PWM0");
    CHILD_CHECK(pwm >= 0);
    CHILD_CHECK(PWM_Apply(pwm, 1000, 2000, true) == -1 && errno == EINVAL);
    CHILD_CHECK(PWM_Apply(pwm, 20000, 5000, true) == 0);
    int adc = ADC_Open("ADC0");
    CHILD_CHECK(adc >= 0);
    std::uint32_t sample = 0;
    CHILD_CHECK(ADC_GetSample(adc, &sample) == 0 && sample == 1234);
    CHILD_CHECK(ADC_GetSampleBitCount(adc) == 12);
    // A handle only speaks its own peripheral's operations.
    CHILD_CHECK(ADC_GetSample(pwm, &sample) == -1 && errno == EINVAL);
    return std::string("ok");
  });
  EXPECT_EQ(result, "ok");
  EXPECT_EQ(broker_->simulated().Pwm("PWM0"), (PwmState{20000, 5000, true}));
}

TEST_F(BrokerTest, UartLoopsBytesBackWithFlowControl) {
  UniqueFd channel = AddApp(kAppA, R"({"Uart":["UART0"]})");
  constexpr std::size_t kTotal = 300 * 1024;  // several times the broker's buffer
  std::string result = RunApp(channel.get(), [] {
    int uart = UART_Open("UART0");
    CHILD_CHECK(uart >= 0);
    std::string sent(kTotal, '\0');
    for (std::size_t i = 0; i < sent.size(); ++i) sent[i] = static_cast<char>('a' + i % 26);
    std::string received;
    std::size_t written = 0;
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (received.size() < kTotal && std::chrono::steady_clock::now() < deadline) {
      pollfd poll_fd{uart, static_cast<short>(POLLIN | (written < kTotal ? POLLOUT : 0)), 0};
      if (::poll(&poll_fd, 1, 1000) <= 0) continue;
      if ((poll_fd.revents & POLLOUT) != 0) {
        ssize_t n = ::send(uart, sent.data() + written, std::min<std::size_t>(8192, kTotal - written), MSG_DONTWAIT);
        if (n > 0) written += static_cast<std::size_t>(n);
      }
      if ((poll_fd.revents & POLLIN) != 0) {
        std::array<char, 8192> buffer{};
        ssize_t n = ::recv(uart, buffer.data(), buffer.size(), MSG_DONTWAIT);
        if (n > 0) received.append(buffer.data(), static_cast<std::size_t>(n));
      }
    }
    CHILD_CHECK(received == sent);
    return std::string("ok");
  });
  EXPECT_EQ(result, "ok");
  // The broker counts a chunk after sending it, so the app can hold every
  // byte a moment before the count does (bounded wait, then the check).
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (broker_->simulated().UartBytesLooped("UART0") < kTotal && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(broker_->simulated().UartBytesLooped("UART0"), kTotal);
}

// ---- device authentication ----------------------------------------------------

TEST_F(BrokerTest, DeviceAuthGivesTheChainAndSignaturesThatVerify) {
  UniqueFd channel = AddApp(kAppA, R"({"DeviceAuthentication":"ten_test"})");
  std::string expected_chain = Pki().device.Pem() + Pki().ca.Pem();
  crypto::PublicKey device_public = Pki().device.SubjectPublicKey();
  std::string result = RunApp(channel.get(), [&] {
    std::size_t length = 0;
    CHILD_CHECK(DeviceAuth_GetCertificateChainPem(nullptr, &length) == 0 && length == expected_chain.size() + 1);
    std::string small(10, '\0');
    std::size_t small_length = small.size();
    CHILD_CHECK(DeviceAuth_GetCertificateChainPem(small.data(), &small_length) == -1 && errno == ERANGE &&
                small_length == length);
    std::string chain(length, '\0');
    CHILD_CHECK(DeviceAuth_GetCertificateChainPem(chain.data(), &length) == 0);
    CHILD_CHECK(chain.c_str() == expected_chain);
    crypto::Sha256Digest digest = crypto::Sha256(std::string_view("message to sign"));
    std::array<std::uint8_t, 72> signature{};
    std::size_t signature_length = signature.size();
    CHILD_CHECK(DeviceAuth_SignDigest(digest.data(), signature.data(), &signature_length) == 0);
    CHILD_CHECK(device_public.VerifyDigest(digest, std::span(signature.data(), signature_length)));
    digest[0] ^= 1;
    CHILD_CHECK(!device_public.VerifyDigest(digest, std::span(signature.data(), signature_length)));
    return std::string("ok");
  });
  EXPECT_EQ(result, "ok");
  EXPECT_EQ(auth_.signatures.load(), 1);
}

TEST_F(BrokerTest, DeviceAuthNeedsTheCapabilityForTheDevicesTenant) {
  UniqueFd without = AddApp(kAppA, R"({})");
  UniqueFd other_tenant = AddApp(kAppB, R"({"DeviceAuthentication":"ten_other"})");
  auto attempt = [] {
    std::size_t length = 0;
    CHILD_CHECK(DeviceAuth_GetCertificateChainPem(nullptr, &length) == -1 && errno == EACCES);
    std::array<std::uint8_t, 32> digest{};
    std::array<std::uint8_t, 72> signature{};
    std::size_t signature_length = signature.size();
    CHILD_CHECK(DeviceAuth_SignDigest(digest.data(), signature.data(), &signature_length) == -1 && errno == EACCES);
    return std::string("ok");
  };
  EXPECT_EQ(RunApp(without.get(), attempt), "ok");
  EXPECT_EQ(RunApp(other_tenant.get(), attempt), "ok");
  EXPECT_TRUE(Reported(kAppA, "DeviceAuth_SignDigest", "DeviceAuthentication"));
  EXPECT_TRUE(Reported(kAppB, "DeviceAuth_GetCertificateChainPem", "ten_other"));
  EXPECT_EQ(auth_.signatures.load(), 0);
}

// A TLS server on loopback that requires a client certificate from the test
// CA; returns the client's certificate common name, or why it failed.
class TlsServer {
 public:
  explicit TlsServer(bool tls12_sha384) {
    listener_.Reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        ::listen(listener_.get(), 1) != 0 ||
        ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      std::abort();
    }
    port_ = ntohs(address.sin_port);
    context_ = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(context_, Pki().server.x509());
    SSL_CTX_use_PrivateKey(context_, Pki().server_key.evp());
    SSL_CTX_set_verify(context_, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(context_), Pki().ca.x509());
    if (tls12_sha384) {
      // TLS 1.2 with SHA-384 preferred: the client signs a 48-byte digest.
      SSL_CTX_set_max_proto_version(context_, TLS1_2_VERSION);
      SSL_CTX_set1_client_sigalgs_list(context_, "ECDSA+SHA384:ECDSA+SHA256");
    }
    thread_ = std::thread([this] { Serve(); });
  }
  ~TlsServer() {
    if (thread_.joinable()) thread_.join();
    SSL_CTX_free(context_);
  }
  TlsServer(const TlsServer&) = delete;
  TlsServer& operator=(const TlsServer&) = delete;

  std::uint16_t port() const { return port_; }
  std::string Result() {
    if (thread_.joinable()) thread_.join();
    return result_;
  }

 private:
  void Serve() {
    pollfd poll_fd{listener_.get(), POLLIN, 0};
    if (::poll(&poll_fd, 1, 20000) != 1) {
      result_ = "no client";
      return;
    }
    UniqueFd connection(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    timeval timeout{20, 0};
    (void)::setsockopt(connection.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    SSL* ssl = SSL_new(context_);
    SSL_set_fd(ssl, connection.get());
    if (SSL_accept(ssl) != 1) {
      result_ = "handshake failed";
    } else {
      X509* peer = SSL_get0_peer_certificate(ssl);
      result_ = peer != nullptr ? crypto::Certificate::FromX509(peer).SubjectCommonName() : "no peer certificate";
      result_ += std::string(" ") + SSL_get_version(ssl);
      int digest_nid = NID_undef;
      if (SSL_get_peer_signature_nid(ssl, &digest_nid) == 1) result_ += std::string(" ") + OBJ_nid2sn(digest_nid);
      (void)SSL_write(ssl, "hello", 5);
      (void)SSL_shutdown(ssl);
    }
    SSL_free(ssl);
  }

  UniqueFd listener_;
  std::uint16_t port_ = 0;
  SSL_CTX* context_ = nullptr;
  std::thread thread_;
  std::string result_;
};

std::string TlsClient(std::uint16_t port) {
  UniqueFd socket_fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(port);
  CHILD_CHECK(::connect(socket_fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  timeval timeout{20, 0};
  (void)::setsockopt(socket_fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  SSL_CTX* context = SSL_CTX_new(TLS_client_method());
  CHILD_CHECK(context != nullptr);
  SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nullptr);
  X509_STORE_add_cert(SSL_CTX_get_cert_store(context), Pki().ca.x509());
  CHILD_CHECK(DeviceAuth_SslCtxConfigure(context) == 0);
  SSL* ssl = SSL_new(context);
  SSL_set_fd(ssl, socket_fd.get());
  CHILD_CHECK(SSL_connect(ssl) == 1);
  std::array<char, 5> greeting{};
  CHILD_CHECK(SSL_read(ssl, greeting.data(), greeting.size()) == 5);
  CHILD_CHECK(std::string_view(greeting.data(), greeting.size()) == "hello");
  SSL_free(ssl);
  SSL_CTX_free(context);
  return "ok";
}

TEST_F(BrokerTest, SslCtxConfigureAuthenticatesWithTheDeviceCertificateTls13) {
  UniqueFd channel = AddApp(kAppA, R"({"DeviceAuthentication":"ten_test"})");
  TlsServer server(false);
  std::uint16_t port = server.port();
  EXPECT_EQ(RunApp(channel.get(), [port] { return TlsClient(port); }), "ok");
  EXPECT_EQ(server.Result(), "device-0123 TLSv1.3 SHA256");
  EXPECT_GE(auth_.signatures.load(), 1);
}

TEST_F(BrokerTest, SslCtxConfigureSignsLongerDigestsTls12) {
  UniqueFd channel = AddApp(kAppA, R"({"DeviceAuthentication":"ten_test"})");
  TlsServer server(true);
  std::uint16_t port = server.port();
  EXPECT_EQ(RunApp(channel.get(), [port] { return TlsClient(port); }), "ok");
  EXPECT_EQ(server.Result(), "device-0123 TLSv1.2 SHA384");
}

TEST_F(BrokerTest, SslCtxConfigureWithoutTheCapabilityFails) {
  UniqueFd channel = AddApp(kAppA, R"({})");
  std::string result = RunApp(channel.get(), [] {
    SSL_CTX* context = SSL_CTX_new(TLS_client_method());
    CHILD_CHECK(DeviceAuth_SslCtxConfigure(context) == -1 && errno == EACCES);
    SSL_CTX_free(context);
    return std::string("ok");
  });
  EXPECT_EQ(result, "ok");
}

// ---- application connections --------------------------------------------------

TEST_F(BrokerTest, ApplicationConnectNeedsBothManifestsToListEachOther) {
  UniqueFd a = AddApp(kAppA, std::string(R"({"AllowedApplicationConnections":[")") + kAppB + "\",\"" + kAppD + "\"]}");
  UniqueFd b = AddApp(kAppB, std::string(R"({"AllowedApplicationConnections":[")") + kAppA + "\"]}");
  UniqueFd c = AddApp(kAppC, std::string(R"({"AllowedApplicationConnections":[")") + kAppA + "\"]}");

  EXPECT_EQ(RunApp(b.get(),
                   [] {
                     CHILD_CHECK(Application_Accept(50) == -1 && errno == ETIMEDOUT);
                     return std::string("ok");
                   }),
            "ok");
  RunningApp server = StartApp(b.get(), [] {
    int peer = Application_Accept(20000);
    CHILD_CHECK(peer >= 0);
    std::array<char, 4> ping{};
    CHILD_CHECK(::read(peer, ping.data(), ping.size()) == 4);
    CHILD_CHECK(::write(peer, "pong", 4) == 4);
    return std::string("ok");
  });
  std::string client = RunApp(a.get(), [] {
    CHILD_CHECK(Application_Connect(kAppC) == -1 && errno == EACCES);        // A does not list C
    CHILD_CHECK(Application_Connect(kAppD) == -1 && errno == ECONNREFUSED);  // D is not running
    int peer = Application_Connect(kAppB);
    CHILD_CHECK(peer >= 0);
    CHILD_CHECK(::write(peer, "ping", 4) == 4);
    std::array<char, 4> pong{};
    CHILD_CHECK(::read(peer, pong.data(), pong.size()) == 4);
    CHILD_CHECK(std::string_view(pong.data(), 4) == "pong");
    return std::string("ok");
  });
  EXPECT_EQ(client, "ok");
  EXPECT_EQ(WaitApp(server), "ok");
  // C lists A, but A does not list C.
  EXPECT_EQ(RunApp(c.get(),
                   [] {
                     CHILD_CHECK(Application_Connect(kAppA) == -1 && errno == EACCES);
                     return std::string("ok");
                   }),
            "ok");
  EXPECT_TRUE(Reported(kAppA, "Application_Connect", kAppC));
  EXPECT_TRUE(Reported(kAppC, "Application_Connect", kAppA));
}

// ---- power, time, networking, storage -----------------------------------------

TEST_F(BrokerTest, PowerAndTimeNeedTheirCapabilities) {
  UniqueFd plain = AddApp(kAppA, R"({})");
  UniqueFd privileged = AddApp(kAppB, R"({"PowerControls":true,"SystemTime":true})");
  EXPECT_EQ(RunApp(plain.get(),
                   [] {
                     CHILD_CHECK(PowerManagement_ForceSystemReboot() == -1 && errno == EACCES);
                     timespec when{1'900'000'000, 0};
                     CHILD_CHECK(Clock_SetSystemTime(&when) == -1 && errno == EACCES);
                     return std::string("ok");
                   }),
            "ok");
  EXPECT_TRUE(Reported(kAppA, "PowerManagement_ForceSystemReboot", "PowerControls"));
  EXPECT_TRUE(Reported(kAppA, "Clock_SetSystemTime", "SystemTime"));
  EXPECT_EQ(reboots_.load(), 0);
  EXPECT_FALSE(broker_->simulated().clock_offset());

  EXPECT_EQ(RunApp(privileged.get(),
                   [] {
                     CHILD_CHECK(PowerManagement_ForceSystemReboot() == 0);
                     timespec when{};
                     CHILD_CHECK(::clock_gettime(CLOCK_REALTIME, &when) == 0);
                     when.tv_sec += 3600;
                     CHILD_CHECK(Clock_SetSystemTime(&when) == 0);
                     when.tv_nsec = 1'000'000'000;
                     CHILD_CHECK(Clock_SetSystemTime(&when) == -1 && errno == EINVAL);
                     return std::string("ok");
                   }),
            "ok");
  EXPECT_EQ(reboots_.load(), 1);
  EXPECT_EQ(broker_->simulated().reboot_count(), 1);
  auto offset = broker_->simulated().clock_offset();
  ASSERT_TRUE(offset);
  EXPECT_NEAR(std::chrono::duration<double>(*offset).count(), 3600.0, 30.0);
}

TEST_F(BrokerTest, NetworkingIsReadyOnlyWithANetworkCapability) {
  UniqueFd offline = AddApp(kAppA, R"({})");
  UniqueFd online = AddApp(kAppB, R"({"AllowedConnections":["127.0.0.2"]})");
  auto expect_ready = [](bool expected) {
    return [expected] {
      bool ready = !expected;
      CHILD_CHECK(Networking_IsNetworkingReady(&ready) == 0 && ready == expected);
      return std::string("ok");
    };
  };
  EXPECT_EQ(RunApp(offline.get(), expect_ready(false)), "ok");
  EXPECT_EQ(RunApp(online.get(), expect_ready(true)), "ok");
}

TEST_F(BrokerTest, WithoutABrokerChannelCallsFailWithEnotconn) {
  EXPECT_EQ(RunApp(-1,
                   [] {
                     CHILD_CHECK(GPIO_OpenAsOutput("LED1", GPIO_Value_Low) == -1 && errno == ENOTCONN);
                     bool ready = true;
                     CHILD_CHECK(Networking_IsNetworkingReady(&ready) == -1 && errno == ENOTCONN);
                     return std::string("ok");
                   }),
            "ok");
}

TEST_F(BrokerTest, StorageUsesTheMountedDirectoryOnly) {
  std::filesystem::path directory =
      std::filesystem::temp_directory_path() / ("broker-storage-" + std::to_string(::getpid()));
  std::filesystem::create_directories(directory);
  UniqueFd channel = AddApp(kAppA, R"({"MutableStorage":{"SizeKB":64}})");
  EXPECT_EQ(RunApp(channel.get(),
                   [&] {
                     (void)::setenv("CITADEL_MUTABLE_STORAGE_DIR", directory.c_str(), 1);
                     CHILD_CHECK(Storage_GetMutableDirectory() == directory.string());
                     int file = Storage_OpenMutableFile();
                     CHILD_CHECK(file >= 0 && ::write(file, "x", 1) == 1 && ::close(file) == 0);
                     CHILD_CHECK(std::filesystem::exists(directory / "mutable"));
                     CHILD_CHECK(Storage_DeleteMutableFile() == 0);
                     return std::string("ok");
                   }),
            "ok");
  EXPECT_EQ(RunApp(channel.get(),
                   [&] {
                     (void)::setenv("CITADEL_MUTABLE_STORAGE_DIR", (directory / "absent").c_str(), 1);
                     CHILD_CHECK(Storage_GetMutableDirectory() == nullptr && errno == EACCES);
                     CHILD_CHECK(Storage_OpenMutableFile() == -1 && errno == EACCES);
                     return std::string("ok");
                   }),
            "ok");
  std::filesystem::remove_all(directory);
}

// ---- hostile input on the raw channel ------------------------------------------

TEST_F(BrokerTest, MalformedRequestsGetErrorsAndTheBrokerKeepsServing) {
  UniqueFd hostile = AddApp(kAppA, R"({"Gpio":["LED1"]})");
  UniqueFd other = AddApp(kAppB, R"({})");

  struct Case {
    std::string text;
    int error_number;
  };
  std::vector<Case> cases = {
      {"not json", EINVAL},
      {"", EINVAL},
      {R"({"op":"open","id":1})", EINVAL},
      {R"({"op":"open","id":2,"kind":"Gpio","name":"LED1","direction":"sideways"})", EINVAL},
      {R"({"op":"open","id":3,"kind":"Gpio","name":"LED1","direction":"output","value":7})", EINVAL},
      {R"({"op":"open","id":4,"kind":"Teleporter","name":"X"})", EINVAL},
      {R"({"op":"launch.missiles","id":5})", EINVAL},
      {R"({"op":"auth.sign","id":6,"digest":"00"})", EACCES},
      {R"({"op":"gpio.set","id":7,"value":1})", EINVAL},  // handle op on the app channel
      {std::string(protocol::kMaxMessageBytes + 100, 'x'), EMSGSIZE},
  };
  for (const Case& test_case : cases) {
    Json response = CallRaw(hostile.get(), test_case.text);
    ASSERT_TRUE(response.is_object()) << test_case.text.substr(0, 80);
    EXPECT_EQ(response["ok"], false) << test_case.text.substr(0, 80);
    EXPECT_EQ(response["errno"], test_case.error_number) << test_case.text.substr(0, 80);
  }
  // A request carrying a descriptor is refused (and the descriptor closed).
  UniqueFd stray(::dup(STDERR_FILENO));
  ASSERT_TRUE(SendRaw(hostile.get(), R"({"op":"net.ready","id":9})", stray.get()));
  Json response = ReceiveRaw(hostile.get());
  EXPECT_EQ(response["errno"], EINVAL);
  EXPECT_EQ(response["id"], 9);

  // A valid request still works on the same channel and returns a handle.
  int handle = -1;
  response = CallRaw(hostile.get(),
                     R"({"op":"open","id":10,"kind":"Gpio","name":"LED1","direction":"output","value":1})", &handle);
  EXPECT_EQ(response["ok"], true);
  ASSERT_GE(handle, 0);
  UniqueFd handle_fd(handle);
  response = CallRaw(handle_fd.get(), R"({"op":"gpio.set","id":11,"value":"high"})");
  EXPECT_EQ(response["errno"], EINVAL);
  response = CallRaw(handle_fd.get(), R"({"op":"gpio.set","id":12,"value":0})");
  EXPECT_EQ(response["ok"], true);
  EXPECT_EQ(broker_->simulated().GpioLevel("LED1"), 0);

  response = CallRaw(other.get(), R"({"op":"net.ready","id":1})");
  EXPECT_EQ(response["ok"], true);
  EXPECT_EQ(response["ready"], false);
}

// The crash handler's request (applibs crash_handler.cpp): strictly parsed;
// a malformed one is refused and records nothing, a valid one reaches the
// crash sink under the channel's component id, whatever the request says.
TEST_F(BrokerTest, CrashRequestsAreParsedStrictlyAndReachTheSink) {
  UniqueFd channel = AddApp(kAppA, R"({})");
  const std::string registers = R"("registers":{"rip":"0x401000","rsp":"0x7ffc0000"})";
  const std::string valid_tail =
      R"("signal":11,"signal_code":1,"fault_address":"0x0",)" + registers + R"(,"pcs":["0x401000","0x401234"])";
  std::vector<std::string> malformed = {
      R"({"op":"crash","id":1})",
      R"({"op":"crash","id":2,"signal":0,"signal_code":1,"fault_address":"0x0",)" + registers + R"(,"pcs":[]})",
      R"({"op":"crash","id":3,"signal":65,"signal_code":1,"fault_address":"0x0",)" + registers + R"(,"pcs":[]})",
      R"({"op":"crash","id":4,"signal":11,"signal_code":1,"fault_address":0,)" + registers + R"(,"pcs":[]})",
      R"({"op":"crash","id":5,"signal":11,"signal_code":1,"fault_address":"0X0",)" + registers + R"(,"pcs":[]})",
      R"({"op":"crash","id":6,"signal":11,"signal_code":1,"fault_address":"0x12345678901234567",)" + registers +
          R"(,"pcs":[]})",
      R"({"op":"crash","id":7,"signal":11,"signal_code":1,"fault_address":"0x0","registers":{"RIP":"0x1"},"pcs":[]})",
      R"({"op":"crash","id":8,"signal":11,"signal_code":1,"fault_address":"0x0","registers":[],"pcs":[]})",
      R"({"op":"crash","id":9,"signal":11,"signal_code":1,"fault_address":"0x0",)" + registers + R"(,"pcs":["0xg"]})",
      R"({"op":"crash","id":10,)" + valid_tail + R"(,"stack":"00"})",                       // stack without its address
      R"({"op":"crash","id":11,)" + valid_tail + R"(,"stack_address":"0x1","stack":"0"})",  // odd hex
      R"({"op":"crash","id":12,)" + valid_tail + R"(,"component_id":"someone-else"})",      // unknown member
      R"({"op":"crash","id":13,"signal":11,"signal_code":999,"fault_address":"0x0",)" + registers + R"(,"pcs":[]})",
  };
  std::string too_many_pcs =
      R"({"op":"crash","id":14,"signal":11,"signal_code":1,"fault_address":"0x0",)" + registers + R"(,"pcs":[)";
  for (int i = 0; i < 65; ++i) too_many_pcs += std::string(i == 0 ? "" : ",") + R"("0x1")";
  malformed.push_back(too_many_pcs + "]}");
  std::string too_much_stack = R"({"op":"crash","id":15,)" + valid_tail + R"(,"stack_address":"0x1","stack":")" +
                               std::string(2 * (protocol::kMaxCrashStackBytes + 1), '0') + R"("})";
  malformed.push_back(too_much_stack);
  for (const std::string& text : malformed) {
    Json response = CallRaw(channel.get(), text);
    ASSERT_TRUE(response.is_object()) << text.substr(0, 120);
    EXPECT_EQ(response["ok"], false) << text.substr(0, 120);
    EXPECT_EQ(response["errno"], EINVAL) << text.substr(0, 120);
  }
  {
    std::lock_guard lock(mutex_);
    EXPECT_TRUE(crashes_.empty());
  }

  Json response = CallRaw(
      channel.get(), R"({"op":"crash","id":20,)" + valid_tail + R"(,"stack_address":"0x7ffc0000","stack":"00ff"})");
  EXPECT_EQ(response["ok"], true);
  EXPECT_EQ(response["id"], 20);
  std::lock_guard lock(mutex_);
  ASSERT_EQ(crashes_.size(), 1u);
  const CrashNotice& notice = crashes_[0];
  EXPECT_EQ(notice.component_id, kAppA);
  EXPECT_EQ(notice.signal, 11);
  EXPECT_EQ(notice.signal_code, 1);
  EXPECT_EQ(notice.fault_address, 0u);
  EXPECT_EQ(notice.pcs, (std::vector<std::uint64_t>{0x401000, 0x401234}));
  EXPECT_EQ(notice.registers.size(), 2u);
  EXPECT_EQ(notice.stack_address, 0x7ffc0000u);
  EXPECT_EQ(notice.stack, (Bytes{0x00, 0xff}));
}

// applibs' handler in a real (forked) app: a null dereference reaches the
// sink with the faulting PC first, and the app still dies of SIGSEGV.
// Not in the sanitizer build: ASan installs its own SIGSEGV handler before
// libapplibs.so loads, and applibs leaves an existing handler alone.
#ifndef __SANITIZE_ADDRESS__
TEST_F(BrokerTest, TheApplibsCrashHandlerReportsAndTheAppDiesOfTheSignal) {
  UniqueFd channel = AddApp(kAppB, R"({})");
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    (void)::setenv(protocol::kBrokerFdEnv, std::to_string(channel.get()).c_str(), 1);
    volatile int* volatile nowhere = nullptr;
    // The test process itself has a handler from libapplibs.so's
    // constructor (the disposition was the default at load).
    ::_exit(*nowhere);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), SIGSEGV);
  std::lock_guard lock(mutex_);
  ASSERT_EQ(crashes_.size(), 1u);
  EXPECT_EQ(crashes_[0].component_id, kAppB);
  EXPECT_EQ(crashes_[0].signal, SIGSEGV);
  EXPECT_EQ(crashes_[0].fault_address, 0u);
  ASSERT_FALSE(crashes_[0].pcs.empty());
  EXPECT_FALSE(crashes_[0].registers.empty());
}
#endif  // __SANITIZE_ADDRESS__

TEST_F(BrokerTest, AFloodingAppDoesNotStarveAnother) {
  UniqueFd flooder = AddApp(kAppA, R"({})");
  UniqueFd other = AddApp(kAppB, R"({})");
  ASSERT_TRUE(SetSocketNonBlocking(flooder.get()));
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> flooded{0};
  // Floods requests and never reads the responses.
  std::thread flood([&] {
    std::string request = R"({"op":"net.ready","id":1,"padding":")" + std::string(30000, 'p') + "\"}";
    while (!stop.load()) {
      if (::send(flooder.get(), request.data(), request.size(), MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
        ++flooded;
      } else {
        std::this_thread::yield();
      }
    }
  });
  std::this_thread::sleep_for(200ms);
  for (int i = 0; i < 20; ++i) {
    auto start = std::chrono::steady_clock::now();
    Json response = CallRaw(other.get(), R"({"op":"net.ready","id":)" + std::to_string(i) + "}");
    auto elapsed = std::chrono::steady_clock::now() - start;
    ASSERT_TRUE(response.is_object());
    EXPECT_EQ(response["id"], i);
    EXPECT_LT(elapsed, 1s);
  }
  stop.store(true);
  flood.join();
  EXPECT_GT(flooded.load(), 20U);
}

TEST_F(BrokerTest, RemoveAppClosesTheChannel) {
  UniqueFd channel = AddApp(kAppA, R"({})");
  broker_->RemoveApp(kAppA);
  EXPECT_EQ(RunApp(channel.get(),
                   [] {
                     bool ready = false;
                     CHILD_CHECK(Networking_IsNetworkingReady(&ready) == -1 && errno == ENOTCONN);
                     return std::string("ok");
                   }),
            "ok");
  // The id is free again.
  EXPECT_TRUE(AddApp(kAppA, R"({})").valid());
}

}  // namespace
}  // namespace citadel::broker
