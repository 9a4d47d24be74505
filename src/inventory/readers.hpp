#pragma once
// Private: the format readers behind read_manifest.
#include <string>
#include <string_view>

#include "hallmark/inventory/manifest.hpp"

namespace hallmark::inventory::detail {

[[nodiscard]] Result<ManifestSummary> read_json_manifest(const std::string& path, const ManifestTrust& trust,
                                                         const ReadOptions& options,
                                                         const EntryCallback& on_entry);
[[nodiscard]] Result<ManifestSummary> read_infineon_bundle(const std::string& path,
                                                           const ManifestTrust& trust,
                                                           const ReadOptions& options,
                                                           const EntryCallback& on_entry);

// Lowercase when the id is hex (ATECC serials, Infineon chip ids); unchanged otherwise.
[[nodiscard]] std::string canonical_unique_id(std::string_view id);
// "certificate verification failed: X (subject S)" -> "X (subject S)".
[[nodiscard]] std::string chain_failure(std::string_view detail);
// Fills bc_sha256 and (unless an Option 3 secret digest is present) the UKID from entry.bc.
void derive_bc_fields(ManifestEntry& entry);

}  // namespace hallmark::inventory::detail
