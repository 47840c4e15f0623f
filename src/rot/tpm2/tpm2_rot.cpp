#include "rot/tpm2/tpm2_rot.hpp"

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <tss2/tss2_mu.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <system_error>

#include "common/canonical_json.hpp"
#include "common/file.hpp"
#include "common/log.hpp"
#include "rot/tpm2/esys_device.hpp"
#include "tpm/public_area.hpp"

namespace citadel::rot {

using tpm2::CheckRc;
using tpm2::CloseOnExit;
using tpm2::EsysOut;
using tpm2::FlushOnExit;

struct Tpm2RootOfTrust::Handles {
  ESYS_TR ek = ESYS_TR_NONE;
  ESYS_TR srk = ESYS_TR_NONE;
  ESYS_TR ak = ESYS_TR_NONE;
  ESYS_TR tls = ESYS_TR_NONE;
};

namespace {

namespace fs = std::filesystem;

constexpr std::size_t kMaxQuoteNonceBytes = 1024;
constexpr std::size_t kMaxLogEvents = 4096;
constexpr std::size_t kMaxLogFileBytes = 4u << 20;
constexpr std::size_t kMaxChainFileBytes = 256 * 1024;
constexpr std::size_t kMaxChainCertificates = 8;
constexpr std::size_t kMaxSealedSecretBytes = 128;  // MAX_SYM_DATA
constexpr std::size_t kMaxEkCertificateBytes = 8192;
constexpr std::uint32_t kCounterIndexBase = 0x01500000;
constexpr std::uint32_t kCounterBaseIndexBase = 0x01600000;
constexpr std::uint32_t kIndexLowMask = 0x000FFFFF;
constexpr TPM2_RC kRcInitialize = TPM2_RC_INITIALIZE;

fs::path IntermediatesPath(const fs::path& dir) { return dir / "manufacturer-intermediates.pem"; }
fs::path EventLogPath(const fs::path& dir, std::uint32_t reset_count) {
  return dir / ("eventlog-" + std::to_string(reset_count) + ".json");
}

// ---- marshalling ----------------------------------------------------------

template <typename T>
using MarshalFn = TSS2_RC (*)(const T*, std::uint8_t[], std::size_t, std::size_t*);
template <typename T>
using UnmarshalFn = TSS2_RC (*)(const std::uint8_t[], std::size_t, std::size_t*, T*);

template <typename T>
Expected<void> AppendMarshalled(Bytes& out, const T& value, MarshalFn<T> marshal, std::string_view what) {
  Bytes buffer(sizeof(T) + 16);
  std::size_t offset = 0;
  if (marshal(&value, buffer.data(), buffer.size(), &offset) != TSS2_RC_SUCCESS) {
    return MakeError(ErrorCode::kInternal, "cannot marshal " + std::string(what));
  }
  out.insert(out.end(), buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(offset));
  return kOk;
}

template <typename T>
Expected<T> UnmarshalNext(std::span<const std::uint8_t> data, std::size_t& offset, UnmarshalFn<T> unmarshal,
                          std::string_view what) {
  T value{};
  if (unmarshal(data.data(), data.size(), &offset, &value) != TSS2_RC_SUCCESS) {
    return MakeError(ErrorCode::kParse, "malformed " + std::string(what));
  }
  return value;
}

// ---- TPM queries ------------------------------------------------------------

Expected<void> StartupIfNeeded(ESYS_CONTEXT* esys) {
  TSS2_RC rc = Esys_Startup(esys, TPM2_SU_CLEAR);
  // Firmware (or swtpm's startup-clear) normally started the TPM already.
  if (rc == TSS2_RC_SUCCESS || rc == kRcInitialize) return kOk;
  return CheckRc("TPM2_Startup", rc);
}

// Whether a persistent object or NV index exists at `handle`.
Expected<bool> HandleExists(ESYS_CONTEXT* esys, std::uint32_t handle) {
  EsysOut<TPMS_CAPABILITY_DATA> data;
  TPMI_YES_NO more = TPM2_NO;
  CITADEL_TRY_VOID(
      CheckRc("TPM2_GetCapability(handles)", Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                                                TPM2_CAP_HANDLES, handle, 1, &more, data.put())));
  return data->data.handles.count > 0 && data->data.handles.handle[0] == handle;
}

Expected<std::uint32_t> TpmProperty(ESYS_CONTEXT* esys, TPM2_PT property) {
  EsysOut<TPMS_CAPABILITY_DATA> data;
  TPMI_YES_NO more = TPM2_NO;
  CITADEL_TRY_VOID(CheckRc("TPM2_GetCapability(properties)",
                           Esys_GetCapability(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_TPM_PROPERTIES,
                                              property, 1, &more, data.put())));
  const TPML_TAGGED_TPM_PROPERTY& properties = data->data.tpmProperties;
  if (properties.count == 0 || properties.tpmProperty[0].property != property) {
    return MakeError(ErrorCode::kNotFound, "the TPM does not report property " + tpm::HandleHex(property));
  }
  return properties.tpmProperty[0].value;
}

Expected<ESYS_TR> TrForHandle(ESYS_CONTEXT* esys, std::uint32_t handle) {
  ESYS_TR object = ESYS_TR_NONE;
  CITADEL_TRY_VOID(CheckRc("TPM2_ReadPublic(" + tpm::HandleHex(handle) + ")",
                           Esys_TR_FromTPMPublic(esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &object)));
  return object;
}

Expected<Bytes> ReadPublicBytes(ESYS_CONTEXT* esys, ESYS_TR object) {
  EsysOut<TPM2B_PUBLIC> out_public;
  CITADEL_TRY_VOID(CheckRc("TPM2_ReadPublic", Esys_ReadPublic(esys, object, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                                              out_public.put(), nullptr, nullptr)));
  return tpm::MarshalPublic(out_public->publicArea);
}

Expected<TPM2B_NV_PUBLIC> NvReadPublic(ESYS_CONTEXT* esys, ESYS_TR index) {
  EsysOut<TPM2B_NV_PUBLIC> out_public;
  CITADEL_TRY_VOID(CheckRc("TPM2_NV_ReadPublic", Esys_NV_ReadPublic(esys, index, ESYS_TR_NONE, ESYS_TR_NONE,
                                                                    ESYS_TR_NONE, out_public.put(), nullptr)));
  return *out_public;
}

// Reads `size` bytes of an NV index the index's own (empty) auth can read,
// in chunks the TPM accepts.
Expected<Bytes> NvRead(ESYS_CONTEXT* esys, ESYS_TR index, std::size_t size) {
  CITADEL_TRY(std::uint32_t max_chunk, TpmProperty(esys, TPM2_PT_NV_BUFFER_MAX));
  max_chunk = std::clamp<std::uint32_t>(max_chunk, 64, sizeof(TPM2B_MAX_NV_BUFFER::buffer));
  Bytes data;
  data.reserve(size);
  while (data.size() < size) {
    auto chunk = static_cast<std::uint16_t>(std::min<std::size_t>(max_chunk, size - data.size()));
    EsysOut<TPM2B_MAX_NV_BUFFER> out;
    CITADEL_TRY_VOID(
        CheckRc("TPM2_NV_Read", Esys_NV_Read(esys, index, index, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, chunk,
                                             static_cast<std::uint16_t>(data.size()), out.put())));
    if (out->size != chunk) return MakeError(ErrorCode::kIo, "TPM2_NV_Read returned a short chunk");
    data.insert(data.end(), out->buffer, out->buffer + out->size);
  }
  return data;
}

// The length of the DER element at the start of `data` (header and body,
// read by OpenSSL's ASN.1 decoder), so the zero padding after an EK
// certificate in NV can be cut.
Expected<std::size_t> DerElementLength(std::span<const std::uint8_t> data) {
  const unsigned char* cursor = data.data();
  long body = 0;
  int tag = 0;
  int tag_class = 0;
  const int info = ASN1_get_object(&cursor, &body, &tag, &tag_class, static_cast<long>(data.size()));
  if ((info & 0x80) != 0 || (info & V_ASN1_CONSTRUCTED) == 0 || tag != V_ASN1_SEQUENCE) {
    ERR_clear_error();
    return MakeError(ErrorCode::kParse, "the EK certificate in NV is not a DER certificate within its index");
  }
  return static_cast<std::size_t>(cursor - data.data()) + static_cast<std::size_t>(body);
}

// ---- object templates -------------------------------------------------------

// TCG "Provisioning Guidance" storage root key template (ECC P-256).
TPM2B_PUBLIC SrkTemplate() {
  TPM2B_PUBLIC in_public{};
  TPMT_PUBLIC& area = in_public.publicArea;
  area.type = TPM2_ALG_ECC;
  area.nameAlg = TPM2_ALG_SHA256;
  area.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                          TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
  area.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
  area.parameters.eccDetail.symmetric.keyBits.aes = 128;
  area.parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
  area.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
  area.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
  area.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  area.unique.ecc.x.size = 32;
  area.unique.ecc.y.size = 32;
  return in_public;
}

// ECDSA-SHA256 P-256 signing key made inside the TPM, never duplicable.
// noDA: its authValue is empty, so dictionary-attack protection guards
// nothing, while a device losing power a few times (an unorderly shutdown
// counts as a failure) would otherwise lock its identity out of the TPM.
TPM2B_PUBLIC SigningKeyTemplate(bool restricted) {
  TPM2B_PUBLIC in_public{};
  TPMT_PUBLIC& area = in_public.publicArea;
  area.type = TPM2_ALG_ECC;
  area.nameAlg = TPM2_ALG_SHA256;
  area.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                          TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA | TPMA_OBJECT_SIGN_ENCRYPT;
  if (restricted) area.objectAttributes |= TPMA_OBJECT_RESTRICTED;
  area.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
  area.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
  area.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
  area.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
  area.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  return in_public;
}

Expected<void> MakePersistent(ESYS_CONTEXT* esys, ESYS_TR transient, std::uint32_t handle) {
  ESYS_TR persistent = ESYS_TR_NONE;
  CITADEL_TRY_VOID(CheckRc("TPM2_EvictControl(" + tpm::HandleHex(handle) + ")",
                           Esys_EvictControl(esys, ESYS_TR_RH_OWNER, transient, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                             ESYS_TR_NONE, handle, &persistent)));
  CloseOnExit close(esys, persistent);
  return kOk;
}

Expected<void> CreateSrk(ESYS_CONTEXT* esys) {
  TPM2B_SENSITIVE_CREATE sensitive{};
  TPM2B_PUBLIC in_public = SrkTemplate();
  TPM2B_DATA outside_info{};
  TPML_PCR_SELECTION creation_pcr{};
  ESYS_TR primary = ESYS_TR_NONE;
  CITADEL_TRY_VOID(CheckRc(
      "TPM2_CreatePrimary(SRK)",
      Esys_CreatePrimary(esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive, &in_public,
                         &outside_info, &creation_pcr, &primary, nullptr, nullptr, nullptr, nullptr)));
  FlushOnExit flush(esys, primary);
  return MakePersistent(esys, primary, Tpm2RootOfTrust::kSrkHandle);
}

Expected<void> CreatePersistentChild(ESYS_CONTEXT* esys, ESYS_TR parent, const TPM2B_PUBLIC& in_public,
                                     std::uint32_t handle) {
  TPM2B_SENSITIVE_CREATE sensitive{};
  TPM2B_DATA outside_info{};
  TPML_PCR_SELECTION creation_pcr{};
  EsysOut<TPM2B_PRIVATE> out_private;
  EsysOut<TPM2B_PUBLIC> out_public;
  CITADEL_TRY_VOID(CheckRc("TPM2_Create", Esys_Create(esys, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                                      &sensitive, &in_public, &outside_info, &creation_pcr,
                                                      out_private.put(), out_public.put(), nullptr, nullptr, nullptr)));
  ESYS_TR loaded = ESYS_TR_NONE;
  CITADEL_TRY_VOID(CheckRc("TPM2_Load", Esys_Load(esys, parent, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                                  out_private.get(), out_public.get(), &loaded)));
  FlushOnExit flush(esys, loaded);
  return MakePersistent(esys, loaded, handle);
}

// Opens the persistent key at `handle`, creating it first when missing.
Expected<ESYS_TR> ProvisionKey(ESYS_CONTEXT* esys, std::uint32_t handle, std::string_view what,
                               const std::function<Expected<void>()>& create) {
  CITADEL_TRY(bool exists, HandleExists(esys, handle));
  if (!exists) {
    auto created = create();
    if (!created)
      return WrapError(created.error(), "creating the " + std::string(what) + " at " + tpm::HandleHex(handle));
    log::Info("tpm2 root of trust: created key", {{"key", what}, {"handle", tpm::HandleHex(handle)}});
  }
  return TrForHandle(esys, handle);
}

Expected<void> CheckTlsKey(const tpm::PublicArea& area) {
  const TPMA_OBJECT attributes = area.area.objectAttributes;
  constexpr TPMA_OBJECT kRequired =
      TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_SIGN_ENCRYPT;
  if (area.area.type != TPM2_ALG_ECC || (attributes & kRequired) != kRequired ||
      (attributes & (TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT)) != 0) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "the persistent object at " + tpm::HandleHex(Tpm2RootOfTrust::kTlsKeyHandle) +
                         " is not an unrestricted, non-duplicable ECC signing key; it is not Citadel's TLS key");
  }
  return kOk;
}

