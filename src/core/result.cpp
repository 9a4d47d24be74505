#include "hallmark/core/result.hpp"

namespace hallmark {

std::string_view to_string(Errc code) noexcept {
  switch (code) {
    case Errc::invalid_input: return "invalid_input";
    case Errc::unauthenticated: return "unauthenticated";
    case Errc::forbidden: return "forbidden";
    case Errc::not_found: return "not_found";
    case Errc::conflict: return "conflict";
    case Errc::unavailable: return "unavailable";
    case Errc::crypto: return "crypto";
    case Errc::internal: return "internal";
  }
  return "internal";
}

}  // namespace hallmark
