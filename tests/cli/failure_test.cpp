#include "cli/failure.hpp"

#include <gtest/gtest.h>

#include <sstream>

namespace citadel::cli {
namespace {

std::string ProblemBody(const std::string& name, int status, const std::string& detail) {
  return R"({"type":"urn:citadel:problem:)" + name + R"(","title":"t","status":)" + std::to_string(status) +
         R"(,"detail":")" + detail + R"("})";
}

TEST(ProblemTest, ParsesProblemDetails) {
  auto problem = ParseProblem(ProblemBody("not-found", 404, "no such device"));
  ASSERT_TRUE(problem.has_value());
  EXPECT_EQ(problem->Name(), "not-found");
  EXPECT_EQ(problem->status, 404);
  EXPECT_EQ(problem->detail, "no such device");
}

TEST(ProblemTest, RefusesNonProblems) {
  EXPECT_FALSE(ParseProblem("").has_value());
  EXPECT_FALSE(ParseProblem("<html>502</html>").has_value());
  EXPECT_FALSE(ParseProblem(R"({"detail":"x"})").has_value());
  EXPECT_FALSE(ParseProblem(R"([1,2])").has_value());
  auto foreign = ParseProblem(R"({"type":"about:blank"})");
  ASSERT_TRUE(foreign.has_value());
  EXPECT_EQ(foreign->Name(), "");
}

TEST(FailureTest, UnauthenticatedSaysToLogIn) {
  auto failure = FailureFromResponse(401, ProblemBody("unauthenticated", 401, "the token is not valid"), {});
  EXPECT_EQ(failure.exit_code, ExitCode::kAuth);
  EXPECT_EQ(failure.message, "the token is not valid");
  EXPECT_NE(failure.hint.find("citadel login"), std::string::npos);
}

TEST(FailureTest, ForbiddenUsesTheCommandsHint) {
  FailureContext context;
  context.forbidden_hint = "creating tenants needs the platform operator token";
  auto failure = FailureFromResponse(403, ProblemBody("forbidden", 403, "operator role required"), context);
  EXPECT_EQ(failure.exit_code, ExitCode::kAuth);
  EXPECT_EQ(failure.hint, context.forbidden_hint);
  auto generic = FailureFromResponse(403, ProblemBody("forbidden", 403, "x"), {});
  EXPECT_NE(generic.hint.find("role"), std::string::npos);
}

TEST(FailureTest, NotFoundAndConflictCodes) {
  FailureContext context;
  context.not_found_hint = "list devices with `citadel device list`";
  auto not_found = FailureFromResponse(404, ProblemBody("not-found", 404, "device not found"), context);
  EXPECT_EQ(not_found.exit_code, ExitCode::kNotFound);
  EXPECT_EQ(not_found.hint, context.not_found_hint);

  auto unknown = FailureFromResponse(404, ProblemBody("device-unknown", 404, "never attested"), context);
  EXPECT_EQ(unknown.exit_code, ExitCode::kNotFound);
  EXPECT_NE(unknown.hint.find("attest"), std::string::npos);

  auto elsewhere = FailureFromResponse(409, ProblemBody("device-claimed-elsewhere", 409, "claimed"), {});
  EXPECT_EQ(elsewhere.exit_code, ExitCode::kConflict);
  EXPECT_NE(elsewhere.hint.find("another tenant"), std::string::npos);

  auto already = FailureFromResponse(409, ProblemBody("device-already-claimed", 409, "yours"), {});
  EXPECT_EQ(already.exit_code, ExitCode::kConflict);
  EXPECT_NE(already.hint.find("device show"), std::string::npos);
}

TEST(FailureTest, NonProblemBodiesStillGetAStatusMessage) {
  FailureContext context;
  context.server = "https://127.0.0.1:8443";
  auto failure = FailureFromResponse(502, "<html>bad gateway</html>", context);
  EXPECT_EQ(failure.exit_code, ExitCode::kError);
  EXPECT_EQ(failure.message, "the server answered HTTP 502");
  EXPECT_NE(failure.hint.find("log"), std::string::npos);
  auto bad_request = FailureFromResponse(400, ProblemBody("invalid-request", 400, "unknown field x"), {});
  EXPECT_EQ(bad_request.exit_code, ExitCode::kError);
  EXPECT_EQ(bad_request.message, "unknown field x");
  EXPECT_NE(bad_request.hint.find("--help"), std::string::npos);
}

TEST(FailureTest, UnreachableServerNamesTheUrl) {
  FailureContext context;
  context.server = "https://127.0.0.1:8443";
  auto failure = FailureFromError(Error(ErrorCode::kUnavailable, "connection refused"), context);
  EXPECT_EQ(failure.exit_code, ExitCode::kUnreachable);
  EXPECT_EQ(failure.message, "connection refused");
  EXPECT_NE(failure.hint.find("is citadel-server running at https://127.0.0.1:8443?"), std::string::npos);
}

TEST(FailureTest, ErrorCodesMapToDocumentedExitCodes) {
  EXPECT_EQ(ExitCodeFor(ErrorCode::kUnauthenticated), ExitCode::kAuth);
  EXPECT_EQ(ExitCodeFor(ErrorCode::kPermissionDenied), ExitCode::kAuth);
  EXPECT_EQ(ExitCodeFor(ErrorCode::kNotFound), ExitCode::kNotFound);
  EXPECT_EQ(ExitCodeFor(ErrorCode::kAlreadyExists), ExitCode::kConflict);
  EXPECT_EQ(ExitCodeFor(ErrorCode::kConflict), ExitCode::kConflict);
  EXPECT_EQ(ExitCodeFor(ErrorCode::kUnavailable), ExitCode::kUnreachable);
  EXPECT_EQ(ExitCodeFor(ErrorCode::kInvalidArgument), ExitCode::kUsage);
  EXPECT_EQ(ExitCodeFor(ErrorCode::kIo), ExitCode::kError);
  EXPECT_EQ(static_cast<int>(ExitCode::kUnreachable), 6);
}

TEST(FailureTest, PrintsErrorAndHintLines) {
  std::ostringstream err;
  PrintFailure(err, Failure{ExitCode::kNotFound, "device not found", "list devices"});
  EXPECT_EQ(err.str(), "error: device not found\nhint: list devices\n");
  std::ostringstream no_hint;
  PrintFailure(no_hint, Failure{ExitCode::kError, "boom\x1b[31m", ""});
  EXPECT_EQ(no_hint.str(), "error: boom?[31m\n");
}

}  // namespace
}  // namespace citadel::cli
