// The update client's policy as pure functions (src/update/selection.hpp).
#include "update/selection.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace citadel::update {
namespace {

DirectorTarget Target(const std::string& component, std::string role, const std::string& sha,
                      std::int64_t percent = 100, bool paused = false, std::int64_t security_version = 1) {
  DirectorTarget target;
  target.file.path = "apps/" + component + "/" + sha + "/app.img";
  target.file.length = 10;
  target.file.hashes = {{"sha256", sha}};
  target.identity = {"app", component, "1.0.0", security_version};
  target.deployment_id = role == "current" ? "dep-new" : "dep-old";
  target.percent = percent;
  target.paused = paused;
  target.role = std::move(role);
  return target;
}

const RolloutRule kEveryone = [](std::string_view, std::string_view, std::int64_t percent) { return percent > 0; };
const RolloutRule kNoOne = [](std::string_view, std::string_view, std::int64_t) { return false; };

std::string Chosen(const std::vector<Choice>& choices, const std::string& component) {
  for (const auto& choice : choices) {
    if (choice.component_id == component) return choice.target.Sha256();
  }
  return "(none)";
}

TEST(ChooseTargetsTest, CurrentWhenInRolloutElseBaseline) {
  std::vector<DirectorTarget> targets{Target("a", "current", "new", 50), Target("a", "baseline", "old")};
  EXPECT_EQ(Chosen(ChooseTargets(targets, "d", {}, kEveryone), "a"), "new");
  EXPECT_EQ(Chosen(ChooseTargets(targets, "d", {}, kNoOne), "a"), "old");
}

TEST(ChooseTargetsTest, ADeviceThatRunsTheCurrentTargetKeepsIt) {
  std::vector<DirectorTarget> targets{Target("a", "current", "new", 10), Target("a", "baseline", "old")};
  EXPECT_EQ(Chosen(ChooseTargets(targets, "d", {{"a", "new"}}, kNoOne), "a"), "new");
}

TEST(ChooseTargetsTest, PausedReachesOnlyDevicesThatRunIt) {
  std::vector<DirectorTarget> targets{Target("a", "current", "new", 100, /*paused=*/true),
                                      Target("a", "baseline", "old")};
  EXPECT_EQ(Chosen(ChooseTargets(targets, "d", {{"a", "old"}}, kEveryone), "a"), "old");
  EXPECT_EQ(Chosen(ChooseTargets(targets, "d", {{"a", "new"}}, kEveryone), "a"), "new");
}

TEST(ChooseTargetsTest, NothingWithoutACandidate) {
  std::vector<DirectorTarget> targets{Target("a", "current", "new", 10)};
  EXPECT_TRUE(ChooseTargets(targets, "d", {}, kNoOne).empty());
  std::vector<DirectorTarget> baseline_only{Target("b", "baseline", "old")};
  EXPECT_EQ(Chosen(ChooseTargets(baseline_only, "d", {}, kNoOne), "b"), "old");
}

TEST(ChooseTargetsTest, ComponentsAreIndependent) {
  std::vector<DirectorTarget> targets{Target("a", "current", "a2"), Target("b", "baseline", "b1"),
                                      Target("b", "current", "b2", 0)};
  auto choices = ChooseTargets(targets, "d", {}, kEveryone);
  ASSERT_EQ(choices.size(), 2u);
  EXPECT_EQ(Chosen(choices, "a"), "a2");
  EXPECT_EQ(Chosen(choices, "b"), "b1");
}

TEST(MaintenanceWindowTest, ParsesAndWrapsPastMidnight) {
  auto window = ParseMaintenanceWindow(Json{{"start", "23:30"}, {"duration_minutes", 60}}, "w");
  ASSERT_TRUE(window) << window.error().message();
  ASSERT_TRUE(*window);
  EXPECT_EQ((*window)->start_minute, 23 * 60 + 30);
  const std::int64_t day = 1893456000;  // 2030-01-01T00:00:00Z
  EXPECT_TRUE(InMaintenanceWindow(**window, day + 23 * 3600 + 30 * 60));
  EXPECT_TRUE(InMaintenanceWindow(**window, day + 10 * 60));
  EXPECT_FALSE(InMaintenanceWindow(**window, day + 30 * 60));
  EXPECT_FALSE(InMaintenanceWindow(**window, day + 12 * 3600));
  EXPECT_TRUE(InMaintenanceWindow(MaintenanceWindow{600, 1440}, day + 5));
}

TEST(MaintenanceWindowTest, NullIsNoWindowAndBadValuesAreRefused) {
  auto none = ParseMaintenanceWindow(nullptr, "w");
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
  EXPECT_FALSE(ParseMaintenanceWindow(Json{{"start", "24:00"}, {"duration_minutes", 60}}, "w"));
  EXPECT_FALSE(ParseMaintenanceWindow(Json{{"start", "2:00"}, {"duration_minutes", 60}}, "w"));
  EXPECT_FALSE(ParseMaintenanceWindow(Json{{"start", "02:00"}, {"duration_minutes", 0}}, "w"));
  EXPECT_FALSE(ParseMaintenanceWindow(Json{{"start", "02:00"}, {"duration_minutes", 1441}}, "w"));
  EXPECT_FALSE(ParseMaintenanceWindow(Json{{"start", "02:00"}}, "w"));
}

tuf::TargetFile ImageEntry(const DirectorTarget& director) {
  tuf::TargetFile image;
  image.path = director.file.path;
  image.length = director.file.length;
  image.hashes = director.file.hashes;
  image.custom = Json{{"citadel",
                       {{"kind", director.identity.kind},
                        {"component_id", director.identity.component_id},
                        {"version", director.identity.version},
                        {"security_version", director.identity.security_version}}}};
  return image;
}

TEST(CheckImageTargetTest, AcceptsTheSameTargetAndRefusesEveryDifference) {
  const DirectorTarget director = Target("a", "current", std::string(64, 'a'));
  EXPECT_TRUE(CheckImageTarget(director, ImageEntry(director)));

  auto image = ImageEntry(director);
  image.length = 11;
  EXPECT_EQ(CheckImageTarget(director, image).error().code(), ErrorCode::kCrypto);
  image = ImageEntry(director);
  image.hashes["sha256"] = std::string(64, 'b');
  EXPECT_FALSE(CheckImageTarget(director, image));
  image = ImageEntry(director);
  image.hashes["sha512"] = std::string(128, 'c');  // an extra hash the director did not sign
  EXPECT_FALSE(CheckImageTarget(director, image));
  for (const char* field : {"kind", "component_id", "version"}) {
    image = ImageEntry(director);
    image.custom["citadel"][field] = field == std::string("kind") ? "os" : "other";
    EXPECT_FALSE(CheckImageTarget(director, image)) << field;
  }
  image = ImageEntry(director);
  image.custom["citadel"]["security_version"] = 9;
  EXPECT_FALSE(CheckImageTarget(director, image));
  image = ImageEntry(director);
  image.custom = nullptr;
  EXPECT_FALSE(CheckImageTarget(director, image));
}

TEST(CheckFloorTest, MessageSaysWhy) {
  EXPECT_TRUE(CheckFloor(3, 3));
  auto below = CheckFloor(2, 3);
  ASSERT_FALSE(below);
  EXPECT_EQ(below.error().message(), "security version 2 is below this device's floor 3");
}

TEST(ParseTargetIdentityTest, ComponentIdsMustFitCounterNames) {
  Json custom{{"citadel", {{"kind", "app"}, {"component_id", "ok-id_1.2"}, {"version", "1"}, {"security_version", 0}}}};
  EXPECT_TRUE(ParseTargetIdentity(custom, "custom"));
  for (const char* bad : {"with space", "a/b", "floor:x", ".hidden", ""}) {
    custom["citadel"]["component_id"] = bad;
    EXPECT_FALSE(ParseTargetIdentity(custom, "custom")) << bad;
  }
  custom["citadel"]["component_id"] = std::string(59, 'a');
  EXPECT_FALSE(ParseTargetIdentity(custom, "custom"));
  custom["citadel"]["component_id"] = "ok";
  custom["citadel"]["security_version"] = -1;
  EXPECT_FALSE(ParseTargetIdentity(custom, "custom"));
}

}  // namespace
}  // namespace citadel::update
