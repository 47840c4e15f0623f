// Failure reporting (docs/PROTOCOL.md, "Failure reports"; docs/ARCHITECTURE.md,
// "Failure reporting"): issue list / show / resolve / mute / reopen, device
// report list, device telemetry (added to the "device" group of
// commands_fleet.cpp) and symbols upload. The service deduplicates,
// symbolizes and counts; this file checks arguments, sends requests and
// renders the answers with the next step to take.
#include "cli/commands_issues.hpp"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <array>
#include <set>

#include "cli/command_context.hpp"
#include "cli/commands_update.hpp"
#include "cli/progress.hpp"
#include "cli/table.hpp"
#include "common/file.hpp"
#include "symbols/symbol_file.hpp"

namespace citadel::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// List commands stop after this many pages, so a server that keeps
// answering with a cursor cannot keep the CLI looping forever.
constexpr int kMaxPages = 1000;
constexpr std::int64_t kMaxPageSize = 1000;
constexpr std::int64_t kMaxSinceSeconds = 366LL * 24 * 60 * 60;
constexpr std::size_t kMaxIssueIdBytes = 128;

constexpr std::array<std::string_view, 3> kIssueStates = {"open", "resolved", "muted"};
constexpr std::array<std::string_view, 7> kFailureClasses = {"app-crash",         "app-exit",      "restart-loop",
                                                             "sandbox-violation", "runtime-error", "unplanned-reboot",
                                                             "update-failure"};

std::string Joined(std::span<const std::string_view> words) {
  std::string text;
  for (auto word : words) text += (text.empty() ? "" : ", ") + std::string(word);
  return text;
}

void Teach(CLI::App* command, const std::string& text) { command->footer(text + "\n\n" + command->get_footer()); }

