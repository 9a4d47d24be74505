#pragma once
// One line per event, key=value, with a request id where there is one. Never a key, PIN or secret.
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace hallmark::log {

enum class Level { debug, info, warn, error };

using Field = std::pair<std::string_view, std::string>;

void set_level(Level level);
[[nodiscard]] Level level();
// Writes "event k=v k2=v2" (values quoted when they contain spaces) to stderr.
void event(Level level, std::string_view name, std::initializer_list<Field> fields = {});

inline void debug(std::string_view n, std::initializer_list<Field> f = {}) {
  event(Level::debug, n, f);
}
inline void info(std::string_view n, std::initializer_list<Field> f = {}) {
  event(Level::info, n, f);
}
inline void warn(std::string_view n, std::initializer_list<Field> f = {}) {
  event(Level::warn, n, f);
}
inline void error(std::string_view n, std::initializer_list<Field> f = {}) {
  event(Level::error, n, f);
}

}  // namespace hallmark::log
