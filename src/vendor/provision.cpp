// hallmark vendor provision: a reel of chips, their certificates and the signed manifest.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_set>

#include "hallmark/ca/issuer.hpp"
#include "hallmark/ca/profile.hpp"
#include "hallmark/core/progress.hpp"
#include "hallmark/crypto/digest.hpp"
#include "hallmark/vendor/vendor.hpp"
#include "home.hpp"
#include "manifest.hpp"

namespace hallmark::vendor {
namespace fs = std::filesystem;

namespace {

constexpr std::size_t kUniqueIdBytes = 9;
constexpr std::size_t kUkidSecretBytes = 16;  // 128 bits (DESIGN.md §2)
constexpr std::uint64_t kBatch = 64;          // chips a producer hands over at once

Status check_reel_id(std::string_view reel) {
  const auto ok_char = [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  };
  const bool ok = !reel.empty() && reel.size() <= 64 && std::ranges::all_of(reel, ok_char) &&
                  reel[0] != '.' && reel[0] != '_' && reel[0] != '-';
  if (!ok) {
    return fail(
        Errc::invalid_input,
        fmt::format("invalid reel id '{}': use 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit",
                    reel));
  }
  return {};
}

std::string upper(std::string s) {
  std::ranges::transform(s, s.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return s;
}

// 9 bytes like an ATECC serial number: 0x01 then 8 random bytes, distinct within the reel. The
// database's unique constraint on vendor_unique_id keeps them distinct across reels.
std::vector<std::array<std::byte, kUniqueIdBytes>> make_unique_ids(std::uint64_t count) {
  std::vector<std::array<std::byte, kUniqueIdBytes>> ids(count);
  std::unordered_set<std::string> seen;
  seen.reserve(count);
  for (auto& id : ids) {
    for (;;) {
      const Bytes r = crypto::random_bytes(kUniqueIdBytes - 1);
      id[0] = std::byte{0x01};
      std::ranges::copy(r, id.begin() + 1);
      if (seen.emplace(reinterpret_cast<const char*>(id.data()), id.size()).second) break;
    }
  }
  return ids;
}

// SHA-256 over the DER SubjectPublicKeyInfo of a P-256 point: the Option 2 UKID.
std::string p256_ukid(const P256Point& point) {
  static constexpr unsigned char kPrefix[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
                                              0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
                                              0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04};
  Bytes spki(reinterpret_cast<const std::byte*>(kPrefix), reinterpret_cast<const std::byte*>(kPrefix) + 27);
  spki.insert(spki.end(), point.x.begin(), point.x.end());
  spki.insert(spki.end(), point.y.begin(), point.y.end());
  return crypto::sha256_hex(spki);
}

// A chip image holds a private key: created 0600, never replaced.
Status write_private_file(const fs::path& path, std::string_view text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return fail(Errc::internal, fmt::format("cannot create {}: {}", path.string(), std::strerror(errno)));
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      return fail(Errc::internal, fmt::format("cannot write {}: {}", path.string(), std::strerror(err)));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0)
    return fail(Errc::internal, fmt::format("cannot write {}: {}", path.string(), std::strerror(errno)));
  return {};
}

struct Batch {
  std::vector<std::string> entries;
  std::vector<store::DeviceRecord> devices;
};

// Producers hand finished batches to the one writer; bounded so memory does not grow with the reel.
class BatchQueue {
 public:
  explicit BatchQueue(std::size_t capacity) : capacity_(capacity) {}
  void push(Batch&& b) {
    std::unique_lock lock(mutex_);
    not_full_.wait(lock, [&] { return queue_.size() < capacity_ || stopped_; });
    if (stopped_) return;
    queue_.push_back(std::move(b));
    not_empty_.notify_one();
  }
  // nullopt once stopped or when every producer finished and the queue is empty.
  std::optional<Batch> pop() {
    std::unique_lock lock(mutex_);
    not_empty_.wait(lock, [&] { return !queue_.empty() || stopped_ || producers_ == 0; });
    if (stopped_ || queue_.empty()) return std::nullopt;
    Batch b = std::move(queue_.front());
    queue_.pop_front();
    not_full_.notify_one();
    return b;
  }
  void set_producers(unsigned n) {
    std::lock_guard lock(mutex_);
    producers_ = n;
  }
  void producer_done() {
    std::lock_guard lock(mutex_);
    --producers_;
    not_empty_.notify_all();
  }
  void stop(Error e) {
    std::lock_guard lock(mutex_);
    if (!error_) error_ = std::move(e);
    stopped_ = true;
    not_empty_.notify_all();
    not_full_.notify_all();
  }
  [[nodiscard]] bool stopped() {
    std::lock_guard lock(mutex_);
    return stopped_;
  }
  [[nodiscard]] std::optional<Error> error() {
    std::lock_guard lock(mutex_);
    return error_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable not_empty_, not_full_;
  std::deque<Batch> queue_;
  std::size_t capacity_;
  unsigned producers_ = 0;
  bool stopped_ = false;
  std::optional<Error> error_;
};

// Everything a producer thread needs, read-only and shared.
struct Job {
  Mode mode;
  const HeldCa* ca;
  const ca::Profile* profile;
  std::map<std::string, std::string> variables;  // org, product
  const EntryEncoder* encoder;
  const Clock* clock;
  const std::vector<std::array<std::byte, kUniqueIdBytes>>* ids;
  std::string image_chain_head;  // shared part of the image's chain, after the device certificate
  std::vector<std::string> ca_pems;
  fs::path chips_dir;  // empty: no images
  std::string part_number, model, reel;
  std::string issuer_subject;
};

Status produce_chip(const Job& job, const ca::Issuer& issuer, std::map<std::string, std::string>& variables,
                    std::uint64_t index, std::string& timestamp, Seconds& stamped, Batch& out) {
  const auto& id = (*job.ids)[index];
  const std::string unique_id = to_hex(ByteView(id.data(), id.size()));
  const std::string unique_upper = upper(unique_id);
  const auto key = HM_TRY(crypto::PrivateKey::generate(crypto::KeyType::ec_p256));
  variables["hw_serial"] = unique_upper;
  variables["serial"] = unique_upper;
  const auto cert = HM_TRY(
      issuer.issue(ca::IssueRequest{key.public_key(), variables, std::nullopt, std::nullopt}, *job.profile));
  std::string secret;
  std::string secret_digest;
  if (job.mode == Mode::bc_secret) {
    secret = to_hex(crypto::random_bytes(kUkidSecretBytes));
    secret_digest = crypto::sha256_hex(as_bytes(secret));
  }
  if (const Seconds now = job.clock->now(); now != stamped || timestamp.empty()) {
    stamped = now;
    timestamp = manifest_timestamp(now);
  }
  const Bytes& der = cert.to_der();
  out.entries.push_back(HM_TRY(job.encoder->encode(unique_id, timestamp, der, secret_digest)));

  store::DeviceRecord device;
  device.vendor_unique_id = unique_id;
  device.bc_sha256 = crypto::sha256_hex(der);
  device.bc_issuer = job.issuer_subject;
  device.part_number = job.part_number;
  if (job.mode == Mode::bc) device.ukid = p256_ukid(HM_TRY(p256_point_of(der)));
  if (job.mode == Mode::bc_secret) device.ukid_secret_digest = secret_digest;
  out.devices.push_back(std::move(device));

  if (!job.chips_dir.empty()) {
    const Secret key_pem = HM_TRY(key.to_pem());
    nlohmann::ordered_json image = {
        {"format", "hallmark-chip-image"},
        {"version", 1},
        {"uniqueId", unique_id},
        {"partNumber", job.part_number},
        {"model", job.model},
        {"mode", std::string(to_string(job.mode))},
        {"reel", job.reel},
        {"privateKey", std::string(key_pem.reveal())},
    };
    nlohmann::ordered_json chain = nlohmann::ordered_json::array();
    chain.push_back(cert.to_pem());
    for (const auto& pem : job.ca_pems) chain.push_back(pem);
    image["certificateChain"] = std::move(chain);
    if (job.mode == Mode::bc_secret) image["ukidSecret"] = secret;
    std::string text = image.dump(2) + "\n";
    const auto status = write_private_file(job.chips_dir / (unique_id + ".json"), text);
    std::fill(text.begin(), text.end(), '\0');  // the image text holds the key and the secret
    HM_TRY_VOID(status);
  }
  return {};
}

void producer(const Job& job, std::atomic<std::uint64_t>& next, std::uint64_t count, BatchQueue& queue) {
  const ca::Issuer issuer(job.ca->certificate(), job.ca->signer, *job.clock);
  auto variables = job.variables;
  std::string timestamp;
  Seconds stamped{};
  for (;;) {
    const std::uint64_t first = next.fetch_add(kBatch, std::memory_order_relaxed);
    if (first >= count || queue.stopped()) break;
    const std::uint64_t last = std::min(count, first + kBatch);
    Batch batch;
    batch.entries.reserve(last - first);
    batch.devices.reserve(last - first);
    for (std::uint64_t i = first; i < last; ++i) {
      if (auto ok = produce_chip(job, issuer, variables, i, timestamp, stamped, batch); !ok) {
        queue.stop(ok.error().with_context(fmt::format("chip {}", i)));
        queue.producer_done();
        return;
      }
    }
    queue.push(std::move(batch));
  }
  queue.producer_done();
}

}  // namespace

Result<Mode> parse_mode(std::string_view name) {
  if (name == "idc") return Mode::idc;
  if (name == "bc") return Mode::bc;
  if (name == "bc-secret") return Mode::bc_secret;
  return fail(Errc::invalid_input, fmt::format("unknown mode '{}' (modes: idc, bc, bc-secret)", name));
}

std::string_view to_string(Mode mode) noexcept {
  switch (mode) {
    case Mode::idc: return "idc";
    case Mode::bc: return "bc";
    case Mode::bc_secret: return "bc-secret";
  }
  return "?";
}

std::string describe(const ProvisionSummary& s) {
  return fmt::format("Provisioned {} chips (mode {}, reel {}) in {:.2f}s: {:.0f} chips/s; {} file{}: {}",
                     s.chips, to_string(s.mode), s.reel, s.elapsed_seconds, s.chips_per_second, s.files,
                     s.files == 1 ? "" : "s", s.manifest.string());
}

Result<ProvisionSummary> provision(const ProvisionOptions& o, const Clock& clock) {
  const auto started = std::chrono::steady_clock::now();
  if (o.count == 0) return fail(Errc::invalid_input, "count must be at least 1");
  HM_TRY_VOID(check_reel_id(o.reel));
  if (o.part_number.empty()) return fail(Errc::invalid_input, "part number is required");
  if (o.out_dir.empty()) return fail(Errc::invalid_input, "output directory is required");
  const auto home = HM_TRY(VendorHome::open(o.home));

  HeldCa ca;
  switch (o.mode) {
    case Mode::idc: ca = HM_TRY(home.subca("idc")); break;
    case Mode::bc: ca = HM_TRY(home.subca("bc")); break;
    case Mode::bc_secret: ca = HM_TRY(home.generic_bc_ca()); break;
  }
  const HeldCa signer = HM_TRY(home.manifest_signer());

  // Profiles as the OEM's `hallmark init` writes them: the IDC is the OEM's (O from the issuer of its
  // IDC sub-CA), a BC is the vendor's.
  ca::DefaultProfileOptions profile_options;
  profile_options.organization = home.config().organization;
  profile_options.product_oid = o.product_oid;
  std::string org = home.config().organization;
  if (o.mode == Mode::idc) {
    if (auto oem = ca.certificate().issuer().get("O")) org = *oem;
  }
  const auto profiles = ca::default_profiles(profile_options);
  const auto profile_it = std::ranges::find(profiles, o.mode == Mode::idc ? "idc" : "bc", &ca::Profile::name);
  if (profile_it == profiles.end()) return fail(Errc::internal, "built-in profile idc or bc is missing");

  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) return fail(Errc::internal, fmt::format("cannot create {}: {}", o.out_dir.string(), ec.message()));
  const fs::path manifest = o.out_dir / (o.reel + ".json");
  if (fs::exists(manifest, ec))
    return fail(Errc::conflict, fmt::format("{} already exists", manifest.string()));

