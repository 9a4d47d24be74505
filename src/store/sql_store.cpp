#include "sql_store.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "hallmark/core/log.hpp"
#include "hallmark/store/audit.hpp"
#include "schema.hpp"

namespace hallmark::store {

using sql::Param;
using sql::Row;

namespace {

constexpr std::string_view kCaCols = "id, name, role, certificate, key_ref, status, crl_number, external";
constexpr std::string_view kAnchorCols = "id, name, purpose, certificate, sha256";
constexpr std::string_view kManifestCols =
    "id, format, signer, sha256, entry_count, inserted_count, imported_at, reel";
constexpr std::string_view kDeviceCols =
    "id, vendor_unique_id, ukid, bc, bc_sha256, bc_issuer, manifest_id, part_number, state, bc_revoked, "
    "bc_consumed, mounted_at, station, ukid_secret_digest";
constexpr std::string_view kEndEntityCols =
    "id, username, device_id, est_alias, subject_json, state, allowed_requests, issued_count, renewal_count";
constexpr std::string_view kCertCols =
    "id, serial, issuer_ca, device_id, end_entity_id, subject, not_before, not_after, public_key_sha256, "
    "der, "
    "status, revoked_at, reason";
constexpr std::string_view kAuditCols =
    "id, event_time, actor, action, object, outcome, reason, request_id, prev_hash, hash";

// Rows for manifest import are inserted this many at a time.
constexpr std::size_t kImportChunk = 100;

std::string cat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (auto p : parts) out += p;
  return out;
}

CaRecord to_ca(const Row& r) {
  return CaRecord{r.i64(0), r.text(1), r.text(2), r.blob(3), r.text(4), r.text(5), r.i64(6), r.boolean(7)};
}

TrustAnchor to_anchor(const Row& r) {
  return TrustAnchor{r.i64(0), r.text(1), r.text(2), r.blob(3), r.text(4)};
}

ManifestRecord to_manifest(const Row& r) {
  return ManifestRecord{r.i64(0), r.text(1), r.text(2), r.text(3), r.i64(4), r.i64(5), r.time(6), r.text(7)};
}

DeviceRecord to_device(const Row& r) {
  DeviceRecord d;
  d.id = r.i64(0);
  d.vendor_unique_id = r.text(1);
  d.ukid = r.opt_text(2);
  d.bc_der = r.blob(3);
  d.bc_sha256 = r.text(4);
  d.bc_issuer = r.text(5);
  d.manifest_id = r.opt_i64(6);
  d.part_number = r.text(7);
  d.state = parse_device_state(r.text(8)).value_or(DeviceState::received);
  d.bc_revoked = r.boolean(9);
  d.bc_consumed = r.boolean(10);
  d.mounted_at = r.opt_time(11);
  d.station = r.text(12);
  d.ukid_secret_digest = r.opt_text(13);
  return d;
}

EndEntityRecord to_end_entity(const Row& r) {
  EndEntityRecord e;
  e.id = r.i64(0);
  e.username = r.text(1);
  e.device_id = r.opt_i64(2);
  e.est_alias = r.text(3);
  e.subject_json = r.text(4);
  e.state = parse_end_entity_state(r.text(5)).value_or(EndEntityState::pending);
  e.allowed_requests = r.i64(6);
  e.issued_count = r.i64(7);
  e.renewal_count = r.i64(8);
  return e;
}

CertificateRecord to_certificate(const Row& r) {
  CertificateRecord c;
  c.id = r.i64(0);
  c.serial_hex = r.text(1);
  c.issuer_ca = r.text(2);
  c.device_id = r.opt_i64(3);
  c.end_entity_id = r.opt_i64(4);
  c.subject = r.text(5);
  c.not_before = r.time(6);
  c.not_after = r.time(7);
  c.public_key_sha256 = r.text(8);
  c.der = r.blob(9);
  c.status = r.text(10) == "revoked" ? CertificateStatus::revoked : CertificateStatus::good;
  c.revoked_at = r.opt_time(11);
  if (!r.is_null(12)) c.reason = static_cast<int>(r.i64(12));
  return c;
}

AuditRecord to_audit(const Row& r) {
  AuditRecord a;
  a.id = r.i64(0);
  a.event.time = r.time(1);
  a.event.actor = r.text(2);
  a.event.action = r.text(3);
  a.event.object = r.text(4);
  a.event.outcome = r.text(5) == "accepted" ? Outcome::accepted : Outcome::refused;
  a.event.reason = r.text(6);
  a.event.request_id = r.text(7);
  a.prev_hash = r.blob(8);
  a.hash = r.blob(9);
  return a;
}

// Why `d` contradicts the known device `known` with the same unique id; empty when it does not
// (worded for people: inventory reports it per entry).
std::string difference(const DeviceRecord& known, const DeviceRecord& d) {
  const std::string prefix = "conflicts with the inventory: uniqueId " + d.vendor_unique_id + " is known ";
  auto fp = [](const std::string& s) { return s.empty() ? std::string("(none)") : s; };
  // An entry without a BC for a device that has one since (a Lite device whose key was pinned)
  // adds nothing: unchanged when the rest agrees.
  const bool pinned_since = d.bc_sha256.empty() && !known.bc_sha256.empty() && !d.ukid;
  if (known.bc_sha256 != d.bc_sha256 && !pinned_since)
    return prefix + "with BC sha256 " + fp(known.bc_sha256) + ", this entry has " + fp(d.bc_sha256);
  if (known.ukid_secret_digest != d.ukid_secret_digest) return prefix + "with a different ukidSecretDigest";
  if (known.part_number != d.part_number)
    return prefix + "as part " + known.part_number + ", this entry says " + d.part_number;
  if (pinned_since) return {};
  if (known.ukid != d.ukid) return prefix + "with a different UKID";
  if (known.bc_der != d.bc_der || known.bc_issuer != d.bc_issuer) return prefix + "with a different BC";
  return {};
}

Param text_or_null(const std::string& s) {
  return s.empty() ? Param{nullptr} : Param{std::string_view(s)};
}

// An insert that did nothing: which unique key the entry shares with another device.
Result<DeviceImportOutcome> explain_clash(sql::Connection& db, const DeviceRecord& d) {
  using Kind = DeviceImportOutcome::Kind;
  auto known = HM_TRY(db.query(cat({"SELECT ", kDeviceCols, " FROM devices WHERE vendor_unique_id = ?"}),
                               {std::string_view(d.vendor_unique_id)}));
  if (!known.empty()) {  // inserted meanwhile by another transaction
    auto why = difference(to_device(known.front()), d);
    return DeviceImportOutcome{why.empty() ? Kind::unchanged : Kind::conflict, why};
  }
  if (!d.bc_sha256.empty()) {
    auto rows = HM_TRY(db.query("SELECT vendor_unique_id FROM devices WHERE bc_sha256 = ?",
                                {std::string_view(d.bc_sha256)}));
    if (!rows.empty())
      return DeviceImportOutcome{Kind::conflict, "conflicts with the inventory: BC sha256 " + d.bc_sha256 +
                                                     " belongs to uniqueId " + rows.front().text(0)};
  }
  if (d.ukid) {
    auto rows = HM_TRY(db.query("SELECT vendor_unique_id FROM devices WHERE ukid = ?", {sql::opt(d.ukid)}));
    if (!rows.empty())
      return DeviceImportOutcome{Kind::conflict, "conflicts with the inventory: UKID " + *d.ukid +
                                                     " belongs to uniqueId " + rows.front().text(0)};
  }
  return DeviceImportOutcome{Kind::conflict, "conflicts with the inventory (unique id, UKID or BC)"};
}

// Checks and inserts up to kImportChunk devices of manifest `manifest_id`: one SELECT for the known
// ones, one multi-row INSERT ... ON CONFLICT DO NOTHING for the new ones (a clash with another
// device's UKID or BC is then explained, not fatal: the transaction stays usable on PostgreSQL).
// Appends one outcome per device. An earlier chunk's devices are visible, so a repeat within the
// file is "unchanged" (or a conflict when it differs).
Status import_chunk(sql::Connection& db, Id manifest_id, std::span<const DeviceRecord> chunk,
                    std::vector<DeviceImportOutcome>& out) {
  using Kind = DeviceImportOutcome::Kind;
  for (const auto& d : chunk) {
    if (d.vendor_unique_id.empty()) return fail(Errc::invalid_input, "manifest entry without unique id");
    if (!d.bc_der.empty() && d.bc_sha256.empty())
      return fail(Errc::invalid_input,
                  "manifest entry " + d.vendor_unique_id + ": a BC needs its fingerprint");
  }
  std::string select = cat({"SELECT ", kDeviceCols, " FROM devices WHERE vendor_unique_id IN ("});
  std::vector<Param> keys;
  for (const auto& d : chunk) {
    select += keys.empty() ? "?" : ", ?";
    keys.emplace_back(std::string_view(d.vendor_unique_id));
  }
  select += ")";
  std::map<std::string, DeviceRecord, std::less<>> existing;
  for (const auto& r : HM_TRY(db.query(select, keys))) {
    auto d = to_device(r);
    existing.emplace(d.vendor_unique_id, std::move(d));
  }

  std::vector<DeviceImportOutcome> res(chunk.size());
  std::map<std::string_view, std::size_t> first;  // in this chunk
  std::vector<std::size_t> candidates;
  for (std::size_t i = 0; i < chunk.size(); ++i) {
    const auto& d = chunk[i];
    if (auto it = existing.find(d.vendor_unique_id); it != existing.end()) {
      auto why = difference(it->second, d);
      res[i] = {why.empty() ? Kind::unchanged : Kind::conflict, std::move(why)};
    } else if (auto [f, fresh] = first.emplace(d.vendor_unique_id, i); !fresh) {
      auto why = difference(chunk[f->second], d);
      res[i] = {why.empty() ? Kind::unchanged : Kind::conflict, std::move(why)};
    } else {
      candidates.push_back(i);
    }
  }
  if (!candidates.empty()) {
    std::string insert =
        "INSERT INTO devices (vendor_unique_id, ukid, bc, bc_sha256, bc_issuer, manifest_id, part_number, "
        "ukid_secret_digest) VALUES ";
    std::vector<Param> values;
    values.reserve(candidates.size() * 8);
    for (std::size_t i : candidates) {
      const auto& d = chunk[i];
      insert += values.empty() ? "(?, ?, ?, ?, ?, ?, ?, ?)" : ", (?, ?, ?, ?, ?, ?, ?, ?)";
      values.insert(values.end(),
                    {Param{std::string_view(d.vendor_unique_id)}, sql::opt(d.ukid),
                     // NULL exactly when there is no fingerprint (Lite); a fingerprint alone (the
                     // vendor station's register) keeps an empty BC.
                     d.bc_sha256.empty() ? Param{nullptr} : Param{ByteView(d.bc_der)},
                     text_or_null(d.bc_sha256), Param{std::string_view(d.bc_issuer)}, Param{manifest_id},
                     Param{std::string_view(d.part_number)}, sql::opt(d.ukid_secret_digest)});
    }
    insert += " ON CONFLICT DO NOTHING RETURNING vendor_unique_id";
    std::set<std::string, std::less<>> inserted;
    for (const auto& r : HM_TRY(db.query(insert, values))) inserted.insert(r.text(0));
    for (std::size_t i : candidates) {
      if (inserted.contains(chunk[i].vendor_unique_id)) {
        res[i] = {Kind::inserted, {}};
      } else {
        res[i] = HM_TRY(explain_clash(db, chunk[i]));
      }
    }
  }
  out.insert(out.end(), std::make_move_iterator(res.begin()), std::make_move_iterator(res.end()));
  return {};
}

// The manifest row of an import: the known one (same sha256), or a new one. conflict when the reel
// name belongs to another manifest.
Status manifest_row(sql::Connection& db, const ManifestRecord& m, std::string_view sha256,
                    std::int64_t entry_count, ManifestImportResult& result) {
  if (!m.sha256.empty()) {
    auto known = HM_TRY(db.query("SELECT id FROM manifests WHERE sha256 = ?", {std::string_view(m.sha256)}));
    if (!known.empty()) {
      result.manifest_known = true;
      result.manifest_id = known.front().i64(0);
      return {};
    }
  }
  if (!m.reel.empty()) {
    auto taken = HM_TRY(db.query("SELECT sha256 FROM manifests WHERE reel = ?", {std::string_view(m.reel)}));
    if (!taken.empty())
      return fail(Errc::conflict,
                  "reel " + m.reel + " is already recorded (manifest sha256 " + taken.front().text(0) + ")");
  }
  auto rows = db.query(
      "INSERT INTO manifests (format, signer, sha256, entry_count, inserted_count, imported_at, reel) "
      "VALUES (?, ?, ?, ?, 0, ?, ?) RETURNING id",
      {std::string_view(m.format), std::string_view(m.signer), sha256, entry_count, sql::secs(m.imported_at),
       text_or_null(m.reel)});
  if (!rows) {
    if (rows.error().code == Errc::conflict)
      return fail(Errc::conflict, "manifest " + std::string(sha256) + " or reel " + m.reel +
                                      " is already recorded: " + rows.error().detail);
    return std::unexpected(rows.error());
  }
  result.manifest_id = rows->front().i64(0);
  return {};
}

template <class T>
Result<T> first_or_not_found(Result<sql::Rows> rows, T (*convert)(const Row&), std::string what) {
  if (!rows) return std::unexpected(rows.error());
  if (rows->empty()) return fail(Errc::not_found, std::move(what));
  return convert(rows->front());
}

Seconds wall_now() {
  return std::chrono::time_point_cast<std::chrono::seconds>(std::chrono::system_clock::now());
}

}  // namespace

