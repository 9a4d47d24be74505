#pragma once
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hallmark/core/result.hpp"

namespace hallmark {

using Bytes = std::vector<std::byte>;
using ByteView = std::span<const std::byte>;

[[nodiscard]] inline ByteView as_bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
[[nodiscard]] inline Bytes to_bytes(std::string_view s) {
  auto v = as_bytes(s);
  return {v.begin(), v.end()};
}
[[nodiscard]] inline std::string_view as_chars(ByteView b) noexcept {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}
[[nodiscard]] inline std::string to_string(ByteView b) {
  return std::string(as_chars(b));
}

// Lowercase hex, no separators.
[[nodiscard]] std::string to_hex(ByteView b);
// Accepts upper or lower case, optional ':' separators; anything else is invalid_input.
[[nodiscard]] Result<Bytes> parse_hex(std::string_view hex);

// Reads and writes whole files. write_file_atomic writes a temporary file, fsyncs and renames it,
// so readers see the old or the new content, never a torn one.
[[nodiscard]] Result<Bytes> read_file(const std::string& path);
[[nodiscard]] Result<std::string> read_text_file(const std::string& path);
[[nodiscard]] Status write_file_atomic(const std::string& path, ByteView content, unsigned mode = 0644);

}  // namespace hallmark
