#include "tuf/metadata.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <limits>
#include <set>

#include "common/encoding.hpp"
#include "common/json_fields.hpp"
#include "crypto/crypto.hpp"
#include "tuf/canonical.hpp"

namespace citadel::tuf {
namespace {

namespace jf = json_fields;

// Bounds on single values inside a document whose total size the caller
// already bounded (the updater's per-role maximum lengths).
constexpr std::size_t kMaxTextBytes = 1U << 20;
constexpr std::size_t kMaxElements = 1U << 20;
constexpr std::int64_t kMaxInteger = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kSecondsPerDay = 86400;

// ------------------------------------------------------------ time helpers

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// days_from_civil), valid for the whole 0001-9999 range.
std::int64_t DaysFromCivil(std::int64_t year, std::int64_t month, std::int64_t day) {
  year -= month <= 2 ? 1 : 0;
  const std::int64_t era = (year >= 0 ? year : year - 399) / 400;
  const std::int64_t year_of_era = year - era * 400;
  const std::int64_t day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const std::int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
  return era * 146097 + day_of_era - 719468;
}

struct Civil {
  std::int64_t year, month, day;
};

Civil CivilFromDays(std::int64_t days) {
  days += 719468;
  const std::int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const std::int64_t day_of_era = days - era * 146097;
  const std::int64_t year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
  const std::int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const std::int64_t mp = (5 * day_of_year + 2) / 153;
  const std::int64_t day = day_of_year - (153 * mp + 2) / 5 + 1;
  const std::int64_t month = mp < 10 ? mp + 3 : mp - 9;
  return {year_of_era + era * 400 + (month <= 2 ? 1 : 0), month, day};
}

bool IsLeapYear(std::int64_t year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

std::int64_t DaysInMonth(std::int64_t year, std::int64_t month) {
  static constexpr std::array<std::int64_t, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month == 2 && IsLeapYear(year)) return 29;
  return kDays[static_cast<std::size_t>(month - 1)];
}

// --------------------------------------------------------------- readers

Expected<std::vector<std::string>> ReadStringArray(const Json& value, const std::string& path,
                                                   bool allow_empty_strings) {
  CITADEL_TRY_VOID(jf::ExpectArray(value, path, kMaxElements));
  std::vector<std::string> out;
  out.reserve(value.size());
  for (std::size_t i = 0; i < value.size(); ++i) {
    CITADEL_TRY(std::string element,
                jf::ReadString(value[i], jf::Element(path, i), kMaxTextBytes, allow_empty_strings));
    out.push_back(std::move(element));
  }
  return out;
}

Expected<std::int64_t> ReadRequiredInteger(const Json& object, const std::string& path, std::string_view key,
                                           std::int64_t min) {
  CITADEL_TRY(const Json* value, jf::Require(object, path, key));
  return jf::ReadInteger(*value, jf::Child(path, key), min, kMaxInteger);
}

Expected<RoleKeys> ReadRoleKeys(const Json& object, const std::string& path) {
  RoleKeys role;
  CITADEL_TRY(const Json* keyids, jf::Require(object, path, "keyids"));
  CITADEL_TRY(role.keyids, ReadStringArray(*keyids, jf::Child(path, "keyids"), /*allow_empty_strings=*/false));
  CITADEL_TRY(role.threshold, ReadRequiredInteger(object, path, "threshold", 1));
  return role;
}

Expected<std::map<std::string, std::string>> ReadHashes(const Json& value, const std::string& path) {
  CITADEL_TRY_VOID(jf::ExpectObject(value, path, {}, jf::UnknownFields::kIgnore));
  if (value.empty()) return jf::FieldError(path, "must list at least one hash");
  std::map<std::string, std::string> hashes;
  for (const auto& [algorithm, digest] : value.items()) {
    CITADEL_TRY(std::string hex, jf::ReadString(digest, jf::Child(path, algorithm), kMaxTextBytes));
    hashes.emplace(algorithm, std::move(hex));
  }
  return hashes;
}

Expected<std::map<std::string, Key>> ReadKeys(const Json& value, const std::string& path) {
  CITADEL_TRY_VOID(jf::ExpectObject(value, path, {}, jf::UnknownFields::kIgnore));
  std::map<std::string, Key> keys;
  for (const auto& [keyid, key_json] : value.items()) {
    if (keyid.empty()) return jf::FieldError(path, "empty key id");
    CITADEL_TRY(Key key, Key::FromJson(key_json, jf::Child(path, keyid)));
    keys.emplace(keyid, std::move(key));
  }
  return keys;
}

Expected<void> CheckSpecVersion(const std::string& text, const std::string& path) {
  // "1.x.y" or "1.x": the major version must be 1 (python-tuf's rule).
  std::vector<std::string_view> parts;
  std::string_view rest = text;
  while (true) {
    auto dot = rest.find('.');
    parts.push_back(rest.substr(0, dot));
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  const bool well_formed =
      (parts.size() == 2 || parts.size() == 3) && std::all_of(parts.begin(), parts.end(), [](std::string_view part) {
        return !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
      });
  if (!well_formed) return jf::FieldError(path, "not a version number: " + jf::Quote(text));
  if (parts[0] != "1") return jf::FieldError(path, "unsupported specification version " + jf::Quote(text));
  return kOk;
}

Expected<void> ReadCommon(const Json& signed_json, std::string_view type, SignedCommon& common) {
  const std::string path = "signed";
  CITADEL_TRY_VOID(jf::ExpectObject(signed_json, path, {}, jf::UnknownFields::kIgnore));
  CITADEL_TRY(const Json* type_value, jf::Require(signed_json, path, "_type"));
  CITADEL_TRY(std::string actual_type, jf::ReadString(*type_value, jf::Child(path, "_type"), kMaxTextBytes));
  if (actual_type != type) {
    return jf::FieldError(jf::Child(path, "_type"),
                          "expected " + jf::Quote(type) + " metadata, got " + jf::Quote(actual_type));
  }
  CITADEL_TRY(const Json* spec, jf::Require(signed_json, path, "spec_version"));
  CITADEL_TRY(common.spec_version, jf::ReadString(*spec, jf::Child(path, "spec_version"), kMaxTextBytes));
  CITADEL_TRY_VOID(CheckSpecVersion(common.spec_version, jf::Child(path, "spec_version")));
  CITADEL_TRY(common.version, ReadRequiredInteger(signed_json, path, "version", 1));
  CITADEL_TRY(const Json* expires, jf::Require(signed_json, path, "expires"));
  CITADEL_TRY(std::string expires_text, jf::ReadString(*expires, jf::Child(path, "expires"), kMaxTextBytes));
  auto expires_seconds = ParseExpires(expires_text);
  if (!expires_seconds) return jf::FieldError(jf::Child(path, "expires"), expires_seconds.error().message());
  common.expires = *expires_seconds;
  return kOk;
}

Json CommonJson(std::string_view type, const SignedCommon& common) {
  return {{"_type", std::string(type)},
          {"spec_version", common.spec_version},
          {"version", common.version},
          {"expires", FormatExpires(common.expires)}};
}

Json RoleKeysJson(const RoleKeys& role) { return {{"keyids", role.keyids}, {"threshold", role.threshold}}; }

Json KeysJson(const std::map<std::string, Key>& keys) {
  Json out = Json::object();
  for (const auto& [keyid, key] : keys) out[keyid] = key.json();
  return out;
}

// ------------------------------------------------------------ path patterns

// fnmatch-style character set at pattern[open] == '['. Returns nullopt when
// the set is not closed (the '[' is then an ordinary character, as in
// Python's fnmatch); otherwise whether c is in the set, and sets next to the
// index after the closing ']'.
std::optional<bool> MatchSet(std::string_view pattern, std::size_t open, unsigned char c, std::size_t& next) {
  std::size_t i = open + 1;
  bool negate = false;
  if (i < pattern.size() && pattern[i] == '!') {
    negate = true;
    ++i;
  }
  const std::size_t first = i;
  if (i < pattern.size() && pattern[i] == ']') ++i;  // a leading ']' is a member
  while (i < pattern.size() && pattern[i] != ']') ++i;
  if (i >= pattern.size()) return std::nullopt;
  const std::string_view members = pattern.substr(first, i - first);
  next = i + 1;
  bool found = false;
  for (std::size_t k = 0; k < members.size();) {
    const auto low = static_cast<unsigned char>(members[k]);
    if (k + 2 < members.size() && members[k + 1] == '-') {
      const auto high = static_cast<unsigned char>(members[k + 2]);
      if (low <= c && c <= high) found = true;
      k += 3;
    } else {
      if (low == c) found = true;
      ++k;
    }
  }
  return found != negate;
}

// One path component against one pattern component. Iterative, with the
// classic single backtrack point per '*': O(len(pattern) * len(text)) at
// worst, so hostile patterns cannot make it exponential.
bool MatchComponent(std::string_view pattern, std::string_view text) {
  std::size_t p = 0;
  std::size_t t = 0;
  std::size_t star = std::string_view::npos;
  std::size_t star_text = 0;
  while (t < text.size()) {
    if (p < pattern.size()) {
      const char token = pattern[p];
      if (token == '*') {
        star = p++;
        star_text = t;
        continue;
      }
      if (token == '?') {
        ++p;
        ++t;
        continue;
      }
      if (token == '[') {
        std::size_t next = 0;
        auto in_set = MatchSet(pattern, p, static_cast<unsigned char>(text[t]), next);
        if (in_set.has_value()) {
          if (*in_set) {
            p = next;
            ++t;
            continue;
          }
        } else if (text[t] == '[') {
          ++p;
          ++t;
          continue;
        }
      } else if (token == text[t]) {
        ++p;
        ++t;
        continue;
      }
    }
    if (star == std::string_view::npos) return false;
    p = star + 1;
    t = ++star_text;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> parts;
  while (true) {
    auto slash = path.find('/');
    parts.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) return parts;
    path.remove_prefix(slash + 1);
  }
}

// ------------------------------------------------------------- delegations

Expected<DelegatedRole> ReadDelegatedRole(const Json& value, const std::string& path) {
  CITADEL_TRY_VOID(jf::ExpectObject(value, path, {}, jf::UnknownFields::kIgnore));
  DelegatedRole role;
  CITADEL_TRY(const Json* name, jf::Require(value, path, "name"));
  CITADEL_TRY(role.name, jf::ReadString(*name, jf::Child(path, "name"), kMaxTextBytes));
  if (IsTopLevelRole(role.name)) {
    return jf::FieldError(jf::Child(path, "name"), "a delegated role cannot be named " + jf::Quote(role.name));
  }
  CITADEL_TRY(RoleKeys keys, ReadRoleKeys(value, path));
  role.keyids = std::move(keys.keyids);
  role.threshold = keys.threshold;
  CITADEL_TRY(const Json* terminating, jf::Require(value, path, "terminating"));
  CITADEL_TRY(role.terminating, jf::ReadBool(*terminating, jf::Child(path, "terminating")));
  const Json* paths = jf::Find(value, "paths");
  const Json* prefixes = jf::Find(value, "path_hash_prefixes");
  if ((paths == nullptr) == (prefixes == nullptr)) {
    return jf::FieldError(path, "exactly one of \"paths\" and \"path_hash_prefixes\" must be set");
  }
  if (paths != nullptr) {
    CITADEL_TRY(role.paths, ReadStringArray(*paths, jf::Child(path, "paths"), /*allow_empty_strings=*/true));
  } else {
    CITADEL_TRY(role.path_hash_prefixes,
                ReadStringArray(*prefixes, jf::Child(path, "path_hash_prefixes"), /*allow_empty_strings=*/true));
  }
  return role;
}

Expected<SuccinctRoles> ReadSuccinctRoles(const Json& value, const std::string& path) {
  CITADEL_TRY_VOID(jf::ExpectObject(value, path, {}, jf::UnknownFields::kIgnore));
  SuccinctRoles succinct;
  CITADEL_TRY(RoleKeys keys, ReadRoleKeys(value, path));
  succinct.keyids = std::move(keys.keyids);
  succinct.threshold = keys.threshold;
  CITADEL_TRY(const Json* bits, jf::Require(value, path, "bit_length"));
  CITADEL_TRY(std::int64_t bit_length, jf::ReadInteger(*bits, jf::Child(path, "bit_length"), 1, 32));
  succinct.bit_length = static_cast<int>(bit_length);
  CITADEL_TRY(const Json* prefix, jf::Require(value, path, "name_prefix"));
  CITADEL_TRY(succinct.name_prefix, jf::ReadString(*prefix, jf::Child(path, "name_prefix"), kMaxTextBytes, true));
  return succinct;
}

Expected<Delegations> ReadDelegations(const Json& value, const std::string& path) {
  CITADEL_TRY_VOID(jf::ExpectObject(value, path, {}, jf::UnknownFields::kIgnore));
  Delegations delegations;
  CITADEL_TRY(const Json* keys, jf::Require(value, path, "keys"));
  CITADEL_TRY(delegations.keys, ReadKeys(*keys, jf::Child(path, "keys")));
  const Json* roles = jf::Find(value, "roles");
  const Json* succinct = jf::Find(value, "succinct_roles");
  if ((roles == nullptr) == (succinct == nullptr)) {
    return jf::FieldError(path, "exactly one of \"roles\" and \"succinct_roles\" must be set");
  }
  if (succinct != nullptr) {
    CITADEL_TRY(delegations.succinct_roles, ReadSuccinctRoles(*succinct, jf::Child(path, "succinct_roles")));
    return delegations;
  }
  const std::string roles_path = jf::Child(path, "roles");
  CITADEL_TRY_VOID(jf::ExpectArray(*roles, roles_path, kMaxElements));
  std::set<std::string> names;
  for (std::size_t i = 0; i < roles->size(); ++i) {
    CITADEL_TRY(DelegatedRole role, ReadDelegatedRole((*roles)[i], jf::Element(roles_path, i)));
    if (!names.insert(role.name).second) {
      return jf::FieldError(jf::Element(roles_path, i), "role " + jf::Quote(role.name) + " is delegated twice");
    }
    delegations.roles.push_back(std::move(role));
  }
  return delegations;
}

Json DelegationsJson(const Delegations& delegations) {
  Json out = {{"keys", KeysJson(delegations.keys)}};
  if (delegations.succinct_roles) {
    const auto& succinct = *delegations.succinct_roles;
    out["succinct_roles"] = {{"keyids", succinct.keyids},
                             {"threshold", succinct.threshold},
                             {"bit_length", succinct.bit_length},
                             {"name_prefix", succinct.name_prefix}};
    return out;
  }
  Json roles = Json::array();
  for (const auto& role : delegations.roles) {
    Json entry = {
        {"name", role.name}, {"keyids", role.keyids}, {"threshold", role.threshold}, {"terminating", role.terminating}};
    if (role.paths) entry["paths"] = *role.paths;
    if (role.path_hash_prefixes) entry["path_hash_prefixes"] = *role.path_hash_prefixes;
    roles.push_back(std::move(entry));
  }
  out["roles"] = std::move(roles);
  return out;
}

// ---------------------------------------------------------------- envelope

Expected<void> ReadEnvelope(const Json& document, Envelope& envelope) {
  CITADEL_TRY_VOID(jf::ExpectObject(document, "", {}, jf::UnknownFields::kIgnore));
  CITADEL_TRY(const Json* signed_json, jf::Require(document, "", "signed"));
  if (!signed_json->is_object()) return jf::FieldError("signed", "expected an object");
  CITADEL_TRY(const Json* signatures, jf::Require(document, "", "signatures"));
  CITADEL_TRY_VOID(jf::ExpectArray(*signatures, "signatures", kMaxElements));
  std::set<std::string> keyids;
  for (std::size_t i = 0; i < signatures->size(); ++i) {
    const std::string path = jf::Element("signatures", i);
    const Json& entry = (*signatures)[i];
    CITADEL_TRY_VOID(jf::ExpectObject(entry, path, {}, jf::UnknownFields::kIgnore));
    Signature signature;
    CITADEL_TRY(const Json* keyid, jf::Require(entry, path, "keyid"));
    CITADEL_TRY(signature.keyid, jf::ReadString(*keyid, jf::Child(path, "keyid"), kMaxTextBytes, true));
    CITADEL_TRY(const Json* sig, jf::Require(entry, path, "sig"));
    CITADEL_TRY(signature.sig, jf::ReadString(*sig, jf::Child(path, "sig"), kMaxTextBytes, true));
    if (!keyids.insert(signature.keyid).second) {
      return jf::FieldError(path, "key id " + jf::Quote(signature.keyid) + " signs more than once");
    }
    envelope.signatures.push_back(std::move(signature));
  }
  envelope.signed_json = *signed_json;
  auto canonical = EncodeCanonical(envelope.signed_json);
  if (!canonical) return jf::FieldError("signed", canonical.error().message());
  envelope.signed_bytes = *std::move(canonical);
  return kOk;
}

const EVP_MD* HashAlgorithm(std::string_view name) {
  if (name == "sha224") return EVP_sha224();
  if (name == "sha256") return EVP_sha256();
  if (name == "sha384") return EVP_sha384();
  if (name == "sha512") return EVP_sha512();
  if (name == "blake2b") return EVP_blake2b512();
  if (name == "blake2s") return EVP_blake2s256();
  return nullptr;
}

}  // namespace

// ------------------------------------------------------------------ public

bool IsTopLevelRole(std::string_view name) {
  return name == kRootRole || name == kTimestampRole || name == kSnapshotRole || name == kTargetsRole;
}

Expected<std::int64_t> ParseExpires(std::string_view text) {
  auto bad = [&] {
    return MakeError(ErrorCode::kInvalidArgument, "not a YYYY-MM-DDTHH:MM:SSZ time: " + jf::Quote(text));
  };
  if (text.size() != 20 || text[4] != '-' || text[7] != '-' || text[10] != 'T' || text[13] != ':' || text[16] != ':' ||
      text[19] != 'Z') {
    return bad();
  }
  auto number = [&](std::size_t at, std::size_t digits) -> std::int64_t {
    std::int64_t value = 0;
    for (std::size_t i = at; i < at + digits; ++i) {
      if (text[i] < '0' || text[i] > '9') return -1;
      value = value * 10 + (text[i] - '0');
    }
    return value;
  };
  const std::int64_t year = number(0, 4);
  const std::int64_t month = number(5, 2);
  const std::int64_t day = number(8, 2);
  const std::int64_t hour = number(11, 2);
  const std::int64_t minute = number(14, 2);
  const std::int64_t second = number(17, 2);
  if (year < 1 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 ||
      second < 0 || second > 59 || day > DaysInMonth(year, month)) {
    return bad();
  }
  return DaysFromCivil(year, month, day) * kSecondsPerDay + hour * 3600 + minute * 60 + second;
}

std::string FormatExpires(std::int64_t unix_seconds) {
  std::int64_t days = unix_seconds / kSecondsPerDay;
  std::int64_t rest = unix_seconds % kSecondsPerDay;
  if (rest < 0) {
    rest += kSecondsPerDay;
    --days;
  }
  const Civil date = CivilFromDays(days);
  char buffer[128];
  // Cannot truncate: the buffer holds the widest values the fields can take.
  (void)std::snprintf(buffer, sizeof buffer, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lldZ",
                      static_cast<long long>(date.year), static_cast<long long>(date.month),
                      static_cast<long long>(date.day), static_cast<long long>(rest / 3600),
                      static_cast<long long>(rest / 60 % 60), static_cast<long long>(rest % 60));
  return buffer;
}

// ------------------------------------------------------------ HashVerifier

void HashVerifier::MdCtxDeleter::operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }

Expected<HashVerifier> HashVerifier::Create(const std::map<std::string, std::string>& expected) {
  HashVerifier verifier;
  for (const auto& [algorithm, hex] : expected) {
    const EVP_MD* md = HashAlgorithm(algorithm);
    if (md == nullptr) return MakeError(ErrorCode::kCrypto, "unsupported hash algorithm " + jf::Quote(algorithm));
    Entry entry{algorithm, hex, std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>(EVP_MD_CTX_new())};
    if (!entry.ctx || EVP_DigestInit_ex(entry.ctx.get(), md, nullptr) != 1) {
      ERR_clear_error();
      return MakeError(ErrorCode::kCrypto, "cannot start a " + algorithm + " digest");
    }
    verifier.entries_.push_back(std::move(entry));
  }
  return verifier;
}

void HashVerifier::Update(std::string_view chunk) {
  for (auto& entry : entries_) {
    // Cannot fail for an initialised software digest; Finish would then
    // report a mismatch anyway.
    (void)EVP_DigestUpdate(entry.ctx.get(), chunk.data(), chunk.size());
  }
}

Expected<void> HashVerifier::Finish(std::string_view what) {
  for (auto& entry : entries_) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int length = 0;
    if (EVP_DigestFinal_ex(entry.ctx.get(), digest.data(), &length) != 1) {
      ERR_clear_error();
      return MakeError(ErrorCode::kCrypto, std::string(what) + ": cannot finish the " + entry.algorithm + " digest");
    }
    const std::string actual = HexEncode(std::span<const std::uint8_t>(digest.data(), length));
    if (actual != entry.expected_hex) {
      return MakeError(ErrorCode::kCrypto, std::string(what) + ": " + entry.algorithm + " mismatch (expected " +
                                               jf::Quote(entry.expected_hex) + ", got " + actual + ")");
    }
  }
  return kOk;
}

