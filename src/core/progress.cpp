#include "hallmark/core/progress.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace hallmark {

ProgressBar::ProgressBar(std::string label, std::uint64_t total, Mode mode)
    : label_(std::move(label)),
      total_(total),
      enabled_(mode == Mode::always || (mode == Mode::automatic && ::isatty(STDERR_FILENO) == 1)),
      start_(std::chrono::steady_clock::now()) {}

ProgressBar::~ProgressBar() {
  finish();
}

double ProgressBar::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string ProgressBar::render(std::uint64_t done, std::uint64_t total, double elapsed, std::size_t width) {
  const double fraction =
      total == 0 ? 1.0 : std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
  const auto filled = static_cast<std::size_t>(fraction * static_cast<double>(width));
  const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
  std::string eta = "-";
  if (rate > 0 && done < total) eta = fmt::format("{:.0f}s", static_cast<double>(total - done) / rate);
  if (done >= total) eta = fmt::format("{:.1f}s", elapsed);
  return fmt::format("[{}{}] {:3.0f}%  {}/{}  {:.0f}/s  {} {}", std::string(filled, '#'),
                     std::string(width - filled, '-'), fraction * 100.0, done, total, rate,
                     done >= total ? "in" : "ETA", eta);
}

void ProgressBar::add(std::uint64_t n) {
  done_.fetch_add(n, std::memory_order_relaxed);
  if (!enabled_) return;
  const auto now =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start_).count();
  auto last = last_draw_ns_.load(std::memory_order_relaxed);
  if (now - last < 100'000'000) return;
  if (!last_draw_ns_.compare_exchange_strong(last, now)) return;
  draw(false);
}

void ProgressBar::draw(bool final) {
  std::lock_guard lock(draw_mutex_);
  if (finished_) return;
  fmt::print(stderr, "\r{} {}{}", label_, render(done(), total_, elapsed_seconds()), final ? "\n" : "");
  std::fflush(stderr);
  if (final) finished_ = true;
}

void ProgressBar::finish() {
  if (enabled_) draw(true);
}

}  // namespace hallmark
