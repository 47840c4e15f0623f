// applibs' crash handler (docs/ARCHITECTURE.md, "Failure reporting"): when
// an app that links libapplibs.so dies of SIGSEGV, SIGBUS, SIGILL, SIGFPE,
// SIGABRT or SIGTRAP, it tells the runtime what it can see from inside:
// signal, si_code, fault address, the general registers, the program
// counters of the crashing thread and (always; the runtime decides whether
// to keep it) up to kMaxCrashStackBytes of its stack. The message is the
// broker's "crash" request (broker/protocol.hpp).
//
// Contract: installed by a constructor when the library loads, only for
// signals whose disposition is still the default (an app's own handlers, or
// a sanitizer's, are left alone; an app installing its own later replaces
// ours). The handler runs on an alternate stack (main thread; other threads
// use their own stack), never allocates, never loops unbounded, takes no
// lock, and uses only system calls the app's seccomp filter allows
// (sendto, recvfrom, poll, clock_gettime, tgkill, getpid, gettid). It waits
// at most kCrashAnswerTimeoutMs for the broker, then returns: with
// SA_RESETHAND the disposition is the default again, so a fault re-executes
// and the kernel kills the app with the original signal; signals that do
// not re-trigger by themselves (SIGABRT, SIGTRAP, sent by kill or raise) are
// raised again.
//
// SECURITY: nothing here is trusted by the runtime (the broker parses the
// request strictly, and module names and build ids are resolved by the
// runtime from /proc). The handler itself must not make a crash worse: it
// reads the stack only between the stack pointer and the main thread's
// stack end computed at load time.

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>
#include <unwind.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "applibs/channel.hpp"
#include "broker/protocol.hpp"
#include "protocol/failure_report.hpp"

extern char** environ;  // NOLINT(readability-redundant-declaration): unistd.h declares it only with _GNU_SOURCE

namespace citadel::applibs {
namespace {

namespace wire = broker::protocol;

constexpr std::array<int, 6> kCrashSignals = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP};
// Enough for the handler, the unwinder and libc; static so a stack
// overflow still leaves somewhere to run.
constexpr std::size_t kAlternateStackBytes = 64 * 1024;
constexpr std::size_t kMaxFrames = citadel::protocol::kMaxCrashFrames;
constexpr std::size_t kAnswerBytes = 512;
// Messages read while waiting for the answer (answers to other threads'
// requests may be queued before it).
constexpr int kMaxMessagesSkipped = 16;

alignas(16) std::array<unsigned char, kAlternateStackBytes> g_alternate_stack{};
std::array<char, wire::kMaxMessageBytes> g_message{};
std::array<char, kAnswerBytes> g_answer{};
std::atomic_flag g_handling = ATOMIC_FLAG_INIT;
// The main thread's stack, [g_stack_low, g_stack_high), from load time; 0
// when it could not be determined (then no stack is copied).
std::uintptr_t g_stack_low = 0;
std::uintptr_t g_stack_high = 0;

// ---- formatting without allocation -------------------------------------------

class MessageWriter {
 public:
  MessageWriter(char* buffer, std::size_t capacity) : buffer_(buffer), capacity_(capacity) {}

  void Text(std::string_view text) {
    if (!room(text.size())) return;
    for (char c : text) buffer_[size_++] = c;
  }
  void Decimal(std::int64_t value) {
    std::array<char, 24> digits{};
    std::size_t count = 0;
    bool negative = value < 0;
    // Work on the magnitude as unsigned: -INT64_MIN does not fit.
    std::uint64_t magnitude = negative ? 0 - static_cast<std::uint64_t>(value) : static_cast<std::uint64_t>(value);
    do {
      digits[count++] = static_cast<char>('0' + magnitude % 10);
      magnitude /= 10;
    } while (magnitude != 0 && count < digits.size());
    if (negative) Text("-");
    while (count > 0) Text(std::string_view(&digits[--count], 1));
  }
  // "0x..." with the quotes, lower-case, no leading zeros.
  void Address(std::uint64_t value) {
    std::array<char, 16> digits{};
    std::size_t count = 0;
    do {
      digits[count++] = kHexDigits[value & 0xFU];
      value >>= 4U;
    } while (value != 0 && count < digits.size());
    Text("\"0x");
    while (count > 0) Text(std::string_view(&digits[--count], 1));
    Text("\"");
  }
  void HexBytes(const unsigned char* data, std::size_t length) {
    if (!room(2 * length)) return;
    for (std::size_t i = 0; i < length; ++i) {
      buffer_[size_++] = kHexDigits[data[i] >> 4U];
      buffer_[size_++] = kHexDigits[data[i] & 0xFU];
    }
  }

