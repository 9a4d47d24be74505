// One contract suite, run identically on SQLite (a temporary file) and on a real PostgreSQL server
// that the harness starts itself (test/pg_harness.hpp).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <thread>

#include "hallmark/store/audit.hpp"
#include "hallmark/store/store.hpp"
#include "pg_harness.hpp"
#include "postgres/pg_connection.hpp"
#include "schema.hpp"
#include "store_test_support.hpp"
#include "writer.hpp"

namespace hallmark::store {
namespace {

using namespace testing;  // NOLINT: the store's test helpers

// The PostgreSQL server, started on first use and stopped when the test program ends (also after a
// failed test).
class PgEnvironment final : public ::testing::Environment {
 public:
  static hallmark::test::PgServer* server() {
    if (!server_ && error_.empty()) {
      server_ = hallmark::test::PgServer::start(&error_, HALLMARK_BINARY_DIR);
    }
    return server_.get();
  }
  static const std::string& error() { return error_; }
  void TearDown() override { server_.reset(); }

 private:
  static inline std::unique_ptr<hallmark::test::PgServer> server_;
  static inline std::string error_;
};
[[maybe_unused]] const auto* const kPgEnvironment = ::testing::AddGlobalTestEnvironment(new PgEnvironment);

enum class Backend { sqlite, postgres };
void PrintTo(Backend b, std::ostream* os) {
  *os << (b == Backend::sqlite ? "sqlite" : "postgres");
}

class StoreContract : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::sqlite) {
      char tmpl[] = "/tmp/hallmark-store-XXXXXX";
      ASSERT_NE(::mkdtemp(tmpl), nullptr);
      dir_ = tmpl;
      path_ = dir_ + "/store.db";
      url_ = "sqlite:" + path_;
    } else {
      auto* pg = PgEnvironment::server();
      ASSERT_NE(pg, nullptr) << PgEnvironment::error();
      db_ = "postgres";
      ASSERT_EQ(pg->reset_schema(db_), "");
      url_ = pg->url(db_);
    }
    auto opened = open_store(url_);
    ASSERT_TRUE(opened) << opened.error().detail;
    store_ = std::move(*opened);
    auto migrated = store_->migrate();
    ASSERT_TRUE(migrated) << migrated.error().detail;
  }

  void TearDown() override {
    store_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // Changes the database behind the store's back (tamper tests).
  void raw(const std::string& sql) {
    if (GetParam() == Backend::sqlite) {
      sqlite3* db = nullptr;
      ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
      char* err = nullptr;
      const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
      const std::string message = err ? err : "";
      sqlite3_free(err);
      sqlite3_close(db);
      ASSERT_EQ(rc, SQLITE_OK) << message;
    } else {
      ASSERT_EQ(PgEnvironment::server()->exec(sql, db_), "");
    }
  }

  // A mounted device with an end entity (username = its UKID) ready for enrollment.
  std::string enrollable(const std::string& unique_id, std::int64_t allowed = 1) {
    ManifestImport m;
    m.manifest.format = "hallmark";
    m.manifest.signer = "vendor";
    m.manifest.sha256 = crypto::sha256_hex(to_bytes("manifest-" + unique_id));
    m.manifest.imported_at = at(1'800'000'000);
    m.devices.push_back(device(unique_id));
    m.audit = event();
    auto imported = store_->import_manifest(m);
    EXPECT_TRUE(imported) << imported.error().detail;
    EXPECT_TRUE(store_->mount_device(unique_id, "line-1", event()));
    auto dev = store_->find_device_by_unique_id(unique_id);
    EXPECT_TRUE(dev);
    EndEntityRecord ee;
    ee.username = *dev->ukid;
    ee.device_id = dev->id;
    ee.est_alias = "product-a";
    ee.allowed_requests = allowed;
    EXPECT_TRUE(store_->add_end_entity(ee, event()));
    return ee.username;
  }

  std::vector<AuditRecord> audit_records() {
    auto all = store_->list_audit(0, 100000);
    EXPECT_TRUE(all);
    return all ? *all : std::vector<AuditRecord>{};
  }

  std::unique_ptr<Store> store_;
  std::string url_;
  std::string dir_;
  std::string path_;
  std::string db_;
};

TEST_P(StoreContract, MigrationsAreVersionedAndIdempotent) {
  auto s = store_->check();
  ASSERT_TRUE(s);
  EXPECT_GE(s->current_version, 1);
  EXPECT_EQ(s->current_version, s->latest_version);
  EXPECT_FALSE(s->pending());
  auto again = store_->migrate();
  ASSERT_TRUE(again) << again.error().detail;
  EXPECT_EQ(again->current_version, s->latest_version);
  EXPECT_EQ(store_->backend(), GetParam() == Backend::sqlite ? "sqlite" : "postgresql");
}

TEST_P(StoreContract, CheckOnEmptyDatabaseReportsPending) {
  // A second, empty database.
  std::unique_ptr<Store> empty;
  if (GetParam() == Backend::sqlite) {
    empty = std::move(*open_store("sqlite:" + dir_ + "/empty.db"));
  } else {
    ASSERT_EQ(PgEnvironment::server()->fresh_database("t_empty"), "");
    empty = std::move(*open_store(PgEnvironment::server()->url("t_empty")));
  }
  auto s = empty->check();
  ASSERT_TRUE(s) << s.error().detail;
  EXPECT_EQ(s->current_version, 0);
  EXPECT_TRUE(s->pending());
}

TEST_P(StoreContract, CasAndTrustAnchors) {
  CaRecord ca{0, "idc-ca", "issuing", to_bytes("der"), "file:ca.key", "active", 0, false};
  auto id = store_->add_ca(ca);
  ASSERT_TRUE(id) << id.error().detail;
  auto dup = store_->add_ca(ca);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, Errc::conflict);
  auto found = store_->find_ca("idc-ca");
  ASSERT_TRUE(found);
  EXPECT_EQ(found->certificate_der, to_bytes("der"));
  EXPECT_EQ(found->key_ref, "file:ca.key");
  EXPECT_EQ(store_->find_ca("nope").error().code, Errc::not_found);
  EXPECT_EQ(*store_->next_crl_number("idc-ca"), 1);
  EXPECT_EQ(*store_->next_crl_number("idc-ca"), 2);
  EXPECT_EQ(store_->next_crl_number("nope").error().code, Errc::not_found);
  ASSERT_TRUE(store_->set_ca_status("idc-ca", "retired"));
  EXPECT_EQ(store_->find_ca("idc-ca")->status, "retired");
  ASSERT_TRUE(store_->add_ca(CaRecord{0, "vendor-bc", "birth", to_bytes("v"), "", "active", 0, true}));
  auto cas = store_->list_cas();
  ASSERT_EQ(cas->size(), 2u);
  EXPECT_TRUE((*cas)[1].external);

  ASSERT_TRUE(store_->add_trust_anchor(TrustAnchor{0, "bc-root", "bc", to_bytes("x"), "aa"}));
  EXPECT_EQ(store_->add_trust_anchor(TrustAnchor{0, "bc-root2", "bc", to_bytes("x"), "aa"}).error().code,
            Errc::conflict);
  EXPECT_EQ(store_->list_trust_anchors("bc")->size(), 1u);
  EXPECT_EQ(store_->list_trust_anchors("idc")->size(), 0u);
}