// ---- PCRs and sessions ----------------------------------------------------

TPML_PCR_SELECTION PcrSelection(std::uint32_t mask_of_registers) {
  TPML_PCR_SELECTION selection{};
  selection.count = 1;
  selection.pcrSelections[0].hash = TPM2_ALG_SHA256;
  selection.pcrSelections[0].sizeofSelect = 3;
  for (std::uint32_t i = 0; i < kRegisterCount; ++i) {
    if ((mask_of_registers & (1u << i)) == 0) continue;
    std::uint32_t pcr = Tpm2RootOfTrust::kFirstPcr + i;
    selection.pcrSelections[0].pcrSelect[pcr / 8] |= static_cast<std::uint8_t>(1u << (pcr % 8));
  }
  return selection;
}

constexpr std::uint32_t kAllRegisters = (1u << kRegisterCount) - 1;

Expected<ESYS_TR> StartSession(ESYS_CONTEXT* esys, TPM2_SE type) {
  TPMT_SYM_DEF symmetric{};
  symmetric.algorithm = TPM2_ALG_NULL;
  ESYS_TR session = ESYS_TR_NONE;
  CITADEL_TRY_VOID(CheckRc("TPM2_StartAuthSession",
                           Esys_StartAuthSession(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                                 ESYS_TR_NONE, nullptr, type, &symmetric, TPM2_ALG_SHA256, &session)));
  return session;
}

