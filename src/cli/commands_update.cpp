// Over-the-air updates (docs/PROTOCOL.md, "Updates"): image upload / list
// (added to the "image" group of commands_image.cpp), deployment ...,
// device-group update-settings and device update-now (added to the groups
// of commands_fleet.cpp). The service decides and checks everything; this
// file reads the image file, moves its bytes, sends requests and renders
// answers with the next step to take.
#include "cli/commands_update.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <set>
#include <span>

#include "app/manifest.hpp"
#include "cli/command_context.hpp"
#include "cli/commands_issues.hpp"
#include "cli/progress.hpp"
#include "cli/table.hpp"
#include "common/encoding.hpp"
#include "common/unique_fd.hpp"
#include "crypto/crypto.hpp"
#include "image/image.hpp"

namespace citadel::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// The service's request body limit, and so the largest chunk it takes.
constexpr std::size_t kChunkBytes = std::size_t{1} << 20;
// The largest image the service stores.
constexpr std::uint64_t kMaxImageBytes = std::uint64_t{1} << 30;
constexpr std::size_t kMaxBatches = 16;
constexpr std::int64_t kMaxOffsetSeconds = 366LL * 24 * 60 * 60;
constexpr std::int64_t kMaxSecurityVersion = 1'000'000;
// `image list` stops after this many pages, so a server that keeps
// answering with a cursor cannot keep the CLI looping forever.
constexpr int kMaxPages = 10'000;
constexpr std::int64_t kMaxPageSize = 1000;
// Refusals the update commands turn into failures with their own hints.
constexpr std::array<int, 3> kRefusals = {400, 404, 409};

using ProblemHints = std::map<std::string, std::string, std::less<>>;

constexpr const char* kPublishHint = "citadel repo publish TARGET_NAME --keys DIR";

// ---- argument syntax -----------------------------------------------------------

// A whole decimal number 0..max, nothing else (no sign, no spaces).
std::optional<std::int64_t> WholeNumber(std::string_view text, std::int64_t max) {
  if (text.empty() || text.size() > 18) return std::nullopt;
  std::int64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < 0 || value > max) return std::nullopt;
  return value;
}

// "90", "90s", "15m", "2h", "1d" -> seconds (at most kMaxOffsetSeconds).
std::optional<std::int64_t> OffsetSeconds(std::string_view text) {
  std::int64_t unit = 1;
  if (!text.empty()) {
    switch (text.back()) {
      case 's':
        unit = 1;
        break;
      case 'm':
        unit = 60;
        break;
      case 'h':
        unit = 60 * 60;
        break;
      case 'd':
        unit = 24 * 60 * 60;
        break;
      default:
        unit = 0;  // no unit: seconds
        break;
    }
    if (unit != 0) text.remove_suffix(1);
  }
  if (unit == 0) unit = 1;
  auto number = WholeNumber(text, kMaxOffsetSeconds / unit);
  if (!number) return std::nullopt;
  return *number * unit;
}

bool IsTokenChar(char c, std::string_view extra) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         extra.find(c) != std::string_view::npos;
}

// A part of a target name as the service accepts it (docs/PROTOCOL.md,
// "Target names"), checked here so that a bad name fails before the upload.
bool IsTargetNamePart(std::string_view text, std::size_t max_length, std::string_view extra) {
  if (text.empty() || text.size() > max_length || text.front() == '.') return false;
  return std::all_of(text.begin(), text.end(), [extra](char c) { return IsTokenChar(c, extra); });
}