TEST_P(StoreContract, ManifestImportIsIdempotentAndAtomic) {
  ManifestImport m;
  m.manifest = ManifestRecord{0, "hallmark", "vendor", "f1", 0, 0, at(1'800'000'000)};
  for (int i = 0; i < 250; ++i) m.devices.push_back(device("dev-" + std::to_string(i), i % 2 == 0));
  m.audit = event();
  auto first = store_->import_manifest(m);
  ASSERT_TRUE(first) << first.error().detail;
  EXPECT_EQ(first->inserted, 250);
  EXPECT_FALSE(first->manifest_known);
  auto manifest = store_->find_manifest("f1");
  ASSERT_TRUE(manifest);
  EXPECT_EQ(manifest->entry_count, 250);
  EXPECT_EQ(manifest->inserted_count, 250);

  // The same file again: nothing new.
  auto again = store_->import_manifest(m);
  ASSERT_TRUE(again) << again.error().detail;
  EXPECT_TRUE(again->manifest_known);
  EXPECT_EQ(again->inserted, 0);
  EXPECT_EQ(again->unchanged, 250);

  // Another file repeating some entries and adding one.
  ManifestImport m2 = m;
  m2.manifest.sha256 = "f2";
  m2.devices.resize(3);
  m2.devices.push_back(device("dev-new"));
  auto second = store_->import_manifest(m2);
  ASSERT_TRUE(second) << second.error().detail;
  EXPECT_EQ(second->inserted, 1);
  EXPECT_EQ(second->unchanged, 3);

  // A different entry for a known unique id: conflict, and nothing of that file is imported.
  ManifestImport bad = m;
  bad.manifest.sha256 = "f3";
  bad.devices = {device("dev-fresh"), device("dev-1")};
  bad.devices[1].part_number = "PN-OTHER";
  auto refused = store_->import_manifest(bad);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::conflict);
  EXPECT_EQ(store_->find_device_by_unique_id("dev-fresh").error().code, Errc::not_found);
  EXPECT_EQ(store_->find_manifest("f3").error().code, Errc::not_found);

  // A new unique id that reuses a known UKID: the unique constraint refuses it.
  ManifestImport clash = m;
  clash.manifest.sha256 = "f4";
  clash.devices = {device("dev-clash")};
  clash.devices[0].ukid = device("dev-0").ukid;
  auto clashed = store_->import_manifest(clash);
  ASSERT_FALSE(clashed);
  EXPECT_EQ(clashed.error().code, Errc::conflict);

  // Lookups.
  const auto d = device("dev-4");
  auto by_fp = store_->find_device_by_bc_fingerprint(d.bc_sha256);
  ASSERT_TRUE(by_fp);
  EXPECT_EQ(by_fp->vendor_unique_id, "dev-4");
  EXPECT_EQ(by_fp->bc_der, d.bc_der);
  EXPECT_EQ(by_fp->state, DeviceState::received);
  EXPECT_EQ(by_fp->manifest_id, first->manifest_id);
  EXPECT_EQ(store_->find_device_by_ukid(*d.ukid)->vendor_unique_id, "dev-4");
  EXPECT_FALSE(store_->find_device_by_unique_id("dev-5")->ukid.has_value());
  EXPECT_EQ(store_->find_device_by_ukid("00").error().code, Errc::not_found);

  // Imports are audited, refusals included.
  int accepted = 0, refused_n = 0;
  for (const auto& r : audit_records()) {
    if (r.event.action != "manifest-import") continue;
    (r.event.outcome == Outcome::accepted ? accepted : refused_n)++;
  }
  EXPECT_EQ(accepted, 3);
  EXPECT_EQ(refused_n, 2);
}

TEST_P(StoreContract, DeviceStateTransitions) {
  ManifestImport m;
  m.manifest = ManifestRecord{0, "hallmark", "vendor", "f1", 0, 0, at(1)};
  m.devices = {device("a"), device("b")};
  ASSERT_TRUE(store_->import_manifest(m));
  auto e = event();
  e.time = at(1'800'000'123);
  ASSERT_TRUE(store_->mount_device("a", "line-7", e));
  auto a = store_->find_device_by_unique_id("a");
  EXPECT_EQ(a->state, DeviceState::mounted);
  EXPECT_EQ(a->station, "line-7");
  EXPECT_EQ(a->mounted_at, at(1'800'000'123));
  EXPECT_EQ(store_->mount_device("a", "line-7", event()).error().code, Errc::conflict);
  EXPECT_EQ(store_->mount_device("zz", "line-7", event()).error().code, Errc::not_found);
  ASSERT_TRUE(store_->retire_device("b", event()));
  EXPECT_EQ(store_->find_device_by_unique_id("b")->state, DeviceState::retired);
  EXPECT_EQ(store_->mount_device("b", "line-7", event()).error().code, Errc::conflict);
  ASSERT_TRUE(store_->mark_bc_revoked(a->id, event()));
  ASSERT_TRUE(store_->mark_bc_consumed(a->id, event()));
  a = store_->find_device_by_unique_id("a");
  EXPECT_TRUE(a->bc_revoked);
  EXPECT_TRUE(a->bc_consumed);
  EXPECT_EQ(store_->mark_bc_revoked(999999, event()).error().code, Errc::not_found);
}

TEST_P(StoreContract, IssuanceIsOneTransaction) {
  const auto user = enrollable("dev-1");
  const auto serial = random_serial();
  auto issued = store_->record_issuance(issuance(user, serial));
  ASSERT_TRUE(issued) << issued.error().detail;
  EXPECT_GT(issued->id, 0);

  auto ee = store_->find_end_entity(user);
  EXPECT_EQ(ee->state, EndEntityState::generated);
  EXPECT_EQ(ee->issued_count, 1);
  auto dev = store_->find_device_by_unique_id("dev-1");
  EXPECT_EQ(dev->state, DeviceState::enrolled);
  EXPECT_EQ(issued->device_id, dev->id);
  EXPECT_EQ(issued->end_entity_id, ee->id);

  auto by_serial = store_->find_certificate_by_serial(serial);
  ASSERT_TRUE(by_serial);
  EXPECT_EQ(by_serial->der, to_bytes("cert-der-" + serial));
  EXPECT_EQ(by_serial->status, CertificateStatus::good);
  EXPECT_EQ(by_serial->not_after, kNoExpiry);
  EXPECT_EQ(store_->find_certificate_by_ukid(*dev->ukid)->serial_hex, serial);
  // Idempotent retry: same device + same key finds the certificate.
  auto retry = store_->find_certificate_by_device_and_key(dev->id, crypto::sha256_hex(to_bytes("key")));
  ASSERT_TRUE(retry);
  EXPECT_EQ(retry->serial_hex, serial);
  EXPECT_EQ(store_->find_certificate_by_device_and_key(dev->id, "other").error().code, Errc::not_found);

  // Second issuance for the single-use end entity: conflict, nothing recorded.
  auto second = store_->record_issuance(issuance(user, random_serial(), "key2"));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, Errc::conflict);
  EXPECT_EQ(store_->list_certificates({})->size(), 1u);

  // A duplicate serial for another end entity: conflict, and that end entity is untouched.
  const auto user2 = enrollable("dev-2");
  auto dup = store_->record_issuance(issuance(user2, serial));
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, Errc::conflict);
  EXPECT_EQ(store_->find_end_entity(user2)->state, EndEntityState::new_);
  EXPECT_EQ(store_->find_device_by_unique_id("dev-2")->state, DeviceState::mounted);

  // Unknown end entity; invalid input.
  EXPECT_EQ(store_->record_issuance(issuance("nobody", random_serial())).error().code, Errc::not_found);
  EXPECT_EQ(store_->record_issuance(issuance(user2, "")).error().code, Errc::invalid_input);

  // Re-enrollment of a generated end entity is allowed and counted apart.
  auto re = issuance(user, random_serial(), "key3");
  re.kind = IssuanceKind::reenroll;
  ASSERT_TRUE(store_->record_issuance(re));
  EXPECT_EQ(store_->find_end_entity(user)->renewal_count, 1);
  auto re_new = issuance(user2, random_serial());
  re_new.kind = IssuanceKind::reenroll;
  EXPECT_EQ(store_->record_issuance(re_new).error().code, Errc::conflict);

  // Every decision is in the audit log with its outcome.
  int accepted = 0, refused = 0;
  for (const auto& r : audit_records()) {
    if (r.event.action != "enroll" && r.event.action != "reenroll") continue;
    (r.event.outcome == Outcome::accepted ? accepted : refused)++;
    if (r.event.outcome == Outcome::refused) {
      EXPECT_FALSE(r.event.reason.empty());
    }
  }
  EXPECT_EQ(accepted, 2);
  EXPECT_EQ(refused, 5);
  EXPECT_TRUE(store_->verify_audit_chain()->ok);
}

// An alias's after_issue: the BC flag and its audit record commit with the issuance, or not at all.
TEST_P(StoreContract, IssuanceSetsTheBcFlagInItsOwnTransaction) {
  const auto revoking = enrollable("dev-revoke");
  auto r = issuance(revoking, random_serial());
  r.mark_bc = BcMark::revoked;
  r.bc_audit = event();
  r.bc_audit.actor = "ra";
  r.bc_audit.object = "dev-revoke";
  ASSERT_TRUE(store_->record_issuance(r));
  auto dev = store_->find_device_by_unique_id("dev-revoke");
  EXPECT_TRUE(dev->bc_revoked);
  EXPECT_FALSE(dev->bc_consumed);
  EXPECT_EQ(dev->state, DeviceState::enrolled);

  const auto consuming = enrollable("dev-consume");
  auto c = issuance(consuming, random_serial());
  c.mark_bc = BcMark::consumed;
  ASSERT_TRUE(store_->record_issuance(c));
  const auto consumed = store_->find_device_by_unique_id("dev-consume");
  EXPECT_TRUE(consumed->bc_consumed);
  EXPECT_FALSE(consumed->bc_revoked);

  // Refused because the single use is spent, or because the serial is taken (the statement itself
  // fails): no flag either way.
  const auto spent = enrollable("dev-spent");
  ASSERT_TRUE(store_->record_issuance(issuance(spent, random_serial())));
  auto again = issuance(spent, random_serial(), "key2");
  again.mark_bc = BcMark::revoked;
  ASSERT_FALSE(store_->record_issuance(again));
  EXPECT_FALSE(store_->find_device_by_unique_id("dev-spent")->bc_revoked);
  const auto taken = enrollable("dev-taken");
  auto dup = issuance(taken, r.certificate.serial_hex);
  dup.mark_bc = BcMark::revoked;
  const auto refused = store_->record_issuance(dup);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::conflict) << refused.error().detail;
  const auto untouched = store_->find_device_by_unique_id("dev-taken");
  EXPECT_FALSE(untouched->bc_revoked);
  EXPECT_EQ(untouched->state, DeviceState::mounted);

  // Each flag's record follows its issuance's.
  std::vector<std::string> accepted;
  for (const auto& a : audit_records()) {
    if (a.event.outcome != Outcome::accepted) continue;
    if (a.event.action == "enroll" || a.event.action.starts_with("bc-"))
      accepted.push_back(a.event.action + " " + a.event.object);
  }
  EXPECT_EQ(accepted, (std::vector<std::string>{
                          "enroll " + revoking, "bc-revoke dev-revoke", "enroll " + consuming,
                          "bc-consume device:" + std::to_string(consumed->id), "enroll " + spent}));
  EXPECT_TRUE(store_->verify_audit_chain()->ok);
}

TEST_P(StoreContract, DatabaseRefusesASecondIssuanceForSingleUse) {
  // Even SQL that skips the store's checks cannot count past allowed_requests.
  const auto user = enrollable("dev-1");
  ASSERT_TRUE(store_->record_issuance(issuance(user, random_serial())));
  std::string err;
  if (GetParam() == Backend::sqlite) {
    sqlite3* db = nullptr;
    sqlite3_open(path_.c_str(), &db);
    EXPECT_NE(sqlite3_exec(db, "UPDATE end_entities SET issued_count = issued_count + 1", nullptr, nullptr,
                           nullptr),
              SQLITE_OK);
    EXPECT_NE(sqlite3_exec(db, "UPDATE devices SET state = 'lost'", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  } else {
    EXPECT_NE(PgEnvironment::server()->exec("UPDATE end_entities SET issued_count = issued_count + 1", db_),
              "");
    EXPECT_NE(PgEnvironment::server()->exec("UPDATE devices SET state = 'lost'", db_), "");
  }
}

TEST_P(StoreContract, FiftyThreadsRaceForOneSingleUseEndEntity) {
  const auto user = enrollable("dev-race");
  constexpr int kThreads = 50;
  std::atomic<int> wins{0}, conflicts{0}, other{0};
  std::vector<std::thread> threads;
  std::atomic<bool> go{false};
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      while (!go.load()) std::this_thread::yield();
      auto r = store_->record_issuance(issuance(user, random_serial(), "key-" + std::to_string(i)));
      if (r) {
        ++wins;
      } else if (r.error().code == Errc::conflict) {
        ++conflicts;
      } else {
        ++other;
      }
    });
  }
  go = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(wins.load(), 1);
  EXPECT_EQ(conflicts.load(), kThreads - 1);
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(store_->list_certificates({})->size(), 1u);
  EXPECT_EQ(store_->find_end_entity(user)->issued_count, 1);

  int accepted = 0, refused = 0;
  for (const auto& r : audit_records()) {
    if (r.event.action != "enroll" || r.event.object != user) continue;
    (r.event.outcome == Outcome::accepted ? accepted : refused)++;
  }
  EXPECT_EQ(accepted, 1);
  EXPECT_EQ(refused, kThreads - 1);
  auto v = store_->verify_audit_chain();
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->ok) << v->reason;
}

