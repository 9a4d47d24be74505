// The registration authority's rules, each pinned, on a real SQLite store with a run-time PKI.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <thread>

#include "hallmark/core/log.hpp"
#include "hallmark/ra/registrar.hpp"
#include "test_pki.hpp"

namespace hallmark {
namespace {

using namespace std::chrono_literals;
using testpki::Device;
using testpki::DeviceKey;
using testpki::new_key;

std::string random_id() {
  return "req-" + testpki::random_hex(6);
}

class Ra : public ::testing::Test {
 protected:
  void SetUp() override { log::set_level(log::Level::error); }

  void make_registrar(std::vector<ra::AliasPolicy> policies, std::string default_alias = {}) {
    std::vector<ra::Alias> aliases;
    for (auto& p : policies) aliases.push_back(testpki::make_test_alias(w, p));
    ra::RegistrarOptions o;
    o.default_alias = std::move(default_alias);
    o.variables = {{"org", "Test OEM"}, {"product", "Test Widget"}};
    o.on_bc_revoked = [this](const store::DeviceRecord& d, const std::string&) {
      std::lock_guard lock(revoked_hook_mutex);  // requests run the hook concurrently
      revoked_hook.push_back(d.vendor_unique_id);
    };
    reg = std::make_unique<ra::Registrar>(w.store(), w.clock(), std::move(aliases), o);
  }
  void make_registrar(ra::AliasPolicy p) { make_registrar(std::vector<ra::AliasPolicy>{std::move(p)}); }

  ra::EnrollRequest request(const std::vector<x509::Certificate>& chain, const x509::Csr& csr,
                            const std::string& alias = "widget") {
    ra::EnrollRequest r;
    r.context.alias = alias;
    r.context.request_id = random_id();
    r.context.peer.chain = chain;
    r.context.peer.remote_address = "127.0.0.1:40000";
    r.csr_der = csr.to_der();
    return r;
  }
  x509::Csr device_csr(const Device& d, const DeviceKey& k,
                       std::optional<std::string> challenge = std::nullopt) {
    return testpki::make_csr(*k.signer, {{"serialNumber", d.ukid}, {"CN", "device"}}, std::move(challenge));
  }
  x509::Csr secret_csr(const DeviceKey& k, std::optional<std::string> challenge) {
    return testpki::make_csr(*k.signer, {{"CN", "device"}}, std::move(challenge));
  }

  // Enrolls `d` with a new key and returns the IDC and its key.
  std::pair<x509::Certificate, DeviceKey> enrolled(const Device& d) {
    auto k = new_key();
    auto out = reg->simple_enroll(request(d.bc_chain, device_csr(d, k)));
    EXPECT_TRUE(out) << out.error().problem << ": " << out.error().reason;
    return {out ? out->certificate : x509::Certificate{}, k};
  }

  // The refusal, that nothing was issued, and its audit record.
  void expect_refused(const ra::Decision<ra::Enrollment>& d, const ra::EnrollRequest& req, Errc code,
                      std::string_view problem, std::size_t certs_before) {
    ASSERT_FALSE(d) << "expected " << problem << ", got a certificate";
    EXPECT_EQ(d.error().code, code) << d.error().problem << ": " << d.error().reason;
    EXPECT_EQ(d.error().problem, problem) << d.error().reason;
    EXPECT_EQ(w.certificate_count(), certs_before) << "nothing may be issued";
    const auto a = w.last_audit();
    EXPECT_EQ(a.event.outcome, store::Outcome::refused);
    EXPECT_EQ(a.event.request_id, req.context.request_id);
    EXPECT_TRUE(a.event.reason.starts_with(std::string(problem) + ": ")) << a.event.reason;
  }

  testpki::World w;
  std::unique_ptr<ra::Registrar> reg;
  std::mutex revoked_hook_mutex;
  std::vector<std::string> revoked_hook;
};

// ---- Option 2: the happy path and what follows from it ----

TEST_F(Ra, Option2EnrollIssuesAnIdcBuiltFromTheEndEntityCommittedAndAudited) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  auto k = new_key();
  auto req = request(d.bc_chain, device_csr(d, k));
  auto out = reg->simple_enroll(req);
  ASSERT_TRUE(out) << out.error().problem << ": " << out.error().reason;
  EXPECT_EQ(out->status, ra::Enrollment::Status::issued);
  EXPECT_FALSE(out->replayed);
  const auto& idc = out->certificate;
  EXPECT_EQ(idc.subject().get("serialNumber"), d.ukid);
  EXPECT_EQ(idc.subject().get("O"), "Test OEM");
  EXPECT_EQ(idc.subject().get("CN"), "Test Widget");
  EXPECT_TRUE(idc.has_no_expiry());
  EXPECT_TRUE(idc.public_key() == k.key.public_key());
  EXPECT_TRUE(idc.verify_signature(w.idc_ca.certificate.public_key()));
  ASSERT_TRUE(idc.subject_alt_name());
  ASSERT_EQ(idc.subject_alt_name()->names.size(), 1u);
  EXPECT_EQ(idc.subject_alt_name()->names[0].kind, x509::GeneralName::Kind::hardware_module_name);
  ASSERT_TRUE(idc.extended_key_usage());
  EXPECT_EQ(idc.extended_key_usage()->oids, std::vector<std::string>{x509::kOidClientAuth});