  // The store is the reel register: each reel is a manifest whose reel name is unique.
  auto db = HM_TRY(home.open_store());
  const auto reel_taken = [&] {
    return fail(Errc::conflict,
                fmt::format("reel '{}' was already provisioned (reel ids are never reused)", o.reel));
  };
  if (auto known = db->find_manifest_by_reel(o.reel); known) {
    return reel_taken();
  } else if (known.error().code != Errc::not_found) {
    return std::unexpected(known.error());
  }

  ReelFields fields;
  fields.part_number = o.part_number;
  fields.model = o.model.empty() ? o.part_number.substr(0, o.part_number.find('-')) : o.model;
  fields.manufacturer_org = fields.provisioner_org = home.config().organization;
  fields.manufacturer_unit = fields.provisioner_unit = home.config().organizational_unit;
  fields.distributor_org = home.config().distributor;
  fields.distributor_unit = home.config().distributor_unit;
  fields.group_id = o.reel;
  fields.reel = o.reel;
  fields.mode = std::string(to_string(o.mode));
  // x5c and the chip image carry the issuing CA and its issuers, not the root: that is the trust anchor.
  std::vector<x509::Certificate> ca_chain = ca.chain;
  if (ca_chain.size() > 1 && ca_chain.back().is_self_issued()) ca_chain.pop_back();
  const auto encoder = HM_TRY(EntryEncoder::make(fields, signer.certificate(), signer.signer, ca_chain));