// ---------------------------------------------------------------- CAs

Result<Id> SqlStore::add_ca(const CaRecord& ca) {
  if (ca.name.empty()) return fail(Errc::invalid_input, "CA name is empty");
  Id id = 0;
  HM_TRY_VOID(write([&](WriteTx& tx) -> Status {
    auto rows = tx.conn().query(
        "INSERT INTO cas (name, role, certificate, key_ref, status, crl_number, external) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        {ca.name, ca.role, ByteView(ca.certificate_der), ca.key_ref, ca.status, ca.crl_number,
         sql::flag(ca.external)});
    if (!rows) return std::unexpected(rows.error().with_context("add CA " + ca.name));
    id = rows->front().i64(0);
    return {};
  }));
  return id;
}

Result<CaRecord> SqlStore::find_ca(std::string_view name) {
  Result<CaRecord> out = fail(Errc::internal, "unset");
  HM_TRY_VOID(read([&](sql::Connection& db) -> Status {
    out = first_or_not_found(db.query(cat({"SELECT ", kCaCols, " FROM cas WHERE name = ?"}), {name}), to_ca,
                             "no CA named " + std::string(name));
    return {};
  }));
  return out;
}

Result<std::vector<CaRecord>> SqlStore::list_cas() {
  std::vector<CaRecord> out;
  HM_TRY_VOID(read([&](sql::Connection& db) -> Status {
    auto rows = HM_TRY(db.query(cat({"SELECT ", kCaCols, " FROM cas ORDER BY id"})));
    for (const auto& r : rows) out.push_back(to_ca(r));
    return {};
  }));
  return out;
}

Status SqlStore::set_ca_status(std::string_view name, std::string_view status) {
  return write([&](WriteTx& tx) -> Status {
    auto n = HM_TRY(tx.conn().execute("UPDATE cas SET status = ? WHERE name = ?", {status, name}));
    if (n == 0) return fail(Errc::not_found, "no CA named " + std::string(name));
    return {};
  });
}

Result<std::int64_t> SqlStore::next_crl_number(std::string_view name) {
  std::int64_t number = 0;
  HM_TRY_VOID(write([&](WriteTx& tx) -> Status {
    auto rows = HM_TRY(tx.conn().query(
        "UPDATE cas SET crl_number = crl_number + 1 WHERE name = ? RETURNING crl_number", {name}));
    if (rows.empty()) return fail(Errc::not_found, "no CA named " + std::string(name));
    number = rows.front().i64(0);
    return {};
  }));
  return number;
}