Expected<TPM2B_DIGEST> PolicyDigest(ESYS_CONTEXT* esys, ESYS_TR session) {
  EsysOut<TPM2B_DIGEST> digest;
  CITADEL_TRY_VOID(CheckRc("TPM2_PolicyGetDigest", Esys_PolicyGetDigest(esys, session, ESYS_TR_NONE, ESYS_TR_NONE,
                                                                        ESYS_TR_NONE, digest.put())));
  return *digest;
}

// PolicyPCR with an empty digest: the TPM uses the PCRs' current values.
Expected<void> PolicyPcr(ESYS_CONTEXT* esys, ESYS_TR session, const TPML_PCR_SELECTION& selection) {
  TPM2B_DIGEST empty{};
  return CheckRc("TPM2_PolicyPCR",
                 Esys_PolicyPCR(esys, session, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &empty, &selection));
}

// ---- the event log file -----------------------------------------------------

Json EventToJson(const MeasurementEvent& event) {
  return Json{{"digest", HexEncode(event.digest)},
              {"name", event.name},
              {"register", event.register_index},
              {"type", event.type},
              {"version", event.version}};
}

Expected<MeasurementEvent> EventFromJson(const Json& item) {
  auto bad = [](std::string_view why) { return MakeError(ErrorCode::kParse, "event: " + std::string(why)); };
  if (!item.is_object() || item.size() != 5) return bad("not an object of 5 members");
  for (const char* key : {"digest", "name", "type", "version"}) {
    if (!item.contains(key) || !item[key].is_string()) return bad(std::string(key) + " is not a string");
  }
  if (!item.contains("register") || !item["register"].is_number_unsigned() ||
      item["register"].get<std::uint64_t>() >= kRegisterCount) {
    return bad("register is not 0-7");
  }
  MeasurementEvent event;
  event.register_index = static_cast<std::uint32_t>(item["register"].get<std::uint64_t>());
  event.type = item["type"].get<std::string>();
  event.name = item["name"].get<std::string>();
  event.version = item["version"].get<std::string>();
  auto digest = HexDecode(item["digest"].get<std::string>());
  if (!digest || digest->size() != event.digest.size()) return bad("digest is not 32 bytes of hex");
  std::copy(digest->begin(), digest->end(), event.digest.begin());
  return event;
}

// ---- counters ---------------------------------------------------------------

struct CounterIndices {
  std::uint32_t counter;
  std::uint32_t base;
};

CounterIndices IndicesFor(std::string_view name) {
  crypto::Sha256Digest digest = crypto::Sha256(name);
  std::uint32_t low = ((std::uint32_t{digest[0]} << 16) | (std::uint32_t{digest[1]} << 8) | digest[2]) & kIndexLowMask;
  return {kCounterIndexBase | low, kCounterBaseIndexBase | low};
}

std::uint64_t BigEndian64(std::span<const std::uint8_t> bytes) {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < 8; ++i) value = (value << 8) | bytes[i];
  return value;
}

// The state of one counter as the TPM holds it.
struct CounterState {
  bool counter_defined = false;
  bool counter_written = false;
  std::uint64_t counter = 0;
  bool base_defined = false;
  bool base_written = false;
  bool base_locked = false;
  std::uint64_t base = 0;
};