// ---------------------------------------------------------------- MetaFile

Expected<MetaFile> MetaFile::FromJson(const Json& json, std::string_view path_view) {
  const std::string path(path_view);
  CITADEL_TRY_VOID(jf::ExpectObject(json, path, {}, jf::UnknownFields::kIgnore));
  MetaFile meta;
  CITADEL_TRY(meta.version, ReadRequiredInteger(json, path, "version", 1));
  if (const Json* length = jf::Find(json, "length")) {
    CITADEL_TRY(meta.length, jf::ReadInteger(*length, jf::Child(path, "length"), 0, kMaxInteger));
  }
  if (const Json* hashes = jf::Find(json, "hashes")) {
    CITADEL_TRY(meta.hashes, ReadHashes(*hashes, jf::Child(path, "hashes")));
  }
  return meta;
}

Json MetaFile::ToJson() const {
  Json out = {{"version", version}};
  if (length) out["length"] = *length;
  if (!hashes.empty()) out["hashes"] = hashes;
  return out;
}

Expected<void> MetaFile::VerifyLengthAndHashes(std::string_view data, std::string_view what) const {
  if (length && static_cast<std::uint64_t>(*length) != data.size()) {
    return MakeError(ErrorCode::kCrypto, std::string(what) + ": length " + std::to_string(data.size()) +
                                             " differs from the " + std::to_string(*length) + " bytes listed");
  }
  if (hashes.empty()) return kOk;
  CITADEL_TRY(HashVerifier verifier, HashVerifier::Create(hashes));
  verifier.Update(data);
  return verifier.Finish(what);
}

