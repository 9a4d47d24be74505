#pragma once
// Factory line and device lifecycle: `hallmark device mount|list|show|retire`.
// Mounting tags a received device `mounted` and creates its end entity (DESIGN §1):
//   Option 2 (a BC, no secret digest): username = UKID, recomputed here from the BC's DER exactly as
//            the device computes it (lowercase hex SHA-256 of the SubjectPublicKeyInfo);
//   Option 3 (a BC and ukid_secret_digest): username = the BC's SHA-256 fingerprint; the secret's
//            digest stays on the device record, where the RA checks the proof;
//   Lite     (no BC, version 2 manifests): username = the vendor unique id; the key is pinned at
//            first contact (InventoryStore::pin_device_key).
// Unknown and already-mounted devices are reported, never skipped silently. See docs/inventory.md.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hallmark/core/clock.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/store/store.hpp"
#include "hallmark/x509/certificate.hpp"

namespace hallmark::inventory {

// ---- identities ----

// Lowercase hex SHA-256 of the certificate's DER SubjectPublicKeyInfo (vectors/idc-8021ar/bc.ukid).
[[nodiscard]] Result<std::string> ukid_of_bc(ByteView bc_der);

enum class DeviceOption { option2, option3, lite };
[[nodiscard]] std::string_view to_string(DeviceOption option) noexcept;  // "option2", "option3", "lite"
[[nodiscard]] DeviceOption device_option(const store::DeviceRecord& device);

// The end entity mount creates for `device` (username, device_id, alias, subject_json); checks that
// a stored UKID equals the one recomputed from the BC. `bc`: the device's BC already parsed by the
// caller (used only when its DER is device.bc_der), which spares parsing it again.
[[nodiscard]] Result<store::EndEntityRecord> make_end_entity(const store::DeviceRecord& device,
                                                             std::string_view alias,
                                                             const x509::Certificate* bc = nullptr);

// A device by vendor unique id, UKID or BC SHA-256 fingerprint (64 hex digits: UKID first, then
// fingerprint, then unique id). not_found when none matches.
[[nodiscard]] Result<store::DeviceRecord> find_device(store::InventoryStore& store, std::string_view key);

// ---- mount ----

struct MountRequest {
  std::string unique_id;  // exactly one of unique_id and ukid
  std::string ukid;
  std::string station;   // overrides MountOptions::station when set
  std::string alias;     // overrides MountOptions::alias when set
  std::size_t line = 0;  // CSV line (1-based); 0 when not from a file
};

// CSV with a header row: a `unique_id` and/or `ukid` column, optional `station` and `alias`
// columns (names case-insensitive; "uniqueId" also accepted). Blank lines and lines starting with
// '#' are skipped; quoted fields ("a,b", "a""b") are understood; CRLF is fine. Each row names
// exactly one of unique_id and ukid, or the whole file is invalid_input naming the line.
[[nodiscard]] Result<std::vector<MountRequest>> parse_mount_csv(std::string_view text);
[[nodiscard]] Result<std::vector<MountRequest>> load_mount_csv(const std::string& path);

struct MountOptions {
  std::string station;
  std::string alias;
  std::string actor = "factory";
  std::string request_id;
  const Clock* clock = nullptr;       // nullptr: the system clock
  std::int64_t allowed_requests = 1;  // enrollments the end entity allows
};

enum class MountStatus {
  mounted,          // received -> mounted and end entity created, in one transaction
  unknown,          // no such device in the inventory
  already_mounted,  // it was mounted before (nothing changed)
  refused,          // enrolled, retired, UKID mismatch, username taken, store error
};
[[nodiscard]] std::string_view to_string(MountStatus status) noexcept;

struct MountOutcome {
  MountRequest request;
  MountStatus status = MountStatus::refused;
  std::string unique_id;  // resolved
  std::string username;   // the end entity's
  std::string option;     // "option2", "option3", "lite"
  std::string reason;     // for everything but mounted
};

struct MountReport {
  std::vector<MountOutcome> outcomes;
  [[nodiscard]] std::size_t count(MountStatus status) const;
  [[nodiscard]] bool all_mounted() const { return count(MountStatus::mounted) == outcomes.size(); }
  [[nodiscard]] nlohmann::json to_json() const;
  [[nodiscard]] std::string to_table() const;
};

[[nodiscard]] MountOutcome mount_device(store::Store& store, const MountRequest& request,
                                        const MountOptions& options);
[[nodiscard]] MountReport mount_devices(store::Store& store, const std::vector<MountRequest>& requests,
                                        const MountOptions& options);

// ---- list / show / retire ----

// `device list`: state, manifest id or reel name, part number; paging by id (ascending).
using DeviceFilter = store::DeviceFilter;
// `--reel KEY`: a manifest by its id (decimal), its file SHA-256 (64 hex) or its reel name.
[[nodiscard]] Result<store::ManifestRecord> find_reel(store::InventoryStore& store, std::string_view key);
// `device list`: InventoryStore::list_devices (filtered and paged in the database).
[[nodiscard]] Result<std::vector<store::DeviceRecord>> list_devices(store::InventoryStore& store,
                                                                    const DeviceFilter& filter);
// The reference semantics of the filter for one record (`reel` needs the manifest: not checked here).
[[nodiscard]] bool matches(const DeviceFilter& filter, const store::DeviceRecord& device);

[[nodiscard]] nlohmann::json device_to_json(const store::DeviceRecord& device);
// One row per device: id, unique id, state, option, part number, manifest, UKID or BC fingerprint.
[[nodiscard]] std::string devices_table(const std::vector<store::DeviceRecord>& devices);
// `device show`: every field, and the BC's subject, issuer and validity when there is one.
[[nodiscard]] std::string describe_device(const store::DeviceRecord& device);

struct RetireOptions {
  std::string actor = "admin";
  std::string reason;
  std::string request_id;
  const Clock* clock = nullptr;
};
// Any state -> retired; `key` as for find_device. not_found for an unknown device; a device that is
// already retired is conflict.
[[nodiscard]] Result<store::DeviceRecord> retire_device(store::Store& store, std::string_view key,
                                                        const RetireOptions& options);

}  // namespace hallmark::inventory
