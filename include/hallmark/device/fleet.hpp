#pragma once
// The fleet simulator: plays many devices from a reel's chip images against an EST server, each with
// its own TCP + TLS connection and the whole flow a real device runs (BC handshake, csrattrs, CSR,
// simpleenroll, checks on the answer; optionally simplereenroll with the new IDC), all on one or two
// threads of asynchronous I/O. The load generator of `hallmark-device fleet`, bench/est and the demo.
#include <chrono>
#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "hallmark/core/progress.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/device/est_client.hpp"

namespace hallmark::device {

struct FleetOptions {
  std::string reel;  // a directory of chip images, or the output directory of `vendor provision` (chips/)
  ServerUrl server;
  std::vector<x509::Certificate> trust;
  std::string alias;         // alias for mode bc chips (Option 2); empty: the URL's
  std::string secret_alias;  // alias for mode bc-secret chips (Option 3); empty: `alias`
  std::size_t count = 0;     // devices to play; 0: every bc / bc-secret chip of the reel
  std::size_t concurrency = 32;
  double reenroll_fraction = 0;  // share of enrolled devices that then re-enroll with their IDC
  bool csrattrs = true;
  int threads = 1;  // I/O threads: 1 or 2
  std::chrono::milliseconds timeout{30000};
  int max_attempts = 3;  // per operation, for network failures and 503/202 (Retry-After honoured)
  ProgressBar::Mode progress = ProgressBar::Mode::automatic;
};

struct FleetModeReport {
  std::size_t devices = 0;
  std::size_t enrolled = 0;
  std::size_t reenrolled = 0;
  double seconds = 0;                 // from this mode's first device starting to its last finishing
  double enrollments_per_second = 0;  // this mode's successful enrollments and re-enrollments per second
  std::map<std::string, std::size_t> failures;  // by problem code (or local reason)
};

struct FleetReport {
  std::size_t devices = 0;
  std::size_t enrolled = 0;
  std::size_t reenrolled = 0;
  std::size_t failed = 0;  // devices with a failed enrollment or re-enrollment
  std::size_t retries = 0;
  double seconds = 0;
  double enrollments_per_second = 0;          // enrollments and re-enrollments that succeeded, per second
  double p50_ms = 0, p90_ms = 0, p99_ms = 0;  // one device's enrollment: connect to verified IDC
  double reenroll_p50_ms = 0, reenroll_p90_ms = 0, reenroll_p99_ms = 0;
  std::map<std::string, std::size_t> failures;     // by problem code (or local reason)
  std::map<std::string, FleetModeReport> by_mode;  // "bc", "bc-secret"
  [[nodiscard]] std::string to_text() const;
};

// Chip images are loaded and device keys generated before the clock starts.
[[nodiscard]] Result<FleetReport> run_fleet(const FleetOptions& options);

}  // namespace hallmark::device