MetaFile MetaFile::FromData(std::int64_t version, std::string_view data) {
  return MetaFile{version, static_cast<std::int64_t>(data.size()), {{"sha256", crypto::Sha256Hex(data)}}};
}

// -------------------------------------------------------------- TargetFile

Expected<TargetFile> TargetFile::FromJson(std::string target_path, const Json& json, std::string_view path_view) {
  const std::string path(path_view);
  CITADEL_TRY_VOID(jf::ExpectObject(json, path, {}, jf::UnknownFields::kIgnore));
  TargetFile target;
  target.path = std::move(target_path);
  CITADEL_TRY(target.length, ReadRequiredInteger(json, path, "length", 0));
  CITADEL_TRY(const Json* hashes, jf::Require(json, path, "hashes"));
  CITADEL_TRY(target.hashes, ReadHashes(*hashes, jf::Child(path, "hashes")));
  if (const Json* custom = jf::Find(json, "custom")) target.custom = *custom;
  return target;
}

Json TargetFile::ToJson() const {
  Json out = {{"length", length}, {"hashes", hashes}};
  if (!custom.is_null()) out["custom"] = custom;
  return out;
}

Expected<void> TargetFile::VerifyLengthAndHashes(std::string_view data) const {
  if (static_cast<std::uint64_t>(length) != data.size()) {
    return MakeError(ErrorCode::kCrypto, "target " + jf::Quote(path) + ": length " + std::to_string(data.size()) +
                                             " differs from the " + std::to_string(length) + " bytes listed");
  }
  CITADEL_TRY(HashVerifier verifier, HashVerifier::Create(hashes));
  verifier.Update(data);
  return verifier.Finish("target " + jf::Quote(path));
}

