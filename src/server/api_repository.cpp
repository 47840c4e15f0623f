// Over-the-air update routes (docs/PROTOCOL.md, "Updates"): the static
// repository files devices fetch (/v1/repo/...) and the management API that
// feeds them (online keys, roots, image targets, uploads, images).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "app/manifest.hpp"
#include "common/log.hpp"
#include "common/unique_fd.hpp"
#include "delta/delta.hpp"
#include "image/image.hpp"
#include "server/api.hpp"
#include "server/api_support.hpp"
#include "server/attestation.hpp"
#include "server/blob_store.hpp"
#include "server/repository.hpp"
#include "tuf/metadata.hpp"

namespace citadel::server {
namespace {

using http::PathParams;
using http::Request;
using http::Response;
using store::Role;
using store::TufRepository;
using store::TufRole;

constexpr std::size_t kMaxVersionLength = 32;
constexpr std::size_t kMaxFileNameLength = 128;
constexpr std::size_t kMaxOsNameLength = 64;
// Pages of a component's images looked through for a delta base.
constexpr int kMaxImagePages = 100;
// Deltas are made while the registration waits (about 2.5 s per 64 MiB on
// 2 cores, docs/PERFORMANCE.md): larger images get none until deltas move
// to a background job, and their devices download the full image.
constexpr std::int64_t kMaxSynchronousDeltaImageBytes = std::int64_t{256} << 20;

// ------------------------------------------------------------ small parsers

// "123" -> 123; nullopt for anything else (empty, signs, leading zeros are
// fine, more than 19 digits are not).
std::optional<std::uint64_t> ParseUnsigned(std::string_view text) {
  if (text.empty() || text.size() > 19 || text.find_first_not_of("0123456789") != std::string_view::npos) {
    return std::nullopt;
  }
  std::uint64_t value = 0;
  for (char c : text) value = value * 10 + static_cast<std::uint64_t>(c - '0');
  return value;
}

bool IsTokenChar(char c, std::string_view extra) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         extra.find(c) != std::string_view::npos;
}

// A target-name component: 1..max_length characters of letters, digits and
// `extra`, not starting with '.' (no "." or ".." and no hidden files).
bool IsNameComponent(std::string_view text, std::size_t max_length, std::string_view extra) {
  if (text.empty() || text.size() > max_length || text.front() == '.') return false;
  return std::all_of(text.begin(), text.end(), [extra](char c) { return IsTokenChar(c, extra); });
}

// A metadata file name: "timestamp.json" (no version) or "N.<role>.json"
// with N a positive integer without leading zeros.
struct MetadataFileName {
  TufRole role = TufRole::kTimestamp;
  std::int64_t version = 0;  // 0 for timestamp.json
};

std::optional<MetadataFileName> ParseMetadataFileName(std::string_view name) {
  if (name == "timestamp.json") return MetadataFileName{TufRole::kTimestamp, 0};
  const auto dot = name.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot > 18 || name.front() == '0') return std::nullopt;
  auto version = ParseUnsigned(name.substr(0, dot));
  if (!version) return std::nullopt;
  const std::string_view rest = name.substr(dot + 1);
  for (TufRole role : {TufRole::kRoot, TufRole::kSnapshot, TufRole::kTargets}) {
    if (rest == std::string(store::TufRoleName(role)) + ".json") {
      return MetadataFileName{role, static_cast<std::int64_t>(*version)};
    }
  }
  return std::nullopt;
}

// ----------------------------------------------------------- file access