// The base index holds base (8 bytes, big-endian) || counter name: the
// name detects two names whose indices collide instead of sharing a value.
Expected<CounterState> ReadCounterState(ESYS_CONTEXT* esys, std::string_view name) {
  CounterIndices indices = IndicesFor(name);
  CounterState state;
  CITADEL_TRY(state.counter_defined, HandleExists(esys, indices.counter));
  if (state.counter_defined) {
    CITADEL_TRY(ESYS_TR counter, TrForHandle(esys, indices.counter));
    CloseOnExit close(esys, counter);
    CITADEL_TRY(TPM2B_NV_PUBLIC info, NvReadPublic(esys, counter));
    state.counter_written = (info.nvPublic.attributes & TPMA_NV_WRITTEN) != 0;
    if (state.counter_written) {
      CITADEL_TRY(Bytes value, NvRead(esys, counter, 8));
      state.counter = BigEndian64(value);
    }
  }
  CITADEL_TRY(state.base_defined, HandleExists(esys, indices.base));
  if (state.base_defined) {
    CITADEL_TRY(ESYS_TR base, TrForHandle(esys, indices.base));
    CloseOnExit close(esys, base);
    CITADEL_TRY(TPM2B_NV_PUBLIC info, NvReadPublic(esys, base));
    if (info.nvPublic.dataSize != 8 + name.size()) {
      return MakeError(ErrorCode::kConflict, "counter \"" + std::string(name) + "\": NV index " +
                                                 tpm::HandleHex(indices.base) + " belongs to another counter");
    }
    state.base_written = (info.nvPublic.attributes & TPMA_NV_WRITTEN) != 0;
    state.base_locked = (info.nvPublic.attributes & TPMA_NV_WRITELOCKED) != 0;
    if (state.base_written) {
      CITADEL_TRY(Bytes value, NvRead(esys, base, info.nvPublic.dataSize));
      if (AsText(std::span<const std::uint8_t>(value).subspan(8)) != name) {
        return MakeError(ErrorCode::kConflict, "counter \"" + std::string(name) + "\": NV index " +
                                                   tpm::HandleHex(indices.base) + " belongs to another counter");
      }
      state.base = BigEndian64(value);
    }
  }
  return state;
}

// The logical value: NV counter - base. A counter incremented whose base
// was not yet written (power lost in between) had its first increment:
// its value is 1, and the base written later is counter - 1 to match.
Expected<std::uint64_t> LogicalValue(const CounterState& state, std::string_view name) {
  if (!state.counter_written) return 0;
  if (!state.base_written) return 1;
  if (state.counter < state.base) {
    return MakeError(ErrorCode::kInternal, "counter \"" + std::string(name) + "\" is below its base");
  }
  return state.counter - state.base;
}

// The authPolicy of counter indices: only TPM2_NV_UndefineSpaceSpecial
// (which also needs platform authorisation) can satisfy it.
Expected<TPM2B_DIGEST> UndefineSpecialPolicy(ESYS_CONTEXT* esys) {
  CITADEL_TRY(ESYS_TR trial, StartSession(esys, TPM2_SE_TRIAL));
  FlushOnExit flush(esys, trial);
  CITADEL_TRY_VOID(CheckRc(
      "TPM2_PolicyCommandCode",
      Esys_PolicyCommandCode(esys, trial, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CC_NV_UndefineSpaceSpecial)));
  return PolicyDigest(esys, trial);
}

Expected<void> DefineNvIndex(ESYS_CONTEXT* esys, std::uint32_t index, TPMA_NV type_attributes, std::uint16_t size) {
  CITADEL_TRY(TPM2B_DIGEST policy, UndefineSpecialPolicy(esys));
  TPM2B_AUTH auth{};
  TPM2B_NV_PUBLIC info{};
  info.nvPublic.nvIndex = index;
  info.nvPublic.nameAlg = TPM2_ALG_SHA256;
  info.nvPublic.attributes = type_attributes | TPMA_NV_AUTHREAD | TPMA_NV_AUTHWRITE | TPMA_NV_NO_DA |
                             TPMA_NV_PLATFORMCREATE | TPMA_NV_POLICY_DELETE;
  info.nvPublic.authPolicy = policy;
  info.nvPublic.dataSize = size;
  ESYS_TR defined = ESYS_TR_NONE;
  // TPMA_NV_POLICY_DELETE requires a platform-created index.
  CITADEL_TRY_VOID(CheckRc("TPM2_NV_DefineSpace(" + tpm::HandleHex(index) + ")",
                           Esys_NV_DefineSpace(esys, ESYS_TR_RH_PLATFORM, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                               &auth, &info, &defined)));
  CloseOnExit close(esys, defined);
  return kOk;
}

}  // namespace

// ---- Open -------------------------------------------------------------------

Tpm2RootOfTrust::~Tpm2RootOfTrust() = default;

Expected<std::unique_ptr<Tpm2RootOfTrust>> Tpm2RootOfTrust::Open(const Tpm2Options& options) {
  if (options.state_dir.empty())
    return MakeError(ErrorCode::kInvalidArgument, "tpm2 root of trust: no state directory");
  auto dir = options.state_dir / "tpm2";
  CITADEL_TRY_VOID(EnsureDirectory(dir, 0700));
  CITADEL_TRY(auto device, tpm2::EsysDevice::Connect(options.tcti));

  std::unique_ptr<Tpm2RootOfTrust> rot(new Tpm2RootOfTrust());
  rot->device_ = device;
  rot->dir_ = dir;
  rot->handles_ = std::make_unique<Handles>();
  Handles& handles = *rot->handles_;

  std::lock_guard lock(device->mutex());
  ESYS_CONTEXT* esys = device->esys();
  CITADEL_TRY_VOID(StartupIfNeeded(esys));

  CITADEL_TRY(bool has_ek, HandleExists(esys, kEkHandle));
  if (!has_ek) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "this TPM has no endorsement key at 0x81010001: was it manufactured?");
  }
  CITADEL_TRY(handles.ek, TrForHandle(esys, kEkHandle));
  CITADEL_TRY(rot->ek_public_, ReadPublicBytes(esys, handles.ek));

  CITADEL_TRY(handles.srk, ProvisionKey(esys, kSrkHandle, "storage root key", [&] { return CreateSrk(esys); }));
  CITADEL_TRY(handles.ak, ProvisionKey(esys, kAkHandle, "attestation key", [&] {
                return CreatePersistentChild(esys, handles.srk, SigningKeyTemplate(true), kAkHandle);
              }));
  CITADEL_TRY(handles.tls, ProvisionKey(esys, kTlsKeyHandle, "TLS key", [&] {
                return CreatePersistentChild(esys, handles.srk, SigningKeyTemplate(false), kTlsKeyHandle);
              }));

  CITADEL_TRY(rot->ak_public_, ReadPublicBytes(esys, handles.ak));
  CITADEL_TRY(tpm::PublicArea ak_area, tpm::ParsePublic(rot->ak_public_));
  if (auto checked = tpm::CheckAttestationKey(ak_area); !checked) {
    return WrapError(checked.error(),
                     "the persistent object at " + tpm::HandleHex(kAkHandle) + " cannot be the identity key");
  }
  CITADEL_TRY(rot->ak_public_key_, tpm::ToPublicKey(ak_area));

  CITADEL_TRY(Bytes tls_public, ReadPublicBytes(esys, handles.tls));
  CITADEL_TRY(tpm::PublicArea tls_area, tpm::ParsePublic(tls_public));
  CITADEL_TRY_VOID(CheckTlsKey(tls_area));
  CITADEL_TRY(crypto::PublicKey tls_public_key, tpm::ToPublicKey(tls_area));
  CITADEL_TRY(rot->tls_key_, tpm2::MakeTpmSigningKey(device, handles.tls, tls_public_key));

  EsysOut<TPMS_TIME_INFO> time;
  CITADEL_TRY_VOID(
      CheckRc("TPM2_ReadClock", Esys_ReadClock(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, time.put())));
  rot->reset_count_ = time->clockInfo.resetCount;
  CITADEL_TRY_VOID(rot->LoadEventLogLocked());
  log::Info("tpm2 root of trust opened", {{"device_id", rot->DeviceId()}});
  return rot;
}