TargetFile TargetFile::FromData(std::string target_path, std::string_view data, Json custom) {
  TargetFile target;
  target.path = std::move(target_path);
  target.length = static_cast<std::int64_t>(data.size());
  target.hashes["sha256"] = crypto::Sha256Hex(data);
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &size, EVP_sha512(), nullptr) == 1) {
    target.hashes["sha512"] = HexEncode(std::span<const std::uint8_t>(digest.data(), size));
  }
  ERR_clear_error();
  target.custom = std::move(custom);
  return target;
}

// ------------------------------------------------------------ delegations

bool MatchPathPattern(std::string_view pattern, std::string_view target_path) {
  const auto pattern_parts = SplitPath(pattern);
  const auto target_parts = SplitPath(target_path);
  if (pattern_parts.size() != target_parts.size()) return false;
  for (std::size_t i = 0; i < pattern_parts.size(); ++i) {
    if (!MatchComponent(pattern_parts[i], target_parts[i])) return false;
  }
  return true;
}

bool DelegatedRole::IsDelegatedPath(std::string_view target_path) const {
  if (paths) {
    return std::any_of(paths->begin(), paths->end(),
                       [&](const std::string& pattern) { return MatchPathPattern(pattern, target_path); });
  }
  if (path_hash_prefixes) {
    const std::string digest = crypto::Sha256Hex(target_path);
    return std::any_of(path_hash_prefixes->begin(), path_hash_prefixes->end(),
                       [&](const std::string& prefix) { return digest.starts_with(prefix); });
  }
  return false;
}