// A device ID as the service names devices: 64 hex characters (lower-cased).
Result<std::string> DeviceIdArgument(const std::string& given) {
  std::string id = given;
  std::transform(id.begin(), id.end(), id.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (id.size() != 64 || id.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return Fail(ExitCode::kUsage, "a device ID is 64 hex characters (got \"" + SanitizeForTerminal(given) + "\")",
                "`citadel device list` and `citadel device show PREFIX` print devices' full IDs");
  }
  return id;
}

Result<std::string> IssueIdArgument(const std::string& given) {
  const bool plain = !given.empty() && given.size() <= kMaxIssueIdBytes &&
                     std::all_of(given.begin(), given.end(),
                                 [](unsigned char c) { return std::isalnum(c) != 0 || c == '_' || c == '-'; });
  if (!plain) {
    return Fail(ExitCode::kUsage, "\"" + SanitizeForTerminal(given) + "\" is not an issue ID",
                "`citadel issue list` shows the IDs");
  }
  return given;
}

FailureContext IssueFailureContext(std::string_view forbidden) {
  FailureContext context;
  context.not_found_hint = "`citadel issue list` shows this tenant's issues";
  context.forbidden_hint = std::string(forbidden);
  return context;
}

// Follows `next` cursors until `limit` items of `key` are collected.
Result<json> GetPages(CommandContext& context, const std::string& suffix,
                      const std::vector<std::pair<std::string, std::string>>& query, std::string_view key,
                      std::int64_t limit, const FailureContext& failure_context, json& next) {
  CITADEL_TRY(auto* api, context.Api());
  json items = json::array();
  std::string cursor;
  std::set<std::string> seen_cursors;
  next = nullptr;
  for (int page = 0; page < kMaxPages; ++page) {
    const auto remaining = limit - static_cast<std::int64_t>(items.size());
    auto page_query = query;
    page_query.emplace_back("limit", std::to_string(std::min(remaining, kMaxPageSize)));
    page_query.emplace_back("after", cursor);
    CITADEL_TRY(auto path, context.TenantPath(suffix + QueryString(page_query)));
    CITADEL_TRY(auto answer, api->Get(path, failure_context));
    for (auto& item : JsonArray(answer, key)) {
      if (static_cast<std::int64_t>(items.size()) < limit) items.push_back(std::move(item));
    }
    next = answer.is_object() ? answer.value("next", json()) : json();
    if (!next.is_string() || next.get<std::string>().empty()) {
      next = nullptr;
      break;
    }
    if (static_cast<std::int64_t>(items.size()) >= limit) break;
    cursor = next.get<std::string>();
    if (!seen_cursors.insert(cursor).second) {
      return Fail(ExitCode::kError, "the server returned the cursor \"" + SanitizeForTerminal(cursor) + "\" twice",
                  "the list is not advancing; report this with the server's version");
    }
  }
  return items;
}

std::string StateText(const json& issue) {
  std::string state = JsonText(issue, "state");
  if (issue.is_object() && issue.value("regression", false) && state == "open") state += " (regression)";
  return state;
}

std::string CountText(const json& object, std::string_view key) {
  const auto text = JsonText(object, key);
  return text.empty() ? "0" : text;
}

// ---- symbols upload --------------------------------------------------------------

Result<void> SymbolsUpload(CommandContext& context, const fs::path& file) {
  CITADEL_TRY(auto answer, UploadSymbolFile(context, file));
  if (context.json()) {
    context.PrintJson(answer);
    return {};
  }
  context.out() << "Uploaded symbols from " << SanitizeForTerminal(file.string()) << ":\n"
                << DescribeUploadedSymbols(answer)
                << "\nCrash frames in these modules are shown as function (file:line) in `citadel issue show ID`,\n"
                   "for reports that arrive from now on.\n";
  return {};
}

// ---- issue list / show / state -----------------------------------------------------

struct IssueListOptions {
  std::string product;
  std::string state;
  std::string failure_class;
  std::string since;
  std::int64_t limit = 50;
};

Result<void> IssueList(CommandContext& context, const IssueListOptions& options) {
  std::vector<std::pair<std::string, std::string>> query = {{"product", options.product}};
  if (!options.state.empty()) {
    CITADEL_TRY(auto state, ParseIssueStateSpec(options.state));
    query.emplace_back("state", state);
  }
  if (!options.failure_class.empty()) {
    CITADEL_TRY(auto failure_class, ParseFailureClassSpec(options.failure_class));
    query.emplace_back("class", failure_class);
  }
  if (!options.since.empty()) {
    CITADEL_TRY(auto since, ParseSinceSpec(options.since, context.now()));
    query.emplace_back("since", since);
  }
  FailureContext failure_context;
  failure_context.not_found_hint = "`citadel product list` shows the products";
  json next;
  CITADEL_TRY(auto issues, GetPages(context, "/issues", query, "issues", options.limit, failure_context, next));
  if (context.json()) {
    context.PrintJson({{"issues", issues}, {"next", next}});
    return {};
  }
  if (issues.empty()) {
    context.out() << "No issues" << (options.state.empty() && options.since.empty() ? "" : " match")
                  << ". Devices report crashes, restart loops, sandbox violations, update failures and unplanned\n"
                     "reboots with their check-ins; they show up here, one issue per distinct failure.\n";
    return {};
  }
  context.out() << IssueTable(issues, context.now());
  if (!next.is_null()) {
    context.err() << "More issues: run again with a larger --limit (now " << options.limit << ").\n";
  }
  context.out() << "\nNext: `citadel issue show ID` shows an issue's frames, devices, versions and reports.\n";
  return {};
}

void RenderReports(CommandContext& context, const json& reports, bool with_device) {
  // On an issue the reports share the issue and differ by device; on a
  // device the other way round.
  std::vector<std::string> headers = {"OCCURRED", with_device ? "DEVICE" : "ISSUE"};
  for (const char* header : {"CLASS", "ERROR", "COMPONENT", "VERSION", "COUNT", "MESSAGE"})
    headers.emplace_back(header);
  Table table(std::move(headers));
  for (const auto& report : reports) {
    std::vector<std::string> row = {TimeCell(report, "occurred_at", context.now())};
    row.push_back(with_device ? ShortenId(JsonText(report, "device_id")) : JsonText(report, "issue_id"));
    const auto component = JsonText(report, "component_id");
    row.insert(row.end(), {JsonText(report, "class"), JsonText(report, "error_code"),
                           component.empty() ? "(device)" : ShortenId(component), JsonText(report, "component_version"),
                           CountText(report, "occurrences"), SanitizeForTerminal(JsonText(report, "message"))});
    table.AddRow(std::move(row));
  }
  table.Render(context.out());
}

Result<void> IssueShow(CommandContext& context, const std::string& given) {
  CITADEL_TRY(auto id, IssueIdArgument(given));
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/issues/" + PercentEncode(id)));
  CITADEL_TRY(auto issue, api->Get(path, IssueFailureContext("")));
  if (context.json()) {
    context.PrintJson(issue);
    return {};
  }
  const auto now = context.now();
  context.out() << SanitizeForTerminal(JsonText(issue, "title")) << "\n";
  std::vector<std::pair<std::string, std::string>> rows = {
      {"  ID", JsonText(issue, "id")},
      {"  Product", JsonText(issue, "product_id")},
      {"  Class", JsonText(issue, "class")},
      {"  Component", JsonText(issue, "component_id").empty() ? "(device)" : JsonText(issue, "component_id")},
      {"  Error code", SanitizeForTerminal(JsonText(issue, "error_code"))},
      {"  State", StateText(issue)},
  };
  if (auto resolved_in = JsonText(issue, "resolved_in_version"); !resolved_in.empty()) {
    rows.emplace_back("  Resolved in", SanitizeForTerminal(resolved_in));
  }
  rows.emplace_back("  Count", CountText(issue, "count"));
  rows.emplace_back("  Devices", CountText(issue, "device_count"));
  rows.emplace_back("  First seen", TimeDetail(issue, "first_seen", now));
  rows.emplace_back("  Last seen", TimeDetail(issue, "last_seen", now));
  // "versions": names on an issue of the list, {version,count,...} objects
  // on show (rendered as a table below).
  std::string versions;
  for (const auto& version : JsonArray(issue, "versions")) {
    const auto name = version.is_string() ? version.get<std::string>() : JsonText(version, "version");
    versions += (versions.empty() ? "" : ", ") + name;
  }
  rows.emplace_back("  Versions", SanitizeForTerminal(versions));
  RenderKeyValues(context.out(), rows);

  const auto frames = JsonArray(issue, "frames");
  if (!frames.empty()) {
    context.out() << "\nFrames (innermost first):\n";
    for (std::size_t i = 0; i < frames.size(); ++i) {
      context.out() << "  #" << i << "  " << FormatFrame(frames[i]) << "\n";
    }
  }
  const auto devices = JsonArray(issue, "devices");
  if (!devices.empty()) {
    context.out() << "\nDevices (most affected first):\n";
    Table table({"DEVICE", "COUNT", "LAST SEEN"});
    for (const auto& device : devices) {
      table.AddRow(
          {ShortenId(JsonText(device, "device_id")), CountText(device, "count"), TimeCell(device, "last_seen", now)});
    }
    table.Render(context.out());
  }
  Table version_table({"VERSION", "COUNT", "FIRST SEEN", "LAST SEEN"});
  for (const auto& version : JsonArray(issue, "versions")) {
    if (!version.is_object()) continue;
    version_table.AddRow({SanitizeForTerminal(JsonText(version, "version")), CountText(version, "count"),
                          TimeCell(version, "first_seen", now), TimeCell(version, "last_seen", now)});
  }
  if (version_table.row_count() > 0) {
    context.out() << "\nVersions:\n";
    version_table.Render(context.out());
  }
  const auto reports = JsonArray(issue, "reports");
  if (!reports.empty()) {
    context.out() << "\nLatest reports:\n";
    RenderReports(context, reports, true);
  }
  const auto state = JsonText(issue, "state");
  context.out() << "\nNext: "
                << (state == "open" ? "`citadel issue resolve " + id + "` once a fixed version is deployed, or `mute`."
                                    : "`citadel issue reopen " + id + "`.")
                << "\n";
  return {};
}

struct StateChange {
  const char* action;       // "resolve"
  const char* state;        // "resolved"
  const char* description;  // one line for --help
  const char* effect;       // the teaching paragraph
};

constexpr std::array<StateChange, 3> kStateChanges = {{
    {"resolve", "resolved", "Mark an issue resolved (fixed in the highest version seen so far)",
     "The service records the highest version that has reported it as resolved_in_version. Reports from that\n"
     "version or older (devices not updated yet) are counted and leave it resolved; a report from a newer\n"
     "version reopens it as a regression."},
    {"mute", "muted", "Mute an issue: it keeps counting but stays muted",
     "A muted issue keeps its counts up to date and never reopens; `citadel issue reopen ID` undoes it."},
    {"reopen", "open", "Reopen a resolved or muted issue",
     "The issue counts as open again, without the regression mark."},
}};

Result<void> ChangeIssueState(CommandContext& context, const StateChange& change, const std::string& given) {
  CITADEL_TRY(auto id, IssueIdArgument(given));
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/issues/" + PercentEncode(id)));
  CITADEL_TRY(auto issue, api->Patch(path, {{"state", change.state}},
                                     IssueFailureContext("changing an issue's state needs a contributor (or admin) "
                                                         "token of this tenant")));
  if (context.json()) {
    context.PrintJson(issue);
    return {};
  }
  context.out() << "Issue " << SanitizeForTerminal(JsonText(issue, "id")) << " is now " << StateText(issue);
  if (auto resolved_in = JsonText(issue, "resolved_in_version"); !resolved_in.empty()) {
    context.out() << " (in version " << SanitizeForTerminal(resolved_in) << ")";
  }
  context.out() << ": " << SanitizeForTerminal(JsonText(issue, "title")) << "\n";
  return {};
}

// ---- device report list / telemetry -----------------------------------------------

struct DeviceReportsOptions {
  std::string device;
  std::int64_t limit = 50;
};

Result<void> DeviceReportList(CommandContext& context, const DeviceReportsOptions& options) {
  CITADEL_TRY(auto id, DeviceIdArgument(options.device));
  FailureContext failure_context;
  failure_context.not_found_hint = "the device must be claimed by this tenant; `citadel device list` shows them";
  json next;
  CITADEL_TRY(auto reports,
              GetPages(context, "/devices/" + id + "/reports", {}, "reports", options.limit, failure_context, next));
  if (context.json()) {
    context.PrintJson({{"reports", reports}, {"next", next}});
    return {};
  }
  if (reports.empty()) {
    context.out() << "No failure reports from device " << id << ".\n";
    return {};
  }
  RenderReports(context, reports, false);
  if (!next.is_null()) {
    context.err() << "More reports: run again with a larger --limit (now " << options.limit << ").\n";
  }
  context.out() << "\nNext: `citadel issue show ISSUE` shows the issue a report was counted in.\n";
  return {};
}

struct TelemetryOptions {
  std::string device;
  std::int64_t days = 0;  // 0: the service's default
};

Result<void> DeviceTelemetry(CommandContext& context, const TelemetryOptions& options) {
  CITADEL_TRY(auto id, DeviceIdArgument(options.device));
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath(
                             "/devices/" + id + "/telemetry" +
                             QueryString({{"days", options.days > 0 ? std::to_string(options.days) : std::string()}})));
  FailureContext failure_context;
  failure_context.not_found_hint = "the device must be claimed by this tenant; `citadel device list` shows them";
  CITADEL_TRY(auto answer, api->Get(path, failure_context));
  if (context.json()) {
    context.PrintJson(answer);
    return {};
  }
  const auto days = JsonArray(answer, "days");
  if (days.empty()) {
    context.out() << "No telemetry from device " << id << " yet: it sends some with every check-in.\n";
    return {};
  }
  Table table({"DAY (UTC)", "CHECK-INS", "MAX UPTIME", "MIN FREE MEMORY", "APP RESTARTS", "RECEIVED", "SENT"});
  const auto number = [](const json& day, const char* key) {
    return day.is_object() && day.contains(key) && day[key].is_number_unsigned() ? day[key].get<std::uint64_t>()
                                                                                 : std::uint64_t{0};
  };
  for (const auto& day : days) {
    table.AddRow({JsonText(day, "day"), CountText(day, "check_ins"),
                  FormatOffset(static_cast<std::int64_t>(number(day, "max_uptime_seconds"))),
                  FormatBytes(number(day, "min_free_memory_kb") * 1024), CountText(day, "app_restarts"),
                  FormatBytes(number(day, "rx_bytes")), FormatBytes(number(day, "tx_bytes"))});
  }
  table.Render(context.out());
  return {};
}

}  // namespace