// ---- measurements -----------------------------------------------------------

Expected<std::vector<crypto::Sha256Digest>> Tpm2RootOfTrust::ReadPcrsLocked() const {
  std::vector<crypto::Sha256Digest> registers(kRegisterCount);
  std::uint32_t remaining = kAllRegisters;
  // A TPM may return fewer PCRs than asked; each round reads at least one.
  for (std::uint32_t round = 0; round < kRegisterCount && remaining != 0; ++round) {
    TPML_PCR_SELECTION selection = PcrSelection(remaining);
    EsysOut<TPML_PCR_SELECTION> selection_out;
    EsysOut<TPML_DIGEST> values;
    std::uint32_t update_counter = 0;
    CITADEL_TRY_VOID(
        CheckRc("TPM2_PCR_Read", Esys_PCR_Read(device_->esys(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &selection,
                                               &update_counter, selection_out.put(), values.put())));
    std::uint32_t value_index = 0;
    std::uint32_t read_now = 0;
    for (std::uint32_t s = 0; s < selection_out->count; ++s) {
      const TPMS_PCR_SELECTION& returned = selection_out->pcrSelections[s];
      if (returned.hash != TPM2_ALG_SHA256) continue;
      for (std::uint32_t i = 0; i < kRegisterCount; ++i) {
        std::uint32_t pcr = kFirstPcr + i;
        if (pcr / 8 >= returned.sizeofSelect || (returned.pcrSelect[pcr / 8] & (1u << (pcr % 8))) == 0) continue;
        if (value_index >= values->count || values->digests[value_index].size != 32) {
          return MakeError(ErrorCode::kIo, "TPM2_PCR_Read returned fewer SHA-256 values than PCRs selected");
        }
        std::memcpy(registers[i].data(), values->digests[value_index].buffer, 32);
        ++value_index;
        read_now |= 1u << i;
      }
    }
    if ((read_now & remaining) == 0) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "TPM2_PCR_Read returned no SHA-256 PCR 8-15: is the SHA-256 bank active?");
    }
    remaining &= ~read_now;
  }
  if (remaining != 0) return MakeError(ErrorCode::kIo, "TPM2_PCR_Read did not return every PCR 8-15");
  return registers;
}

Expected<void> Tpm2RootOfTrust::SaveEventLogLocked(const std::vector<MeasurementEvent>& log) const {
  Json events = Json::array();
  for (const auto& event : log) events.push_back(EventToJson(event));
  Json document = {{"events", std::move(events)}, {"reset_count", reset_count_}};
  CITADEL_TRY(std::string text, CanonicalJson(document));
  text += '\n';
  return WriteFileAtomic(EventLogPath(dir_, reset_count_), text, 0600);
}

Expected<void> Tpm2RootOfTrust::LoadEventLogLocked() {
  // Logs of earlier TPM boots explain PCR values that no longer exist.
  std::error_code ignored;
  for (const auto& entry : fs::directory_iterator(dir_, ignored)) {
    std::string file = entry.path().filename().string();
    if (file.starts_with("eventlog-") && entry.path() != EventLogPath(dir_, reset_count_)) {
      fs::remove(entry.path(), ignored);
    }
  }
  auto path = EventLogPath(dir_, reset_count_);
  std::vector<MeasurementEvent> log;
  auto text = ReadFile(path, kMaxLogFileBytes);
  if (!text && text.error().code() != ErrorCode::kNotFound) return WrapError(text.error(), "reading the event log");
  std::optional<std::string> parse_problem;
  if (text) {
    auto parsed = ParseJsonStrict(*text);
    if (!parsed || !parsed->is_object() || !parsed->contains("events") || !(*parsed)["events"].is_array() ||
        (*parsed)["events"].size() > kMaxLogEvents) {
      parse_problem = "it is not an event log document";
    } else {
      for (const auto& item : (*parsed)["events"]) {
        auto event = EventFromJson(item);
        if (!event) {
          parse_problem = event.error().message();
          break;
        }
        log.push_back(std::move(*event));
      }
    }
  }
  CITADEL_TRY(auto pcrs, ReadPcrsLocked());
  if (parse_problem) {
    attestation_blocked_ = path.string() + " is corrupt (" + *parse_problem + ")";
  } else if (ReplayLog(log) == pcrs) {
    log_ = std::move(log);
    return kOk;
  } else if (!log.empty() && ReplayLog(std::vector<MeasurementEvent>(log.begin(), log.end() - 1)) == pcrs) {
    // Power was lost between logging an event and extending it.
    log.pop_back();
    CITADEL_TRY_VOID(SaveEventLogLocked(log));
    log::Warn("tpm2 root of trust: removed the last event log entry, which was never extended",
              {{"path", path.string()}});
    log_ = std::move(log);
    return kOk;
  } else {
    attestation_blocked_ = "the event log " + path.string() + " does not explain PCRs 8-15";
  }
  log_ = std::move(log);
  *attestation_blocked_ +=
      ": this device cannot attest until the TPM is reset (reboot); measurements were made that the log does not "
      "record, or the log was changed";
  log::Error("tpm2 root of trust: attestation disabled", {{"reason", *attestation_blocked_}});
  return kOk;
}

