#pragma once
// Method + path to handler. Patterns are '/'-separated segments: a literal, "{name}" (exactly one
// non-empty segment, kept raw: percent-escapes are not decoded, so "%2F" cannot smuggle a '/'), or a
// final "*" (the rest of the path, possibly empty, under the name "*"). Literal routes win over
// patterns; patterns are tried in the order they were added. Unknown path: 404; known path with
// another method: 405 with Allow; both as application/problem+json.
#include <concepts>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "hallmark/http/message.hpp"

namespace hallmark::http {

class PathParams {
 public:
  [[nodiscard]] std::string_view get(std::string_view name) const noexcept;  // empty when absent
  [[nodiscard]] bool has(std::string_view name) const noexcept;
  void add(std::string_view name, std::string_view value) { params_.emplace_back(name, value); }

 private:
  std::vector<std::pair<std::string_view, std::string_view>> params_;  // views into route and request
};

using RouteHandler = std::function<Response(const Request&, const PathParams&)>;

class Router final {
 public:
  // `handler` takes (const Request&) or (const Request&, const PathParams&).
  template <class F>
  void add(std::string_view method, std::string_view pattern, F&& handler) {
    if constexpr (std::invocable<F&, const Request&, const PathParams&>) {
      add_route(method, pattern, RouteHandler(std::forward<F>(handler)));
    } else {
      static_assert(std::invocable<F&, const Request&>,
                    "handler must take (const Request&[, const PathParams&])");
      add_route(method, pattern,
                RouteHandler([h = Handler(std::forward<F>(handler))](const Request& r, const PathParams&) {
                  return h(r);
                }));
    }
  }

  [[nodiscard]] Response operator()(const Request& request) const;
  // A Handler that dispatches through this router (which must outlive it).
  [[nodiscard]] Handler handler() const {
    return [this](const Request& r) { return (*this)(r); };
  }

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;  // empty for literal routes
    RouteHandler handler;
  };
  void add_route(std::string_view method, std::string_view pattern, RouteHandler handler);
  [[nodiscard]] static bool match(const Route& route, std::string_view path, PathParams& params);

  std::unordered_map<std::string, std::vector<Route>> literal_;  // path -> routes (one per method)
  std::vector<Route> patterns_;
};

}  // namespace hallmark::http
