#include "schema.hpp"

namespace hallmark::store {

namespace {

// Version 1: the whole logical schema. Times are Unix seconds (BIGINT), flags 0/1 (INTEGER), ids
// BIGINT: portable to PostgreSQL-compatible distributed engines.
constexpr std::string_view kV1 = R"sql(
CREATE TABLE cas (
  id {ID},
  name TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL,
  certificate {BLOB} NOT NULL,
  key_ref TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT 'active',
  crl_number BIGINT NOT NULL DEFAULT 0,
  external INTEGER NOT NULL DEFAULT 0 CHECK (external IN (0, 1))
);
CREATE TABLE trust_anchors (
  id {ID},
  name TEXT NOT NULL UNIQUE,
  purpose TEXT NOT NULL,
  certificate {BLOB} NOT NULL,
  sha256 TEXT NOT NULL UNIQUE
);
CREATE TABLE manifests (
  id {ID},
  format TEXT NOT NULL,
  signer TEXT NOT NULL,
  sha256 TEXT NOT NULL UNIQUE,
  entry_count BIGINT NOT NULL,
  inserted_count BIGINT NOT NULL,
  imported_at BIGINT NOT NULL
);
CREATE TABLE devices (
  id {ID},
  vendor_unique_id TEXT NOT NULL UNIQUE,
  ukid TEXT UNIQUE,
  bc {BLOB} NOT NULL,
  bc_sha256 TEXT NOT NULL UNIQUE,
  bc_issuer TEXT NOT NULL,
  manifest_id BIGINT REFERENCES manifests (id),
  part_number TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL DEFAULT 'received' CHECK (state IN ('received', 'mounted', 'enrolled', 'retired')),
  bc_revoked INTEGER NOT NULL DEFAULT 0 CHECK (bc_revoked IN (0, 1)),
  bc_consumed INTEGER NOT NULL DEFAULT 0 CHECK (bc_consumed IN (0, 1)),
  mounted_at BIGINT,
  station TEXT NOT NULL DEFAULT '',
  ukid_secret_digest TEXT
);
CREATE INDEX devices_manifest ON devices (manifest_id);
CREATE TABLE end_entities (
  id {ID},
  username TEXT NOT NULL UNIQUE,
  device_id BIGINT REFERENCES devices (id),
  est_alias TEXT NOT NULL DEFAULT '',
  subject_json TEXT NOT NULL DEFAULT '{}',
  state TEXT NOT NULL DEFAULT 'new' CHECK (state IN ('new', 'generated', 'revoked', 'pending')),
  allowed_requests BIGINT NOT NULL DEFAULT 1 CHECK (allowed_requests >= 0),
  issued_count BIGINT NOT NULL DEFAULT 0,
  renewal_count BIGINT NOT NULL DEFAULT 0,
  CHECK (issued_count >= 0 AND issued_count <= allowed_requests)
);
CREATE INDEX end_entities_device ON end_entities (device_id);
CREATE TABLE certificates (
  id {ID},
  serial TEXT NOT NULL UNIQUE,
  issuer_ca TEXT NOT NULL,
  device_id BIGINT REFERENCES devices (id),
  end_entity_id BIGINT REFERENCES end_entities (id),
  subject TEXT NOT NULL,
  not_before BIGINT NOT NULL,
  not_after BIGINT NOT NULL,
  public_key_sha256 TEXT NOT NULL,
  der {BLOB} NOT NULL,
  status TEXT NOT NULL DEFAULT 'good' CHECK (status IN ('good', 'revoked')),
  revoked_at BIGINT,
  reason INTEGER,
  CHECK ((status = 'good' AND revoked_at IS NULL) OR (status = 'revoked' AND revoked_at IS NOT NULL))
);
CREATE INDEX certificates_device_key ON certificates (device_id, public_key_sha256);
CREATE INDEX certificates_issuer ON certificates (issuer_ca);
CREATE INDEX certificates_not_after ON certificates (not_after);
CREATE INDEX certificates_end_entity ON certificates (end_entity_id);
CREATE TABLE audit (
  id {KEY},
  event_time BIGINT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  object TEXT NOT NULL,
  outcome TEXT NOT NULL CHECK (outcome IN ('accepted', 'refused')),
  reason TEXT NOT NULL,
  request_id TEXT NOT NULL,
  prev_hash {BLOB} NOT NULL,
  hash {BLOB} NOT NULL
);
CREATE TABLE audit_head (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last_id BIGINT NOT NULL,
  last_hash {BLOB} NOT NULL
);
CREATE TABLE leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  expires_at BIGINT NOT NULL
);
)sql";