  // Committed: certificate row, end entity generated, device enrolled, BC revoked, all audited.
  EXPECT_EQ(w.certificate_count(), 1u);
  auto rec = w.store().find_certificate_by_serial(idc.serial_hex());
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->der, idc.to_der());
  EXPECT_EQ(rec->issuer_ca, "idc");
  auto ee = w.store().find_end_entity(d.ukid);
  ASSERT_TRUE(ee);
  EXPECT_EQ(ee->state, store::EndEntityState::generated);
  auto dev = w.store().find_device(d.id);
  ASSERT_TRUE(dev);
  EXPECT_EQ(dev->state, store::DeviceState::enrolled);
  EXPECT_TRUE(dev->bc_revoked);
  EXPECT_FALSE(dev->bc_consumed);
  EXPECT_EQ(revoked_hook, std::vector<std::string>{d.unique_id});
  const auto audit = w.audit();
  bool enroll_seen = false;
  for (const auto& a : audit) {
    if (a.event.action == "enroll" && a.event.request_id == req.context.request_id) {
      enroll_seen = true;
      EXPECT_EQ(a.event.outcome, store::Outcome::accepted);
      EXPECT_EQ(a.event.object, d.ukid);
      EXPECT_NE(a.event.reason.find("serial=" + idc.serial_hex()), std::string::npos) << a.event.reason;
    }
  }
  EXPECT_TRUE(enroll_seen);
  // The flag's record comes with the issuance, in its transaction.
  EXPECT_EQ(w.last_audit().event.action, "bc-revoke");
  EXPECT_EQ(w.last_audit().event.request_id, req.context.request_id);
}

// An IDC recorded before the alias flagged BCs: the device's retry sets the flag.
TEST_F(Ra, ARetryFlagsTheBcWhenItsIssuanceDidNot) {
  auto unflagged = testpki::option2_policy();
  unflagged.after_issue = ra::AfterIssue::none;
  make_registrar(unflagged);
  auto d = w.ready_device(w.bc_ca);
  auto k = new_key();
  auto first = reg->simple_enroll(request(d.bc_chain, device_csr(d, k)));
  ASSERT_TRUE(first) << first.error().problem << ": " << first.error().reason;
  EXPECT_FALSE(w.store().find_device(d.id)->bc_revoked);
  EXPECT_TRUE(revoked_hook.empty());

  make_registrar(testpki::option2_policy());
  auto again = reg->simple_enroll(request(d.bc_chain, device_csr(d, k)));
  ASSERT_TRUE(again) << again.error().problem << ": " << again.error().reason;
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(again->certificate, first->certificate);
  EXPECT_TRUE(w.store().find_device(d.id)->bc_revoked);
  EXPECT_EQ(revoked_hook, std::vector<std::string>{d.unique_id});
  EXPECT_EQ(w.last_audit().event.action, "bc-revoke");
}

TEST_F(Ra, RetryWithTheSameKeyReturnsTheSameIdcEvenAfterTheBcWasRevoked) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  auto k = new_key();
  auto first = reg->simple_enroll(request(d.bc_chain, device_csr(d, k)));
  ASSERT_TRUE(first);
  auto again_req = request(d.bc_chain, device_csr(d, k));
  auto again = reg->simple_enroll(again_req);
  ASSERT_TRUE(again) << again.error().problem << ": " << again.error().reason;
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(again->certificate, first->certificate);
  EXPECT_EQ(w.certificate_count(), 1u);
  const auto a = w.last_audit();
  EXPECT_EQ(a.event.outcome, store::Outcome::accepted);
  EXPECT_EQ(a.event.request_id, again_req.context.request_id);
  EXPECT_TRUE(a.event.reason.starts_with("retry: returned serial=" + first->certificate.serial_hex()))
      << a.event.reason;
}

TEST_F(Ra, ConcurrentRetriesOfOneDeviceGetOneIdc) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  auto k = new_key();
  const auto csr = device_csr(d, k);
  std::vector<std::string> serials(8);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < serials.size(); ++i) {
    threads.emplace_back([&, i] {
      auto out = reg->simple_enroll(request(d.bc_chain, csr));
      serials[i] = out ? out->certificate.serial_hex() : "refused: " + out.error().problem;
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& s : serials) EXPECT_EQ(s, serials.front());
  EXPECT_EQ(w.certificate_count(), 1u);
}

TEST_F(Ra, ADifferentKeyAfterIssuanceIsAConflictUnlessTheAliasAllowsReissue) {
  auto strict = testpki::option2_policy("strict");
  strict.after_issue = ra::AfterIssue::none;
  auto lenient = testpki::option2_policy("lenient");
  lenient.after_issue = ra::AfterIssue::none;
  lenient.allow_reissue = true;
  make_registrar({strict, lenient});
  auto d = w.ready_device(w.bc_ca);
  auto k1 = new_key();
  ASSERT_TRUE(reg->simple_enroll(request(d.bc_chain, device_csr(d, k1), "strict")));
  auto k2 = new_key();
  auto req = request(d.bc_chain, device_csr(d, k2), "strict");
  expect_refused(reg->simple_enroll(req), req, Errc::conflict, ra::problem::kAlreadyEnrolled, 1);

  auto req2 = request(d.bc_chain, device_csr(d, k2), "lenient");
  auto out = reg->simple_enroll(req2);
  ASSERT_TRUE(out) << out.error().problem << ": " << out.error().reason;
  EXPECT_TRUE(out->certificate.public_key() == k2.key.public_key());
  EXPECT_EQ(w.certificate_count(), 2u);
}

// ---- the bad-input matrix (Option 2) ----

TEST_F(Ra, NoClientCertificateIs401) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  auto req = request({}, device_csr(d, new_key()));
  expect_refused(reg->simple_enroll(req), req, Errc::unauthenticated, ra::problem::kClientCertRequired, 0);
}

TEST_F(Ra, BcFromAnUntrustedCaIs403) {
  make_registrar(testpki::option2_policy());
  auto d = w.make_device(w.other_bc_ca);
  w.import(d);
  w.mount(d);
  auto req = request(d.bc_chain, device_csr(d, new_key()));
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kUntrustedClientCert, 0);
}

TEST_F(Ra, AnIdcIsNotABirthCertificateAlthoughBothChainToTheSameRoot) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  auto [idc, key] = enrolled(d);
  // The IDC chains to the root that also anchors the BC CA, but not through the BC CA.
  auto req = request({idc, w.idc_ca.certificate}, device_csr(d, new_key()));
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kUntrustedClientCert, 1);
}