namespace {

std::size_t SuffixLength(int bit_length) {
  const std::uint64_t last_bin = (std::uint64_t{1} << static_cast<unsigned>(bit_length)) - 1;
  std::size_t length = 1;
  for (std::uint64_t rest = last_bin >> 4U; rest != 0; rest >>= 4U) ++length;
  return length;
}

}  // namespace

std::string SuccinctRoles::RoleForTarget(std::string_view target_path) const {
  const crypto::Sha256Digest digest = crypto::Sha256(target_path);
  const std::uint32_t first_word = (std::uint32_t{digest[0]} << 24U) | (std::uint32_t{digest[1]} << 16U) |
                                   (std::uint32_t{digest[2]} << 8U) | std::uint32_t{digest[3]};
  const std::uint32_t bin = first_word >> static_cast<unsigned>(32 - bit_length);
  std::string suffix(SuffixLength(bit_length), '0');
  static constexpr char kHex[] = "0123456789abcdef";
  std::uint32_t rest = bin;
  for (std::size_t i = suffix.size(); i > 0; --i) {
    suffix[i - 1] = kHex[rest & 0xFU];
    rest >>= 4U;
  }
  return name_prefix + "-" + suffix;
}

bool SuccinctRoles::IsDelegatedRole(std::string_view role_name) const {
  const std::string prefix = name_prefix + "-";
  if (!role_name.starts_with(prefix)) return false;
  const std::string_view suffix = role_name.substr(prefix.size());
  if (suffix.size() != SuffixLength(bit_length)) return false;
  std::uint64_t bin = 0;
  for (char c : suffix) {
    const int digit = HexDigitValue(c);
    if (digit < 0) return false;
    bin = bin * 16 + static_cast<std::uint64_t>(digit);
  }
  return bin < (std::uint64_t{1} << static_cast<unsigned>(bit_length));
}

