#pragma once
// Repositories as role interfaces, one Store facade implementing them all, and open_store(url).
// Every mutating call is one durable transaction: it returns after its commit reached disk.
// See docs/store.md for the schema, the audit chain encoding and the concurrency model.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hallmark/core/result.hpp"
#include "hallmark/store/records.hpp"

namespace hallmark::store {

class CaStore {
 public:
  virtual ~CaStore() = default;
  // conflict when the name exists.
  [[nodiscard]] virtual Result<Id> add_ca(const CaRecord& ca) = 0;
  [[nodiscard]] virtual Result<CaRecord> find_ca(std::string_view name) = 0;
  [[nodiscard]] virtual Result<std::vector<CaRecord>> list_cas() = 0;
  [[nodiscard]] virtual Status set_ca_status(std::string_view name, std::string_view status) = 0;
  // Increments and returns the CA's CRL number (atomic).
  [[nodiscard]] virtual Result<std::int64_t> next_crl_number(std::string_view name) = 0;
  // Stores `crl` as its CA's latest. conflict when a CRL with this or a higher number is stored
  // (CRL numbers only grow, RFC 5280 §5.2.3).
  [[nodiscard]] virtual Status put_crl(const CrlRecord& crl) = 0;
  // The latest CRL of the CA; not_found when none was stored yet.
  [[nodiscard]] virtual Result<CrlRecord> find_crl(std::string_view ca_name) = 0;
  // Every CA's latest CRL without its DER (cheap: for noticing which changed), by CA name.
  [[nodiscard]] virtual Result<std::vector<CrlRecord>> list_crls() = 0;

  [[nodiscard]] virtual Result<Id> add_trust_anchor(const TrustAnchor& anchor) = 0;
  [[nodiscard]] virtual Result<std::vector<TrustAnchor>> list_trust_anchors(
      std::string_view purpose = {}) = 0;
};

// What import_manifest does with an entry that contradicts the inventory.
enum class OnConflict {
  fail,  // the whole file is refused (conflict) and nothing of it is kept
  skip,  // the entry is reported in ManifestImportResult::conflicts; the rest of the file imports
};

// A manifest (or reel) file and its entries, imported in one transaction.
struct ManifestImport {
  ManifestRecord manifest;            // id and inserted_count are filled by the store
  std::vector<DeviceRecord> devices;  // id, state, flags and mount fields are ignored
  AuditEvent audit;                   // action/object describe the import; outcome set by the store
  OnConflict on_conflict = OnConflict::fail;
};

struct ManifestImportResult {
  Id manifest_id = 0;
  std::int64_t inserted = 0;    // new devices
  std::int64_t unchanged = 0;   // entries identical to a known device: no-op
  bool manifest_known = false;  // the same file (sha256) was imported before
  // OnConflict::skip (and sessions): (index of the device in the file, reason), in file order.
  std::vector<std::pair<std::size_t, std::string>> conflicts;
};

// What became of one device offered to an import.
struct DeviceImportOutcome {
  enum class Kind { inserted, unchanged, conflict };
  Kind kind = Kind::inserted;
  std::string reason;  // conflict only, e.g. "conflicts with the inventory: UKID X belongs to uniqueId Y"
};

// A streaming import of one file: ONE transaction from begin_manifest_import to commit, fed in
// batches, so memory does not grow with the file. While a session is open it holds a writer lane
// (on SQLite the only one): other writes wait for its commit. Do not call other methods of the same
// store that write (or, for sqlite::memory:, read) from the session's thread while it is open.
// The store must outlive the session.
class ManifestImportSession {
 public:
  virtual ~ManifestImportSession() = default;  // destroyed without commit: rolled back
  // The manifest row's id (assigned at begin, so devices reference it).
  [[nodiscard]] virtual Id manifest_id() const = 0;
  // Inserts within the open transaction; one outcome per device, in order. A conflicting device is
  // reported, not fatal. An error (invalid_input: an entry without unique id; unavailable, ...)
  // rolls the whole import back and ends the session.
  [[nodiscard]] virtual Result<std::vector<DeviceImportOutcome>> add(std::span<const DeviceRecord> batch) = 0;
  // Completes the manifest row (sha256 when it was not known at begin, entry_count, format, signer;
  // reel when the row has none: conflict when another manifest holds it), appends the accepted
  // audit record and commits. The result lists every conflict reported by add(). A sha256 given
  // only now that names a known manifest makes this a re-check of it (manifest_known; its id in the
  // result, any device inserted here moves to it).
  [[nodiscard]] virtual Result<ManifestImportResult> commit(const ManifestRecord& manifest,
                                                            const AuditEvent& audit) = 0;
};

// Devices in ascending id order.
struct DeviceFilter {
  std::optional<DeviceState> state = std::nullopt;
  std::optional<Id> manifest_id = std::nullopt;
  std::optional<std::string> reel = std::nullopt;  // the manifest's reel name
  std::optional<std::string> part_number = std::nullopt;
  std::int64_t limit = 1000;
  Id after_id = 0;  // paging: only ids greater than this, ascending
};

class InventoryStore {
 public:
  virtual ~InventoryStore() = default;
  // Idempotent: the same entry again is a no-op. A different entry for a known vendor unique id,
  // UKID or BC fingerprint is a conflict: with OnConflict::fail nothing of the file is imported,
  // with OnConflict::skip it is listed in the result and the other entries are imported.
  // An entry with an empty bc_der and bc_sha256 is a Lite device (stored with a NULL BC).
  // A reel name already used by another manifest is a conflict.
  [[nodiscard]] virtual Result<ManifestImportResult> import_manifest(const ManifestImport& import) = 0;
  // Streaming import: `manifest` gives format, signer, reel and, when known, sha256 (the same
  // sha256 again: manifest_known, entries only re-checked). An empty sha256 must be given to
  // commit. conflict when the reel name is taken.
  [[nodiscard]] virtual Result<std::unique_ptr<ManifestImportSession>> begin_manifest_import(
      const ManifestRecord& manifest) = 0;
  [[nodiscard]] virtual Result<ManifestRecord> find_manifest(std::string_view sha256) = 0;
  [[nodiscard]] virtual Result<ManifestRecord> find_manifest_by_id(Id id) = 0;
  [[nodiscard]] virtual Result<ManifestRecord> find_manifest_by_reel(std::string_view reel) = 0;

