// The Boost-free parts of citadel_http: routing, query parsing, problem
// responses and base-URL parsing.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "http/http.hpp"

namespace citadel::http {
namespace {

Request MakeRequest(std::string method, std::string path) {
  Request request;
  request.method = std::move(method);
  request.path = std::move(path);
  return request;
}

Response Named(std::string name) {
  Response response;
  response.body = std::move(name);
  return response;
}

std::string HeaderValue(const Response& response, std::string_view name) {
  for (const auto& [key, value] : response.headers) {
    if (key == name) return value;
  }
  return "";
}

TEST(RouterTest, ExtractsPercentDecodedParameters) {
  Router router;
  PathParams seen;
  router.Add("GET", "/v1/tenants/{tenant}/devices/{device}", [&](const Request&, const PathParams& params) {
    seen = params;
    return Named("device");
  });
  Response response = router.Dispatch(MakeRequest("GET", "/v1/tenants/acme/devices/ab%2Fc%20d"));
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "device");
  EXPECT_EQ(seen.at("tenant"), "acme");
  EXPECT_EQ(seen.at("device"), "ab/c d");
}

TEST(RouterTest, UnknownPathIsNotFoundProblem) {
  Router router;
  router.Add("GET", "/v1/devices", [](const Request&, const PathParams&) { return Named("list"); });
  for (const char* path : {"/v1/other", "/v1/devices/", "/v1", "/", "/v1/devices/x"}) {
    Response response = router.Dispatch(MakeRequest("GET", path));
    EXPECT_EQ(response.status, 404) << path;
    EXPECT_EQ(response.content_type, "application/problem+json");
    auto problem = nlohmann::json::parse(response.body);
    EXPECT_EQ(problem["type"], "urn:citadel:problem:not-found");
    EXPECT_EQ(problem["status"], 404);
    EXPECT_EQ(problem["title"], "Not Found");
    EXPECT_TRUE(problem["detail"].is_string());
  }
}

TEST(RouterTest, KnownPathWithOtherMethodIsMethodNotAllowedWithAllow) {
  Router router;
  router.Add("POST", "/v1/devices/{id}", [](const Request&, const PathParams&) { return Named("post"); });
  router.Add("GET", "/v1/devices/{id}", [](const Request&, const PathParams&) { return Named("get"); });
  Response response = router.Dispatch(MakeRequest("DELETE", "/v1/devices/7"));
  EXPECT_EQ(response.status, 405);
  EXPECT_EQ(response.content_type, "application/problem+json");
  EXPECT_EQ(nlohmann::json::parse(response.body)["type"], "urn:citadel:problem:method-not-allowed");
  EXPECT_EQ(HeaderValue(response, "Allow"), "GET, POST");
  EXPECT_EQ(router.Dispatch(MakeRequest("GET", "/v1/devices/7")).body, "get");
  EXPECT_EQ(router.Dispatch(MakeRequest("POST", "/v1/devices/7")).body, "post");
}

TEST(RouterTest, LiteralSegmentBeatsParameterWhateverTheOrder) {
  Router router;
  router.Add("GET", "/v1/devices/{id}", [](const Request&, const PathParams&) { return Named("param"); });
  router.Add("GET", "/v1/devices/self", [](const Request&, const PathParams&) { return Named("self"); });
  EXPECT_EQ(router.Dispatch(MakeRequest("GET", "/v1/devices/self")).body, "self");
  EXPECT_EQ(router.Dispatch(MakeRequest("GET", "/v1/devices/other")).body, "param");
}

TEST(RouterTest, ParameterNeverMatchesEmptyOrMalformedSegment) {
  Router router;
  router.Add("GET", "/a/{x}/b", [](const Request&, const PathParams&) { return Named("hit"); });
  EXPECT_EQ(router.Dispatch(MakeRequest("GET", "/a//b")).status, 404);
  EXPECT_EQ(router.Dispatch(MakeRequest("GET", "/a/%zz/b")).status, 404);
  EXPECT_EQ(router.Dispatch(MakeRequest("GET", "/a/1/b")).body, "hit");
}

TEST(RequestTest, QueryParameterDecodesAndReportsAbsence) {
  Request request;
  request.query = "a=1&b=hello%20world&c=x+y&flag&bad=%zz&a=2&e%3Dq=v";
  EXPECT_EQ(request.QueryParameter("a"), "1");  // first occurrence
  EXPECT_EQ(request.QueryParameter("b"), "hello world");
  EXPECT_EQ(request.QueryParameter("c"), "x y");
  EXPECT_EQ(request.QueryParameter("flag"), "");
  EXPECT_EQ(request.QueryParameter("bad"), "");
  EXPECT_EQ(request.QueryParameter("e=q"), "v");
  EXPECT_EQ(request.QueryParameter("missing"), "");
}

TEST(RequestTest, HeaderLooksUpLowerCaseNames) {
  Request request;
  request.headers["content-type"] = "application/json";
  EXPECT_EQ(request.Header("content-type"), "application/json");
  EXPECT_EQ(request.Header("accept"), "");
}

TEST(ProblemResponseTest, HasRfc9457Shape) {
  Response response = ProblemResponse(409, "device-claimed", "Conflict", "claimed by another tenant");
  EXPECT_EQ(response.status, 409);
  EXPECT_EQ(response.content_type, "application/problem+json");
  EXPECT_EQ(nlohmann::json::parse(response.body), (nlohmann::json{{"type", "urn:citadel:problem:device-claimed"},
                                                                  {"title", "Conflict"},
                                                                  {"status", 409},
                                                                  {"detail", "claimed by another tenant"}}));
}

TEST(ParseBaseUrlTest, AcceptsHttpsHostAndPort) {
  auto endpoint = ParseBaseUrl("https://127.0.0.1:8443");
  ASSERT_TRUE(endpoint.has_value()) << endpoint.error().message();
  EXPECT_EQ(endpoint->host, "127.0.0.1");
  EXPECT_EQ(endpoint->port, 8443);

  endpoint = ParseBaseUrl("HTTPS://citadel.example.com/");
  ASSERT_TRUE(endpoint.has_value()) << endpoint.error().message();
  EXPECT_EQ(endpoint->host, "citadel.example.com");
  EXPECT_EQ(endpoint->port, 443);

  endpoint = ParseBaseUrl("https://[::1]:9000");
  ASSERT_TRUE(endpoint.has_value()) << endpoint.error().message();
  EXPECT_EQ(endpoint->host, "::1");
  EXPECT_EQ(endpoint->port, 9000);
}

TEST(ParseBaseUrlTest, RefusesEverythingElse) {
  for (const char* url :
       {"http://127.0.0.1:80", "ftp://x", "127.0.0.1:8443", "https://", "https://:443", "https://x:0",
        "https://x:65536", "https://x:", "https://x:12a", "https://x/path", "https://x?q=1", "https://user@x",
        "https://::1:80", "https://[::1", "https://[zz]:1", "https://[::1]x", "https://ho st"}) {
    auto endpoint = ParseBaseUrl(url);
    EXPECT_FALSE(endpoint.has_value()) << url;
    if (!endpoint) {
      EXPECT_EQ(endpoint.error().code(), ErrorCode::kInvalidArgument) << url;
    }
  }
}

}  // namespace
}  // namespace citadel::http