Expected<void> Tpm2RootOfTrust::Extend(const MeasurementEvent& event) {
  if (event.register_index >= kRegisterCount) {
    return MakeError(ErrorCode::kInvalidArgument, "register " + std::to_string(event.register_index) +
                                                      " does not exist (registers are 0-" +
                                                      std::to_string(kRegisterCount - 1) + ")");
  }
  std::lock_guard lock(device_->mutex());
  // citadeld restarts within a TPM boot re-measure what this boot's log
  // already holds; extending again would make the PCRs disagree with a log
  // that records each object once.
  if (std::find(log_.begin(), log_.end(), event) != log_.end()) {
    return kOk;
  }
  if (log_.size() >= kMaxLogEvents) {
    return MakeError(ErrorCode::kTooLarge, "the event log holds " + std::to_string(kMaxLogEvents) + " events already");
  }
  // Logged before it is extended: a power loss in between leaves a log one
  // event ahead, which the next Open() cuts back.
  std::vector<MeasurementEvent> log = log_;
  log.push_back(event);
  CITADEL_TRY_VOID(SaveEventLogLocked(log));
  crypto::Sha256Digest event_digest = EventDigest(event);
  TPML_DIGEST_VALUES digests{};
  digests.count = 1;
  digests.digests[0].hashAlg = TPM2_ALG_SHA256;
  std::memcpy(digests.digests[0].digest.sha256, event_digest.data(), event_digest.size());
  auto pcr = static_cast<ESYS_TR>(ESYS_TR_PCR0 + kFirstPcr + event.register_index);
  auto extended =
      CheckRc("TPM2_PCR_Extend(PCR " + std::to_string(kFirstPcr + event.register_index) + ")",
              Esys_PCR_Extend(device_->esys(), pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &digests));
  if (!extended) {
    // The log is one event ahead of the PCRs; take it back.
    (void)SaveEventLogLocked(log_);
    return std::unexpected(extended.error());
  }
  log_ = std::move(log);
  return kOk;
}

std::vector<crypto::Sha256Digest> Tpm2RootOfTrust::ReadRegisters() const {
  std::lock_guard lock(device_->mutex());
  auto registers = ReadPcrsLocked();
  if (!registers) {
    log::Error("tpm2 root of trust: cannot read PCRs 8-15", {{"error", registers.error().message()}});
    return {};
  }
  return std::move(*registers);
}

std::vector<MeasurementEvent> Tpm2RootOfTrust::MeasurementLog() const {
  std::lock_guard lock(device_->mutex());
  return log_;
}

// ---- quotes -----------------------------------------------------------------

Expected<Bytes> Tpm2RootOfTrust::QuoteLocked(const crypto::Sha256Digest& digest) {
  if (attestation_blocked_) return MakeError(ErrorCode::kFailedPrecondition, *attestation_blocked_);
  TPM2B_DATA qualifying{};
  qualifying.size = static_cast<std::uint16_t>(digest.size());
  std::memcpy(qualifying.buffer, digest.data(), digest.size());
  TPMT_SIG_SCHEME scheme{};
  scheme.scheme = TPM2_ALG_NULL;  // the AK's own: ECDSA-SHA256
  TPML_PCR_SELECTION selection = PcrSelection(kAllRegisters);
  EsysOut<TPM2B_ATTEST> quoted;
  EsysOut<TPMT_SIGNATURE> signature;
  CITADEL_TRY_VOID(
      CheckRc("TPM2_Quote", Esys_Quote(device_->esys(), handles_->ak, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                       &qualifying, &scheme, &selection, quoted.put(), signature.put())));
  Bytes blob;
  CITADEL_TRY_VOID(AppendMarshalled<TPM2B_ATTEST>(blob, *quoted, Tss2_MU_TPM2B_ATTEST_Marshal, "TPM2B_ATTEST"));
  CITADEL_TRY_VOID(
      AppendMarshalled<TPMT_SIGNATURE>(blob, *signature, Tss2_MU_TPMT_SIGNATURE_Marshal, "TPMT_SIGNATURE"));
  return blob;
}

Expected<Bytes> Tpm2RootOfTrust::SignWithIdentity(const crypto::Sha256Digest& digest) {
  std::lock_guard lock(device_->mutex());
  return QuoteLocked(digest);
}

Expected<Quote> Tpm2RootOfTrust::CreateQuote(std::span<const std::uint8_t> nonce) {
  if (nonce.empty() || nonce.size() > kMaxQuoteNonceBytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "a quote nonce must be 1-" + std::to_string(kMaxQuoteNonceBytes) + " bytes");
  }
  // One lock for both: no extend can slip between the read and the quote.
  std::lock_guard lock(device_->mutex());
  Quote quote;
  CITADEL_TRY(quote.registers, ReadPcrsLocked());
  quote.nonce.assign(nonce.begin(), nonce.end());
  CITADEL_TRY(quote.signature, QuoteLocked(QuoteDigest(quote.registers, quote.nonce)));
  return quote;
}

// ---- manufacturer chain -----------------------------------------------------

Expected<Bytes> Tpm2RootOfTrust::ReadEkCertificateLocked() const {
  ESYS_CONTEXT* esys = device_->esys();
  CITADEL_TRY(bool exists, HandleExists(esys, kEkCertificateIndex));
  if (!exists) {
    return MakeError(ErrorCode::kNotFound,
                     "this TPM has no EK certificate in NV " + tpm::HandleHex(kEkCertificateIndex));
  }
  CITADEL_TRY(ESYS_TR index, TrForHandle(esys, kEkCertificateIndex));
  CloseOnExit close(esys, index);
  CITADEL_TRY(TPM2B_NV_PUBLIC info, NvReadPublic(esys, index));
  if (info.nvPublic.dataSize > kMaxEkCertificateBytes) {
    return MakeError(ErrorCode::kTooLarge, "the EK certificate index is larger than any EK certificate");
  }
  CITADEL_TRY(Bytes data, NvRead(esys, index, info.nvPublic.dataSize));
  CITADEL_TRY(std::size_t length, DerElementLength(data));
  data.resize(length);
  return data;
}

Expected<Bytes> Tpm2RootOfTrust::ReadEkCertificate() const {
  std::lock_guard lock(device_->mutex());
  return ReadEkCertificateLocked();
}

Expected<std::vector<crypto::Certificate>> Tpm2RootOfTrust::ManufacturerChain() const {
  CITADEL_TRY(Bytes ek_der, ReadEkCertificate());
  CITADEL_TRY(auto ek_certificate, crypto::Certificate::FromDer(ek_der));
  std::vector<crypto::Certificate> chain{ek_certificate};
  auto path = IntermediatesPath(dir_);
  auto text = ReadFile(path, kMaxChainFileBytes);
  if (!text) {
    if (text.error().code() == ErrorCode::kNotFound) return chain;
    return std::unexpected(text.error());
  }
  auto intermediates = crypto::ParsePemChain(*text, kMaxChainCertificates - 1);
  if (!intermediates) return WrapError(intermediates.error(), "reading " + path.string());
  chain.insert(chain.end(), intermediates->begin(), intermediates->end());
  return chain;
}

