#pragma once
// The process exit status both command-line programs (`hallmark`, `hallmark-device`) give an error,
// so scripts can tell a bad argument from a refusal or an unreachable server.
#include <fmt/format.h>

#include <cstdio>
#include <string_view>

#include "hallmark/core/result.hpp"

namespace hallmark {

// 1 internal or crypto, 2 invalid input, 3 not found, 4 conflict, 5 forbidden or unauthenticated,
// 6 unavailable.
[[nodiscard]] constexpr int exit_code(Errc code) noexcept {
  switch (code) {
    case Errc::invalid_input: return 2;
    case Errc::not_found: return 3;
    case Errc::conflict: return 4;
    case Errc::forbidden:
    case Errc::unauthenticated: return 5;
    case Errc::unavailable: return 6;
    case Errc::crypto:
    case Errc::internal: return 1;
  }
  return 1;
}

// Prints "<program>: error: <detail>" on stderr and returns the error's exit status.
inline int report_error(std::string_view program, const Error& error) {
  fmt::print(stderr, "{}: error: {}\n", program, error.detail);
  return exit_code(error.code);
}

}  // namespace hallmark