  [[nodiscard]] virtual Result<DeviceRecord> find_device(Id id) = 0;
  [[nodiscard]] virtual Result<DeviceRecord> find_device_by_bc_fingerprint(std::string_view bc_sha256) = 0;
  [[nodiscard]] virtual Result<DeviceRecord> find_device_by_unique_id(std::string_view vendor_unique_id) = 0;
  [[nodiscard]] virtual Result<DeviceRecord> find_device_by_ukid(std::string_view ukid) = 0;
  [[nodiscard]] virtual Result<std::vector<DeviceRecord>> list_devices(const DeviceFilter& filter) = 0;

  // received -> mounted (conflict from any other state) and, in the same transaction, the device's
  // end entity (device_id is set to the device; an existing end entity of this very device with
  // that username is reused, one of another device is a conflict). The audit records (mount, and
  // end-entity-create when one is created) are appended in the same transaction.
  [[nodiscard]] virtual Status mount_device(std::string_view vendor_unique_id, std::string_view station,
                                            const std::optional<EndEntityRecord>& end_entity,
                                            const AuditEvent& audit) = 0;
  [[nodiscard]] Status mount_device(std::string_view vendor_unique_id, std::string_view station,
                                    const AuditEvent& audit) {
    return mount_device(vendor_unique_id, station, std::nullopt, audit);
  }
  // Lite devices: records the key learned at first contact (its certificate or SPKI DER, its SHA-256
  // and, optionally, the UKID). Only while the device has no BC; conflict otherwise, or when the
  // fingerprint/UKID belongs to another device; not_found for an unknown device. With `end_entity`,
  // the device's end entity still `new` takes its username and subject_json in the same transaction
  // (mounted without a key, it was keyed by the unique id; now it is keyed as its key dictates).
  [[nodiscard]] virtual Status pin_device_key(std::string_view vendor_unique_id, const Bytes& bc_der,
                                              std::string_view bc_sha256, std::optional<std::string> ukid,
                                              const AuditEvent& audit,
                                              const std::optional<EndEntityRecord>& end_entity) = 0;
  [[nodiscard]] Status pin_device_key(std::string_view vendor_unique_id, const Bytes& bc_der,
                                      std::string_view bc_sha256, std::optional<std::string> ukid,
                                      const AuditEvent& audit) {
    return pin_device_key(vendor_unique_id, bc_der, bc_sha256, std::move(ukid), audit, std::nullopt);
  }
  // any state -> retired.
  [[nodiscard]] virtual Status retire_device(std::string_view vendor_unique_id, const AuditEvent& audit) = 0;
  // BC flags: revoked (our own BC CA revoked it) or consumed (a vendor's BC used up).
  [[nodiscard]] virtual Status mark_bc_revoked(Id device_id, const AuditEvent& audit) = 0;
  [[nodiscard]] virtual Status mark_bc_consumed(Id device_id, const AuditEvent& audit) = 0;
};

class EndEntityStore {
 public:
  virtual ~EndEntityStore() = default;
  // conflict when the username exists.
  [[nodiscard]] virtual Result<Id> add_end_entity(const EndEntityRecord& ee, const AuditEvent& audit) = 0;
  [[nodiscard]] virtual Result<EndEntityRecord> find_end_entity(std::string_view username) = 0;
  [[nodiscard]] virtual Status set_end_entity_state(std::string_view username, EndEntityState state,
                                                    const AuditEvent& audit) = 0;
};

enum class IssuanceKind {
  enroll,    // end entity must be `new` with requests left; becomes `generated`, issued_count + 1
  reenroll,  // end entity must be `generated`; renewal_count + 1
};

// A flag an issuance also sets on its device's BC (an EST alias's after_issue).
enum class BcMark { none, revoked, consumed };

struct IssuanceRequest {
  IssuanceKind kind = IssuanceKind::enroll;
  std::string username;  // the end entity; its device gets state `enrolled`
  // serial_hex, issuer_ca, subject, validity, public_key_sha256, der; device_id and end_entity_id
  // are taken from the end entity.
  CertificateRecord certificate;
  // time, actor, action, object (defaults to the username), request_id; the outcome and, for a
  // refusal, the reason are set by the store.
  AuditEvent audit;
  // Set on the end entity's device in the same transaction (nothing when it has none), audited by
  // `bc_audit` (action defaults to bc-revoke / bc-consume, object to the device).
  BcMark mark_bc = BcMark::none;
  AuditEvent bc_audit;
};

struct CertificateFilter {
  std::optional<std::string> issuer_ca = std::nullopt;
  std::optional<Id> device_id = std::nullopt;
  std::optional<CertificateStatus> status = std::nullopt;
  std::optional<Seconds> expiring_before = std::nullopt;  // not_after < this
  std::int64_t limit = 1000;
  Id after_id = 0;  // paging: only ids greater than this, ascending
};

class CertificateStore {
 public:
  virtual ~CertificateStore() = default;
  // THE issuance transaction: checks the end entity, inserts the certificate, updates end entity
  // and device, appends the accepted audit record, all in one transaction. A refusal (conflict:
  // duplicate serial, end entity not issuable; not_found: unknown end entity) is returned as the
  // error and audited as refused in a transaction of its own.
  [[nodiscard]] virtual Result<CertificateRecord> record_issuance(const IssuanceRequest& request) = 0;
  // For idempotent retry: the newest good certificate of this device with this public key.
  [[nodiscard]] virtual Result<CertificateRecord> find_certificate_by_device_and_key(
      Id device_id, std::string_view public_key_sha256) = 0;
  [[nodiscard]] virtual Result<CertificateRecord> find_certificate_by_serial(std::string_view serial_hex) = 0;
  // The newest certificate of the device whose UKID is given (for `cert export --ukid`).
  [[nodiscard]] virtual Result<CertificateRecord> find_certificate_by_ukid(std::string_view ukid) = 0;
  [[nodiscard]] virtual Result<std::vector<CertificateRecord>> list_certificates(
      const CertificateFilter& filter) = 0;
  // good -> revoked, with the audit record, in one transaction. conflict when already revoked.
  [[nodiscard]] virtual Status revoke_certificate(std::string_view serial_hex, Seconds when, int reason,
                                                  const AuditEvent& audit) = 0;
  // A certificate hallmark did not issue through record_issuance (a BC of its own BC CA, an IDC of a
  // vendor-held CA learned from a manifest) recorded as revoked, with the audit record, in one
  // transaction. `cert.status` must be revoked with revoked_at set (invalid_input otherwise);
  // conflict when the serial is already recorded.
  [[nodiscard]] virtual Status record_revoked_certificate(const CertificateRecord& cert,
                                                          const AuditEvent& audit) = 0;
  // The revoked certificates of a CA in ascending id order, paged: a CRL of millions of entries
  // streams through this without loading the certificates.
  [[nodiscard]] virtual Result<std::vector<RevocationRecord>> list_revocations(std::string_view issuer_ca,
                                                                               Id after_id,
                                                                               std::int64_t limit) = 0;
};

struct AuditVerification {
  bool ok = true;
  std::int64_t records = 0;           // records checked
  std::optional<Id> first_broken_id;  // the first record that is missing, changed or out of place
  std::string reason;                 // why it is broken
  Bytes head_hash;                    // hash of the last record (anchor it elsewhere)
};

class AuditLog {
 public:
  virtual ~AuditLog() = default;
  [[nodiscard]] virtual Result<Id> append_audit(const AuditEvent& event) = 0;
  [[nodiscard]] virtual Result<std::vector<AuditRecord>> list_audit(Id after_id, std::int64_t limit) = 0;
  // The id of the newest record (0 when the log is empty): where a follower of the log starts.
  [[nodiscard]] virtual Result<Id> last_audit_id() = 0;
  // Walks the whole chain; ok=false names the first broken record.
  [[nodiscard]] virtual Result<AuditVerification> verify_audit_chain() = 0;
};

struct SchemaStatus {
  int current_version = 0;
  int latest_version = 0;
  [[nodiscard]] bool pending() const { return current_version < latest_version; }
};

struct IntegrityReport {
  bool ok = true;
  std::string detail;  // "ok" or what is wrong (database engine check, audit chain)
  AuditVerification audit;
};

class Store : public CaStore,
              public InventoryStore,
              public EndEntityStore,
              public CertificateStore,
              public AuditLog {
 public:
  // "sqlite", "postgresql"
  [[nodiscard]] virtual std::string_view backend() const noexcept = 0;

  // Applies pending migrations; idempotent (and safe when several nodes start together).
  [[nodiscard]] virtual Result<SchemaStatus> migrate() = 0;
  // Reports the schema version without changing anything.
  [[nodiscard]] virtual Result<SchemaStatus> check() = 0;
  // Engine check (SQLite: PRAGMA integrity_check) plus the audit chain.
  [[nodiscard]] virtual Result<IntegrityReport> integrity_check() = 0;

  // Leader-only jobs (CRL generation): true when `holder` holds the lease `name` until now + ttl.
  // A lease row with expiry (works on PostgreSQL-compatible distributed engines too).
  [[nodiscard]] virtual Result<bool> try_leader_lease(std::string_view name, std::string_view holder,
                                                      std::chrono::seconds ttl, Seconds now) = 0;
  [[nodiscard]] virtual Status release_leader_lease(std::string_view name, std::string_view holder) = 0;
};

struct StoreOptions {
  // PostgreSQL: connections for readers (the writer has one more of its own).
  int pool_size = 8;
  // Most transactions the writer commits together.
  int max_batch = 256;
  // PostgreSQL: writer connections committing batches concurrently (SQLite always has one).
  int writers = 4;
};

// "sqlite:PATH", "sqlite::memory:", "postgresql://..." or "postgres://...". Does not migrate.
// invalid_input for an unknown scheme, unavailable when the database cannot be reached.
[[nodiscard]] Result<std::unique_ptr<Store>> open_store(std::string_view url,
                                                        const StoreOptions& options = {});

}  // namespace hallmark::store
