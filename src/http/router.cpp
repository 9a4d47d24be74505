#include "hallmark/http/router.hpp"

#include <algorithm>
#include <cstdlib>

namespace hallmark::http {
namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  if (path.starts_with('/')) path.remove_prefix(1);
  for (;;) {
    const auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

bool is_param(std::string_view s) {
  return s.size() > 2 && s.front() == '{' && s.back() == '}';
}

}  // namespace

std::string_view PathParams::get(std::string_view name) const noexcept {
  for (const auto& [n, v] : params_) {
    if (n == name) return v;
  }
  return {};
}

bool PathParams::has(std::string_view name) const noexcept {
  return std::ranges::any_of(params_, [&](const auto& p) { return p.first == name; });
}

void Router::add_route(std::string_view method, std::string_view pattern, RouteHandler handler) {
  if (!pattern.starts_with('/') || !handler) std::abort();  // a programming error, found at start-up
  Route route{std::string(method), std::string(pattern), {}, std::move(handler)};
  const bool literal = pattern.find('{') == std::string_view::npos && !pattern.ends_with("/*");
  if (literal) {
    literal_[route.pattern].push_back(std::move(route));
    return;
  }
  for (auto s : split_path(pattern)) route.segments.emplace_back(s);
  patterns_.push_back(std::move(route));
}

bool Router::match(const Route& route, std::string_view path, PathParams& params) {
  const auto parts = split_path(path);
  const auto& segs = route.segments;
  const bool rest = !segs.empty() && segs.back() == "*";
  const std::size_t fixed = rest ? segs.size() - 1 : segs.size();
  if (rest ? parts.size() < fixed : parts.size() != fixed) return false;
  for (std::size_t i = 0; i < fixed; ++i) {
    if (is_param(segs[i])) {
      if (parts[i].empty()) return false;
      params.add(std::string_view(segs[i]).substr(1, segs[i].size() - 2), parts[i]);
    } else if (segs[i] != parts[i]) {
      return false;
    }
  }
  if (rest) {
    // Everything after the fixed segments, without its leading '/'.
    std::size_t offset = path.starts_with('/') ? 1 : 0;
    for (std::size_t i = 0; i < fixed; ++i) offset += parts[i].size() + 1;
    params.add("*", offset <= path.size() ? path.substr(offset) : std::string_view{});
  }
  return true;
}

Response Router::operator()(const Request& request) const {
  const auto path = request.path();
  std::string allow;
  auto note_method = [&](const std::string& m) {
    if (allow.find(m) != std::string::npos) return;
    if (!allow.empty()) allow += ", ";
    allow += m;
  };
  if (auto it = literal_.find(std::string(path)); it != literal_.end()) {
    for (const auto& route : it->second) {
      if (route.method == request.method) return route.handler(request, PathParams{});
      note_method(route.method);
    }
  }
  for (const auto& route : patterns_) {
    PathParams params;
    if (!match(route, path, params)) continue;
    if (route.method == request.method) return route.handler(request, params);
    note_method(route.method);
  }
  if (allow.empty()) return problem(404, "not_found", "no resource at " + std::string(path));
  auto r = problem(405, "method_not_allowed", request.method + " is not allowed on " + std::string(path));
  r.headers.add("Allow", std::move(allow));
  return r;
}

}  // namespace hallmark::http
