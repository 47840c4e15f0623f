#include "protocol/protocol.hpp"

#include <algorithm>
#include <array>
#include <charconv>

#include "common/json_fields.hpp"
#include "common/time.hpp"
#include "protocol/fields.hpp"

namespace citadel::protocol {

using json_fields::Child;
using json_fields::Element;
using json_fields::ExpectArray;
using json_fields::ExpectObject;
using json_fields::FieldError;
using json_fields::Find;
using json_fields::Quote;
using json_fields::ReadInteger;
using json_fields::ReadString;
using json_fields::Require;
using json_fields::UnknownFields;

namespace detail {

namespace {
// Nesting of the deepest message (evidence.measurements[i],
// reports[i].crash.frames[j]) plus headroom.
constexpr std::size_t kMaxMessageDepth = 8;
}  // namespace

Expected<Json> ParseBody(std::string_view body, std::size_t max_bytes, std::string_view what) {
  if (body.size() > max_bytes) {
    return MakeError(ErrorCode::kTooLarge, std::string(what) + " is " + std::to_string(body.size()) +
                                               " bytes; the limit is " + std::to_string(max_bytes));
  }
  auto parsed = ParseJsonStrict(body, kMaxMessageDepth);
  if (!parsed) return WrapError(parsed.error(), what);
  return std::move(*parsed);
}

bool IsLowerHex(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Expected<std::string> RequiredString(const Json& object, std::string_view path, std::string_view key,
                                     std::size_t max_bytes, bool allow_empty) {
  CITADEL_TRY(const Json* value, Require(object, path, key));
  return ReadString(*value, Child(path, key), max_bytes, allow_empty);
}

Expected<std::string> OptionalString(const Json& object, std::string_view path, std::string_view key,
                                     std::size_t max_bytes) {
  const Json* value = Find(object, key);
  if (value == nullptr) return std::string();
  return ReadString(*value, Child(path, key), max_bytes, /*allow_empty=*/true);
}

Expected<std::int64_t> RequiredInteger(const Json& object, std::string_view path, std::string_view key,
                                       std::int64_t min, std::int64_t max) {
  CITADEL_TRY(const Json* value, Require(object, path, key));
  return ReadInteger(*value, Child(path, key), min, max);
}

Expected<Bytes> RequiredBase64(const Json& object, std::string_view path, std::string_view key, std::size_t max_bytes) {
  const std::size_t max_text = (max_bytes + 2) / 3 * 4;  // whole quads
  CITADEL_TRY(auto text, RequiredString(object, path, key, max_text, /*allow_empty=*/false));
  auto bytes = Base64Decode(text);
  if (!bytes || bytes->empty() || bytes->size() > max_bytes) {
    return FieldError(Child(path, key), "expected base64 of at most " + std::to_string(max_bytes) + " bytes");
  }
  return std::move(*bytes);
}

}  // namespace detail

namespace {

using detail::IsLowerHex;
using detail::kMaxSafeInteger;
using detail::OptionalString;
using detail::ParseBody;
using detail::RequiredBase64;
using detail::RequiredInteger;
using detail::RequiredString;

constexpr std::size_t kMaxPemBytes = 16 * 1024;
constexpr std::size_t kMaxSignatureBytes = 384;   // DER ECDSA, or a TPM quote and its signature
constexpr std::size_t kMaxTpmPublicBytes = 1024;  // a marshalled TPM2B_PUBLIC (RSA 2048: ~310)
constexpr std::size_t kMaxResultChain = 8;
constexpr std::size_t kMaxShortString = 256;
constexpr std::size_t kMaxDetailBytes = 16 * 1024;
constexpr std::array<std::string_view, 2> kRotBackends = {"software", "tpm2"};

// Hex on the wire is lower-case only, so every value has one spelling.
Expected<Bytes> ReadHex(const Json& value, std::string_view path, std::size_t byte_count) {
  std::string expected = "expected " + std::to_string(2 * byte_count) + " hex characters";
  if (!value.is_string()) return FieldError(path, expected);
  const auto& text = value.get_ref<const std::string&>();
  if (text.size() != 2 * byte_count || !IsLowerHex(text)) return FieldError(path, expected);
  auto bytes = HexDecode(text);
  if (!bytes) return FieldError(path, expected);
  return std::move(*bytes);
}

Expected<crypto::Sha256Digest> ReadDigest(const Json& value, std::string_view path) {
  CITADEL_TRY(auto bytes, ReadHex(value, path, crypto::Sha256Digest{}.size()));
  crypto::Sha256Digest digest{};
  std::copy(bytes.begin(), bytes.end(), digest.begin());
  return digest;
}

Expected<std::vector<std::string>> ReadPemArray(const Json& object, std::string_view path, std::string_view key,
                                                std::size_t max_elements) {
  auto field_path = Child(path, key);
  CITADEL_TRY(const Json* value, Require(object, path, key));
  CITADEL_TRY_VOID(ExpectArray(*value, field_path, max_elements));
  std::vector<std::string> out;
  for (std::size_t i = 0; i < value->size(); ++i) {
    CITADEL_TRY(auto pem, ReadString((*value)[i], Element(field_path, i), kMaxPemBytes, /*allow_empty=*/false));
    out.push_back(std::move(pem));
  }
  return out;
}

// --- Evidence ---

Expected<rot::MeasurementEvent> MeasurementFromJson(const Json& value, std::string_view path) {
  CITADEL_TRY_VOID(
      ExpectObject(value, path, {"register", "type", "name", "version", "digest"}, UnknownFields::kRefuse));
  rot::MeasurementEvent event;
  CITADEL_TRY(auto reg, RequiredInteger(value, path, "register", 0, rot::kRegisterCount - 1));
  event.register_index = static_cast<std::uint32_t>(reg);
  CITADEL_TRY(event.type, RequiredString(value, path, "type", 32, /*allow_empty=*/false));
  CITADEL_TRY(event.name, RequiredString(value, path, "name", kMaxShortString, /*allow_empty=*/false));
  CITADEL_TRY(event.version, RequiredString(value, path, "version", 64, /*allow_empty=*/true));
  CITADEL_TRY(const Json* digest, Require(value, path, "digest"));
  CITADEL_TRY(event.digest, ReadDigest(*digest, Child(path, "digest")));
  return event;
}

Expected<Evidence> EvidenceFromJson(const Json& value, std::string_view path) {
  CITADEL_TRY_VOID(ExpectObject(
      value, path,
      {"version", "device_id", "rot", "nonce", "manufacturer_chain", "measurements", "registers", "csr", "tpm"},
      UnknownFields::kRefuse));
  Evidence evidence;

  CITADEL_TRY(auto version, RequiredInteger(value, path, "version", 0, kMaxSafeInteger));
  if (version != kEvidenceVersion) {
    return FieldError(Child(path, "version"), "unsupported version " + std::to_string(version) + " (expected " +
                                                  std::to_string(kEvidenceVersion) + ")");
  }
  evidence.version = kEvidenceVersion;

  CITADEL_TRY(const Json* device_id, Require(value, path, "device_id"));
  CITADEL_TRY_VOID(ReadHex(*device_id, Child(path, "device_id"), crypto::Sha256Digest{}.size()));
  evidence.device_id = device_id->get<std::string>();

  CITADEL_TRY(evidence.rot_backend, RequiredString(value, path, "rot", 16, /*allow_empty=*/false));
  if (std::find(kRotBackends.begin(), kRotBackends.end(), evidence.rot_backend) == kRotBackends.end()) {
    return FieldError(Child(path, "rot"),
                      "unknown root of trust " + Quote(evidence.rot_backend) + " (expected \"software\" or \"tpm2\")");
  }

  CITADEL_TRY(const Json* nonce, Require(value, path, "nonce"));
  CITADEL_TRY(evidence.nonce, ReadHex(*nonce, Child(path, "nonce"), kNonceBytes));

  CITADEL_TRY(evidence.manufacturer_chain, ReadPemArray(value, path, "manufacturer_chain", kMaxManufacturerChain));

  auto measurements_path = Child(path, "measurements");
  CITADEL_TRY(const Json* measurements, Require(value, path, "measurements"));
  CITADEL_TRY_VOID(ExpectArray(*measurements, measurements_path, kMaxMeasurements));
  for (std::size_t i = 0; i < measurements->size(); ++i) {
    CITADEL_TRY(auto event, MeasurementFromJson((*measurements)[i], Element(measurements_path, i)));
    evidence.measurements.push_back(std::move(event));
  }

  auto registers_path = Child(path, "registers");
  CITADEL_TRY(const Json* registers_value, Require(value, path, "registers"));
  if (!registers_value->is_array()) return FieldError(registers_path, "expected an array");
  if (registers_value->size() != rot::kRegisterCount) {
    return FieldError(registers_path, "expected " + std::to_string(rot::kRegisterCount) + " registers, got " +
                                          std::to_string(registers_value->size()));
  }
  for (std::size_t i = 0; i < registers_value->size(); ++i) {
    CITADEL_TRY(auto reg, ReadDigest((*registers_value)[i], Element(registers_path, i)));
    evidence.registers.push_back(reg);
  }

  CITADEL_TRY(evidence.csr, RequiredString(value, path, "csr", kMaxPemBytes, /*allow_empty=*/false));

  const Json* tpm = Find(value, "tpm");
  if ((tpm != nullptr) != (evidence.rot_backend == "tpm2")) {
    return FieldError(Child(path, "tpm"), "must be present exactly when rot is \"tpm2\"");
  }
  if (tpm != nullptr) {
    auto tpm_path = Child(path, "tpm");
    CITADEL_TRY_VOID(ExpectObject(*tpm, tpm_path, {"ek_public", "ak_public"}, UnknownFields::kRefuse));
    rot::TpmPublicKeys keys;
    CITADEL_TRY(keys.ek_public, RequiredBase64(*tpm, tpm_path, "ek_public", kMaxTpmPublicBytes));
    CITADEL_TRY(keys.ak_public, RequiredBase64(*tpm, tpm_path, "ak_public", kMaxTpmPublicBytes));
    evidence.tpm = std::move(keys);
  }
  return evidence;
}

}  // namespace

// --- Challenge ---

Json ChallengeToJson(const Challenge& challenge) {
  return Json{{"nonce", HexEncode(challenge.nonce)}, {"expires_at", challenge.expires_at}};
}

Expected<Challenge> ParseChallenge(std::string_view body) {
  CITADEL_TRY(auto json, ParseBody(body, kMaxMessageBytes, "challenge"));
  // From the service: newer services may add fields.
  CITADEL_TRY_VOID(ExpectObject(json, "", {}, UnknownFields::kIgnore));
  Challenge challenge;
  CITADEL_TRY(const Json* nonce, Require(json, "", "nonce"));
  CITADEL_TRY(challenge.nonce, ReadHex(*nonce, "nonce", kNonceBytes));
  CITADEL_TRY(challenge.expires_at, RequiredString(json, "", "expires_at", 64, /*allow_empty=*/false));
  if (!ParseRfc3339(challenge.expires_at)) return FieldError("expires_at", "expected an RFC 3339 time");
  return challenge;
}

// --- Evidence ---

Json EvidenceToJson(const Evidence& evidence) {
  Json measurements = Json::array();
  for (const auto& event : evidence.measurements) {
    measurements.push_back(Json{{"register", event.register_index},
                                {"type", event.type},
                                {"name", event.name},
                                {"version", event.version},
                                {"digest", HexEncode(event.digest)}});
  }
  Json registers = Json::array();
  for (const auto& reg : evidence.registers) registers.push_back(HexEncode(reg));
  Json json{{"version", evidence.version},
            {"device_id", evidence.device_id},
            {"rot", evidence.rot_backend},
            {"nonce", HexEncode(evidence.nonce)},
            {"manufacturer_chain", evidence.manufacturer_chain},
            {"measurements", std::move(measurements)},
            {"registers", std::move(registers)},
            {"csr", evidence.csr}};
  if (evidence.tpm) {
    json["tpm"] = Json{{"ek_public", Base64Encode(evidence.tpm->ek_public)},
                       {"ak_public", Base64Encode(evidence.tpm->ak_public)}};
  }
  return json;
}

Expected<std::string> CreateSignedEvidence(rot::RootOfTrust& rot, std::span<const std::uint8_t> nonce,
                                           const std::string& csr_pem) {
  if (nonce.size() != kNonceBytes) {
    return MakeError(ErrorCode::kInvalidArgument, "the challenge nonce must be " + std::to_string(kNonceBytes) +
                                                      " bytes, got " + std::to_string(nonce.size()));
  }
  Evidence evidence;
  evidence.device_id = rot.DeviceId();
  evidence.rot_backend = std::string(rot.Backend());
  evidence.nonce.assign(nonce.begin(), nonce.end());
  // A device that was never certified still sends its evidence, with an
  // empty chain: refusing it is the service's decision, and its verdict
  // (not-genuine) is what the device's operator needs to see.
  auto chain = rot.ManufacturerChain();
  if (!chain && chain.error().code() != ErrorCode::kNotFound) return WrapError(chain.error(), "building evidence");
  if (chain) {
    for (const auto& cert : *chain) evidence.manufacturer_chain.push_back(cert.Pem());
  }
  evidence.measurements = rot.MeasurementLog();
  evidence.registers = rot.ReadRegisters();
  evidence.csr = csr_pem;
  evidence.tpm = rot.TpmKeys();

  Json evidence_json = EvidenceToJson(evidence);
  // Hold the device to the service's parser: evidence that would be refused
  // fails here, with the field named, instead of as a 400 from the service.
  if (auto checked = EvidenceFromJson(evidence_json, "evidence"); !checked) {
    return WrapError(checked.error(), "building evidence");
  }
  CITADEL_TRY(auto canonical, CanonicalJson(evidence_json));
  auto signature = rot.SignWithIdentity(crypto::Sha256(canonical));
  if (!signature) return WrapError(signature.error(), "signing evidence");
  Json body{{"evidence", std::move(evidence_json)}, {"signature", Base64Encode(*signature)}};
  CITADEL_TRY(auto text, CanonicalJson(body));
  if (text.size() > kMaxEvidenceBytes) {
    return MakeError(ErrorCode::kTooLarge, "signed evidence is " + std::to_string(text.size()) +
                                               " bytes; the limit is " + std::to_string(kMaxEvidenceBytes));
  }
  return text;
}

Expected<SignedEvidence> ParseSignedEvidence(std::string_view body) {
  CITADEL_TRY(auto json, ParseBody(body, kMaxEvidenceBytes, "evidence body"));
  CITADEL_TRY_VOID(ExpectObject(json, "", {"evidence", "signature"}, UnknownFields::kRefuse));
  SignedEvidence signed_evidence;
  CITADEL_TRY(const Json* evidence, Require(json, "", "evidence"));
  CITADEL_TRY(signed_evidence.evidence, EvidenceFromJson(*evidence, "evidence"));

  CITADEL_TRY(signed_evidence.signature, RequiredBase64(json, "", "signature", kMaxSignatureBytes));

  // The signature covers the canonical bytes of what the device sent. Every
  // value was checked above (integers are small, no floats), so the parsed
  // object re-canonicalises to exactly those bytes for an honest device.
  CITADEL_TRY(signed_evidence.canonical_evidence, CanonicalJson(*evidence));
  return signed_evidence;
}

bool VerifyEvidenceSignature(const SignedEvidence& evidence, const crypto::PublicKey& identity_key) {
  if (evidence.canonical_evidence.empty() || evidence.signature.empty()) return false;
  return identity_key.Verify(AsBytes(evidence.canonical_evidence), evidence.signature);
}

// --- Attestation result ---

Json AttestationResultToJson(const AttestationResult& result) {
  Json json{{"verdict", result.verdict}};
  if (!result.device_id.empty()) json["device_id"] = result.device_id;
  if (result.verdict == "accepted-unclaimed") {
    json["retry_after_seconds"] = result.retry_after_seconds;
  } else if (result.activation) {
    json["activation"] = Json{{"id", result.activation->id},
                              {"credential_blob", Base64Encode(result.activation->credential_blob)},
                              {"encrypted_secret", Base64Encode(result.activation->encrypted_secret)}};
  } else {
    json["tenant_id"] = result.tenant_id;
    json["certificate"] = result.certificate;
    json["chain"] = result.chain;
    json["expires_at"] = result.expires_at;
  }
  return json;
}

Json ActivationRequestToJson(const ActivationRequest& request) {
  return Json{{"activation_id", request.activation_id},
              {"device_id", request.device_id},
              {"secret", Base64Encode(request.secret)}};
}

Expected<ActivationRequest> ParseActivationRequest(std::string_view body) {
  CITADEL_TRY(auto json, ParseBody(body, kMaxMessageBytes, "activation request"));
  CITADEL_TRY_VOID(ExpectObject(json, "", {"activation_id", "device_id", "secret"}, UnknownFields::kRefuse));
  ActivationRequest request;
  CITADEL_TRY(request.activation_id, RequiredString(json, "", "activation_id", 64, /*allow_empty=*/false));
  if (!IsLowerHex(request.activation_id)) return FieldError("activation_id", "expected lower-case hex");
  CITADEL_TRY(const Json* device_id, Require(json, "", "device_id"));
  CITADEL_TRY_VOID(ReadHex(*device_id, "device_id", crypto::Sha256Digest{}.size()));
  request.device_id = device_id->get<std::string>();
  CITADEL_TRY(request.secret, RequiredBase64(json, "", "secret", 64));
  return request;
}

Expected<AttestationResult> ParseAttestationResult(std::string_view body) {
  CITADEL_TRY(auto json, ParseBody(body, kMaxMessageBytes, "attestation result"));
  CITADEL_TRY_VOID(ExpectObject(json, "", {}, UnknownFields::kIgnore));
  AttestationResult result;
  CITADEL_TRY(result.verdict, RequiredString(json, "", "verdict", 64, /*allow_empty=*/false));
  CITADEL_TRY(result.device_id, OptionalString(json, "", "device_id", kMaxShortString));
  if (result.verdict == "accepted-unclaimed") {
    CITADEL_TRY(result.retry_after_seconds, RequiredInteger(json, "", "retry_after_seconds", 0, kMaxSafeInteger));
    return result;
  }
  if (result.verdict == "activation-required") {
    CITADEL_TRY(const Json* activation, Require(json, "", "activation"));
    CITADEL_TRY_VOID(
        ExpectObject(*activation, "activation", {"id", "credential_blob", "encrypted_secret"}, UnknownFields::kRefuse));
    TpmActivationChallenge challenge;
    CITADEL_TRY(challenge.id, RequiredString(*activation, "activation", "id", 64, /*allow_empty=*/false));
    if (!IsLowerHex(challenge.id)) return FieldError("activation.id", "expected lower-case hex");
    CITADEL_TRY(challenge.credential_blob,
                RequiredBase64(*activation, "activation", "credential_blob", kMaxTpmPublicBytes));
    CITADEL_TRY(challenge.encrypted_secret,
                RequiredBase64(*activation, "activation", "encrypted_secret", kMaxTpmPublicBytes));
    result.activation = std::move(challenge);
    return result;
  }
  if (result.verdict != "accepted") {
    return FieldError("verdict", "unknown verdict " + Quote(result.verdict));
  }
  CITADEL_TRY(result.tenant_id, RequiredString(json, "", "tenant_id", kMaxShortString, /*allow_empty=*/false));
  CITADEL_TRY(result.certificate, RequiredString(json, "", "certificate", kMaxPemBytes, /*allow_empty=*/false));
  CITADEL_TRY(result.chain, ReadPemArray(json, "", "chain", kMaxResultChain));
  CITADEL_TRY(result.expires_at, RequiredString(json, "", "expires_at", 64, /*allow_empty=*/false));
  if (!ParseRfc3339(result.expires_at)) return FieldError("expires_at", "expected an RFC 3339 time");
  return result;
}

// --- Check-in ---

namespace {

bool IsUpdateState(std::string_view state) {
  return std::find(kUpdateStates.begin(), kUpdateStates.end(), state) != kUpdateStates.end();
}

Expected<InstalledComponent> InstalledFromJson(const Json& value, std::string_view path) {
  CITADEL_TRY_VOID(ExpectObject(value, path, {"kind", "component_id", "version", "sha256"}, UnknownFields::kRefuse));
  InstalledComponent installed;
  CITADEL_TRY(installed.kind, RequiredString(value, path, "kind", 8, /*allow_empty=*/false));
  if (installed.kind != "app" && installed.kind != "os") {
    return FieldError(Child(path, "kind"), "expected \"app\" or \"os\", got " + Quote(installed.kind));
  }
  CITADEL_TRY(installed.component_id,
              RequiredString(value, path, "component_id", kMaxComponentIdBytes, /*allow_empty=*/false));
  CITADEL_TRY(installed.version, RequiredString(value, path, "version", kMaxVersionBytes, /*allow_empty=*/false));
  CITADEL_TRY(const Json* sha256, Require(value, path, "sha256"));
  if (!(sha256->is_string() && sha256->get_ref<const std::string&>().empty())) {
    CITADEL_TRY_VOID(ReadHex(*sha256, Child(path, "sha256"), crypto::Sha256Digest{}.size()));
  }
  installed.sha256 = sha256->get<std::string>();
  return installed;
}

Expected<UpdateReportEntry> ReportFromJson(const Json& value, std::string_view path) {
  CITADEL_TRY_VOID(ExpectObject(value, path, {"deployment_id", "target_name", "state", "reason", "reported_at"},
                                UnknownFields::kRefuse));
  UpdateReportEntry report;
  CITADEL_TRY(report.deployment_id,
              RequiredString(value, path, "deployment_id", kMaxDeploymentIdBytes, /*allow_empty=*/false));
  CITADEL_TRY(report.target_name,
              RequiredString(value, path, "target_name", kMaxTargetNameBytes, /*allow_empty=*/false));
  CITADEL_TRY(report.state, RequiredString(value, path, "state", 32, /*allow_empty=*/false));
  if (!IsUpdateState(report.state)) {
    return FieldError(Child(path, "state"),
                      "unknown state " + Quote(report.state) +
                          " (expected downloading, installing, pending-reboot, committed or failed)");
  }
  CITADEL_TRY(report.reason, RequiredString(value, path, "reason", kMaxUpdateReasonBytes, /*allow_empty=*/true));
  CITADEL_TRY(report.reported_at, RequiredString(value, path, "reported_at", 64, /*allow_empty=*/false));
  if (!ParseRfc3339(report.reported_at)) return FieldError(Child(path, "reported_at"), "expected an RFC 3339 time");
  return report;
}

Expected<CheckInUpdate> CheckInUpdateFromJson(const Json& value, std::string_view path) {
  CITADEL_TRY_VOID(ExpectObject(value, path, {"installed", "reports"}, UnknownFields::kRefuse));
  CheckInUpdate update;
  auto installed_path = Child(path, "installed");
  CITADEL_TRY(const Json* installed, Require(value, path, "installed"));
  CITADEL_TRY_VOID(ExpectArray(*installed, installed_path, kMaxUpdateEntries));
  for (std::size_t i = 0; i < installed->size(); ++i) {
    CITADEL_TRY(auto entry, InstalledFromJson((*installed)[i], Element(installed_path, i)));
    update.installed.push_back(std::move(entry));
  }
  auto reports_path = Child(path, "reports");
  CITADEL_TRY(const Json* reports, Require(value, path, "reports"));
  CITADEL_TRY_VOID(ExpectArray(*reports, reports_path, kMaxUpdateEntries));
  for (std::size_t i = 0; i < reports->size(); ++i) {
    CITADEL_TRY(auto entry, ReportFromJson((*reports)[i], Element(reports_path, i)));
    update.reports.push_back(std::move(entry));
  }
  return update;
}

Json CheckInUpdateToJson(const CheckInUpdate& update) {
  Json installed = Json::array();
  for (const auto& c : update.installed) {
    installed.push_back(
        {{"kind", c.kind}, {"component_id", c.component_id}, {"version", c.version}, {"sha256", c.sha256}});
  }
  Json reports = Json::array();
  for (const auto& r : update.reports) {
    reports.push_back({{"deployment_id", r.deployment_id},
                       {"target_name", r.target_name},
                       {"state", r.state},
                       {"reason", r.reason},
                       {"reported_at", r.reported_at}});
  }
  return Json{{"installed", std::move(installed)}, {"reports", std::move(reports)}};
}

// A repository path the service names in a reply: absolute, under
// /v1/repo/, plain segments only. The device joins it to the service URL,
// so a hostile or broken reply cannot point it at another host or walk up.
bool IsRepositoryPath(std::string_view path) {
  constexpr std::string_view kPrefix = "/v1/repo/";
  if (path.substr(0, kPrefix.size()) != kPrefix) return false;
  std::string_view rest = path.substr(kPrefix.size());
  if (rest.empty()) return false;
  std::size_t start = 0;
  while (start <= rest.size()) {
    std::size_t end = rest.find('/', start);
    if (end == std::string_view::npos) end = rest.size();
    std::string_view segment = rest.substr(start, end - start);
    if (segment.empty() || segment == "." || segment == "..") return false;
    for (char c : segment) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                c == '.';
      if (!ok) return false;
    }
    start = end + 1;
  }
  return true;
}

Expected<CheckInUpdateReply> CheckInUpdateReplyFromJson(const Json& value, std::string_view path) {
  // Like the reply itself: members a newer service adds are ignored.
  CITADEL_TRY_VOID(ExpectObject(value, path, {}, UnknownFields::kIgnore));
  CheckInUpdateReply update;
  for (auto [key, member] :
       {std::pair{"image_repository", &update.image_repository}, std::pair{"director", &update.director}}) {
    CITADEL_TRY(*member, RequiredString(value, path, key, kMaxRepositoryPathBytes, /*allow_empty=*/false));
    if (!IsRepositoryPath(*member)) {
      return FieldError(Child(path, key), "expected a path under /v1/repo/, got " + Quote(*member));
    }
  }
  CITADEL_TRY(update.director_timestamp_version,
              RequiredInteger(value, path, "director_timestamp_version", 0, kMaxSafeInteger));
  CITADEL_TRY(const Json* update_now, Require(value, path, "update_now"));
  CITADEL_TRY(update.update_now, json_fields::ReadBool(*update_now, Child(path, "update_now")));
  CITADEL_TRY(update.acknowledged,
              RequiredInteger(value, path, "acknowledged", 0, static_cast<std::int64_t>(kMaxUpdateEntries)));
  return update;
}

}  // namespace

Json CheckInToJson(const CheckIn& check_in) {
  Json json{{"os_version", check_in.os_version},
            {"runtime_version", check_in.runtime_version},
            {"uptime_seconds", check_in.uptime_seconds},
            {"free_memory_kb", check_in.free_memory_kb}};
  if (check_in.update) json["update"] = CheckInUpdateToJson(*check_in.update);
  if (check_in.telemetry) {
    json["telemetry"] = {{"app_restarts", check_in.telemetry->app_restarts},
                         {"rx_bytes", check_in.telemetry->rx_bytes},
                         {"tx_bytes", check_in.telemetry->tx_bytes},
                         {"reports_queued", check_in.telemetry->reports_queued}};
  }
  return json;
}

Expected<CheckIn> ParseCheckIn(std::string_view body) {
  CITADEL_TRY(auto json, ParseBody(body, kMaxMessageBytes, "check-in"));
  CITADEL_TRY_VOID(ExpectObject(
      json, "", {"os_version", "runtime_version", "uptime_seconds", "free_memory_kb", "update", "telemetry"},
      UnknownFields::kRefuse));
  CheckIn check_in;
  CITADEL_TRY(check_in.os_version, RequiredString(json, "", "os_version", 128, /*allow_empty=*/true));
  CITADEL_TRY(check_in.runtime_version, RequiredString(json, "", "runtime_version", 128, /*allow_empty=*/true));
  CITADEL_TRY(check_in.uptime_seconds, RequiredInteger(json, "", "uptime_seconds", 0, kMaxSafeInteger));
  CITADEL_TRY(check_in.free_memory_kb, RequiredInteger(json, "", "free_memory_kb", 0, kMaxSafeInteger));
  if (const Json* update = Find(json, "update"); update != nullptr) {
    CITADEL_TRY(check_in.update, CheckInUpdateFromJson(*update, "update"));
  }
  if (const Json* telemetry = Find(json, "telemetry"); telemetry != nullptr) {
    CITADEL_TRY_VOID(ExpectObject(*telemetry, "telemetry", {"app_restarts", "rx_bytes", "tx_bytes", "reports_queued"},
                                  UnknownFields::kRefuse));
    CheckInTelemetry parsed;
    for (auto [key, member] :
         {std::pair{"app_restarts", &parsed.app_restarts}, std::pair{"rx_bytes", &parsed.rx_bytes},
          std::pair{"tx_bytes", &parsed.tx_bytes}, std::pair{"reports_queued", &parsed.reports_queued}}) {
      CITADEL_TRY(*member, RequiredInteger(*telemetry, "telemetry", key, 0, kMaxSafeInteger));
    }
    check_in.telemetry = parsed;
  }
  return check_in;
}

// --- Staged rollout ---

std::uint32_t RolloutBucket(std::string_view device_id, std::string_view deployment_id) {
  std::string input;
  input.reserve(deployment_id.size() + 1 + device_id.size());
  input.append(deployment_id).append(":").append(device_id);
  const crypto::Sha256Digest digest = crypto::Sha256(input);
  const std::uint32_t first = (std::uint32_t{digest[0]} << 24) | (std::uint32_t{digest[1]} << 16) |
                              (std::uint32_t{digest[2]} << 8) | std::uint32_t{digest[3]};
  return first % kRolloutBuckets;
}

bool InRollout(std::string_view device_id, std::string_view deployment_id, std::int64_t percent) {
  const std::int64_t clamped = std::clamp<std::int64_t>(percent, 0, 100);
  return static_cast<std::int64_t>(RolloutBucket(device_id, deployment_id)) < clamped * 100;
}

// --- App trust: check-in reply and the AppDevelopment capability ---

std::string KeyId(const crypto::PublicKey& key) { return HexEncode(crypto::Sha256(key.SpkiDer())); }

Expected<crypto::PublicKey> PublisherKeyFromEntry(const PublisherKeyEntry& entry) {
  auto key = crypto::PublicKey::FromPem(entry.public_key_pem);
  if (!key) return MakeError(ErrorCode::kInvalidArgument, "not a PEM public key: " + key.error().message());
  if (!key->IsP256()) return MakeError(ErrorCode::kInvalidArgument, "not an EC P-256 key");
  if (KeyId(*key) != entry.key_id) {
    return MakeError(ErrorCode::kInvalidArgument, "key_id is not the SHA-256 of the key's SubjectPublicKeyInfo");
  }
  return *key;
}

namespace {

Expected<PublisherKeyEntry> PublisherKeyEntryFromJson(const Json& value, std::string_view path) {
  CITADEL_TRY_VOID(ExpectObject(value, path, {"key_id", "public_key_pem"}, UnknownFields::kRefuse));
  PublisherKeyEntry entry;
  CITADEL_TRY(const Json* key_id, Require(value, path, "key_id"));
  CITADEL_TRY_VOID(ReadHex(*key_id, Child(path, "key_id"), crypto::Sha256Digest{}.size()));
  entry.key_id = key_id->get<std::string>();
  CITADEL_TRY(entry.public_key_pem,
              RequiredString(value, path, "public_key_pem", kMaxPublisherKeyPemBytes, /*allow_empty=*/false));
  auto key = PublisherKeyFromEntry(entry);
  if (!key) return FieldError(path, key.error().message());
  return entry;
}

Expected<DevelopmentCapabilityClaims> ClaimsFromJson(const Json& value, std::string_view path) {
  CITADEL_TRY_VOID(ExpectObject(value, path,
                                {"Type", "DeviceId", "TenantId", "IssuedAt", "CapabilityId", "DeveloperKeys"},
                                UnknownFields::kRefuse));
  DevelopmentCapabilityClaims claims;
  CITADEL_TRY(auto type, RequiredString(value, path, "Type", kMaxShortString, /*allow_empty=*/false));
  if (type != kAppDevelopmentType) return FieldError(Child(path, "Type"), "expected \"AppDevelopment\"");
  CITADEL_TRY(const Json* device_id, Require(value, path, "DeviceId"));
  CITADEL_TRY_VOID(ReadHex(*device_id, Child(path, "DeviceId"), crypto::Sha256Digest{}.size()));
  claims.device_id = device_id->get<std::string>();
  CITADEL_TRY(claims.tenant_id, RequiredString(value, path, "TenantId", kMaxShortString, /*allow_empty=*/false));
  CITADEL_TRY(claims.issued_at, RequiredString(value, path, "IssuedAt", 64, /*allow_empty=*/false));
  if (!ParseRfc3339(claims.issued_at)) return FieldError(Child(path, "IssuedAt"), "expected an RFC 3339 time");
  CITADEL_TRY(claims.capability_id, RequiredString(value, path, "CapabilityId", 64, /*allow_empty=*/false));
  if (const Json* keys = Find(value, "DeveloperKeys"); keys != nullptr) {
    auto keys_path = Child(path, "DeveloperKeys");
    CITADEL_TRY_VOID(ExpectArray(*keys, keys_path, kMaxDeveloperKeys));
    for (std::size_t i = 0; i < keys->size(); ++i) {
      auto element = Element(keys_path, i);
      CITADEL_TRY(auto text, ReadString((*keys)[i], element, 1024, /*allow_empty=*/false));
      auto der = Base64Decode(text);
      if (!der) return FieldError(element, "expected base64 of a DER SubjectPublicKeyInfo");
      auto key = crypto::PublicKey::FromSpkiDer(*der);
      if (!key || !key->IsP256()) return FieldError(element, "expected an EC P-256 public key");
      claims.developer_keys.push_back(std::move(*key));
    }
  }
  return claims;
}

}  // namespace

Json CheckInReplyToJson(const CheckInReply& reply) {
  Json keys = Json::array();
  for (const auto& key : reply.publisher_keys) {
    keys.push_back({{"key_id", key.key_id}, {"public_key_pem", key.public_key_pem}});
  }
  Json json{{"device_id", reply.device_id},
            {"tenant_id", reply.tenant_id},
            {"next_check_in_seconds", reply.next_check_in_seconds},
            {"publisher_keys", std::move(keys)},
            {"app_development", reply.app_development}};
  if (reply.update) {
    json["update"] = {{"image_repository", reply.update->image_repository},
                      {"director", reply.update->director},
                      {"director_timestamp_version", reply.update->director_timestamp_version},
                      {"update_now", reply.update->update_now},
                      {"acknowledged", reply.update->acknowledged}};
  }
  if (reply.reporting) json["reporting"] = {{"crash_dumps", reply.reporting->crash_dumps}};
  return json;
}

Expected<CheckInReply> ParseCheckInReply(std::string_view body) {
  CITADEL_TRY(auto json, ParseBody(body, kMaxMessageBytes, "check-in reply"));
  // Unknown members are ignored: a newer service may say more than this
  // device understands. What it does understand is read strictly.
  CITADEL_TRY_VOID(ExpectObject(json, "", {}, UnknownFields::kIgnore));
  CheckInReply reply;
  CITADEL_TRY(reply.device_id, OptionalString(json, "", "device_id", kMaxShortString));
  CITADEL_TRY(reply.tenant_id, OptionalString(json, "", "tenant_id", kMaxShortString));
  if (const Json* next = Find(json, "next_check_in_seconds"); next != nullptr) {
    CITADEL_TRY(reply.next_check_in_seconds, ReadInteger(*next, "next_check_in_seconds", 0, kMaxSafeInteger));
  }
  if (const Json* keys = Find(json, "publisher_keys"); keys != nullptr) {
    CITADEL_TRY_VOID(ExpectArray(*keys, "publisher_keys", kMaxPublisherKeys));
    for (std::size_t i = 0; i < keys->size(); ++i) {
      CITADEL_TRY(auto entry, PublisherKeyEntryFromJson((*keys)[i], Element("publisher_keys", i)));
      reply.publisher_keys.push_back(std::move(entry));
    }
  }
  if (const Json* capability = Find(json, "app_development"); capability != nullptr && !capability->is_null()) {
    auto parsed = ParseDevelopmentCapabilityEnvelope(*capability);
    if (!parsed) return WrapError(parsed.error(), "app_development");
    reply.app_development = *capability;
  }
  if (const Json* update = Find(json, "update"); update != nullptr && !update->is_null()) {
    CITADEL_TRY(reply.update, CheckInUpdateReplyFromJson(*update, "update"));
  }
  if (const Json* reporting = Find(json, "reporting"); reporting != nullptr && !reporting->is_null()) {
    CITADEL_TRY_VOID(ExpectObject(*reporting, "reporting", {}, UnknownFields::kIgnore));
    ReportingSettings settings;
    if (const Json* dumps = Find(*reporting, "crash_dumps"); dumps != nullptr) {
      CITADEL_TRY(settings.crash_dumps, json_fields::ReadBool(*dumps, "reporting.crash_dumps"));
    }
    reply.reporting = settings;
  }
  return reply;
}

Json DevelopmentCapabilityClaimsToJson(const DevelopmentCapabilityClaims& claims) {
  Json json{{"Type", kAppDevelopmentType},
            {"DeviceId", claims.device_id},
            {"TenantId", claims.tenant_id},
            {"IssuedAt", claims.issued_at},
            {"CapabilityId", claims.capability_id}};
  if (!claims.developer_keys.empty()) {
    Json keys = Json::array();
    for (const auto& key : claims.developer_keys) keys.push_back(Base64Encode(key.SpkiDer()));
    json["DeveloperKeys"] = std::move(keys);
  }
  return json;
}

Expected<Json> CreateDevelopmentCapabilityEnvelope(const DevelopmentCapabilityClaims& claims,
                                                   const crypto::PrivateKey& issuing_key,
                                                   const crypto::Certificate& issuing_certificate) {
  if (claims.developer_keys.size() > kMaxDeveloperKeys) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "at most " + std::to_string(kMaxDeveloperKeys) + " developer keys per capability");
  }
  Json capability = DevelopmentCapabilityClaimsToJson(claims);
  // Round-trip through the parser: the service never signs a document its
  // own devices would refuse.
  CITADEL_TRY_VOID(ClaimsFromJson(capability, "capability"));
  CITADEL_TRY(auto canonical, CanonicalJson(capability));
  CITADEL_TRY(auto signature, issuing_key.Sign(AsBytes(canonical)));
  return Json{{"capability", std::move(capability)},
              {"signature", Base64Encode(signature)},
              {"certificate", issuing_certificate.Pem()}};
}

