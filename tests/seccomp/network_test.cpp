// connect()/bind() proxied by the Supervisor for a real child under the
// filter. Forbidden destinations are other loopback addresses with a real
// listener behind them, so that only the policy can be why they fail.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <iostream>
#include <mutex>
#include <thread>
#include <vector>

#include "common/fd_passing.hpp"
#include "seccomp/supervisor.hpp"
#include "supervised_child.hpp"

namespace citadel::seccomp {
namespace {

using testing::ChildOptions;
using testing::Reporter;
using testing::SupervisedChild;

const std::string kComponent = "22222222-2222-2222-2222-222222222222";

class ViolationLog {
 public:
  ViolationSink Sink() {
    return [this](const Violation& violation) {
      std::lock_guard lock(mutex_);
      violations_.push_back(violation);
    };
  }
  std::vector<Violation> Take() {
    std::lock_guard lock(mutex_);
    return violations_;
  }

 private:
  std::mutex mutex_;
  std::vector<Violation> violations_;
};

// Address text + port into a sockaddr of the right family.
struct Endpoint {
  sockaddr_storage storage{};
  socklen_t length = 0;
  Endpoint(const char* address, std::uint16_t port) {
    if (std::strchr(address, ':') != nullptr) {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
      in6->sin6_family = AF_INET6;
      in6->sin6_port = htons(port);
      (void)::inet_pton(AF_INET6, address, &in6->sin6_addr);
      length = sizeof(sockaddr_in6);
    } else {
      auto* in = reinterpret_cast<sockaddr_in*>(&storage);
      in->sin_family = AF_INET;
      in->sin_port = htons(port);
      (void)::inet_pton(AF_INET, address, &in->sin_addr);
      length = sizeof(sockaddr_in);
    }
  }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
};

// A listening TCP socket on an ephemeral port of a loopback address.
struct Listener {
  UniqueFd fd;
  std::uint16_t port = 0;
  explicit Listener(const char* address) {
    Endpoint endpoint(address, 0);
    fd.Reset(::socket(endpoint.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(::bind(fd.get(), endpoint.get(), endpoint.length), 0) << address << ": " << std::strerror(errno);
    EXPECT_EQ(::listen(fd.get(), 8), 0);
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &length);
    port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                             : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  }
  // True if a connection is waiting (checked after the child is done).
  bool HasPendingConnection() const {
    pollfd waiting{fd.get(), POLLIN, 0};
    return ::poll(&waiting, 1, 0) == 1;
  }
};

// A UDP socket on an ephemeral port of a loopback address.
struct DatagramReceiver {
  UniqueFd fd;
  std::uint16_t port = 0;
  explicit DatagramReceiver(const char* address) {
    Endpoint endpoint(address, 0);
    fd.Reset(::socket(endpoint.family(), SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    EXPECT_EQ(::bind(fd.get(), endpoint.get(), endpoint.length), 0) << address << ": " << std::strerror(errno);
    sockaddr_in bound{};
    socklen_t length = sizeof(bound);
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &length);
    port = ntohs(bound.sin_port);
  }
  // Everything that arrived (checked after the child is done), "" if none.
  std::string Receive() const {
    std::string all;
    std::array<char, 256> buffer{};
    ssize_t got = 0;
    while ((got = ::recv(fd.get(), buffer.data(), buffer.size(), 0)) > 0)
      all.append(buffer.data(), static_cast<std::size_t>(got));
    return all;
  }
};

std::uint16_t FreeTcpPort() {
  Listener probe("127.0.0.1");
  return probe.port;
}

bool WaitReadable(int fd, int timeout_ms) {
  pollfd waiting{fd, POLLIN, 0};
  return ::poll(&waiting, 1, timeout_ms) == 1;
}

// Serves one connection: reads "ping", answers "pong".
std::thread PingPongServer(const Listener& listener) {
  return std::thread([fd = listener.fd.get()] {
    if (!WaitReadable(fd, 20000)) return;
    UniqueFd connection(::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC));
    if (!connection || !WaitReadable(connection.get(), 20000)) return;
    std::array<char, 4> buffer{};
    if (::read(connection.get(), buffer.data(), buffer.size()) == 4 && std::string(buffer.data(), 4) == "ping") {
      (void)!::write(connection.get(), "pong", 4);
    }
  });
}

// In the child: connect to address:port (TCP), exchange ping/pong.
void ConnectAndPing(const Reporter& report, const std::string& key, const char* address, std::uint16_t port) {
  Endpoint endpoint(address, port);
  int fd = ::socket(endpoint.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  long rc = ::connect(fd, endpoint.get(), endpoint.length);
  report.Report(key + "_raw_return", std::to_string(rc));
  report.ReportResult(key, rc);
  if (rc != 0) {
    ::close(fd);
    return;
  }
  (void)!::write(fd, "ping", 4);
  std::array<char, 4> reply{};
  if (WaitReadable(fd, 20000) && ::read(fd, reply.data(), reply.size()) == 4) {
    report.Report(key + "_reply", std::string(reply.data(), 4));
  }
  ::close(fd);
}

long ConnectOnly(int type, const char* address, std::uint16_t port) {
  Endpoint endpoint(address, port);
  int fd = ::socket(endpoint.family(), type | SOCK_CLOEXEC, 0);
  long rc = ::connect(fd, endpoint.get(), endpoint.length);
  int saved = errno;
  ::close(fd);
  errno = saved;
  return rc;
}

app::Policy NetworkPolicy(std::uint16_t server_port) {
  app::Policy policy;
  policy.component_id = kComponent;
  policy.allowed_ip_addresses = {"127.0.0.1"};
  policy.tcp_server_ports = {server_port};
  return policy;
}

NetworkRules RulesFor(const app::Policy& policy) {
  auto resolution = ResolveNetworkRules(policy, {});
  EXPECT_TRUE(resolution.has_value());
  return resolution ? resolution->rules : NetworkRules{};
}

TEST(SeccompNetwork, ConnectAndBindFollowThePolicy) {
  Listener allowed("127.0.0.1");
  Listener other_address("127.0.0.2");
  Listener ipv6("::1");
  const std::uint16_t server_port = FreeTcpPort();
  std::uint16_t refused_port = FreeTcpPort();
  if (refused_port == server_port) refused_port = static_cast<std::uint16_t>(server_port + 1);
  const std::string unix_path = ::testing::TempDir() + "/citadel-seccomp-" + std::to_string(::getpid()) + ".sock";
  (void)::unlink(unix_path.c_str());
  const app::Policy policy = NetworkPolicy(server_port);
  DatagramReceiver udp_receiver("127.0.0.1");
  DatagramReceiver udp_forbidden("127.0.0.2");
  const std::uint16_t udp_receiver_port = udp_receiver.port;
  const std::uint16_t udp_forbidden_port = udp_forbidden.port;

  SupervisedChild child = SupervisedChild::Start(policy, [&](const Reporter& report) {
    ConnectAndPing(report, "connect_allowed", "127.0.0.1", allowed.port);
    report.ReportResult("connect_127_0_0_2", ConnectOnly(SOCK_STREAM, "127.0.0.2", other_address.port));
    report.ReportResult("connect_ipv6", ConnectOnly(SOCK_STREAM, "::1", ipv6.port));
    report.ReportResult("udp_connect_unlisted", ConnectOnly(SOCK_DGRAM, "127.0.0.2", 9));
    report.ReportResult("udp_connect_listed", ConnectOnly(SOCK_DGRAM, "127.0.0.1", 9));
    report.ReportResult("socket_raw", ::socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));

    // sendto() with an address on an unconnected UDP socket.
    int udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    Endpoint target("127.0.0.1", allowed.port);
    report.ReportResult("udp_sendto_address", ::sendto(udp, "x", 1, 0, target.get(), target.length));
    ::close(udp);

    // Non-blocking connect: EINPROGRESS (or 0), then the socket completes.
    int nonblocking = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    long rc = ::connect(nonblocking, target.get(), target.length);
    report.ReportResult("nonblocking_connect", rc);
    pollfd writable{nonblocking, POLLOUT, 0};
    int error = -1;
    socklen_t length = sizeof(error);
    if (::poll(&writable, 1, 20000) == 1) ::getsockopt(nonblocking, SOL_SOCKET, SO_ERROR, &error, &length);
    report.Report("nonblocking_so_error", std::to_string(error));
    report.Report("nonblocking_still_nonblocking", std::to_string((::fcntl(nonblocking, F_GETFL) & O_NONBLOCK) != 0));
    ::close(nonblocking);

    // A UDP socket connected to the allowed address cannot name another
    // destination per datagram; send() on it still works.
    int connected_udp = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    Endpoint allowed_udp("127.0.0.1", udp_receiver_port);
    report.ReportResult("udp_connect_allowed", ::connect(connected_udp, allowed_udp.get(), allowed_udp.length));
    Endpoint elsewhere("127.0.0.2", udp_forbidden_port);
    char payload[] = "redirected";
    iovec data{payload, sizeof(payload) - 1};
    msghdr message{};
    message.msg_name = const_cast<sockaddr*>(elsewhere.get());
    message.msg_namelen = elsewhere.length;
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    report.ReportResult("udp_sendmsg_redirect", ::sendmsg(connected_udp, &message, 0));
    mmsghdr messages{message, 0};
    report.ReportResult("udp_sendmmsg_redirect", ::sendmmsg(connected_udp, &messages, 1, 0));
    report.ReportResult("udp_sendto_redirect", ::sendto(connected_udp, "x", 1, 0, elsewhere.get(), elsewhere.length));
    report.Report("udp_send_allowed", std::to_string(::send(connected_udp, "allowed", 7, 0)));
    ::close(connected_udp);

    // Unix sockets: bind passes through; connect is refused to an app that
    // may hold device-network datagram sockets (a descriptor swap between
    // check and call could aim it elsewhere); a missing path is ENOENT.
    int unix_server = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un unix_address{};
    unix_address.sun_family = AF_UNIX;
    std::strncpy(unix_address.sun_path, unix_path.c_str(), sizeof(unix_address.sun_path) - 1);
    auto* unix_sockaddr = reinterpret_cast<sockaddr*>(&unix_address);
    report.ReportResult("unix_bind", ::bind(unix_server, unix_sockaddr, sizeof(unix_address)));
    ::listen(unix_server, 1);
    int unix_client = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    report.ReportResult("unix_connect", ::connect(unix_client, unix_sockaddr, sizeof(unix_address)));
    sockaddr_un missing{};
    missing.sun_family = AF_UNIX;
    std::strncpy(missing.sun_path, "/nonexistent/citadel.sock", sizeof(missing.sun_path) - 1);
    report.ReportResult("unix_connect_missing",
                        ::connect(unix_client, reinterpret_cast<sockaddr*>(&missing), sizeof(missing)));
    ::close(unix_client);
    ::close(unix_server);

    // A server on an allowed port; the test process connects to it.
    report.ReportResult("bind_refused_port", [&] {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      Endpoint refused("127.0.0.1", refused_port);
      long result = ::bind(fd, refused.get(), refused.length);
      int saved = errno;
      ::close(fd);
      errno = saved;
      return result;
    }());
    int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    Endpoint local("127.0.0.1", server_port);
    long bound = ::bind(server, local.get(), local.length);
    report.Report("bind_allowed_raw_return", std::to_string(bound));
    report.ReportResult("bind_allowed", bound);
    report.ReportResult("listen", ::listen(server, 1));
    report.Report("listening", "1");
    if (WaitReadable(server, 20000)) {
      int client = ::accept4(server, nullptr, nullptr, SOCK_CLOEXEC);
      report.ReportResult("accept", client);
      (void)!::write(client, "hi", 2);
      ::close(client);
    }
    ::close(server);
  });

  ViolationLog log;
  Supervisor supervisor(log.Sink());
  std::thread server = PingPongServer(allowed);
  UniqueFd listener = child.TakeListener();
  ASSERT_TRUE(listener.valid()) << "the child could not load the filter";
  ASSERT_TRUE(supervisor.Add(kComponent, child.pid(), std::move(listener), RulesFor(policy)).has_value());
  child.Go();

  // The app's server, reached from the test process.
  std::string from_app_server;
  if (child.WaitFor("listening").has_value()) {
    Endpoint app_server("127.0.0.1", server_port);
    UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::connect(client.get(), app_server.get(), app_server.length) == 0 && WaitReadable(client.get(), 20000)) {
      std::array<char, 2> buffer{};
      if (::read(client.get(), buffer.data(), buffer.size()) == 2) from_app_server.assign(buffer.data(), 2);
    }
  }
  auto results = child.Finish();
  server.join();
  supervisor.Remove(kComponent);
  (void)::unlink(unix_path.c_str());
  ASSERT_EQ(results["done"], "1") << "child status " << child.exit_status();

