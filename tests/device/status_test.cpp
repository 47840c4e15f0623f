#include "device/status.hpp"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include "common/file.hpp"
#include "support/temp_dir.hpp"

namespace citadel::device {
namespace {

DeviceStatus SampleStatus() {
  DeviceStatus status;
  status.device_id = std::string(64, 'a');
  status.state = AgentState::kAttested;
  status.tenant_id = "t_123";
  status.certificate_serial = "1f2e";
  status.certificate_expires_at = "2026-11-22T10:00:00Z";
  status.last_check_in = "2026-11-21T10:00:00Z";
  status.attestations = 2;
  status.check_ins = 17;
  return status;
}

TEST(StatusTest, JsonHasExactlyTheDocumentedFields) {
  auto json = StatusToJson(SampleStatus());
  std::vector<std::string> keys;
  for (const auto& [key, value] : json.items()) keys.push_back(key);
  std::vector<std::string> expected{"attestations",
                                    "certificate_expires_at",
                                    "certificate_serial",
                                    "check_ins",
                                    "device_id",
                                    "last_check_in",
                                    "last_error",
                                    "last_problem_type",
                                    "state",
                                    "tenant_id"};
  EXPECT_EQ(keys, expected);
  EXPECT_EQ(json["state"], "attested");
  EXPECT_EQ(json["check_ins"], 17);
}

TEST(StatusTest, StateNamesAreTheDocumentedOnes) {
  EXPECT_EQ(AgentStateName(AgentState::kStarting), "starting");
  EXPECT_EQ(AgentStateName(AgentState::kAttesting), "attesting");
  EXPECT_EQ(AgentStateName(AgentState::kUnclaimed), "unclaimed");
  EXPECT_EQ(AgentStateName(AgentState::kAttested), "attested");
  EXPECT_EQ(AgentStateName(AgentState::kBackoff), "backoff");
  EXPECT_EQ(AgentStateName(AgentState::kRefused), "refused");
  for (auto state : {AgentState::kStarting, AgentState::kAttesting, AgentState::kUnclaimed, AgentState::kAttested,
                     AgentState::kBackoff, AgentState::kRefused}) {
    EXPECT_EQ(*ParseAgentState(AgentStateName(state)), state);
  }
  EXPECT_FALSE(ParseAgentState("sleeping"));
}

TEST(StatusTest, WriteThenReadRoundTrips) {
  testing::TempDir dir;
  auto status = SampleStatus();
  ASSERT_TRUE(WriteStatus(dir.path(), status));
  auto read = ReadStatus(dir.path());
  ASSERT_TRUE(read) << read.error().message();
  EXPECT_EQ(*read, status);

  struct stat st {};
  ASSERT_EQ(::stat((dir.path() / "status.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
}

TEST(StatusTest, RewriteReplacesAndLeavesNoTemporaryFiles) {
  testing::TempDir dir;
  auto status = SampleStatus();
  ASSERT_TRUE(WriteStatus(dir.path(), status));
  status.state = AgentState::kBackoff;
  status.last_error = "service unreachable: connection refused";
  status.last_problem_type = "";
  ASSERT_TRUE(WriteStatus(dir.path(), status));
  auto read = ReadStatus(dir.path());
  ASSERT_TRUE(read);
  EXPECT_EQ(read->state, AgentState::kBackoff);
  EXPECT_EQ(read->last_error, status.last_error);

  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    ++files;
    EXPECT_EQ(entry.path().filename(), "status.json");
  }
  EXPECT_EQ(files, 1);
}

TEST(StatusTest, ParseRefusesMissingOrMistypedFields) {
  auto json = StatusToJson(SampleStatus());
  json.erase("check_ins");
  EXPECT_FALSE(ParseStatus(json.dump()));
  json = StatusToJson(SampleStatus());
  json["state"] = "dancing";
  EXPECT_FALSE(ParseStatus(json.dump()));
  json = StatusToJson(SampleStatus());
  json["tenant_id"] = 5;
  EXPECT_FALSE(ParseStatus(json.dump()));
  EXPECT_FALSE(ParseStatus("not json"));
}

TEST(StatusTest, WriteFailsInAMissingDirectory) {
  testing::TempDir dir;
  EXPECT_FALSE(WriteStatus(dir.path() / "missing", SampleStatus()));
}

}  // namespace
}  // namespace citadel::device