Expected<DevelopmentCapabilityEnvelope> ParseDevelopmentCapabilityEnvelope(const Json& envelope) {
  CITADEL_TRY_VOID(ExpectObject(envelope, "", {"capability", "signature", "certificate"}, UnknownFields::kRefuse));
  DevelopmentCapabilityEnvelope parsed;
  CITADEL_TRY(const Json* capability, Require(envelope, "", "capability"));
  CITADEL_TRY(parsed.claims, ClaimsFromJson(*capability, "capability"));
  CITADEL_TRY(parsed.canonical_capability, CanonicalJson(*capability));
  CITADEL_TRY(parsed.signature, RequiredBase64(envelope, "", "signature", kMaxSignatureBytes));
  CITADEL_TRY(parsed.certificate_pem, RequiredString(envelope, "", "certificate", kMaxPemBytes, /*allow_empty=*/false));
  return parsed;
}

Expected<DevelopmentCapabilityEnvelope> ParseDevelopmentCapabilityEnvelope(std::string_view text) {
  CITADEL_TRY(auto json, ParseBody(text, kMaxCapabilityBytes, "development capability"));
  return ParseDevelopmentCapabilityEnvelope(json);
}

// --- Problem details ---

Json ProblemToJson(const Problem& problem) {
  return Json{{"type", problem.type}, {"title", problem.title}, {"status", problem.status}, {"detail", problem.detail}};
}

Expected<Problem> ParseProblem(std::string_view body) {
  CITADEL_TRY(auto json, ParseBody(body, kMaxMessageBytes, "problem details"));
  CITADEL_TRY_VOID(ExpectObject(json, "", {}, UnknownFields::kIgnore));
  Problem problem;
  CITADEL_TRY(problem.type, RequiredString(json, "", "type", kMaxShortString, /*allow_empty=*/false));
  CITADEL_TRY(problem.title, OptionalString(json, "", "title", kMaxShortString * 4));
  CITADEL_TRY(problem.detail, OptionalString(json, "", "detail", kMaxDetailBytes));
  if (const Json* status = Find(json, "status"); status != nullptr) {
    CITADEL_TRY(auto code, ReadInteger(*status, "status", 100, 599));
    problem.status = static_cast<int>(code);
  }
  return problem;
}

std::string ProblemType(std::string_view name) { return "urn:citadel:problem:" + std::string(name); }

}  // namespace citadel::protocol