// ---- syntax and rendering (commands_issues.hpp) ------------------------------------

Result<std::string> ParseSinceSpec(std::string_view text, TimePoint now) {
  const std::string hint =
      "give a duration back from now (90s, 30m, 2h, 7d; at most 366d) or an RFC 3339 time such as "
      "2026-11-20T00:00:00Z";
  if (text.find('T') != std::string_view::npos || text.find('-') != std::string_view::npos) {
    auto time = ParseRfc3339(text);
    if (!time) return Fail(ExitCode::kUsage, "--since \"" + std::string(text) + "\" is not an RFC 3339 time", hint);
    return FormatRfc3339(*time);
  }
  auto seconds = ParseOffsetSeconds(text);
  if (!seconds || *seconds > kMaxSinceSeconds) {
    return Fail(ExitCode::kUsage, "--since \"" + std::string(text) + "\" is not a duration or a time", hint);
  }
  return FormatRfc3339(now - std::chrono::seconds(*seconds));
}

Result<std::string> ParseIssueStateSpec(std::string_view text) {
  if (std::find(kIssueStates.begin(), kIssueStates.end(), text) == kIssueStates.end()) {
    return Fail(ExitCode::kUsage, "--state \"" + std::string(text) + "\" is not an issue state",
                "use one of " + Joined(kIssueStates));
  }
  return std::string(text);
}

