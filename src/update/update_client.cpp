#include "update/update_client.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <set>
#include <span>
#include <utility>

#include "common/encoding.hpp"
#include "common/file.hpp"
#include "common/log.hpp"
#include "common/time.hpp"
#include "common/unique_fd.hpp"
#include "delta/delta.hpp"
#include "http/fetch.hpp"
#include "tuf/http_fetcher.hpp"
#include "update/fault.hpp"

namespace citadel::update {
namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kRootMaxLength = 512000;
constexpr std::size_t kReadChunk = 1u << 16;
// A trial that vanished (kNoTrial while the image is not installed) is
// started again at most this often in one pass.
constexpr int kTrialRestarts = 1;

std::string Quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

// Repository paths come from the authenticated service, but they end up in
// URLs and must stay paths on that service.
Expected<void> CheckRepositoryPath(std::string_view path, std::string_view what) {
  const bool ok = !path.empty() && path.front() == '/' && path.find("..") == std::string_view::npos &&
                  path.find_first_of("?#\\ \t\r\n") == std::string_view::npos && path.back() != '/';
  if (!ok) return MakeError(ErrorCode::kInvalidArgument, std::string(what) + ": unusable path " + Quoted(path));
  return kOk;
}

// An installed entry as the check-in's parser accepts it (protocol.hpp
// bounds), or nullopt: one bad entry must not get the whole check-in
// refused.
std::optional<protocol::InstalledComponent> ForCheckIn(protocol::InstalledComponent component) {
  // A manifest without Version: say so rather than leave it empty.
  if (component.version.empty()) component.version = "unknown";
  const bool hex =
      component.sha256.empty() ||
      (component.sha256.size() == 64 && std::all_of(component.sha256.begin(), component.sha256.end(), [](char c) {
         return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
       }));
  if (!hex || component.component_id.empty() || component.component_id.size() > protocol::kMaxComponentIdBytes ||
      component.version.size() > protocol::kMaxVersionBytes) {
    return std::nullopt;
  }
  return component;
}

// Calls FaultPoint(label) once per kFaultStepBytes the byte count passes,
// so the number of points a transfer crosses depends on its size, not on how
// the network split it into reads (power-cut tests pick points by number).
class TransferFaultPoints {
 public:
  static constexpr std::uint64_t kFaultStepBytes = 64 * 1024;
  explicit TransferFaultPoints(std::string_view label) : label_(label) {}
  void Reached(std::uint64_t bytes) {
    while (passed_ + kFaultStepBytes <= bytes) {
      passed_ += kFaultStepBytes;
      FaultPoint(label_);
    }
  }