// The HTTP layer marks a path its handshake verified under the union of every alias's anchors. The
// registrar then skips verifying it again, but still judges it by this alias's own CAs.
TEST_F(Ra, APathVerifiedByTheHandshakeIsStillJudgedByTheAlias) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  auto verified = [this](std::vector<x509::Certificate> chain, const x509::Csr& csr,
                         const testpki::TestCa& root) {
    chain.push_back(root.certificate);  // the verified path ends at its anchor
    auto r = request(chain, csr);
    r.context.peer.verified = true;
    return r;
  };
  auto ok = reg->simple_enroll(verified(d.bc_chain, device_csr(d, new_key()), w.root));
  ASSERT_TRUE(ok) << ok.error().problem << ": " << ok.error().reason;
  // A BC of a CA that anchors another alias passes the handshake, not this alias.
  auto other = w.make_device(w.other_bc_ca);
  w.import(other);
  w.mount(other);
  auto req = verified(other.bc_chain, device_csr(other, new_key()), w.other_root);
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kUntrustedClientCert, 1);
  // Nor does an IDC, which chains to the same root but not through the BC CA.
  req = verified({ok->certificate, w.idc_ca.certificate}, device_csr(d, new_key()), w.root);
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kUntrustedClientCert, 1);
}

TEST_F(Ra, BcNotInTheInventoryIs403) {
  make_registrar(testpki::option2_policy());
  auto d = w.make_device(w.bc_ca);
  auto req = request(d.bc_chain, device_csr(d, new_key()));
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kUnknownDevice, 0);
}

TEST_F(Ra, BcNotMountedIs403) {
  make_registrar(testpki::option2_policy());
  auto d = w.make_device(w.bc_ca);
  w.import(d);
  auto req = request(d.bc_chain, device_csr(d, new_key()));
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kDeviceNotMounted, 0);
}

// ---- Lite (manifest version 2): the key is learned at first contact and pinned ----

TEST_F(Ra, ALiteDeviceEnrollsOnceItsFirstContactPinsItsKey) {
  make_registrar(testpki::option2_policy());
  auto d = w.make_device(w.bc_ca);
  w.import(d, {}, /*lite=*/true);
  // Not mounted yet: refused, and nothing is pinned.
  auto early = request(d.bc_chain, device_csr(d, new_key()));
  expect_refused(reg->simple_enroll(early), early, Errc::forbidden, ra::problem::kDeviceNotMounted, 0);
  EXPECT_TRUE(w.store().find_device_by_unique_id(d.unique_id)->bc_sha256.empty());

  w.mount(d);
  EXPECT_TRUE(w.store().find_end_entity(d.unique_id));  // keyed by the unique id until the key is known
  auto k = new_key();
  auto req = request(d.bc_chain, device_csr(d, k));
  auto out = reg->simple_enroll(req);
  ASSERT_TRUE(out) << out.error().problem << ": " << out.error().reason;
  EXPECT_TRUE(out->certificate.public_key() == k.key.public_key());
  const auto device = w.store().find_device_by_unique_id(d.unique_id).value();
  EXPECT_EQ(device.bc_sha256, d.bc.fingerprint_sha256_hex());
  EXPECT_EQ(device.ukid, d.ukid);
  EXPECT_EQ(device.state, store::DeviceState::enrolled);
  EXPECT_EQ(w.store().find_end_entity(d.unique_id).error().code, Errc::not_found);
  EXPECT_EQ(w.store().find_end_entity(d.ukid)->state, store::EndEntityState::generated);
  EXPECT_EQ(out->certificate.subject().get("serialNumber"), d.ukid);
  bool pin_audited = false;
  const auto records = w.store().list_audit(0, 1000).value();
  for (const auto& r : records) {
    if (r.event.action == "pin-key" && r.event.object == d.unique_id &&
        r.event.outcome == store::Outcome::accepted && r.event.request_id == req.context.request_id) {
      pin_audited = true;
    }
  }
  EXPECT_TRUE(pin_audited);

  // Another BC naming the same device (a cloned identity) is not the pinned key: refused.
  auto clone = w.make_device(w.bc_ca);
  clone.unique_id = d.unique_id;
  const ca::Issuer issuer(w.bc_ca.certificate, w.bc_ca.signer, w.clock());
  clone.bc =
      issuer
          .issue(
              ca::IssueRequest{
                  clone.bc_key.public_key(), {{"org", "Test Vendor"}, {"hw_serial", d.unique_id}}, {}, {}},
              testpki::profile_named("bc"))
          .value();
  clone.bc_chain[0] = clone.bc;
  clone.ukid = clone.bc.public_key().sha256_hex();
  auto creq = request(clone.bc_chain, device_csr(clone, new_key()));
  expect_refused(reg->simple_enroll(creq), creq, Errc::forbidden, ra::problem::kUnknownDevice, 1);
  EXPECT_NE(w.last_audit().event.reason.find("known with another key"), std::string::npos)
      << w.last_audit().event.reason;
}

TEST_F(Ra, ALiteDeviceIsUnknownWhenTheAliasDoesNotPinKeys) {
  auto p = testpki::option2_policy();
  p.pin_lite_devices = false;
  make_registrar(p);
  auto d = w.make_device(w.bc_ca);
  w.import(d, {}, /*lite=*/true);
  w.mount(d);
  auto req = request(d.bc_chain, device_csr(d, new_key()));
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kUnknownDevice, 0);
  EXPECT_TRUE(w.store().find_device_by_unique_id(d.unique_id)->bc_sha256.empty());
}

TEST_F(Ra, RetiredDeviceIs403) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  ASSERT_TRUE(w.store().retire_device(
      d.unique_id,
      store::AuditEvent{w.clock().now(), "test", "retire", d.unique_id, store::Outcome::accepted, "", ""}));
  auto req = request(d.bc_chain, device_csr(d, new_key()));
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kDeviceRetired, 0);
}

TEST_F(Ra, UkidNotMatchingTheBcKeyIs403) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  auto k = new_key();
  auto csr = testpki::make_csr(*k.signer, {{"serialNumber", testpki::random_hex(32)}, {"CN", "device"}});
  auto req = request(d.bc_chain, csr);
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kUkidMismatch, 0);
  EXPECT_NE(w.last_audit().event.reason.find("not the SHA-256 of the birth certificate's key"),
            std::string::npos);
}