Result<std::string> ParseFailureClassSpec(std::string_view text) {
  if (std::find(kFailureClasses.begin(), kFailureClasses.end(), text) == kFailureClasses.end()) {
    return Fail(ExitCode::kUsage, "--class \"" + std::string(text) + "\" is not a failure class",
                "use one of " + Joined(kFailureClasses));
  }
  return std::string(text);
}

Result<bool> ParseOnOff(std::string_view text, std::string_view option) {
  if (text == "on") return true;
  if (text == "off") return false;
  return Fail(ExitCode::kUsage, std::string(option) + " takes on or off (got \"" + std::string(text) + "\")",
              "e.g. " + std::string(option) + " on");
}

std::string FormatFrame(const json& frame) {
  std::string address = JsonText(frame, "module");
  if (address.empty()) address = "?";
  address += "+" + (JsonText(frame, "offset").empty() ? std::string("0x?") : JsonText(frame, "offset"));
  const auto function = JsonText(frame, "function");
  if (function.empty()) return SanitizeForTerminal(address);
  const auto file = JsonText(frame, "file");
  const auto line = JsonText(frame, "line");
  if (file.empty()) return SanitizeForTerminal(function + " (" + address + ")");
  // The base name keeps the line short; --json has the full path.
  const auto slash = file.rfind('/');
  const auto base = slash == std::string::npos ? file : file.substr(slash + 1);
  return SanitizeForTerminal(function + " (" + base + (line.empty() || line == "0" ? "" : ":" + line) + ")");
}