// Issuances batched together (PostgreSQL sends a batch's statements in one round trip): one that
// fails (duplicate serial, device no longer mounted) is undone alone, with its reason, and the
// others are issued.
TEST_P(StoreContract, ConcurrentIssuancesFailAlone) {
  constexpr int kGood = 12;
  std::vector<std::string> good;
  for (int i = 0; i < kGood; ++i) good.push_back(enrollable("dev-ok-" + std::to_string(i)));
  const auto taken = random_serial();
  const auto first = enrollable("dev-first");
  ASSERT_TRUE(store_->record_issuance(issuance(first, taken)));
  const auto dup = enrollable("dev-dup");
  const auto retired = enrollable("dev-retired");
  ASSERT_TRUE(store_->retire_device("dev-retired", event()));

  struct Attempt {
    std::string user;
    Result<CertificateRecord> result = fail(Errc::internal, "not run");
  };
  std::vector<Attempt> outcomes;
  for (const auto& u : good) outcomes.push_back({u});
  outcomes.push_back({dup});
  outcomes.push_back({retired});
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (auto& o : outcomes) {
    threads.emplace_back([&, &o = o] {
      while (!go.load()) std::this_thread::yield();
      o.result = store_->record_issuance(issuance(o.user, o.user == dup ? taken : random_serial()));
    });
  }
  go = true;
  for (auto& t : threads) t.join();

  for (const auto& o : outcomes) {
    if (o.user == dup) {
      ASSERT_FALSE(o.result);
      EXPECT_EQ(o.result.error().code, Errc::conflict);
      EXPECT_NE(o.result.error().detail.find("already recorded"), std::string::npos)
          << o.result.error().detail;
      EXPECT_EQ(store_->find_end_entity(dup)->state, EndEntityState::new_);
      EXPECT_EQ(store_->find_device_by_unique_id("dev-dup")->state, DeviceState::mounted);
    } else if (o.user == retired) {
      ASSERT_FALSE(o.result);
      EXPECT_EQ(o.result.error().code, Errc::conflict);
      EXPECT_NE(o.result.error().detail.find("is retired, not mounted"), std::string::npos)
          << o.result.error().detail;
      EXPECT_EQ(store_->find_end_entity(retired)->state, EndEntityState::new_);
      EXPECT_EQ(store_->find_end_entity(retired)->issued_count, 0);
    } else {
      ASSERT_TRUE(o.result) << o.result.error().detail;
      EXPECT_EQ(store_->find_certificate_by_serial(o.result->serial_hex)->end_entity_id,
                o.result->end_entity_id);
      EXPECT_EQ(store_->find_end_entity(o.user)->state, EndEntityState::generated);
    }
  }
  EXPECT_EQ(store_->list_certificates({})->size(), static_cast<std::size_t>(kGood + 1));
  int accepted = 0, refused = 0;
  for (const auto& r : audit_records()) {
    if (r.event.action != "enroll") continue;
    (r.event.outcome == Outcome::accepted ? accepted : refused)++;
  }
  EXPECT_EQ(accepted, kGood + 1);
  EXPECT_EQ(refused, 2);
  auto v = store_->verify_audit_chain();
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->ok) << v->reason;
}

