#pragma once
// Expected failures are values: one small error enum for the whole project.
#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace hallmark {

enum class Errc {
  invalid_input,    // malformed or unacceptable input (400)
  unauthenticated,  // missing or invalid authentication (401)
  forbidden,        // refused by policy (403)
  not_found,        // no such object (404)
  conflict,         // clashes with existing state (409)
  unavailable,      // a dependency is down; retry later (503)
  crypto,           // a cryptographic operation failed
  internal,         // a bug or an unexpected environment failure
};

[[nodiscard]] std::string_view to_string(Errc code) noexcept;

struct Error {
  Errc code;
  std::string detail;

  // "detail" prefixed with context, for errors passed up through layers.
  [[nodiscard]] Error with_context(std::string_view context) const {
    return Error{code, std::string(context) + ": " + detail};
  }
};

template <class T>
using Result = std::expected<T, Error>;

using Status = Result<void>;

[[nodiscard]] inline std::unexpected<Error> fail(Errc code, std::string detail) {
  return std::unexpected(Error{code, std::move(detail)});
}

}  // namespace hallmark

// Propagates an error from a Result-returning expression; yields its value otherwise.
#define HM_TRY(expr)                                                     \
  __extension__({                                                        \
    auto&& hm_try_result_ = (expr);                                      \
    if (!hm_try_result_) return std::unexpected(hm_try_result_.error()); \
    std::move(*hm_try_result_);                                          \
  })

#define HM_TRY_VOID(expr)                                                \
  do {                                                                   \
    auto&& hm_try_result_ = (expr);                                      \
    if (!hm_try_result_) return std::unexpected(hm_try_result_.error()); \
  } while (false)
