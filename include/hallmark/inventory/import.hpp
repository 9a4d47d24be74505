#pragma once
// `hallmark manifest import`: read and verify manifests, then one store transaction per file.
// Rejected entries never enter the inventory; the file's good entries do. Idempotent: an entry the
// inventory already holds is counted "already present"; one that contradicts it is rejected as a
// conflict. See docs/inventory.md.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "hallmark/core/clock.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/inventory/manifest.hpp"
#include "hallmark/store/store.hpp"

namespace hallmark::inventory {

struct ImportOptions {
  ReadOptions read;             // format, threads, Infineon part number
  std::string actor = "admin";  // audit actor
  std::string request_id;
  const Clock* clock = nullptr;                // nullptr: the system clock
  std::size_t max_listed_rejections = 10000;   // per file; the rest are counted, not listed
  std::size_t max_listed_candidates = 100000;  // Infineon chips listed in the report
};

struct RejectedEntry {
  std::size_t index = 0;
  std::string unique_id;
  std::string reason;
  // "entry 3 (uniqueId 0123...): reason"
  [[nodiscard]] std::string message() const;
};

// An Infineon candidate as imported (or found already present): chip id and object ids.
struct Candidate {
  std::string unique_id;
  std::vector<std::string> object_ids;
  bool chain_verified = false;
};

struct FileReport {
  std::string path;
  std::string format;  // store::ManifestRecord::format
  std::string sha256;
  std::string signer;
  std::string reel;
  std::int64_t entries = 0;
  std::int64_t imported = 0;
  std::int64_t already_present = 0;
  std::int64_t rejected = 0;
  std::vector<RejectedEntry> rejections;  // the first max_listed_rejections of them
  std::vector<Candidate> candidates;      // Infineon only
  std::vector<std::string> notes;
  bool manifest_known = false;  // this very file was imported before
  std::optional<store::Id> manifest_id;
  // Set when the whole file failed (framing error, store failure): nothing of it was imported.
  std::optional<std::string> error;
  double seconds = 0;

  [[nodiscard]] bool ok() const { return !error.has_value(); }
};

struct ImportReport {
  std::vector<FileReport> files;
  [[nodiscard]] std::int64_t imported() const;
  [[nodiscard]] std::int64_t already_present() const;
  [[nodiscard]] std::int64_t rejected() const;
  // true when every file was read and stored (entries may still have been rejected).
  [[nodiscard]] bool ok() const;

  // The --report FILE.json document (schema in docs/inventory.md).
  [[nodiscard]] nlohmann::json to_json() const;
  // Human-readable: one row per file, then one line per rejected entry.
  [[nodiscard]] std::string to_table() const;
};

// Imports one file (a JSON manifest, an Infineon directory or .7z) in one transaction. A file-level
// failure (framing error, unreadable file, store failure) is reported in FileReport::error, and
// nothing of that file is imported: the caller goes on with the next file.
[[nodiscard]] FileReport import_manifest_file(store::Store& store, const std::string& path,
                                              const ManifestTrust& trust, const ImportOptions& options);

// Imports each file in order; one FileReport per path.
[[nodiscard]] ImportReport import_manifests(store::Store& store, const std::vector<std::string>& paths,
                                            const ManifestTrust& trust, const ImportOptions& options);

// Builds the trust for `hallmark manifest import`: --signers DIR (pinned JWS signers), --vendor-roots
// FILE|DIR (anchors for device chains), --intermediates FILE|DIR. Empty strings are skipped.
[[nodiscard]] Result<ManifestTrust> load_manifest_trust(const std::string& signers,
                                                        const std::string& vendor_roots,
                                                        const std::string& intermediates = {});

}  // namespace hallmark::inventory