  bool ok() const { return ok_; }
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return capacity_; }
  // Back to an earlier size (dropping what did not fit), failure cleared.
  void Rewind(std::size_t size) {
    size_ = size;
    ok_ = true;
  }

 private:
  static constexpr std::string_view kHexDigits = "0123456789abcdef";

  bool room(std::size_t bytes) {
    if (!ok_ || capacity_ - size_ < bytes) {
      ok_ = false;
      return false;
    }
    return true;
  }

  char* buffer_;
  std::size_t capacity_;
  std::size_t size_ = 0;
  bool ok_ = true;
};

// ---- what the handler collects -------------------------------------------------

struct Register {
  const char* name;
  std::uint64_t value;
};

// The general registers of the interrupted context, and its PC and SP.
struct Context {
  std::array<Register, 40> registers{};
  std::size_t count = 0;
  std::uint64_t pc = 0;
  std::uint64_t sp = 0;

  void Add(const char* name, std::uint64_t value) {
    if (count < registers.size()) registers[count++] = Register{name, value};
  }
};

Context ReadContext(const ucontext_t* context) {
  Context result;
  if (context == nullptr) return result;
#if defined(__x86_64__)
  const greg_t* gregs = context->uc_mcontext.gregs;
  auto value = [&](int index) { return static_cast<std::uint64_t>(gregs[index]); };
  static constexpr std::array<std::pair<const char*, int>, 18> kNames = {{
      {"rip", REG_RIP},
      {"rsp", REG_RSP},
      {"rbp", REG_RBP},
      {"rax", REG_RAX},
      {"rbx", REG_RBX},
      {"rcx", REG_RCX},
      {"rdx", REG_RDX},
      {"rsi", REG_RSI},
      {"rdi", REG_RDI},
      {"r8", REG_R8},
      {"r9", REG_R9},
      {"r10", REG_R10},
      {"r11", REG_R11},
      {"r12", REG_R12},
      {"r13", REG_R13},
      {"r14", REG_R14},
      {"r15", REG_R15},
      {"eflags", REG_EFL},
  }};
  for (const auto& [name, index] : kNames) result.Add(name, value(index));
  result.pc = value(REG_RIP);
  result.sp = value(REG_RSP);
#elif defined(__aarch64__)
  static constexpr std::array<const char*, 31> kNames = {
      "x0",  "x1",  "x2",  "x3",  "x4",  "x5",  "x6",  "x7",  "x8",  "x9",  "x10", "x11", "x12", "x13", "x14", "x15",
      "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28", "x29", "x30"};
  result.Add("pc", context->uc_mcontext.pc);
  result.Add("sp", context->uc_mcontext.sp);
  for (std::size_t i = 0; i < kNames.size(); ++i) result.Add(kNames[i], context->uc_mcontext.regs[i]);
  result.pc = context->uc_mcontext.pc;
  result.sp = context->uc_mcontext.sp;
#else
#error "crash_handler.cpp: add this architecture's registers"
#endif
  return result;
}

// Program counters: frame 0 is the interrupted PC; the unwinder walks the
// handler's own frames and the kernel's signal frame first, so its frames
// count only after the one at that PC.
struct Backtrace {
  std::array<std::uint64_t, kMaxFrames> pcs{};
  std::size_t count = 0;
  bool past_signal_frame = false;
  int steps = 0;  // bounds the walk even if a corrupt stack makes it cycle
};

_Unwind_Reason_Code CollectFrame(_Unwind_Context* context, void* argument) {
  auto* trace = static_cast<Backtrace*>(argument);
  if (++trace->steps > static_cast<int>(2 * kMaxFrames)) return _URC_END_OF_STACK;
  int before_instruction = 0;
  auto pc = static_cast<std::uint64_t>(_Unwind_GetIPInfo(context, &before_instruction));
  if (pc == 0) return _URC_END_OF_STACK;
  if (!trace->past_signal_frame) {
    if (pc == trace->pcs[0]) trace->past_signal_frame = true;
    return _URC_NO_REASON;
  }
  if (trace->count >= trace->pcs.size()) return _URC_END_OF_STACK;
  trace->pcs[trace->count++] = pc;
  return _URC_NO_REASON;
}