Expected<void> Tpm2RootOfTrust::StoreManufacturerChain(const std::vector<crypto::Certificate>& chain) {
  if (chain.empty()) return MakeError(ErrorCode::kInvalidArgument, "the manufacturer chain is empty");
  if (chain.size() > kMaxChainCertificates) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the manufacturer chain has more than " + std::to_string(kMaxChainCertificates) + " certificates");
  }
  CITADEL_TRY(Bytes ek_der, ReadEkCertificate());
  Bytes leaf = chain.front().Der();
  if (leaf != ek_der) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the manufacturer chain's leaf certificate (" + chain.front().SubjectOneLine() +
                         ") is not this TPM's EK certificate from NV " + tpm::HandleHex(kEkCertificateIndex));
  }
  std::vector<crypto::Certificate> intermediates(chain.begin() + 1, chain.end());
  return WriteFileAtomic(IntermediatesPath(dir_), crypto::ToPemChain(intermediates), 0644);
}

// ---- credential activation --------------------------------------------------

Expected<Bytes> Tpm2RootOfTrust::ActivateCredential(std::span<const std::uint8_t> credential_blob,
                                                    std::span<const std::uint8_t> encrypted_secret) {
  // Both arrive as the TPM marshals them (size-prefixed TPM2Bs), from the
  // service: parsed strictly, nothing trailing.
  TPM2B_ID_OBJECT credential{};
  TPM2B_ENCRYPTED_SECRET secret{};
  std::size_t credential_end = 0;
  std::size_t secret_end = 0;
  if (Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(credential_blob.data(), credential_blob.size(), &credential_end, &credential) !=
          TSS2_RC_SUCCESS ||
      credential_end != credential_blob.size() || credential.size == 0 ||
      Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(encrypted_secret.data(), encrypted_secret.size(), &secret_end,
                                               &secret) != TSS2_RC_SUCCESS ||
      secret_end != encrypted_secret.size() || secret.size == 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "the credential is not a marshalled TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET");
  }

  std::lock_guard lock(device_->mutex());
  ESYS_CONTEXT* esys = device_->esys();
  // The TCG EK's policy: PolicySecret on the endorsement hierarchy.
  CITADEL_TRY(ESYS_TR session, StartSession(esys, TPM2_SE_POLICY));
  FlushOnExit flush(esys, session);
  CITADEL_TRY_VOID(CheckRc("TPM2_PolicySecret(endorsement)",
                           Esys_PolicySecret(esys, ESYS_TR_RH_ENDORSEMENT, session, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                             ESYS_TR_NONE, nullptr, nullptr, nullptr, 0, nullptr, nullptr)));
  EsysOut<TPM2B_DIGEST> cert_info;
  CITADEL_TRY_VOID(CheckRc("TPM2_ActivateCredential",
                           Esys_ActivateCredential(esys, handles_->ak, handles_->ek, ESYS_TR_PASSWORD, session,
                                                   ESYS_TR_NONE, &credential, &secret, cert_info.put())));
  return Bytes(cert_info->buffer, cert_info->buffer + cert_info->size);
}

// ---- sealing ----------------------------------------------------------------

Expected<Bytes> Tpm2RootOfTrust::Seal(std::span<const std::uint8_t> secret, const std::vector<Register>& registers) {
  if (secret.empty() || secret.size() > kMaxSealedSecretBytes) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "a sealed secret must be 1-" + std::to_string(kMaxSealedSecretBytes) + " bytes");
  }
  std::uint32_t mask = 0;
  for (Register reg : registers) {
    auto index = static_cast<std::uint32_t>(reg);
    if (index >= kRegisterCount) return MakeError(ErrorCode::kInvalidArgument, "no such register");
    mask |= 1u << index;
  }
  if (mask == 0) return MakeError(ErrorCode::kInvalidArgument, "sealing needs at least one register");
  TPML_PCR_SELECTION selection = PcrSelection(mask);

  std::lock_guard lock(device_->mutex());
  ESYS_CONTEXT* esys = device_->esys();
  TPM2B_DIGEST policy{};
  {
    CITADEL_TRY(ESYS_TR trial, StartSession(esys, TPM2_SE_TRIAL));
    FlushOnExit flush(esys, trial);
    CITADEL_TRY_VOID(PolicyPcr(esys, trial, selection));
    CITADEL_TRY(policy, PolicyDigest(esys, trial));
  }
  TPM2B_SENSITIVE_CREATE sensitive{};
  sensitive.sensitive.data.size = static_cast<std::uint16_t>(secret.size());
  std::memcpy(sensitive.sensitive.data.buffer, secret.data(), secret.size());
  TPM2B_PUBLIC in_public{};
  in_public.publicArea.type = TPM2_ALG_KEYEDHASH;
  in_public.publicArea.nameAlg = TPM2_ALG_SHA256;
  // No userWithAuth: only the PCR policy opens it.
  in_public.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_NODA;
  in_public.publicArea.authPolicy = policy;
  in_public.publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
  TPM2B_DATA outside_info{};
  TPML_PCR_SELECTION creation_pcr{};
  EsysOut<TPM2B_PRIVATE> out_private;
  EsysOut<TPM2B_PUBLIC> out_public;
  TSS2_RC rc =
      Esys_Create(esys, handles_->srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive, &in_public,
                  &outside_info, &creation_pcr, out_private.put(), out_public.put(), nullptr, nullptr, nullptr);
  std::memset(&sensitive, 0, sizeof sensitive);
  CITADEL_TRY_VOID(CheckRc("TPM2_Create(sealed object)", rc));
  Bytes sealed;
  CITADEL_TRY_VOID(AppendMarshalled<TPM2B_PUBLIC>(sealed, *out_public, Tss2_MU_TPM2B_PUBLIC_Marshal, "TPM2B_PUBLIC"));
  CITADEL_TRY_VOID(
      AppendMarshalled<TPM2B_PRIVATE>(sealed, *out_private, Tss2_MU_TPM2B_PRIVATE_Marshal, "TPM2B_PRIVATE"));
  CITADEL_TRY_VOID(
      AppendMarshalled<TPML_PCR_SELECTION>(sealed, selection, Tss2_MU_TPML_PCR_SELECTION_Marshal, "PCR selection"));
  return sealed;
}