  const auto ids = make_unique_ids(o.count);
  Job job{o.mode,
          &ca,
          &*profile_it,
          {{"org", org}, {"product", o.product.empty() ? o.part_number : o.product}},
          &encoder,
          &clock,
          &ids,
          {},
          {},
          {},
          o.part_number,
          fields.model,
          o.reel,
          ca.certificate().subject().to_string()};
  for (const auto& c : ca_chain) job.ca_pems.push_back(c.to_pem());
  if (o.images) {
    job.chips_dir = o.out_dir / "chips";
    fs::create_directories(job.chips_dir, ec);
    if (ec)
      return fail(Errc::internal, fmt::format("cannot create {}: {}", job.chips_dir.string(), ec.message()));
  }

  // Written to a temporary name and renamed once complete and recorded: a reel file that exists is whole.
  const fs::path partial = o.out_dir / (o.reel + ".json.partial");
  std::FILE* file = std::fopen(partial.c_str(), "wbx");
  if (file == nullptr)
    return fail(Errc::internal, fmt::format("cannot create {}: {}", partial.string(), std::strerror(errno)));
  // The reel's devices go to the store as they are made, in one transaction that commits once the
  // file is complete (memory does not grow with the reel). Opening it reserves the reel name.
  store::ManifestRecord reel_record;
  reel_record.format = "hallmark";
  reel_record.signer = signer.certificate().subject().to_string();
  reel_record.reel = o.reel;
  reel_record.imported_at = clock.now();
  auto session = db->begin_manifest_import(reel_record);
  if (!session) {
    std::fclose(file);
    fs::remove(partial, ec);
    if (session.error().code == Errc::conflict) return reel_taken();
    return std::unexpected(session.error());
  }
  std::vector<std::string> unique_ids;  // for removing chip images on failure
  unique_ids.reserve(o.count);
  const auto remove_outputs = [&] {
    (*session).reset();  // rolled back
    fs::remove(partial, ec);
    for (const auto& id : unique_ids) fs::remove(job.chips_dir / (id + ".json"), ec);
  };