// ---- talking to the broker -------------------------------------------------------

// CITADEL_BROKER_FD, read from the environment by hand (getenv is not
// async-signal-safe and applibs' cached copy may not be initialized).
int FindBrokerFd() {
  constexpr std::string_view kPrefix = "CITADEL_BROKER_FD=";
  static_assert(kPrefix.size() == std::string_view(wire::kBrokerFdEnv).size() + 1);
  if (environ == nullptr) return -1;
  for (int i = 0; i < 4096 && environ[i] != nullptr; ++i) {
    const char* entry = environ[i];
    std::size_t matched = 0;
    while (matched < kPrefix.size() && entry[matched] == kPrefix[matched]) ++matched;
    if (matched != kPrefix.size()) continue;
    int value = 0;
    const char* digit = entry + matched;
    if (*digit == '\0') return -1;
    for (int count = 0; *digit != '\0'; ++digit, ++count) {
      if (*digit < '0' || *digit > '9' || count >= 9) return -1;
      value = value * 10 + (*digit - '0');
    }
    return value;
  }
  return -1;
}

std::int64_t MonotonicMs() {
  timespec now{};
  (void)::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<std::int64_t>(now.tv_sec) * 1000 + now.tv_nsec / 1'000'000;
}

// Whether `answer` is the response to request `id`: responses start with
// {"id":N (the broker writes members sorted).
bool AnswersRequest(const char* answer, std::size_t length, std::uint64_t id) {
  std::array<char, 64> expected{};
  MessageWriter writer(expected.data(), expected.size());
  writer.Text("{\"id\":");
  writer.Decimal(static_cast<std::int64_t>(id));
  if (!writer.ok() || length <= writer.size()) return false;
  for (std::size_t i = 0; i < writer.size(); ++i) {
    if (answer[i] != expected[i]) return false;
  }
  char next = answer[writer.size()];
  return next == ',' || next == '}';
}

