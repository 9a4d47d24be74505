#pragma once
// Test helpers shared by the ra and est tests: a PKI made at run time with the real ca::Issuer, a
// real SQLite store in a temporary directory, devices imported and mounted through the inventory.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "hallmark/ca/issuer.hpp"
#include "hallmark/ca/profile.hpp"
#include "hallmark/crypto/digest.hpp"
#include "hallmark/inventory/devices.hpp"
#include "hallmark/ra/registrar.hpp"
#include "hallmark/store/store.hpp"
#include "hallmark/x509/csr.hpp"

namespace hallmark::testpki {

inline ca::Profile profile_named(const std::string& name) {
  ca::DefaultProfileOptions o;
  o.organization = "Test OEM";
  o.product_oid = "1.3.6.1.4.1.55555.1.1";
  for (auto p : ca::default_profiles(o)) {
    if (p.name == name) {
      if (p.kind != ca::ProfileKind::end_entity) p.lifetime.reset();  // CAs without expiry: IDCs keep 9999
      return p;
    }
  }
  ADD_FAILURE() << "no default profile " << name;
  return {};
}

struct TestCa {
  std::string name;
  crypto::PrivateKey key;
  std::shared_ptr<const crypto::FileSigner> signer;
  x509::Certificate certificate;
  std::vector<x509::Certificate> chain;  // itself first, up to its root