TEST_F(Ra, UkidOfAnotherDeviceIs403AndNamesIt) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  auto victim = w.ready_device(w.bc_ca);
  auto k = new_key();
  auto csr = testpki::make_csr(*k.signer, {{"serialNumber", victim.ukid}, {"CN", "device"}});
  auto req = request(d.bc_chain, csr);
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kUkidMismatch, 0);
  EXPECT_NE(w.last_audit().event.reason.find("names another device (" + victim.unique_id + ")"),
            std::string::npos)
      << w.last_audit().event.reason;
}

TEST_F(Ra, UkidMissingIs403AndTheFieldIsConfigurable) {
  auto p = testpki::option2_policy();
  p.ukid_field = "CN";
  make_registrar(p);
  auto d = w.ready_device(w.bc_ca);
  auto k = new_key();
  auto req = request(d.bc_chain, device_csr(d, k));  // UKID in serialNumber, CN = "device"
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kUkidMismatch, 0);
  auto req2 = request(d.bc_chain, testpki::make_csr(*k.signer, {{"O", "x"}}));
  expect_refused(reg->simple_enroll(req2), req2, Errc::forbidden, ra::problem::kUkidMissing, 0);
  // Upper-case hex is the same UKID.
  std::string upper = d.ukid;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto ok = reg->simple_enroll(request(d.bc_chain, testpki::make_csr(*k.signer, {{"CN", upper}})));
  ASSERT_TRUE(ok) << ok.error().problem << ": " << ok.error().reason;
  EXPECT_EQ(ok->certificate.subject().get("serialNumber"), d.ukid);  // from the end entity, not the CSR
}

TEST_F(Ra, RevokedBcIs403) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  ASSERT_TRUE(
      w.store().mark_bc_revoked(d.id, store::AuditEvent{w.clock().now(), "test", "bc-revoke", d.unique_id,
                                                        store::Outcome::accepted, "", ""}));
  auto req = request(d.bc_chain, device_csr(d, new_key()));
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kBcRevoked, 0);
}

TEST_F(Ra, ConsumedBcIs403) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  ASSERT_TRUE(
      w.store().mark_bc_consumed(d.id, store::AuditEvent{w.clock().now(), "test", "bc-consume", d.unique_id,
                                                         store::Outcome::accepted, "", ""}));
  auto req = request(d.bc_chain, device_csr(d, new_key()));
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kBcConsumed, 0);
}

TEST_F(Ra, BadCsrSignatureIs400) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  auto req = request(d.bc_chain, device_csr(d, new_key()));
  // The last byte is inside the signature's INTEGER s: the structure stays valid, the signature not.
  req.csr_der.back() ^= std::byte{0x01};
  expect_refused(reg->simple_enroll(req), req, Errc::invalid_input, ra::problem::kCsrSignature, 0);
}

TEST_F(Ra, GarbageAndTrailingBytesAre400) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  auto req = request(d.bc_chain, device_csr(d, new_key()));
  req.csr_der.push_back(std::byte{0});
  expect_refused(reg->simple_enroll(req), req, Errc::invalid_input, ra::problem::kBadCsr, 0);
  auto req2 = request(d.bc_chain, device_csr(d, new_key()));
  req2.csr_der = to_bytes("not a CSR at all");
  expect_refused(reg->simple_enroll(req2), req2, Errc::invalid_input, ra::problem::kBadCsr, 0);
}

TEST_F(Ra, CsrAskingForCaTrueAndExtraSansGetsWhatTheProfileSays) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  auto k = new_key();
  x509::SubjectAltName san;
  san.names = {x509::GeneralName::dns("evil.example.com"), x509::GeneralName::ip("192.0.2.1")};
  auto csr = testpki::make_csr(*k.signer, {{"serialNumber", d.ukid}, {"CN", "root of all"}, {"O", "Evil"}},
                               std::nullopt, san);
  auto out = reg->simple_enroll(request(d.bc_chain, csr));
  ASSERT_TRUE(out) << out.error().problem << ": " << out.error().reason;
  EXPECT_FALSE(out->certificate.is_ca());
  EXPECT_EQ(out->certificate.subject().get("CN"), "Test Widget");
  EXPECT_EQ(out->certificate.subject().get("O"), "Test OEM");
  const auto san_out = out->certificate.subject_alt_name();
  ASSERT_TRUE(san_out);
  for (const auto& n : san_out->names) {
    EXPECT_EQ(n.kind, x509::GeneralName::Kind::hardware_module_name) << n.to_string();
  }
}

TEST_F(Ra, Rsa1024KeyIs403) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  const auto pem_path = (w.dir() / "rsa1024.pem").string();
  ASSERT_EQ(std::system(("openssl genrsa -out " + pem_path + " 1024 2>/dev/null").c_str()), 0);
  auto text = read_text_file(pem_path);
  ASSERT_TRUE(text);
  auto key = crypto::PrivateKey::parse_pem(*text);
  ASSERT_TRUE(key) << key.error().detail;
  const crypto::FileSigner signer(*key, "test:rsa1024");
  auto req = request(d.bc_chain, testpki::make_csr(signer, {{"serialNumber", d.ukid}}));
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kKeyNotAllowed, 0);
  EXPECT_NE(w.last_audit().event.reason.find("RSA 1024"), std::string::npos) << w.last_audit().event.reason;
}

TEST_F(Ra, UnknownAliasIs404) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  auto req = request(d.bc_chain, device_csr(d, new_key()), "nope");
  expect_refused(reg->simple_enroll(req), req, Errc::not_found, ra::problem::kUnknownAlias, 0);
  // No default alias configured: the empty name is unknown too.
  auto req2 = request(d.bc_chain, device_csr(d, new_key()), "");
  expect_refused(reg->simple_enroll(req2), req2, Errc::not_found, ra::problem::kUnknownAlias, 0);
}

TEST_F(Ra, EndEntityOfAnotherAliasIs403) {
  make_registrar({testpki::option2_policy("widget"), testpki::option2_policy("gadget")});
  auto d = w.make_device(w.bc_ca);
  w.import(d);
  w.mount(d, "gadget");
  auto req = request(d.bc_chain, device_csr(d, new_key()), "widget");
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kAliasMismatch, 0);
  EXPECT_TRUE(reg->simple_enroll(request(d.bc_chain, device_csr(d, new_key()), "gadget")));
}