// Who may read a tenant's repository files: a device of the tenant by
// mutual TLS (for a director path, only a device of that group), or a
// token of the tenant with at least the reader role. Everything else is
// 401, or 404 when the caller is someone else's.
std::optional<Response> AuthorizeRepositoryRead(ApiContext& ctx, const Request& request, const std::string& tenant_id,
                                                const std::string* group_id) {
  if (!request.Header("authorization").empty()) {
    auto guarded = Guard(ctx, request, tenant_id, Role::kReader);
    if (guarded.refusal) return guarded.refusal;
    if (auto tenant = ctx.store.GetTenant(tenant_id); !tenant) {
      return tenant.error().code() == ErrorCode::kNotFound ? NotFound("repository") : ErrorResponse(tenant.error());
    }
    if (group_id != nullptr) {
      if (auto group = ctx.store.GetDeviceGroup(tenant_id, *group_id); !group) {
        return group.error().code() == ErrorCode::kNotFound ? NotFound("repository") : ErrorResponse(group.error());
      }
    }
    return std::nullopt;
  }
  if (request.peer_chain.empty()) {
    Response r = Problem(401, "unauthenticated", "Unauthenticated",
                         "repository files need a device certificate (mutual TLS) or a token of the tenant");
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    return r;
  }
  auto gate = AuthorizeDevice(ctx, request);
  if (gate.refusal) return gate.refusal;
  const DeviceCaller* device = &*gate.device;
  if (device->tenant_id != tenant_id) return NotFound("repository");
  if (group_id != nullptr && device->record.device_group_id != *group_id) return NotFound("repository");
  return std::nullopt;
}

Response MetadataDocument(std::string document) {
  Response response;
  response.content_type = "application/json";
  response.body = std::move(document);
  return response;
}

// Serves one metadata file of a scope; timestamp.json is brought up to date
// first (re-signed when near expiry).
Response ServeMetadata(ApiContext& ctx, const std::string& tenant_id, TufRepository repository,
                       const std::string& scope, const std::string& file_name) {
  auto file = ParseMetadataFileName(file_name);
  if (!file) return NotFound("repository file " + file_name);
  if (file->role == TufRole::kTimestamp) {
    if (auto refreshed = ctx.repository.Refresh(tenant_id, repository, scope, Now());
        !refreshed && refreshed.error().code() != ErrorCode::kNotFound) {
      // Serving the last signed timestamp is still right; devices judge
      // its expiry themselves.
      log::Warn("cannot refresh repository metadata",
                {{"tenant", tenant_id}, {"scope", scope}, {"error", refreshed.error().message()}});
    }
    auto latest = ctx.store.GetLatestRepositoryMetadata(tenant_id, repository, scope, TufRole::kTimestamp);
    if (!latest) {
      return latest.error().code() == ErrorCode::kNotFound ? NotFound("repository file " + file_name)
                                                           : ErrorResponse(latest.error());
    }
    Response response = MetadataDocument(std::move(latest->document));
    response.headers.emplace_back("Cache-Control", "no-cache");
    return response;
  }
  // Roots are tenant-wide for the director too.
  const std::string role_scope = file->role == TufRole::kRoot ? std::string() : scope;
  auto record = ctx.store.GetRepositoryMetadata(tenant_id, repository, role_scope, file->role, file->version);
  if (!record) {
    return record.error().code() == ErrorCode::kNotFound ? NotFound("repository file " + file_name)
                                                         : ErrorResponse(record.error());
  }
  return MetadataDocument(std::move(record->document));
}

Response ServeBlob(ApiContext& ctx, const Request& request, const std::string& tenant_id, const std::string& sha256) {
  auto size = ctx.blobs.Size(tenant_id, sha256);
  auto path = ctx.blobs.PathOf(tenant_id, sha256);
  if (!size || !path) {
    log::Error("a registered image or delta has no blob", {{"tenant", tenant_id}, {"sha256", sha256}});
    return ErrorResponse(Error(ErrorCode::kInternal, "blob " + sha256 + " missing"));
  }
  return http::FileResponse(request, std::move(*path), *size);
}