// Version 2: Lite devices (no BC until first contact: bc and bc_sha256 nullable, still unique where
// present), reel names on manifests (unique where present), indexes for list_devices.
// SQLite cannot drop NOT NULL in place: the devices table is rebuilt with its ids. end_entities and
// certificates reference it by name; with deferred foreign keys the drop counts their rows as
// violations and re-inserting the same ids resolves them before COMMIT.
constexpr std::string_view kV2Sqlite = R"sql(
PRAGMA defer_foreign_keys = ON;
CREATE TABLE devices_v1 AS SELECT * FROM devices;
DROP TABLE devices;
CREATE TABLE devices (
  id {ID},
  vendor_unique_id TEXT NOT NULL UNIQUE,
  ukid TEXT UNIQUE,
  bc {BLOB},
  bc_sha256 TEXT UNIQUE,
  bc_issuer TEXT NOT NULL,
  manifest_id BIGINT REFERENCES manifests (id),
  part_number TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL DEFAULT 'received' CHECK (state IN ('received', 'mounted', 'enrolled', 'retired')),
  bc_revoked INTEGER NOT NULL DEFAULT 0 CHECK (bc_revoked IN (0, 1)),
  bc_consumed INTEGER NOT NULL DEFAULT 0 CHECK (bc_consumed IN (0, 1)),
  mounted_at BIGINT,
  station TEXT NOT NULL DEFAULT '',
  ukid_secret_digest TEXT,
  CHECK ((bc IS NULL) = (bc_sha256 IS NULL))
);
INSERT INTO devices (id, vendor_unique_id, ukid, bc, bc_sha256, bc_issuer, manifest_id, part_number, state,
                     bc_revoked, bc_consumed, mounted_at, station, ukid_secret_digest)
  SELECT id, vendor_unique_id, ukid, bc, bc_sha256, bc_issuer, manifest_id, part_number, state, bc_revoked,
         bc_consumed, mounted_at, station, ukid_secret_digest FROM devices_v1 ORDER BY id;
DROP TABLE devices_v1;
CREATE INDEX devices_manifest ON devices (manifest_id);
CREATE INDEX devices_state ON devices (state);
CREATE INDEX devices_part_number ON devices (part_number);
ALTER TABLE manifests ADD COLUMN reel TEXT;
CREATE UNIQUE INDEX manifests_reel ON manifests (reel);
)sql";

constexpr std::string_view kV2Postgres = R"sql(
ALTER TABLE devices ALTER COLUMN bc DROP NOT NULL, ALTER COLUMN bc_sha256 DROP NOT NULL,
  ADD CONSTRAINT devices_bc_both CHECK ((bc IS NULL) = (bc_sha256 IS NULL));
CREATE INDEX devices_state ON devices (state);
CREATE INDEX devices_part_number ON devices (part_number);
ALTER TABLE manifests ADD COLUMN reel TEXT;
CREATE UNIQUE INDEX manifests_reel ON manifests (reel);
)sql";

// Version 3: the latest CRL of each CA, written by the node holding the "crl" lease and served by
// every node; the index lists a CA's revoked certificates for its CRL without reading the others, and
// covers what a CRL entry needs (serial, time, reason), so the rows with their DER are never read.
constexpr std::string_view kV3 = R"sql(
CREATE TABLE crls (
  ca_name TEXT PRIMARY KEY,
  crl_number BIGINT NOT NULL,
  this_update BIGINT NOT NULL,
  next_update BIGINT NOT NULL,
  der {BLOB} NOT NULL
);
CREATE INDEX certificates_revocations ON certificates (issuer_ca, status, id, serial, revoked_at, reason);
)sql";

// Version 4: certificates_issuer (issuer_ca) is the leading column of certificates_revocations,
// which answers the same lookups; one index fewer for every issuance to write.
constexpr std::string_view kV4 = R"sql(
DROP INDEX certificates_issuer;
)sql";

std::string render(std::string_view ddl, sql::Dialect d) {
  const bool pg = d == sql::Dialect::postgres;
  const std::pair<std::string_view, std::string_view> subs[] = {
      // SQLite: INTEGER PRIMARY KEY is the rowid; PostgreSQL: identity (also CockroachDB, YugabyteDB).
      {"{ID}", pg ? "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY" : "INTEGER PRIMARY KEY"},
      {"{KEY}", pg ? "BIGINT PRIMARY KEY" : "INTEGER PRIMARY KEY"},
      {"{BLOB}", pg ? "BYTEA" : "BLOB"},
  };
  std::string out(ddl);
  for (const auto& [from, to] : subs) {
    for (std::size_t pos = out.find(from); pos != std::string::npos; pos = out.find(from, pos + to.size()))
      out.replace(pos, from.size(), to);
  }
  return out;
}

}  // namespace

std::vector<Migration> migrations(sql::Dialect dialect) {
  return {
      {1, "initial schema: cas, trust anchors, manifests, devices, end entities, certificates, audit, leases",
       render(kV1, dialect)},
      {2, "Lite devices (nullable BC), manifest reel names, device list indexes",
       render(dialect == sql::Dialect::postgres ? kV2Postgres : kV2Sqlite, dialect)},
      {3, "latest CRL per CA, index of revoked certificates per CA", render(kV3, dialect)},
      {4, "drop certificates_issuer (covered by certificates_revocations)", render(kV4, dialect)},
  };
}

}  // namespace hallmark::store