bool IsHexId(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string Lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// ---- talking to the service ------------------------------------------------------

// The part of a problem type after "urn:citadel:problem:"; "" for anything else.
std::string ProblemName(const ApiAnswer& answer) {
  if (!answer.body.is_object()) return {};
  auto problem = ParseProblem(answer.body.dump());
  return problem ? problem->Name() : std::string();
}

// The Failure for a refusal, with the hint `hints` gives for its problem type.
Failure RefusalFailure(const ApiAnswer& answer, const FailureContext& context, const ProblemHints& hints) {
  Failure failure = FailureFromResponse(answer.status, answer.body.is_null() ? "" : answer.body.dump(), context);
  if (auto it = hints.find(ProblemName(answer)); it != hints.end()) failure.hint = it->second;
  return failure;
}

// POST whose refusals carry hints for this command's problem types.
Result<ApiAnswer> PostWithHints(ApiClient& api, std::string_view path, const json& body, const FailureContext& context,
                                const ProblemHints& hints) {
  CITADEL_TRY(auto answer, api.PostForAnswer(path, body, context, kRefusals));
  if (answer.status < 200 || answer.status > 299) return std::unexpected(RefusalFailure(answer, context, hints));
  return answer;
}

// Teaches in --help: what the command does and what comes next, above the
// example CommandSet::Command put in the footer.
void Teach(CLI::App* command, const std::string& text) { command->footer(text + "\n\n" + command->get_footer()); }

// ---- image upload ----------------------------------------------------------------

// The image file, mapped read-only: hashing and chunking read the page cache
// rather than process memory (an OS image may be 1 GiB). A file changed
// while it is uploaded is caught by the service's digest check.
class MappedFile {
 public:
  static Result<MappedFile> Open(const fs::path& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      const int error = errno;
      return Fail(error == ENOENT ? ExitCode::kNotFound : ExitCode::kError,
                  "cannot open " + path.string() + ": " + std::strerror(error), "check the file name");
    }
    struct stat status {};
    if (::fstat(fd.get(), &status) != 0 || !S_ISREG(status.st_mode)) {
      return Fail(ExitCode::kUsage, path.string() + " is not a regular file", "pass the image file itself");
    }
    const auto size = static_cast<std::uint64_t>(status.st_size);
    if (size == 0) return Fail(ExitCode::kUsage, path.string() + " is empty", "pass the image file itself");
    if (size > kMaxImageBytes) {
      return Fail(ExitCode::kUsage,
                  path.string() + " has " + FormatBytes(size) + "; the service stores images up to 1 GiB");
    }
    void* address = ::mmap(nullptr, static_cast<std::size_t>(size), PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (address == MAP_FAILED) {
      return Fail(ExitCode::kError, "cannot read " + path.string() + ": " + std::strerror(errno));
    }
    return MappedFile(address, static_cast<std::size_t>(size));
  }

  MappedFile(MappedFile&& other) noexcept
      : address_(std::exchange(other.address_, nullptr)), length_(std::exchange(other.length_, 0)) {}
  MappedFile& operator=(MappedFile&&) = delete;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() {
    if (address_ != nullptr) (void)::munmap(address_, length_);
  }

  std::span<const std::uint8_t> bytes() const { return {static_cast<const std::uint8_t*>(address_), length_}; }
  std::string_view text() const { return {static_cast<const char*>(address_), length_}; }

 private:
  MappedFile(void* address, std::size_t length) : address_(address), length_(length) {}
  void* address_ = nullptr;
  std::size_t length_ = 0;
};

struct ImageUploadOptions {
  fs::path file;
  bool os = false;
  std::string name;
  std::string version;
  std::int64_t security_version = -1;  // -1: not given
};

// The registration body without sha256 and length: from the signed manifest
// for an app image, from the options for an OS image.
Result<json> DescribeUpload(const ImageUploadOptions& options, const MappedFile& file) {
  const std::string file_name = options.file.filename().string();
  if (!IsTargetNamePart(file_name, 128, ".+-_")) {
    return Fail(ExitCode::kUsage, "the file name \"" + file_name + "\" cannot be part of a target name",
                "rename the file: 1-128 letters, digits, '.', '+', '-' or '_', not starting with '.' "
                "(e.g. thermostat-2.0.0.img)");
  }
  if (!options.os) {
    if (!options.name.empty() || !options.version.empty() || options.security_version >= 0) {
      return Fail(ExitCode::kUsage, "--name, --version and --security-version describe an OS image (with --os)",
                  "an app image's name, version and security version come from its signed manifest: change "
                  "app_manifest.json and pack it again");
    }
    auto info = image::ParseImage(file.bytes(), options.file.string());
    if (!info) {
      return Fail(ExitCode::kUsage, options.file.string() + " is not an app image: " + info.error().message(),
                  "pack one with `citadel image pack DIR --key KEY -o FILE`; for an OS image pass --os --name NAME "
                  "--version V");
    }
    auto manifest = app::ParseManifest(info->manifest.dump());
    if (!manifest) {
      return Fail(ExitCode::kUsage, options.file.string() + ": app_manifest.json: " + manifest.error().message(),
                  "fix app_manifest.json and pack the image again");
    }
    if (manifest->version.empty()) {
      return Fail(ExitCode::kUsage, options.file.string() + ": app_manifest.json has no \"Version\"",
                  "add \"Version\": \"2.0.0\" (and raise \"SecurityVersion\" for a security fix) to "
                  "app_manifest.json, then pack the image again");
    }
    return json{{"kind", "app"},
                {"component_id", manifest->component_id},
                {"version", manifest->version},
                {"security_version", manifest->security_version},
                {"file_name", file_name}};
  }
  if (options.name.empty() || options.version.empty()) {
    return Fail(ExitCode::kUsage, "an OS image needs --name and --version",
                "e.g. citadel image upload rootfs.img --os --name citadel-os --version 2.0.0");
  }
  if (!IsTargetNamePart(options.name, 64, "._-")) {
    return Fail(ExitCode::kUsage, "--name \"" + options.name + "\" is not an OS name",
                "1-64 letters, digits, '.', '_' or '-', e.g. citadel-os");
  }
  if (!IsTargetNamePart(options.version, 32, ".+-_")) {
    return Fail(ExitCode::kUsage, "--version \"" + options.version + "\" is not a version",
                "1-32 letters, digits, '.', '+', '-' or '_', e.g. 2.0.1");
  }
  return json{{"kind", "os"},
              {"component_id", options.name},
              {"version", options.version},
              {"security_version", std::max<std::int64_t>(options.security_version, 0)},
              {"file_name", file_name}};
}

// Where the upload of a blob stands at the service.
struct UploadState {
  std::uint64_t received = 0;
  bool complete = false;
  bool accepted = true;  // false: the chunk was not at `received` and was not written
};

const ProblemHints& UploadHints() {
  static const ProblemHints hints = {
      {"upload-in-progress",
       "another upload of the same image is running (another `citadel image upload`?); when it has stopped, run "
       "this command again: it resumes where the service is"},
      {"upload-digest-mismatch",
       "the file changed while it was uploaded (the service deleted the partial upload); run the command again "
       "once the file no longer changes"},
  };
  return hints;
}

// One chunk at `offset` of an image of `length` bytes. An empty chunk at 0
// asks where the upload stands: a fresh upload accepts it, a partial one
// answers 409 upload-offset-mismatch with what it has, a stored image
// answers complete.
Result<UploadState> PutChunk(ApiClient& api, const std::string& path, std::uint64_t offset, std::uint64_t length,
                             std::string_view chunk) {
  static constexpr std::array<int, 2> kHandled = {400, 409};
  CITADEL_TRY(auto answer,
              api.Put(path + QueryString({{"offset", std::to_string(offset)}, {"length", std::to_string(length)}}),
                      chunk, "application/octet-stream", {}, kHandled));
  const json& body = answer.body;
  const bool has_received = body.is_object() && body.contains("received") && body["received"].is_number_unsigned();
  const std::uint64_t received = has_received ? body["received"].get<std::uint64_t>() : 0;
  if (answer.status == 409 && ProblemName(answer) == "upload-offset-mismatch" && has_received) {
    if (received > length) return Fail(ExitCode::kError, "the service reports more bytes than the image has");
    return UploadState{received, false, false};
  }
  if (answer.status != 200) return std::unexpected(RefusalFailure(answer, {}, UploadHints()));
  if (!has_received || !body.contains("complete") || !body["complete"].is_boolean() || received > length) {
    return Fail(ExitCode::kError, "unexpected answer to an upload chunk: " + body.dump(),
                "check that --server points at citadel-server");
  }
  return UploadState{received, body["complete"].get<bool>(), true};
}

struct UploadOutcome {
  std::uint64_t already = 0;  // bytes the service had before this run
  std::uint64_t sent = 0;     // bytes this run sent
};

// Uploads the file in chunks from wherever the service's copy stands.
Result<UploadOutcome> UploadBytes(CommandContext& context, ApiClient& api, const std::string& path,
                                  const MappedFile& file, const std::string& label) {
  const std::string_view bytes = file.text();
  const std::uint64_t length = bytes.size();
  CITADEL_TRY(auto state, PutChunk(api, path, 0, length, {}));
  UploadOutcome outcome{state.complete ? length : state.received, 0};
  if (state.complete) return outcome;
  if (state.received > 0 && !context.json()) {
    context.err() << "Resuming the upload of " << SanitizeForTerminal(label) << " at " << FormatBytes(state.received)
                  << " of " << FormatBytes(length) << ".\n";
  }
  ProgressBar bar(context.json() ? ProgressSink{} : ErrorStreamProgressSink(context.err()), label, length,
                  state.received);
  // Every accepted chunk advances; a mismatch moves to where the service is.
  // Twice the chunks (and some) bounds a service that keeps moving back.
  const std::uint64_t max_requests = 2 * (length / kChunkBytes) + 16;
  for (std::uint64_t request = 0; !state.complete && request < max_requests; ++request) {
    const std::string_view chunk =
        bytes.substr(state.received, std::min<std::uint64_t>(kChunkBytes, length - state.received));
    CITADEL_TRY(state, PutChunk(api, path, state.received, length, chunk));
    if (state.accepted) outcome.sent += chunk.size();
    bar.Update(state.received);
  }
  if (!state.complete) {
    return Fail(ExitCode::kError,
                "the upload of " + label + " is not advancing (the service has " + std::to_string(state.received) +
                    " of " + std::to_string(length) + " bytes)",
                "run the command again: it resumes where the service is");
  }
  bar.Finish();
  return outcome;
}

const ProblemHints& RegisterHints() {
  static const ProblemHints hints = {
      {"invalid-image",
       "the service accepts an app image signed by an active publisher key of the tenant: register the key that "
       "signed it (`citadel publisher-key register KEY.pem --name NAME`) or pack it with a registered key"},
      {"image-exists",
       "these bytes are already registered under another name (`citadel image list` shows it); an image is "
       "registered once"},
      {"target-name-taken",
       "that name belongs to other bytes: raise \"Version\" in app_manifest.json and pack again (for an OS image "
       "pass another --version)"},
      {"image-not-uploaded", "the upload did not complete; run the command again: it resumes"},
  };
  return hints;
}

std::string ShortSha(const json& object, std::string_view key) { return ShortenId(JsonText(object, key)); }

Result<void> ImageUpload(CommandContext& context, const ImageUploadOptions& options) {
  if (options.security_version > kMaxSecurityVersion) {
    return Fail(ExitCode::kUsage, "--security-version must be 0..1000000");
  }
  CITADEL_TRY(auto file, MappedFile::Open(options.file));
  CITADEL_TRY(json request, DescribeUpload(options, file));
  const std::string sha256 = HexEncode(crypto::Sha256(file.bytes()));
  request["sha256"] = sha256;
  request["length"] = file.bytes().size();

  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto upload_path, context.TenantPath("/uploads/" + sha256));
  CITADEL_TRY(auto outcome, UploadBytes(context, *api, upload_path, file, options.file.filename().string()));
  CITADEL_TRY(auto images_path, context.TenantPath("/images"));
  FailureContext failure_context;
  failure_context.forbidden_hint = "uploading images needs a contributor (or admin) token of this tenant";
  CITADEL_TRY(auto answer, PostWithHints(*api, images_path, request, failure_context, RegisterHints()));
  json& image = answer.body;
  // The symbol file `image pack --symbols` wrote beside the image (app.img ->
  // app.sym) goes up with it, so crashes of this version symbolize.
  fs::path symbols_file = options.file;
  symbols_file.replace_extension(".sym");
  std::error_code exists_error;
  json symbols;
  if (symbols_file != options.file && fs::is_regular_file(symbols_file, exists_error)) {
    auto uploaded = UploadSymbolFile(context, symbols_file, /*allow_empty=*/true);
    if (!uploaded) {
      Failure failure = uploaded.error();
      failure.message = "the image is uploaded, but its symbols are not: " + failure.message;
      if (failure.hint.empty())
        failure.hint = "upload them with `citadel symbols upload " + symbols_file.string() + "`";
      return std::unexpected(failure);
    }
    symbols = std::move(*uploaded);
    if (image.is_object()) image["symbols"] = symbols;
  }
  if (context.json()) {
    context.PrintJson(image);
    return {};
  }
  const bool existed = answer.status == 200;
  const std::string target = SanitizeForTerminal(JsonText(image, "target_name"));
  context.out() << (existed ? "Already uploaded " : "Uploaded ") << target << ":\n";
  const auto length = image.value("length", std::uint64_t{0});
  std::vector<std::pair<std::string, std::string>> rows = {
      {"  Target name", target},
      {"  Kind", JsonText(image, "kind")},
      {"  Version", JsonText(image, "version") + " (security version " + JsonText(image, "security_version") + ")"},
      {"  SHA-256", JsonText(image, "sha256")},
      {"  Length", std::to_string(length) + " bytes (" + FormatBytes(length) + ")"},
  };
  if (!existed) {
    std::string sent = FormatBytes(outcome.sent) + " sent";
    if (outcome.already > 0) sent += ", " + FormatBytes(outcome.already) + " were already at the service";
    rows.emplace_back("  Transfer", sent);
    const json delta = image.value("delta", json());
    if (delta.is_object()) {
      const auto delta_length = delta.value("length", std::uint64_t{0});
      rows.emplace_back("  Delta", "from " + ShortSha(delta, "from_sha256") + ": " + FormatBytes(delta_length) + " (" +
                                       std::to_string(length == 0 ? 0 : delta_length * 100 / length) +
                                       "% of the image)");
    } else {
      rows.emplace_back("  Delta", "none");
    }
  }
  if (!symbols.is_null()) {
    rows.emplace_back("  Symbols", symbols_file.filename().string() + " (" +
                                       std::to_string(JsonArray(symbols, "modules").size()) + " modules)");
  }
  RenderKeyValues(context.out(), rows);
  const bool os = JsonText(image, "kind") == "os";
  context.out() << "\nNext, sign it into the image repository:\n  citadel repo publish " << target
                << " --keys DIR\nthen deploy it:\n  citadel deployment create "
                << (os ? "--os-feed FEED" : "--device-group GROUP_ID") << " --images " << target << "\n";
  return {};
}

