#pragma once
// Manifest readers: Microchip Trust&GO / TrustFLEX / TrustMANAGER JWS manifests, hallmark's own reels
// (the same container) and Infineon OPTIGA Trust M reel bundles. Each reader streams: entries are
// verified and handed over one at a time, in file order, so memory does not grow with the file.
// See docs/inventory.md.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hallmark/core/clock.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/x509/certificate.hpp"

namespace hallmark::inventory {

enum class ManifestFormat {
  automatic,  // JSON array: microchip or hallmark (per the payload marker); directory or .7z: infineon
  hallmark,   // hallmark reel: Microchip's container, payload with a "hallmark" object
  microchip,  // Microchip JWS manifest
  infineon,   // Infineon reel bundle: directory of <chipID>_<objectID>.pem, or the .7z bundle
};

// "auto" | "hallmark" | "microchip" | "infineon".
[[nodiscard]] Result<ManifestFormat> parse_manifest_format(std::string_view name);
[[nodiscard]] std::string_view to_string(ManifestFormat format) noexcept;
// The name recorded in store::ManifestRecord::format: "hallmark", "microchip-jws", "infineon-reel".
[[nodiscard]] std::string_view record_format(ManifestFormat format) noexcept;

// The container a path holds: a directory or a 7z archive is infineon, anything else is a JSON
// manifest (hallmark or microchip: told apart per entry, so this returns microchip for it).
[[nodiscard]] Result<ManifestFormat> detect_container(const std::string& path);

// A pinned manifest signer, found by x5t#S256 and cross-checked by kid.
struct PinnedSigner {
  x509::Certificate certificate;
  std::string x5t_s256;  // base64url SHA-256 of the certificate DER
  std::string kid;       // base64url of the SubjectKeyIdentifier (Microchip's convention)
};

// What an import trusts. Build it once and share it between files (and threads: read-only).
class ManifestTrust {
 public:
  // Signer certificates (PEM or DER), e.g. every file of a --signers directory.
  [[nodiscard]] Status add_signer(const x509::Certificate& signer);
  void add_vendor_root(const x509::Certificate& root) { roots_.add_anchor(root); }
  // Intermediates not carried by the manifest itself (Infineon's CA 306/309).
  void add_intermediate(const x509::Certificate& ca) { intermediates_.push_back(ca); }

  [[nodiscard]] const PinnedSigner* find_signer(std::string_view x5t_s256) const;
  [[nodiscard]] const x509::TrustStore& vendor_roots() const { return roots_; }
  [[nodiscard]] const std::vector<x509::Certificate>& intermediates() const { return intermediates_; }
  [[nodiscard]] bool has_signers() const { return !signers_.empty(); }

 private:
  std::map<std::string, PinnedSigner, std::less<>> signers_;
  x509::TrustStore roots_;
  std::vector<x509::Certificate> intermediates_;
};

// Every certificate in `path`: a PEM file (one or more blocks), a DER file, or a directory of such
// files (*.crt, *.pem, *.cer, *.der; other names are ignored).
[[nodiscard]] Result<std::vector<x509::Certificate>> load_certificates(const std::string& path);

// One manifest entry after verification, accepted or rejected.
struct ManifestEntry {
  std::size_t index = 0;  // position in the file: entry N is jq '.[N]'; Infineon: chip order
  std::string unique_id;  // lowercase hex when hex (ATECC serial, Infineon chip id)
  std::string rejected;   // empty when the entry verified; else the exact reason

  ManifestFormat format = ManifestFormat::microchip;
  int version = 0;  // payload version (1, 2 "Lite", 3); 0 for Infineon
  std::string model;
  std::string part_number;
  std::optional<Seconds> provisioned_at;
  std::string signer;  // subject of the manifest signer (JWS formats)
  std::string reel;    // hallmark: payload hallmark.reel; Infineon: the reel id from the bundle name

  // The birth certificate: x5c[0] of the key with kid "0" (JWS formats), the E0E0 object (Infineon).
  // Absent for version 2 ("Lite"): the key is learned and pinned at first contact.
  std::optional<x509::Certificate> bc;
  std::string bc_sha256;                          // fingerprint of the BC DER
  std::optional<std::string> ukid;                // SHA-256 of the BC's SPKI; absent for Option 3
  std::optional<std::string> ukid_secret_digest;  // hallmark Option 3 reels
  bool chain_verified = false;                    // the BC chain was verified to a configured vendor root
  std::vector<std::string> object_ids;            // Infineon: "E0E0", "E0E1", "E0E2" as found

  [[nodiscard]] bool accepted() const { return rejected.empty(); }
  // "entry 3 (uniqueId 0123...): <reason>"
  [[nodiscard]] std::string describe_rejection() const;
};

struct ReadOptions {
  ManifestFormat format = ManifestFormat::automatic;
  unsigned threads = 0;       // verification threads; 0 = one per core
  std::size_t window = 4096;  // entries in flight at most (bounds memory)
  std::string part_number;    // Infineon bundles carry none: the part number to record
};

struct ManifestSummary {
  ManifestFormat format = ManifestFormat::automatic;  // hallmark, microchip or infineon as read
  std::string sha256;                                 // of the file; of a directory: see docs/inventory.md
  std::size_t entries = 0;                            // entries handed to the callback
  std::string signer;                                 // signer subject(s) seen, "; "-separated
  std::string reel;                                   // reel id when the format names one
  std::vector<std::string> notes;  // e.g. "chains unverified: no Infineon roots configured"
};

using EntryCallback = std::function<Status(ManifestEntry&&)>;

// Reads `path`, verifies each entry against `trust` and calls `on_entry` for each, in file order
// (from the calling thread). A callback error stops the read and is returned. A framing error
// (truncated file, bytes between elements, not an array) is invalid_input ("truncated JSON at byte
// N") after the entries before it were handed over: the caller decides (import drops the file).
[[nodiscard]] Result<ManifestSummary> read_manifest(const std::string& path, const ManifestTrust& trust,
                                                    const ReadOptions& options,
                                                    const EntryCallback& on_entry);

// Verifies one JWS entry (a JSON object's text) as read_manifest does; for tests and tools. `paths`,
// when given, must be built on trust.vendor_roots(): it remembers the x5c intermediates' path to a
// vendor root across the entries of a reel (one per thread).
[[nodiscard]] ManifestEntry verify_jws_entry(std::string_view element_json, std::size_t index,
                                             const ManifestTrust& trust, ManifestFormat expected,
                                             x509::PathCache* paths = nullptr);

}  // namespace hallmark::inventory