TEST_F(Ra, PendingEndEntityDefersWith202Semantics) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  ASSERT_TRUE(w.store().set_end_entity_state(
      d.ukid, store::EndEntityState::pending,
      store::AuditEvent{w.clock().now(), "test", "ee", d.ukid, store::Outcome::accepted, "", ""}));
  auto out = reg->simple_enroll(request(d.bc_chain, device_csr(d, new_key())));
  ASSERT_TRUE(out);
  EXPECT_EQ(out->status, ra::Enrollment::Status::pending);
  EXPECT_GT(out->retry_after.count(), 0);
  EXPECT_EQ(w.certificate_count(), 0u);
  EXPECT_TRUE(w.last_audit().event.reason.starts_with("pending-approval: "));
}

TEST_F(Ra, DefaultAliasServesTheEmptyName) {
  std::vector<ra::AliasPolicy> policies{testpki::option2_policy()};
  std::vector<ra::Alias> aliases{testpki::make_test_alias(w, policies[0])};
  ra::Registrar r(w.store(), w.clock(), std::move(aliases),
                  ra::RegistrarOptions{"widget", {{"product", "P"}}, "ra", {}, 5s, 60s});
  auto d = w.ready_device(w.bc_ca);
  auto req = request(d.bc_chain, device_csr(d, new_key()), "");
  auto out = r.simple_enroll(req);
  ASSERT_TRUE(out) << out.error().problem << ": " << out.error().reason;
  EXPECT_EQ(out->certificate.subject().get("CN"), "P");
}

TEST_F(Ra, AProfileThatCannotBeFilledIsTheServersFault) {
  std::vector<ra::Alias> aliases{testpki::make_test_alias(w, testpki::option2_policy())};
  ra::Registrar r(w.store(), w.clock(), std::move(aliases), ra::RegistrarOptions{});  // no {product}
  auto d = w.ready_device(w.bc_ca);
  auto req = request(d.bc_chain, device_csr(d, new_key()));
  auto out = r.simple_enroll(req);
  expect_refused(out, req, Errc::internal, ra::problem::kIssuanceFailed, 0);
  EXPECT_NE(w.last_audit().event.reason.find("needs variable {product}"), std::string::npos);
}

// ---- Option 3: BC + secret ----

class RaOption3 : public Ra {
 protected:
  void SetUp() override {
    Ra::SetUp();
    auto p = testpki::option2_policy("vendor");
    p.authenticators = {ra::Authenticator::bc_secret};
    p.enroll_anchors = {"vendor-bc"};
    p.after_issue = ra::AfterIssue::consume_bc;
    make_registrar(p);
  }
  static constexpr const char* kSecret = "6b1f0c0e4e5a4f4db0f1d5a3c2b1a090";
};

TEST_F(RaOption3, SecretInChallengePasswordEnrollsAndConsumesTheBcAndTheSecretIsNowhere) {
  auto d = w.ready_device(w.vendor_bc_ca, kSecret);
  auto k = new_key();
  auto req = request(d.bc_chain, secret_csr(k, kSecret), "vendor");
  auto out = reg->simple_enroll(req);
  ASSERT_TRUE(out) << out.error().problem << ": " << out.error().reason;
  EXPECT_EQ(out->certificate.subject().get("serialNumber"), d.unique_id);
  auto dev = w.store().find_device(d.id);
  ASSERT_TRUE(dev);
  EXPECT_TRUE(dev->bc_consumed);
  EXPECT_FALSE(dev->bc_revoked);
  EXPECT_TRUE(revoked_hook.empty());
  // Neither the certificate nor any audit record carries the secret.
  EXPECT_EQ(to_string(out->certificate.to_der()).find(kSecret), std::string::npos);
  for (const auto& a : w.audit()) {
    for (const auto* f : {&a.event.reason, &a.event.object, &a.event.actor}) {
      EXPECT_EQ(f->find(kSecret), std::string::npos) << *f;
    }
  }
}

TEST_F(RaOption3, SecretAsHttpBasicPasswordEnrolls) {
  auto d = w.ready_device(w.vendor_bc_ca, kSecret);
  auto k = new_key();
  auto req = request(d.bc_chain, secret_csr(k, std::nullopt), "vendor");
  req.basic_password = Secret(kSecret);
  auto out = reg->simple_enroll(req);
  ASSERT_TRUE(out) << out.error().problem << ": " << out.error().reason;
}

TEST_F(RaOption3, WrongSecretIs401) {
  auto d = w.ready_device(w.vendor_bc_ca, kSecret);
  auto req = request(d.bc_chain, secret_csr(new_key(), "wrong-secret"), "vendor");
  expect_refused(reg->simple_enroll(req), req, Errc::unauthenticated, ra::problem::kSecretMismatch, 0);
  auto req2 = request(d.bc_chain, secret_csr(new_key(), std::nullopt), "vendor");
  req2.basic_password = Secret("also-wrong");
  expect_refused(reg->simple_enroll(req2), req2, Errc::unauthenticated, ra::problem::kSecretMismatch, 0);
  for (const auto& a : w.audit()) EXPECT_EQ(a.event.reason.find("wrong-secret"), std::string::npos);
}

TEST_F(RaOption3, MissingSecretIs401) {
  auto d = w.ready_device(w.vendor_bc_ca, kSecret);
  auto req = request(d.bc_chain, secret_csr(new_key(), std::nullopt), "vendor");
  expect_refused(reg->simple_enroll(req), req, Errc::unauthenticated, ra::problem::kSecretMissing, 0);
}

TEST_F(RaOption3, AnOption2DeviceOnASecretOnlyAliasIs403) {
  auto d = w.ready_device(w.vendor_bc_ca);  // no secret: Option 2
  auto req = request(d.bc_chain, device_csr(d, new_key()), "vendor");
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kAuthenticatorNotAllowed, 0);
}