// ---- image list ----------------------------------------------------------------------

struct ImageListOptions {
  std::string component;
  std::int64_t limit = 100;
};

Result<void> ImageList(CommandContext& context, const ImageListOptions& options) {
  CITADEL_TRY(auto* api, context.Api());
  json images = json::array();
  json next = nullptr;
  std::string cursor;
  std::set<std::string> seen_cursors;
  for (int page = 0; page < kMaxPages; ++page) {
    const auto remaining = options.limit - static_cast<std::int64_t>(images.size());
    CITADEL_TRY(auto path, context.TenantPath("/images" +
                                              QueryString({{"component", options.component},
                                                           {"limit", std::to_string(std::min(remaining, kMaxPageSize))},
                                                           {"after", cursor}})));
    CITADEL_TRY(auto answer, api->Get(path));
    for (auto& image : JsonArray(answer, "images")) {
      if (static_cast<std::int64_t>(images.size()) < options.limit) images.push_back(std::move(image));
    }
    next = answer.is_object() ? answer.value("next", json()) : json();
    if (!next.is_string() || next.get<std::string>().empty()) {
      next = nullptr;
      break;
    }
    if (static_cast<std::int64_t>(images.size()) >= options.limit) break;
    cursor = next.get<std::string>();
    if (!seen_cursors.insert(cursor).second) {
      return Fail(ExitCode::kError, "the server returned the cursor \"" + cursor + "\" twice",
                  "the image list is not advancing; report this with the server's version");
    }
  }
  if (context.json()) {
    context.PrintJson({{"images", images}, {"next", next}});
    return {};
  }
  if (images.empty()) {
    context.out() << "No images. Upload one with `citadel image upload FILE`.\n";
    return {};
  }
  Table table({"TARGET NAME", "KIND", "VERSION", "SECURITY", "SHA-256", "SIZE", "UPLOADED"});
  for (const auto& image : images) {
    table.AddRow({JsonText(image, "target_name"), JsonText(image, "kind"), JsonText(image, "version"),
                  JsonText(image, "security_version"), ShortSha(image, "sha256"),
                  FormatBytes(image.value("length", std::uint64_t{0})), TimeCell(image, "uploaded_at", context.now())});
  }
  table.Render(context.out());
  if (!next.is_null()) {
    context.err() << "More images: run again with a larger --limit (now " << options.limit << ").\n";
  }
  return {};
}

