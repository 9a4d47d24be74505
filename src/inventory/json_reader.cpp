// The JSON manifest pipeline: one splitter, N verification threads, results handed to the caller in
// file order. At most `window` entries are in flight, so memory is bounded whatever the file size.
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "json_stream.hpp"
#include "readers.hpp"
#include "sha256_stream.hpp"

namespace hallmark::inventory::detail {

namespace {

class OrderedPipeline {
 public:
  OrderedPipeline(JsonArraySplitter& splitter, const ManifestTrust& trust, ManifestFormat expected,
                  std::size_t window)
      : splitter_(splitter), trust_(trust), expected_(expected), ring_(std::max<std::size_t>(window, 1)) {}

  // Runs the workers and feeds the callback from this thread. Returns the first error: the
  // callback's, or the splitter's (after every entry before it was handed over).
  Status run(unsigned threads, const std::function<Status(ManifestEntry&&)>& sink) {
    std::vector<std::jthread> workers;
    workers.reserve(threads);
    for (unsigned i = 0; i < threads; ++i) workers.emplace_back([this] { work(); });
    Status result;
    for (;;) {
      std::optional<ManifestEntry> entry;
      {
        std::unique_lock lock(mutex_);
        done_.wait(lock,
                   [this] { return ring_[emit_ % ring_.size()].has_value() || (eof_ && emit_ == pulled_); });
        auto& slot = ring_[emit_ % ring_.size()];
        if (!slot) break;
        entry = std::move(slot);
        slot.reset();
        ++emit_;
      }
      room_.notify_all();
      if (auto ok = sink(std::move(*entry)); !ok) {
        result = ok;
        break;
      }
    }
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
      if (result && read_error_) result = std::unexpected(*read_error_);
    }
    room_.notify_all();
    workers.clear();  // joins
    return result;
  }

 private:
  void work() {
    for (;;) {
      JsonElement element;
      std::size_t index = 0;
      {
        std::unique_lock lock(mutex_);
        room_.wait(lock, [this] { return stop_ || eof_ || pulled_ < emit_ + ring_.size(); });
        if (stop_ || eof_) return;
        auto next = splitter_.next();
        if (!next || !*next) {
          if (!next) read_error_ = next.error();
          eof_ = true;
          lock.unlock();
          done_.notify_all();
          room_.notify_all();
          return;
        }
        element = std::move(**next);
        index = pulled_++;
      }
      ManifestEntry entry = verify_jws_entry(element.text, index, trust_, expected_);
      {
        std::lock_guard lock(mutex_);
        ring_[index % ring_.size()] = std::move(entry);
      }
      done_.notify_all();
    }
  }

  JsonArraySplitter& splitter_;
  const ManifestTrust& trust_;
  ManifestFormat expected_;
  std::vector<std::optional<ManifestEntry>> ring_;
  std::mutex mutex_;
  std::condition_variable room_;  // workers: a slot is free, or stop
  std::condition_variable done_;  // consumer: the next entry is ready, or end
  std::size_t pulled_ = 0;
  std::size_t emit_ = 0;
  bool eof_ = false;
  bool stop_ = false;
  std::optional<Error> read_error_;
};

}  // namespace

Result<ManifestSummary> read_json_manifest(const std::string& path, const ManifestTrust& trust,
                                           const ReadOptions& options, const EntryCallback& on_entry) {
  Sha256Stream hasher;
  JsonArraySplitter splitter = HM_TRY(JsonArraySplitter::open(path, &hasher));
  ManifestSummary summary;
  summary.format = options.format;
  std::set<std::string> signers;
  std::set<std::string> reels;

  unsigned threads = options.threads;
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  OrderedPipeline pipeline(splitter, trust, options.format, options.window);
  const Status status = pipeline.run(threads, [&](ManifestEntry&& entry) -> Status {
    ++summary.entries;
    if (entry.accepted()) {
      // One file, one kind: the first verified entry decides when the format was not given.
      if (summary.format == ManifestFormat::automatic) summary.format = entry.format;
      if (entry.format != summary.format) {
        entry.rejected = entry.format == ManifestFormat::hallmark
                             ? "hallmark reel entry in a microchip manifest"
                             : "microchip entry in a hallmark reel";
      } else {
        if (signers.size() < 16) signers.insert(entry.signer);
        if (!entry.reel.empty() && reels.size() < 16) reels.insert(entry.reel);
      }
    }
    return on_entry(std::move(entry));
  });
  if (!status) return std::unexpected(status.error());
  splitter.drain();
  summary.sha256 = hasher.finish_hex();
  if (summary.format == ManifestFormat::automatic) summary.format = ManifestFormat::microchip;
  for (const auto& s : signers) summary.signer += (summary.signer.empty() ? "" : "; ") + s;
  for (const auto& r : reels) summary.reel += (summary.reel.empty() ? "" : ",") + r;
  return summary;
}

}  // namespace hallmark::inventory::detail