TEST_F(Ra, AVendorCaRecordedWithoutItsRootIsAPartialAnchor) {
  auto p = testpki::option2_policy("vendor");
  p.authenticators = {ra::Authenticator::bc_secret};
  p.enroll_anchors = {"vendor-bc-partial"};
  p.after_issue = ra::AfterIssue::consume_bc;
  make_registrar(p);
  auto d = w.ready_device(w.vendor_bc_ca, "s3cret-s3cret-s3cret");
  auto out = reg->simple_enroll(request({d.bc}, secret_csr(new_key(), "s3cret-s3cret-s3cret"), "vendor"));
  ASSERT_TRUE(out) << out.error().problem << ": " << out.error().reason;
  // A BC of another CA with the same subject name does not pass.
  auto other = w.ready_device(w.other_bc_ca, "s3cret-s3cret-s3cret");
  auto req = request({other.bc}, secret_csr(new_key(), "s3cret-s3cret-s3cret"), "vendor");
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kUntrustedClientCert, 1);
}

TEST_F(Ra, SecretInASubjectFieldIsAcceptedByAliasOptionButNeverCopied) {
  auto p = testpki::option2_policy("vendor");
  p.authenticators = {ra::Authenticator::bc_secret};
  p.enroll_anchors = {"vendor-bc"};
  p.secret_field = "serialNumber";
  p.after_issue = ra::AfterIssue::consume_bc;
  make_registrar(p);
  const std::string secret = "9f8e7d6c5b4a39281706f5e4d3c2b1a0";
  auto d = w.ready_device(w.vendor_bc_ca, secret);
  auto k = new_key();
  auto out = reg->simple_enroll(
      request(d.bc_chain, testpki::make_csr(*k.signer, {{"serialNumber", secret}}), "vendor"));
  ASSERT_TRUE(out) << out.error().problem << ": " << out.error().reason;
  EXPECT_EQ(out->certificate.subject().get("serialNumber"), d.unique_id);
  EXPECT_EQ(to_string(out->certificate.to_der()).find(secret), std::string::npos);
}

// ---- POP linking ----

class RaPop : public Ra {
 protected:
  ra::EnrollRequest linked(const Device& d, const DeviceKey& k, std::optional<std::string> challenge,
                           const std::string& alias) {
    auto r = request(d.bc_chain, device_csr(d, k, std::move(challenge)), alias);
    r.context.peer.channel_binding_type = "tls-exporter";
    r.context.peer.channel_binding = binding;
    return r;
  }
  void SetUp() override {
    Ra::SetUp();
    auto req = testpki::option2_policy("required");
    req.pop_linking = ra::PopLinking::required;
    auto opt = testpki::option2_policy("optional");
    opt.pop_linking = ra::PopLinking::optional;
    make_registrar({req, opt});
    binding = crypto::random_bytes(32);
  }
  Bytes binding;
};

TEST_F(RaPop, RequiredAndMatchingEnrolls) {
  auto d = w.ready_device(w.bc_ca);
  auto out = reg->simple_enroll(linked(d, new_key(), crypto::base64_encode(binding), "required"));
  ASSERT_TRUE(out) << out.error().problem << ": " << out.error().reason;
}

TEST_F(RaPop, RequiredButMissingIs403) {
  auto d = w.ready_device(w.bc_ca);
  auto req = linked(d, new_key(), std::nullopt, "required");
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kPopMissing, 0);
}

TEST_F(RaPop, RequiredButWrongIs403) {
  auto d = w.ready_device(w.bc_ca);
  auto req = linked(d, new_key(), crypto::base64_encode(crypto::random_bytes(32)), "required");
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kPopMismatch, 0);
}

TEST_F(RaPop, RequiredThroughATerminatingProxyIs403) {
  auto d = w.ready_device(w.bc_ca);
  auto req = linked(d, new_key(), crypto::base64_encode(binding), "required");
  req.context.peer.via_proxy = true;
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kPopUnavailable, 0);
}

TEST_F(RaPop, OptionalChecksWhatIsSentAndAllowsNothing) {
  auto d = w.ready_device(w.bc_ca);
  auto req = linked(d, new_key(), "not-the-binding", "optional");
  expect_refused(reg->simple_enroll(req), req, Errc::forbidden, ra::problem::kPopMismatch, 0);
  auto out = reg->simple_enroll(linked(d, new_key(), std::nullopt, "optional"));
  ASSERT_TRUE(out) << out.error().problem << ": " << out.error().reason;
}

// ---- re-enrollment ----

class RaReenroll : public Ra {
 protected:
  x509::Csr renewal_csr(const x509::Certificate& idc, const DeviceKey& k) {
    x509::CsrOptions o;
    o.subject_alt_name = idc.subject_alt_name();
    auto csr = x509::make_csr(idc.subject(), *k.signer, o);
    EXPECT_TRUE(csr);
    return *csr;
  }
  std::vector<x509::Certificate> idc_chain(const x509::Certificate& idc) {
    return {idc, w.idc_ca.certificate};
  }
};

TEST_F(RaReenroll, RekeyWithTheIdcIssuesAndCounts) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  auto [idc, k] = enrolled(d);
  auto k2 = new_key();
  auto req = request(idc_chain(idc), renewal_csr(idc, k2));
  auto out = reg->simple_reenroll(req);
  ASSERT_TRUE(out) << out.error().problem << ": " << out.error().reason;
  EXPECT_TRUE(out->certificate.subject() == idc.subject());
  EXPECT_TRUE(out->certificate.public_key() == k2.key.public_key());
  EXPECT_EQ(w.certificate_count(), 2u);
  auto ee = w.store().find_end_entity(d.ukid);
  ASSERT_TRUE(ee);
  EXPECT_EQ(ee->renewal_count, 1);
  auto audit = w.audit();
  const auto it = std::find_if(audit.begin(), audit.end(), [&](const store::AuditRecord& a) {
    return a.event.request_id == req.context.request_id;
  });
  ASSERT_NE(it, audit.end());
  EXPECT_EQ(it->event.action, "reenroll");
  EXPECT_EQ(it->event.outcome, store::Outcome::accepted);

  // A retry after a lost answer gets the same certificate.
  auto again = reg->simple_reenroll(request(idc_chain(idc), renewal_csr(idc, k2)));
  ASSERT_TRUE(again) << again.error().problem;
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(again->certificate, out->certificate);
  EXPECT_EQ(w.certificate_count(), 2u);
}