// ---- deployments ---------------------------------------------------------------------

std::string Scope(const json& deployment) {
  if (auto group = JsonText(deployment, "device_group_id"); !group.empty()) return "device group " + group;
  if (auto feed = JsonText(deployment, "os_feed"); !feed.empty()) return "OS feed " + feed;
  return "-";
}

std::string JoinTargets(const json& deployment) {
  std::string text;
  for (const auto& target : JsonArray(deployment, "targets")) {
    if (!text.empty()) text += ", ";
    text += target.is_string() ? target.get<std::string>() : target.dump();
  }
  return text;
}

std::string DescribeBatches(const json& batches) {
  std::string text;
  for (const auto& batch : batches) {
    if (!text.empty()) text += ", ";
    const auto after = batch.value("after_seconds", std::int64_t{0});
    text += JsonText(batch, "percent") + "% " + (after == 0 ? std::string("at once") : "after " + FormatOffset(after));
  }
  return text;
}

std::string PercentText(const json& deployment) { return JsonText(deployment, "percent") + "%"; }

void RenderDeployment(CommandContext& context, const json& deployment) {
  const auto now = context.now();
  std::vector<std::pair<std::string, std::string>> rows = {
      {"ID", JsonText(deployment, "id")},   {"Scope", Scope(deployment)},
      {"Targets", JoinTargets(deployment)}, {"State", JsonText(deployment, "state")},
      {"Percent", PercentText(deployment)},
  };
  const json batches = JsonArray(deployment, "batches");
  if (!batches.empty()) rows.emplace_back("Batches", DescribeBatches(batches));
  rows.emplace_back("Created", TimeDetail(deployment, "created_at", now));
  rows.emplace_back("Updated", TimeDetail(deployment, "updated_at", now));
  rows.emplace_back("Created by", JsonText(deployment, "created_by"));
  RenderKeyValues(context.out(), rows);
}

// What can be done next with a deployment in its state.
void PrintDeploymentNextSteps(CommandContext& context, const json& deployment) {
  const std::string id = JsonText(deployment, "id");
  const std::string state = JsonText(deployment, "state");
  std::vector<std::pair<std::string, std::string>> steps;
  if (state == "active") {
    steps = {{"percent " + id + " N", "raise it"}, {"pause " + id, "stop it where it is"}};
  } else if (state == "paused") {
    steps = {{"resume " + id, "go on"}, {"percent " + id + " N", "raise it (it stays paused)"}};
  } else {
    return;
  }
  steps.emplace_back("rollback " + id, "return its devices to the previous version");
  std::size_t width = 0;
  for (const auto& step : steps) width = std::max(width, step.first.size());
  context.out() << "\nNext:\n";
  for (const auto& [command, what] : steps) {
    context.out() << "  citadel deployment " << command << std::string(width - command.size() + 2, ' ') << "# " << what
                  << "\n";
  }
}