Status SqlStore::put_crl(const CrlRecord& crl) {
  if (crl.ca_name.empty() || crl.der.empty()) return fail(Errc::invalid_input, "CRL without CA name or DER");
  return write([&](WriteTx& tx) -> Status {
    // Only a higher number replaces the stored CRL: two leaders in a row never step back.
    auto rows = HM_TRY(tx.conn().query(
        "INSERT INTO crls (ca_name, crl_number, this_update, next_update, der) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (ca_name) DO UPDATE SET crl_number = excluded.crl_number, this_update = "
        "excluded.this_update, next_update = excluded.next_update, der = excluded.der "
        "WHERE crls.crl_number < excluded.crl_number RETURNING crl_number",
        {crl.ca_name, crl.crl_number, sql::secs(crl.this_update), sql::secs(crl.next_update),
         ByteView(crl.der)}));
    if (rows.empty()) {
      return fail(Errc::conflict, "a CRL numbered " + std::to_string(crl.crl_number) + " or higher of CA " +
                                      crl.ca_name + " is stored");
    }
    return {};
  });
}

Result<CrlRecord> SqlStore::find_crl(std::string_view ca_name) {
  Result<CrlRecord> out = fail(Errc::internal, "unset");
  HM_TRY_VOID(read([&](sql::Connection& db) -> Status {
    out = first_or_not_found(
        db.query("SELECT ca_name, crl_number, this_update, next_update, der FROM crls WHERE ca_name = ?",
                 {ca_name}),
        +[](const Row& r) {
          return CrlRecord{r.text(0), r.i64(1), r.time(2), r.time(3), r.blob(4)};
        },
        "no CRL of CA " + std::string(ca_name) + " yet");
    return {};
  }));
  return out;
}

Result<std::vector<CrlRecord>> SqlStore::list_crls() {
  std::vector<CrlRecord> out;
  HM_TRY_VOID(read([&](sql::Connection& db) -> Status {
    for (const auto& r :
         HM_TRY(db.query("SELECT ca_name, crl_number, this_update, next_update FROM crls ORDER BY ca_name")))
      out.push_back(CrlRecord{r.text(0), r.i64(1), r.time(2), r.time(3), {}});
    return {};
  }));
  return out;
}

Result<Id> SqlStore::add_trust_anchor(const TrustAnchor& anchor) {
  Id id = 0;
  HM_TRY_VOID(write([&](WriteTx& tx) -> Status {
    auto rows = tx.conn().query(
        "INSERT INTO trust_anchors (name, purpose, certificate, sha256) VALUES (?, ?, ?, ?) RETURNING id",
        {anchor.name, anchor.purpose, ByteView(anchor.certificate_der), anchor.sha256});
    if (!rows) return std::unexpected(rows.error().with_context("add trust anchor " + anchor.name));
    id = rows->front().i64(0);
    return {};
  }));
  return id;
}

Result<std::vector<TrustAnchor>> SqlStore::list_trust_anchors(std::string_view purpose) {
  std::vector<TrustAnchor> out;
  HM_TRY_VOID(read([&](sql::Connection& db) -> Status {
    auto rows = purpose.empty()
                    ? HM_TRY(db.query(cat({"SELECT ", kAnchorCols, " FROM trust_anchors ORDER BY id"})))
                    : HM_TRY(db.query(
                          cat({"SELECT ", kAnchorCols, " FROM trust_anchors WHERE purpose = ? ORDER BY id"}),
                          {purpose}));
    for (const auto& r : rows) out.push_back(to_anchor(r));
    return {};
  }));
  return out;
}

// ---------------------------------------------------------------- inventory

Result<ManifestImportResult> SqlStore::import_manifest(const ManifestImport& import) {
  const auto& m = import.manifest;
  AuditEvent ev = import.audit;
  if (ev.action.empty()) ev.action = "manifest-import";
  if (ev.object.empty()) ev.object = m.sha256;
  if (m.sha256.empty()) {
    Error e{Errc::invalid_input, "manifest sha256 is empty"};
    audit_refusal(ev, e);
    return std::unexpected(e);
  }
  ManifestImportResult result;
  auto st = write([&](WriteTx& tx) -> Status {
    auto& db = tx.conn();
    result = ManifestImportResult{};
    HM_TRY_VOID(manifest_row(db, m, m.sha256, static_cast<std::int64_t>(import.devices.size()), result));
    std::vector<DeviceImportOutcome> outcomes;
    for (std::size_t start = 0; start < import.devices.size(); start += kImportChunk) {
      const auto chunk =
          std::span(import.devices).subspan(start, std::min(kImportChunk, import.devices.size() - start));
      outcomes.clear();
      HM_TRY_VOID(import_chunk(db, result.manifest_id, chunk, outcomes));
      for (std::size_t i = 0; i < outcomes.size(); ++i) {
        switch (outcomes[i].kind) {
          case DeviceImportOutcome::Kind::inserted: ++result.inserted; break;
          case DeviceImportOutcome::Kind::unchanged: ++result.unchanged; break;
          case DeviceImportOutcome::Kind::conflict:
            if (import.on_conflict == OnConflict::fail) return fail(Errc::conflict, outcomes[i].reason);
            result.conflicts.emplace_back(start + i, std::move(outcomes[i].reason));
            break;
        }
      }
    }
    if (!result.manifest_known) {
      HM_TRY_VOID(db.execute("UPDATE manifests SET inserted_count = ? WHERE id = ?",
                             {result.inserted, result.manifest_id}));
    }
    AuditEvent accepted = ev;
    accepted.outcome = Outcome::accepted;
    accepted.reason =
        "inserted=" + std::to_string(result.inserted) + " unchanged=" + std::to_string(result.unchanged) +
        (result.conflicts.empty() ? "" : " conflicts=" + std::to_string(result.conflicts.size()));
    tx.append_audit(accepted);
    return {};
  });
  if (!st) {
    audit_refusal(ev, st.error());
    return std::unexpected(st.error());
  }
  return result;
}

// ---- streaming import: a thread of the session runs one write transaction (alone on a writer
// lane) and takes commands from the caller until commit or abandonment.

class SqlImportSession final : public ManifestImportSession {
 public:
  SqlImportSession(SqlStore& store, ManifestRecord manifest)
      : store_(store), manifest_(std::move(manifest)) {}

