#pragma once
// {variable} templates of profiles: "{serial}", "sn{hw_serial}", "{org} Root CA". Shared by the
// profile parser (syntax check) and the issuer (expansion on the hot path: no allocation beyond the
// result string).
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace hallmark::ca::detail {

using Variables = std::map<std::string, std::string>;

[[nodiscard]] inline bool is_variable_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

// nullopt when `text` is a well-formed template; otherwise why not.
[[nodiscard]] inline std::optional<std::string> template_error(std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '}') return "'}' without '{'";
    if (text[i] != '{') continue;
    std::size_t end = text.find('}', i + 1);
    if (end == std::string_view::npos) return "unclosed '{'";
    if (end == i + 1) return "empty '{}'";
    for (std::size_t j = i + 1; j < end; ++j) {
      if (!is_variable_char(text[j])) {
        return "variable names are lowercase letters, digits and '_'";
      }
    }
    i = end;
  }
  return std::nullopt;
}

// The value of `name` from the request, else from the profile's defaults; an empty value counts as
// missing.
[[nodiscard]] inline const std::string* find_variable(std::string_view name, const Variables& request,
                                                      const Variables& defaults) {
  // std::map<std::string, ...> has no heterogeneous find; variable names fit the small-string buffer.
  std::string key(name);
  if (auto it = request.find(key); it != request.end() && !it->second.empty()) return &it->second;
  if (auto it = defaults.find(key); it != defaults.end() && !it->second.empty()) return &it->second;
  return nullptr;
}

// Expands a well-formed template into `out`. Returns false and sets `missing` to the first variable
// without a value.
[[nodiscard]] inline bool expand_template(std::string_view text, const Variables& request,
                                          const Variables& defaults, std::string& out,
                                          std::string_view& missing) {
  out.clear();
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t open = text.find('{', i);
    if (open == std::string_view::npos) {
      out.append(text.substr(i));
      break;
    }
    out.append(text.substr(i, open - i));
    std::size_t close = text.find('}', open + 1);
    if (close == std::string_view::npos) close = text.size();  // not reached for parsed profiles
    std::string_view name = text.substr(open + 1, close - open - 1);
    const std::string* value = find_variable(name, request, defaults);
    if (value == nullptr) {
      missing = name;
      return false;
    }
    out.append(*value);
    i = close + 1;
  }
  return true;
}

}  // namespace hallmark::ca::detail