struct DeploymentCreateOptions {
  std::string device_group;
  std::string os_feed;
  std::vector<std::string> images;
  std::int64_t percent = -1;  // -1: not given
  std::string batches;
};

const ProblemHints& CreateHints() {
  static const ProblemHints hints = {
      {"no-image-targets",
       std::string("publish first: sign the images into the image repository with `") + kPublishHint + "`"},
      {"deployment-conflict",
       "it would cut short the rollout of a component this deployment does not name: name that component's "
       "target too, or roll the other deployment back (`citadel deployment list --state active,paused`)"},
      {"invalid-request",
       "every image must be in the signed image targets (`citadel repo publish TARGET_NAME --keys DIR`; "
       "`citadel image list` shows the names); a device group takes app images, an OS feed OS images"},
  };
  return hints;
}

Result<void> DeploymentCreate(CommandContext& context, const DeploymentCreateOptions& options) {
  if (options.device_group.empty() == options.os_feed.empty()) {
    return Fail(ExitCode::kUsage,
                "name the deployment's scope: --device-group ID (app images) or --os-feed FEED (OS images)",
                "`citadel device-group list` shows the groups");
  }
  json body = {{"targets", options.images}};
  if (!options.device_group.empty()) body["device_group_id"] = options.device_group;
  if (!options.os_feed.empty()) body["os_feed"] = options.os_feed;
  if (!options.batches.empty()) {
    CITADEL_TRY(auto batches, ParseBatchesSpec(options.batches));
    json list = json::array();
    for (const auto& batch : batches)
      list.push_back({{"percent", batch.percent}, {"after_seconds", batch.after_seconds}});
    body["batches"] = list;
  } else {
    body["percent"] = options.percent >= 0 ? options.percent : 100;
  }
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/deployments"));
  FailureContext failure_context;
  failure_context.not_found_hint = "list device groups with `citadel device-group list`";
  failure_context.forbidden_hint = "deploying needs a contributor (or admin) token of this tenant";
  CITADEL_TRY(auto answer, PostWithHints(*api, path, body, failure_context, CreateHints()));
  const json& deployment = answer.body;
  if (context.json()) {
    context.PrintJson(deployment);
    return {};
  }
  context.out() << "Created deployment " << JsonText(deployment, "id") << " to "
                << SanitizeForTerminal(Scope(deployment)) << " at " << PercentText(deployment) << ":\n";
  RenderDeployment(context, deployment);
  context.out() << "\nDevices pick it up at their next check-in. Watch it with `citadel deployment show "
                << JsonText(deployment, "id") << "`.\n";
  PrintDeploymentNextSteps(context, deployment);
  return {};
}

struct DeploymentListOptions {
  std::string device_group;
  std::string os_feed;
  std::string state;
};

Result<void> DeploymentList(CommandContext& context, const DeploymentListOptions& options) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/deployments" + QueryString({{"device_group", options.device_group},
                                                                          {"os_feed", options.os_feed},
                                                                          {"state", options.state}})));
  CITADEL_TRY(auto answer, api->Get(path));
  if (context.json()) {
    context.PrintJson(answer);
    return {};
  }
  auto deployments = JsonArray(answer, "deployments");
  if (deployments.empty()) {
    context.out() << "No deployments. Create one with `citadel deployment create --device-group ID --images "
                     "TARGET_NAME`.\n";
    return {};
  }
  Table table({"ID", "SCOPE", "TARGETS", "PERCENT", "STATE", "CREATED"});
  for (const auto& deployment : deployments) {
    table.AddRow({JsonText(deployment, "id"), Scope(deployment), JoinTargets(deployment), PercentText(deployment),
                  JsonText(deployment, "state"), TimeCell(deployment, "created_at", context.now())});
  }
  table.Render(context.out());
  return {};
}

FailureContext DeploymentFailureContext() {
  FailureContext context;
  context.not_found_hint = "list the tenant's deployments with `citadel deployment list`";
  context.forbidden_hint = "changing deployments needs a contributor (or admin) token of this tenant";
  return context;
}

Result<void> DeploymentShow(CommandContext& context, const std::string& id) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/deployments/" + PercentEncode(id)));
  CITADEL_TRY(auto deployment, api->Get(path, DeploymentFailureContext()));
  if (context.json()) {
    context.PrintJson(deployment);
    return {};
  }
  RenderDeployment(context, deployment);
  const json progress = deployment.is_object() ? deployment.value("progress", json::object()) : json::object();
  context.out() << "\nProgress (" << JsonText(progress, "eligible")
                << " devices in the rollout now; reports of the latest state):\n";
  Table table({"STATE", "DEVICES"});
  for (const char* state : {"downloading", "installing", "pending-reboot", "committed", "failed"}) {
    const std::string count = JsonText(progress, state);
    table.AddRow({state, count.empty() ? "0" : count});
  }
  table.Render(context.out());
  PrintDeploymentNextSteps(context, deployment);
  return {};
}

struct DeploymentChange {
  const char* action;       // the route: pause, resume, rollback, percent
  const char* description;  // the command's one line
  const char* conflict;     // why 409 deployment-conflict, for its hint
  const char* done;         // "Paused", ...
  const char* effect;       // what devices do now
};

constexpr std::array<DeploymentChange, 4> kChanges = {{
    {"pause", "Pause a deployment: devices that run it keep it, no more devices start it",
     "only an active deployment can be paused", "Paused",
     "Devices that already run it keep it; no other device starts it."},
    {"resume", "Resume a paused deployment (a batch schedule restarts its wait)",
     "only a paused deployment can be resumed", "Resumed", "Devices in the rollout pick it up at their next check-in."},
    {"rollback", "Roll a deployment back: its devices return to the previous version (the baseline)",
     "a rolled-back or superseded deployment cannot be rolled back", "Rolled back",
     "Its devices return to the previous version at their next check-in (a device whose security version floor is "
     "above that version keeps this one)."},
    {"percent", "Raise the share of the scope's devices a deployment reaches (only upwards)",
     "the percent only goes up, of an active or paused deployment", "Raised",
     "The same devices stay in; more join at their next check-in."},
}};