  ~SqlImportSession() override {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(mu_);
      if (!finished_) cmd_ = Cmd::abort;
    }
    cv_.notify_all();
    thread_.join();
  }

  Status start() {
    thread_ = std::thread([this] {
      auto st = store_.write_alone([this](WriteTx& tx) { return body(tx); });
      {
        std::lock_guard lock(mu_);
        final_ = std::move(st);
        finished_ = true;
      }
      cv_.notify_all();
    });
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return replied_ || finished_; });
    if (replied_) return reply_;
    return final_ ? fail(Errc::internal, "manifest import ended at begin") : final_;
  }

  Id manifest_id() const override { return result_.manifest_id; }

  Result<std::vector<DeviceImportOutcome>> add(std::span<const DeviceRecord> batch) override {
    std::unique_lock lock(mu_);
    if (finished_ || committing_)
      return fail(Errc::invalid_input, "manifest import session is over" +
                                           (final_ ? std::string() : ": " + final_.error().detail));
    replied_ = false;
    batch_ = batch;
    cmd_ = Cmd::add;
    cv_.notify_all();
    cv_.wait(lock, [&] { return replied_ || finished_; });
    if (!replied_) return std::unexpected(final_ ? Error{Errc::internal, "import ended"} : final_.error());
    if (!reply_) return std::unexpected(reply_.error());
    return std::move(outcomes_);
  }

  Result<ManifestImportResult> commit(const ManifestRecord& manifest, const AuditEvent& audit) override {
    {
      std::unique_lock lock(mu_);
      if (finished_ || committing_)
        return fail(Errc::invalid_input, "manifest import session is over" +
                                             (final_ ? std::string() : ": " + final_.error().detail));
      final_manifest_ = manifest;
      audit_ = audit;
      if (audit_.action.empty()) audit_.action = "manifest-import";
      if (audit_.object.empty()) audit_.object = manifest.sha256.empty() ? manifest_.sha256 : manifest.sha256;
      committing_ = true;
      cmd_ = Cmd::commit;
      cv_.notify_all();
      cv_.wait(lock, [&] { return finished_; });
    }
    thread_.join();
    if (!final_) {
      store_.audit_refusal(audit_, final_.error());
      return std::unexpected(final_.error());
    }
    return result_;
  }

 private:
  enum class Cmd { none, add, commit, abort };

  Status body(WriteTx& tx) {
    auto& db = tx.conn();
    Status st = begin(db);
    {
      std::lock_guard lock(mu_);
      reply_ = st;
      replied_ = true;
    }
    cv_.notify_all();
    if (!st) return st;
    for (;;) {
      Cmd cmd = Cmd::none;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return cmd_ != Cmd::none; });
        cmd = std::exchange(cmd_, Cmd::none);
      }
      if (cmd == Cmd::abort) return fail(Errc::internal, "manifest import abandoned before commit");
      if (cmd == Cmd::commit) return finish(tx);
      std::vector<DeviceImportOutcome> outcomes;
      outcomes.reserve(batch_.size());
      for (std::size_t start = 0; st && start < batch_.size(); start += kImportChunk)
        st = import_chunk(db, result_.manifest_id,
                          batch_.subspan(start, std::min(kImportChunk, batch_.size() - start)), outcomes);
      if (st) {
        for (std::size_t i = 0; i < outcomes.size(); ++i) {
          switch (outcomes[i].kind) {
            case DeviceImportOutcome::Kind::inserted: ++result_.inserted; break;
            case DeviceImportOutcome::Kind::unchanged: ++result_.unchanged; break;
            case DeviceImportOutcome::Kind::conflict:
              result_.conflicts.emplace_back(offered_ + i, outcomes[i].reason);
              break;
          }
        }
        offered_ += batch_.size();
      }
      {
        std::lock_guard lock(mu_);
        reply_ = st;
        outcomes_ = std::move(outcomes);
        replied_ = true;
      }
      cv_.notify_all();
      if (!st) return st;
    }
  }

  Status begin(sql::Connection& db) {
    std::string sha256 = manifest_.sha256;
    if (sha256.empty()) {  // until commit names it: unique, and never visible outside this transaction
      static std::atomic<std::uint64_t> counter{0};
      sha256 = "pending-import-" +
               std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + "-" +
               std::to_string(counter.fetch_add(1));
    }
    return manifest_row(db, manifest_, sha256, 0, result_);
  }

  Status finish(WriteTx& tx) {
    auto& db = tx.conn();
    const auto& m = final_manifest_;
    if (m.sha256.empty() && manifest_.sha256.empty())
      return fail(Errc::invalid_input, "manifest sha256 is empty");
    if (!manifest_.sha256.empty() && !m.sha256.empty() && m.sha256 != manifest_.sha256)
      return fail(Errc::invalid_input, "manifest sha256 at commit differs from the one at begin");
    const std::string sha256 = m.sha256.empty() ? manifest_.sha256 : m.sha256;
    if (!result_.manifest_known) {
      auto other = HM_TRY(db.query("SELECT id FROM manifests WHERE sha256 = ? AND id <> ?",
                                   {std::string_view(sha256), result_.manifest_id}));
      if (!other.empty()) {
        // The file turned out to be a known one (its sha256 was not known at begin): a re-check of
        // that manifest, which takes any device this session inserted.
        const Id known = other.front().i64(0);
        HM_TRY_VOID(db.execute("UPDATE devices SET manifest_id = ? WHERE manifest_id = ?",
                               {known, result_.manifest_id}));
        HM_TRY_VOID(db.execute("DELETE FROM manifests WHERE id = ?", {result_.manifest_id}));
        HM_TRY_VOID(db.execute("UPDATE manifests SET inserted_count = inserted_count + ? WHERE id = ?",
                               {result_.inserted, known}));
        result_.manifest_known = true;
        result_.manifest_id = known;
      } else {
        if (!m.reel.empty() && m.reel != manifest_.reel) {
          auto taken = HM_TRY(db.query("SELECT sha256 FROM manifests WHERE reel = ? AND id <> ?",
                                       {std::string_view(m.reel), result_.manifest_id}));
          if (!taken.empty())
            return fail(Errc::conflict, "reel " + m.reel + " is already recorded (manifest sha256 " +
                                            taken.front().text(0) + ")");
        }
        const std::int64_t entries = m.entry_count > 0 ? m.entry_count : static_cast<std::int64_t>(offered_);
        HM_TRY_VOID(db.execute(
            "UPDATE manifests SET sha256 = ?, entry_count = ?, inserted_count = ?, format = ?, signer = ?, "
            "reel = COALESCE(reel, ?) WHERE id = ?",
            {std::string_view(sha256), entries, result_.inserted,
             std::string_view(m.format.empty() ? manifest_.format : m.format),
             std::string_view(m.signer.empty() ? manifest_.signer : m.signer), text_or_null(m.reel),
             result_.manifest_id}));
      }
    }
    AuditEvent accepted = audit_;
    accepted.outcome = Outcome::accepted;
    accepted.reason =
        "inserted=" + std::to_string(result_.inserted) + " unchanged=" + std::to_string(result_.unchanged) +
        (result_.conflicts.empty() ? "" : " conflicts=" + std::to_string(result_.conflicts.size()));
    tx.append_audit(accepted);
    return {};
  }

  SqlStore& store_;
  const ManifestRecord manifest_;  // as given to begin
  std::thread thread_;

  std::mutex mu_;
  std::condition_variable cv_;
  Cmd cmd_ = Cmd::none;
  bool replied_ = false;
  bool finished_ = false;
  bool committing_ = false;
  Status reply_;
  Status final_;
  std::span<const DeviceRecord> batch_;
  std::vector<DeviceImportOutcome> outcomes_;
  ManifestRecord final_manifest_;
  AuditEvent audit_;
  // Only the session thread touches these until it finished.
  ManifestImportResult result_;
  std::size_t offered_ = 0;
};

Result<std::unique_ptr<ManifestImportSession>> SqlStore::begin_manifest_import(
    const ManifestRecord& manifest) {
  auto session = std::make_unique<SqlImportSession>(*this, manifest);
  if (auto st = session->start(); !st) {
    AuditEvent ev;
    ev.time = manifest.imported_at;
    ev.actor = "store";
    ev.action = "manifest-import";
    ev.object = manifest.sha256.empty() ? manifest.reel : manifest.sha256;
    session.reset();
    audit_refusal(ev, st.error());
    return std::unexpected(st.error());
  }
  return std::unique_ptr<ManifestImportSession>(std::move(session));
}

Result<ManifestRecord> SqlStore::find_manifest_where(std::string_view column, Param value) {
  Result<ManifestRecord> out = fail(Errc::internal, "unset");
  HM_TRY_VOID(read([&](sql::Connection& db) -> Status {
    out = first_or_not_found(
        db.query(cat({"SELECT ", kManifestCols, " FROM manifests WHERE ", column, " = ?"}), {value}),
        to_manifest, "no manifest with this " + std::string(column));
    return {};
  }));
  return out;
}

Result<ManifestRecord> SqlStore::find_manifest(std::string_view sha256) {
  auto m = find_manifest_where("sha256", sha256);
  if (!m && m.error().code == Errc::not_found)
    return fail(Errc::not_found, "no manifest with sha256 " + std::string(sha256));
  return m;
}
Result<ManifestRecord> SqlStore::find_manifest_by_id(Id id) {
  return find_manifest_where("id", id);
}
Result<ManifestRecord> SqlStore::find_manifest_by_reel(std::string_view reel) {
  if (reel.empty()) return fail(Errc::not_found, "no manifest with an empty reel name");
  auto m = find_manifest_where("reel", reel);
  if (!m && m.error().code == Errc::not_found)
    return fail(Errc::not_found, "no manifest for reel " + std::string(reel));
  return m;
}

Result<DeviceRecord> SqlStore::find_device_where(std::string_view column, Param value) {
  Result<DeviceRecord> out = fail(Errc::internal, "unset");
  HM_TRY_VOID(read([&](sql::Connection& db) -> Status {
    out = first_or_not_found(
        db.query(cat({"SELECT ", kDeviceCols, " FROM devices WHERE ", column, " = ?"}), {value}), to_device,
        "no device with this " + std::string(column));
    return {};
  }));
  return out;
}

Result<DeviceRecord> SqlStore::find_device(Id id) {
  return find_device_where("id", id);
}
Result<DeviceRecord> SqlStore::find_device_by_bc_fingerprint(std::string_view bc_sha256) {
  return find_device_where("bc_sha256", bc_sha256);
}
Result<DeviceRecord> SqlStore::find_device_by_unique_id(std::string_view vendor_unique_id) {
  return find_device_where("vendor_unique_id", vendor_unique_id);
}
Result<DeviceRecord> SqlStore::find_device_by_ukid(std::string_view ukid) {
  return find_device_where("ukid", ukid);
}