// image/targets/<dir>/<sha256>.<basename>: TUF's consistent-snapshot name
// for target <dir>/<basename> (docs/PROTOCOL.md). The digest picks the image;
// the rest must be its target name.
Response ServeTarget(ApiContext& ctx, const Request& request, const PathParams& params) {
  const std::string& tenant_id = params.at("tenant");
  if (auto refused = AuthorizeRepositoryRead(ctx, request, tenant_id, nullptr)) return *refused;
  const std::string& file = params.at("file");
  const auto dot = file.find('.');
  const std::string sha256 = file.substr(0, dot);
  if (dot == std::string::npos || !IsSha256Hex(sha256)) return NotFound("target file");
  const std::string name =
      params.at("kind") + "/" + params.at("component") + "/" + params.at("version") + "/" + file.substr(dot + 1);
  auto image = ctx.store.GetImage(tenant_id, sha256);
  if (!image) {
    return image.error().code() == ErrorCode::kNotFound ? NotFound("target file") : ErrorResponse(image.error());
  }
  if (image->target_name != name) return NotFound("target file");
  return ServeBlob(ctx, request, tenant_id, sha256);
}

Response ServeDelta(ApiContext& ctx, const Request& request, const PathParams& params) {
  const std::string& tenant_id = params.at("tenant");
  if (auto refused = AuthorizeRepositoryRead(ctx, request, tenant_id, nullptr)) return *refused;
  const std::string& from = params.at("from");
  const std::string& to = params.at("to");
  if (!IsSha256Hex(from) || !IsSha256Hex(to)) return NotFound("delta");
  auto delta = ctx.store.GetImageDelta(tenant_id, from, to);
  if (!delta) return delta.error().code() == ErrorCode::kNotFound ? NotFound("delta") : ErrorResponse(delta.error());
  return ServeBlob(ctx, request, tenant_id, delta->delta_sha256);
}

// ------------------------------------------------------------- management

// Refusals of uploaded metadata: what is wrong with it is the client's to
// fix (400); a missing prerequisite or a lost race is 409.
Response MetadataProblem(const Error& error, std::string_view name, std::string_view title) {
  switch (error.code()) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kParse:
    case ErrorCode::kCrypto:
      return Problem(400, name, title, error.message());
    case ErrorCode::kFailedPrecondition:
      return Problem(409, "repository-not-ready", "Repository not ready", error.message());
    case ErrorCode::kConflict:
      return Problem(409, "conflict", "Conflict", error.message());
    default:
      return ErrorResponse(error);
  }
}

// Checks every listed hash of target against the stored blob, streaming it.
Expected<void> VerifyBlobHashes(const BlobStore& blobs, const std::string& tenant_id, const store::Image& image,
                                const tuf::TargetFile& target) {
  CITADEL_TRY(auto path, blobs.PathOf(tenant_id, image.sha256));
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return MakeError(ErrorCode::kInternal, "the image's blob " + image.sha256 + " is missing");
  CITADEL_TRY(tuf::HashVerifier verifier, tuf::HashVerifier::Create(target.hashes));
  std::vector<char> buffer(std::size_t{1} << 20);
  while (true) {
    const ssize_t got = ::read(fd.get(), buffer.data(), buffer.size());
    if (got < 0) {
      if (errno == EINTR) continue;
      return MakeError(ErrorCode::kIo, "reading blob " + image.sha256 + ": " + std::strerror(errno));
    }
    if (got == 0) break;
    verifier.Update(std::string_view(buffer.data(), static_cast<std::size_t>(got)));
  }
  return verifier.Finish("the uploaded image");
}

Json ImageJson(const store::Image& image) {
  return {{"sha256", image.sha256},
          {"length", image.length},
          {"kind", store::ImageKindName(image.kind)},
          {"component_id", image.component_id},
          {"version", image.version},
          {"security_version", image.security_version},
          {"target_name", image.target_name},
          {"uploaded_at", Time(image.uploaded_at)},
          {"uploaded_by", image.uploaded_by},
          // The entry to put under this name in the image targets metadata.
          {"target",
           {{"length", image.length}, {"hashes", {{"sha256", image.sha256}}}, {"custom", ImageTargetCustom(image)}}}};
}

// The request of POST /images, validated.
struct ImageRequest {
  store::Image image;
  std::string file_name;
};