Result<void> ChangeDeployment(CommandContext& context, const DeploymentChange& change, const std::string& id,
                              std::int64_t percent) {
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/deployments/" + PercentEncode(id) + "/" + change.action));
  const json body = std::string_view(change.action) == "percent" ? json{{"percent", percent}} : json::object();
  const std::string conflict_hint =
      std::string(change.conflict) + "; `citadel deployment show " + id + "` shows where it is";
  CITADEL_TRY(auto answer,
              PostWithHints(*api, path, body, DeploymentFailureContext(), {{"deployment-conflict", conflict_hint}}));
  const json& deployment = answer.body;
  if (context.json()) {
    context.PrintJson(deployment);
    return {};
  }
  context.out() << change.done << " deployment " << JsonText(deployment, "id") << " (" << JsonText(deployment, "state")
                << ", " << PercentText(deployment) << ").\n"
                << change.effect << "\n";
  PrintDeploymentNextSteps(context, deployment);
  return {};
}

// ---- device-group update-settings, device update-now -----------------------------------

struct GroupSettingsOptions {
  std::string group;
  std::string os_feed;
  std::string window;
  bool no_window = false;
  std::string crash_dumps;  // "on" | "off" | "" (unchanged)
};

std::string WindowText(const json& group) {
  const json window = group.is_object() ? group.value("maintenance_window", json()) : json();
  if (!window.is_object()) return "any time";
  return JsonText(window, "start") + " UTC for " + JsonText(window, "duration_minutes") + " minutes";
}

Result<void> GroupUpdateSettings(CommandContext& context, const GroupSettingsOptions& options) {
  json body = json::object();
  if (!options.os_feed.empty()) body["os_feed"] = options.os_feed;
  if (!options.window.empty()) {
    CITADEL_TRY(auto window, ParseWindowSpec(options.window));
    body["maintenance_window"] = {{"start", window.start}, {"duration_minutes", window.duration_minutes}};
  }
  if (options.no_window) body["maintenance_window"] = nullptr;
  if (!options.crash_dumps.empty()) {
    CITADEL_TRY(bool crash_dumps, ParseOnOff(options.crash_dumps, "--crash-dumps"));
    body["crash_dumps"] = crash_dumps;
  }
  if (body.empty()) {
    return Fail(ExitCode::kUsage, "nothing to change",
                "pass --os-feed FEED, --maintenance-window HH:MM/MINUTES, --no-maintenance-window or "
                "--crash-dumps on|off");
  }
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/device-groups/" + PercentEncode(options.group)));
  FailureContext failure_context;
  failure_context.not_found_hint = "list device groups with `citadel device-group list`";
  failure_context.forbidden_hint = "changing a group's update settings needs a contributor (or admin) token";
  CITADEL_TRY(auto group, api->Patch(path, body, failure_context));
  if (context.json()) {
    context.PrintJson(group);
    return {};
  }
  context.out() << "Updated device group " << SanitizeForTerminal(JsonText(group, "name")) << " ("
                << JsonText(group, "id") << "):\n";
  std::vector<std::pair<std::string, std::string>> rows = {
      {"  OS feed", JsonText(group, "os_feed")}, {"  Maintenance window", SanitizeForTerminal(WindowText(group))}};
  if (group.is_object() && group.contains("crash_dumps")) {
    rows.emplace_back("  Crash dumps",
                      group.value("crash_dumps", false) ? "on (stack copies, at most 64 KiB each)" : "off");
  }
  RenderKeyValues(context.out(), rows);
  context.out() << "\nIts devices follow it from their next check-in. OS releases reach it with\n"
                << "  citadel deployment create --os-feed " << SanitizeForTerminal(JsonText(group, "os_feed"))
                << " --images os/NAME/VERSION/FILE\n";
  return {};
}

Result<void> DeviceUpdateNow(CommandContext& context, const std::string& given) {
  const std::string id = Lower(given);
  if (id.size() != 64 || !IsHexId(id)) {
    return Fail(ExitCode::kUsage, "a device ID is 64 hex characters (got \"" + given + "\")",
                "`citadel device show PREFIX` prints a device's full ID");
  }
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/devices/" + id + "/update-now"));
  FailureContext failure_context;
  failure_context.not_found_hint = "the device must be claimed by this tenant; `citadel device list` shows them";
  failure_context.forbidden_hint = "update-now needs a contributor (or admin) token of this tenant";
  CITADEL_TRY(auto answer, PostWithHints(*api, path, json::object(), failure_context, {}));
  (void)answer;
  if (context.json()) {
    context.PrintJson({{"device_id", id}, {"update_now", true}});
    return {};
  }
  context.out() << "Device " << id
                << " installs its assigned updates at its next check-in, even outside its group's maintenance "
                   "window.\nFollow it with `citadel deployment show ID`.\n";
  return {};
}

}  // namespace

// ---- syntax (commands_update.hpp) -----------------------------------------------------

Result<std::vector<BatchSpec>> ParseBatchesSpec(std::string_view text) {
  const std::string hint =
      "write the batches as PERCENT@OFFSET,... with ascending percents and offsets, e.g. --batches "
      "10@0,50@1h,100@2h (offsets in seconds or with s, m, h, d)";
  std::vector<BatchSpec> batches;
  if (text.empty()) return Fail(ExitCode::kUsage, "--batches is empty", hint);
  for (std::size_t start = 0; start <= text.size();) {
    std::size_t end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view part = text.substr(start, end - start);
    start = end + 1;
    const std::string quoted = "batch \"" + std::string(part) + "\"";
    const std::size_t at = part.find('@');
    if (at == std::string_view::npos) return Fail(ExitCode::kUsage, quoted + " has no @OFFSET", hint);
    auto percent = WholeNumber(part.substr(0, at), 100);
    if (!percent || *percent < 1) return Fail(ExitCode::kUsage, quoted + ": the percent must be 1..100", hint);
    auto offset = OffsetSeconds(part.substr(at + 1));
    if (!offset) return Fail(ExitCode::kUsage, quoted + ": the offset must be a duration up to 366 days", hint);
    if (!batches.empty() && *percent <= batches.back().percent) {
      return Fail(ExitCode::kUsage, quoted + ": percents must ascend", hint);
    }
    if (!batches.empty() && *offset <= batches.back().after_seconds) {
      return Fail(ExitCode::kUsage, quoted + ": offsets must ascend", hint);
    }
    if (batches.size() == kMaxBatches) return Fail(ExitCode::kUsage, "at most 16 batches", hint);
    batches.push_back({*percent, *offset});
  }
  return batches;
}