std::string IssueTable(const json& issues, TimePoint now) {
  Table table({"ID", "STATE", "CLASS", "COUNT", "DEVICES", "LAST SEEN", "TITLE"});
  for (const auto& issue : issues) {
    table.AddRow({JsonText(issue, "id"), StateText(issue), JsonText(issue, "class"), CountText(issue, "count"),
                  CountText(issue, "device_count"), TimeCell(issue, "last_seen", now),
                  SanitizeForTerminal(JsonText(issue, "title"))});
  }
  return table.ToString();
}

Result<json> UploadSymbolFile(CommandContext& context, const fs::path& file, bool allow_empty) {
  auto text = ReadFile(file, symbols::kMaxSymbolFileBytes);
  if (!text) {
    auto failure = FailureFromError(text.error(), {});
    failure.hint = "make one with `citadel image pack DIR --key KEY -o app.img --symbols app.sym`";
    return std::unexpected(failure);
  }
  auto modules = symbols::ParseSymbolFile(*text);
  if (!modules) {
    return Fail(ExitCode::kUsage, file.string() + " is not a symbol file: " + modules.error().message(),
                "make one with `citadel image pack DIR --key KEY -o app.img --symbols app.sym`");
  }
  if (modules->empty()) {
    if (allow_empty) return json{{"modules", json::array()}};
    return Fail(ExitCode::kUsage, file.string() + " holds no modules",
                "build the app's programs with -g (and a build id, gcc's default) before `citadel image pack`");
  }
  CITADEL_TRY(auto* api, context.Api());
  CITADEL_TRY(auto path, context.TenantPath("/symbols"));
  FailureContext failure_context;
  failure_context.forbidden_hint = "uploading symbols needs a contributor (or admin) token of this tenant";
  return api->PostBytes(path, *text, "text/plain", failure_context);
}

