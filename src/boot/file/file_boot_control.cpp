#include "boot/file/file_boot_control.hpp"

#include <string>

#include "common/canonical_json.hpp"
#include "common/file.hpp"
#include "common/json_fields.hpp"
#include "common/log.hpp"

namespace citadel::boot {
namespace {

namespace fs = std::filesystem;
namespace jf = json_fields;

constexpr std::int64_t kFormat = 1;
constexpr std::size_t kMaxStateBytes = 64 * 1024;
constexpr std::size_t kMaxOrderEntries = 8;

Json SlotJson(Slot slot) { return std::string(SlotName(slot)); }

std::string Encode(const StoredBootState& stored, Slot booted) {
  Json order = Json::array();
  for (Slot slot : stored.variables.order) order.push_back(SlotJson(slot));
  Json document = {
      {"format", kFormat},
      {"booted", SlotJson(booted)},
      {"order", std::move(order)},
      {"tries_left",
       {{"A", stored.variables.tries_left[SlotIndex(Slot::kA)]},
        {"B", stored.variables.tries_left[SlotIndex(Slot::kB)]}}},
      {"primary", SlotJson(stored.record.primary)},
  };
  if (stored.record.trial) {
    document["trial"] = {{"slot", SlotJson(*stored.record.trial)}, {"tries", stored.record.trial_tries}};
  }
  if (stored.record.failure) {
    document["failure"] = {{"slot", SlotJson(stored.record.failure->slot)}, {"reason", stored.record.failure->reason}};
  }
  return document.dump(2) + "\n";
}

Expected<Slot> ReadSlot(const Json& value, std::string_view path) {
  CITADEL_TRY(std::string name, jf::ReadString(value, path, 1));
  auto slot = ParseSlot(name);
  if (!slot) return jf::FieldError(path, "expected \"A\" or \"B\"");
  return *slot;
}

Expected<std::uint32_t> ReadTries(const Json& value, std::string_view path) {
  CITADEL_TRY(std::int64_t tries, jf::ReadInteger(value, path, 0, kMaxTrialTries));
  return static_cast<std::uint32_t>(tries);
}

struct Decoded {
  StoredBootState stored;
  Slot booted = Slot::kA;
};

Expected<Decoded> Decode(const Json& document) {
  CITADEL_TRY_VOID(
      jf::ExpectObject(document, "", {"format", "booted", "order", "tries_left", "primary", "trial", "failure"}));
  CITADEL_TRY(const Json* format, jf::Require(document, "", "format"));
  CITADEL_TRY_VOID(jf::ReadInteger(*format, "format", kFormat, kFormat));
  Decoded decoded;
  CITADEL_TRY(const Json* booted, jf::Require(document, "", "booted"));
  CITADEL_TRY(decoded.booted, ReadSlot(*booted, "booted"));

  CITADEL_TRY(const Json* order, jf::Require(document, "", "order"));
  CITADEL_TRY_VOID(jf::ExpectArray(*order, "order", kMaxOrderEntries));
  for (std::size_t i = 0; i < order->size(); ++i) {
    CITADEL_TRY(Slot slot, ReadSlot((*order)[i], jf::Element("order", i)));
    decoded.stored.variables.order.push_back(slot);
  }

  CITADEL_TRY(const Json* tries_left, jf::Require(document, "", "tries_left"));
  CITADEL_TRY_VOID(jf::ExpectObject(*tries_left, "tries_left", {"A", "B"}));
  for (Slot slot : {Slot::kA, Slot::kB}) {
    CITADEL_TRY(const Json* tries, jf::Require(*tries_left, "tries_left", SlotName(slot)));
    CITADEL_TRY(decoded.stored.variables.tries_left[SlotIndex(slot)],
                ReadTries(*tries, jf::Child("tries_left", SlotName(slot))));
  }

  CITADEL_TRY(const Json* primary, jf::Require(document, "", "primary"));
  CITADEL_TRY(decoded.stored.record.primary, ReadSlot(*primary, "primary"));

  if (const Json* trial = jf::Find(document, "trial")) {
    CITADEL_TRY_VOID(jf::ExpectObject(*trial, "trial", {"slot", "tries"}));
    CITADEL_TRY(const Json* slot, jf::Require(*trial, "trial", "slot"));
    CITADEL_TRY(decoded.stored.record.trial, ReadSlot(*slot, "trial.slot"));
    CITADEL_TRY(const Json* tries, jf::Require(*trial, "trial", "tries"));
    CITADEL_TRY(decoded.stored.record.trial_tries, ReadTries(*tries, "trial.tries"));
  }
  if (const Json* failure = jf::Find(document, "failure")) {
    CITADEL_TRY_VOID(jf::ExpectObject(*failure, "failure", {"slot", "reason"}));
    TrialFailure record;
    CITADEL_TRY(const Json* slot, jf::Require(*failure, "failure", "slot"));
    CITADEL_TRY(record.slot, ReadSlot(*slot, "failure.slot"));
    CITADEL_TRY(const Json* reason, jf::Require(*failure, "failure", "reason"));
    CITADEL_TRY(record.reason, jf::ReadString(*reason, "failure.reason", kMaxReasonBytes));
    decoded.stored.record.failure = std::move(record);
  }
  return decoded;
}

}  // namespace

Expected<std::unique_ptr<FileBootControl>> FileBootControl::Open(const fs::path& directory) {
  if (directory.empty()) return MakeError(ErrorCode::kInvalidArgument, "file boot control: empty directory");
  CITADEL_TRY_VOID(EnsureDirectory(directory, 0755));
  std::unique_ptr<FileBootControl> control(new FileBootControl(directory / kStateFileName));
  std::error_code error;
  bool exists = fs::exists(control->state_path_, error);
  if (error) return MakeError(ErrorCode::kIo, "checking " + control->state_path_.string() + ": " + error.message());
  if (!exists) {
    CITADEL_TRY_VOID(control->Store(FactoryState(kCountingLoader), Slot::kA));
    log::Info("boot control: factory state created", {{"path", control->state_path_.string()}});
  }
  CITADEL_TRY_VOID(control->Load());
  return control;
}

Expected<StoredBootControl::Snapshot> FileBootControl::Load() {
  CITADEL_TRY(std::string text, ReadFile(state_path_, kMaxStateBytes));
  auto document = ParseJsonStrict(text);
  if (!document) return MakeError(ErrorCode::kParse, state_path_.string() + ": " + document.error().message());
  auto decoded = Decode(*document);
  if (!decoded) return MakeError(ErrorCode::kParse, state_path_.string() + ": " + decoded.error().message());
  return Snapshot{std::move(decoded->stored), decoded->booted};
}

Expected<void> FileBootControl::Store(const StoredBootState& stored, Slot booted) {
  return WriteFileAtomic(state_path_, Encode(stored, booted), 0644);
}

Expected<Slot> FileBootControl::SimulateBoot() {
  CITADEL_TRY(Snapshot snapshot, Load());
  BootDecision decision = DecideBoot(snapshot.stored.variables, traits().rearm_tries);
  StoredBootState next = snapshot.stored;
  next.variables = decision.after;
  if (auto stored = Store(next, decision.slot); !stored) return WrapError(stored.error(), "simulating a boot");
  std::string tries_left = std::to_string(decision.after.tries_left[SlotIndex(decision.slot)]);
  if (decision.counters_reset) {
    log::Warn("simulated boot: no slot had tries left, every counter was re-armed",
              {{"slot", SlotName(decision.slot)}});
  }
  log::Info("simulated boot", {{"slot", SlotName(decision.slot)}, {"tries_left", tries_left}});
  return decision.slot;
}

}  // namespace citadel::boot