Result<WindowSpec> ParseWindowSpec(std::string_view text) {
  const auto fail = [&] {
    return Fail(ExitCode::kUsage, "\"" + std::string(text) + "\" is not a maintenance window",
                "write it as HH:MM/MINUTES: the UTC start (00:00 to 23:59) and the length (1 to 1440 minutes), e.g. "
                "--maintenance-window 02:00/120");
  };
  const std::size_t slash = text.find('/');
  if (slash != 5 || text[2] != ':') return fail();
  auto hours = WholeNumber(text.substr(0, 2), 23);
  auto minutes = WholeNumber(text.substr(3, 2), 59);
  auto duration = WholeNumber(text.substr(6), 1440);
  if (!hours || !minutes || !duration || *duration < 1) return fail();
  return WindowSpec{std::string(text.substr(0, 5)), *duration};
}

std::optional<std::int64_t> ParseOffsetSeconds(std::string_view text) { return OffsetSeconds(text); }

std::string FormatOffset(std::int64_t seconds) {
  if (seconds <= 0) return "0s";
  std::string text;
  for (const auto& [unit, name] : std::array<std::pair<std::int64_t, const char*>, 4>{
           {{24 * 60 * 60, "d"}, {60 * 60, "h"}, {60, "m"}, {1, "s"}}}) {
    if (seconds >= unit) {
      text += std::to_string(seconds / unit) + name;
      seconds %= unit;
    }
  }
  return text;
}

// ---- registration ------------------------------------------------------------------------