Result<std::vector<DeviceRecord>> SqlStore::list_devices(const DeviceFilter& filter) {
  std::string query = cat({"SELECT ", kDeviceCols, " FROM devices WHERE id > ?"});
  std::vector<Param> params{filter.after_id};
  if (filter.state) {
    query += " AND state = ?";
    params.emplace_back(to_string(*filter.state));
  }
  if (filter.manifest_id) {
    query += " AND manifest_id = ?";
    params.emplace_back(*filter.manifest_id);
  }
  if (filter.reel) {
    query += " AND manifest_id IN (SELECT id FROM manifests WHERE reel = ?)";
    params.emplace_back(std::string_view(*filter.reel));
  }
  if (filter.part_number) {
    query += " AND part_number = ?";
    params.emplace_back(std::string_view(*filter.part_number));
  }
  query += " ORDER BY id LIMIT ?";
  params.emplace_back(filter.limit > 0 ? filter.limit : std::int64_t{1000});
  std::vector<DeviceRecord> out;
  HM_TRY_VOID(read([&](sql::Connection& db) -> Status {
    for (const auto& r : HM_TRY(db.query(query, params))) out.push_back(to_device(r));
    return {};
  }));
  return out;
}

Status SqlStore::transition(const AuditEvent& audit, std::function<Status(WriteTx&)> change) {
  auto st = write([&](WriteTx& tx) -> Status {
    HM_TRY_VOID(change(tx));
    AuditEvent accepted = audit;
    accepted.outcome = Outcome::accepted;
    tx.append_audit(accepted);
    return {};
  });
  if (!st) audit_refusal(audit, st.error());
  return st;
}

Status SqlStore::mount_device(std::string_view vendor_unique_id, std::string_view station,
                              const std::optional<EndEntityRecord>& end_entity, const AuditEvent& audit) {
  AuditEvent ev = audit;
  if (ev.action.empty()) ev.action = "mount";
  if (ev.object.empty()) ev.object = vendor_unique_id;
  if (end_entity && end_entity->username.empty()) {
    Error e{Errc::invalid_input, "end entity username is empty"};
    audit_refusal(ev, e);
    return std::unexpected(e);
  }
  return transition(ev, [&](WriteTx& tx) -> Status {
    auto& db = tx.conn();
    auto ids =
        HM_TRY(db.query("UPDATE devices SET state = 'mounted', mounted_at = ?, station = ? WHERE "
                        "vendor_unique_id = ? AND state = 'received' RETURNING id",
                        {sql::secs(ev.time), station, vendor_unique_id}));
    if (ids.empty()) {
      auto rows =
          HM_TRY(db.query("SELECT state FROM devices WHERE vendor_unique_id = ?", {vendor_unique_id}));
      if (rows.empty()) return fail(Errc::not_found, "no device " + std::string(vendor_unique_id));
      return fail(Errc::conflict, "device " + std::string(vendor_unique_id) + " is " + rows.front().text(0) +
                                      ", not received");
    }
    if (!end_entity) return {};
    const Id device_id = ids.front().i64(0);
    const auto& ee = *end_entity;
    if (ee.device_id && *ee.device_id != device_id)
      return fail(Errc::invalid_input, "end entity " + ee.username + " names another device");
    auto known = HM_TRY(db.query("SELECT device_id FROM end_entities WHERE username = ?", {ee.username}));
    if (!known.empty()) {
      if (known.front().opt_i64(0) != device_id)
        return fail(Errc::conflict, "end entity " + ee.username + " exists for another device");
      return {};  // made by an earlier attempt for this very device: reused
    }
    HM_TRY_VOID(db.execute(
        "INSERT INTO end_entities (username, device_id, est_alias, subject_json, state, allowed_requests, "
        "issued_count, renewal_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        {ee.username, device_id, ee.est_alias, ee.subject_json, to_string(ee.state), ee.allowed_requests,
         ee.issued_count, ee.renewal_count}));
    AuditEvent created = ev;
    created.action = "end-entity-create";
    created.object = ee.username;
    created.outcome = Outcome::accepted;
    created.reason = "mount of " + std::string(vendor_unique_id);
    tx.append_audit(created);
    return {};
  });
}

Status SqlStore::pin_device_key(std::string_view vendor_unique_id, const Bytes& bc_der,
                                std::string_view bc_sha256, std::optional<std::string> ukid,
                                const AuditEvent& audit, const std::optional<EndEntityRecord>& end_entity) {
  AuditEvent ev = audit;
  if (ev.action.empty()) ev.action = "pin-key";
  if (ev.object.empty()) ev.object = vendor_unique_id;
  if (bc_der.empty() || bc_sha256.empty()) {
    Error e{Errc::invalid_input, "pinning a key needs its DER and SHA-256"};
    audit_refusal(ev, e);
    return std::unexpected(e);
  }
  if (ev.reason.empty()) ev.reason = "bc_sha256=" + std::string(bc_sha256);
  return transition(ev, [&](WriteTx& tx) -> Status {
    auto& db = tx.conn();
    auto n = db.execute(
        "UPDATE devices SET bc = ?, bc_sha256 = ?, ukid = COALESCE(?, ukid) WHERE vendor_unique_id = ? AND "
        "bc_sha256 IS NULL",
        {ByteView(bc_der), bc_sha256, sql::opt(ukid), vendor_unique_id});
    if (!n) {
      if (n.error().code == Errc::conflict)
        return fail(Errc::conflict,
                    "the key (BC sha256 " + std::string(bc_sha256) + " or UKID) belongs to another device");
      return std::unexpected(n.error());
    }
    if (*n == 1) {
      if (!end_entity) return {};
      auto e = db.execute(
          "UPDATE end_entities SET username = ?, subject_json = ? WHERE state = 'new' AND device_id = "
          "(SELECT id FROM devices WHERE vendor_unique_id = ?)",
          {end_entity->username, end_entity->subject_json, vendor_unique_id});
      if (!e && e.error().code == Errc::conflict)
        return fail(Errc::conflict, "end entity " + end_entity->username + " exists for another device");
      if (!e) return std::unexpected(e.error());
      return {};
    }
    auto rows =
        HM_TRY(db.query("SELECT bc_sha256 FROM devices WHERE vendor_unique_id = ?", {vendor_unique_id}));
    if (rows.empty()) return fail(Errc::not_found, "no device " + std::string(vendor_unique_id));
    return fail(Errc::conflict, "device " + std::string(vendor_unique_id) + " already has a key (BC sha256 " +
                                    rows.front().text(0) + ")");
  });
}

Status SqlStore::retire_device(std::string_view vendor_unique_id, const AuditEvent& audit) {
  AuditEvent ev = audit;
  if (ev.action.empty()) ev.action = "retire";
  if (ev.object.empty()) ev.object = vendor_unique_id;
  return transition(ev, [&](WriteTx& tx) -> Status {
    auto n = HM_TRY(tx.conn().execute("UPDATE devices SET state = 'retired' WHERE vendor_unique_id = ?",
                                      {vendor_unique_id}));
    if (n == 0) return fail(Errc::not_found, "no device " + std::string(vendor_unique_id));
    return {};
  });
}

Status SqlStore::mark_bc_revoked(Id device_id, const AuditEvent& audit) {
  AuditEvent ev = audit;
  if (ev.action.empty()) ev.action = "bc-revoke";
  if (ev.object.empty()) ev.object = "device:" + std::to_string(device_id);
  return transition(ev, [&](WriteTx& tx) -> Status {
    auto n = HM_TRY(tx.conn().execute("UPDATE devices SET bc_revoked = 1 WHERE id = ?", {device_id}));
    if (n == 0) return fail(Errc::not_found, "no device with id " + std::to_string(device_id));
    return {};
  });
}

Status SqlStore::mark_bc_consumed(Id device_id, const AuditEvent& audit) {
  AuditEvent ev = audit;
  if (ev.action.empty()) ev.action = "bc-consume";
  if (ev.object.empty()) ev.object = "device:" + std::to_string(device_id);
  return transition(ev, [&](WriteTx& tx) -> Status {
    auto n = HM_TRY(tx.conn().execute("UPDATE devices SET bc_consumed = 1 WHERE id = ?", {device_id}));
    if (n == 0) return fail(Errc::not_found, "no device with id " + std::to_string(device_id));
    return {};
  });
}