TEST_F(RaReenroll, WithABcInsteadOfAnIdcIs403) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  auto [idc, k] = enrolled(d);
  auto req = request(d.bc_chain, renewal_csr(idc, new_key()));
  expect_refused(reg->simple_reenroll(req), req, Errc::forbidden, ra::problem::kNotAnIdc, 1);
}

TEST_F(RaReenroll, WithoutAClientCertificateIs401) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  auto [idc, k] = enrolled(d);
  auto req = request({}, renewal_csr(idc, new_key()));
  expect_refused(reg->simple_reenroll(req), req, Errc::unauthenticated, ra::problem::kClientCertRequired, 1);
}

TEST_F(RaReenroll, ChangedSubjectIs403) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  auto [idc, k] = enrolled(d);
  auto k2 = new_key();
  x509::CsrOptions o;
  o.subject_alt_name = idc.subject_alt_name();
  auto subject = x509::Name::make({{"serialNumber", d.ukid}, {"O", "Test OEM"}, {"CN", "Other Product"}});
  auto csr = x509::make_csr(*subject, *k2.signer, o);
  auto req = request(idc_chain(idc), *csr);
  expect_refused(reg->simple_reenroll(req), req, Errc::forbidden, ra::problem::kSubjectMismatch, 1);
}

TEST_F(RaReenroll, SubjectComparedDecodedNotAsBytes) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  auto [idc, k] = enrolled(d);
  // The same names typed differently (case, UTF8String vs PrintableString) are the same subject.
  auto subject = x509::Name::make({{"serialNumber", d.ukid}, {"O", "test oem"}, {"CN", "TEST  widget"}});
  ASSERT_TRUE(subject);
  x509::CsrOptions o;
  o.subject_alt_name = idc.subject_alt_name();
  auto k2 = new_key();
  auto csr = x509::make_csr(*subject, *k2.signer, o);
  ASSERT_TRUE(csr);
  ASSERT_NE(csr->subject().to_der(), idc.subject().to_der());
  auto out = reg->simple_reenroll(request(idc_chain(idc), *csr));
  ASSERT_TRUE(out) << out.error().problem << ": " << out.error().reason;
}

TEST_F(RaReenroll, MissingSanIs403) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  auto [idc, k] = enrolled(d);
  auto k2 = new_key();
  auto csr = x509::make_csr(idc.subject(), *k2.signer, {});
  auto req = request(idc_chain(idc), *csr);
  expect_refused(reg->simple_reenroll(req), req, Errc::forbidden, ra::problem::kSanMismatch, 1);
}

TEST_F(RaReenroll, SameKeyIs403UnlessTheAliasAllowsReuse) {
  auto strict = testpki::option2_policy("strict");
  auto reuse = testpki::option2_policy("reuse");
  reuse.allow_key_reuse = true;
  make_registrar({strict, reuse});
  auto d = w.make_device(w.bc_ca);
  w.import(d);
  w.mount(d);
  auto k = new_key();
  auto first = reg->simple_enroll(request(d.bc_chain, device_csr(d, k), "strict"));
  ASSERT_TRUE(first);
  const auto& idc = first->certificate;
  auto req = request(idc_chain(idc), renewal_csr(idc, k), "strict");
  expect_refused(reg->simple_reenroll(req), req, Errc::forbidden, ra::problem::kKeyReuse, 1);
  auto out = reg->simple_reenroll(request(idc_chain(idc), renewal_csr(idc, k), "reuse"));
  ASSERT_TRUE(out) << out.error().problem << ": " << out.error().reason;
  EXPECT_NE(out->certificate.serial_hex(), idc.serial_hex());
  EXPECT_EQ(w.certificate_count(), 2u);
}

TEST_F(RaReenroll, RevokedIdcIs403) {
  make_registrar(testpki::option2_policy());
  auto d = w.ready_device(w.bc_ca);
  auto [idc, k] = enrolled(d);
  ASSERT_TRUE(
      w.store().revoke_certificate(idc.serial_hex(), w.clock().now(), 1,
                                   store::AuditEvent{w.clock().now(), "test", "revoke", idc.serial_hex(),
                                                     store::Outcome::accepted, "", ""}));
  auto req = request(idc_chain(idc), renewal_csr(idc, new_key()));
  expect_refused(reg->simple_reenroll(req), req, Errc::forbidden, ra::problem::kIdcRevoked, 1);
}

TEST_F(RaReenroll, RenewalWindowAndGracePeriod) {
  auto p = testpki::option2_policy();
  p.lifetime = std::chrono::days{30};
  p.renewal_window = std::chrono::days{7};
  p.grace_period = std::chrono::days{7};
  make_registrar(p);
  auto d = w.ready_device(w.bc_ca);
  auto [idc, k] = enrolled(d);
  EXPECT_FALSE(idc.has_no_expiry());

  w.advance(std::chrono::days{1});
  auto early = request(idc_chain(idc), renewal_csr(idc, new_key()));
  expect_refused(reg->simple_reenroll(early), early, Errc::forbidden, ra::problem::kOutsideRenewalWindow, 1);

  w.advance(std::chrono::days{31});  // expired two days ago: inside the grace period
  auto late = request(idc_chain(idc), renewal_csr(idc, new_key()));
  late.context.peer.expired = true;
  auto out = reg->simple_reenroll(late);
  ASSERT_TRUE(out) << out.error().problem << ": " << out.error().reason;
  EXPECT_EQ(w.certificate_count(), 2u);

  w.advance(std::chrono::days{10});  // the first IDC is now past its grace period
  auto too_late = request(idc_chain(idc), renewal_csr(idc, new_key()));
  too_late.context.peer.expired = true;
  expect_refused(reg->simple_reenroll(too_late), too_late, Errc::forbidden, ra::problem::kIdcExpired, 2);
}