Expected<ImageRequest> ParseImageRequest(const Json& body) {
  ImageRequest request;
  store::Image& image = request.image;
  CITADEL_TRY(image.sha256, StringField(body, "sha256", true));
  if (!IsSha256Hex(image.sha256)) {
    return MakeError(ErrorCode::kInvalidArgument, "\"sha256\" must be 64 lower-case hex digits");
  }
  auto integer = [&](std::string_view name, std::int64_t min, std::int64_t max) -> Expected<std::int64_t> {
    auto it = body.find(std::string(name));
    if (it == body.end() || !it->is_number_integer() || it->get<std::int64_t>() < min ||
        it->get<std::int64_t>() > max) {
      return MakeError(ErrorCode::kInvalidArgument, "\"" + std::string(name) + "\" must be an integer " +
                                                        std::to_string(min) + ".." + std::to_string(max));
    }
    return it->get<std::int64_t>();
  };
  CITADEL_TRY(image.length, integer("length", 1, static_cast<std::int64_t>(kMaxBlobBytes)));
  CITADEL_TRY(image.security_version, integer("security_version", 0, app::kMaxSecurityVersion));
  CITADEL_TRY(std::string kind, StringField(body, "kind", true));
  auto parsed_kind = store::ParseImageKind(kind);
  if (!parsed_kind) return MakeError(ErrorCode::kInvalidArgument, "\"kind\" must be app or os");
  image.kind = *parsed_kind;
  CITADEL_TRY(std::string component, StringField(body, "component_id", true));
  if (image.kind == store::ImageKind::kApp) {
    CITADEL_TRY(image.component_id, app::NormaliseGuid(component, "component_id"));
  } else if (IsNameComponent(component, kMaxOsNameLength, "._-")) {
    image.component_id = component;
  } else {
    return MakeError(ErrorCode::kInvalidArgument,
                     "\"component_id\" of an OS image is its name: 1-64 letters, digits, '.', '_' or '-'");
  }
  CITADEL_TRY(image.version, StringField(body, "version", true));
  if (!IsNameComponent(image.version, kMaxVersionLength, ".+-_")) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "\"version\" must be 1-32 letters, digits, '.', '+', '-' or '_' (e.g. 2.0.1)");
  }
  CITADEL_TRY(request.file_name, StringField(body, "file_name", true));
  if (!IsNameComponent(request.file_name, kMaxFileNameLength, ".+-_")) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "\"file_name\" must be 1-128 letters, digits, '.', '+', '-' or '_', not starting with '.'");
  }
  image.target_name = std::string(image.kind == store::ImageKind::kApp ? "apps/" : "os/") + image.component_id + "/" +
                      image.version + "/" + request.file_name;
  return request;
}

// An app image must be signed by one of the tenant's active publisher keys
// and its manifest must say what the request says.
Expected<void> CheckAppImage(ApiContext& ctx, const store::Image& image, const std::filesystem::path& path) {
  if (static_cast<std::uint64_t>(image.length) > image::kMaxImageBytes) {
    return MakeError(ErrorCode::kInvalidArgument, "the image is larger than an app image can be");
  }
  CITADEL_TRY(auto records, ctx.store.ListPublisherKeys(image.tenant_id, /*include_revoked=*/false));
  std::vector<crypto::PublicKey> publishers;
  for (const auto& record : records) {
    CITADEL_TRY(auto key, crypto::PublicKey::FromPem(record.public_key_pem));
    publishers.push_back(std::move(key));
  }
  CITADEL_TRY(auto info, image::ParseImageFile(path));
  auto verified = image::VerifyImage(info, publishers);
  if (!verified) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the image is not signed by an active publisher key of the tenant: " + verified.error().message());
  }
  auto manifest = app::ParseManifest(verified->info().manifest.dump());
  if (!manifest) return WrapError(manifest.error(), "the image's manifest");
  if (manifest->component_id != image.component_id || manifest->version != image.version ||
      manifest->security_version != image.security_version) {
    return MakeError(ErrorCode::kInvalidArgument, "the image's manifest says ComponentId " + manifest->component_id +
                                                      ", Version \"" + manifest->version + "\", SecurityVersion " +
                                                      std::to_string(manifest->security_version) +
                                                      "; the request must say the same");
  }
  return kOk;
}