std::string DescribeUploadedSymbols(const json& answer) {
  std::string text;
  for (const auto& module : JsonArray(answer, "modules")) {
    text += "  " + SanitizeForTerminal(JsonText(module, "name")) + "  build id " +
            ShortenId(JsonText(module, "build_id")) + ", " + CountText(module, "functions") + " functions, " +
            CountText(module, "lines") + " lines\n";
  }
  return text.empty() ? "  (no modules)\n" : text;
}

// ---- registration ------------------------------------------------------------------

void RegisterIssueCommands(CommandSet& commands) {
  // ---- symbols
  auto* symbols_group =
      commands.Group(&commands.root(), "symbols", "Symbol files that turn crash frames into function (file:line)");
  auto symbols_file = std::make_shared<fs::path>();
  auto* upload =
      commands.Command(symbols_group, "upload", "Upload a symbol file made by `citadel image pack --symbols`",
                       "citadel symbols upload blink.sym",
                       [symbols_file](CommandContext& context) { return SymbolsUpload(context, *symbols_file); });
  upload->add_option("FILE", *symbols_file, "Symbol file (CITADEL-SYMBOLS 1 text, docs/PROTOCOL.md)")->required();
  Teach(upload,
        "The service stores each module by its GNU build id and symbolizes the crash frames of reports that\n"
        "arrive afterwards. `citadel image upload app.img` uploads app.sym beside it by itself.\n\n"
        "Next: `citadel issue list`; `citadel issue show ID` shows frames as function (file:line).");

  // ---- issue
  auto* issue = commands.Group(&commands.root(), "issue", "Failures from the field, deduplicated into issues");
  auto list = std::make_shared<IssueListOptions>();
  auto* list_command =
      commands.Command(issue, "list", "List issues, most recently seen first",
                       "citadel issue list --state open --since 7d\n  citadel issue list --class app-crash --limit 10",
                       [list](CommandContext& context) { return IssueList(context, *list); });
  list_command->add_option("--product", list->product, "Only this product's issues")->type_name("PRODUCT_ID");
  list_command->add_option("--state", list->state, "Only this state: open, resolved or muted")->type_name("STATE");
  list_command
      ->add_option("--class", list->failure_class,
                   "Only this class: app-crash, app-exit, restart-loop, sandbox-violation, runtime-error, "
                   "unplanned-reboot, update-failure")
      ->type_name("CLASS");
  list_command->add_option("--since", list->since, "Only issues seen since: a duration (30m, 2h, 7d) or RFC 3339 time")
      ->type_name("DURATION|TIME");
  list_command->add_option("--limit", list->limit, "At most N issues (default 50)")
      ->type_name("N")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{100'000}).description(""));
  Teach(list_command,
        "Reports with the same class, component, error code and top frames are one issue, counted across devices\n"
        "and versions; REGRESSION marks a resolved issue that came back in a newer version.\n\n"
        "Next: `citadel issue show ID`.");

  auto show_id = std::make_shared<std::string>();
  auto* show_command = commands.Command(
      issue, "show", "Show an issue: symbolized frames, counts, devices, versions, latest reports",
      "citadel issue show iss_7c1d2e3f", [show_id](CommandContext& context) { return IssueShow(context, *show_id); });
  show_command->add_option("ID", *show_id, "Issue ID (`citadel issue list`)")->type_name("")->required();
  Teach(show_command,
        "Frames are function (file:line) when symbols for the module were uploaded before the report arrived\n"
        "(`citadel symbols upload FILE`), module+offset otherwise.\n\n"
        "Next: `citadel issue resolve ID` once the fix is deployed; `citadel issue mute ID` to stop caring.");

  for (const auto& change : kStateChanges) {
    auto id = std::make_shared<std::string>();
    auto* command = commands.Command(
        issue, change.action, change.description, std::string("citadel issue ") + change.action + " iss_7c1d2e3f",
        [&change, id](CommandContext& context) { return ChangeIssueState(context, change, *id); });
    command->add_option("ID", *id, "Issue ID")->type_name("")->required();
    Teach(command, std::string(change.effect) + "\n\nNext: `citadel issue list --state open`.");
  }

  // ---- device report list, device telemetry (the group of commands_fleet.cpp)
  auto* device = commands.Group(&commands.root(), "device", "Devices");
  auto* report = commands.Group(device, "report", "A device's failure reports");
  auto reports = std::make_shared<DeviceReportsOptions>();
  auto* report_list =
      commands.Command(report, "list", "List a device's failure reports, newest first",
                       "citadel device report list 3f2a9c0d17b4...e41b --limit 20",
                       [reports](CommandContext& context) { return DeviceReportList(context, *reports); });
  report_list->add_option("DEVICE_ID", reports->device, "Full device ID (64 hex characters)")
      ->type_name("")
      ->required();
  report_list->add_option("--limit", reports->limit, "At most N reports (default 50)")
      ->type_name("N")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{100'000}).description(""));
  Teach(report_list,
        "COUNT is the report's occurrences: the device folds a crash loop into few reports with the true count.\n"
        "Reports are kept 90 days; the issues they were counted in keep their counts.\n\n"
        "Next: `citadel issue list` shows them grouped across the fleet.");

  auto telemetry = std::make_shared<TelemetryOptions>();
  auto* telemetry_command =
      commands.Command(device, "telemetry", "Show a device's daily telemetry: check-ins, uptime, memory, restarts",
                       "citadel device telemetry 3f2a9c0d17b4...e41b --days 7",
                       [telemetry](CommandContext& context) { return DeviceTelemetry(context, *telemetry); });
  telemetry_command->add_option("DEVICE_ID", telemetry->device, "Full device ID (64 hex characters)")
      ->type_name("")
      ->required();
  telemetry_command->add_option("--days", telemetry->days, "The last N days (the service keeps 90)")
      ->type_name("N")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{90}).description(""));
  Teach(telemetry_command,
        "One row per UTC day: the device's check-ins, its longest uptime, its lowest free memory, app restarts\n"
        "and bytes received and sent.\n\nNext: `citadel device report list DEVICE_ID`.");
}

}  // namespace citadel::cli
