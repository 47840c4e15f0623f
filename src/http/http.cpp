// The parts of the HTTP component that need no Boost: request accessors,
// routing, problem responses and base-URL parsing.
#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "http/http.hpp"

#include "common/encoding.hpp"

namespace citadel::http {
namespace {

// Percent-decoding (RFC 3986 section 2.1); with plus_as_space, '+' is a space
// as in application/x-www-form-urlencoded query strings. nullopt when a '%'
// is not followed by two hex digits.
std::optional<std::string> PercentDecode(std::string_view text, bool plus_as_space) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      int high = HexDigitValue(text[i + 1]);
      int low = HexDigitValue(text[i + 2]);
      if (high < 0 || low < 0) return std::nullopt;
      out.push_back(static_cast<char>(high * 16 + low));
      i += 2;
    } else if (c == '+' && plus_as_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// "/a/b/c" -> {"a", "b", "c"}; "/" -> {}; "/a/" -> {"a", ""}. Empty segments
// are kept so "/a//b" and "/a/b" do not route alike.
std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> segments;
  if (path.empty() || path == "/") return segments;
  if (path.front() == '/') path.remove_prefix(1);
  std::size_t start = 0;
  while (true) {
    std::size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) {
      segments.emplace_back(path.substr(start));
      break;
    }
    segments.emplace_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return segments;
}

bool IsParameter(std::string_view segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

// Matches path segments against a pattern; fills params (percent-decoded)
// on success. A parameter never matches an empty segment.
bool MatchSegments(const std::vector<std::string>& pattern, const std::vector<std::string>& path, PathParams& params) {
  if (pattern.size() != path.size()) return false;
  PathParams found;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (IsParameter(pattern[i])) {
      if (path[i].empty()) return false;
      auto decoded = PercentDecode(path[i], /*plus_as_space=*/false);
      if (!decoded) return false;
      found[pattern[i].substr(1, pattern[i].size() - 2)] = std::move(*decoded);
    } else if (pattern[i] != path[i]) {
      return false;
    }
  }
  params = std::move(found);
  return true;
}

// True when a is more specific than b: at the first position where one has
// a literal and the other a parameter, the literal wins ("/devices/self"
// before "/devices/{id}").
bool MoreSpecific(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    bool a_literal = !IsParameter(a[i]);
    bool b_literal = !IsParameter(b[i]);
    if (a_literal != b_literal) return a_literal;
  }
  return false;
}

bool IsHostNameCharacter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

}  // namespace

std::string Request::Header(std::string_view lower_name) const {
  auto it = headers.find(std::string(lower_name));
  return it == headers.end() ? std::string() : it->second;
}

std::string Request::QueryParameter(std::string_view name) const {
  std::string_view rest = query;
  while (!rest.empty()) {
    std::size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    if (pair.empty()) continue;
    std::size_t eq = pair.find('=');
    auto key = PercentDecode(pair.substr(0, eq), /*plus_as_space=*/true);
    if (!key || *key != name) continue;
    if (eq == std::string_view::npos) return "";
    auto value = PercentDecode(pair.substr(eq + 1), /*plus_as_space=*/true);
    // A malformed escape reads as absent rather than as a half-decoded value.
    return value ? *value : std::string();
  }
  return "";
}