 private:
  std::string_view label_;
  std::uint64_t passed_ = 0;
};

// Removes a file and its ".part"; a missing file is fine.
void RemoveWithPart(const fs::path& path) {
  std::error_code ec;
  fs::remove(path, ec);
  fs::path part = path;
  part += ".part";
  fs::remove(part, ec);
}

// Streams `path` through every hash the signed target lists and checks its
// length: the only check that says a file is the genuine image.
Expected<void> VerifyAgainstTarget(const fs::path& path, std::int64_t length,
                                   const std::map<std::string, std::string>& hashes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return MakeError(errno == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo,
                     "cannot open " + path.string() + ": " + std::strerror(errno));
  }
  CITADEL_TRY(tuf::HashVerifier verifier, tuf::HashVerifier::Create(hashes));
  const auto expected = static_cast<std::uint64_t>(length);
  std::uint64_t total = 0;
  std::array<char, kReadChunk> buffer{};
  while (total <= expected) {
    const ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return MakeError(ErrorCode::kIo, "cannot read " + path.string() + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    total += static_cast<std::uint64_t>(n);
    verifier.Update(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
  }
  if (total != expected) {
    return MakeError(ErrorCode::kCrypto, path.string() + " has " + std::to_string(total) + " bytes, the target " +
                                             std::to_string(expected));
  }
  return verifier.Finish(path.string());
}

// A delta's header declares the image it rebuilds, and ApplyDelta bounds its
// output (and zstd's buffer) by that declaration only. The header is the
// delta author's word, so before anything is decompressed it must describe
// the signed target: otherwise a small delta (within the transfer bound) of
// a 1 GiB image would be written out, and buffered, in full before the final
// check against the target refused it.
Expected<void> CheckDeltaDescribes(const fs::path& delta_path, std::int64_t length, std::string_view sha256) {
  UniqueFd fd(::open(delta_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return MakeError(ErrorCode::kIo, "cannot open " + delta_path.string() + ": " + std::strerror(errno));
  std::array<std::uint8_t, delta::kHeaderSize> header{};
  std::size_t have = 0;
  while (have < header.size()) {
    const ssize_t n = ::read(fd.get(), header.data() + have, header.size() - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return MakeError(ErrorCode::kIo, "cannot read " + delta_path.string() + ": " + std::strerror(errno));
    if (n == 0) break;
    have += static_cast<std::size_t>(n);
  }
  CITADEL_TRY(delta::DeltaHeader parsed, delta::ParseDeltaHeader(std::span<const std::uint8_t>(header.data(), have)));
  const std::string declared = HexEncode(parsed.target_sha256);
  if (parsed.target_length != static_cast<std::uint64_t>(length) || declared != sha256) {
    return MakeError(ErrorCode::kCrypto, "delta " + delta_path.string() + " rebuilds another image (" +
                                             std::to_string(parsed.target_length) + " bytes, sha256 " + declared +
                                             ") than the signed target");
  }
  return kOk;
}

// GET url into path, resumable: bytes go to path.part (continued from its
// size after a cut), fsync'd and renamed when the server says the file is
// complete. At most max_length bytes. Verification is the caller's.
Expected<void> FetchToFile(tuf::Fetcher& fetcher, const std::string& url, std::uint64_t max_length,
                           const fs::path& path) {
  fs::path part = path;
  part += ".part";
  UniqueFd fd(::open(part.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return MakeError(ErrorCode::kIo, "cannot open " + part.string() + ": " + std::strerror(errno));
  off_t size = ::lseek(fd.get(), 0, SEEK_END);
  if (size < 0) return MakeError(ErrorCode::kIo, "cannot seek " + part.string());
  auto written = static_cast<std::uint64_t>(size);
  if (written > max_length) {
    if (::ftruncate(fd.get(), 0) != 0) return MakeError(ErrorCode::kIo, "cannot truncate " + part.string());
    written = 0;
  }
  TransferFaultPoints fault_points("update:delta-chunk");
  const tuf::FetchSink sink = [&](std::uint64_t position, std::string_view chunk) -> Expected<void> {
    if (position == 0 && written != 0) {  // the server ignored the range: start over
      if (::ftruncate(fd.get(), 0) != 0) return MakeError(ErrorCode::kIo, "cannot truncate " + part.string());
      written = 0;
    }
    if (position != written) return MakeError(ErrorCode::kIo, "fetcher delivered bytes out of order");
    if (::pwrite(fd.get(), chunk.data(), chunk.size(), static_cast<off_t>(written)) !=
        static_cast<ssize_t>(chunk.size())) {
      return MakeError(ErrorCode::kIo, "cannot write " + part.string());
    }
    written += chunk.size();
    fault_points.Reached(written);
    return kOk;
  };
  CITADEL_TRY_VOID(fetcher.Fetch(tuf::FetchRequest{url, max_length, written}, sink));
  if (::fsync(fd.get()) != 0) return MakeError(ErrorCode::kIo, "cannot sync " + part.string());
  fd.Reset();
  if (::rename(part.c_str(), path.c_str()) != 0) {
    return MakeError(ErrorCode::kIo, "cannot rename " + part.string() + ": " + std::strerror(errno));
  }
  return kOk;
}

// The target as Updater::DownloadTarget fetches it: the repository's
// consistent-snapshot name IMAGE/targets/<dir>/<sha256>.<basename>.
tuf::TargetFile TargetOf(const WorkItem& item) {
  tuf::TargetFile file;
  file.path = item.target_name;
  file.length = item.length;
  file.hashes = item.hashes;
  return file;
}

// Forwards to a fetcher owned elsewhere (the pass keeps one per chain).
class BorrowedFetcher final : public tuf::Fetcher {
 public:
  explicit BorrowedFetcher(tuf::Fetcher& inner) : inner_(inner) {}
  Expected<tuf::FetchResult> Fetch(const tuf::FetchRequest& request, const tuf::FetchSink& sink) override {
    return inner_.Fetch(request, sink);
  }

 private:
  tuf::Fetcher& inner_;
};

}  // namespace

FetcherFactory MutualTlsFetcherFactory(std::string service_ca_pem, const crypto::PrivateKey& tls_key) {
  return [ca = std::move(service_ca_pem),
          key = &tls_key](const std::string& chain_pem) -> Expected<std::unique_ptr<tuf::Fetcher>> {
    http::DownloaderOptions options;
    options.ca_certificate_pem = ca;
    options.client_identity = http::TlsIdentity{chain_pem, key};
    options.user_agent = "citadeld-update";
    CITADEL_TRY(auto fetcher, tuf::HttpFetcher::Create(std::move(options)));
    return std::unique_ptr<tuf::Fetcher>(std::move(fetcher));
  };
}

Expected<std::optional<SlotRecord>> RecordedOsSlot(const fs::path& state_dir, boot::Slot slot) {
  CITADEL_TRY(auto file, StateFile::Open(state_dir / "update" / "state.json"));
  auto state = file->Snapshot();
  auto found = state.os_slots.find(std::string(boot::SlotName(slot)));
  if (found == state.os_slots.end()) return std::optional<SlotRecord>();
  return std::optional<SlotRecord>(found->second);
}

// ---------------------------------------------------------------------------
// Construction, threads, check-ins

struct UpdateClient::Repositories {
  std::unique_ptr<BorrowedFetcher> fetcher;
  std::unique_ptr<tuf::Updater> director;
  std::unique_ptr<tuf::Updater> image;
  std::string image_url;  // SERVICE + image repository path
};

Expected<std::unique_ptr<UpdateClient>> UpdateClient::Create(UpdateClientOptions options,
                                                             UpdateDependencies dependencies) {
  if (dependencies.rot == nullptr) return MakeError(ErrorCode::kInvalidArgument, "update client: no root of trust");
  if (!dependencies.fetchers) return MakeError(ErrorCode::kInvalidArgument, "update client: no fetcher factory");
  if (options.device_id.empty()) return MakeError(ErrorCode::kInvalidArgument, "update client: no device id");
  CITADEL_TRY_VOID(http::ParseUrl(options.service_url + "/"));
  if (options.os_trial_tries == 0) return MakeError(ErrorCode::kInvalidArgument, "OS trial tries must be >= 1");
  if (!options.in_rollout) options.in_rollout = protocol::InRollout;
  CITADEL_TRY(auto state, StateFile::Open(options.state_dir / "update" / "state.json"));
  CITADEL_TRY_VOID(EnsureDirectory(options.state_dir / "update" / "downloads", 0700));
  return std::unique_ptr<UpdateClient>(new UpdateClient(std::move(options), std::move(dependencies), std::move(state)));
}

UpdateClient::UpdateClient(UpdateClientOptions options, UpdateDependencies dependencies,
                           std::unique_ptr<StateFile> state)
    : options_(std::move(options)),
      deps_(std::move(dependencies)),
      state_(std::move(state)),
      floors_(*deps_.rot),
      booted_version_(options_.os_version) {}

UpdateClient::~UpdateClient() {
  Stop();
  if (thread_.joinable()) thread_.join();
}

void UpdateClient::Start() {
  const bool open_work = !state_->Snapshot().work.empty();
  std::lock_guard lock(mutex_);
  if (thread_.joinable() || stop_) return;
  // Work left by the previous run (an app trial) goes on without waiting
  // for the service.
  wake_ = wake_ || open_work;
  thread_ = std::thread([this] { ThreadMain(); });
}

void UpdateClient::Stop() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_cv_.notify_all();
}

bool UpdateClient::StopAndWait(std::chrono::milliseconds grace) {
  Stop();
  {
    std::unique_lock lock(mutex_);
    if (!thread_.joinable()) return true;
    if (!wake_cv_.wait_for(lock, grace, [this] { return thread_done_; })) return false;
  }
  thread_.join();
  return true;
}

bool UpdateClient::Stopping() const {
  std::lock_guard lock(mutex_);
  return stop_;
}

bool UpdateClient::Sleep(std::chrono::milliseconds delay) {
  std::unique_lock lock(mutex_);
  return !wake_cv_.wait_for(lock, delay, [this] { return stop_; });
}

std::uint64_t UpdateClient::passes_completed() const {
  std::lock_guard lock(mutex_);
  return passes_completed_;
}

bool UpdateClient::reboot_requested() const {
  std::lock_guard lock(mutex_);
  return reboot_requested_;
}

std::int64_t UpdateClient::Now() const {
  return options_.now_unix_seconds ? options_.now_unix_seconds() : static_cast<std::int64_t>(std::time(nullptr));
}

std::string UpdateClient::NowRfc3339() const { return FormatRfc3339(FromUnixSeconds(Now())); }

void UpdateClient::ThreadMain() {
  struct Done {
    UpdateClient& client;
    ~Done() {
      {
        std::lock_guard lock(client.mutex_);
        client.thread_done_ = true;
      }
      client.wake_cv_.notify_all();
    }
  } done{*this};
  bool retry = false;
  while (true) {
    {
      std::unique_lock lock(mutex_);
      auto ready = [this] { return stop_ || wake_; };
      if (retry) {
        wake_cv_.wait_for(lock, options_.retry_interval, ready);
      } else {
        wake_cv_.wait(lock, ready);
      }
      if (stop_ || reboot_requested_) return;
      wake_ = false;
    }
    auto outcome = RunPass();
    if (!outcome) {
      log::Warn("update pass failed; will retry", {{"error", outcome.error().message()}});
      retry = true;
      continue;
    }
    if (*outcome == PassOutcome::kRebootRequested) return;
    retry = *outcome == PassOutcome::kDeferred || !state_->Snapshot().work.empty();
  }
}

CheckInSection UpdateClient::PrepareCheckIn() const {
  CheckInSection section;
  auto state = state_->Snapshot();
  for (const auto& report : state.reports) {
    if (section.update.reports.size() >= protocol::kMaxUpdateEntries) break;
    section.update.reports.push_back(protocol::UpdateReportEntry{report.deployment_id, report.target_name, report.state,
                                                                 report.reason, report.reported_at});
    section.report_sequences.push_back(report.sequence);
  }
  for (auto& component : InstalledComponents()) {
    if (section.update.installed.size() >= protocol::kMaxUpdateEntries) break;
    if (auto entry = ForCheckIn(std::move(component))) section.update.installed.push_back(std::move(*entry));
  }
  return section;
}

void UpdateClient::OnCheckIn(const CheckInSection& sent, const std::optional<protocol::CheckInUpdateReply>& reply,
                             std::string client_chain_pem) {
  if (reply && reply->acknowledged > 0 && !sent.report_sequences.empty()) {
    const auto count =
        std::min<std::size_t>(static_cast<std::size_t>(reply->acknowledged), sent.report_sequences.size());
    const std::set<std::uint64_t> acknowledged(sent.report_sequences.begin(),
                                               sent.report_sequences.begin() + static_cast<std::ptrdiff_t>(count));
    auto dropped = state_->Update(
        [&](UpdateState& state) {
          std::erase_if(state.reports, [&](const Report& report) { return acknowledged.contains(report.sequence); });
        },
        /*fault_points=*/false);
    if (!dropped) log::Warn("cannot drop acknowledged update reports", {{"error", dropped.error().message()}});
  }
  {
    std::lock_guard lock(mutex_);
    if (reply) {
      hints_ = reply;
      if (reply->update_now) update_now_ = true;
    }
    chain_pem_ = std::move(client_chain_pem);
    checked_in_ = true;
    wake_ = true;
  }
  wake_cv_.notify_all();
  NotifySettledIfDone();
}

void UpdateClient::NotifySettledIfDone() {
  if (!options_.on_settled) return;
  auto state = state_->Snapshot();
  {
    std::lock_guard lock(mutex_);
    if (settled_notified_ || !last_pass_clean_ || !state.work.empty() || !state.reports.empty()) return;
    settled_notified_ = true;
  }
  options_.on_settled();
}

// ---------------------------------------------------------------------------
// What runs now

std::vector<protocol::InstalledComponent> UpdateClient::InstalledComponents() const {
  std::vector<protocol::InstalledComponent> installed;
  if (deps_.apps != nullptr) {
    for (auto& app : deps_.apps->InstalledApps()) {
      installed.push_back(
          protocol::InstalledComponent{std::string(kKindApp), app.component_id, app.version, app.image_sha256});
    }
  }
  if (booted_slot_) {
    installed.push_back(
        protocol::InstalledComponent{std::string(kKindOs), options_.os_component_id, booted_version_, booted_sha256_});
  }
  return installed;
}

std::map<std::string, std::string> UpdateClient::InstalledSha256() const {
  std::map<std::string, std::string> installed;
  for (const auto& component : InstalledComponents()) installed[component.component_id] = component.sha256;
  return installed;
}

std::optional<UpdateClient::BaseImage> UpdateClient::InstalledImage(const TargetIdentity& identity) const {
  if (identity.kind == kKindOs) {
    if (!booted_slot_ || deps_.os_slots == nullptr || booted_sha256_.empty()) return std::nullopt;
    return BaseImage{deps_.os_slots->ImagePath(*booted_slot_), booted_sha256_};
  }
  if (deps_.apps == nullptr) return std::nullopt;
  for (auto& app : deps_.apps->InstalledApps()) {
    if (app.component_id == identity.component_id && !app.image_file.empty() && !app.image_sha256.empty()) {
      return BaseImage{app.image_file, app.image_sha256};
    }
  }
  return std::nullopt;
}

fs::path UpdateClient::DownloadPath(const WorkItem& item) const { return UpdateDir() / "downloads" / item.Sha256(); }

std::string UpdateClient::ImageRepositoryUrl(const protocol::CheckInUpdateReply& hints) const {
  return options_.service_url + hints.image_repository;
}

void UpdateClient::AddReport(UpdateState& state, WorkItem& item, std::string_view report_state,
                             std::string_view reason) {
  if (item.last_reported == report_state) return;
  item.last_reported = std::string(report_state);
  state.AddReport(item.deployment_id, item.target_name, report_state, reason, NowRfc3339());
}

// ---------------------------------------------------------------------------
// Start of a boot

Expected<void> UpdateClient::Recover() {
  if (deps_.boot == nullptr || deps_.os_slots == nullptr) return kOk;
  CITADEL_TRY(boot::BootState boot, deps_.boot->ReadState());
  booted_slot_ = boot.booted;
  const std::string booted_name(boot::SlotName(boot.booted));
  auto state = state_->Snapshot();
  if (auto record = state.os_slots.find(booted_name); record != state.os_slots.end()) {
    booted_sha256_ = record->second.sha256;
    booted_version_ = record->second.version;
  }
  // What was measured at this boot is the truth about the booted slot.
  if (!options_.booted_os_sha256.empty()) booted_sha256_ = options_.booted_os_sha256;

  auto work = state.work.find(options_.os_component_id);
  const WorkItem* os_work = work != state.work.end() && work->second.identity.kind == kKindOs ? &work->second : nullptr;
  if (boot.last_failure) {
    const bool failed_ours = os_work != nullptr && os_work->slot == boot::SlotName(boot.last_failure->slot) &&
                             os_work->step != WorkStep::kDownloading;
    if (failed_ours) {
      const std::string reason = "the new OS did not become healthy: " + boot.last_failure->reason;
      log::Warn("OS update failed; the bootloader returned to the previous slot", {{"reason", reason}});
      CITADEL_TRY_VOID(FinishFailed(*os_work, reason));
    } else {
      log::Warn("an OS trial failed before this boot", {{"reason", boot.last_failure->reason}});
    }
    FaultPoint("update:failure-reported");
    CITADEL_TRY_VOID(deps_.boot->AcknowledgeFailure());
    return kOk;
  }
  if (os_work == nullptr) return kOk;
  const bool on_trial = boot.trial && boot.booted == boot.trial->slot;
  if (on_trial && os_work->slot == booted_name) {
    if (os_work->step != WorkStep::kOsTrial) {
      return state_->Update([&](UpdateState& next) { next.work[options_.os_component_id].step = WorkStep::kOsTrial; });
    }
    return kOk;
  }
  const bool trial_armed =
      boot.trial && boot.trial->slot != boot.booted && os_work->slot == std::string(boot::SlotName(boot.trial->slot));
  if (os_work->step == WorkStep::kPendingReboot && trial_armed) return kOk;  // the reboot has not happened yet
  if (os_work->step == WorkStep::kOsTrial && boot.primary == boot.booted && os_work->slot == booted_name) {
    return kOk;  // committed before a cut; CommitBoot finishes it
  }
  if (os_work->step == WorkStep::kPendingReboot || os_work->step == WorkStep::kOsTrial) {
    return FinishFailed(*os_work, "the OS trial ended without a commit");
  }
  return kOk;  // downloading / installing: the pass resumes it
}

Expected<void> UpdateClient::CommitBoot() {
  if (boot_committed_ || deps_.boot == nullptr || deps_.os_slots == nullptr) return kOk;
  CITADEL_TRY(boot::BootState boot, deps_.boot->ReadState());
  const bool on_trial = boot.trial && boot.booted == boot.trial->slot;
  if (on_trial || boot.booted == boot.primary) {
    FaultPoint("update:boot-commit");
    auto committed = deps_.boot->Commit();
    if (!committed) return WrapError(committed.error(), "committing the booted OS slot");
    FaultPoint("update:boot-committed");
  }
  boot_committed_ = true;
  auto state = state_->Snapshot();
  auto work = state.work.find(options_.os_component_id);
  if (work != state.work.end() && work->second.step == WorkStep::kOsTrial &&
      work->second.slot == boot::SlotName(boot.booted)) {
    log::Info("OS update committed", {{"version", work->second.identity.version}});
    return FinishCommitted(work->second);
  }
  return kOk;
}

// ---------------------------------------------------------------------------
// A pass

Expected<PassOutcome> UpdateClient::RunPass() {
  std::optional<protocol::CheckInUpdateReply> hints;
  std::string chain;
  bool checked_in = false;
  bool update_now = false;
  {
    std::lock_guard lock(mutex_);
    if (reboot_requested_) return PassOutcome::kRebootRequested;
    hints = hints_;
    chain = chain_pem_;
    checked_in = checked_in_;
    update_now = update_now_;
    last_pass_clean_ = false;
  }
  if (checked_in) CITADEL_TRY_VOID(CommitBoot());
  CITADEL_TRY(PassOutcome local, ContinueLocalWork());
  if (local == PassOutcome::kRebootRequested) return local;

  auto finish = [&](PassOutcome outcome) -> Expected<PassOutcome> {
    {
      std::lock_guard lock(mutex_);
      last_pass_clean_ = true;
      ++passes_completed_;
    }
    return outcome;
  };
  if (!hints) return finish(PassOutcome::kIdle);
  auto state = state_->Snapshot();
  const bool moved = hints->director_timestamp_version != state.director_timestamp_version ||
                     hints->director != state.director || hints->image_repository != state.image_repository;
  if (!moved && !update_now && state.work.empty() && !state.deferred_by_window) return finish(PassOutcome::kIdle);

  CITADEL_TRY(Repositories repositories, OpenRepositories(*hints, chain));
  const auto* director_targets = repositories.director->trusted()->targets();
  CITADEL_TRY(DirectorAssignment assignment, ParseDirectorTargets(*director_targets));
  for (const auto& skipped : assignment.skipped) log::Warn("ignoring a director target", {{"reason", skipped}});
  const std::int64_t director_version = repositories.director->trusted()->timestamp()->body.version;

  if (assignment.window && !update_now && !InMaintenanceWindow(*assignment.window, Now())) {
    log::Info("update waits for the maintenance window");
    CITADEL_TRY_VOID(state_->Update([](UpdateState& next) { next.deferred_by_window = true; }));
    return finish(PassOutcome::kDeferred);
  }

  auto choices = ChooseTargets(assignment.targets, options_.device_id, InstalledSha256(), options_.in_rollout);
  // Downloads of targets the director no longer assigns are abandoned;
  // anything past downloading runs to its end first.
  std::set<std::string> chosen_sha256;
  for (const auto& choice : choices) chosen_sha256.insert(choice.target.Sha256());
  for (const auto& [component, item] : state.work) {
    if (item.step == WorkStep::kDownloading && !chosen_sha256.contains(item.Sha256())) {
      log::Info("abandoning an update the director no longer assigns", {{"target", item.target_name}});
      CITADEL_TRY_VOID(state_->Update([&](UpdateState& next) { next.work.erase(component); }));
      RemoveWithPart(DownloadPath(item));
    }
  }

  std::optional<Error> first_error;
  PassOutcome outcome = PassOutcome::kDone;
  for (const auto& choice : choices) {
    if (Stopping()) return MakeError(ErrorCode::kUnavailable, "update client stopping");
    auto processed = Process(choice, repositories, update_now);
    if (!processed) {
      log::Warn("update of a component did not finish; will retry",
                {{"component_id", choice.component_id}, {"error", processed.error().message()}});
      if (!first_error) first_error = processed.error();
      continue;
    }
    if (*processed == PassOutcome::kRebootRequested) return processed;
  }
  if (first_error) return std::unexpected(*first_error);
  CITADEL_TRY_VOID(state_->Update([&](UpdateState& next) {
    next.director_timestamp_version = director_version;
    next.deferred_by_window = false;
  }));
  {
    std::lock_guard lock(mutex_);
    update_now_ = false;
  }
  return finish(outcome);
}

Expected<PassOutcome> UpdateClient::ContinueLocalWork() {
  auto state = state_->Snapshot();
  for (const auto& [component, item] : state.work) {
    if (Stopping()) return MakeError(ErrorCode::kUnavailable, "update client stopping");
    switch (item.step) {
      case WorkStep::kDownloading:
      case WorkStep::kOsTrial:  // committed by CommitBoot after a check-in
        break;
      case WorkStep::kInstalling: {
        CITADEL_TRY(PassOutcome outcome, Install(item));
        if (outcome == PassOutcome::kRebootRequested) return outcome;
        break;
      }
      case WorkStep::kTrial: {
        CITADEL_TRY(PassOutcome outcome, WaitForTrial(item, kTrialRestarts));
        (void)outcome;
        break;
      }
      case WorkStep::kPendingReboot:
        return RequestReboot();
    }
  }
  return PassOutcome::kDone;
}

Expected<UpdateClient::Repositories> UpdateClient::OpenRepositories(const protocol::CheckInUpdateReply& hints,
                                                                    const std::string& chain_pem) {
  CITADEL_TRY_VOID(CheckRepositoryPath(hints.image_repository, "update.image_repository"));
  CITADEL_TRY_VOID(CheckRepositoryPath(hints.director, "update.director"));
  const fs::path image_dir = UpdateDir() / "image";
  const fs::path director_dir = UpdateDir() / "director";
  auto state = state_->Snapshot();
  if (state.image_repository != hints.image_repository || state.director != hints.director) {
    std::error_code ec;
    if (state.image_repository != hints.image_repository) {
      // Another tenant: other roots. Start over from the roots.
      fs::remove_all(image_dir, ec);
      fs::remove_all(director_dir, ec);
    } else {
      // Another group of the same tenant: the root chain is the tenant's, the
      // other roles' versions are the group's.
      for (const char* role : {"timestamp.json", "snapshot.json", "targets.json"}) fs::remove(director_dir / role, ec);
    }
    CITADEL_TRY_VOID(state_->Update([&](UpdateState& next) {
      next.image_repository = hints.image_repository;
      next.director = hints.director;
      next.director_timestamp_version = 0;
    }));
  }
  if (!fetcher_ || chain_pem != fetcher_chain_) {
    auto made = deps_.fetchers(chain_pem);
    if (!made) return WrapError(made.error(), "creating the repository client");
    fetcher_ = std::move(*made);
    fetcher_chain_ = chain_pem;
  }

  Repositories repositories;
  repositories.fetcher = std::make_unique<BorrowedFetcher>(*fetcher_);
  repositories.image_url = ImageRepositoryUrl(hints);
  const std::string director_url = options_.service_url + hints.director;
  CITADEL_TRY_VOID(EnsureTrustedRoot(director_dir, options_.director_root, director_url));
  CITADEL_TRY_VOID(EnsureTrustedRoot(image_dir, options_.image_root, repositories.image_url));

  tuf::UpdaterConfig director_config;
  director_config.metadata_dir = director_dir;
  director_config.metadata_base_url = director_url;
  director_config.now_unix_seconds = options_.now_unix_seconds;
  repositories.director = std::make_unique<tuf::Updater>(std::move(director_config), *repositories.fetcher);
  auto refreshed = repositories.director->Refresh();
  if (!refreshed) return WrapError(refreshed.error(), "refreshing the director");

  tuf::UpdaterConfig image_config;
  image_config.metadata_dir = image_dir;
  image_config.metadata_base_url = repositories.image_url;
  image_config.target_base_url = repositories.image_url + "/targets";
  image_config.now_unix_seconds = options_.now_unix_seconds;
  repositories.image = std::make_unique<tuf::Updater>(std::move(image_config), *repositories.fetcher);
  refreshed = repositories.image->Refresh();
  if (!refreshed) return WrapError(refreshed.error(), "refreshing the image repository");
  return repositories;
}

Expected<void> UpdateClient::EnsureTrustedRoot(const fs::path& dir, const fs::path& factory_root,
                                               const std::string& base_url) {
  std::error_code ec;
  if (fs::exists(dir / "root.json", ec)) return kOk;
  std::string root;
  if (!factory_root.empty()) {
    auto read = ReadFile(factory_root, kRootMaxLength);
    if (!read) return WrapError(read.error(), "reading the provisioned root");
    root = std::move(*read);
  } else {
    const std::string url = base_url + "/1.root.json";
    auto fetched = fetcher_->Fetch(tuf::FetchRequest{url, kRootMaxLength, 0},
                                   [&](std::uint64_t position, std::string_view chunk) -> Expected<void> {
                                     if (position == 0) root.clear();
                                     root.append(chunk);
                                     return kOk;
                                   });
    if (!fetched) return WrapError(fetched.error(), "fetching the first root " + url);
    log::Info("trusting the repository root the service sent (first use)", {{"url", url}});
  }
  auto installed = tuf::Updater::InitTrustedRoot(dir, root);
  if (!installed) return WrapError(installed.error(), "installing the trusted root in " + dir.string());
  FaultPoint("update:root-installed");
  return kOk;
}

Expected<PassOutcome> UpdateClient::Process(const Choice& choice, Repositories& repositories, bool update_now) {
  const DirectorTarget& target = choice.target;
  const std::string sha256 = target.Sha256();
  auto installed = InstalledSha256();
  if (auto found = installed.find(choice.component_id); found != installed.end() && found->second == sha256) {
    return PassOutcome::kDone;  // already runs it
  }
  auto state = state_->Snapshot();
  auto work = state.work.find(choice.component_id);
  if (work != state.work.end() && work->second.Sha256() != sha256) {
    // Another target of this component is past downloading: it ends first.
    return PassOutcome::kDone;
  }
  if (auto refused = state.refused.find(choice.component_id);
      refused != state.refused.end() && refused->second == sha256) {
    if (!update_now) return PassOutcome::kDone;
    CITADEL_TRY_VOID(state_->Update([&](UpdateState& next) { next.refused.erase(choice.component_id); }));
  }

  WorkItem item;
  if (work != state.work.end()) {
    item = work->second;
  } else {
    // The checks, before anything is fetched.
    if (target.identity.kind == kKindApp && deps_.apps == nullptr) {
      CITADEL_TRY_VOID(Refuse(target, "this device runs no app subsystem"));
      return PassOutcome::kDone;
    }
    if (target.identity.kind == kKindOs) {
      if (deps_.boot == nullptr || deps_.os_slots == nullptr || !booted_slot_) {
        CITADEL_TRY_VOID(Refuse(target, "this device has no OS slots to update"));
        return PassOutcome::kDone;
      }
      if (target.identity.component_id != options_.os_component_id) {
        CITADEL_TRY_VOID(Refuse(
            target, "this device runs OS " + options_.os_component_id + ", not " + target.identity.component_id));
        return PassOutcome::kDone;
      }
    }
    auto image = repositories.image->GetTargetInfo(target.file.path);
    if (!image) {
      if (image.error().code() != ErrorCode::kNotFound) return std::unexpected(image.error());
      CITADEL_TRY_VOID(Refuse(target, "the image repository does not sign this target"));
      return PassOutcome::kDone;
    }
    if (auto matched = CheckImageTarget(target, *image); !matched) {
      CITADEL_TRY_VOID(Refuse(target, matched.error().message()));
      return PassOutcome::kDone;
    }
    CITADEL_TRY(std::uint64_t floor, floors_.Read(choice.component_id));
    if (auto above = CheckFloor(target.identity.security_version, floor); !above) {
      CITADEL_TRY_VOID(Refuse(target, above.error().message()));
      return PassOutcome::kDone;
    }
    item.identity = target.identity;
    item.target_name = target.file.path;
    item.deployment_id = target.deployment_id;
    item.length = target.file.length;
    item.hashes = target.file.hashes;
    item.step = WorkStep::kDownloading;
    log::Info("update assigned", {{"target", item.target_name}, {"deployment_id", item.deployment_id}});
    CITADEL_TRY_VOID(state_->Update([&](UpdateState& next) {
      AddReport(next, item, kReportDownloading);
      next.work[choice.component_id] = item;
    }));
  }

  if (item.step == WorkStep::kDownloading) {
    CITADEL_TRY_VOID(Download(item, repositories));
    item.step = WorkStep::kInstalling;
    CITADEL_TRY_VOID(state_->Update([&](UpdateState& next) {
      AddReport(next, item, kReportInstalling);
      next.work[choice.component_id] = item;
    }));
  }
  if (item.step == WorkStep::kInstalling) return Install(item);
  return PassOutcome::kDone;  // trial / reboot steps are continued by ContinueLocalWork
}

Expected<void> UpdateClient::Refuse(const DirectorTarget& target, const std::string& reason) {
  log::Warn("refusing an update",
            {{"target", target.file.path}, {"deployment_id", target.deployment_id}, {"reason", reason}});
  return state_->Update([&](UpdateState& next) {
    next.refused[target.identity.component_id] = target.Sha256();
    next.AddReport(target.deployment_id, target.file.path, kReportFailed, reason, NowRfc3339());
  });
}

Expected<void> UpdateClient::Download(const WorkItem& item, Repositories& repositories) {
  const fs::path path = DownloadPath(item);
  if (VerifyAgainstTarget(path, item.length, item.hashes)) return kOk;  // done before a cut
  fs::path part = path;
  part += ".part";
  std::error_code ec;
  // A full download cut earlier is resumed rather than replaced by a delta.
  if (auto base = InstalledImage(item.identity); base && base->sha256 != item.Sha256() && !fs::exists(part, ec)) {
    // Rebuilt beside the download, not into it: ApplyDelta owns its
    // "<output>.part", which must not be the resumable full download's.
    fs::path rebuilt = path;
    rebuilt += ".rebuilt";
    auto applied = TryDelta(item, *base, rebuilt, repositories.image_url);
    if (applied && *applied) {
      if (::rename(rebuilt.c_str(), path.c_str()) != 0) {
        return MakeError(ErrorCode::kIo, "cannot rename " + rebuilt.string() + ": " + std::strerror(errno));
      }
      FaultPoint("update:delta-applied");
      return kOk;
    }
    if (!applied) {
      log::Info("delta update failed; downloading the full image",
                {{"target", item.target_name}, {"error", applied.error().message()}});
    }
    RemoveWithPart(rebuilt);
  }
  TransferFaultPoints fault_points("update:download-chunk");
  tuf::DownloadProgress progress = [&fault_points](std::uint64_t done, std::uint64_t) { fault_points.Reached(done); };
  auto downloaded = repositories.image->DownloadTarget(TargetOf(item), path, progress);
  if (!downloaded) return WrapError(downloaded.error(), "downloading " + item.target_name);
  log::Info("downloaded an update", {{"target", item.target_name},
                                     {"bytes_fetched", std::to_string(downloaded->bytes_fetched)},
                                     {"resumed", downloaded->resumed ? "true" : "false"}});
  FaultPoint("update:downloaded");
  return kOk;
}

// true: `output` holds the verified target; false: no delta is offered.
Expected<bool> UpdateClient::TryDelta(const WorkItem& item, const BaseImage& base, const fs::path& output,
                                      const std::string& image_url) {
  const fs::path delta_path = UpdateDir() / "downloads" / (item.Sha256() + ".delta");
  const std::string url = image_url + "/deltas/" + base.sha256 + "/" + item.Sha256();
  auto fetched = FetchToFile(*fetcher_, url, static_cast<std::uint64_t>(item.length), delta_path);
  if (!fetched) {
    const bool absent = fetched.error().code() == ErrorCode::kNotFound;
    if (absent || fetched.error().code() == ErrorCode::kTooLarge) RemoveWithPart(delta_path);
    if (absent) return false;
    return std::unexpected(fetched.error());
  }
  FaultPoint("update:delta-fetched");
  if (auto described = CheckDeltaDescribes(delta_path, item.length, item.Sha256()); !described) {
    RemoveWithPart(delta_path);
    return std::unexpected(described.error());
  }
  delta::ApplyOptions apply_options;
  apply_options.max_window_log = options_.delta_max_window_log;
  auto applied = delta::ApplyDelta(base.path, delta_path, output, apply_options);
  RemoveWithPart(delta_path);
  if (!applied) return std::unexpected(applied.error());
  // The delta's header is its author's word; the signed target decides.
  if (auto verified = VerifyAgainstTarget(output, item.length, item.hashes); !verified) {
    RemoveWithPart(output);
    return std::unexpected(verified.error());
  }
  log::Info("rebuilt an update from a delta", {{"target", item.target_name}});
  return true;
}

Expected<PassOutcome> UpdateClient::Install(WorkItem item) {
  const fs::path path = DownloadPath(item);
  // The image is verified again right before it is used: the file sat on
  // disk since it was downloaded (possibly across a restart).
  if (auto verified = VerifyAgainstTarget(path, item.length, item.hashes); !verified) {
    log::Warn("the downloaded update is gone or damaged; downloading it again",
              {{"target", item.target_name}, {"error", verified.error().message()}});
    RemoveWithPart(path);
    item.step = WorkStep::kDownloading;
    CITADEL_TRY_VOID(state_->Update([&](UpdateState& next) { next.work[item.identity.component_id] = item; }));
    return PassOutcome::kDone;
  }
  return item.identity.kind == kKindOs ? InstallOs(std::move(item)) : InstallApp(std::move(item));
}

// ---------------------------------------------------------------------------
// Apps

Expected<PassOutcome> UpdateClient::InstallApp(WorkItem item) {
  FaultPoint("update:app-begin-trial");
  auto begun = deps_.apps->BeginTrial(DownloadPath(item), item.identity.component_id);
  if (!begun) {
    CITADEL_TRY_VOID(FinishFailed(item, begun.error().message()));
    return PassOutcome::kDone;
  }
  FaultPoint("update:app-trial-begun");
  item.step = WorkStep::kTrial;
  item.trial_started_at = Now();
  CITADEL_TRY_VOID(state_->Update([&](UpdateState& next) { next.work[item.identity.component_id] = item; }));
  return WaitForTrial(std::move(item), kTrialRestarts);
}

Expected<PassOutcome> UpdateClient::WaitForTrial(WorkItem item, int restarts_left) {
  const std::string& component = item.identity.component_id;
  const std::int64_t deadline = item.trial_started_at + options_.trial_timeout.count();
  // Bounded by the deadline (wall clock, so it holds across restarts) and by
  // a poll count derived from it, should the clock stand still.
  const auto poll = std::max(options_.trial_poll_interval, std::chrono::milliseconds(1));
  const auto max_polls = options_.trial_timeout / poll + 2;
  for (std::int64_t polls = 0;; ++polls) {
    switch (deps_.apps->Trial(component)) {
      case TrialHealth::kHealthy: {
        FaultPoint("update:app-commit");
        auto committed = deps_.apps->CommitTrial(component);
        if (!committed) return WrapError(committed.error(), "committing the app trial");
        FaultPoint("update:app-committed");
        log::Info("app update committed", {{"component_id", component}, {"version", item.identity.version}});
        CITADEL_TRY_VOID(FinishCommitted(item));
        return PassOutcome::kDone;
      }
      case TrialHealth::kCrashLoop:
      case TrialHealth::kFailed: {
        std::string reason = deps_.apps->TrialFailure(component);
        if (reason.empty()) reason = "crash-loop";
        FaultPoint("update:app-revert");
        auto reverted = deps_.apps->RevertTrial(component);
        if (!reverted) return WrapError(reverted.error(), "reverting the app trial");
        log::Warn("app update failed; previous version restored", {{"component_id", component}, {"reason", reason}});
        CITADEL_TRY_VOID(FinishFailed(item, reason));
        return PassOutcome::kDone;
      }
      case TrialHealth::kNoTrial: {
        auto installed = InstalledSha256();
        if (auto found = installed.find(component); found != installed.end() && found->second == item.Sha256()) {
          CITADEL_TRY_VOID(FinishCommitted(item));  // committed before a cut
          return PassOutcome::kDone;
        }
        if (restarts_left <= 0) {
          CITADEL_TRY_VOID(FinishFailed(item, "the app trial ended without a result"));
          return PassOutcome::kDone;
        }
        // Reverted before a cut, or never began: begin again.
        item.step = WorkStep::kInstalling;
        CITADEL_TRY_VOID(state_->Update([&](UpdateState& next) { next.work[component] = item; }));
        FaultPoint("update:app-begin-trial");
        auto begun = deps_.apps->BeginTrial(DownloadPath(item), component);
        if (!begun) {
          CITADEL_TRY_VOID(FinishFailed(item, begun.error().message()));
          return PassOutcome::kDone;
        }
        item.step = WorkStep::kTrial;
        item.trial_started_at = Now();
        CITADEL_TRY_VOID(state_->Update([&](UpdateState& next) { next.work[component] = item; }));
        return WaitForTrial(std::move(item), restarts_left - 1);
      }
      case TrialHealth::kRunning:
        break;
    }
    if (Now() >= deadline || polls >= max_polls) {
      const std::string reason =
          "not healthy within " + std::to_string(options_.trial_timeout.count()) + " s of starting the trial";
      auto reverted = deps_.apps->RevertTrial(component);
      if (!reverted) return WrapError(reverted.error(), "reverting the app trial");
      CITADEL_TRY_VOID(FinishFailed(item, reason));
      return PassOutcome::kDone;
    }
    if (!Sleep(poll)) return MakeError(ErrorCode::kUnavailable, "update client stopping during an app trial");
  }
}

// ---------------------------------------------------------------------------
// OS

Expected<PassOutcome> UpdateClient::InstallOs(WorkItem item) {
  CITADEL_TRY(boot::BootState boot, deps_.boot->ReadState());
  if (boot.last_failure) return MakeError(ErrorCode::kFailedPrecondition, "an OS trial failure is not reported yet");
  const boot::Slot inactive = boot::OtherSlot(boot.booted);
  const std::string slot_name(boot::SlotName(inactive));
  if (boot.trial) {
    if (boot.trial->slot == inactive && item.slot == slot_name) {
      // StartTrial happened before a cut.
      item.step = WorkStep::kPendingReboot;
      CITADEL_TRY_VOID(state_->Update([&](UpdateState& next) {
        AddReport(next, item, kReportPendingReboot);
        next.work[item.identity.component_id] = item;
      }));
      return RequestReboot();
    }
    return MakeError(ErrorCode::kFailedPrecondition, "another OS trial is armed");
  }
  if (boot.booted != boot.primary) {
    return MakeError(ErrorCode::kFailedPrecondition, "the running OS slot is not the committed one");
  }
  item.slot = slot_name;
  CITADEL_TRY_VOID(state_->Update([&](UpdateState& next) {
    next.os_slots.erase(slot_name);  // about to be overwritten
    next.work[item.identity.component_id] = item;
  }));
  const fs::path image = DownloadPath(item);
  auto written = deps_.os_slots->Write(inactive, image, static_cast<std::uint64_t>(item.length));
  if (!written) return WrapError(written.error(), "writing OS slot " + slot_name);
  // SECURITY: the bootloader boots whatever the slot holds; arm the trial
  // only for a slot that reads back as the signed image.
  auto verified = VerifyAgainstTarget(deps_.os_slots->ImagePath(inactive), item.length, item.hashes);
  if (!verified) return WrapError(verified.error(), "verifying OS slot " + slot_name);
  FaultPoint("update:slot-written");
  CITADEL_TRY_VOID(state_->Update([&](UpdateState& next) {
    next.os_slots[slot_name] =
        SlotRecord{item.target_name, item.identity.version, item.identity.security_version, item.Sha256()};
  }));
  const std::uint32_t tries = std::min(options_.os_trial_tries, deps_.boot->MaxTrialTries());
  auto armed = deps_.boot->StartTrial(inactive, tries);
  if (!armed) return WrapError(armed.error(), "arming the OS trial");
  FaultPoint("update:trial-armed");
  item.step = WorkStep::kPendingReboot;
  CITADEL_TRY_VOID(state_->Update([&](UpdateState& next) {
    AddReport(next, item, kReportPendingReboot);
    next.work[item.identity.component_id] = item;
  }));
  RemoveWithPart(image);  // the slot holds it now
  log::Info("OS update written; reboot requested", {{"slot", slot_name}, {"version", item.identity.version}});
  return RequestReboot();
}

Expected<PassOutcome> UpdateClient::RequestReboot() {
  {
    std::lock_guard lock(mutex_);
    if (reboot_requested_) return PassOutcome::kRebootRequested;
    reboot_requested_ = true;
  }
  if (options_.request_reboot) options_.request_reboot();
  return PassOutcome::kRebootRequested;
}

// ---------------------------------------------------------------------------
// Endings

Expected<void> UpdateClient::FinishCommitted(const WorkItem& item) {
  // The floor rises only at commit, and before the work is closed: a cut in
  // between raises it again (idempotent).
  CITADEL_TRY_VOID(floors_.Raise(item.identity.component_id, item.identity.security_version));
  WorkItem reported = item;
  CITADEL_TRY_VOID(state_->Update([&](UpdateState& next) {
    AddReport(next, reported, kReportCommitted);
    next.work.erase(item.identity.component_id);
    next.refused.erase(item.identity.component_id);
  }));
  RemoveWithPart(DownloadPath(item));
  return kOk;
}

Expected<void> UpdateClient::FinishFailed(const WorkItem& item, const std::string& reason) {
  WorkItem reported = item;
  CITADEL_TRY_VOID(state_->Update([&](UpdateState& next) {
    AddReport(next, reported, kReportFailed, reason);
    next.work.erase(item.identity.component_id);
    next.refused[item.identity.component_id] = item.Sha256();
  }));
  RemoveWithPart(DownloadPath(item));
  if (options_.failure_sink != nullptr) {
    reports::FailureEvent event;
    event.failure_class = "update-failure";
    event.time = FromUnixSeconds(Now());
    event.component_id = item.identity.component_id;
    event.component_version = item.identity.version;
    // The stages docs/PROTOCOL.md names; an OS trial is a "trial" too.
    event.error_code = item.step == WorkStep::kOsTrial ? "trial" : std::string(WorkStepName(item.step));
    event.message = item.target_name + ": " + reason;
    options_.failure_sink->Record(std::move(event));
  }
  return kOk;
}

}  // namespace citadel::update