Expected<crypto::SecretBytes> Tpm2RootOfTrust::Unseal(std::span<const std::uint8_t> sealed) {
  std::size_t offset = 0;
  CITADEL_TRY(auto in_public,
              UnmarshalNext<TPM2B_PUBLIC>(sealed, offset, Tss2_MU_TPM2B_PUBLIC_Unmarshal, "sealed public"));
  CITADEL_TRY(auto in_private,
              UnmarshalNext<TPM2B_PRIVATE>(sealed, offset, Tss2_MU_TPM2B_PRIVATE_Unmarshal, "sealed private"));
  CITADEL_TRY(auto selection, UnmarshalNext<TPML_PCR_SELECTION>(sealed, offset, Tss2_MU_TPML_PCR_SELECTION_Unmarshal,
                                                                "sealed PCR selection"));
  if (offset != sealed.size()) return MakeError(ErrorCode::kParse, "bytes after the sealed object");

  std::lock_guard lock(device_->mutex());
  ESYS_CONTEXT* esys = device_->esys();
  ESYS_TR object = ESYS_TR_NONE;
  CITADEL_TRY_VOID(CheckRc("TPM2_Load(sealed object)", Esys_Load(esys, handles_->srk, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                                                 ESYS_TR_NONE, &in_private, &in_public, &object)));
  FlushOnExit flush_object(esys, object);
  CITADEL_TRY(ESYS_TR session, StartSession(esys, TPM2_SE_POLICY));
  FlushOnExit flush_session(esys, session);
  CITADEL_TRY_VOID(PolicyPcr(esys, session, selection));
  EsysOut<TPM2B_SENSITIVE_DATA> data;
  auto unsealed = CheckRc("TPM2_Unseal", Esys_Unseal(esys, object, session, ESYS_TR_NONE, ESYS_TR_NONE, data.put()));
  if (!unsealed) {
    return WrapError(unsealed.error(), "unsealing (a sealed register has changed since the secret was sealed?)");
  }
  crypto::SecretBytes secret(std::string(reinterpret_cast<const char*>(data->buffer), data->size));
  std::memset(data->buffer, 0, sizeof data->buffer);
  return secret;
}

// ---- counters ---------------------------------------------------------------

Expected<std::uint64_t> Tpm2RootOfTrust::ReadCounter(std::string_view name) const {
  CITADEL_TRY_VOID(CheckCounterName(name));
  std::lock_guard lock(device_->mutex());
  CITADEL_TRY(CounterState state, ReadCounterState(device_->esys(), name));
  return LogicalValue(state, name);
}

Expected<std::uint64_t> Tpm2RootOfTrust::IncrementCounter(std::string_view name) {
  CITADEL_TRY_VOID(CheckCounterName(name));
  std::lock_guard lock(device_->mutex());
  ESYS_CONTEXT* esys = device_->esys();
  CounterIndices indices = IndicesFor(name);
  auto context = [&](const Error& error) {
    return WrapError(error, "incrementing counter \"" + std::string(name) + "\"");
  };
  auto state = ReadCounterState(esys, name);
  if (!state) return context(state.error());
  if (!state->counter_defined) {
    auto defined = DefineNvIndex(esys, indices.counter, TPM2_NT_COUNTER << TPMA_NV_TPM2_NT_SHIFT, 8);
    if (!defined) return context(defined.error());
  }
  if (!state->base_defined) {
    auto defined = DefineNvIndex(esys, indices.base, TPMA_NV_WRITEDEFINE, static_cast<std::uint16_t>(8 + name.size()));
    if (!defined) return context(defined.error());
  }
  auto counter = TrForHandle(esys, indices.counter);
  if (!counter) return context(counter.error());
  CloseOnExit close_counter(esys, *counter);
  auto increment = [&]() -> Expected<std::uint64_t> {
    CITADEL_TRY_VOID(CheckRc("TPM2_NV_Increment", Esys_NV_Increment(esys, *counter, *counter, ESYS_TR_PASSWORD,
                                                                    ESYS_TR_NONE, ESYS_TR_NONE)));
    CITADEL_TRY(Bytes value, NvRead(esys, *counter, 8));
    return BigEndian64(value);
  };
  std::uint64_t logical = 0;
  if (!state->base_written) {
    // First increment (or the one power cut before its base was written):
    // a fresh counter starts at the highest value any counter reached, so
    // the base makes this increment count as 1.
    std::uint64_t value = state->counter;
    if (!state->counter_written) {
      auto incremented = increment();
      if (!incremented) return context(incremented.error());
      value = *incremented;
    }
    auto base = TrForHandle(esys, indices.base);
    if (!base) return context(base.error());
    CloseOnExit close_base(esys, *base);
    TPM2B_MAX_NV_BUFFER data{};
    data.size = static_cast<std::uint16_t>(8 + name.size());
    for (std::size_t i = 0; i < 8; ++i) data.buffer[i] = static_cast<std::uint8_t>((value - 1) >> (56 - 8 * i));
    std::memcpy(data.buffer + 8, name.data(), name.size());
    auto written = CheckRc("TPM2_NV_Write(counter base)",
                           Esys_NV_Write(esys, *base, *base, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &data, 0));
    if (!written) return context(written.error());
    state->base = value - 1;
    state->counter = value;
    logical = 1;
    if (state->counter_written) {
      // That earlier increment was never reported; this call still counts.
      auto incremented = increment();
      if (!incremented) return context(incremented.error());
      logical = *incremented - state->base;
    }
  } else {
    auto incremented = increment();
    if (!incremented) return context(incremented.error());
    if (*incremented < state->base) return MakeError(ErrorCode::kInternal, "counter is below its base");
    logical = *incremented - state->base;
  }
  if (!state->base_locked) {
    // WRITEDEFINE: the lock lasts until the index is deleted, which only
    // the platform can do.
    auto base = TrForHandle(esys, indices.base);
    if (!base) return context(base.error());
    CloseOnExit close_base(esys, *base);
    auto locked = CheckRc("TPM2_NV_WriteLock(counter base)",
                          Esys_NV_WriteLock(esys, *base, *base, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE));
    if (!locked) return context(locked.error());
  }
  return logical;
}

}  // namespace citadel::rot