  unsigned threads = o.threads != 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(std::min<std::uint64_t>(threads, (o.count + kBatch - 1) / kBatch));
  BatchQueue queue(4 * static_cast<std::size_t>(threads));
  queue.set_producers(threads);
  std::atomic<std::uint64_t> next{0};
  ProgressBar progress("reel " + o.reel, o.count, o.progress);
  std::vector<std::jthread> workers;
  workers.reserve(threads);
  for (unsigned t = 0; t < threads; ++t) {
    workers.emplace_back([&] { producer(job, next, o.count, queue); });
  }

  // The reel's SHA-256 is taken from what is written, not by reading the file back.
  crypto::Sha256 reel_digest;
  const auto put = [&](std::string_view text) {
    reel_digest.update(as_bytes(text));
    return std::fwrite(text.data(), 1, text.size(), file) == text.size();
  };
  bool first = true;
  bool write_failed = !put("[\n");
  while (auto batch = queue.pop()) {
    for (const auto& entry : batch->entries) {
      if (!first) write_failed |= !put(",\n");
      write_failed |= !put(entry);
      first = false;
    }
    for (const auto& d : batch->devices) unique_ids.push_back(d.vendor_unique_id);
    progress.add(batch->entries.size());
    auto stored = (*session)->add(batch->devices);
    if (!stored) {
      queue.stop(stored.error().with_context("reel " + o.reel));
      break;
    }
    if (auto c = std::ranges::find(*stored, store::DeviceImportOutcome::Kind::conflict,
                                   &store::DeviceImportOutcome::kind);
        c != stored->end()) {
      // A unique id (random, 64 bits) already used by another reel: this reel is not recorded.
      queue.stop(Error{Errc::conflict,
                       "chip " + batch->devices[c - stored->begin()].vendor_unique_id + ": " + c->reason});
      break;
    }
    if (write_failed) {
      queue.stop(
          Error{Errc::internal, fmt::format("cannot write {}: {}", partial.string(), std::strerror(errno))});
      break;
    }
  }
  workers.clear();  // joins
  write_failed |= !put("\n]\n");
  write_failed |= std::fflush(file) != 0 || ::fsync(::fileno(file)) != 0;
  write_failed |= std::fclose(file) != 0;
  if (auto error = queue.error()) {
    remove_outputs();
    return std::unexpected(*error);
  }
  if (write_failed || unique_ids.size() != o.count) {
    remove_outputs();
    return fail(Errc::internal, fmt::format("cannot write {}", partial.string()));
  }
  progress.finish();