// ---------------------------------------------------------------- end entities

Result<Id> SqlStore::add_end_entity(const EndEntityRecord& ee, const AuditEvent& audit) {
  AuditEvent ev = audit;
  if (ev.action.empty()) ev.action = "end-entity-add";
  if (ev.object.empty()) ev.object = ee.username;
  if (ee.username.empty()) {
    Error e{Errc::invalid_input, "end entity username is empty"};
    audit_refusal(ev, e);
    return std::unexpected(e);
  }
  Id id = 0;
  HM_TRY_VOID(transition(ev, [&](WriteTx& tx) -> Status {
    auto rows = tx.conn().query(
        "INSERT INTO end_entities (username, device_id, est_alias, subject_json, state, allowed_requests, "
        "issued_count, renewal_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        {ee.username, sql::opt(ee.device_id), ee.est_alias, ee.subject_json, to_string(ee.state),
         ee.allowed_requests, ee.issued_count, ee.renewal_count});
    if (!rows) return std::unexpected(rows.error().with_context("add end entity " + ee.username));
    id = rows->front().i64(0);
    return {};
  }));
  return id;
}

Result<EndEntityRecord> SqlStore::find_end_entity(std::string_view username) {
  Result<EndEntityRecord> out = fail(Errc::internal, "unset");
  HM_TRY_VOID(read([&](sql::Connection& db) -> Status {
    out = first_or_not_found(
        db.query(cat({"SELECT ", kEndEntityCols, " FROM end_entities WHERE username = ?"}), {username}),
        to_end_entity, "no end entity " + std::string(username));
    return {};
  }));
  return out;
}

Status SqlStore::set_end_entity_state(std::string_view username, EndEntityState state,
                                      const AuditEvent& audit) {
  AuditEvent ev = audit;
  if (ev.action.empty()) ev.action = "end-entity-state";
  if (ev.object.empty()) ev.object = username;
  return transition(ev, [&](WriteTx& tx) -> Status {
    auto n = HM_TRY(tx.conn().execute("UPDATE end_entities SET state = ? WHERE username = ?",
                                      {to_string(state), username}));
    if (n == 0) return fail(Errc::not_found, "no end entity " + std::string(username));
    return {};
  });
}

// ---------------------------------------------------------------- certificates

Result<CertificateRecord> SqlStore::record_issuance(const IssuanceRequest& request) {
  const bool enroll = request.kind == IssuanceKind::enroll;
  const auto& c = request.certificate;
  AuditEvent ev = request.audit;
  if (ev.action.empty()) ev.action = enroll ? "enroll" : "reenroll";
  if (ev.object.empty()) ev.object = request.username;
  if (request.username.empty() || c.serial_hex.empty() || c.issuer_ca.empty() || c.der.empty()) {
    Error e{Errc::invalid_input, "issuance needs a username, serial, issuer CA and certificate"};
    audit_refusal(ev, e);
    return std::unexpected(e);
  }

  CertificateRecord out = c;
  out.status = CertificateStatus::good;
  out.revoked_at.reset();
  out.reason.reset();
  AuditEvent accepted = ev;
  accepted.outcome = Outcome::accepted;
  if (accepted.reason.empty()) accepted.reason = "serial=" + c.serial_hex;
  const std::int64_t revoke_bc = request.mark_bc == BcMark::revoked ? 1 : 0;
  const std::int64_t consume_bc = request.mark_bc == BcMark::consumed ? 1 : 0;
  // The BC flag's own record, after the issuance's, when the end entity has a device.
  auto append_bc_audit = [&](WriteTx& tx) {
    if (request.mark_bc == BcMark::none || !out.device_id) return;
    AuditEvent marked = request.bc_audit;
    if (marked.action.empty()) marked.action = revoke_bc ? "bc-revoke" : "bc-consume";
    if (marked.object.empty()) marked.object = "device:" + std::to_string(*out.device_id);
    marked.outcome = Outcome::accepted;
    tx.append_audit(marked);
  };

  // Why nothing was issued: the state check is folded into the update, so only a refusal pays
  // for a second look.
  auto refusal = [&](sql::Connection& db) -> Status {
    auto rows = HM_TRY(db.query(
        "SELECT e.state, e.allowed_requests, e.issued_count, e.device_id, d.state FROM end_entities e "
        "LEFT JOIN devices d ON d.id = e.device_id WHERE e.username = ?",
        {request.username}));
    if (rows.empty()) return fail(Errc::not_found, "no end entity " + request.username);
    const auto& r = rows.front();
    const std::string state = r.text(0);
    const bool issuable = enroll ? state == "new" && r.i64(2) < r.i64(1) : state == "generated";
    if (issuable && !r.is_null(3))
      return fail(Errc::conflict, "device of " + request.username + " is " +
                                      (r.is_null(4) ? std::string("missing") : r.text(4)) + ", not mounted");
    if (enroll && state == "new")
      return fail(Errc::conflict, "end entity " + request.username + " has no requests left");
    return fail(Errc::conflict, "end entity " + request.username + " is " + state + ", not " +
                                    (enroll ? "new" : "generated"));
  };
  auto serial_taken = [&](const Error& e) -> Status {
    if (e.code == Errc::conflict && !e.detail.starts_with("retry:"))
      return fail(Errc::conflict, "certificate serial " + c.serial_hex + " is already recorded");
    return std::unexpected(e);
  };

  Status st;
  if (dialect() == sql::Dialect::postgres) {
    // One statement (end entity, device, certificate), so that a batch of issuances goes to the
    // server in one round trip. The end entity changes only when it is issuable and its device (if
    // any) mounted, which the statement locks; should the device still not be updated, the
    // division by zero fails the statement and its savepoint undoes it.
    static const std::string kRest =
        " AND (device_id IS NULL OR EXISTS (SELECT 1 FROM devices d WHERE d.id = end_entities.device_id "
        "AND d.state IN ('mounted', 'enrolled') FOR UPDATE)) RETURNING id, device_id), "
        "dev AS (UPDATE devices SET state = 'enrolled', "
        "bc_revoked = CASE WHEN ?::bigint = 1 THEN 1 ELSE bc_revoked END, "
        "bc_consumed = CASE WHEN ?::bigint = 1 THEN 1 ELSE bc_consumed END "
        "WHERE id = (SELECT device_id FROM ee) AND state IN ('mounted', 'enrolled') RETURNING id), "
        "cert AS (INSERT INTO certificates (serial, issuer_ca, device_id, end_entity_id, subject, "
        "not_before, not_after, public_key_sha256, der, status) "
        "SELECT ?::text, ?::text, ee.device_id, ee.id, ?::text, ?::bigint, ?::bigint, ?::text, ?::bytea, "
        "'good' FROM ee RETURNING id) "
        "SELECT ee.id, ee.device_id, (SELECT id FROM cert), "
        "1 / CASE WHEN ee.device_id IS NULL OR EXISTS (SELECT 1 FROM dev) THEN 1 ELSE 0 END FROM ee";
    static const std::string kEnroll =
        "WITH ee AS (UPDATE end_entities SET state = 'generated', issued_count = issued_count + 1 "
        "WHERE username = ? AND state = 'new' AND issued_count < allowed_requests" +
        kRest;
    static const std::string kReenroll =
        "WITH ee AS (UPDATE end_entities SET renewal_count = renewal_count + 1 "
        "WHERE username = ? AND state = 'generated'" +
        kRest;
    StatementWrite w;
    w.sql = enroll ? kEnroll : kReenroll;
    w.params = {request.username,
                sql::Value{revoke_bc},
                sql::Value{consume_bc},
                c.serial_hex,
                c.issuer_ca,
                c.subject,
                sql::Value{std::int64_t{c.not_before.time_since_epoch().count()}},
                sql::Value{std::int64_t{c.not_after.time_since_epoch().count()}},
                c.public_key_sha256,
                c.der};
    w.then = [&](Result<sql::Rows> rows, WriteTx& tx) -> Status {
      if (!rows) {
        if (rows.error().detail.find("division by zero") != std::string::npos) return refusal(tx.conn());
        return serial_taken(rows.error());
      }
      if (rows->empty()) return refusal(tx.conn());
      const auto& r = rows->front();
      out.end_entity_id = r.i64(0);
      out.device_id = r.opt_i64(1);
      out.id = r.i64(2);
      tx.append_audit(accepted);
      append_bc_audit(tx);
      return {};
    };
    st = write_statement(std::move(w));
  } else {
    // SQLite: statements run in-process, there are no round trips to save.
    st = write([&](WriteTx& tx) -> Status {
      auto& db = tx.conn();
      auto ees = HM_TRY(
          db.query(enroll ? "UPDATE end_entities SET state = 'generated', issued_count = issued_count + 1 "
                            "WHERE username = ? AND state = 'new' AND issued_count < allowed_requests "
                            "RETURNING id, device_id"
                          : "UPDATE end_entities SET renewal_count = renewal_count + 1 "
                            "WHERE username = ? AND state = 'generated' RETURNING id, device_id",
                   {request.username}));
      if (ees.empty()) return refusal(db);
      out.end_entity_id = ees.front().i64(0);
      out.device_id = ees.front().opt_i64(1);

      if (out.device_id) {
        auto n = HM_TRY(db.execute(
            "UPDATE devices SET state = 'enrolled', bc_revoked = CASE WHEN ? = 1 THEN 1 ELSE bc_revoked END, "
            "bc_consumed = CASE WHEN ? = 1 THEN 1 ELSE bc_consumed END "
            "WHERE id = ? AND state IN ('mounted', 'enrolled')",
            {revoke_bc, consume_bc, *out.device_id}));
        if (n != 1) {
          auto rows = HM_TRY(db.query("SELECT state FROM devices WHERE id = ?", {*out.device_id}));
          return fail(Errc::conflict, "device of " + request.username + " is " +
                                          (rows.empty() ? std::string("missing") : rows.front().text(0)) +
                                          ", not mounted");
        }
      }

      auto ids = db.query(
          "INSERT INTO certificates (serial, issuer_ca, device_id, end_entity_id, subject, not_before, "
          "not_after, public_key_sha256, der, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'good') RETURNING "
          "id",
          {c.serial_hex, c.issuer_ca, sql::opt(out.device_id), sql::opt(out.end_entity_id), c.subject,
           sql::secs(c.not_before), sql::secs(c.not_after), c.public_key_sha256, ByteView(c.der)});
      if (!ids) return serial_taken(ids.error());
      out.id = ids->front().i64(0);
      tx.append_audit(accepted);
      append_bc_audit(tx);
      return {};
    });
  }
  if (!st) {
    audit_refusal(ev, st.error());
    return std::unexpected(st.error());
  }
  return out;
}