std::vector<std::pair<std::string, bool>> Delegations::RolesForTarget(std::string_view target_path) const {
  std::vector<std::pair<std::string, bool>> out;
  if (succinct_roles) {
    out.emplace_back(succinct_roles->RoleForTarget(target_path), true);
    return out;
  }
  for (const auto& role : roles) {
    if (role.IsDelegatedPath(target_path)) out.emplace_back(role.name, role.terminating);
  }
  return out;
}

std::optional<RoleKeys> Delegations::KeysForRole(std::string_view role_name) const {
  if (succinct_roles) {
    if (!succinct_roles->IsDelegatedRole(role_name)) return std::nullopt;
    return RoleKeys{succinct_roles->keyids, succinct_roles->threshold};
  }
  for (const auto& role : roles) {
    if (role.name == role_name) return RoleKeys{role.keyids, role.threshold};
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- Envelope

Expected<void> Envelope::SetSigned(Json signed_object) {
  CITADEL_TRY(std::string bytes, EncodeCanonical(signed_object));
  signed_json = std::move(signed_object);
  signed_bytes = std::move(bytes);
  signatures.clear();
  return kOk;
}

Expected<void> Envelope::Sign(const SigningKey& key) {
  CITADEL_TRY(std::string sig, key.Sign(signed_bytes));
  for (auto& signature : signatures) {
    if (signature.keyid == key.KeyId()) {
      signature.sig = std::move(sig);
      return kOk;
    }
  }
  signatures.push_back({key.KeyId(), std::move(sig)});
  return kOk;
}

Expected<std::string> Envelope::Serialize() const {
  Json sigs = Json::array();
  for (const auto& signature : signatures) sigs.push_back({{"keyid", signature.keyid}, {"sig", signature.sig}});
  Json document = {{"signatures", std::move(sigs)}, {"signed", signed_json}};
  try {
    return document.dump();
  } catch (const Json::exception& e) {
    return MakeError(ErrorCode::kInvalidArgument, std::string("metadata cannot be serialised: ") + e.what());
  }
}

Expected<void> VerifySignatures(std::string_view role_name, const std::map<std::string, Key>& keys,
                                const RoleKeys& authorised, const Envelope& md) {
  std::set<std::string_view> counted_keyids;
  std::set<std::string_view> counted_material;
  std::int64_t valid = 0;
  for (const auto& keyid : authorised.keyids) {
    if (!counted_keyids.insert(keyid).second) continue;  // listed twice: counts once
    auto key = keys.find(keyid);
    if (key == keys.end()) continue;
    auto signature = std::find_if(md.signatures.begin(), md.signatures.end(),
                                  [&](const Signature& candidate) { return candidate.keyid == keyid; });
    if (signature == md.signatures.end()) continue;
    if (!key->second.Verify(md.signed_bytes, signature->sig)) continue;
    if (!counted_material.insert(key->second.material_id()).second) continue;  // same key, other id
    ++valid;
  }
  if (valid >= authorised.threshold) return kOk;
  return MakeError(ErrorCode::kCrypto, std::string(role_name) + ": signature threshold not met (" +
                                           std::to_string(valid) + " valid signature" + (valid == 1 ? "" : "s") +
                                           " from authorised keys, " + std::to_string(authorised.threshold) +
                                           " required)");
}

// -------------------------------------------------------------------- Root

Expected<Root> Root::FromJson(const Json& signed_json) {
  Root root;
  CITADEL_TRY_VOID(ReadCommon(signed_json, kType, root));
  const std::string path = "signed";
  root.consistent_snapshot = false;
  if (const Json* consistent = jf::Find(signed_json, "consistent_snapshot")) {
    CITADEL_TRY(root.consistent_snapshot, jf::ReadBool(*consistent, jf::Child(path, "consistent_snapshot")));
  }
  CITADEL_TRY(const Json* keys, jf::Require(signed_json, path, "keys"));
  CITADEL_TRY(root.keys, ReadKeys(*keys, jf::Child(path, "keys")));
  CITADEL_TRY(const Json* roles, jf::Require(signed_json, path, "roles"));
  const std::string roles_path = jf::Child(path, "roles");
  CITADEL_TRY_VOID(jf::ExpectObject(*roles, roles_path, {}, jf::UnknownFields::kIgnore));
  for (const auto& [name, role_json] : roles->items()) {
    const std::string role_path = jf::Child(roles_path, name);
    CITADEL_TRY_VOID(jf::ExpectObject(role_json, role_path, {}, jf::UnknownFields::kIgnore));
    CITADEL_TRY(RoleKeys role, ReadRoleKeys(role_json, role_path));
    root.roles.emplace(name, std::move(role));
  }
  for (auto required : {kRootRole, kTimestampRole, kSnapshotRole, kTargetsRole}) {
    if (!root.roles.contains(std::string(required))) return jf::FieldError(jf::Child(roles_path, required), "missing");
  }
  return root;
}

Json Root::ToJson() const {
  Json out = CommonJson(kType, *this);
  out["consistent_snapshot"] = consistent_snapshot;
  out["keys"] = KeysJson(keys);
  Json roles_json = Json::object();
  for (const auto& [name, role] : roles) roles_json[name] = RoleKeysJson(role);
  out["roles"] = std::move(roles_json);
  return out;
}

void Root::AddKey(const Key& key, const std::string& key_id, std::string_view role) {
  keys.insert_or_assign(key_id, key);
  auto& keyids = roles[std::string(role)].keyids;
  if (std::find(keyids.begin(), keyids.end(), key_id) == keyids.end()) keyids.push_back(key_id);
}

Expected<void> Root::VerifyDelegate(std::string_view role, const Envelope& md) const {
  auto entry = roles.find(std::string(role));
  if (entry == roles.end()) {
    return MakeError(ErrorCode::kInvalidArgument, "root does not define the role " + jf::Quote(role));
  }
  return VerifySignatures(role, keys, entry->second, md);
}

// --------------------------------------------------------------- Timestamp

Expected<Timestamp> Timestamp::FromJson(const Json& signed_json) {
  Timestamp timestamp;
  CITADEL_TRY_VOID(ReadCommon(signed_json, kType, timestamp));
  CITADEL_TRY(const Json* meta, jf::Require(signed_json, "signed", "meta"));
  CITADEL_TRY_VOID(jf::ExpectObject(*meta, "signed.meta", {}, jf::UnknownFields::kIgnore));
  CITADEL_TRY(const Json* snapshot, jf::Require(*meta, "signed.meta", "snapshot.json"));
  CITADEL_TRY(timestamp.snapshot_meta, MetaFile::FromJson(*snapshot, "signed.meta.snapshot.json"));
  return timestamp;
}

Json Timestamp::ToJson() const {
  Json out = CommonJson(kType, *this);
  out["meta"] = {{"snapshot.json", snapshot_meta.ToJson()}};
  return out;
}

// ---------------------------------------------------------------- Snapshot

Expected<Snapshot> Snapshot::FromJson(const Json& signed_json) {
  Snapshot snapshot;
  CITADEL_TRY_VOID(ReadCommon(signed_json, kType, snapshot));
  CITADEL_TRY(const Json* meta, jf::Require(signed_json, "signed", "meta"));
  CITADEL_TRY_VOID(jf::ExpectObject(*meta, "signed.meta", {}, jf::UnknownFields::kIgnore));
  for (const auto& [name, entry] : meta->items()) {
    CITADEL_TRY(MetaFile file, MetaFile::FromJson(entry, jf::Child("signed.meta", name)));
    snapshot.meta.emplace(name, file);
  }
  return snapshot;
}

Json Snapshot::ToJson() const {
  Json out = CommonJson(kType, *this);
  Json meta_json = Json::object();
  for (const auto& [name, file] : meta) meta_json[name] = file.ToJson();
  out["meta"] = std::move(meta_json);
  return out;
}

// ----------------------------------------------------------------- Targets

Expected<Targets> Targets::FromJson(const Json& signed_json) {
  Targets targets;
  CITADEL_TRY_VOID(ReadCommon(signed_json, kType, targets));
  CITADEL_TRY(const Json* files, jf::Require(signed_json, "signed", "targets"));
  CITADEL_TRY_VOID(jf::ExpectObject(*files, "signed.targets", {}, jf::UnknownFields::kIgnore));
  for (const auto& [target_path, entry] : files->items()) {
    CITADEL_TRY(TargetFile file, TargetFile::FromJson(target_path, entry, jf::Child("signed.targets", target_path)));
    targets.targets.emplace(target_path, std::move(file));
  }
  if (const Json* delegations = jf::Find(signed_json, "delegations")) {
    CITADEL_TRY(targets.delegations, ReadDelegations(*delegations, "signed.delegations"));
  }
  return targets;
}

Json Targets::ToJson() const {
  Json out = CommonJson(kType, *this);
  Json files = Json::object();
  for (const auto& [target_path, file] : targets) files[target_path] = file.ToJson();
  out["targets"] = std::move(files);
  if (delegations) out["delegations"] = DelegationsJson(*delegations);
  return out;
}

Expected<void> Targets::VerifyDelegate(std::string_view role_name, const Envelope& md) const {
  std::optional<RoleKeys> authorised;
  if (delegations) authorised = delegations->KeysForRole(role_name);
  if (!authorised) return MakeError(ErrorCode::kNotFound, "no delegation to role " + jf::Quote(role_name));
  return VerifySignatures(role_name, delegations->keys, *authorised, md);
}

// ---------------------------------------------------------------- templates

template <typename T>
Expected<Metadata<T>> ParseMetadata(std::string_view bytes) {
  CITADEL_TRY(Json document, ParseJsonStrict(bytes));
  Metadata<T> md;
  CITADEL_TRY_VOID(ReadEnvelope(document, md));
  CITADEL_TRY(md.body, T::FromJson(md.signed_json));
  return md;
}

template <typename T>
Expected<Metadata<T>> MakeMetadata(const T& body) {
  Metadata<T> md;
  md.body = body;
  CITADEL_TRY_VOID(md.SetSigned(body.ToJson()));
  return md;
}

template Expected<Metadata<Root>> ParseMetadata<Root>(std::string_view);
template Expected<Metadata<Timestamp>> ParseMetadata<Timestamp>(std::string_view);
template Expected<Metadata<Snapshot>> ParseMetadata<Snapshot>(std::string_view);
template Expected<Metadata<Targets>> ParseMetadata<Targets>(std::string_view);
template Expected<Metadata<Root>> MakeMetadata<Root>(const Root&);
template Expected<Metadata<Timestamp>> MakeMetadata<Timestamp>(const Timestamp&);
template Expected<Metadata<Snapshot>> MakeMetadata<Snapshot>(const Snapshot&);
template Expected<Metadata<Targets>> MakeMetadata<Targets>(const Targets&);

}  // namespace citadel::tuf
