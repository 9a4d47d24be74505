#pragma once
// Secrets (passphrases, PINs, UKID secrets) live in a type that wipes its memory and never prints.
#include <string>
#include <string_view>

#include "hallmark/core/result.hpp"

namespace hallmark {

class Secret final {
 public:
  Secret() = default;
  explicit Secret(std::string value) : value_(std::move(value)) {}
  Secret(const Secret& other) : value_(other.value_) {}
  Secret(Secret&& other) noexcept : value_(std::move(other.value_)) { other.wipe(); }
  Secret& operator=(const Secret& other) {
    if (this != &other) {
      wipe();
      value_ = other.value_;
    }
    return *this;
  }
  Secret& operator=(Secret&& other) noexcept {
    if (this != &other) {
      wipe();
      value_ = std::move(other.value_);
      other.wipe();
    }
    return *this;
  }
  ~Secret() { wipe(); }

  [[nodiscard]] std::string_view reveal() const noexcept { return value_; }
  [[nodiscard]] bool empty() const noexcept { return value_.empty(); }
  [[nodiscard]] std::size_t size() const noexcept { return value_.size(); }

  // Constant-time comparison.
  [[nodiscard]] bool equals(std::string_view other) const noexcept;

 private:
  void wipe() noexcept;
  std::string value_;
};

// Where a secret comes from: never the command line.
//   "file:PATH"  the first line of PATH (trailing CR/LF stripped)
//   "env:NAME"   the environment variable NAME
[[nodiscard]] Result<Secret> read_secret(std::string_view source);

}  // namespace hallmark