// Makes a delta from the component's latest earlier image (app or OS) to
// `image`. Synchronous (the registration waits for it), for images up to
// kMaxSynchronousDeltaImageBytes, and best effort: without a delta devices
// download the full image, so a failure is only logged.
std::optional<store::ImageDelta> MakeDelta(ApiContext& ctx, const store::Image& image) {
  if (image.length > kMaxSynchronousDeltaImageBytes) {
    log::Info("no delta: image larger than the synchronous limit",
              {{"tenant", image.tenant_id}, {"to", image.sha256}, {"length", std::to_string(image.length)}});
    return std::nullopt;
  }
  std::optional<store::Image> base;
  store::ImageFilter filter;
  filter.tenant_id = image.tenant_id;
  filter.component_id = image.component_id;
  filter.limit = 1000;
  for (int page = 0; page < kMaxImagePages; ++page) {
    auto images = ctx.store.ListImages(filter);
    if (!images) {
      log::Warn("no delta: cannot list images", {{"tenant", image.tenant_id}, {"error", images.error().message()}});
      return std::nullopt;
    }
    for (const auto& candidate : *images) {
      if (candidate.sha256 == image.sha256 || candidate.kind != image.kind) continue;
      if (!base || candidate.uploaded_at >= base->uploaded_at) base = candidate;
    }
    if (static_cast<std::int64_t>(images->size()) < filter.limit) break;
    filter.after_target_name = images->back().target_name;
  }
  if (!base) return std::nullopt;
  auto fail = [&](const Error& error) -> std::optional<store::ImageDelta> {
    log::Warn("no delta made",
              {{"tenant", image.tenant_id}, {"from", base->sha256}, {"to", image.sha256}, {"error", error.message()}});
    return std::nullopt;
  };
  auto source = ctx.blobs.PathOf(image.tenant_id, base->sha256);
  auto target = ctx.blobs.PathOf(image.tenant_id, image.sha256);
  auto scratch = ctx.blobs.ScratchPath(image.tenant_id);
  if (!source) return fail(source.error());
  if (!target) return fail(target.error());
  if (!scratch) return fail(scratch.error());
  auto made = delta::CreateDelta(*source, *target, *scratch);
  if (!made) return fail(made.error());
  if (made->delta_length >= static_cast<std::uint64_t>(image.length)) {
    std::error_code ignored;
    std::filesystem::remove(*scratch, ignored);
    log::Info("no delta: not smaller than the image", {{"tenant", image.tenant_id}, {"to", image.sha256}});
    return std::nullopt;
  }
  auto blob = ctx.blobs.AddFile(image.tenant_id, *scratch);
  if (!blob) return fail(blob.error());
  store::ImageDelta record{
      image.tenant_id, base->sha256, image.sha256, blob->sha256, static_cast<std::int64_t>(blob->length), Now()};
  auto added = ctx.store.AddImageDelta(record);
  if (!added) return fail(added.error());
  return *added;
}

