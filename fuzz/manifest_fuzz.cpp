// Fuzzes the manifest parser and policy building on the simulated board
// (boards/simulated.json). Properties: nothing crashes; an accepted manifest
// either builds a policy or is refused with a field-named error; a built
// policy only holds peripherals the board defines; and its exclusive
// resources can be claimed in an empty registry and then not by another app.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "app/board.hpp"
#include "app/manifest.hpp"
#include "app/policy.hpp"
#include "app/resources.hpp"
#include "common/encoding.hpp"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "manifest_fuzz: %s\n", what);
  std::abort();
}

const citadel::app::BoardDefinition& Board() {
  static const citadel::app::BoardDefinition board = [] {
    auto loaded = citadel::app::LoadBoardDefinition(CITADEL_SOURCE_DIR "/boards/simulated.json");
    if (!loaded) Fail(loaded.error().message().c_str());
    return *loaded;
  }();
  return board;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto& board = Board();
  auto manifest = citadel::app::ParseManifest(citadel::AsText({data, size}));
  if (!manifest) {
    if (manifest.error().message().empty()) Fail("refused without a reason");
    return 0;
  }
  auto policy = citadel::app::BuildPolicy(*manifest, board, citadel::app::DevicePolicy{});
  if (!policy) {
    if (policy.error().message().empty()) Fail("policy refused without a reason");
    return 0;
  }
  for (const auto& peripheral : policy->peripherals) {
    const auto* on_board = board.Find(peripheral.kind, peripheral.name);
    if (on_board == nullptr || !(*on_board == peripheral)) Fail("policy holds a peripheral the board lacks");
  }
  if (policy->memory_limit_bytes == 0 || policy->pids_limit == 0) Fail("policy without cgroup limits");

  citadel::app::ResourceRegistry registry;
  if (!registry.Claim(*policy)) Fail("a valid policy cannot claim an empty registry");
  auto rival = *policy;
  rival.component_id = "ffffffff-ffff-4fff-8fff-ffffffffffff";
  const bool rival_claimed = registry.Claim(rival).has_value();
  if (rival_claimed == !citadel::app::ExclusiveResources(*policy).empty()) {
    Fail("exclusivity broken: a second app's claim of held resources succeeded, or of nothing failed");
  }
  return 0;
}
