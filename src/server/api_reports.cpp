// Failure reporting routes (docs/PROTOCOL.md, "Failure reports"): the
// device's upload (mutual TLS), symbol uploads, issues, a device's reports
// and telemetry. The rules are in failures.hpp; the counting is one store
// transaction per batch.
#include <charconv>
#include <memory>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "common/time.hpp"
#include "protocol/failure_report.hpp"
#include "server/api.hpp"
#include "server/api_support.hpp"
#include "server/auth.hpp"
#include "server/data_dir.hpp"
#include "server/failures.hpp"
#include "server/metrics.hpp"
#include "symbols/symbol_file.hpp"

namespace citadel::server {
namespace {

using http::PathParams;
using http::Request;
using http::Response;
using store::Role;

constexpr std::int64_t kSecondsPerDay = 24 * 60 * 60;
constexpr std::int64_t kIssueDevicesShown = 100;
constexpr std::int64_t kIssueReportsShown = 20;
constexpr std::int64_t kDefaultTelemetryDays = 30;
constexpr std::int64_t kRetentionDays = 90;

Response InvalidReport(std::string detail) {
  return Problem(400, "invalid-report", "Invalid failure report", std::move(detail));
}

Response TooLarge(std::string detail) {
  return Problem(413, "payload-too-large", "Payload too large", std::move(detail));
}

Response UnsupportedEncoding() {
  return Problem(415, "unsupported-media-type", "Unsupported media type", "Content-Encoding must be zstd or identity");
}

Response BadQuery(std::string detail) { return Problem(400, "invalid-request", "Invalid request", std::move(detail)); }

Json ParsedOr(const std::string& text, Json fallback) {
  auto parsed = ParseJsonStrict(text);
  return parsed ? std::move(*parsed) : std::move(fallback);
}

Json IssueJson(const store::FailureIssue& issue) {
  return {{"id", issue.id},
          {"product_id", issue.product_id},
          {"class", issue.failure_class},
          {"component_id", issue.component_id},
          {"error_code", issue.error_code},
          {"title", issue.title},
          {"signature", issue.signature},
          {"state", store::IssueStateName(issue.state)},
          {"regression", issue.regression},
          {"count", issue.count},
          {"device_count", issue.device_count},
          {"first_seen", Time(issue.first_seen)},
          {"last_seen", Time(issue.last_seen)},
          {"versions", issue.versions},
          {"resolved_in_version", issue.resolved_in_version}};
}

// The stored report (its JSON with symbolized "frames") and where it is.
Json ReportJson(const store::StoredFailureReport& report) {
  Json json = ParsedOr(report.body, Json::object());
  if (!json.is_object()) json = Json::object();
  json["device_id"] = report.device_id;
  json["issue_id"] = report.issue_id;
  json["received_at"] = Time(report.received_at);
  return json;
}

// Keyset cursors: "<unix seconds>.<id>".
std::string Cursor(std::int64_t at, const std::string& id) { return std::to_string(at) + "." + id; }

bool ParseCursor(const std::string& text, std::int64_t& at, std::string& id) {
  const auto dot = text.find('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 >= text.size() || text.size() > 256) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + dot, at);
  if (ec != std::errc() || end != text.data() + dot) return false;
  id = text.substr(dot + 1);
  return true;
}

bool ParseInteger(std::string_view text, std::int64_t& value) {
  if (text.empty() || text.size() > 18) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size();
}

// ?since=: RFC 3339, or a duration back from now: "<N>d", "<N>h", "<N>m".
std::optional<std::int64_t> ParseSince(const std::string& text, std::int64_t now) {
  if (text.empty()) return 0;
  const char unit = text.back();
  const std::int64_t scale = unit == 'd' ? kSecondsPerDay : unit == 'h' ? 3600 : unit == 'm' ? 60 : 0;
  if (scale != 0) {
    std::int64_t count = 0;
    if (!ParseInteger(std::string_view(text).substr(0, text.size() - 1), count) || count < 0 || count > 100 * 365) {
      return std::nullopt;
    }
    return now - count * scale;
  }
  auto time = ParseRfc3339(text);
  if (!time) return std::nullopt;
  return ToUnixSeconds(*time);
}

// The device, when the tenant holds it; else a response to send.
Expected<store::Device> TenantDevice(ApiContext& ctx, const std::string& tenant_id, const std::string& device_id) {
  auto device = ctx.store.GetDevice(device_id);
  if (!device) return std::unexpected(device.error());
  if (device->tenant_id != tenant_id) return MakeError(ErrorCode::kNotFound, "device not found");
  return device;
}

Response DeviceError(const Error& error) {
  return error.code() == ErrorCode::kNotFound ? NotFound("device") : ErrorResponse(error);
}

Response IssueError(const Error& error) {
  return error.code() == ErrorCode::kNotFound ? NotFound("issue") : ErrorResponse(error);
}

// POST /v1/device/reports
Response UploadReports(ApiContext& ctx, Symbolizer& symbolizer, const Request& request) {
  auto gate = AuthorizeDevice(ctx, request);
  if (gate.refusal) return *gate.refusal;
  const DeviceCaller* device = &*gate.device;
  if (MediaType(request) != "application/json") return UnsupportedMediaType("application/json");
  const std::string encoding = request.Header("content-encoding");
  std::string decompressed;
  const std::string* body = &request.body;
  if (encoding == "zstd") {
    if (request.body.size() > protocol::kMaxCompressedReportBatchBytes) {
      return TooLarge("a compressed batch is at most " + std::to_string(protocol::kMaxCompressedReportBatchBytes) +
                      " bytes");
    }
    auto inflated = DecompressZstdBounded(request.body, protocol::kMaxReportBatchBytes);
    if (!inflated) {
      if (inflated.error().code() == ErrorCode::kTooLarge) return TooLarge(inflated.error().message());
      return InvalidReport(inflated.error().message());
    }
    decompressed = std::move(*inflated);
    body = &decompressed;
  } else if (!encoding.empty() && encoding != "identity") {
    return UnsupportedEncoding();
  }
  auto batch = protocol::ParseReportBatch(*body);
  if (!batch) {
    if (batch.error().code() == ErrorCode::kTooLarge) return TooLarge(batch.error().message());
    return InvalidReport(batch.error().message());
  }

  std::vector<store::FailureReportRecord> records;
  records.reserve(batch->reports.size());
  for (const protocol::FailureReport& report : batch->reports) {
    std::vector<SymbolizedFrame> frames;
    if (report.crash) frames = symbolizer.Symbolize(device->tenant_id, report.crash->frames);
    records.push_back(PrepareReport(report, device->record.product_id, frames, GenerateId("iss")));
  }
  auto ingested = ctx.store.IngestFailureReports(device->tenant_id, device->device_id, records, batch->dropped, Now(),
                                                 ReopensResolvedIssue);
  if (!ingested) return ErrorResponse(ingested.error());
  if (ingested->new_reports > 0) {
    log::Info("failure reports ingested", {{"device_id", device->device_id},
                                           {"new", std::to_string(ingested->new_reports)},
                                           {"batch", std::to_string(batch->reports.size())}});
  }
  ctx.metrics.ReportsIngested(static_cast<std::uint64_t>(ingested->new_reports),
                              batch->reports.size() - static_cast<std::uint64_t>(ingested->new_reports));
  protocol::ReportBatchReply reply;
  reply.acknowledged = std::move(ingested->acknowledged);
  return JsonResponse(200, protocol::ReportBatchReplyToJson(reply));
}

// POST /v1/tenants/{t}/symbols
Response UploadSymbols(ApiContext& ctx, Symbolizer& symbolizer, const Request& request, const Caller& caller,
                       const std::string& tenant_id) {
  if (MediaType(request) != "text/plain") return UnsupportedMediaType("text/plain");
  if (request.body.size() > symbols::kMaxSymbolFileBytes) {
    return TooLarge("a symbol file is at most " + std::to_string(symbols::kMaxSymbolFileBytes) + " bytes");
  }
  auto modules = symbols::ParseSymbolFile(request.body);
  if (!modules) {
    if (modules.error().code() == ErrorCode::kTooLarge) return TooLarge(modules.error().message());
    return Problem(400, "invalid-symbols", "Invalid symbol file", modules.error().message());
  }
  Json listed = Json::array();
  const std::int64_t now = Now();
  for (const symbols::ModuleSymbols& module : *modules) {
    store::SymbolModule stored{tenant_id,
                               module.build_id,
                               module.name,
                               symbols::WriteSymbolFile({module}),
                               static_cast<std::int64_t>(module.functions.size()),
                               static_cast<std::int64_t>(module.lines.size()),
                               now};
    if (auto put = ctx.store.PutSymbolModule(stored); !put) return ErrorResponse(put.error());
    symbolizer.Forget(tenant_id, module.build_id);
    listed.push_back({{"build_id", module.build_id},
                      {"name", module.name},
                      {"functions", stored.functions},
                      {"lines", stored.lines}});
  }
  Audit(ctx.store, tenant_id, caller, "symbols.upload", "", {{"modules", listed.size()}});
  return JsonResponse(201, {{"modules", std::move(listed)}});
}

// GET /v1/tenants/{t}/issues
Response ListIssues(ApiContext& ctx, const Request& request, const std::string& tenant_id) {
  auto limit = PageLimit(request);
  if (!limit) return BadPageLimit();
  store::FailureIssueFilter filter;
  filter.tenant_id = tenant_id;
  filter.limit = *limit;
  filter.product_id = request.QueryParameter("product");
  filter.failure_class = request.QueryParameter("class");
  if (const auto state = request.QueryParameter("state"); !state.empty()) {
    auto parsed = store::ParseIssueState(state);
    if (!parsed) return BadQuery("state must be open, resolved or muted");
    filter.state = *parsed;
  }
  auto since = ParseSince(request.QueryParameter("since"), Now());
  if (!since) return BadQuery("since must be an RFC 3339 time or a duration like 7d, 12h, 30m");
  filter.since = *since;
  if (const auto after = request.QueryParameter("after"); !after.empty()) {
    if (!ParseCursor(after, filter.after_last_seen, filter.after_id)) return BadQuery("after is not a cursor");
  }
  auto issues = ctx.store.ListFailureIssues(filter);
  if (!issues) return ErrorResponse(issues.error());
  return PageResponse("issues", *issues, *limit, IssueJson,
                      [](const store::FailureIssue& issue) { return Cursor(issue.last_seen, issue.id); });
}

// GET /v1/tenants/{t}/issues/{id}
Response GetIssue(ApiContext& ctx, const std::string& tenant_id, const std::string& issue_id) {
  auto issue = ctx.store.GetFailureIssue(tenant_id, issue_id);
  if (!issue) return IssueError(issue.error());
  auto devices = ctx.store.ListFailureIssueDevices(tenant_id, issue_id, kIssueDevicesShown);
  if (!devices) return ErrorResponse(devices.error());
  auto versions = ctx.store.ListFailureIssueVersions(tenant_id, issue_id);
  if (!versions) return ErrorResponse(versions.error());
  store::FailureReportFilter filter;
  filter.tenant_id = tenant_id;
  filter.issue_id = issue_id;
  filter.limit = kIssueReportsShown;
  auto reports = ctx.store.ListFailureReports(filter);
  if (!reports) return ErrorResponse(reports.error());

  Json json = IssueJson(*issue);
  json["frames"] = ParsedOr(issue->frames_json, Json::array());
  Json device_list = Json::array();
  for (const auto& d : *devices) {
    device_list.push_back({{"device_id", d.device_id}, {"count", d.count}, {"last_seen", Time(d.last_seen)}});
  }
  json["devices"] = std::move(device_list);
  Json version_list = Json::array();
  for (const auto& v : *versions) {
    version_list.push_back({{"version", v.version},
                            {"count", v.count},
                            {"first_seen", Time(v.first_seen)},
                            {"last_seen", Time(v.last_seen)}});
  }
  json["versions"] = std::move(version_list);
  Json report_list = Json::array();
  for (const auto& r : *reports) report_list.push_back(ReportJson(r));
  json["reports"] = std::move(report_list);
  return JsonResponse(200, json);
}

// PATCH /v1/tenants/{t}/issues/{id}
Response PatchIssue(ApiContext& ctx, const Request& request, const Caller& caller, const std::string& tenant_id,
                    const std::string& issue_id) {
  auto body = ParseBody(request, {"state"});
  if (!body) return BodyError(body.error());
  auto state_name = StringField(*body, "state", true, 16);
  if (!state_name) return BodyError(state_name.error());
  auto state = store::ParseIssueState(*state_name);
  if (!state) return BadQuery("\"state\" must be open, resolved or muted");
  auto issue = ctx.store.GetFailureIssue(tenant_id, issue_id);
  if (!issue) return IssueError(issue.error());
  // Resolved "in" the highest version seen so far: reports from newer
  // versions are regressions, older ones are devices not updated yet.
  const std::string resolved_in = *state == store::IssueState::kResolved ? HighestVersion(issue->versions) : "";
  auto updated = ctx.store.SetFailureIssueState(tenant_id, issue_id, *state, resolved_in);
  if (!updated) return IssueError(updated.error());
  Audit(ctx.store, tenant_id, caller, "issue.state", issue_id,
        {{"state", *state_name}, {"resolved_in_version", resolved_in}});
  return JsonResponse(200, IssueJson(*updated));
}

// GET /v1/tenants/{t}/devices/{d}/reports
Response ListDeviceReports(ApiContext& ctx, const Request& request, const std::string& tenant_id,
                           const std::string& device_id) {
  auto limit = PageLimit(request);
  if (!limit) return BadPageLimit();
  if (auto device = TenantDevice(ctx, tenant_id, device_id); !device) return DeviceError(device.error());
  store::FailureReportFilter filter;
  filter.tenant_id = tenant_id;
  filter.device_id = device_id;
  filter.limit = *limit;
  if (const auto after = request.QueryParameter("after"); !after.empty()) {
    if (!ParseCursor(after, filter.after_occurred_at, filter.after_report_id)) return BadQuery("after is not a cursor");
  }
  auto reports = ctx.store.ListFailureReports(filter);
  if (!reports) return ErrorResponse(reports.error());
  return PageResponse("reports", *reports, *limit, ReportJson, [](const store::StoredFailureReport& report) {
    return Cursor(report.occurred_at, report.report_id);
  });
}

// GET /v1/tenants/{t}/devices/{d}/telemetry
Response ListDeviceTelemetry(ApiContext& ctx, const Request& request, const std::string& tenant_id,
                             const std::string& device_id) {
  auto days = ParseLimit(request.QueryParameter("days"), kDefaultTelemetryDays, kRetentionDays);
  if (!days) return BadQuery("days must be 1.." + std::to_string(kRetentionDays));
  if (auto device = TenantDevice(ctx, tenant_id, device_id); !device) return DeviceError(device.error());
  const std::int64_t today = Now() - Now() % kSecondsPerDay;
  auto rows = ctx.store.ListTelemetry(tenant_id, device_id, today - (*days - 1) * kSecondsPerDay);
  if (!rows) return ErrorResponse(rows.error());
  Json list = Json::array();
  for (const auto& row : *rows) {
    list.push_back({{"day", Time(row.day).substr(0, 10)},
                    {"check_ins", row.check_ins},
                    {"max_uptime_seconds", row.max_uptime_seconds},
                    {"min_free_memory_kb", row.min_free_memory_kb},
                    {"app_restarts", row.app_restarts},
                    {"rx_bytes", row.rx_bytes},
                    {"tx_bytes", row.tx_bytes}});
  }
  return JsonResponse(200, {{"days", std::move(list)}});
}

}  // namespace

bool IsSymbolUploadTarget(std::string_view target) {
  target = target.substr(0, target.find('?'));
  constexpr std::string_view kPrefix = "/v1/tenants/";
  constexpr std::string_view kSuffix = "/symbols";
  if (target.size() <= kPrefix.size() + kSuffix.size() || !target.starts_with(kPrefix) || !target.ends_with(kSuffix)) {
    return false;
  }
  const auto tenant = target.substr(kPrefix.size(), target.size() - kPrefix.size() - kSuffix.size());
  return tenant.find('/') == std::string_view::npos;
}

void RegisterReportRoutes(http::Router& router, ApiContext& ctx) {
  // One symbolizer per service: its cache lives as long as the routes.
  auto symbolizer = std::make_shared<Symbolizer>(ctx.store);
  router.Add("POST", "/v1/device/reports", [&ctx, symbolizer](const Request& request, const PathParams&) {
    return UploadReports(ctx, *symbolizer, request);
  });
  router.Add("POST", "/v1/tenants/{tenant}/symbols",
             TenantRoute(ctx, Role::kContributor,
                         [&ctx, symbolizer](const Request& request, const PathParams&, const Caller& caller,
                                            const std::string& tenant_id) {
                           return UploadSymbols(ctx, *symbolizer, request, caller, tenant_id);
                         }));
  router.Add("GET", "/v1/tenants/{tenant}/issues",
             TenantRoute(ctx, Role::kReader,
                         [&ctx](const Request& request, const PathParams&, const Caller&,
                                const std::string& tenant_id) { return ListIssues(ctx, request, tenant_id); }));
  router.Add("GET", "/v1/tenants/{tenant}/issues/{issue}",
             TenantRoute(ctx, Role::kReader,
                         [&ctx](const Request&, const PathParams& params, const Caller&, const std::string& tenant_id) {
                           return GetIssue(ctx, tenant_id, params.at("issue"));
                         }));
  router.Add("PATCH", "/v1/tenants/{tenant}/issues/{issue}",
             TenantRoute(ctx, Role::kContributor,
                         [&ctx](const Request& request, const PathParams& params, const Caller& caller,
                                const std::string& tenant_id) {
                           return PatchIssue(ctx, request, caller, tenant_id, params.at("issue"));
                         }));
  router.Add("GET", "/v1/tenants/{tenant}/devices/{device}/reports",
             TenantRoute(
                 ctx, Role::kReader,
                 [&ctx](const Request& request, const PathParams& params, const Caller&, const std::string& tenant_id) {
                   return ListDeviceReports(ctx, request, tenant_id, params.at("device"));
                 }));
  router.Add("GET", "/v1/tenants/{tenant}/devices/{device}/telemetry",
             TenantRoute(
                 ctx, Role::kReader,
                 [&ctx](const Request& request, const PathParams& params, const Caller&, const std::string& tenant_id) {
                   return ListDeviceTelemetry(ctx, request, tenant_id, params.at("device"));
                 }));
}

}  // namespace citadel::server