  store::ManifestRecord final_record = reel_record;
  final_record.sha256 = to_hex(reel_digest.finish());
  final_record.entry_count = static_cast<std::int64_t>(o.count);
  const store::AuditEvent audit{
      clock.now(),
      "vendor",
      "provision",
      o.reel,
      store::Outcome::accepted,
      fmt::format("mode={} chips={} issuer=\"{}\"", to_string(o.mode), o.count, job.issuer_subject),
      ""};
  const std::string sha256 = final_record.sha256;
  auto recorded = (*session)->commit(final_record, audit);
  if (!recorded || recorded->inserted != static_cast<std::int64_t>(o.count)) {
    remove_outputs();
    if (!recorded)
      return std::unexpected(
          recorded.error().with_context("reel " + o.reel + " not recorded, outputs removed"));
    return fail(Errc::conflict, "reel " + o.reel + " not recorded, outputs removed: its chips were known");
  }
  (*session).reset();
  fs::rename(partial, manifest, ec);
  if (ec) return fail(Errc::internal, fmt::format("cannot rename {}: {}", partial.string(), ec.message()));

  ProvisionSummary s;
  s.chips = o.count;
  s.mode = o.mode;
  s.reel = o.reel;
  s.elapsed_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  s.chips_per_second = s.elapsed_seconds > 0 ? static_cast<double>(o.count) / s.elapsed_seconds : 0;
  s.manifest = manifest;
  s.manifest_sha256 = sha256;
  s.files = 1 + (o.images ? o.count : 0);
  s.issuer = job.issuer_subject;
  s.signer_kid = encoder.ids().kid;
  return s;
}

}  // namespace hallmark::vendor