Response ProblemResponse(int status, std::string_view name, std::string_view title, std::string_view detail) {
  nlohmann::json problem = {
      {"type", "urn:citadel:problem:" + std::string(name)},
      {"title", std::string(title)},
      {"status", status},
      {"detail", std::string(detail)},
  };
  Response response;
  response.status = status;
  response.content_type = "application/problem+json";
  // Replace invalid UTF-8 (e.g. from a request path) instead of throwing.
  response.body = problem.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

void Router::Add(std::string method, std::string_view pattern, RouteHandler handler) {
  routes_.push_back(Route{std::move(method), std::string(pattern), SplitPath(pattern), std::move(handler)});
}

Response Router::Dispatch(const Request& request, std::string* matched) const {
  std::vector<std::string> path = SplitPath(request.path);
  const Route* best = nullptr;
  PathParams best_params;
  std::set<std::string> allowed;
  for (const Route& route : routes_) {
    PathParams params;
    if (!MatchSegments(route.segments, path, params)) continue;
    if (route.method != request.method) {
      allowed.insert(route.method);
      continue;
    }
    if (best == nullptr || MoreSpecific(route.segments, best->segments)) {
      best = &route;
      best_params = std::move(params);
    }
  }
  if (matched != nullptr) *matched = best != nullptr ? best->pattern : std::string();
  if (best != nullptr) return best->handler(request, best_params);
  if (allowed.empty()) {
    return ProblemResponse(404, "not-found", "Not Found", "no resource at " + request.path);
  }
  std::string allow;
  for (const std::string& method : allowed) {
    if (!allow.empty()) allow += ", ";
    allow += method;
  }
  Response response = ProblemResponse(405, "method-not-allowed", "Method Not Allowed",
                                      request.method + " is not allowed on " + request.path + "; allowed: " + allow);
  response.headers.emplace_back("Allow", allow);
  return response;
}

Expected<Endpoint> ParseBaseUrl(std::string_view url) {
  constexpr std::string_view kScheme = "https://";
  auto invalid = [url](std::string_view why) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "base URL \"" + std::string(url) + "\": " + std::string(why) + " (expected https://host[:port])");
  };
  if (url.size() < kScheme.size() || !EqualsIgnoreCase(url.substr(0, kScheme.size()), kScheme)) {
    return invalid("only https is supported");
  }
  std::string_view rest = url.substr(kScheme.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find_first_of("/?#@") != std::string_view::npos) {
    return invalid("a path, query, fragment or user name is not allowed");
  }

  Endpoint endpoint;
  std::string_view port_text;
  bool has_port = false;
  if (!rest.empty() && rest.front() == '[') {
    std::size_t close = rest.find(']');
    if (close == std::string_view::npos) return invalid("unterminated IPv6 address");
    endpoint.host = std::string(rest.substr(1, close - 1));
    in6_addr address{};
    if (inet_pton(AF_INET6, endpoint.host.c_str(), &address) != 1) {
      return invalid("not an IPv6 address inside []");
    }
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return invalid("unexpected text after ]");
      port_text = after.substr(1);
      has_port = true;
    }
  } else {
    std::size_t colon = rest.find(':');
    if (colon != std::string_view::npos) {
      if (rest.find(':', colon + 1) != std::string_view::npos) {
        return invalid("an IPv6 address must be written in []");
      }
      port_text = rest.substr(colon + 1);
      has_port = true;
    }
    endpoint.host = std::string(rest.substr(0, colon));
    if (!std::all_of(endpoint.host.begin(), endpoint.host.end(), IsHostNameCharacter)) {
      return invalid("the host name has invalid characters");
    }
  }
  if (endpoint.host.empty()) return invalid("the host is empty");
  if (has_port) {
    unsigned port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
        port > 65535) {
      return invalid("the port must be a number from 1 to 65535");
    }
    endpoint.port = static_cast<std::uint16_t>(port);
  }
  return endpoint;
}

std::optional<std::chrono::seconds> ParseRetryAfter(std::string_view value) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  if (value.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
  // Any run of digits is a valid delay; a long one is just the cap.
  if (value.size() > 10) return kMaxRetryAfter;
  std::int64_t seconds = 0;
  std::from_chars(value.data(), value.data() + value.size(), seconds);
  return std::min(std::chrono::seconds(seconds), kMaxRetryAfter);
}

std::chrono::milliseconds RetryAfterWait(std::chrono::seconds retry_after, double uniform) {
  const auto base = std::chrono::duration_cast<std::chrono::milliseconds>(retry_after).count();
  const double u = std::clamp(uniform, 0.0, 1.0);
  return std::chrono::milliseconds(base + static_cast<std::int64_t>(static_cast<double>(base) * 0.5 * u));
}

}  // namespace citadel::http