Result<CertificateRecord> SqlStore::find_certificate_where(std::string_view where,
                                                           std::initializer_list<Param> params) {
  Result<CertificateRecord> out = fail(Errc::internal, "unset");
  HM_TRY_VOID(read([&](sql::Connection& db) -> Status {
    out = first_or_not_found(
        db.query(cat({"SELECT ", kCertCols, " FROM certificates WHERE ", where, " ORDER BY id DESC LIMIT 1"}),
                 std::span<const Param>(params.begin(), params.size())),
        to_certificate, "no such certificate");
    return {};
  }));
  return out;
}

Result<CertificateRecord> SqlStore::find_certificate_by_device_and_key(Id device_id,
                                                                       std::string_view public_key_sha256) {
  return find_certificate_where("device_id = ? AND public_key_sha256 = ? AND status = 'good'",
                                {device_id, public_key_sha256});
}

Result<CertificateRecord> SqlStore::find_certificate_by_serial(std::string_view serial_hex) {
  return find_certificate_where("serial = ?", {serial_hex});
}

Result<CertificateRecord> SqlStore::find_certificate_by_ukid(std::string_view ukid) {
  return find_certificate_where(
      "device_id IN (SELECT id FROM devices WHERE ukid = ?) OR end_entity_id IN (SELECT id FROM end_entities "
      "WHERE "
      "username = ?)",
      {ukid, ukid});
}

Result<std::vector<CertificateRecord>> SqlStore::list_certificates(const CertificateFilter& filter) {
  std::string query = cat({"SELECT ", kCertCols, " FROM certificates WHERE id > ?"});
  std::vector<Param> params{filter.after_id};
  if (filter.issuer_ca) {
    query += " AND issuer_ca = ?";
    params.emplace_back(std::string_view(*filter.issuer_ca));
  }
  if (filter.device_id) {
    query += " AND device_id = ?";
    params.emplace_back(*filter.device_id);
  }
  if (filter.status) {
    query += " AND status = ?";
    params.emplace_back(to_string(*filter.status));
  }
  if (filter.expiring_before) {
    query += " AND not_after < ?";
    params.emplace_back(sql::secs(*filter.expiring_before));
  }
  query += " ORDER BY id LIMIT ?";
  params.emplace_back(filter.limit > 0 ? filter.limit : std::int64_t{1000});
  std::vector<CertificateRecord> out;
  HM_TRY_VOID(read([&](sql::Connection& db) -> Status {
    for (const auto& r : HM_TRY(db.query(query, params))) out.push_back(to_certificate(r));
    return {};
  }));
  return out;
}

Status SqlStore::revoke_certificate(std::string_view serial_hex, Seconds when, int reason,
                                    const AuditEvent& audit) {
  AuditEvent ev = audit;
  if (ev.action.empty()) ev.action = "revoke";
  if (ev.object.empty()) ev.object = serial_hex;
  return transition(ev, [&](WriteTx& tx) -> Status {
    auto n =
        HM_TRY(tx.conn().execute("UPDATE certificates SET status = 'revoked', revoked_at = ?, reason = ? "
                                 "WHERE serial = ? AND status = 'good'",
                                 {sql::secs(when), std::int64_t{reason}, serial_hex}));
    if (n == 1) return {};
    auto rows = HM_TRY(tx.conn().query("SELECT status FROM certificates WHERE serial = ?", {serial_hex}));
    if (rows.empty()) return fail(Errc::not_found, "no certificate with serial " + std::string(serial_hex));
    return fail(Errc::conflict, "certificate " + std::string(serial_hex) + " is already revoked");
  });
}

Status SqlStore::record_revoked_certificate(const CertificateRecord& c, const AuditEvent& audit) {
  AuditEvent ev = audit;
  if (ev.action.empty()) ev.action = "revoke";
  if (ev.object.empty()) ev.object = c.serial_hex;
  if (c.status != CertificateStatus::revoked || !c.revoked_at || c.serial_hex.empty() || c.der.empty()) {
    Error e{Errc::invalid_input, "a revoked certificate needs a serial, its DER and a revocation time"};
    audit_refusal(ev, e);
    return std::unexpected(e);
  }
  return transition(ev, [&](WriteTx& tx) -> Status {
    auto ids = tx.conn().query(
        "INSERT INTO certificates (serial, issuer_ca, device_id, end_entity_id, subject, not_before, "
        "not_after, "
        "public_key_sha256, der, status, revoked_at, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'revoked', "
        "?, ?) "
        "RETURNING id",
        {c.serial_hex, c.issuer_ca, sql::opt(c.device_id), sql::opt(c.end_entity_id), c.subject,
         sql::secs(c.not_before), sql::secs(c.not_after), c.public_key_sha256, ByteView(c.der),
         sql::secs(*c.revoked_at), c.reason ? Param(std::int64_t{*c.reason}) : Param(nullptr)});
    if (!ids && ids.error().code == Errc::conflict)
      return fail(Errc::conflict, "certificate serial " + c.serial_hex + " is already recorded");
    if (!ids) return std::unexpected(ids.error());
    return {};
  });
}

Result<std::vector<RevocationRecord>> SqlStore::list_revocations(std::string_view issuer_ca, Id after_id,
                                                                 std::int64_t limit) {
  std::vector<RevocationRecord> out;
  HM_TRY_VOID(read([&](sql::Connection& db) -> Status {
    const auto rows = HM_TRY(
        db.query("SELECT id, serial, revoked_at, reason FROM certificates WHERE issuer_ca = ? AND status = "
                 "'revoked' AND id > ? ORDER BY id LIMIT ?",
                 {issuer_ca, after_id, limit > 0 ? limit : std::int64_t{1000}}));
    out.reserve(rows.size());
    for (const auto& r : rows) {
      RevocationRecord e{r.i64(0), r.text(1), r.time(2), std::nullopt};
      if (!r.is_null(3)) e.reason = static_cast<int>(r.i64(3));
      out.push_back(std::move(e));
    }
    return {};
  }));
  return out;
}