TEST_F(RaReenroll, RecoveryThroughTheBcAfterTheIdcExpired) {
  auto p = testpki::option2_policy();
  p.after_issue = ra::AfterIssue::none;
  p.lifetime = std::chrono::days{30};
  p.recovery_through_bc = true;
  make_registrar(p);
  auto d = w.ready_device(w.bc_ca);
  auto [idc, k] = enrolled(d);
  w.advance(std::chrono::days{10});
  auto early = request(d.bc_chain, device_csr(d, new_key()));
  expect_refused(reg->simple_enroll(early), early, Errc::conflict, ra::problem::kAlreadyEnrolled, 1);
  w.advance(std::chrono::days{30});
  auto out = reg->simple_enroll(request(d.bc_chain, device_csr(d, new_key())));
  ASSERT_TRUE(out) << out.error().problem << ": " << out.error().reason;
  EXPECT_EQ(w.certificate_count(), 2u);
}

TEST_F(RaReenroll, PopLinkingAppliesToReenrollmentToo) {
  auto p = testpki::option2_policy();
  p.pop_linking = ra::PopLinking::required;
  make_registrar(p);
  auto d = w.ready_device(w.bc_ca);
  const Bytes binding = crypto::random_bytes(12);
  auto k = new_key();
  auto first_req = request(d.bc_chain, device_csr(d, k, crypto::base64_encode(binding)));
  first_req.context.peer.channel_binding_type = "tls-unique";
  first_req.context.peer.channel_binding = binding;
  auto first = reg->simple_enroll(first_req);
  ASSERT_TRUE(first) << first.error().problem;
  const auto& idc = first->certificate;
  auto req = request(idc_chain(idc), renewal_csr(idc, new_key()));
  req.context.peer.channel_binding_type = "tls-unique";
  req.context.peer.channel_binding = binding;
  expect_refused(reg->simple_reenroll(req), req, Errc::forbidden, ra::problem::kPopMissing, 1);
}

// ---- serverkeygen, csrattrs, cacerts ----

TEST_F(Ra, ServerKeygenReturnsAKeyMatchingTheCertificate) {
  auto p = testpki::option2_policy();
  p.serverkeygen = true;
  make_registrar({p, testpki::option2_policy("nokeygen")});
  auto d = w.ready_device(w.bc_ca);
  auto out = reg->server_keygen(request(d.bc_chain, device_csr(d, new_key())));
  ASSERT_TRUE(out) << out.error().problem << ": " << out.error().reason;
  ASSERT_TRUE(out->private_key_pkcs8);
  auto key = crypto::PrivateKey::parse_der(as_bytes(out->private_key_pkcs8->reveal()));
  ASSERT_TRUE(key) << key.error().detail;
  EXPECT_TRUE(key->public_key() == out->certificate.public_key());
  EXPECT_EQ(w.certificate_count(), 1u);

  auto d2 = w.ready_device(w.bc_ca);
  auto req = request(d2.bc_chain, device_csr(d2, new_key()), "nokeygen");
  expect_refused(reg->server_keygen(req), req, Errc::not_found, ra::problem::kServerKeygenDisabled, 1);
}

TEST_F(Ra, CsrAttributesFollowThePolicy) {
  auto plain = testpki::option2_policy("plain");
  auto pop = testpki::option2_policy("pop");
  pop.pop_linking = ra::PopLinking::required;
  auto secret = testpki::option2_policy("secret");
  secret.authenticators = {ra::Authenticator::bc_secret};
  secret.after_issue = ra::AfterIssue::consume_bc;
  make_registrar({plain, pop, secret});
  EXPECT_EQ(*reg->csr_attributes("plain"), std::vector<std::string>{"2.5.4.5"});
  EXPECT_EQ(*reg->csr_attributes("pop"), (std::vector<std::string>{"2.5.4.5", "1.2.840.113549.1.9.7"}));
  EXPECT_EQ(*reg->csr_attributes("secret"), std::vector<std::string>{"1.2.840.113549.1.9.7"});
  EXPECT_EQ(reg->csr_attributes("nope").error().problem, ra::problem::kUnknownAlias);
  auto chain = reg->cacerts("plain");
  ASSERT_TRUE(chain);
  EXPECT_EQ(*chain, w.idc_ca.chain);
}

// ---- policy validation ----

TEST(RaPolicy, ValidationMessagesAreExact) {
  auto p = testpki::option2_policy("x");
  EXPECT_TRUE(p.validate());
  p.recovery_through_bc = true;
  EXPECT_EQ(
      p.validate().error().detail,
      "[est.alias.x] recovery_through_bc needs after_issue = \"none\" (a revoked BC cannot authenticate a "
      "recovery)");
  p = testpki::option2_policy("x");
  p.enroll_anchors.clear();
  EXPECT_EQ(p.validate().error().detail,
            "[est.alias.x] enroll_anchors must name at least one CA (the BC anchors)");
  p = testpki::option2_policy("x");
  p.ukid_field = "shoeSize";
  EXPECT_EQ(
      p.validate().error().detail,
      "[est.alias.x] ukid_field: unknown attribute 'shoeSize' (use serialNumber, CN, UID or a dotted OID)");
  p = testpki::option2_policy("Bad_Name");
  EXPECT_EQ(p.validate().error().detail, "[est.alias.Bad_Name] invalid alias name: use 1-63 of a-z 0-9 -");
  EXPECT_TRUE(ra::is_valid_alias_name("a-1"));
  EXPECT_FALSE(ra::is_valid_alias_name(".."));
  EXPECT_FALSE(ra::is_valid_alias_name("a%2Fb"));
  EXPECT_FALSE(ra::is_valid_alias_name(std::string(64, 'a')));
  EXPECT_EQ(ra::attribute_oid("serialNumber"), "2.5.4.5");
  EXPECT_EQ(ra::attribute_oid("1.2.3.4"), "1.2.3.4");
  EXPECT_FALSE(ra::attribute_oid("1..2"));
}

}  // namespace
}  // namespace hallmark