  const std::string kEacces = std::to_string(EACCES);
  EXPECT_EQ(results["connect_allowed_raw_return"], "0") << "connect() must return 0, not the descriptor";
  EXPECT_EQ(results["connect_allowed_reply"], "pong");
  EXPECT_EQ(results["connect_127_0_0_2"], kEacces);
  EXPECT_FALSE(other_address.HasPendingConnection()) << "127.0.0.2 was reached";
  EXPECT_EQ(results["connect_ipv6"], kEacces);
  EXPECT_FALSE(ipv6.HasPendingConnection()) << "[::1] was reached";
  EXPECT_EQ(results["udp_connect_unlisted"], kEacces);
  EXPECT_EQ(results["udp_connect_listed"], "0");
  EXPECT_EQ(results["socket_raw"], kEacces);
  EXPECT_EQ(results["udp_sendto_address"], kEacces);
  EXPECT_TRUE(results["nonblocking_connect"] == "0" || results["nonblocking_connect"] == std::to_string(EINPROGRESS))
      << results["nonblocking_connect"];
  EXPECT_EQ(results["nonblocking_so_error"], "0");
  EXPECT_EQ(results["nonblocking_still_nonblocking"], "1");
  EXPECT_EQ(results["udp_connect_allowed"], "0");
  EXPECT_EQ(results["udp_sendmsg_redirect"], kEacces);
  EXPECT_EQ(results["udp_sendmmsg_redirect"], kEacces);
  EXPECT_EQ(results["udp_sendto_redirect"], kEacces);
  EXPECT_EQ(results["udp_send_allowed"], "7");
  EXPECT_EQ(udp_receiver.Receive(), "allowed");
  EXPECT_EQ(udp_forbidden.Receive(), "") << "a datagram reached 127.0.0.2";
  EXPECT_EQ(results["unix_bind"], "0");
  EXPECT_EQ(results["unix_connect"], kEacces);
  EXPECT_EQ(results["unix_connect_missing"], std::to_string(ENOENT));
  EXPECT_EQ(results["bind_refused_port"], kEacces);
  EXPECT_EQ(results["bind_allowed_raw_return"], "0");
  EXPECT_EQ(results["listen"], "0");
  EXPECT_EQ(results["accept"], "0");
  EXPECT_EQ(from_app_server, "hi");