// ---------------------------------------------------------------- audit

void SqlStore::audit_refusal(AuditEvent event, const Error& error) {
  if (error.code == Errc::unavailable) return;  // nowhere to write it; the caller logs the failure
  event.outcome = Outcome::refused;
  event.reason = std::string(to_string(error.code)) + ": " + error.detail;
  auto st = write([&](WriteTx& tx) -> Status {
    tx.append_audit(event);
    return {};
  });
  if (!st) log::warn("audit_refusal_failed", {{"action", event.action}, {"error", st.error().detail}});
}

Result<Id> SqlStore::append_audit(const AuditEvent& event) {
  Id id = 0;
  HM_TRY_VOID(write([&](WriteTx& tx) -> Status {
    tx.append_audit(event, &id);
    return {};
  }));
  return id;
}

Result<std::vector<AuditRecord>> SqlStore::list_audit(Id after_id, std::int64_t limit) {
  std::vector<AuditRecord> out;
  HM_TRY_VOID(read([&](sql::Connection& db) -> Status {
    for (const auto& r :
         HM_TRY(db.query(cat({"SELECT ", kAuditCols, " FROM audit WHERE id > ? ORDER BY id LIMIT ?"}),
                         {after_id, limit > 0 ? limit : std::int64_t{1000}})))
      out.push_back(to_audit(r));
    return {};
  }));
  return out;
}

Result<Id> SqlStore::last_audit_id() {
  Id id = 0;
  HM_TRY_VOID(read([&](sql::Connection& db) -> Status {
    const auto rows = HM_TRY(db.query("SELECT MAX(id) FROM audit"));
    if (!rows.empty() && !rows.front().is_null(0)) id = rows.front().i64(0);
    return {};
  }));
  return id;
}

Result<AuditVerification> SqlStore::verify_audit_chain() {
  constexpr std::int64_t kPage = 5000;
  AuditVerification v;
  HM_TRY_VOID(read(
      [&](sql::Connection& db) -> Status {
        v = AuditVerification{};
        auto head_rows = HM_TRY(db.query("SELECT last_id, last_hash FROM audit_head WHERE id = 1"));
        if (head_rows.empty()) return fail(Errc::internal, "audit_head row missing: database not migrated?");
        const Id head_id = head_rows.front().i64(0);
        const Bytes head_hash = head_rows.front().blob(1);

        Bytes running = audit_genesis_hash();
        Id expected = 1;
        auto broken = [&](Id id, std::string why) {
          v.ok = false;
          v.first_broken_id = id;
          v.reason = std::move(why);
        };
        for (;;) {
          auto rows =
              HM_TRY(db.query(cat({"SELECT ", kAuditCols, " FROM audit WHERE id >= ? ORDER BY id LIMIT ?"}),
                              {expected, kPage}));
          for (const auto& r : rows) {
            const auto rec = to_audit(r);
            if (rec.id != expected) {
              broken(expected, "record " + std::to_string(expected) + " is missing (next is " +
                                   std::to_string(rec.id) + ")");
              return {};
            }
            if (rec.prev_hash != running) {
              broken(rec.id, "prev_hash does not match the hash of record " + std::to_string(rec.id - 1) +
                                 " (a record was deleted, inserted or reordered)");
              return {};
            }
            Bytes h = audit_hash(running, rec.id, rec.event);
            if (h != rec.hash) {
              broken(rec.id, "content does not match its hash (record changed or moved)");
              return {};
            }
            running = std::move(h);
            ++v.records;
            ++expected;
          }
          if (static_cast<std::int64_t>(rows.size()) < kPage) break;
        }
        const Id last = expected - 1;
        if (head_id > last) {
          broken(last + 1, "records " + std::to_string(last + 1) + ".." + std::to_string(head_id) +
                               " are missing (chain head is " + std::to_string(head_id) + ")");
        } else if (head_id < last) {
          broken(head_id + 1, "record " + std::to_string(head_id + 1) + " is past the chain head " +
                                  std::to_string(head_id) + " (appended outside the store)");
        } else if (head_hash != running) {
          broken(last, "chain head hash does not match record " + std::to_string(last));
        }
        v.head_hash = running;
        return {};
      },
      true));
  return v;
}

// ---------------------------------------------------------------- schema and operations

Result<SchemaStatus> SqlStore::check() {
  SchemaStatus s;
  s.latest_version = migrations(dialect()).back().version;
  auto st = read([&](sql::Connection& db) -> Status {
    auto rows = db.query("SELECT MAX(version) FROM schema_version");
    if (!rows) {
      if (rows.error().code == Errc::unavailable) return std::unexpected(rows.error());
      s.current_version = 0;  // no schema_version table yet
      return {};
    }
    s.current_version = rows->empty() ? 0 : static_cast<int>(rows->front().i64(0));
    return {};
  });
  if (!st) return std::unexpected(st.error());
  return s;
}

Result<SchemaStatus> SqlStore::migrate() {
  const auto all = migrations(dialect());
  Status st;
  // Two nodes migrating at once: the loser fails on a duplicate table and finds the work done.
  for (int attempt = 0; attempt < 3; ++attempt) {
    st = exclusive([&](sql::Connection& db) -> Status {
      HM_TRY_VOID(
          db.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, description TEXT "
                  "NOT NULL, "
                  "applied_at BIGINT NOT NULL)"));
      auto rows = HM_TRY(db.query("SELECT MAX(version) FROM schema_version"));
      const int current = rows.empty() ? 0 : static_cast<int>(rows.front().i64(0));
      for (const auto& m : all) {
        if (m.version <= current) continue;
        HM_TRY_VOID(db.exec(m.ddl));
        if (m.version == 1) {
          const Bytes genesis = audit_genesis_hash();
          HM_TRY_VOID(db.execute("INSERT INTO audit_head (id, last_id, last_hash) VALUES (1, 0, ?)",
                                 {ByteView(genesis)}));
        }
        HM_TRY_VOID(
            db.execute("INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                       {std::int64_t{m.version}, m.description, sql::secs(wall_now())}));
        log::info("store_migrated",
                  {{"backend", std::string(backend())}, {"version", std::to_string(m.version)}});
      }
      return {};
    });
    if (st || st.error().code == Errc::unavailable) break;
  }
  auto s = check();
  if (!st && (!s || s->pending())) return std::unexpected(st.error().with_context("migrate"));
  return s;
}

Result<IntegrityReport> SqlStore::integrity_check() {
  IntegrityReport report;
  auto engine = HM_TRY(engine_check());
  report.audit = HM_TRY(verify_audit_chain());
  report.ok = engine == "ok" && report.audit.ok;
  report.detail = engine == "ok" ? "" : "engine: " + engine;
  if (!report.audit.ok) {
    if (!report.detail.empty()) report.detail += "; ";
    report.detail += "audit record " + std::to_string(report.audit.first_broken_id.value_or(0)) + ": " +
                     report.audit.reason;
  }
  if (report.ok) report.detail = "ok";
  return report;
}

Result<bool> SqlStore::try_leader_lease(std::string_view name, std::string_view holder,
                                        std::chrono::seconds ttl, Seconds now) {
  bool held = false;
  HM_TRY_VOID(write([&](WriteTx& tx) -> Status {
    HM_TRY_VOID(tx.conn().execute(
        "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
        "holder = excluded.holder, expires_at = excluded.expires_at "
        "WHERE leases.holder = excluded.holder OR leases.expires_at <= ?",
        {name, holder, sql::secs(now + ttl), sql::secs(now)}));
    auto rows = HM_TRY(tx.conn().query("SELECT holder FROM leases WHERE name = ?", {name}));
    held = !rows.empty() && rows.front().text(0) == holder;
    return {};
  }));
  return held;
}

Status SqlStore::release_leader_lease(std::string_view name, std::string_view holder) {
  return write([&](WriteTx& tx) -> Status {
    HM_TRY_VOID(tx.conn().execute("DELETE FROM leases WHERE name = ? AND holder = ?", {name, holder}));
    return {};
  });
}

}  // namespace hallmark::store