TEST_P(StoreContract, RevocationAndListingFilters) {
  ASSERT_TRUE(store_->add_ca(CaRecord{0, "idc-ca", "issuing", to_bytes("d"), "", "active", 0, false}));
  std::vector<std::string> serials;
  std::vector<Id> devices;
  for (int i = 0; i < 6; ++i) {
    const auto user = enrollable("dev-" + std::to_string(i));
    auto req = issuance(user, random_serial());
    req.certificate.not_after = at(1'900'000'000 + i * 1000);
    if (i >= 4) req.certificate.issuer_ca = "idc-ca-2";
    auto r = store_->record_issuance(req);
    ASSERT_TRUE(r) << r.error().detail;
    serials.push_back(r->serial_hex);
    devices.push_back(*r->device_id);
  }
  ASSERT_TRUE(store_->revoke_certificate(serials[1], at(1'850'000'000), 1, event()));
  auto revoked = store_->find_certificate_by_serial(serials[1]);
  EXPECT_EQ(revoked->status, CertificateStatus::revoked);
  EXPECT_EQ(revoked->revoked_at, at(1'850'000'000));
  EXPECT_EQ(revoked->reason, 1);
  EXPECT_EQ(store_->revoke_certificate(serials[1], at(1), 1, event()).error().code, Errc::conflict);
  EXPECT_EQ(store_->revoke_certificate("00ff", at(1), 1, event()).error().code, Errc::not_found);

  auto count = [&](CertificateFilter f) { return store_->list_certificates(f)->size(); };
  EXPECT_EQ(count({}), 6u);
  EXPECT_EQ(count({.issuer_ca = "idc-ca"}), 4u);
  EXPECT_EQ(count({.issuer_ca = "idc-ca-2"}), 2u);
  EXPECT_EQ(count({.device_id = devices[3]}), 1u);
  EXPECT_EQ(count({.status = CertificateStatus::revoked}), 1u);
  EXPECT_EQ(count({.status = CertificateStatus::good}), 5u);
  EXPECT_EQ(count({.expiring_before = at(1'900'002'500)}), 3u);
  EXPECT_EQ(
      count({.issuer_ca = "idc-ca", .status = CertificateStatus::good, .expiring_before = at(1'900'002'500)}),
      2u);
  // Paging.
  auto page1 = store_->list_certificates({.limit = 4});
  ASSERT_EQ(page1->size(), 4u);
  auto page2 = store_->list_certificates({.limit = 4, .after_id = page1->back().id});
  ASSERT_EQ(page2->size(), 2u);
  EXPECT_EQ(page2->back().serial_hex, serials[5]);

  int revokes = 0;
  for (const auto& r : audit_records()) {
    if (r.event.action == "revoke") ++revokes;
  }
  EXPECT_EQ(revokes, 3);
}

TEST_P(StoreContract, RevocationListsForCrls) {
  std::vector<std::string> serials;
  for (int i = 0; i < 5; ++i) {
    auto req = issuance(enrollable("crl-dev-" + std::to_string(i)), random_serial());
    if (i == 4) req.certificate.issuer_ca = "other-ca";
    auto r = store_->record_issuance(req);
    ASSERT_TRUE(r) << r.error().detail;
    serials.push_back(r->serial_hex);
  }
  const auto ca = store_->find_certificate_by_serial(serials[0])->issuer_ca;
  EXPECT_TRUE(store_->list_revocations(ca, 0, 10)->empty());
  ASSERT_TRUE(store_->revoke_certificate(serials[3], at(1'850'000'300), 1, event()));
  ASSERT_TRUE(store_->revoke_certificate(serials[1], at(1'850'000'100), 4, event()));
  ASSERT_TRUE(store_->revoke_certificate(serials[4], at(1'850'000'400), 5, event()));

  // A BC of our own BC CA, never issued through record_issuance, recorded as revoked.
  CertificateRecord bc;
  bc.serial_hex = random_serial();
  bc.issuer_ca = ca;
  bc.subject = "CN=bc";
  bc.public_key_sha256 = std::string(64, 'b');
  bc.der = to_bytes("bc-der");
  bc.status = CertificateStatus::revoked;
  bc.revoked_at = at(1'850'000'500);
  ASSERT_TRUE(store_->record_revoked_certificate(bc, event()));
  EXPECT_EQ(store_->record_revoked_certificate(bc, event()).error().code, Errc::conflict);
  auto good = bc;
  good.serial_hex = random_serial();
  good.status = CertificateStatus::good;
  good.revoked_at.reset();
  EXPECT_EQ(store_->record_revoked_certificate(good, event()).error().code, Errc::invalid_input);
  EXPECT_EQ(store_->find_certificate_by_serial(good.serial_hex).error().code, Errc::not_found);

  // Ascending id order, paged; only this CA's revoked rows.
  auto page1 = store_->list_revocations(ca, 0, 2);
  ASSERT_TRUE(page1) << page1.error().detail;
  ASSERT_EQ(page1->size(), 2u);
  EXPECT_EQ((*page1)[0].serial_hex, serials[1]);
  EXPECT_EQ((*page1)[0].revoked_at, at(1'850'000'100));
  EXPECT_EQ((*page1)[0].reason, 4);
  EXPECT_EQ((*page1)[1].serial_hex, serials[3]);
  auto page2 = store_->list_revocations(ca, page1->back().id, 2);
  ASSERT_EQ(page2->size(), 1u);
  EXPECT_EQ((*page2)[0].serial_hex, bc.serial_hex);
  EXPECT_FALSE((*page2)[0].reason.has_value());
  EXPECT_TRUE(store_->list_revocations(ca, page2->back().id, 2)->empty());
  EXPECT_EQ(store_->list_revocations("other-ca", 0, 10)->size(), 1u);

  // The log's head moves with every decision.
  const auto head = store_->last_audit_id();
  ASSERT_TRUE(head);
  EXPECT_EQ(*head, audit_records().back().id);
  ASSERT_TRUE(store_->append_audit(event()));
  EXPECT_EQ(*store_->last_audit_id(), *head + 1);
}

TEST_P(StoreContract, LatestCrlPerCa) {
  EXPECT_EQ(store_->find_crl("idc").error().code, Errc::not_found);
  EXPECT_TRUE(store_->list_crls()->empty());
  ASSERT_TRUE(store_->put_crl(CrlRecord{"idc", 2, at(1'800'000'000), at(1'800'086'400), to_bytes("crl-2")}));
  ASSERT_TRUE(store_->put_crl(CrlRecord{"bc", 1, at(1'800'000'000), at(1'800'086'400), to_bytes("bc-1")}));
  // Never back, never the same number twice.
  EXPECT_EQ(store_->put_crl(CrlRecord{"idc", 2, at(1), at(2), to_bytes("x")}).error().code, Errc::conflict);
  EXPECT_EQ(store_->put_crl(CrlRecord{"idc", 1, at(1), at(2), to_bytes("x")}).error().code, Errc::conflict);
  EXPECT_EQ(store_->put_crl(CrlRecord{"idc", 3, at(1), at(2), {}}).error().code, Errc::invalid_input);
  auto idc = store_->find_crl("idc");
  ASSERT_TRUE(idc);
  EXPECT_EQ(idc->crl_number, 2);
  EXPECT_EQ(idc->der, to_bytes("crl-2"));
  ASSERT_TRUE(store_->put_crl(CrlRecord{"idc", 3, at(1'800'003'600), at(1'800'090'000), to_bytes("crl-3")}));
  idc = store_->find_crl("idc");
  EXPECT_EQ(idc->crl_number, 3);
  EXPECT_EQ(idc->this_update, at(1'800'003'600));
  EXPECT_EQ(idc->next_update, at(1'800'090'000));
  EXPECT_EQ(idc->der, to_bytes("crl-3"));
  auto all = store_->list_crls();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].ca_name, "bc");
  EXPECT_EQ((*all)[1].ca_name, "idc");
  EXPECT_EQ((*all)[1].crl_number, 3);
  EXPECT_TRUE((*all)[1].der.empty());
}

class AuditTamper : public StoreContract {
 protected:
  void reopen_empty() {
    store_.reset();
    if (GetParam() == Backend::sqlite) {
      std::filesystem::remove_all(dir_);
      std::filesystem::create_directories(dir_);
    } else {
      ASSERT_EQ(PgEnvironment::server()->reset_schema(db_), "");
    }
    store_ = std::move(*open_store(url_));
    ASSERT_TRUE(store_->migrate());
  }
  void fill(int n) {
    for (int i = 0; i < n; ++i) {
      auto e = event("test-" + std::to_string(i), "obj-" + std::to_string(i));
      ASSERT_TRUE(store_->append_audit(e));
    }
    auto v = store_->verify_audit_chain();
    ASSERT_TRUE(v);
    ASSERT_TRUE(v->ok) << v->reason;
    ASSERT_EQ(v->records, n);
  }
  void expect_broken_at(Id id) {
    auto v = store_->verify_audit_chain();
    ASSERT_TRUE(v) << v.error().detail;
    EXPECT_FALSE(v->ok);
    EXPECT_EQ(v->first_broken_id, id) << v->reason;
    EXPECT_FALSE(v->reason.empty());
    auto report = store_->integrity_check();
    ASSERT_TRUE(report);
    EXPECT_FALSE(report->ok);
  }
};

TEST_P(AuditTamper, ChangedDeletedOrReorderedRecordsAreNamed) {
  // Each case on a fresh chain (one test case: on PostgreSQL every CTest case costs a server start).
  struct Case {
    const char* name;
    std::function<void()> tamper;
    Id broken;
  };
  const std::vector<Case> cases = {
      {"changed reason", [&] { raw("UPDATE audit SET reason = 'nothing to see' WHERE id = 4"); }, 4},
      {"changed outcome", [&] { raw("UPDATE audit SET outcome = 'refused' WHERE id = 7"); }, 7},
      {"deleted", [&] { raw("DELETE FROM audit WHERE id = 5"); }, 5},
      {"deleted last", [&] { raw("DELETE FROM audit WHERE id = 10"); }, 10},
      {"reordered",
       [&] {
         raw("UPDATE audit SET id = -1 WHERE id = 3; UPDATE audit SET id = 3 WHERE id = 4; "
             "UPDATE audit SET id = 4 WHERE id = -1");
       },
       3},
      // Recomputing a changed record's own hash does not help: the next record's prev_hash differs.
      {"changed and rehashed",
       [&] {
         auto recs = store_->list_audit(0, 100);
         auto e = (*recs)[2].event;
         e.reason = "forged";
         const auto forged = to_hex(audit_hash((*recs)[2].prev_hash, 3, e));
         raw(GetParam() == Backend::sqlite
                 ? "UPDATE audit SET reason = 'forged', hash = X'" + forged + "' WHERE id = 3"
                 : "UPDATE audit SET reason = 'forged', hash = '\\x" + forged + "'::bytea WHERE id = 3");
       },
       4},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    reopen_empty();
    fill(10);
    c.tamper();
    expect_broken_at(c.broken);
  }
}

TEST_P(StoreContract, IntegrityCheckPassesOnAHealthyStore) {
  const auto user = enrollable("dev-1");
  ASSERT_TRUE(store_->record_issuance(issuance(user, random_serial())));
  auto report = store_->integrity_check();
  ASSERT_TRUE(report) << report.error().detail;
  EXPECT_TRUE(report->ok) << report->detail;
  EXPECT_EQ(report->audit.head_hash.size(), kAuditHashSize);
}

TEST_P(StoreContract, LeaderLease) {
  const auto t0 = at(1'800'000'000);
  EXPECT_TRUE(*store_->try_leader_lease("crl", "node-a", std::chrono::seconds(30), t0));
  EXPECT_FALSE(
      *store_->try_leader_lease("crl", "node-b", std::chrono::seconds(30), t0 + std::chrono::seconds(10)));
  EXPECT_TRUE(
      *store_->try_leader_lease("crl", "node-a", std::chrono::seconds(30), t0 + std::chrono::seconds(20)));
  // Expired: another node takes over.
  EXPECT_TRUE(
      *store_->try_leader_lease("crl", "node-b", std::chrono::seconds(30), t0 + std::chrono::seconds(51)));
  EXPECT_FALSE(
      *store_->try_leader_lease("crl", "node-a", std::chrono::seconds(30), t0 + std::chrono::seconds(52)));
  ASSERT_TRUE(store_->release_leader_lease("crl", "node-b"));
  EXPECT_TRUE(
      *store_->try_leader_lease("crl", "node-a", std::chrono::seconds(30), t0 + std::chrono::seconds(53)));
}

TEST_P(StoreContract, EndEntities) {
  EndEntityRecord ee;
  ee.username = "u1";
  ee.subject_json = R"({"serialNumber":"u1"})";
  ASSERT_TRUE(store_->add_end_entity(ee, event()));
  EXPECT_EQ(store_->add_end_entity(ee, event()).error().code, Errc::conflict);
  auto found = store_->find_end_entity("u1");
  ASSERT_TRUE(found);
  EXPECT_EQ(found->subject_json, ee.subject_json);
  EXPECT_EQ(found->state, EndEntityState::new_);
  ASSERT_TRUE(store_->set_end_entity_state("u1", EndEntityState::pending, event()));
  EXPECT_EQ(store_->find_end_entity("u1")->state, EndEntityState::pending);
  EXPECT_EQ(store_->record_issuance(issuance("u1", random_serial())).error().code, Errc::conflict);
  EXPECT_EQ(store_->set_end_entity_state("u2", EndEntityState::revoked, event()).error().code,
            Errc::not_found);
  // An end entity allowing two enrollments.
  ee.username = "u3";
  ee.allowed_requests = 2;
  ASSERT_TRUE(store_->add_end_entity(ee, event()));
  ASSERT_TRUE(store_->record_issuance(issuance("u3", random_serial())));
  // Now generated: a second plain enrollment needs the state to go back to new (operator action).
  ASSERT_TRUE(store_->set_end_entity_state("u3", EndEntityState::new_, event()));
  ASSERT_TRUE(store_->record_issuance(issuance("u3", random_serial())));
  ASSERT_TRUE(store_->set_end_entity_state("u3", EndEntityState::new_, event()));
  EXPECT_EQ(store_->record_issuance(issuance("u3", random_serial())).error().code, Errc::conflict);
}

ManifestImport manifest_of(const std::string& sha256, std::vector<DeviceRecord> devices,
                           const std::string& reel = {}) {
  ManifestImport m;
  m.manifest = ManifestRecord{0, "hallmark", "vendor", sha256, 0, 0, at(1'800'000'000), reel};
  m.devices = std::move(devices);
  m.audit = event();
  return m;
}

DeviceRecord lite(const std::string& unique_id) {
  DeviceRecord d = device(unique_id, false);
  d.bc_der.clear();
  d.bc_sha256.clear();
  d.bc_issuer.clear();
  return d;
}

TEST_P(StoreContract, ListDevicesFiltersAndPages) {
  std::vector<DeviceRecord> reel_a, reel_b;
  for (int i = 0; i < 5; ++i) reel_a.push_back(device("a-" + std::to_string(i)));
  for (int i = 0; i < 4; ++i) {
    reel_b.push_back(device("b-" + std::to_string(i)));
    reel_b.back().part_number = "PN-2";
  }
  auto a = store_->import_manifest(manifest_of("fa", reel_a, "REEL-A"));
  ASSERT_TRUE(a) << a.error().detail;
  auto b = store_->import_manifest(manifest_of("fb", reel_b, "REEL-B"));
  ASSERT_TRUE(b) << b.error().detail;
  ASSERT_TRUE(store_->mount_device("a-1", "s", event()));
  ASSERT_TRUE(store_->mount_device("b-2", "s", event()));

  auto ids = [](const Result<std::vector<DeviceRecord>>& r) {
    std::vector<std::string> out;
    EXPECT_TRUE(r) << r.error().detail;
    if (r)
      for (const auto& d : *r) out.push_back(d.vendor_unique_id);
    return out;
  };
  EXPECT_EQ(ids(store_->list_devices({})).size(), 9u);
  EXPECT_EQ(ids(store_->list_devices({.state = DeviceState::mounted})),
            (std::vector<std::string>{"a-1", "b-2"}));
  EXPECT_EQ(ids(store_->list_devices({.manifest_id = b->manifest_id})).size(), 4u);
  EXPECT_EQ(ids(store_->list_devices({.reel = "REEL-A"})).size(), 5u);
  EXPECT_TRUE(ids(store_->list_devices({.reel = "REEL-X"})).empty());
  EXPECT_EQ(ids(store_->list_devices({.part_number = "PN-2", .limit = 2})),
            (std::vector<std::string>{"b-0", "b-1"}));
  EXPECT_EQ(
      ids(store_->list_devices({.state = DeviceState::received, .reel = "REEL-B", .part_number = "PN-2"})),
      (std::vector<std::string>{"b-0", "b-1", "b-3"}));

  // Paging: ascending ids, after_id continues where the last page ended.
  std::vector<std::string> all;
  Id after = 0;
  for (;;) {
    auto page = store_->list_devices({.limit = 4, .after_id = after});
    ASSERT_TRUE(page);
    if (page->empty()) break;
    for (const auto& d : *page) {
      EXPECT_GT(d.id, after);
      after = d.id;
      all.push_back(d.vendor_unique_id);
    }
  }
  EXPECT_EQ(all.size(), 9u);
  EXPECT_EQ(all.front(), "a-0");
  EXPECT_EQ(all.back(), "b-3");

  // Reel lookup.
  auto by_reel = store_->find_manifest_by_reel("REEL-B");
  ASSERT_TRUE(by_reel) << by_reel.error().detail;
  EXPECT_EQ(by_reel->id, b->manifest_id);
  EXPECT_EQ(by_reel->sha256, "fb");
  EXPECT_EQ(by_reel->reel, "REEL-B");
  EXPECT_EQ(store_->find_manifest_by_reel("REEL-X").error().code, Errc::not_found);
  EXPECT_EQ(store_->find_manifest_by_id(a->manifest_id)->reel, "REEL-A");
  EXPECT_EQ(store_->find_manifest("fa")->reel, "REEL-A");
}

TEST_P(StoreContract, ReelNamesAreUnique) {
  ASSERT_TRUE(store_->import_manifest(manifest_of("f1", {device("r1")}, "R1")));
  // The same file again is known (no reel clash); another file with the same reel is refused.
  auto again = store_->import_manifest(manifest_of("f1", {device("r1")}, "R1"));
  ASSERT_TRUE(again) << again.error().detail;
  EXPECT_TRUE(again->manifest_known);
  auto clash = store_->import_manifest(manifest_of("f2", {device("r2")}, "R1"));
  ASSERT_FALSE(clash);
  EXPECT_EQ(clash.error().code, Errc::conflict);
  EXPECT_NE(clash.error().detail.find("reel R1"), std::string::npos) << clash.error().detail;
  EXPECT_EQ(store_->find_device_by_unique_id("r2").error().code, Errc::not_found);
  // Manifests without a reel name do not clash with each other.
  ASSERT_TRUE(store_->import_manifest(manifest_of("f3", {device("r3")})));
  ASSERT_TRUE(store_->import_manifest(manifest_of("f4", {device("r4")})));
  auto session =
      store_->begin_manifest_import(ManifestRecord{0, "hallmark", "vendor", "", 0, 0, at(1), "R1"});
  ASSERT_FALSE(session);
  EXPECT_EQ(session.error().code, Errc::conflict);
}

TEST_P(StoreContract, ConflictsAreReportedPerEntryWhenSkipping) {
  ASSERT_TRUE(store_->import_manifest(manifest_of("f1", {device("k0"), device("k1"), device("k2")})));
  DeviceRecord changed = device("k1");
  changed.part_number = "PN-OTHER";
  DeviceRecord steals_bc = device("k9");
  steals_bc.bc_der = device("k2").bc_der;
  steals_bc.bc_sha256 = device("k2").bc_sha256;
  DeviceRecord steals_ukid = device("k8");
  steals_ukid.ukid = device("k0").ukid;
  DeviceRecord twice = device("n1");
  twice.part_number = "PN-OTHER";
  auto m =
      manifest_of("f2", {device("n0"), changed, device("k0"), steals_bc, device("n1"), steals_ukid, twice});
  m.on_conflict = OnConflict::skip;
  auto r = store_->import_manifest(m);
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(r->inserted, 2);   // n0, n1
  EXPECT_EQ(r->unchanged, 1);  // k0
  ASSERT_EQ(r->conflicts.size(), 4u);
  EXPECT_EQ(r->conflicts[0].first, 1u);
  EXPECT_EQ(r->conflicts[0].second,
            "conflicts with the inventory: uniqueId k1 is known as part PN-1, this entry says PN-OTHER");
  EXPECT_EQ(r->conflicts[1].first, 3u);
  EXPECT_EQ(r->conflicts[1].second,
            "conflicts with the inventory: BC sha256 " + device("k2").bc_sha256 + " belongs to uniqueId k2");
  EXPECT_EQ(r->conflicts[2].first, 5u);
  EXPECT_EQ(r->conflicts[2].second,
            "conflicts with the inventory: UKID " + *device("k0").ukid + " belongs to uniqueId k0");
  EXPECT_EQ(r->conflicts[3].first, 6u);
  EXPECT_EQ(store_->find_device_by_unique_id("k1")->part_number, "PN-1");
  EXPECT_EQ(store_->find_device_by_unique_id("n1")->part_number, "PN-1");
  EXPECT_EQ(store_->find_device_by_unique_id("k9").error().code, Errc::not_found);
  EXPECT_EQ(store_->find_manifest("f2")->inserted_count, 2);
  // The transaction is usable after a clash (PostgreSQL): the audit record was written with it.
  EXPECT_EQ(audit_records().back().event.reason, "inserted=2 unchanged=1 conflicts=4");
}

TEST_P(StoreContract, MountCreatesTheEndEntityInTheSameTransaction) {
  ASSERT_TRUE(store_->import_manifest(manifest_of("f1", {device("m1"), device("m2"), device("m3")})));
  EndEntityRecord ee;
  ee.username = "user-m1";
  ee.est_alias = "alias";
  auto st = store_->mount_device("m1", "line-2", ee, event());
  ASSERT_TRUE(st) << st.error().detail;
  auto dev = store_->find_device_by_unique_id("m1");
  EXPECT_EQ(dev->state, DeviceState::mounted);
  auto made = store_->find_end_entity("user-m1");
  ASSERT_TRUE(made) << made.error().detail;
  EXPECT_EQ(made->device_id, dev->id);
  EXPECT_EQ(made->est_alias, "alias");
  const auto records = audit_records();
  ASSERT_GE(records.size(), 2u);
  EXPECT_EQ(records[records.size() - 2].event.action, "end-entity-create");
  EXPECT_EQ(records.back().event.action, "mount");

  // A refused mount creates nothing.
  ee.username = "user-m1-again";
  EXPECT_EQ(store_->mount_device("m1", "line-2", ee, event()).error().code, Errc::conflict);
  EXPECT_EQ(store_->find_end_entity("user-m1-again").error().code, Errc::not_found);
  EXPECT_EQ(store_->mount_device("nope", "x", ee, event()).error().code, Errc::not_found);

  // A username taken by another device: the device stays received.
  ee.username = "user-m1";
  EXPECT_EQ(store_->mount_device("m2", "line-2", ee, event()).error().code, Errc::conflict);
  EXPECT_EQ(store_->find_device_by_unique_id("m2")->state, DeviceState::received);

  // An end entity made earlier for this very device is reused.
  auto m3 = store_->find_device_by_unique_id("m3");
  EndEntityRecord pre;
  pre.username = "user-m3";
  pre.device_id = m3->id;
  ASSERT_TRUE(store_->add_end_entity(pre, event()));
  ASSERT_TRUE(store_->mount_device("m3", "", pre, event()));
  EXPECT_EQ(store_->find_device_by_unique_id("m3")->state, DeviceState::mounted);
  // Without an end entity, as before.
  ASSERT_TRUE(store_->mount_device("m2", "line-3", event()));
}

TEST_P(StoreContract, LiteDevicesHaveNoBcUntilTheirKeyIsPinned) {
  auto r = store_->import_manifest(manifest_of("f1", {lite("l1"), lite("l2"), device("b1")}));
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(r->inserted, 3);
  auto l1 = store_->find_device_by_unique_id("l1");
  ASSERT_TRUE(l1);
  EXPECT_TRUE(l1->bc_der.empty());
  EXPECT_TRUE(l1->bc_sha256.empty());
  EXPECT_EQ(store_->find_device_by_bc_fingerprint("").error().code, Errc::not_found);
  // Importing the same Lite entries again: unchanged.
  auto again = store_->import_manifest(manifest_of("f2", {lite("l1")}));
  ASSERT_TRUE(again) << again.error().detail;
  EXPECT_EQ(again->unchanged, 1);

  const Bytes key = to_bytes("spki-of-l1");
  const std::string fp = crypto::sha256_hex(key);
  auto pinned = store_->pin_device_key("l1", key, fp, fp, event());
  ASSERT_TRUE(pinned) << pinned.error().detail;
  auto by_fp = store_->find_device_by_bc_fingerprint(fp);
  ASSERT_TRUE(by_fp);
  EXPECT_EQ(by_fp->vendor_unique_id, "l1");
  EXPECT_EQ(by_fp->bc_der, key);
  EXPECT_EQ(store_->find_device_by_ukid(fp)->vendor_unique_id, "l1");
  // Only once; not for a device with a BC; not with another device's key; not for unknown ones.
  EXPECT_EQ(store_->pin_device_key("l1", key, fp, std::nullopt, event()).error().code, Errc::conflict);
  EXPECT_EQ(store_->pin_device_key("b1", key, fp, std::nullopt, event()).error().code, Errc::conflict);
  EXPECT_EQ(store_->pin_device_key("l2", key, fp, std::nullopt, event()).error().code, Errc::conflict);
  EXPECT_TRUE(store_->find_device_by_unique_id("l2")->bc_sha256.empty());
  EXPECT_EQ(store_->pin_device_key("zz", key, "00", std::nullopt, event()).error().code, Errc::not_found);
  EXPECT_EQ(store_->pin_device_key("l2", {}, "", std::nullopt, event()).error().code, Errc::invalid_input);
  // The original manifest entry (no BC) re-imported after pinning adds nothing.
  auto after = store_->import_manifest(manifest_of("f1", {lite("l1"), lite("l2"), device("b1")}));
  ASSERT_TRUE(after) << after.error().detail;
  EXPECT_EQ(after->unchanged, 3);
  // A mounted Lite device's end entity, keyed by its unique id, is re-keyed with the pin.
  auto l2 = store_->find_device_by_unique_id("l2");
  EndEntityRecord lite_ee;
  lite_ee.username = "l2";
  lite_ee.device_id = l2->id;
  lite_ee.subject_json = R"({"serialNumber":"l2"})";
  ASSERT_TRUE(store_->mount_device("l2", "line-1", lite_ee, event()));
  const Bytes key2 = to_bytes("spki-of-l2");
  const std::string fp2 = crypto::sha256_hex(key2);
  EndEntityRecord rekeyed = lite_ee;
  rekeyed.username = fp2;
  rekeyed.subject_json = R"({"serialNumber":")" + fp2 + R"("})";
  // Taken by another device's end entity: nothing of the pin is kept.
  EndEntityRecord squatter;
  squatter.username = fp2;
  squatter.device_id = store_->find_device_by_unique_id("b1")->id;
  ASSERT_TRUE(store_->add_end_entity(squatter, event()));
  EXPECT_EQ(store_->pin_device_key("l2", key2, fp2, fp2, event(), rekeyed).error().code, Errc::conflict);
  EXPECT_TRUE(store_->find_device_by_unique_id("l2")->bc_sha256.empty());
  rekeyed.username = "ukid-" + fp2;
  ASSERT_TRUE(store_->pin_device_key("l2", key2, fp2, fp2, event(), rekeyed));
  EXPECT_EQ(store_->find_device_by_unique_id("l2")->bc_sha256, fp2);
  EXPECT_EQ(store_->find_end_entity("l2").error().code, Errc::not_found);
  auto moved = store_->find_end_entity("ukid-" + fp2);
  ASSERT_TRUE(moved) << moved.error().detail;
  EXPECT_EQ(moved->device_id, l2->id);
  EXPECT_EQ(moved->subject_json, rekeyed.subject_json);

  // A BC without its fingerprint is invalid.
  DeviceRecord half = device("h1");
  half.bc_sha256.clear();
  EXPECT_EQ(store_->import_manifest(manifest_of("f3", {half})).error().code, Errc::invalid_input);
}

TEST_P(StoreContract, StreamingImportIsOneTransaction) {
  ASSERT_TRUE(store_->import_manifest(manifest_of("f0", {device("s-known")})));
  auto session =
      store_->begin_manifest_import(ManifestRecord{0, "hallmark", "vendor", "", 0, 0, at(1), "S1"});
  ASSERT_TRUE(session) << session.error().detail;
  const Id manifest_id = (*session)->manifest_id();
  EXPECT_GT(manifest_id, 0);
  std::int64_t inserted = 0;
  for (int b = 0; b < 5; ++b) {
    std::vector<DeviceRecord> batch;
    for (int i = 0; i < 250; ++i) batch.push_back(device("s-" + std::to_string(b * 250 + i)));
    if (b == 2) {
      batch.push_back(device("s-known"));
      batch.push_back(device("s-3"));  // a repeat from an earlier batch
      DeviceRecord bad = device("s-7");
      bad.part_number = "PN-X";
      batch.push_back(bad);
    }
    auto outcomes = (*session)->add(batch);
    ASSERT_TRUE(outcomes) << outcomes.error().detail;
    ASSERT_EQ(outcomes->size(), batch.size());
    for (const auto& o : *outcomes) inserted += o.kind == DeviceImportOutcome::Kind::inserted;
    if (b == 2) {
      EXPECT_EQ((*outcomes)[250].kind, DeviceImportOutcome::Kind::unchanged);
      EXPECT_EQ((*outcomes)[251].kind, DeviceImportOutcome::Kind::unchanged);
      EXPECT_EQ((*outcomes)[252].kind, DeviceImportOutcome::Kind::conflict);
    }
  }
  EXPECT_EQ(inserted, 1250);
  // Nothing is visible before commit.
  EXPECT_EQ(store_->find_manifest_by_reel("S1").error().code, Errc::not_found);
  EXPECT_EQ(store_->find_device_by_unique_id("s-0").error().code, Errc::not_found);
  ManifestRecord final_record{0, "hallmark", "vendor", "fs", 1253, 0, at(1), "S1"};
  auto done = (*session)->commit(final_record, event("manifest-import", "fs"));
  ASSERT_TRUE(done) << done.error().detail;
  EXPECT_EQ(done->manifest_id, manifest_id);
  EXPECT_EQ(done->inserted, 1250);
  EXPECT_EQ(done->unchanged, 2);
  ASSERT_EQ(done->conflicts.size(), 1u);
  EXPECT_EQ(done->conflicts[0].first, 752u);
  EXPECT_EQ((*session)->add({}).error().code, Errc::invalid_input);
  session->reset();
  auto m = store_->find_manifest("fs");
  ASSERT_TRUE(m) << m.error().detail;
  EXPECT_EQ(m->id, manifest_id);
  EXPECT_EQ(m->entry_count, 1253);
  EXPECT_EQ(m->inserted_count, 1250);
  EXPECT_EQ(store_->find_device_by_unique_id("s-1249")->manifest_id, manifest_id);
  EXPECT_EQ(store_->list_devices({.reel = "S1", .limit = 5000})->size(), 1250u);
  EXPECT_EQ(audit_records().back().event.object, "fs");

  // Abandoned: rolled back, and the store goes on.
  {
    auto s2 = store_->begin_manifest_import(ManifestRecord{0, "hallmark", "vendor", "fa", 0, 0, at(1), "S2"});
    ASSERT_TRUE(s2) << s2.error().detail;
    std::vector<DeviceRecord> batch{device("gone-1"), device("gone-2")};
    ASSERT_TRUE((*s2)->add(batch));
  }
  EXPECT_EQ(store_->find_device_by_unique_id("gone-1").error().code, Errc::not_found);
  EXPECT_EQ(store_->find_manifest("fa").error().code, Errc::not_found);
  ASSERT_TRUE(store_->mount_device("s-0", "", event()));

  // A file known before: only re-checked.
  auto s3 = store_->begin_manifest_import(ManifestRecord{0, "hallmark", "vendor", "fs", 0, 0, at(1), "S1"});
  ASSERT_TRUE(s3) << s3.error().detail;
  std::vector<DeviceRecord> batch{device("s-1")};
  ASSERT_TRUE((*s3)->add(batch));
  auto known = (*s3)->commit(ManifestRecord{0, "hallmark", "vendor", "fs", 0, 0, at(1), "S1"}, event());
  ASSERT_TRUE(known) << known.error().detail;
  EXPECT_TRUE(known->manifest_known);
  EXPECT_EQ(known->unchanged, 1);

  // An invalid entry ends the session: nothing of it is kept.
  auto s4 = store_->begin_manifest_import(ManifestRecord{0, "hallmark", "vendor", "", 0, 0, at(1), ""});
  ASSERT_TRUE(s4);
  std::vector<DeviceRecord> ok_batch{device("t-1")};
  ASSERT_TRUE((*s4)->add(ok_batch));
  std::vector<DeviceRecord> bad_batch{device("")};
  EXPECT_EQ((*s4)->add(bad_batch).error().code, Errc::invalid_input);
  EXPECT_FALSE((*s4)->commit(ManifestRecord{0, "hallmark", "vendor", "ft", 0, 0, at(1), ""}, event()));
  s4->reset();
  EXPECT_EQ(store_->find_device_by_unique_id("t-1").error().code, Errc::not_found);
}

long resident_kib() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

TEST_P(StoreContract, StreamingImportOfAMillionDevicesStaysSmall) {
  // One transaction, 1,000 batches of 1,000 devices with a 1 KiB BC each (~1.3 GB if it were held);
  // the caller's memory must stay bounded by a batch. (PostgreSQL: a tenth, for the round trips.)
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer keeps freed memory in quarantine: resident size says nothing there, and a
  // million devices take minutes. The transaction and counts are still checked on a smaller file.
  constexpr bool kMeasureMemory = false;
  const int batches = 20;
#else
  constexpr bool kMeasureMemory = true;
  const int batches = GetParam() == Backend::sqlite ? 1000 : 100;
#endif
  const Bytes pad(1024, std::byte{0x5a});
  const long before = resident_kib();
  long highest = before;
  auto session =
      store_->begin_manifest_import(ManifestRecord{0, "hallmark", "vendor", "", 0, 0, at(1), "BIG"});
  ASSERT_TRUE(session) << session.error().detail;
  std::vector<DeviceRecord> batch(1000);
  for (int b = 0; b < batches; ++b) {
    for (int i = 0; i < 1000; ++i) {
      auto& d = batch[static_cast<std::size_t>(i)];
      d.vendor_unique_id = "big-" + std::to_string(b * 1000 + i);
      d.bc_der = pad;
      const std::string tag = d.vendor_unique_id;
      std::memcpy(d.bc_der.data(), tag.data(), tag.size());
      d.bc_sha256 = crypto::sha256_hex(d.bc_der);
      d.part_number = "PN-1";
    }
    auto outcomes = (*session)->add(batch);
    ASSERT_TRUE(outcomes) << outcomes.error().detail;
    ASSERT_EQ(outcomes->size(), 1000u);
    highest = std::max(highest, resident_kib());
  }
  auto done = (*session)->commit(ManifestRecord{0, "hallmark", "vendor", "big", 0, 0, at(1), "BIG"}, event());
  ASSERT_TRUE(done) << done.error().detail;
  EXPECT_EQ(done->inserted, batches * 1000);
  const long grown_mib = (highest - before) >> 10;
  std::printf("[ session  ] %d devices in one transaction: RSS grew by %ld MiB\n", batches * 1000, grown_mib);
  if (kMeasureMemory) {
    EXPECT_LT(grown_mib, 200);
  }
  EXPECT_EQ(store_->find_manifest("big")->inserted_count, batches * 1000);
}

TEST_P(StoreContract, UpgradeFromVersion1KeepsDevicesAndReferences) {
  store_.reset();
  if (GetParam() == Backend::sqlite) {
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path_ + suffix);
  } else {
    ASSERT_EQ(PgEnvironment::server()->reset_schema(db_), "");
  }
  const bool pg = GetParam() == Backend::postgres;
  const auto v1 = migrations(pg ? sql::Dialect::postgres : sql::Dialect::sqlite).front();
  ASSERT_EQ(v1.version, 1);
  raw("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at "
      "BIGINT NOT NULL);" +
      v1.ddl + "INSERT INTO schema_version VALUES (1, 'v1', 0);" +
      (pg ? "INSERT INTO audit_head VALUES (1, 0, decode(repeat('00', 32), 'hex'));"
          : "INSERT INTO audit_head VALUES (1, 0, zeroblob(32));") +
      "INSERT INTO manifests (id, format, signer, sha256, entry_count, inserted_count, imported_at) VALUES "
      "(7, 'hallmark', 'v', 'old', 1, 1, 0);"
      "INSERT INTO devices (id, vendor_unique_id, bc, bc_sha256, bc_issuer, manifest_id, state) VALUES "
      "(42, 'old-1', " +
      (pg ? "'\\x0102'::bytea" : "x'0102'") +
      ", 'fp-old', 'CN=x', 7, 'mounted');"
      "INSERT INTO end_entities (id, username, device_id) VALUES (5, 'old-user', 42);");
  auto opened = open_store(url_);
  ASSERT_TRUE(opened) << opened.error().detail;
  store_ = std::move(*opened);
  auto before = store_->check();
  ASSERT_TRUE(before);
  EXPECT_EQ(before->current_version, 1);
  auto migrated = store_->migrate();
  ASSERT_TRUE(migrated) << migrated.error().detail;
  EXPECT_FALSE(migrated->pending());
  auto old = store_->find_device_by_unique_id("old-1");
  ASSERT_TRUE(old) << old.error().detail;
  EXPECT_EQ(old->id, 42);
  EXPECT_EQ(old->bc_sha256, "fp-old");
  EXPECT_EQ(old->manifest_id, 7);
  EXPECT_EQ(old->state, DeviceState::mounted);
  EXPECT_EQ(store_->find_end_entity("old-user")->device_id, 42);
  // Foreign keys still hold, and Lite devices now import.
  auto r = store_->import_manifest(manifest_of("new", {lite("new-lite")}, "NEW"));
  ASSERT_TRUE(r) << r.error().detail;
  ASSERT_TRUE(store_->record_issuance(issuance("old-user", random_serial())));
  EXPECT_EQ(store_->find_device(42)->state, DeviceState::enrolled);
  auto integrity = store_->integrity_check();
  ASSERT_TRUE(integrity);
  EXPECT_TRUE(integrity->ok) << integrity->detail;
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreContract, ::testing::Values(Backend::sqlite, Backend::postgres),
                         [](const auto& info) {
                           return info.param == Backend::sqlite ? "sqlite" : "postgres";
                         });
INSTANTIATE_TEST_SUITE_P(Backends, AuditTamper, ::testing::Values(Backend::sqlite, Backend::postgres),
                         [](const auto& info) {
                           return info.param == Backend::sqlite ? "sqlite" : "postgres";
                         });

// ---- PostgreSQL only: the server goes away and comes back.

// A migrated store on a fresh schema of the test server.
class PostgresStore : public ::testing::Test {
 protected:
  void SetUp() override {
    pg_ = PgEnvironment::server();
    ASSERT_NE(pg_, nullptr) << PgEnvironment::error();
    ASSERT_EQ(pg_->reset_schema(), "");
    auto opened = open_store(pg_->url());
    ASSERT_TRUE(opened) << opened.error().detail;
    store_ = std::move(*opened);
    ASSERT_TRUE(store_->migrate());
  }

  hallmark::test::PgServer* pg_ = nullptr;
  std::unique_ptr<Store> store_;
};
using PostgresWriter = PostgresStore;

TEST_F(PostgresStore, RestartMidRunFailsPromptlyThenRecovers) {
  auto* pg = pg_;
  auto& store = *store_;
  ASSERT_TRUE(store.append_audit(event("before")));
  ASSERT_TRUE(store.find_ca("x").error().code == Errc::not_found);

  ASSERT_TRUE(pg->stop_server());
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    auto w = store.append_audit(event("while-down"));
    auto r = store.find_ca("x");
    const auto elapsed = std::chrono::steady_clock::now() - t0;
    ASSERT_FALSE(w);
    EXPECT_EQ(w.error().code, Errc::unavailable) << w.error().detail;
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::unavailable) << r.error().detail;
    EXPECT_LT(elapsed, std::chrono::seconds(5));
  }
  // Opening while down is unavailable too, not a crash.
  auto down = open_store(pg->url());
  ASSERT_FALSE(down);
  EXPECT_EQ(down.error().code, Errc::unavailable);

  ASSERT_TRUE(pg->start_server());
  auto w = store.append_audit(event("after"));
  ASSERT_TRUE(w) << w.error().detail;
  EXPECT_EQ(*w, 2);
  auto r = store.find_ca("x");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::not_found) << r.error().detail;
  EXPECT_TRUE(store.verify_audit_chain()->ok);
}

// Issuance sends BEGIN with its statements: the first one after a restart still succeeds, also on
// a connection that looked fine (the server restarted while it was idle).
TEST_F(PostgresStore, IssuanceAfterRestartSucceedsAtOnce) {
  auto* pg = pg_;
  auto& store = *store_;
  for (const char* user : {"before", "down", "after", "idle"}) {
    EndEntityRecord ee;
    ee.username = user;
    ASSERT_TRUE(store.add_end_entity(ee, event("add")));
  }
  ASSERT_TRUE(store.record_issuance(issuance("before", random_serial())));

  ASSERT_TRUE(pg->stop_server());
  auto down = store.record_issuance(issuance("down", random_serial()));
  ASSERT_FALSE(down);
  EXPECT_EQ(down.error().code, Errc::unavailable) << down.error().detail;

  ASSERT_TRUE(pg->start_server());
  auto after = store.record_issuance(issuance("after", random_serial()));
  ASSERT_TRUE(after) << after.error().detail;
  const auto down_ee = store.find_end_entity("down");
  ASSERT_TRUE(down_ee) << down_ee.error().detail;
  EXPECT_EQ(down_ee->state, EndEntityState::new_);
  const auto after_ee = store.find_end_entity("after");
  ASSERT_TRUE(after_ee) << after_ee.error().detail;
  EXPECT_EQ(after_ee->state, EndEntityState::generated);

  ASSERT_TRUE(pg->stop_server());
  ASSERT_TRUE(pg->start_server());
  auto idle = store.record_issuance(issuance("idle", random_serial()));
  ASSERT_TRUE(idle) << idle.error().detail;
  EXPECT_TRUE(store.verify_audit_chain()->ok);
}

// A batch's statements reach PostgreSQL in one round trip. When a later one fails, the server has
// aborted the transaction block until that statement's savepoint is undone: an earlier statement's
// `then` that reads (to word a refusal) must run only after that.
TEST_F(PostgresWriter, AnEarlierStatementReadsAfterALaterOneOfItsRoundTripFailed) {
  // The fixture's store made the schema (the writer locks the audit head); this writer has its own.
  auto conn = postgres::PgConnection::open(pg_->url());
  ASSERT_TRUE(conn) << conn.error().detail;
  ASSERT_TRUE((*conn)->exec("CREATE TABLE scratch (k bigint PRIMARY KEY); INSERT INTO scratch VALUES (1)"));
  std::vector<std::unique_ptr<sql::Connection>> lanes;
  lanes.push_back(std::move(*conn));
  Writer writer(std::move(lanes), nullptr, "BEGIN", 64);

  // Hold the only lane until both statements wait, in this order, to be one batch.
  std::promise<void> started, release;
  std::thread holder([&, go = release.get_future()] {
    EXPECT_TRUE(writer.submit([&](WriteTx&) -> Status {
      started.set_value();
      go.wait();
      return {};
    }));
  });
  started.get_future().wait();
  auto await_waiting = [&](std::size_t n) {
    for (int i = 0; i < 10'000 && writer.waiting() < n; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return writer.waiting() == n;
  };

  Status refused = fail(Errc::internal, "not run");
  std::int64_t rows_seen = -1;
  std::thread first([&] {
    StatementWrite w;
    w.sql = "UPDATE scratch SET k = k WHERE k = ? RETURNING k";
    w.params = {sql::Value{std::int64_t{-1}}};
    w.then = [&](Result<sql::Rows> rows, WriteTx& tx) -> Status {
      if (!rows) return std::unexpected(rows.error());
      if (!rows->empty()) return fail(Errc::internal, "the update found a row");
      auto n = tx.conn().query("SELECT count(*) FROM scratch WHERE k >= ?", {std::int64_t{0}});
      if (!n) return std::unexpected(n.error());
      rows_seen = n->front().i64(0);
      return fail(Errc::conflict, "nothing to update");
    };
    refused = writer.submit(std::move(w));
  });
  EXPECT_TRUE(await_waiting(1));
  Status duplicate = fail(Errc::internal, "not run");
  std::thread second([&] {
    StatementWrite w;
    w.sql = "INSERT INTO scratch (k) VALUES (?)";
    w.params = {sql::Value{std::int64_t{1}}};
    w.then = [](Result<sql::Rows> rows, WriteTx&) -> Status {
      if (!rows) return std::unexpected(rows.error());
      return {};
    };
    duplicate = writer.submit(std::move(w));
  });
  EXPECT_TRUE(await_waiting(2));
  release.set_value();
  holder.join();
  first.join();
  second.join();

  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().detail, "nothing to update");
  EXPECT_EQ(rows_seen, 1);
  ASSERT_FALSE(duplicate);
  EXPECT_EQ(duplicate.error().code, Errc::conflict) << duplicate.error().detail;
}

TEST(OpenStore, RejectsUnknownUrls) {
  EXPECT_EQ(open_store("mysql://x").error().code, Errc::invalid_input);
  EXPECT_EQ(open_store("sqlite:").error().code, Errc::invalid_input);
}

TEST(OpenStore, MemorySqliteWorks) {
  auto s = open_store("sqlite::memory:");
  ASSERT_TRUE(s) << s.error().detail;
  ASSERT_TRUE((*s)->migrate());
  ASSERT_TRUE((*s)->append_audit(event("x")));
  EXPECT_TRUE((*s)->verify_audit_chain()->ok);
}

}  // namespace
}  // namespace hallmark::store
