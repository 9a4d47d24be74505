#pragma once
// A progress bar for long bulk work (reels, imports, fleets) on stderr. Thread-safe; redraws at most
// ten times a second; silent when stderr is not a terminal unless forced.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace hallmark {

class ProgressBar {
 public:
  enum class Mode { automatic, always, never };
  ProgressBar(std::string label, std::uint64_t total, Mode mode = Mode::automatic);
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  ~ProgressBar();

  void add(std::uint64_t n = 1);
  // Draws the final state and ends the line (idempotent).
  void finish();

  [[nodiscard]] std::uint64_t done() const noexcept { return done_.load(std::memory_order_relaxed); }
  [[nodiscard]] double elapsed_seconds() const;
  // "[#####-----]  45%  4500/10000  1234/s  ETA 4s"
  [[nodiscard]] static std::string render(std::uint64_t done, std::uint64_t total, double elapsed_seconds,
                                          std::size_t width = 30);

 private:
  void draw(bool final);

  std::string label_;
  std::uint64_t total_;
  bool enabled_;
  std::atomic<std::uint64_t> done_{0};
  std::chrono::steady_clock::time_point start_;
  std::atomic<std::int64_t> last_draw_ns_{0};
  std::mutex draw_mutex_;
  bool finished_ = false;
};

}  // namespace hallmark