  std::vector<std::string> details;
  for (const Violation& violation : log.Take()) {
    EXPECT_EQ(violation.component_id, kComponent);
    details.push_back(violation.syscall + ": " + violation.detail);
  }
  auto reported = [&](const std::string& text) {
    return std::ranges::any_of(details, [&](const std::string& d) { return d.find(text) != std::string::npos; });
  };
  EXPECT_TRUE(
      reported("connect: connect to 127.0.0.2:" + std::to_string(other_address.port) + " (not in AllowedConnections)"));
  EXPECT_TRUE(reported("connect: connect to [::1]:" + std::to_string(ipv6.port)));
  EXPECT_TRUE(reported("connect: connect to 127.0.0.2:9"));
  EXPECT_TRUE(reported("bind: bind TCP 127.0.0.1:" + std::to_string(refused_port)));
  EXPECT_TRUE(reported("sendto: sendto 127.0.0.1:"));
  EXPECT_TRUE(reported("socket: socket(AF_INET, SOCK_RAW"));
  EXPECT_TRUE(reported("sendmsg: sendmsg is refused to apps with AllowedConnections"));
  EXPECT_TRUE(reported("sendmmsg: sendmmsg is refused to apps with AllowedConnections"));
  EXPECT_TRUE(reported("sendto: sendto 127.0.0.2:" + std::to_string(udp_forbidden_port)));
  EXPECT_TRUE(reported("connect: connect to the unix socket \"" + unix_path + "\" is refused"));
  EXPECT_EQ(details.size(), 10U) << ::testing::PrintToString(details);
}

// An app that can never hold a device-network datagram socket (here: a TCP
// server port only) keeps sendmsg, fd passing and unix connects.
TEST(SeccompNetwork, AppsWithoutDatagramGrantsKeepSendmsgAndUnixSockets) {
  const std::string unix_path = ::testing::TempDir() + "/citadel-seccomp-tcp-" + std::to_string(::getpid()) + ".sock";
  (void)::unlink(unix_path.c_str());
  app::Policy policy = NetworkPolicy(FreeTcpPort());
  policy.allowed_ip_addresses.clear();
  ASSERT_FALSE(policy.MayHoldDeviceDatagramSockets());

  SupervisedChild child = SupervisedChild::Start(policy, [&](const Reporter& report) {
    std::array<int, 2> pair{-1, -1};
    report.ReportResult("socketpair", ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair.data()));
    report.Report("sendmsg_with_fd", std::to_string(SendWithFd(pair[0], "x", pair[1], 0)));
    int server = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, unix_path.c_str(), sizeof(address.sun_path) - 1);
    auto* named = reinterpret_cast<sockaddr*>(&address);
    report.ReportResult("unix_bind", ::bind(server, named, sizeof(address)));
    int client = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    report.Report("unix_sendto_address", std::to_string(::sendto(client, "y", 1, 0, named, sizeof(address))));
    report.ReportResult("unix_connect", ::connect(client, named, sizeof(address)));
    ::close(client);
    ::close(server);
  });
  ViolationLog log;
  Supervisor supervisor(log.Sink());
  UniqueFd listener = child.TakeListener();
  ASSERT_TRUE(listener.valid());
  ASSERT_TRUE(supervisor.Add(kComponent, child.pid(), std::move(listener), RulesFor(policy)).has_value());
  child.Go();
  auto results = child.Finish();
  supervisor.Remove(kComponent);
  (void)::unlink(unix_path.c_str());
  ASSERT_EQ(results["done"], "1") << "child status " << child.exit_status();
  EXPECT_EQ(results["socketpair"], "0");
  EXPECT_EQ(results["sendmsg_with_fd"], "1");
  EXPECT_EQ(results["unix_bind"], "0");
  EXPECT_EQ(results["unix_sendto_address"], "1");
  EXPECT_EQ(results["unix_connect"], "0");
  EXPECT_TRUE(log.Take().empty());
}

