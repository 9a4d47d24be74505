#pragma once
// Plain records the store reads and writes. Certificates are DER bytes plus fields the caller has
// already extracted: the store knows SQL, not X.509.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hallmark/core/bytes.hpp"
#include "hallmark/core/clock.hpp"
#include "hallmark/core/result.hpp"

namespace hallmark::store {

using Id = std::int64_t;

// ---- CAs and trust anchors ----

struct CaRecord {
  Id id = 0;
  std::string name;  // unique
  std::string role;  // "root", "issuing", "birth", ... (free text for the layers above)
  Bytes certificate_der;
  std::string key_ref;  // file path or pkcs11: URI; empty for external CAs
  std::string status = "active";
  std::int64_t crl_number = 0;
  bool external = false;  // a CA we trust but do not operate (e.g. a vendor's generic BC CA)
};

struct TrustAnchor {
  Id id = 0;
  std::string name;     // unique
  std::string purpose;  // e.g. "bc", "idc", "proxy"
  Bytes certificate_der;
  std::string sha256;  // lowercase hex of the DER, unique
};

// ---- inventory ----

enum class DeviceState { received, mounted, enrolled, retired };
[[nodiscard]] std::string_view to_string(DeviceState s) noexcept;
[[nodiscard]] Result<DeviceState> parse_device_state(std::string_view s);

struct ManifestRecord {
  Id id = 0;
  std::string format;  // "hallmark", "microchip-jws", "infineon-reel", ...
  std::string signer;
  std::string sha256;  // of the manifest file, lowercase hex, unique
  std::int64_t entry_count = 0;
  std::int64_t inserted_count = 0;
  Seconds imported_at{};
  std::string reel = {};  // reel / group id; unique when not empty (stored as NULL when empty)
};

struct DeviceRecord {
  Id id = 0;
  std::string vendor_unique_id;     // unique
  std::optional<std::string> ukid;  // unique when present (Option 2: SHA-256 of the BC's SPKI)
  Bytes bc_der;                     // empty for a Lite device until its key is pinned (stored as NULL)
  std::string bc_sha256;            // fingerprint of bc_der, lowercase hex, unique when not empty
  std::string bc_issuer;
  std::optional<Id> manifest_id;
  std::string part_number;
  DeviceState state = DeviceState::received;
  bool bc_revoked = false;
  bool bc_consumed = false;
  std::optional<Seconds> mounted_at;
  std::string station;
  std::optional<std::string> ukid_secret_digest;  // Option 3: SHA-256 of the secret, hex
};

// ---- end entities ----

enum class EndEntityState { new_, generated, revoked, pending };
[[nodiscard]] std::string_view to_string(EndEntityState s) noexcept;
[[nodiscard]] Result<EndEntityState> parse_end_entity_state(std::string_view s);

struct EndEntityRecord {
  Id id = 0;
  std::string username;  // unique; the UKID by default
  std::optional<Id> device_id;
  std::string est_alias;
  std::string subject_json = "{}";  // subject data for the profile, JSON text
  EndEntityState state = EndEntityState::new_;
  std::int64_t allowed_requests = 1;  // enrollments allowed; 1 = single use
  std::int64_t issued_count = 0;      // enrollments done; the database keeps it <= allowed_requests
  std::int64_t renewal_count = 0;     // re-enrollments done
};

// ---- certificates ----

enum class CertificateStatus { good, revoked };
[[nodiscard]] std::string_view to_string(CertificateStatus s) noexcept;

struct CertificateRecord {
  Id id = 0;
  std::string serial_hex;  // lowercase hex, unique
  std::string issuer_ca;   // CaRecord::name
  std::optional<Id> device_id;
  std::optional<Id> end_entity_id;
  std::string subject;
  Seconds not_before{};
  Seconds not_after{};
  std::string public_key_sha256;  // of the SubjectPublicKeyInfo DER, lowercase hex
  Bytes der;
  CertificateStatus status = CertificateStatus::good;
  std::optional<Seconds> revoked_at;
  std::optional<int> reason;  // RFC 5280 CRLReason
};

// One entry of a CA's CRL: a revoked row of the certificates table, without its DER.
struct RevocationRecord {
  Id id = 0;
  std::string serial_hex;
  Seconds revoked_at{};
  std::optional<int> reason;  // RFC 5280 CRLReason
};

// The latest CRL of a CA. One node (the lease holder) writes it; every node serves it.
struct CrlRecord {
  std::string ca_name;
  std::int64_t crl_number = 0;
  Seconds this_update{};
  Seconds next_update{};
  Bytes der;  // empty in list_crls()
};

// ---- audit ----

enum class Outcome { accepted, refused };
[[nodiscard]] std::string_view to_string(Outcome o) noexcept;

// One decision. The store fills id, prev_hash and hash when it appends.
struct AuditEvent {
  Seconds time{};
  std::string actor;   // "ra", "admin:alice", "device:<ukid>", ...
  std::string action;  // "enroll", "reenroll", "revoke", "mount", "manifest-import", ...
  std::string object;  // what the action was about: username, serial, unique id, ...
  Outcome outcome = Outcome::accepted;
  std::string reason;
  std::string request_id;
};

struct AuditRecord {
  Id id = 0;
  AuditEvent event;
  Bytes prev_hash;  // 32 bytes; all zero for the first record
  Bytes hash;       // SHA-256(prev_hash || canonical(id, event))
};

}  // namespace hallmark::store