Response RegisterImage(ApiContext& ctx, const Request& request, const Caller& caller, const std::string& tenant_id) {
  auto body =
      ParseBody(request, {"sha256", "length", "kind", "component_id", "version", "security_version", "file_name"});
  if (!body) return BodyError(body.error());
  auto parsed = ParseImageRequest(*body);
  if (!parsed) return BodyError(parsed.error());
  store::Image& image = parsed->image;
  image.tenant_id = tenant_id;
  image.uploaded_at = Now();
  image.uploaded_by = caller.Actor();

  // Registering the same image again is idempotent.
  if (auto existing = ctx.store.GetImage(tenant_id, image.sha256); existing) {
    const bool same = existing->length == image.length && existing->kind == image.kind &&
                      existing->component_id == image.component_id && existing->version == image.version &&
                      existing->security_version == image.security_version &&
                      existing->target_name == image.target_name;
    if (!same) {
      return Problem(409, "image-exists", "Image already registered",
                     "an image with this sha256 is registered as " + existing->target_name);
    }
    return JsonResponse(200, ImageJson(*existing));
  } else if (existing.error().code() != ErrorCode::kNotFound) {
    return ErrorResponse(existing.error());
  }

  auto size = ctx.blobs.Size(tenant_id, image.sha256);
  if (!size) {
    if (size.error().code() != ErrorCode::kNotFound) return ErrorResponse(size.error());
    return Problem(409, "image-not-uploaded", "Image not uploaded",
                   "upload the image first (PUT /v1/tenants/" + tenant_id + "/uploads/" + image.sha256 + ")");
  }
  if (*size != static_cast<std::uint64_t>(image.length)) {
    return Problem(400, "invalid-request", "Invalid request",
                   "the uploaded image has " + std::to_string(*size) + " bytes, not " + std::to_string(image.length));
  }
  if (image.kind == store::ImageKind::kApp) {
    auto path = ctx.blobs.PathOf(tenant_id, image.sha256);
    if (!path) return ErrorResponse(path.error());
    if (auto checked = CheckAppImage(ctx, image, *path); !checked) {
      switch (checked.error().code()) {
        case ErrorCode::kInvalidArgument:
        case ErrorCode::kParse:
        case ErrorCode::kTooLarge:
        case ErrorCode::kCrypto:
          return Problem(400, "invalid-image", "Invalid image", checked.error().message());
        default:
          return ErrorResponse(checked.error());
      }
    }
  }
  if (auto added = ctx.store.AddImage(image); !added) {
    if (added.error().code() == ErrorCode::kConflict) {
      return Problem(409, "target-name-taken", "Target name taken",
                     image.target_name + " already names another image; give the new one another version or file name");
    }
    if (added.error().code() == ErrorCode::kAlreadyExists) {  // a concurrent registration won
      auto winner = ctx.store.GetImage(tenant_id, image.sha256);
      if (!winner) return ErrorResponse(winner.error());
      return JsonResponse(200, ImageJson(*winner));
    }
    return ErrorResponse(added.error());
  }
  Json result = ImageJson(image);
  result["delta"] = nullptr;
  if (auto delta = MakeDelta(ctx, image)) {
    result["delta"] = {
        {"from_sha256", delta->from_sha256}, {"delta_sha256", delta->delta_sha256}, {"length", delta->length}};
  }
  Audit(ctx.store, tenant_id, caller, "image.register", image.target_name,
        {{"sha256", image.sha256}, {"length", image.length}, {"delta", result["delta"]}});
  log::Info("image registered", {{"tenant", tenant_id}, {"target", image.target_name}});
  return JsonResponse(201, result);
}

Response Upload(ApiContext& ctx, const Request& request, const Caller& caller, const std::string& tenant_id,
                const std::string& sha256) {
  if (MediaType(request) != "application/octet-stream") return UnsupportedMediaType("application/octet-stream");
  auto offset = ParseUnsigned(request.QueryParameter("offset"));
  auto length = ParseUnsigned(request.QueryParameter("length"));
  if (!offset || !length) {
    return Problem(400, "invalid-request", "Invalid request",
                   "give ?offset=N (where this chunk starts) and &length=L (the whole image's size)");
  }
  auto progress = ctx.blobs.Append(tenant_id, sha256, *length, *offset, request.body);
  if (!progress) {
    switch (progress.error().code()) {
      case ErrorCode::kInvalidArgument:
        return Problem(400, "invalid-request", "Invalid request", progress.error().message());
      case ErrorCode::kCrypto:
        return Problem(400, "upload-digest-mismatch", "Upload digest mismatch", progress.error().message());
      case ErrorCode::kConflict:
        return Problem(409, "upload-in-progress", "Upload in progress", progress.error().message());
      default:
        return ErrorResponse(progress.error());
    }
  }
  if (!progress->accepted) {
    // RFC 9457 extension member "received": where to resume.
    Json problem = protocol::ProblemToJson(MakeProblem(409, "upload-offset-mismatch", "Upload offset mismatch",
                                                       "the upload has " + std::to_string(progress->received) +
                                                           " bytes; send the chunk at offset " +
                                                           std::to_string(progress->received)));
    problem["received"] = progress->received;
    Response r = JsonResponse(409, problem);
    r.content_type = "application/problem+json";
    return r;
  }
  if (progress->complete && *offset + request.body.size() == *length && !request.body.empty()) {
    Audit(ctx.store, tenant_id, caller, "blob.upload", sha256, {{"length", *length}});
  }
  return JsonResponse(200, {{"received", progress->received}, {"complete", progress->complete}});
}

}  // namespace