TEST(SeccompNetwork, InjectedSocketWorksFromAnIsolatedNetworkNamespace) {
  Listener allowed("127.0.0.1");
  app::Policy policy = NetworkPolicy(0);
  policy.tcp_server_ports.clear();
  ChildOptions options;
  options.new_network_namespace = true;
  SupervisedChild child = SupervisedChild::Start(
      policy,
      [&](const Reporter& report) {
        ConnectAndPing(report, "connect_allowed", "127.0.0.1", allowed.port);
        std::array<char, 64> netns{};
        ssize_t length = ::readlink("/proc/self/ns/net", netns.data(), netns.size() - 1);
        report.Report("netns", length > 0 ? std::string(netns.data(), static_cast<std::size_t>(length)) : "?");
      },
      options);

  Supervisor supervisor({});
  std::thread server = PingPongServer(allowed);
  UniqueFd listener = child.TakeListener();
  ASSERT_TRUE(listener.valid()) << "the child could not unshare or load the filter";
  ASSERT_TRUE(supervisor.Add(kComponent, child.pid(), std::move(listener), RulesFor(policy)).has_value());
  child.Go();
  auto results = child.Finish();
  server.join();
  ASSERT_EQ(results["in_new_netns"], "1");
  std::array<char, 64> own_netns{};
  ssize_t length = ::readlink("/proc/self/ns/net", own_netns.data(), own_netns.size() - 1);
  ASSERT_GT(length, 0);
  EXPECT_NE(results["netns"], std::string(own_netns.data(), static_cast<std::size_t>(length)));
  ASSERT_EQ(results["done"], "1") << "child status " << child.exit_status();
  // In its own namespace the child has only a downed lo: this connection
  // can only have been made by the Supervisor.
  EXPECT_EQ(results["connect_allowed"], "0");
  EXPECT_EQ(results["connect_allowed_reply"], "pong");
}

