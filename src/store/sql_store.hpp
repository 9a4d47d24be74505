#pragma once
// Repository logic written once on the sql::Connection surface; SqliteStore and PostgresStore only
// decide where statements run (group-commit writer, reader connections).
#include "hallmark/store/store.hpp"
#include "writer.hpp"

namespace hallmark::store {

class SqlStore : public Store {
 public:
  Result<Id> add_ca(const CaRecord& ca) override;
  Result<CaRecord> find_ca(std::string_view name) override;
  Result<std::vector<CaRecord>> list_cas() override;
  Status set_ca_status(std::string_view name, std::string_view status) override;
  Result<std::int64_t> next_crl_number(std::string_view name) override;
  Status put_crl(const CrlRecord& crl) override;
  Result<CrlRecord> find_crl(std::string_view ca_name) override;
  Result<std::vector<CrlRecord>> list_crls() override;
  Result<Id> add_trust_anchor(const TrustAnchor& anchor) override;
  Result<std::vector<TrustAnchor>> list_trust_anchors(std::string_view purpose) override;

  Result<ManifestImportResult> import_manifest(const ManifestImport& import) override;
  Result<std::unique_ptr<ManifestImportSession>> begin_manifest_import(
      const ManifestRecord& manifest) override;
  Result<ManifestRecord> find_manifest(std::string_view sha256) override;
  Result<ManifestRecord> find_manifest_by_id(Id id) override;
  Result<ManifestRecord> find_manifest_by_reel(std::string_view reel) override;
  Result<DeviceRecord> find_device(Id id) override;
  Result<DeviceRecord> find_device_by_bc_fingerprint(std::string_view bc_sha256) override;
  Result<DeviceRecord> find_device_by_unique_id(std::string_view vendor_unique_id) override;
  Result<DeviceRecord> find_device_by_ukid(std::string_view ukid) override;
  Result<std::vector<DeviceRecord>> list_devices(const DeviceFilter& filter) override;
  using InventoryStore::mount_device;
  Status mount_device(std::string_view vendor_unique_id, std::string_view station,
                      const std::optional<EndEntityRecord>& end_entity, const AuditEvent& audit) override;
  Status pin_device_key(std::string_view vendor_unique_id, const Bytes& bc_der, std::string_view bc_sha256,
                        std::optional<std::string> ukid, const AuditEvent& audit,
                        const std::optional<EndEntityRecord>& end_entity) override;
  Status retire_device(std::string_view vendor_unique_id, const AuditEvent& audit) override;
  Status mark_bc_revoked(Id device_id, const AuditEvent& audit) override;
  Status mark_bc_consumed(Id device_id, const AuditEvent& audit) override;

  Result<Id> add_end_entity(const EndEntityRecord& ee, const AuditEvent& audit) override;
  Result<EndEntityRecord> find_end_entity(std::string_view username) override;
  Status set_end_entity_state(std::string_view username, EndEntityState state,
                              const AuditEvent& audit) override;

  Result<CertificateRecord> record_issuance(const IssuanceRequest& request) override;
  Result<CertificateRecord> find_certificate_by_device_and_key(Id device_id,
                                                               std::string_view public_key_sha256) override;
  Result<CertificateRecord> find_certificate_by_serial(std::string_view serial_hex) override;
  Result<CertificateRecord> find_certificate_by_ukid(std::string_view ukid) override;
  Result<std::vector<CertificateRecord>> list_certificates(const CertificateFilter& filter) override;
  Status revoke_certificate(std::string_view serial_hex, Seconds when, int reason,
                            const AuditEvent& audit) override;
  Status record_revoked_certificate(const CertificateRecord& cert, const AuditEvent& audit) override;
  Result<std::vector<RevocationRecord>> list_revocations(std::string_view issuer_ca, Id after_id,
                                                         std::int64_t limit) override;

  Result<Id> append_audit(const AuditEvent& event) override;
  Result<std::vector<AuditRecord>> list_audit(Id after_id, std::int64_t limit) override;
  Result<Id> last_audit_id() override;
  Result<AuditVerification> verify_audit_chain() override;

  Result<SchemaStatus> migrate() override;
  Result<SchemaStatus> check() override;
  Result<IntegrityReport> integrity_check() override;
  Result<bool> try_leader_lease(std::string_view name, std::string_view holder, std::chrono::seconds ttl,
                                Seconds now) override;
  Status release_leader_lease(std::string_view name, std::string_view holder) override;

 protected:
  // One durable write transaction (batched with others by the group-commit writer).
  [[nodiscard]] virtual Status write(WriteFn fn) = 0;
  // A write that is one statement (see StatementWrite), batched like write().
  [[nodiscard]] virtual Status write_statement(StatementWrite w) = 0;
  // A write transaction batched with nothing else (long-running: streaming manifest import).
  [[nodiscard]] virtual Status write_alone(WriteFn fn) = 0;
  // A transaction of its own on the writer connection (migrations).
  [[nodiscard]] virtual Status exclusive(ConnFn fn) = 0;
  // Reads on a reader connection; `snapshot` wraps them in one read transaction.
  [[nodiscard]] virtual Status read(ConnFn fn, bool snapshot = false) = 0;
  [[nodiscard]] virtual sql::Dialect dialect() const noexcept = 0;
  // Engine-level check ("ok" or the problems found).
  [[nodiscard]] virtual Result<std::string> engine_check() = 0;

 private:
  friend class SqlImportSession;
  [[nodiscard]] Result<ManifestRecord> find_manifest_where(std::string_view column, sql::Param value);
  [[nodiscard]] Result<DeviceRecord> find_device_where(std::string_view column, sql::Param value);
  [[nodiscard]] Result<CertificateRecord> find_certificate_where(std::string_view where,
                                                                 std::initializer_list<sql::Param> params);
  // Appends a refused record for an operation that failed with `error` (its own transaction).
  void audit_refusal(AuditEvent event, const Error& error);
  [[nodiscard]] Status transition(const AuditEvent& audit, std::function<Status(WriteTx&)> change);
};

}  // namespace hallmark::store
