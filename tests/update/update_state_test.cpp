// STATE/update/state.json: round trip, atomic updates, bounded report queue,
// and refusal of a corrupt file.
#include "update/update_state.hpp"

#include <gtest/gtest.h>

#include "common/file.hpp"
#include "support/temp_dir.hpp"

namespace citadel::update {
namespace {

TEST(UpdateStateTest, RoundTripsThroughTheFile) {
  citadel::testing::TempDir temp("update-state");
  const auto path = temp.path() / "update" / "state.json";
  {
    auto file = StateFile::Open(path);
    ASSERT_TRUE(file) << file.error().message();
    ASSERT_TRUE((*file)->Update([](UpdateState& state) {
      state.image_repository = "/v1/repo/t/image";
      state.director = "/v1/repo/t/director/g";
      state.director_timestamp_version = 7;
      state.deferred_by_window = true;
      WorkItem item;
      item.identity = {"os", "citadel-os", "2.0.0", 4};
      item.target_name = "os/retail/citadel-os/2.0.0/os.img";
      item.deployment_id = "dep";
      item.length = 123;
      item.hashes = {{"sha256", std::string(64, 'a')}};
      item.step = WorkStep::kPendingReboot;
      item.slot = "B";
      item.last_reported = "pending-reboot";
      state.work["citadel-os"] = item;
      state.refused["app"] = std::string(64, 'b');
      state.os_slots["B"] = SlotRecord{item.target_name, "2.0.0", 4, std::string(64, 'a')};
      state.AddReport("dep", item.target_name, kReportPendingReboot, "", "2030-01-01T00:00:00Z");
    }));
  }
  auto reopened = StateFile::Open(path);
  ASSERT_TRUE(reopened) << reopened.error().message();
  auto state = (*reopened)->Snapshot();
  EXPECT_EQ(state.director_timestamp_version, 7);
  EXPECT_TRUE(state.deferred_by_window);
  ASSERT_EQ(state.work.count("citadel-os"), 1u);
  const auto& item = state.work.at("citadel-os");
  EXPECT_EQ(item.step, WorkStep::kPendingReboot);
  EXPECT_EQ(item.identity.security_version, 4);
  EXPECT_EQ(item.Sha256(), std::string(64, 'a'));
  EXPECT_EQ(item.slot, "B");
  EXPECT_EQ(state.refused.at("app"), std::string(64, 'b'));
  EXPECT_EQ(state.os_slots.at("B").version, "2.0.0");
  ASSERT_EQ(state.reports.size(), 1u);
  EXPECT_EQ(state.reports[0].sequence, 1u);
  EXPECT_EQ(state.next_sequence, 2u);
  EXPECT_EQ(UpdateStateToJson(state), UpdateStateToJson(ParseUpdateState(ReadFile(path).value()).value()));
}

TEST(UpdateStateTest, ReportQueueIsBoundedAndReasonsAreCut) {
  UpdateState state;
  for (std::size_t i = 0; i < kMaxQueuedReports + 10; ++i) {
    state.AddReport("dep", "t", kReportFailed, std::string(kMaxReasonBytes + 50, 'x'), "now");
  }
  ASSERT_EQ(state.reports.size(), kMaxQueuedReports);
  EXPECT_EQ(state.reports.front().sequence, 11u);  // the oldest went first
  EXPECT_EQ(state.reports.back().reason.size(), kMaxReasonBytes);
}

TEST(UpdateStateTest, CorruptFileIsRefusedWithAWayOut) {
  citadel::testing::TempDir temp("update-state");
  const auto path = temp.path() / "state.json";
  for (const char* text : {"{", "[]", R"({"format":2})", R"({"format":1})"}) {
    ASSERT_TRUE(WriteFileAtomic(path, text));
    auto file = StateFile::Open(path);
    ASSERT_FALSE(file) << text;
    EXPECT_NE(file.error().message().find("move it away"), std::string::npos);
  }
}

TEST(UpdateStateTest, MissingFileStartsEmpty) {
  citadel::testing::TempDir temp("update-state");
  auto file = StateFile::Open(temp.path() / "new" / "state.json");
  ASSERT_TRUE(file) << file.error().message();
  EXPECT_TRUE((*file)->Snapshot().work.empty());
  EXPECT_FALSE(std::filesystem::exists(temp.path() / "new" / "state.json"));  // written on the first change
}

}  // namespace
}  // namespace citadel::update
