#include "hallmark/inventory/import.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>

#include "hallmark/crypto/digest.hpp"
#include "readers.hpp"

namespace hallmark::inventory {

namespace {

// Devices handed to the store per ManifestImportSession::add.
constexpr std::size_t kImportBatch = 1000;

// Keys seen in this file (unique id, BC fingerprint, UKID) -> first entry index. Open addressing
// over 64-bit truncated SHA-256 values, keys and indexes in parallel arrays: 12 bytes a slot, so a
// million entries (three keys each) fit in 48 MB, far less than keeping the strings would.
class SeenKeys {
 public:
  // The index of the entry that already used `key`, or nullopt (and `key` is recorded for `index`).
  std::optional<std::size_t> insert(std::uint64_t key, std::size_t index) {
    if (key == 0) key = 1;
    if ((size_ + 1) * 4 > keys_.size() * 3) grow();
    const std::size_t mask = keys_.size() - 1;
    for (std::size_t i = key & mask;; i = (i + 1) & mask) {
      if (keys_[i] == 0) {
        keys_[i] = key;
        indexes_[i] = static_cast<std::uint32_t>(index);
        ++size_;
        return std::nullopt;
      }
      if (keys_[i] == key) return indexes_[i];
    }
  }

 private:
  void grow() {
    std::vector<std::uint64_t> old_keys = std::move(keys_);
    std::vector<std::uint32_t> old_indexes = std::move(indexes_);
    const std::size_t slots = old_keys.empty() ? 1024 : old_keys.size() * 2;
    keys_.assign(slots, 0);
    indexes_.assign(slots, 0);
    size_ = 0;
    for (std::size_t i = 0; i < old_keys.size(); ++i) {
      if (old_keys[i] != 0) insert(old_keys[i], old_indexes[i]);
    }
  }
  std::vector<std::uint64_t> keys_;
  std::vector<std::uint32_t> indexes_;  // entry indexes: a file of 4 billion entries is refused first
  std::size_t size_ = 0;
};

std::uint64_t key_of(char domain, std::string_view value) {
  std::string input(1, domain);
  input += value;
  const Bytes d = crypto::sha256(as_bytes(input));
  std::uint64_t k = 0;
  std::memcpy(&k, d.data(), sizeof k);
  return k;
}

store::DeviceRecord to_record(const ManifestEntry& entry) {
  store::DeviceRecord d;
  d.vendor_unique_id = entry.unique_id;
  d.ukid = entry.ukid;
  if (entry.bc) {
    d.bc_der = entry.bc->to_der();
    d.bc_issuer = entry.bc->issuer().to_string();
  }
  d.bc_sha256 = entry.bc_sha256;
  d.part_number = entry.part_number;
  d.ukid_secret_digest = entry.ukid_secret_digest;
  return d;
}

}  // namespace

std::string RejectedEntry::message() const {
  std::string out = "entry " + std::to_string(index);
  if (!unique_id.empty()) out += " (uniqueId " + unique_id + ")";
  return out + ": " + reason;
}

FileReport import_manifest_file(store::Store& store, const std::string& path, const ManifestTrust& trust,
                                const ImportOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  const SystemClock system_clock;
  const Clock& clock = options.clock != nullptr ? *options.clock : system_clock;
  FileReport report;
  report.path = path;

  auto reject = [&](std::size_t index, const std::string& unique_id, std::string reason) {
    ++report.rejected;
    if (report.rejections.size() < options.max_listed_rejections) {
      report.rejections.push_back({index, unique_id, std::move(reason)});
    }
  };

  // Accepted entries go to one streaming store transaction in batches: memory stays bounded by the
  // batch, and the store decides per entry (new, already present, conflict) inside the transaction.
  // The session starts with the first batch; until it commits, nothing of the file is visible.
  struct Pending {
    std::size_t index = 0;
    std::vector<std::string> object_ids;  // Infineon
    bool chain_verified = false;
    bool infineon = false;
  };
  std::vector<store::DeviceRecord> batch;
  std::vector<Pending> pending;
  batch.reserve(kImportBatch);
  pending.reserve(kImportBatch);
  std::unique_ptr<store::ManifestImportSession> session;
  std::string reel;                  // the reel name this file's manifest row carries
  std::optional<std::string> taken;  // the reel belongs to another manifest (sha256)
  std::string first_format;
  auto begin = [&](std::string_view wanted_reel, std::string_view format) -> Status {
    if (!wanted_reel.empty()) {
      // Looked up before the session opens (the session holds the writer; a sqlite::memory: store
      // reads through it too).
      auto known = store.find_manifest_by_reel(wanted_reel);
      if (known) {
        taken = known->sha256;
      } else if (known.error().code != Errc::not_found) {
        return std::unexpected(known.error());
      } else {
        reel = std::string(wanted_reel);
      }
    }
    store::ManifestRecord m;
    m.format = std::string(format);
    m.imported_at = clock.now();
    m.reel = reel;
    session = HM_TRY(store.begin_manifest_import(m));
    return {};
  };
  auto flush = [&]() -> Status {
    if (batch.empty()) return {};
    auto outcomes = HM_TRY(session->add(batch));
    for (std::size_t i = 0; i < outcomes.size() && i < batch.size(); ++i) {
      switch (outcomes[i].kind) {
        case store::DeviceImportOutcome::Kind::inserted: ++report.imported; break;
        case store::DeviceImportOutcome::Kind::unchanged: ++report.already_present; break;
        case store::DeviceImportOutcome::Kind::conflict:
          reject(pending[i].index, batch[i].vendor_unique_id, std::move(outcomes[i].reason));
          continue;
      }
      if (pending[i].infineon && report.candidates.size() < options.max_listed_candidates) {
        report.candidates.push_back(
            {batch[i].vendor_unique_id, std::move(pending[i].object_ids), pending[i].chain_verified});
      }
    }
    batch.clear();
    pending.clear();
    return {};
  };

  SeenKeys seen;
  std::size_t handed = 0;
  auto summary = read_manifest(path, trust, options.read, [&](ManifestEntry&& entry) -> Status {
    ++handed;
    if (entry.index > std::numeric_limits<std::uint32_t>::max()) {
      return fail(Errc::invalid_input, fmt::format("{}: more than {} entries in one file; split the reel",
                                                   path, std::numeric_limits<std::uint32_t>::max()));
    }
    if (!entry.accepted()) {
      reject(entry.index, entry.unique_id, std::move(entry.rejected));
      return {};
    }
    // Duplicates within the file: the first one counts, later ones are rejected.
    if (auto first = seen.insert(key_of('u', entry.unique_id), entry.index)) {
      reject(entry.index, entry.unique_id,
             "duplicate entry for uniqueId " + entry.unique_id + " (first at entry " +
                 std::to_string(*first) + ")");
      return {};
    }
    if (!entry.bc_sha256.empty()) {
      if (auto first = seen.insert(key_of('b', entry.bc_sha256), entry.index)) {
        reject(entry.index, entry.unique_id,
               "duplicate BC sha256 " + entry.bc_sha256 + " (already used by entry " +
                   std::to_string(*first) + ")");
        return {};
      }
    }
    if (entry.ukid) {
      if (auto first = seen.insert(key_of('k', *entry.ukid), entry.index)) {
        reject(entry.index, entry.unique_id,
               "duplicate UKID " + *entry.ukid + " (already used by entry " + std::to_string(*first) + ")");
        return {};
      }
    }
    if (!session) {
      if (auto st = begin(entry.reel, record_format(entry.format)); !st)
        return std::unexpected(st.error().with_context("store"));
    }
    const bool infineon = entry.format == ManifestFormat::infineon;
    pending.push_back({entry.index, infineon ? std::move(entry.object_ids) : std::vector<std::string>{},
                       entry.chain_verified, infineon});
    batch.push_back(to_record(entry));
    if (batch.size() >= kImportBatch) {
      if (auto st = flush(); !st) return std::unexpected(st.error().with_context("store"));
    }
    return {};
  });
  report.entries = static_cast<std::int64_t>(handed);
  auto finish = [&] {
    // Conflicts are known when their batch is stored, after later entries' own rejections.
    std::ranges::stable_sort(report.rejections, {}, &RejectedEntry::index);
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    return std::move(report);
  };
  auto failed = [&](std::string error) {
    session.reset();  // rolled back: nothing of the file is imported
    report.error = std::move(error);
    report.imported = 0;
    report.already_present = 0;
    report.candidates.clear();
    return finish();
  };
  if (!summary) {
    // A framing error ends the file: the partial element is the rejected one, nothing is imported.
    const std::string& d = summary.error().detail;
    if (d.starts_with("truncated JSON") || d.starts_with("invalid JSON") || d.starts_with("array element")) {
      reject(handed, {}, summary.error().detail);
    }
    return failed(summary.error().detail);
  }
  report.format = std::string(record_format(summary->format));
  report.sha256 = summary->sha256;
  report.signer = summary->signer;
  report.reel = summary->reel;
  report.notes = std::move(summary->notes);

  if (!session) {
    if (auto st = begin(summary->reel, report.format); !st) return failed("store: " + st.error().detail);
  }
  if (auto st = flush(); !st) return failed("store: " + st.error().detail);

  store::ManifestRecord manifest;
  manifest.format = report.format;
  manifest.signer = report.signer;
  manifest.sha256 = report.sha256;
  manifest.entry_count = report.entries;
  manifest.imported_at = clock.now();
  store::AuditEvent audit;
  audit.time = clock.now();
  audit.actor = options.actor;
  audit.action = "manifest-import";
  audit.object = report.sha256;
  audit.reason = fmt::format("file={} format={} entries={} new={} present={} rejected={}",
                             std::filesystem::path(path).filename().string(), report.format, report.entries,
                             report.imported, report.already_present, report.rejected);
  audit.request_id = options.request_id;
  auto stored = session->commit(manifest, audit);
  session.reset();
  if (!stored) return failed("store: " + stored.error().detail);
  report.manifest_id = stored->manifest_id;
  report.manifest_known = stored->manifest_known;
  if (taken && !stored->manifest_known) {
    report.notes.push_back("reel " + summary->reel + " is already recorded by manifest sha256 " + *taken +
                           ": this file is not recorded under the reel name");
  }
  return finish();
}

ImportReport import_manifests(store::Store& store, const std::vector<std::string>& paths,
                              const ManifestTrust& trust, const ImportOptions& options) {
  ImportReport report;
  for (const auto& path : paths) report.files.push_back(import_manifest_file(store, path, trust, options));
  return report;
}

Result<ManifestTrust> load_manifest_trust(const std::string& signers, const std::string& vendor_roots,
                                          const std::string& intermediates) {
  ManifestTrust trust;
  if (!signers.empty()) {
    for (const auto& c : HM_TRY(load_certificates(signers))) HM_TRY_VOID(trust.add_signer(c));
  }
  if (!vendor_roots.empty()) {
    for (const auto& c : HM_TRY(load_certificates(vendor_roots))) trust.add_vendor_root(c);
  }
  if (!intermediates.empty()) {
    for (const auto& c : HM_TRY(load_certificates(intermediates))) trust.add_intermediate(c);
  }
  return trust;
}

// ---- report ----

std::int64_t ImportReport::imported() const {
  std::int64_t n = 0;
  for (const auto& f : files) n += f.imported;
  return n;
}
std::int64_t ImportReport::already_present() const {
  std::int64_t n = 0;
  for (const auto& f : files) n += f.already_present;
  return n;
}
std::int64_t ImportReport::rejected() const {
  std::int64_t n = 0;
  for (const auto& f : files) n += f.rejected;
  return n;
}
bool ImportReport::ok() const {
  return std::ranges::all_of(files, [](const FileReport& f) { return f.ok(); });
}

nlohmann::json ImportReport::to_json() const {
  nlohmann::json out = nlohmann::json::object();
  out["imported"] = imported();
  out["already_present"] = already_present();
  out["rejected"] = rejected();
  out["ok"] = ok();
  out["files"] = nlohmann::json::array();
  for (const auto& f : files) {
    nlohmann::json j = {{"path", f.path},         {"format", f.format},
                        {"sha256", f.sha256},     {"signer", f.signer},
                        {"reel", f.reel},         {"entries", f.entries},
                        {"imported", f.imported}, {"already_present", f.already_present},
                        {"rejected", f.rejected}, {"manifest_known", f.manifest_known},
                        {"seconds", f.seconds},   {"notes", f.notes}};
    j["manifest_id"] = f.manifest_id ? nlohmann::json(*f.manifest_id) : nlohmann::json();
    j["error"] = f.error ? nlohmann::json(*f.error) : nlohmann::json();
    j["rejections"] = nlohmann::json::array();
    for (const auto& r : f.rejections) {
      j["rejections"].push_back(
          {{"index", r.index}, {"unique_id", r.unique_id}, {"reason", r.reason}, {"message", r.message()}});
    }
    if (f.rejected > static_cast<std::int64_t>(f.rejections.size())) {
      j["rejections_not_listed"] = f.rejected - static_cast<std::int64_t>(f.rejections.size());
    }
    if (!f.candidates.empty()) {
      j["candidates"] = nlohmann::json::array();
      for (const auto& c : f.candidates) {
        j["candidates"].push_back(
            {{"unique_id", c.unique_id}, {"object_ids", c.object_ids}, {"chain_verified", c.chain_verified}});
      }
    }
    out["files"].push_back(std::move(j));
  }
  return out;
}

std::string ImportReport::to_table() const {
  std::string out = fmt::format("{:<40} {:<14} {:>9} {:>9} {:>9} {:>9}  {}\n", "FILE", "FORMAT", "ENTRIES",
                                "IMPORTED", "PRESENT", "REJECTED", "STATUS");
  for (const auto& f : files) {
    std::string name = std::filesystem::path(f.path).filename().string();
    if (name.empty()) name = f.path;
    out += fmt::format("{:<40} {:<14} {:>9} {:>9} {:>9} {:>9}  {}\n", name, f.format.empty() ? "-" : f.format,
                       f.entries, f.imported, f.already_present, f.rejected,
                       f.error ? "FAILED: " + *f.error : (f.manifest_known ? "ok (file seen before)" : "ok"));
  }
  out += fmt::format("{:<40} {:<14} {:>9} {:>9} {:>9} {:>9}\n", "total", "", "", imported(),
                     already_present(), rejected());
  for (const auto& f : files) {
    if (f.rejections.empty() && f.notes.empty()) continue;
    out += "\n" + f.path + ":\n";
    for (const auto& n : f.notes) out += "  note: " + n + "\n";
    for (const auto& r : f.rejections) out += "  rejected " + r.message() + "\n";
    if (f.rejected > static_cast<std::int64_t>(f.rejections.size())) {
      out += fmt::format("  ... and {} more rejected entries\n", f.rejected - std::ssize(f.rejections));
    }
  }
  return out;
}

}  // namespace hallmark::inventory
