// Fuzzes the TUF metadata parsers a device runs on bytes from a repository
// or mirror (src/tuf/metadata.hpp): root, timestamp, snapshot and targets
// metadata, and TUF key objects. Properties: nothing crashes or hangs; a
// refusal has a reason; accepted metadata re-serialises (MakeMetadata) to
// bytes that parse again to the same version and expiry; signature checks,
// delegation lookups and path patterns run on whatever was accepted.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "common/canonical_json.hpp"
#include "common/encoding.hpp"
#include "tuf/canonical.hpp"
#include "tuf/keys.hpp"
#include "tuf/metadata.hpp"

namespace {

using citadel::tuf::Metadata;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "tuf_metadata_fuzz: %s\n", what);
  std::abort();
}

template <typename T>
void CheckRoundTrip(const Metadata<T>& md) {
  auto rebuilt = citadel::tuf::MakeMetadata(md.body);
  if (!rebuilt) Fail("accepted metadata cannot be rebuilt");
  auto text = rebuilt->Serialize();
  if (!text) Fail("rebuilt metadata cannot be serialised");
  auto again = citadel::tuf::ParseMetadata<T>(*text);
  if (!again) Fail("rebuilt metadata does not parse");
  if (again->body.version != md.body.version || again->body.expires != md.body.expires) {
    Fail("round trip changed version or expiry");
  }
}

template <typename T>
const Metadata<T>* Parse(std::string_view text, std::optional<Metadata<T>>& storage) {
  auto md = citadel::tuf::ParseMetadata<T>(text);
  if (!md) {
    if (md.error().message().empty()) Fail("metadata refused without a reason");
    return nullptr;
  }
  CheckRoundTrip(*md);
  storage = *std::move(md);
  return &*storage;
}

constexpr const char* kProbePaths[] = {"", "a", "dir/file.tgz", "releases/x/x_v1", "a/b/c/d"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = citadel::AsText({data, size});

  std::optional<Metadata<citadel::tuf::Root>> root_storage;
  if (const auto* root = Parse(text, root_storage)) {
    // Self-verification exercises every key (PEM/hex decoding, schemes).
    (void)root->body.VerifyDelegate(citadel::tuf::kRootRole, *root);
  }
  std::optional<Metadata<citadel::tuf::Timestamp>> timestamp_storage;
  if (const auto* timestamp = Parse(text, timestamp_storage)) {
    (void)timestamp->body.snapshot_meta.VerifyLengthAndHashes(text, "snapshot");
  }
  std::optional<Metadata<citadel::tuf::Snapshot>> snapshot_storage;
  (void)Parse(text, snapshot_storage);
  std::optional<Metadata<citadel::tuf::Targets>> targets_storage;
  if (const auto* targets = Parse(text, targets_storage)) {
    if (targets->body.delegations) {
      const auto& delegations = *targets->body.delegations;
      for (const char* path : kProbePaths) {
        for (const auto& [name, terminating] : delegations.RolesForTarget(path)) {
          (void)terminating;
          (void)targets->body.VerifyDelegate(name, *targets);
        }
      }
    }
    for (const auto& [target_path, file] : targets->body.targets) {
      (void)file.VerifyLengthAndHashes(target_path);
    }
  }

  // Any JSON value as a key object, and its canonical form.
  auto json = citadel::ParseJsonStrict(text);
  if (json) {
    (void)citadel::tuf::EncodeCanonical(*json);
    auto key = citadel::tuf::Key::FromJson(*json);
    if (!key && key.error().message().empty()) Fail("key refused without a reason");
    if (key) {
      (void)key->Verify("message", "00");
      if (!key->ComputeKeyId()) Fail("accepted key has no key id");
    }
    // Strings of an array as pattern/path pairs.
    if (json->is_array() && json->size() >= 2 && (*json)[0].is_string() && (*json)[1].is_string()) {
      (void)citadel::tuf::MatchPathPattern((*json)[0].get<std::string>(), (*json)[1].get<std::string>());
    }
  }
  return 0;
}