void RegisterUpdateCommands(CommandSet& commands) {
  // ---- image upload / list, in the group commands_image.cpp made
  auto* image = commands.Group(&commands.root(), "image", "Signed images");
  image->description("Signed images: pack and inspect them locally, upload them to the service and list them there");

  auto upload = std::make_shared<ImageUploadOptions>();
  auto* upload_command = commands.Command(
      image, "upload", "Upload an image to the service (resumable, idempotent) and register it as an update target",
      "citadel image upload blink.img", [upload](CommandContext& context) { return ImageUpload(context, *upload); });
  upload_command
      ->add_option("FILE", upload->file, "The image: an app image (`citadel image pack`) or, with --os, an OS image")
      ->required();
  upload_command->add_flag("--os", upload->os, "An OS image (its name and version come from --name and --version)");
  upload_command->add_option("--name", upload->name, "OS name, e.g. citadel-os (with --os)")->type_name("NAME");
  upload_command->add_option("--version", upload->version, "OS version, e.g. 2.0.0 (with --os)")->type_name("V");
  upload_command
      ->add_option("--security-version", upload->security_version,
                   "OS anti-rollback number 0..1000000 (with --os; default 0)")
      ->type_name("N");
  Teach(upload_command,
        "Uploads FILE in 1 MiB chunks with its SHA-256 (a cut upload resumes where the service is; uploading the\n"
        "same image again changes nothing) and registers it. An app image's target name, version and security\n"
        "version come from its signed manifest: apps/<ComponentId>/<Version>/<file name>. An OS image needs\n"
        "--os --name NAME --version V: os/<NAME>/<V>/<file name>. The service also makes a delta from the\n"
        "component's previous image (images up to 256 MiB).\n"
        "When a symbol file with the image's name and .sym (app.img -> app.sym, written by\n"
        "`citadel image pack --symbols`) lies beside it, it is uploaded too, so crashes show function (file:line).\n\n"
        "Next: sign the target into the image repository (`citadel repo publish TARGET_NAME --keys DIR`),\n"
        "then deploy it (`citadel deployment create --device-group ID --images TARGET_NAME`).");

  auto list = std::make_shared<ImageListOptions>();
  auto* list_command = commands.Command(image, "list", "List the images uploaded to the service, by target name",
                                        "citadel image list --component 1689d8b2-c835-2e27-27ad-e894d6d15fa9",
                                        [list](CommandContext& context) { return ImageList(context, *list); });
  list_command->add_option("--component", list->component, "Only this app's ComponentId or this OS name")
      ->type_name("ID");
  list_command->add_option("--limit", list->limit, "At most N images (default 100)")
      ->type_name("N")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1'000'000}).description(""));
  Teach(list_command,
        "Next: `citadel repo publish TARGET_NAME --keys DIR` signs an image into the image repository;\n"
        "`citadel deployment create` deploys it.");

  // ---- deployment
  auto* deployment =
      commands.Group(&commands.root(), "deployment", "Roll images out to device groups and OS feeds, staged");

  auto create = std::make_shared<DeploymentCreateOptions>();
  auto* create_command = commands.Command(
      deployment, "create",
      "Deploy signed images to a device group (apps) or an OS feed (OS), at a percent or in batches",
      "citadel deployment create --device-group grp_8a1f03d2 --images apps/1689d8b2-c835-2e27-27ad-e894d6d15fa9/2.0.0/"
      "blink.img --batches 10@0,50@1h,100@2h",
      [create](CommandContext& context) { return DeploymentCreate(context, *create); });
  auto* group_option =
      create_command->add_option("--device-group", create->device_group, "Deploy app images to this device group")
          ->type_name("ID");
  create_command->add_option("--os-feed", create->os_feed, "Deploy OS images to every group following this feed")
      ->type_name("FEED")
      ->excludes(group_option);
  create_command
      ->add_option("--images", create->images,
                   "Target names (`citadel image list`), one per component; repeatable or comma-separated")
      ->type_name("NAME")
      ->delimiter(',')
      ->required();
  auto* percent_option =
      create_command->add_option("--percent", create->percent, "Share of the scope's devices, 0..100 (default 100)")
          ->type_name("N")
          ->check(CLI::Range(std::int64_t{0}, std::int64_t{100}).description(""));
  create_command
      ->add_option("--batches", create->batches,
                   "A schedule PERCENT@OFFSET,... e.g. 10@0,50@1h,100@2h (the service advances it)")
      ->type_name("SPEC")
      ->excludes(percent_option);
  Teach(create_command,
        "The images must be signed into the image repository first (`citadel repo publish`). A new deployment\n"
        "supersedes the scope's earlier ones for the same components. Each device decides by itself whether it\n"
        "is in the percent, and stays in as the percent grows.\n\n"
        "Next: `citadel deployment show ID` shows its progress; `pause`, `resume`, `percent`, `rollback` steer it.");

  auto list_deployments = std::make_shared<DeploymentListOptions>();
  auto* list_deployments_command = commands.Command(
      deployment, "list", "List deployments, newest first", "citadel deployment list --state active,paused",
      [list_deployments](CommandContext& context) { return DeploymentList(context, *list_deployments); });
  list_deployments_command->add_option("--device-group", list_deployments->device_group, "Only this group's")
      ->type_name("ID");
  list_deployments_command->add_option("--os-feed", list_deployments->os_feed, "Only this feed's")->type_name("FEED");
  list_deployments_command
      ->add_option("--state", list_deployments->state,
                   "Only these states, comma-separated: active, paused, rolled-back, superseded")
      ->type_name("STATES");
  Teach(list_deployments_command, "Next: `citadel deployment show ID` shows one with its progress.");

  auto show_id = std::make_shared<std::string>();
  auto* show_command = commands.Command(
      deployment, "show", "Show a deployment and how far its devices are (downloading ... committed, failed)",
      "citadel deployment show dep_5b1e9c0f",
      [show_id](CommandContext& context) { return DeploymentShow(context, *show_id); });
  show_command->add_option("ID", *show_id, "Deployment ID")->type_name("")->required();
  Teach(show_command,
        "Counts are the devices' latest reports; \"in the rollout\" is the claimed devices in the scope times the\n"
        "percent.\n\nNext: `citadel deployment pause|resume|rollback ID` or `citadel deployment percent ID N`.");

  for (const auto& change : kChanges) {
    auto id = std::make_shared<std::string>();
    auto percent = std::make_shared<std::int64_t>(0);
    const bool with_percent = std::string_view(change.action) == "percent";
    const std::string example =
        std::string("citadel deployment ") + change.action + " dep_5b1e9c0f" + (with_percent ? " 50" : "");
    auto* command = commands.Command(
        deployment, change.action, change.description, example,
        [&change, id, percent](CommandContext& context) { return ChangeDeployment(context, change, *id, *percent); });
    command->add_option("ID", *id, "Deployment ID")->type_name("")->required();
    if (with_percent) {
      command->add_option("N", *percent, "The new percent, above the current one")
          ->type_name("")
          ->required()
          ->check(CLI::Range(std::int64_t{0}, std::int64_t{100}).description(""));
    }
    Teach(command, std::string(change.effect) + "\n\nNext: `citadel deployment show ID` shows the progress.");
  }

  // ---- device-group update-settings, device update-now (groups of commands_fleet.cpp)
  auto* device_group = commands.Group(&commands.root(), "device-group", "Device groups");
  auto settings = std::make_shared<GroupSettingsOptions>();
  auto* settings_command = commands.Command(
      device_group, "update-settings", "Set a group's OS feed, maintenance window and crash dumps",
      "citadel device-group update-settings grp_8a1f03d2 --os-feed retail-eval --maintenance-window 02:00/120",
      [settings](CommandContext& context) { return GroupUpdateSettings(context, *settings); });
  settings_command->add_option("GROUP_ID", settings->group, "Device group ID")->type_name("")->required();
  settings_command
      ->add_option("--os-feed", settings->os_feed, "The OS feed the group follows ([a-z0-9-]{1,32}; default retail)")
      ->type_name("FEED");
  auto* window_option = settings_command
                            ->add_option("--maintenance-window", settings->window,
                                         "When devices may install: UTC start and minutes, e.g. 02:00/120")
                            ->type_name("HH:MM/MINUTES");
  settings_command->add_flag("--no-maintenance-window", settings->no_window, "Devices may install at any time")
      ->excludes(window_option);
  settings_command
      ->add_option("--crash-dumps", settings->crash_dumps,
                   "on: crash reports carry a copy of the crashing thread's stack (at most 64 KiB); default off")
      ->type_name("on|off");
  Teach(settings_command,
        "An OS deployment to a feed reaches every group following it (e.g. retail-eval gets releases first).\n"
        "Devices install only inside the window, unless `citadel device update-now` asks one to.\n"
        "--crash-dumps on makes the group's devices add the crashing thread's stack to crash reports (off by\n"
        "default: stacks may hold user data); they learn it at their next check-in.\n\n"
        "Next: `citadel deployment create --os-feed FEED --images os/NAME/VERSION/FILE`.");

  auto* device = commands.Group(&commands.root(), "device", "Devices");
  auto device_id = std::make_shared<std::string>();
  auto* update_now = commands.Command(
      device, "update-now", "Make a device install its assigned updates at its next check-in, ignoring the window",
      "citadel device update-now 3f2a9c0d17b4...e41b",
      [device_id](CommandContext& context) { return DeviceUpdateNow(context, *device_id); });
  update_now->add_option("DEVICE_ID", *device_id, "Full device ID (64 hex characters)")->type_name("")->required();
  Teach(update_now,
        "The device refreshes its update metadata at once and installs what its deployments assign it.\n\n"
        "Next: `citadel deployment show ID` shows its report.");
}

}  // namespace citadel::cli