void RegisterRepositoryRoutes(http::Router& router, ApiContext& ctx) {
  // ---- repository files (devices by mutual TLS, or reader tokens)
  for (const char* method : {"GET", "HEAD"}) {
    router.Add(method, "/v1/repo/{tenant}/image/{file}", [&ctx](const Request& request, const PathParams& params) {
      const std::string& tenant_id = params.at("tenant");
      if (auto refused = AuthorizeRepositoryRead(ctx, request, tenant_id, nullptr)) return *refused;
      return ServeMetadata(ctx, tenant_id, TufRepository::kImage, "", params.at("file"));
    });
    router.Add(method, "/v1/repo/{tenant}/director/{group}/{file}",
               [&ctx](const Request& request, const PathParams& params) {
                 const std::string& tenant_id = params.at("tenant");
                 const std::string& group_id = params.at("group");
                 if (auto refused = AuthorizeRepositoryRead(ctx, request, tenant_id, &group_id)) return *refused;
                 return ServeMetadata(ctx, tenant_id, TufRepository::kDirector, group_id, params.at("file"));
               });
    router.Add(method, "/v1/repo/{tenant}/image/targets/{kind}/{component}/{version}/{file}",
               [&ctx](const Request& request, const PathParams& params) { return ServeTarget(ctx, request, params); });
    router.Add(method, "/v1/repo/{tenant}/image/deltas/{from}/{to}",
               [&ctx](const Request& request, const PathParams& params) { return ServeDelta(ctx, request, params); });
  }

  // ---- management
  router.Add("POST", "/v1/tenants/{tenant}/repository/online-keys",
             TenantRoute(
                 ctx, Role::kAdmin,
                 [&ctx](const Request& request, const PathParams&, const Caller& caller, const std::string& tenant_id) {
                   auto body = ParseBody(request, {}, /*allow_empty=*/true);
                   if (!body) return BodyError(body.error());
                   auto keys = ctx.repository.EnsureOnlineKeys(tenant_id, Now());
                   if (!keys) return ErrorResponse(keys.error());
                   if (keys->created) {
                     Audit(ctx.store, tenant_id, caller, "repository.online-keys.create", tenant_id);
                     log::Info("online repository keys created", {{"tenant", tenant_id}});
                   }
                   return JsonResponse(200, keys->ToJson());
                 }));
  router.Add("GET", "/v1/tenants/{tenant}/repository",
             TenantRoute(ctx, Role::kReader,
                         [&ctx](const Request&, const PathParams&, const Caller&, const std::string& tenant_id) {
                           auto status = ctx.repository.Status(tenant_id);
                           if (!status) return ErrorResponse(status.error());
                           return JsonResponse(200, *status);
                         }));
  router.Add(
      "POST", "/v1/tenants/{tenant}/repository/{repository}/root",
      TenantRoute(
          ctx, Role::kAdmin,
          [&ctx](const Request& request, const PathParams& params, const Caller& caller, const std::string& tenant_id) {
            auto repository = store::ParseTufRepository(params.at("repository"));
            if (!repository) return NotFound("repository " + params.at("repository"));
            if (MediaType(request) != "application/json") return UnsupportedMediaType("application/json");
            auto uploaded = ctx.repository.AddRoot(tenant_id, *repository, request.body, Now());
            if (!uploaded) return MetadataProblem(uploaded.error(), "invalid-root", "Invalid root");
            const std::string name(store::TufRepositoryName(*repository));
            Json result = {{"repository", name}, {"version", uploaded->version}, {"expires", Time(uploaded->expires)}};
            if (!uploaded->created) return JsonResponse(200, result);
            Audit(ctx.store, tenant_id, caller, "repository.root.upload", name, {{"version", uploaded->version}});
            log::Info("repository root uploaded", {{"tenant", tenant_id}, {"repository", name}});
            return JsonResponse(201, result);
          }));
  router.Add("GET", "/v1/tenants/{tenant}/repository/image/targets",
             TenantRoute(ctx, Role::kReader,
                         [&ctx](const Request&, const PathParams&, const Caller&, const std::string& tenant_id) {
                           auto latest = ctx.store.GetLatestRepositoryMetadata(tenant_id, TufRepository::kImage, "",
                                                                               TufRole::kTargets);
                           if (!latest) {
                             return latest.error().code() == ErrorCode::kNotFound ? NotFound("image targets")
                                                                                  : ErrorResponse(latest.error());
                           }
                           return MetadataDocument(std::move(latest->document));
                         }));
  router.Add("POST", "/v1/tenants/{tenant}/repository/image/targets",
             TenantRoute(
                 ctx, Role::kContributor,
                 [&ctx](const Request& request, const PathParams&, const Caller& caller, const std::string& tenant_id) {
                   if (MediaType(request) != "application/json") return UnsupportedMediaType("application/json");
                   auto published = ctx.repository.AddImageTargets(
                       tenant_id, request.body, Now(),
                       [&ctx, &tenant_id](const store::Image& image, const tuf::TargetFile& t) {
                         return VerifyBlobHashes(ctx.blobs, tenant_id, image, t);
                       });
                   if (!published) return MetadataProblem(published.error(), "invalid-targets", "Invalid targets");
                   Json result = {{"targets_version", published->targets},
                                  {"snapshot_version", published->snapshot},
                                  {"timestamp_version", published->timestamp}};
                   Audit(ctx.store, tenant_id, caller, "repository.targets.upload", "image", result);
                   log::Info("image targets published",
                             {{"tenant", tenant_id}, {"version", std::to_string(published->targets)}});
                   return JsonResponse(201, result);
                 }));
  router.Add("PUT", "/v1/tenants/{tenant}/uploads/{sha256}",
             TenantRoute(ctx, Role::kContributor,
                         [&ctx](const Request& request, const PathParams& params, const Caller& caller,
                                const std::string& tenant_id) {
                           return Upload(ctx, request, caller, tenant_id, params.at("sha256"));
                         }));
  router.Add(
      "POST", "/v1/tenants/{tenant}/images",
      TenantRoute(ctx, Role::kContributor,
                  [&ctx](const Request& request, const PathParams&, const Caller& caller,
                         const std::string& tenant_id) { return RegisterImage(ctx, request, caller, tenant_id); }));
  router.Add(
      "GET", "/v1/tenants/{tenant}/images",
      TenantRoute(ctx, Role::kReader,
                  [&ctx](const Request& request, const PathParams&, const Caller&, const std::string& tenant_id) {
                    auto limit = PageLimit(request);
                    if (!limit) return BadPageLimit();
                    store::ImageFilter filter;
                    filter.tenant_id = tenant_id;
                    filter.component_id = request.QueryParameter("component");
                    filter.after_target_name = request.QueryParameter("after");
                    filter.limit = *limit;
                    auto images = ctx.store.ListImages(filter);
                    if (!images) return ErrorResponse(images.error());
                    return PageResponse("images", *images, *limit, ImageJson,
                                        [](const store::Image& image) { return image.target_name; });
                  }));
}

}  // namespace citadel::server