// Sends the request and waits (bounded) for its answer; errors are ignored:
// the app dies the same way either way.
void SendAndWait(int fd, const char* message, std::size_t length, std::uint64_t id) {
  ssize_t sent = -1;
  for (int attempt = 0; attempt < 3; ++attempt) {
    sent = ::send(fd, message, length, MSG_NOSIGNAL);
    if (sent >= 0 || errno != EINTR) break;
  }
  if (sent < 0) return;
  const std::int64_t deadline = MonotonicMs() + wire::kCrashAnswerTimeoutMs;
  for (int round = 0; round < kMaxMessagesSkipped; ++round) {
    std::int64_t left = deadline - MonotonicMs();
    if (left <= 0) return;
    pollfd entry{fd, POLLIN, 0};
    int ready = ::poll(&entry, 1, static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return;
    // No control buffer: a descriptor meant for another thread's request
    // is discarded by the kernel. A long answer is truncated, and the
    // prefix is all that is compared.
    ssize_t got = ::recv(fd, g_answer.data(), g_answer.size(), MSG_DONTWAIT);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (got <= 0) return;
    if (AnswersRequest(g_answer.data(), static_cast<std::size_t>(got), id)) return;
  }
}

void FormatAndSend(int signal_number, const siginfo_t* info, const ucontext_t* context) {
  int fd = FindBrokerFd();
  if (fd < 0) return;
  Context registers = ReadContext(context);
  Backtrace trace;
  trace.pcs[trace.count++] = registers.pc;
  if (registers.pc != 0) _Unwind_Backtrace(CollectFrame, &trace);

  const std::uint64_t id = NextRequestId();
  MessageWriter writer(g_message.data(), g_message.size());
  writer.Text("{\"op\":\"");
  writer.Text(wire::kOpCrash);
  writer.Text("\",\"id\":");
  writer.Decimal(static_cast<std::int64_t>(id));
  writer.Text(",\"signal\":");
  writer.Decimal(signal_number);
  writer.Text(",\"signal_code\":");
  writer.Decimal(info != nullptr ? info->si_code : 0);
  writer.Text(",\"fault_address\":");
  // si_addr means something only for a fault the kernel raised (si_code > 0).
  const bool fault = info != nullptr && info->si_code > 0;
  writer.Address(fault ? reinterpret_cast<std::uintptr_t>(info->si_addr) : 0);
  writer.Text(",\"registers\":{");
  for (std::size_t i = 0; i < registers.count; ++i) {
    if (i > 0) writer.Text(",");
    writer.Text("\"");
    writer.Text(registers.registers[i].name);
    writer.Text("\":");
    writer.Address(registers.registers[i].value);
  }
  writer.Text("},\"pcs\":[");
  for (std::size_t i = 0; i < trace.count; ++i) {
    if (i > 0) writer.Text(",");
    writer.Address(trace.pcs[i]);
  }
  writer.Text("]");
  if (!writer.ok()) return;  // cannot happen with these bounds; never send half a message

  // The stack copy goes last, and is dropped first when it does not fit.
  const std::size_t without_stack = writer.size();
  const std::uintptr_t sp = registers.sp;
  if (g_stack_high != 0 && sp >= g_stack_low && sp < g_stack_high) {
    std::size_t length = g_stack_high - sp;
    if (length > wire::kMaxCrashStackBytes) length = wire::kMaxCrashStackBytes;
    writer.Text(",\"stack_address\":");
    writer.Address(sp);
    writer.Text(",\"stack\":\"");
    writer.HexBytes(reinterpret_cast<const unsigned char*>(sp), length);  // NOLINT(performance-no-int-to-ptr)
    writer.Text("\"");
    if (!writer.ok() || writer.capacity() - writer.size() < 1) writer.Rewind(without_stack);
  }
  writer.Text("}");
  if (!writer.ok()) return;
  SendAndWait(fd, g_message.data(), writer.size(), id);
}

bool ReRaiseAfterReturn(int signal_number, const siginfo_t* info) {
  // Faults re-execute and trap again; these do not.
  return signal_number == SIGABRT || signal_number == SIGTRAP || info == nullptr || info->si_code <= 0;
}

void OnCrash(int signal_number, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  // A second thread crashing meanwhile (or a crash inside this handler)
  // goes straight to the default action.
  if (!g_handling.test_and_set()) FormatAndSend(signal_number, info, static_cast<const ucontext_t*>(context));
  if (ReRaiseAfterReturn(signal_number, info)) {
    // SA_RESETHAND made the disposition the default; the signal is blocked
    // until the handler returns, then it ends the app.
    (void)::syscall(SYS_tgkill, ::getpid(), ::gettid(), signal_number);
  }
  errno = saved_errno;
}

// ---- installation ---------------------------------------------------------------------

_Unwind_Reason_Code IgnoreFrame(_Unwind_Context* /*context*/, void* /*argument*/) { return _URC_NO_REASON; }

void RecordMainThreadStack() {
  pthread_attr_t attributes;
  if (::pthread_getattr_np(::pthread_self(), &attributes) != 0) return;
  void* low = nullptr;
  std::size_t size = 0;
  if (::pthread_attr_getstack(&attributes, &low, &size) == 0 && low != nullptr && size > 0) {
    g_stack_low = reinterpret_cast<std::uintptr_t>(low);
    g_stack_high = g_stack_low + size;
  }
  (void)::pthread_attr_destroy(&attributes);
}

__attribute__((constructor)) void InstallCrashHandler() {
  // Runs once while loading, so a crash later finds everything initialized:
  // the stack bounds, and the unwinder's one-time setup.
  RecordMainThreadStack();
  (void)_Unwind_Backtrace(IgnoreFrame, nullptr);

  stack_t current{};
  if (::sigaltstack(nullptr, &current) == 0 && (current.ss_flags & SS_DISABLE) != 0) {
    stack_t alternate{};
    alternate.ss_sp = g_alternate_stack.data();
    alternate.ss_size = g_alternate_stack.size();
    (void)::sigaltstack(&alternate, nullptr);
  }
  for (int signal_number : kCrashSignals) {
    struct sigaction existing {};
    if (::sigaction(signal_number, nullptr, &existing) != 0) continue;
    bool is_default = (existing.sa_flags & SA_SIGINFO) == 0 && existing.sa_handler == SIG_DFL;
    if (!is_default) continue;
    struct sigaction action {};
    action.sa_sigaction = OnCrash;
    action.sa_flags = static_cast<int>(SA_ONSTACK | SA_SIGINFO | SA_RESETHAND);
    (void)::sigemptyset(&action.sa_mask);
    // The other crash signals wait while this one is reported.
    for (int other : kCrashSignals) (void)::sigaddset(&action.sa_mask, other);
    (void)::sigaction(signal_number, &action, nullptr);
  }
}

}  // namespace
}  // namespace citadel::applibs
