// The JSON manifest pipeline: one splitter, N verification threads, results handed to the caller in
// file order. At most `window` entries are in flight, so memory is bounded whatever the file size.
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "hallmark/crypto/digest.hpp"
#include "json_stream.hpp"
#include "readers.hpp"

namespace hallmark::inventory::detail {

namespace {

class OrderedPipeline {
 public:
  OrderedPipeline(JsonArraySplitter& splitter, const ManifestTrust& trust, ManifestFormat expected,
                  std::size_t window)
      : splitter_(splitter),
        trust_(trust),
        expected_(expected),
        ring_(std::max<std::size_t>(window, 2 * kChunk)) {}

  // Runs the workers and feeds the callback from this thread. Returns the first error: the
  // callback's, or the splitter's (after every entry before it was handed over).
  Status run(unsigned threads, const std::function<Status(ManifestEntry&&)>& sink) {
    std::vector<std::jthread> workers;
    workers.reserve(threads);
    for (unsigned i = 0; i < threads; ++i) workers.emplace_back([this] { work(); });
    Status result;
    std::vector<ManifestEntry> ready;
    ready.reserve(ring_.size());
    for (bool more = true; more && result;) {
      {
        std::unique_lock lock(mutex_);
        ++consumer_waiting_;
        done_.wait(lock,
                   [this] { return ring_[emit_ % ring_.size()].has_value() || (eof_ && emit_ == pulled_); });
        --consumer_waiting_;
        // Everything ready in file order, taken in one go.
        for (auto* slot = &ring_[emit_ % ring_.size()]; slot->has_value();
             slot = &ring_[emit_ % ring_.size()]) {
          ready.push_back(std::move(**slot));
          slot->reset();
          ++emit_;
        }
        more = !(eof_ && emit_ == pulled_);
        if (workers_waiting_ > 0) room_.notify_all();
      }
      for (auto& entry : ready) {
        if (auto ok = sink(std::move(entry)); !ok) {
          result = ok;
          break;
        }
      }
      ready.clear();
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
  // Entries a worker takes from the splitter at once: one lock and one wake-up per chunk, not per
  // entry (a wake-up costs more than parsing an entry's JSON).
  static constexpr std::size_t kChunk = 16;

  void work() {
    std::vector<JsonElement> elements;
    std::vector<ManifestEntry> entries;
    x509::PathCache paths(trust_.vendor_roots());
    for (;;) {
      std::size_t first = 0;
      elements.clear();
      {
        std::unique_lock lock(mutex_);
        ++workers_waiting_;
        room_.wait(lock, [this] { return stop_ || eof_ || pulled_ + kChunk <= emit_ + ring_.size(); });
        --workers_waiting_;
        if (stop_ || eof_) return;
        first = pulled_;
        while (elements.size() < kChunk) {
          auto next = splitter_.next();
          if (!next || !*next) {
            if (!next) read_error_ = next.error();
            eof_ = true;
            break;
          }
          elements.push_back(std::move(**next));
        }
        pulled_ += elements.size();
        if (eof_) room_.notify_all();  // idle workers leave
        if (eof_ && elements.empty()) {
          if (consumer_waiting_ > 0) done_.notify_all();
          return;
        }
      }
      entries.clear();
      for (std::size_t i = 0; i < elements.size(); ++i) {
        entries.push_back(verify_jws_entry(elements[i].text, first + i, trust_, expected_, &paths));
      }
      {
        std::lock_guard lock(mutex_);
        for (std::size_t i = 0; i < entries.size(); ++i)
          ring_[(first + i) % ring_.size()] = std::move(entries[i]);
        if (consumer_waiting_ > 0 && first <= emit_) done_.notify_all();
      }
    }
  }

  JsonArraySplitter& splitter_;
  const ManifestTrust& trust_;
  ManifestFormat expected_;
  std::vector<std::optional<ManifestEntry>> ring_;
  std::mutex mutex_;
  std::condition_variable room_;  // workers: room for a chunk, or stop
  std::condition_variable done_;  // consumer: the next entry is ready, or end
  std::size_t pulled_ = 0;
  std::size_t emit_ = 0;
  int consumer_waiting_ = 0;
  int workers_waiting_ = 0;
  bool eof_ = false;
  bool stop_ = false;
  std::optional<Error> read_error_;
};

}  // namespace

Result<ManifestSummary> read_json_manifest(const std::string& path, const ManifestTrust& trust,
                                           const ReadOptions& options, const EntryCallback& on_entry) {
  crypto::Sha256 hasher;
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
  summary.sha256 = to_hex(hasher.finish());
  if (summary.format == ManifestFormat::automatic) summary.format = ManifestFormat::microchip;
  for (const auto& s : signers) summary.signer += (summary.signer.empty() ? "" : "; ") + s;
  for (const auto& r : reels) summary.reel += (summary.reel.empty() ? "" : ",") + r;
  return summary;
}

}  // namespace hallmark::inventory::detail