TEST(SeccompNetwork, RewritingTheAddressAfterTheCheckCannotRedirect) {
  // A second thread of the app flips the address between an allowed and a
  // forbidden destination while the first thread connects in a loop. The
  // Supervisor connects with its own copy, so the forbidden listener must
  // never see a connection, whatever each check happened to read.
  Listener allowed("127.0.0.1");
  Listener forbidden("127.0.0.2");
  app::Policy policy = NetworkPolicy(0);
  policy.tcp_server_ports.clear();
  constexpr int kAttempts = 100;
  SupervisedChild child = SupervisedChild::Start(policy, [&](const Reporter& report) {
    Endpoint good("127.0.0.1", allowed.port);
    Endpoint bad("127.0.0.2", forbidden.port);
    sockaddr_in shared_address{};  // the buffer both threads touch
    sockaddr_in* shared = &shared_address;
    std::memcpy(shared, good.get(), sizeof(sockaddr_in));
    std::atomic<bool> stop{false};
    std::thread flipper([&] {
      for (unsigned i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        std::memcpy(&shared->sin_addr,
                    &reinterpret_cast<const sockaddr_in*>((i % 2 == 0) ? bad.get() : good.get())->sin_addr,
                    sizeof(in_addr));
      }
    });
    int connected = 0, refused = 0, other = 0;
    for (int i = 0; i < kAttempts; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (::connect(fd, reinterpret_cast<const sockaddr*>(shared), sizeof(sockaddr_in)) == 0) {
        ++connected;
      } else if (errno == EACCES) {
        ++refused;
      } else {
        ++other;
      }
      ::close(fd);
    }
    stop = true;
    flipper.join();
    report.Report("connected", std::to_string(connected));
    report.Report("refused", std::to_string(refused));
    report.Report("other", std::to_string(other));
  });

  Supervisor supervisor({});
  std::atomic<bool> stop_accepting{false};
  std::atomic<int> accepted{0};
  std::thread acceptor([&] {  // keeps the allowed listener's backlog empty
    while (!stop_accepting) {
      if (!WaitReadable(allowed.fd.get(), 50)) continue;
      UniqueFd connection(::accept4(allowed.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (connection) ++accepted;
    }
  });
  UniqueFd listener = child.TakeListener();
  ASSERT_TRUE(listener.valid());
  ASSERT_TRUE(supervisor.Add(kComponent, child.pid(), std::move(listener), RulesFor(policy)));
  child.Go();
  auto results = child.Finish();
  stop_accepting = true;
  acceptor.join();
  ASSERT_EQ(results["done"], "1") << "child status " << child.exit_status();
  EXPECT_EQ(std::stoi(results["connected"]) + std::stoi(results["refused"]), kAttempts) << results["other"];
  EXPECT_GT(std::stoi(results["connected"]), 0);
  EXPECT_FALSE(forbidden.HasPendingConnection()) << "the rewritten address was connected to";
  std::cout << "connected " << results["connected"] << ", refused at the check " << results["refused"] << "\n";
}

TEST(SeccompNetwork, SlowConnectOfOneAppDoesNotStallAnother) {
  // A full backlog makes the kernel drop SYNs: that connect hangs until the
  // Supervisor's timeout, while a second app is answered at once.
  Listener full("127.0.0.1");
  ASSERT_EQ(::listen(full.fd.get(), 0), 0);
  std::vector<UniqueFd> fillers;
  for (int i = 0; i < 4; ++i) {
    Endpoint endpoint("127.0.0.1", full.port);
    UniqueFd filler(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    (void)::connect(filler.get(), endpoint.get(), endpoint.length);
    fillers.push_back(std::move(filler));
  }
  Listener fast("127.0.0.1");
  app::Policy policy = NetworkPolicy(0);
  policy.tcp_server_ports.clear();
  app::Policy other = policy;
  other.component_id = "33333333-3333-3333-3333-333333333333";

  SupervisedChild slow_child = SupervisedChild::Start(policy, [&](const Reporter& report) {
    report.ReportResult("slow", ConnectOnly(SOCK_STREAM, "127.0.0.1", full.port));
  });
  SupervisedChild fast_child = SupervisedChild::Start(other, [&](const Reporter& report) {
    report.ReportResult("fast", ConnectOnly(SOCK_STREAM, "127.0.0.1", fast.port));
  });
  Supervisor supervisor({});
  UniqueFd slow_listener = slow_child.TakeListener();
  UniqueFd fast_listener = fast_child.TakeListener();
  ASSERT_TRUE(slow_listener.valid() && fast_listener.valid());
  ASSERT_TRUE(supervisor.Add(policy.component_id, slow_child.pid(), std::move(slow_listener), RulesFor(policy)));
  ASSERT_TRUE(supervisor.Add(other.component_id, fast_child.pid(), std::move(fast_listener), RulesFor(other)));
  slow_child.Go();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the slow connect is under way
  const auto started = std::chrono::steady_clock::now();
  fast_child.Go();
  auto fast_results = fast_child.Finish();
  const auto fast_took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(fast_results["fast"], "0");
  EXPECT_LT(fast_took, std::chrono::seconds(3));
  EXPECT_FALSE(slow_child.WaitFor("slow", std::chrono::milliseconds(0)).has_value()) << "the slow connect was not slow";
  // Removing the slow app while its connect is in flight must not hang.
  supervisor.Remove(policy.component_id);
  // Its listener closes with the in-flight connect: the kernel fails the
  // syscall (ENOSYS) instead of leaving the app blocked.
  const auto removed_at = std::chrono::steady_clock::now();
  auto slow_results = slow_child.Finish(std::chrono::seconds(15));
  EXPECT_EQ(slow_results["slow"], std::to_string(ENOSYS));
  EXPECT_LT(std::chrono::steady_clock::now() - removed_at, std::chrono::seconds(3));
}

}  // namespace
}  // namespace citadel::seccomp