  [[nodiscard]] std::shared_ptr<const ca::Issuer> issuer(const Clock& clock) const {
    return std::make_shared<const ca::Issuer>(certificate, signer, clock);
  }
};

inline TestCa make_root(const std::string& name, const Clock& clock) {
  TestCa ca;
  ca.name = name;
  ca.key = *crypto::PrivateKey::generate(crypto::KeyType::ec_p256);
  ca.signer = std::make_shared<const crypto::FileSigner>(ca.key, "test:" + name);
  auto cert = ca::issue_self_signed(*ca.signer, {{"org", "Test OEM"}, {"cn", name + " Root"}},
                                    profile_named("root"), clock);
  EXPECT_TRUE(cert) << cert.error().detail;
  ca.certificate = *cert;
  ca.chain = {ca.certificate};
  return ca;
}

inline TestCa make_sub(const std::string& name, const std::string& role, const TestCa& parent,
                       const Clock& clock) {
  TestCa ca;
  ca.name = name;
  ca.key = *crypto::PrivateKey::generate(crypto::KeyType::ec_p256);
  ca.signer = std::make_shared<const crypto::FileSigner>(ca.key, "test:" + name);
  const ca::Issuer issuer(parent.certificate, parent.signer, clock);
  auto cert =
      issuer.issue(ca::IssueRequest{ca.key.public_key(), {{"org", "Test OEM"}, {"cn", name + " CA"}}, {}, {}},
                   profile_named("sub-ca-" + role));
  EXPECT_TRUE(cert) << cert.error().detail;
  ca.certificate = *cert;
  ca.chain = {ca.certificate};
  ca.chain.insert(ca.chain.end(), parent.chain.begin(), parent.chain.end());
  return ca;
}

inline std::string random_hex(std::size_t bytes) {
  return to_hex(crypto::random_bytes(bytes));
}

struct Device {
  std::string unique_id;
  crypto::PrivateKey bc_key;
  std::shared_ptr<const crypto::FileSigner> bc_signer;
  x509::Certificate bc;
  std::vector<x509::Certificate> bc_chain;  // BC first, then its CAs
  std::string ukid;                         // Option 2
  std::string secret;                       // Option 3
  store::Id id = 0;
};

class World {
 public:
  World()
      : clock_(std::make_shared<FixedClock>(
            std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()))) {
    dir_ = std::filesystem::temp_directory_path() /
           ("hallmark-ra-" + std::to_string(::getpid()) + "-" + random_hex(6));
    std::filesystem::create_directories(dir_);
    auto s = store::open_store("sqlite:" + (dir_ / "hallmark.db").string());
    EXPECT_TRUE(s) << s.error().detail;
    store_ = std::move(*s);
    auto m = store_->migrate();
    EXPECT_TRUE(m) << m.error().detail;
    root = make_root("root", *clock_);
    bc_ca = make_sub("bc", "bc", root, *clock_);
    idc_ca = make_sub("idc", "idc", root, *clock_);
    vendor_root = make_root("vendor-root", *clock_);
    vendor_bc_ca = make_sub("vendor-bc", "bc", vendor_root, *clock_);
    other_root = make_root("other-root", *clock_);
    other_bc_ca = make_sub("other-bc", "bc", other_root, *clock_);
  }
  ~World() {
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  [[nodiscard]] store::Store& store() { return *store_; }
  [[nodiscard]] FixedClock& clock() { return *clock_; }
  [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }
  void advance(std::chrono::seconds s) { clock_->set(clock_->now() + s); }

  // A BC under `ca` (not yet in the inventory).
  Device make_device(const TestCa& ca) {
    Device d;
    d.unique_id = "01" + random_hex(8);
    d.bc_key = *crypto::PrivateKey::generate(crypto::KeyType::ec_p256);
    d.bc_signer = std::make_shared<const crypto::FileSigner>(d.bc_key, "test:bc");
    const ca::Issuer issuer(ca.certificate, ca.signer, *clock_);
    auto cert = issuer.issue(
        ca::IssueRequest{d.bc_key.public_key(), {{"org", "Test Vendor"}, {"hw_serial", d.unique_id}}, {}, {}},
        profile_named("bc"));
    EXPECT_TRUE(cert) << cert.error().detail;
    d.bc = *cert;
    d.bc_chain = {d.bc};
    d.bc_chain.insert(d.bc_chain.end(), ca.chain.begin(), ca.chain.end() - 1);  // the root is the server's
    d.ukid = d.bc.public_key().sha256_hex();
    return d;
  }

  // Imports the device into the inventory (Option 3 when `secret` is set; Lite, without its BC, when
  // `lite`).
  void import(Device& d, const std::string& secret = {}, bool lite = false) {
    store::ManifestImport mi;
    mi.manifest.format = "hallmark";
    mi.manifest.signer = "test";
    mi.manifest.sha256 = random_hex(32);
    mi.manifest.entry_count = 1;
    mi.manifest.imported_at = clock_->now();
    store::DeviceRecord r;
    r.vendor_unique_id = d.unique_id;
    r.bc_der = d.bc.to_der();
    r.bc_sha256 = d.bc.fingerprint_sha256_hex();
    r.bc_issuer = d.bc.issuer().to_string();
    r.part_number = "TEST-1";
    if (lite) {
      r.bc_der.clear();
      r.bc_sha256.clear();
      r.bc_issuer.clear();
    } else if (secret.empty()) {
      r.ukid = d.ukid;
    } else {
      d.secret = secret;
      r.ukid_secret_digest = crypto::sha256_hex(as_bytes(secret));
    }
    mi.devices.push_back(r);
    mi.audit =
        store::AuditEvent{clock_->now(), "test", "manifest-import", "test", store::Outcome::accepted, "", ""};
    auto res = store_->import_manifest(mi);
    ASSERT_TRUE(res) << res.error().detail;
    auto found = store_->find_device_by_unique_id(d.unique_id);
    ASSERT_TRUE(found) << found.error().detail;
    d.id = found->id;
  }

  void mount(const Device& d, const std::string& alias = {}) {
    inventory::MountRequest req;
    req.unique_id = d.unique_id;
    inventory::MountOptions opt;
    opt.station = "line-1";
    opt.alias = alias;
    opt.clock = clock_.get();
    const auto out = inventory::mount_device(*store_, req, opt);
    ASSERT_EQ(out.status, inventory::MountStatus::mounted) << out.reason;
  }

  // Imported and mounted.
  Device ready_device(const TestCa& ca, const std::string& secret = {}) {
    auto d = make_device(ca);
    import(d, secret);
    mount(d);
    return d;
  }

  [[nodiscard]] std::size_t certificate_count() {
    auto list = store_->list_certificates(store::CertificateFilter{});
    EXPECT_TRUE(list) << list.error().detail;
    return list ? list->size() : 0;
  }
  [[nodiscard]] store::AuditRecord last_audit() {
    auto list = store_->list_audit(0, 1'000'000);
    EXPECT_TRUE(list && !list->empty());
    return list && !list->empty() ? list->back() : store::AuditRecord{};
  }
  [[nodiscard]] std::vector<store::AuditRecord> audit() {
    auto list = store_->list_audit(0, 1'000'000);
    return list ? *list : std::vector<store::AuditRecord>{};
  }

  TestCa root, bc_ca, idc_ca, vendor_root, vendor_bc_ca, other_root, other_bc_ca;

 private:
  std::shared_ptr<FixedClock> clock_;
  std::filesystem::path dir_;
  std::unique_ptr<store::Store> store_;
};

// A policy for alias `name` issuing from the world's IDC CA, BCs anchored at its BC CA.
inline ra::AliasPolicy option2_policy(const std::string& name = "widget") {
  ra::AliasPolicy p;
  p.name = name;
  p.ca = "idc";
  p.profile = "idc";
  p.authenticators = {ra::Authenticator::bc};
  p.enroll_anchors = {"bc"};
  p.reenroll_cas = {"idc"};
  p.after_issue = ra::AfterIssue::revoke_bc;
  return p;
}

inline const TestCa& ca_by_name(const World& w, const std::string& name) {
  for (const TestCa* c :
       {&w.root, &w.bc_ca, &w.idc_ca, &w.vendor_root, &w.vendor_bc_ca, &w.other_root, &w.other_bc_ca}) {
    if (c->name == name) return *c;
  }
  ADD_FAILURE() << "no CA " << name;
  return w.root;
}

// Names in the policy resolve to the world's CAs; "vendor-bc-partial" is the vendor BC CA recorded
// without its root (a partial anchor).
inline ra::Alias make_test_alias(World& w, ra::AliasPolicy policy) {
  const auto chains = [&w](const std::vector<std::string>& names) {
    std::vector<std::vector<x509::Certificate>> out;
    for (const auto& n : names) {
      if (n == "vendor-bc-partial") {
        out.push_back({w.vendor_bc_ca.certificate});
      } else {
        out.push_back(ca_by_name(w, n).chain);
      }
    }
    return out;
  };
  const auto& issuing = ca_by_name(w, policy.ca);
  auto profile = profile_named(policy.profile);
  const auto reenroll =
      policy.reenroll_cas.empty() ? std::vector<std::string>{policy.ca} : policy.reenroll_cas;
  auto alias = ra::make_alias(policy, issuing.issuer(w.clock()), profile, issuing.chain,
                              chains(policy.enroll_anchors), chains(reenroll));
  EXPECT_TRUE(alias) << alias.error().detail;
  return std::move(*alias);
}

inline x509::Csr make_csr(const crypto::Signer& signer, const std::vector<x509::NameAttribute>& subject,
                          std::optional<std::string> challenge = std::nullopt,
                          std::optional<x509::SubjectAltName> san = std::nullopt) {
  auto name = x509::Name::make(subject);
  EXPECT_TRUE(name) << name.error().detail;
  x509::CsrOptions o;
  if (challenge) o.challenge_password = Secret(*challenge);
  o.subject_alt_name = std::move(san);
  auto csr = x509::make_csr(*name, signer, o);
  EXPECT_TRUE(csr) << csr.error().detail;
  return *csr;
}

struct DeviceKey {
  crypto::PrivateKey key;
  std::shared_ptr<const crypto::FileSigner> signer;
};
inline DeviceKey new_key(crypto::KeyType type = crypto::KeyType::ec_p256) {
  DeviceKey k;
  k.key = *crypto::PrivateKey::generate(type);
  k.signer = std::make_shared<const crypto::FileSigner>(k.key, "test:device");
  return k;
}

}  // namespace hallmark::testpki
