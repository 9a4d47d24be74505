#pragma once
// Time is injected so tests can pin it.
#include <chrono>
#include <string>

#include "hallmark/core/result.hpp"

namespace hallmark {

using Seconds = std::chrono::sys_seconds;

class Clock {
 public:
  virtual ~Clock() = default;
  [[nodiscard]] virtual Seconds now() const = 0;
};

class SystemClock final : public Clock {
 public:
  [[nodiscard]] Seconds now() const override {
    return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
  }
};

class FixedClock final : public Clock {
 public:
  explicit FixedClock(Seconds t) : t_(t) {}
  [[nodiscard]] Seconds now() const override { return t_; }
  void set(Seconds t) { t_ = t; }

 private:
  Seconds t_;
};

// 2026-11-28T12:00:00Z
[[nodiscard]] std::string to_iso8601(Seconds t);
// Accepts "YYYY-MM-DDTHH:MM:SS[.fff]Z" and "+HH:MM" offsets.
[[nodiscard]] Result<Seconds> parse_iso8601(std::string_view text);

// The 802.1AR "no well-defined expiration" instant, 9999-12-31T23:59:59Z.
inline constexpr Seconds kNoExpiry{std::chrono::seconds{253402300799}};

}  // namespace hallmark
