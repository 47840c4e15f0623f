#include "apps/crash_resolver.hpp"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <optional>

#include "common/encoding.hpp"
#include "common/file.hpp"
#include "common/unique_fd.hpp"

namespace citadel::apps {
namespace {

// A crashing app with thousands of mappings is still bounded.
constexpr std::size_t kMaxMapsBytes = 4u << 20;
// Build-id notes are a few dozen bytes; a PT_NOTE beyond this is not read.
constexpr std::size_t kMaxNoteSegmentBytes = 64 * 1024;
constexpr std::string_view kDeletedSuffix = " (deleted)";
constexpr std::string_view kUnknownModule = "[unknown]";

std::optional<std::uint64_t> ParseHex(std::string_view text) {
  std::uint64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value, 16);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

// Splits off the next space-separated field.
std::string_view NextField(std::string_view& rest) {
  std::size_t begin = rest.find_first_not_of(' ');
  if (begin == std::string_view::npos) {
    rest = {};
    return {};
  }
  rest.remove_prefix(begin);
  std::size_t end = rest.find(' ');
  std::string_view field = rest.substr(0, end);
  rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
  return field;
}

// The file name of a mapped path; control bytes (an app names its own
// files) become '?', so the name is always a valid report module name.
std::string FileName(std::string_view path) {
  std::size_t slash = path.rfind('/');
  std::string name(slash == std::string_view::npos ? path : path.substr(slash + 1));
  for (char& c : name) {
    auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) c = '?';
  }
  if (name == "." || name == "..") name.clear();
  return name;
}

// openat2 with RESOLVE_IN_ROOT: the path and every symlink in it resolve
// inside the app's root, never citadeld's.
UniqueFd OpenInAppRoot(pid_t pid, const std::string& path) {
  UniqueFd root(::open(("/proc/" + std::to_string(pid) + "/root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) return {};
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  return UniqueFd(static_cast<int>(::syscall(SYS_openat2, root.get(), path.c_str(), &how, sizeof how)));
}

// The mapped file itself (exactly the inode the process maps, whatever
// happened to its path since); needs CAP_SYS_ADMIN, which citadeld has.
UniqueFd OpenMappedFile(pid_t pid, const MemoryMapping& mapping) {
  auto hex = [](std::uint64_t value) {
    std::array<char, 16> digits{};
    auto result = std::to_chars(digits.data(), digits.data() + digits.size(), value, 16);
    return std::string(digits.data(), result.ptr);
  };
  const std::string range = hex(mapping.start) + "-" + hex(mapping.end);
  std::string path = "/proc/" + std::to_string(pid) + "/map_files/" + range;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (fd) return fd;
  return OpenInAppRoot(pid, mapping.path);
}

struct Module {
  std::string name;
  std::string build_id;
  std::uint64_t base = 0;
};

}  // namespace

std::vector<MemoryMapping> ParseProcMaps(std::string_view text) {
  std::vector<MemoryMapping> mappings;
  while (!text.empty()) {
    std::size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    // start-end perms offset dev inode [path]
    std::string_view rest = line;
    std::string_view range = NextField(rest);
    std::string_view perms = NextField(rest);
    std::string_view offset = NextField(rest);
    std::string_view device = NextField(rest);
    std::string_view inode = NextField(rest);
    std::size_t dash = range.find('-');
    if (dash == std::string_view::npos || perms.size() != 4 || device.empty() || inode.empty()) continue;
    auto start = ParseHex(range.substr(0, dash));
    auto end = ParseHex(range.substr(dash + 1));
    auto file_offset = ParseHex(offset);
    if (!start || !end || !file_offset || *end <= *start) continue;
    MemoryMapping mapping;
    mapping.start = *start;
    mapping.end = *end;
    mapping.file_offset = *file_offset;
    std::size_t path_begin = rest.find_first_not_of(' ');
    if (path_begin != std::string_view::npos) {
      std::string_view path = rest.substr(path_begin);
      if (path.ends_with(kDeletedSuffix)) path.remove_suffix(kDeletedSuffix.size());
      mapping.path = std::string(path);
    }
    mappings.push_back(std::move(mapping));
  }
  return mappings;
}

Expected<std::string> ReadBuildId(int fd) {
  if (::elf_version(EV_CURRENT) == EV_NONE) return MakeError(ErrorCode::kInternal, "libelf: version mismatch");
  Elf* elf = ::elf_begin(fd, ELF_C_READ_MMAP, nullptr);
  if (elf == nullptr) return MakeError(ErrorCode::kParse, std::string("libelf: ") + ::elf_errmsg(-1));
  struct Closer {
    Elf* elf;
    ~Closer() { ::elf_end(elf); }
  } closer{elf};
  if (::elf_kind(elf) != ELF_K_ELF) return MakeError(ErrorCode::kParse, "not an ELF file");
  std::size_t count = 0;
  if (::elf_getphdrnum(elf, &count) != 0) return MakeError(ErrorCode::kParse, "ELF: no program headers");
  for (std::size_t i = 0; i < count; ++i) {
    GElf_Phdr header{};
    if (::gelf_getphdr(elf, static_cast<int>(i), &header) == nullptr || header.p_type != PT_NOTE) continue;
    if (header.p_filesz == 0 || header.p_filesz > kMaxNoteSegmentBytes) continue;
    Elf_Data* data = ::elf_getdata_rawchunk(elf, static_cast<int64_t>(header.p_offset), header.p_filesz,
                                            header.p_align == 8 ? ELF_T_NHDR8 : ELF_T_NHDR);
    if (data == nullptr) continue;
    std::size_t offset = 0;
    GElf_Nhdr note{};
    std::size_t name_offset = 0;
    std::size_t desc_offset = 0;
    while (offset < data->d_size) {
      std::size_t next = ::gelf_getnote(data, offset, &note, &name_offset, &desc_offset);
      if (next == 0 || next <= offset) break;
      offset = next;
      const auto* bytes = static_cast<const std::uint8_t*>(data->d_buf);
      if (note.n_type == NT_GNU_BUILD_ID && note.n_namesz == 4 && std::memcmp(bytes + name_offset, "GNU", 4) == 0 &&
          note.n_descsz > 0 && note.n_descsz <= protocol::kMaxBuildIdBytes) {
        return HexEncode(std::span<const std::uint8_t>(bytes + desc_offset, note.n_descsz));
      }
    }
  }
  return std::string();
}

Expected<std::vector<protocol::CrashFrame>> ResolveCrashFrames(pid_t pid, std::span<const std::uint64_t> pcs) {
  CITADEL_TRY(auto text, ReadFile("/proc/" + std::to_string(pid) + "/maps", kMaxMapsBytes));
  std::vector<MemoryMapping> mappings = ParseProcMaps(text);
  // Each module's load base is the start of its first (lowest) mapping.
  std::map<std::string, std::uint64_t, std::less<>> bases;
  for (const MemoryMapping& mapping : mappings) {
    if (mapping.path.empty()) continue;
    auto [it, inserted] = bases.emplace(mapping.path, mapping.start);
    if (!inserted) it->second = std::min(it->second, mapping.start);
  }
  std::map<std::string, Module, std::less<>> modules;
  std::vector<protocol::CrashFrame> frames;
  frames.reserve(pcs.size());
  for (std::uint64_t pc : pcs) {
    auto mapping = std::find_if(mappings.begin(), mappings.end(),
                                [pc](const MemoryMapping& m) { return pc >= m.start && pc < m.end; });
    protocol::CrashFrame frame;
    if (mapping == mappings.end() || mapping->path.empty()) {
      frame.module = std::string(kUnknownModule);
      frame.offset = pc;
      frames.push_back(std::move(frame));
      continue;
    }
    auto known = modules.find(mapping->path);
    if (known == modules.end()) {
      Module module;
      module.name = FileName(mapping->path);
      if (module.name.empty() || module.name.size() > protocol::kMaxModuleNameBytes) {
        module.name = std::string(kUnknownModule);
      }
      module.base = bases[mapping->path];
      // Pseudo-files ([vdso], [stack], ...) have no file to read.
      if (mapping->path.starts_with("/")) {
        if (UniqueFd fd = OpenMappedFile(pid, *mapping)) {
          if (auto build_id = ReadBuildId(fd.get())) module.build_id = std::move(*build_id);
        }
      }
      known = modules.emplace(mapping->path, std::move(module)).first;
    }
    frame.module = known->second.name;
    frame.build_id = known->second.build_id;
    frame.offset = pc - known->second.base;
    frames.push_back(std::move(frame));
  }
  return frames;
}

}  // namespace citadel::apps
