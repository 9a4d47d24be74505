// The revocation component on a real SQLite store and a PKI made at run time with the real issuer:
// OCSP messages, the responder (good, revoked, unknown, nonce, cache), CRLs, the service's routes and
// files, and [revocation] configuration.
#include <gtest/gtest.h>

#include <fstream>

#include "../ra/test_pki.hpp"
#include "hallmark/revocation/config.hpp"
#include "hallmark/revocation/responder.hpp"
#include "hallmark/revocation/revocation.hpp"
#include "hallmark/revocation/service.hpp"
#include "hallmark/x509/ocsp.hpp"

namespace hallmark::revocation {
namespace {

using testpki::profile_named;
using testpki::TestCa;
using x509::OcspCertStatus;
using x509::OcspResponseStatus;
using x509::RevocationReason;

struct Responder {
  x509::Certificate certificate;
  std::shared_ptr<const crypto::FileSigner> signer;
};

Responder make_responder(const TestCa& ca, const Clock& clock) {
  auto key = *crypto::PrivateKey::generate(crypto::KeyType::ec_p256);
  Responder r;
  r.signer = std::make_shared<const crypto::FileSigner>(key, "test:ocsp");
  const ca::Issuer issuer(ca.certificate, ca.signer, clock);
  auto cert = issuer.issue(
      ca::IssueRequest{key.public_key(), {{"org", "Test OEM"}, {"cn", ca.name + " OCSP"}}, {}, {}},
      profile_named("ocsp-responder"));
  EXPECT_TRUE(cert) << cert.error().detail;
  r.certificate = *cert;
  return r;
}

class Revocation : public ::testing::Test {
 protected:
  void SetUp() override {
    idc_responder_ = make_responder(w_.idc_ca, w_.clock());
    bc_responder_ = make_responder(w_.bc_ca, w_.clock());
    cas_ = {CaSource{"idc", w_.idc_ca.certificate, w_.idc_ca.signer, idc_responder_.certificate,
                     idc_responder_.signer},
            CaSource{"bc", w_.bc_ca.certificate, w_.bc_ca.signer, bc_responder_.certificate,
                     bc_responder_.signer}};
    // The store's copy of the CAs (it keeps their CRL numbers).
    for (const auto& ca : cas_) {
      ASSERT_TRUE(w_.store().add_ca(
          store::CaRecord{0, ca.name, ca.name, ca.certificate.to_der(), "", "active", 0, false}));
    }
  }

  // An IDC issued under the IDC CA to a fresh Option 2 device and recorded as the store does on enroll.
  x509::Certificate issue_idc(testpki::Device* device_out = nullptr) {
    auto d = w_.ready_device(w_.bc_ca);
    auto key = *crypto::PrivateKey::generate(crypto::KeyType::ec_p256);
    const ca::Issuer issuer(w_.idc_ca.certificate, w_.idc_ca.signer, w_.clock());
    auto cert = issuer.issue(
        ca::IssueRequest{
            key.public_key(),
            {{"org", "Test OEM"}, {"product", "Widget"}, {"serial", d.unique_id}, {"hw_serial", d.unique_id}},
            {},
            {}},
        profile_named("idc"));
    EXPECT_TRUE(cert) << cert.error().detail;
    store::IssuanceRequest req;
    req.username = d.ukid;
    req.certificate.serial_hex = cert->serial_hex();
    req.certificate.issuer_ca = "idc";
    req.certificate.subject = cert->subject().to_string();
    req.certificate.not_before = cert->not_before();
    req.certificate.not_after = cert->not_after();
    req.certificate.public_key_sha256 = cert->public_key().sha256_hex();
    req.certificate.der = cert->to_der();
    req.audit = store::AuditEvent{w_.clock().now(), "test", "enroll", "", store::Outcome::accepted, "", "rq"};
    auto r = w_.store().record_issuance(req);
    EXPECT_TRUE(r) << r.error().detail;
    if (device_out != nullptr) *device_out = std::move(d);
    return *cert;
  }

  x509::OcspResponse ask(OcspResponder& responder, const x509::Certificate& issuer, ByteView serial,
                         const std::optional<Bytes>& nonce = std::nullopt, std::string_view hash = "sha1") {
    auto id = x509::make_ocsp_cert_id(issuer, serial, hash);
    EXPECT_TRUE(id);
    auto req = x509::make_ocsp_request({*id}, nonce);
    EXPECT_TRUE(req);
    last_der_ = responder.respond(*req);
    auto parsed = x509::parse_ocsp_response(last_der_);
    EXPECT_TRUE(parsed) << parsed.error().detail;
    return parsed ? *parsed : x509::OcspResponse{};
  }

  testpki::World w_;
  Responder idc_responder_, bc_responder_;
  std::vector<CaSource> cas_;
  Bytes last_der_;
};

TEST(OcspMessages, RequestRoundTripsWithNonce) {
  FixedClock clock(Seconds{std::chrono::seconds{1'800'000'000}});
  const auto root = testpki::make_root("r", clock);
  const Bytes serial = *parse_hex("01ff80");
  auto id = x509::make_ocsp_cert_id(root.certificate, serial, "sha256");
  ASSERT_TRUE(id);
  EXPECT_EQ(id->hash_algorithm, "sha256");
  EXPECT_EQ(id->issuer_key_hash.size(), 32u);
  const Bytes nonce = *parse_hex("00112233445566778899aabbccddeeff");
  auto der = x509::make_ocsp_request({*id}, nonce);
  ASSERT_TRUE(der);
  auto parsed = x509::parse_ocsp_request(*der);
  ASSERT_TRUE(parsed) << parsed.error().detail;
  ASSERT_EQ(parsed->ids.size(), 1u);
  EXPECT_EQ(parsed->ids[0], *id);
  ASSERT_TRUE(parsed->nonce);
  // The extension value as sent: OpenSSL wraps the nonce in an OCTET STRING.
  EXPECT_NE(to_hex(*parsed->nonce).find(to_hex(nonce)), std::string::npos);
  EXPECT_EQ(x509::parse_ocsp_request(as_bytes(std::string_view("junk"))).error().code, Errc::invalid_input);
  EXPECT_EQ(x509::make_ocsp_cert_id(root.certificate, serial, "md17").error().code, Errc::invalid_input);
}

TEST_F(Revocation, OcspGoodThenRevokedUnknownAndNonce) {
  const auto idc = issue_idc();
  OcspResponder responder(w_.store(), cas_, w_.clock(), {});
  ASSERT_TRUE(responder.index_devices());

  auto r = ask(responder, w_.idc_ca.certificate, idc.serial());
  ASSERT_EQ(r.status, OcspResponseStatus::successful);
  ASSERT_EQ(r.responses.size(), 1u);
  EXPECT_EQ(r.responses[0].status, OcspCertStatus::good);
  EXPECT_EQ(r.responses[0].id.serial, idc.serial());
  ASSERT_TRUE(r.responses[0].next_update);
  EXPECT_EQ(*r.responses[0].next_update - r.responses[0].this_update, std::chrono::seconds(3600));
  EXPECT_TRUE(x509::verify_ocsp_response_signature(last_der_, idc_responder_.certificate));
  EXPECT_FALSE(x509::verify_ocsp_response_signature(last_der_, bc_responder_.certificate));
  ASSERT_EQ(r.certificates.size(), 1u);
  EXPECT_EQ(r.certificates[0], idc_responder_.certificate);
  EXPECT_EQ(responder.cached(), 1u);

  // Revoked in the store: the cached "good" is served until invalidated, then "revoked".
  RevokeOptions o;
  o.clock = &w_.clock();
  auto revoked = revoke_certificate(w_.store(), idc.serial_hex(), RevocationReason::key_compromise, o);
  ASSERT_TRUE(revoked) << revoked.error().detail;
  EXPECT_EQ(revoked->status, store::CertificateStatus::revoked);
  EXPECT_EQ(
      revoke_certificate(w_.store(), idc.serial_hex(), RevocationReason::key_compromise, o).error().code,
      Errc::conflict);
  EXPECT_EQ(ask(responder, w_.idc_ca.certificate, idc.serial()).responses[0].status, OcspCertStatus::good);
  responder.invalidate();
  r = ask(responder, w_.idc_ca.certificate, idc.serial(), std::nullopt, "sha256");
  ASSERT_EQ(r.responses.size(), 1u);
  EXPECT_EQ(r.responses[0].status, OcspCertStatus::revoked);
  EXPECT_EQ(r.responses[0].revocation_time, w_.clock().now());
  EXPECT_EQ(r.responses[0].reason, RevocationReason::key_compromise);
  EXPECT_EQ(r.responses[0].id.hash_algorithm, "sha256");

  // Never issued: unknown, and not cached.
  const auto before = responder.cached();
  r = ask(responder, w_.idc_ca.certificate, *parse_hex("7f0102030405"));
  EXPECT_EQ(r.responses[0].status, OcspCertStatus::unknown);
  EXPECT_EQ(responder.cached(), before);

  // A nonce is echoed (signed on demand each time).
  const Bytes nonce = crypto::random_bytes(16);
  r = ask(responder, w_.idc_ca.certificate, idc.serial(), nonce);
  ASSERT_TRUE(r.nonce);
  EXPECT_NE(to_hex(*r.nonce).find(to_hex(nonce)), std::string::npos);
  EXPECT_EQ(r.responses[0].status, OcspCertStatus::revoked);

  // A CA we do not answer for; garbage.
  r = ask(responder, w_.other_bc_ca.certificate, idc.serial());
  EXPECT_EQ(r.status, OcspResponseStatus::unauthorized);
  auto bad = x509::parse_ocsp_response(responder.respond(as_bytes(std::string_view("\x30\x03junk"))));
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, OcspResponseStatus::malformed_request);
}

TEST_F(Revocation, BirthCertificatesFromTheInventory) {
  testpki::Device device;
  issue_idc(&device);
  OcspResponder responder(w_.store(), cas_, w_.clock(), {});
  // Not indexed yet: try later rather than a wrong "unknown".
  auto r = ask(responder, w_.bc_ca.certificate, device.bc.serial());
  EXPECT_EQ(r.status, OcspResponseStatus::try_later);
  ASSERT_TRUE(responder.index_devices());
  r = ask(responder, w_.bc_ca.certificate, device.bc.serial());
  ASSERT_EQ(r.status, OcspResponseStatus::successful);
  EXPECT_EQ(r.responses[0].status, OcspCertStatus::good);
  EXPECT_TRUE(x509::verify_ocsp_response_signature(last_der_, bc_responder_.certificate));

  // The RA's after-issue policy: the BC becomes a revoked row of the BC CA.
  const auto row = *w_.store().find_device_by_unique_id(device.unique_id);
  RevokeOptions o;
  o.clock = &w_.clock();
  auto rec = revoke_device_certificate(w_.store(), row, cas_, RevocationReason::superseded, o);
  ASSERT_TRUE(rec) << rec.error().detail;
  EXPECT_EQ(rec->issuer_ca, "bc");
  EXPECT_EQ(rec->serial_hex, device.bc.serial_hex());
  EXPECT_EQ(revoke_device_certificate(w_.store(), row, cas_, RevocationReason::superseded, o).error().code,
            Errc::conflict);
  responder.invalidate();
  r = ask(responder, w_.bc_ca.certificate, device.bc.serial());
  EXPECT_EQ(r.responses[0].status, OcspCertStatus::revoked);
  EXPECT_EQ(r.responses[0].reason, RevocationReason::superseded);

  // Flagged by the RA while no service ran: recorded by the reconciliation, once.
  testpki::Device flagged;
  issue_idc(&flagged);
  const auto flagged_row = *w_.store().find_device_by_unique_id(flagged.unique_id);
  ASSERT_TRUE(w_.store().mark_bc_revoked(
      flagged_row.id, store::AuditEvent{w_.clock().now(), "ra", "bc-revoke", flagged.unique_id, {}, "", ""}));
  EXPECT_EQ(w_.store().find_certificate_by_serial(flagged.bc.serial_hex()).error().code, Errc::not_found);
  EXPECT_EQ(*record_flagged_bcs(w_.store(), cas_, o), 1u);
  EXPECT_EQ(*record_flagged_bcs(w_.store(), cas_, o), 0u);
  EXPECT_EQ(w_.store().find_certificate_by_serial(flagged.bc.serial_hex())->status,
            store::CertificateStatus::revoked);

  // A BC of a CA we do not answer for is not ours to revoke.
  auto foreign = w_.make_device(w_.vendor_bc_ca);
  w_.import(foreign);
  const auto foreign_row = *w_.store().find_device_by_unique_id(foreign.unique_id);
  EXPECT_EQ(
      revoke_device_certificate(w_.store(), foreign_row, cas_, RevocationReason::superseded, o).error().code,
      Errc::not_found);
  auto found = find_device_by_certificate_serial(w_.store(), device.bc.serial_hex(), cas_);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->vendor_unique_id, device.unique_id);
  EXPECT_EQ(find_device_by_certificate_serial(w_.store(), foreign.bc.serial_hex(), cas_).error().code,
            Errc::not_found);
}

TEST_F(Revocation, CrlListsRevokedEntriesWithReasons) {
  const auto a = issue_idc();
  const auto b = issue_idc();
  const auto c = issue_idc();
  RevokeOptions o;
  o.clock = &w_.clock();
  ASSERT_TRUE(revoke_certificate(w_.store(), a.serial_hex(), RevocationReason::key_compromise, o));
  ASSERT_TRUE(revoke_certificate(w_.store(), "0x" + c.serial_hex(), RevocationReason::unspecified, o));
  auto crl = generate_crl(w_.store(), cas_[0], w_.clock().now(), std::chrono::hours(24));
  ASSERT_TRUE(crl) << crl.error().detail;
  EXPECT_TRUE(crl->verify_signature(w_.idc_ca.certificate.public_key()));
  EXPECT_EQ(crl->crl_number(), 1u);
  EXPECT_EQ(crl->authority_key_id(), w_.idc_ca.certificate.subject_key_id());
  EXPECT_EQ(crl->this_update(), w_.clock().now());
  EXPECT_EQ(crl->next_update(), w_.clock().now() + std::chrono::hours(24));
  auto entries = crl->entries();
  ASSERT_EQ(entries.size(), 2u);
  std::map<std::string, std::optional<RevocationReason>> by_serial;
  for (const auto& e : entries) by_serial[to_hex(e.serial)] = e.reason;
  EXPECT_EQ(by_serial.at(a.serial_hex()), RevocationReason::key_compromise);
  EXPECT_FALSE(by_serial.at(c.serial_hex()).has_value());  // unspecified: no reasonCode
  EXPECT_FALSE(by_serial.contains(b.serial_hex()));
  auto stored = w_.store().find_crl("idc");
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->der, crl->to_der());
  // Numbers grow; a CA without its key here has no CRL.
  EXPECT_EQ(generate_crl(w_.store(), cas_[0], w_.clock().now(), std::chrono::hours(24))->crl_number(), 2u);
  auto keyless = cas_[0];
  keyless.crl_signer.reset();
  EXPECT_EQ(generate_crl(w_.store(), keyless, w_.clock().now(), std::chrono::hours(24)).error().code,
            Errc::invalid_input);
}

// generate_crl puts entries in CRL order itself (make_crl then has nothing to sort): shorter
// serials first, then bytewise, including serials longer than the 16 bytes its sort keys hold that
// share those 16 bytes, as OpenSSL orders a CRL's entries.
TEST_F(Revocation, CrlEntriesAreInSerialOrder) {
  std::vector<Bytes> serials;
  for (std::size_t len : {1, 2, 8, 9, 15, 16, 17, 20}) {
    for (int i = 0; i < 6;) {
      auto s = crypto::random_bytes(len);
      s[0] = static_cast<std::byte>((std::to_integer<unsigned>(s[0]) & 0x7f) | 0x01);
      if (std::find(serials.begin(), serials.end(), s) != serials.end()) continue;  // serials are unique
      serials.push_back(s);
      ++i;
    }
  }
  const auto prefix = crypto::random_bytes(16);
  for (int i = 0; i < 6; ++i) {
    Bytes s = prefix;
    s[0] = std::byte{0x42};
    const auto tail = crypto::random_bytes(3);
    s.insert(s.end(), tail.begin(), tail.end());
    serials.push_back(s);
  }
  for (std::size_t i = 0; i < serials.size(); ++i) {
    store::CertificateRecord r;
    r.serial_hex = to_hex(serials[i]);
    r.issuer_ca = "idc";
    r.subject = "CN=x";
    r.not_before = w_.clock().now();
    r.not_after = w_.clock().now() + std::chrono::hours(1);
    r.der = Bytes{std::byte{0}};
    r.status = store::CertificateStatus::revoked;
    r.revoked_at = w_.clock().now() - std::chrono::seconds(i);
    r.reason = static_cast<int>(i % 3 == 0 ? RevocationReason::superseded : RevocationReason::key_compromise);
    ASSERT_TRUE(w_.store().record_revoked_certificate(
        r, store::AuditEvent{w_.clock().now(), "test", "revoke", r.serial_hex, store::Outcome::accepted, "",
                             ""}));
  }
  auto crl = generate_crl(w_.store(), cas_[0], w_.clock().now(), std::chrono::hours(24));
  ASSERT_TRUE(crl) << crl.error().detail;
  const auto entries = crl->entries();
  ASSERT_EQ(entries.size(), serials.size());
  auto expected = serials;
  std::sort(expected.begin(), expected.end(), [](const Bytes& a, const Bytes& b) {
    return a.size() != b.size() ? a.size() < b.size() : a < b;
  });
  for (std::size_t i = 0; i < entries.size(); ++i) EXPECT_EQ(entries[i].serial, expected[i]) << i;
  // Each entry keeps its own time and reason through the reordering.
  for (const auto& e : entries) {
    const auto at = std::find(serials.begin(), serials.end(), e.serial) - serials.begin();
    EXPECT_EQ(e.revocation_time, w_.clock().now() - std::chrono::seconds(at));
    EXPECT_EQ(e.reason, at % 3 == 0 ? RevocationReason::superseded : RevocationReason::key_compromise);
  }
}

TEST_F(Revocation, ServiceServesCrlsAndWritesFilesForNginx) {
  const auto a = issue_idc();
  const auto dir = w_.dir() / "crl";
  ServiceOptions options;
  options.crl_dir = dir;
  options.node_id = "node-1";
  options.reload_command = "touch " + (w_.dir() / "reloaded").string();
  Service service(w_.store(), cas_, w_.clock(), options);
  ASSERT_TRUE(service.start());
  http::Router router;
  service.install(router);

  http::Request get;
  get.method = "GET";
  get.target = "/crl/idc.crl";
  auto r = router(get);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers.get("Content-Type"), "application/pkix-crl");
  EXPECT_EQ(r.headers.get("ETag"), "\"idc-1\"");
  ASSERT_TRUE(r.headers.get("Last-Modified"));
  EXPECT_TRUE(r.headers.get("Last-Modified")->ends_with(" GMT"));
  EXPECT_EQ(r.headers.get("Cache-Control"), "public, max-age=3600, no-transform");
  auto crl = x509::Crl::parse_der(as_bytes(r.body));
  ASSERT_TRUE(crl);
  EXPECT_TRUE(crl->entries().empty());
  get.headers.set("If-None-Match", "\"idc-1\"");
  EXPECT_EQ(router(get).status, 304);
  get.target = "/crl/nope.crl";
  EXPECT_EQ(router(get).status, 404);

  // Files: one DER per CA and the PEM bundle with every CA's CRL; the reload command ran.
  EXPECT_TRUE(std::filesystem::exists(dir / "idc.crl"));
  EXPECT_TRUE(std::filesystem::exists(dir / "bc.crl"));
  EXPECT_TRUE(std::filesystem::exists(w_.dir() / "reloaded"));
  auto bundle = read_text_file((dir / "nginx.pem").string());
  ASSERT_TRUE(bundle);
  std::size_t blocks = 0;
  for (auto at = bundle->find("BEGIN X509 CRL"); at != std::string::npos;
       at = bundle->find("BEGIN X509 CRL", at + 1))
    ++blocks;
  EXPECT_EQ(blocks, 2u);

  // A revocation from elsewhere (another process, another node) is picked up by the job.
  RevokeOptions o;
  o.clock = &w_.clock();
  ASSERT_TRUE(revoke_certificate(w_.store(), a.serial_hex(), RevocationReason::superseded, o));
  std::optional<x509::Crl> served;
  for (int i = 0; i < 200; ++i) {
    served = service.served_crl("idc");
    if (served && served->crl_number() == 2u) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(served);
  ASSERT_EQ(served->crl_number(), 2u);
  ASSERT_EQ(served->entries().size(), 1u);
  EXPECT_EQ(to_hex(served->entries()[0].serial), a.serial_hex());
  service.stop();
  auto file = read_file((dir / "idc.crl").string());
  ASSERT_TRUE(file);
  EXPECT_EQ(*file, served->to_der());

  // OCSP over the routes: POST and GET (base64 in the path).
  auto id = *x509::make_ocsp_cert_id(w_.idc_ca.certificate, a.serial());
  auto req = *x509::make_ocsp_request({id});
  http::Request post;
  post.method = "POST";
  post.target = "/ocsp";
  post.headers.set("Content-Type", "application/ocsp-request");
  post.body = std::string(as_chars(req));
  r = router(post);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.headers.get("Content-Type"), "application/ocsp-response");
  EXPECT_EQ(x509::parse_ocsp_response(as_bytes(r.body))->responses.at(0).status, OcspCertStatus::revoked);
  http::Request g;
  g.method = "GET";
  std::string b64 = crypto::base64_encode(req);
  std::string escaped;
  for (char ch : b64)
    escaped += ch == '+' ? "%2B" : ch == '/' ? "%2F" : ch == '=' ? "%3D" : std::string(1, ch);
  g.target = "/ocsp/" + escaped;
  r = router(g);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(x509::parse_ocsp_response(as_bytes(r.body))->responses.at(0).status, OcspCertStatus::revoked);
  g.target = "/ocsp/%zz";
  EXPECT_EQ(x509::parse_ocsp_response(as_bytes(router(g).body))->status,
            OcspResponseStatus::malformed_request);
}

// Two nodes on one database (as two `hallmark serve` on one PostgreSQL): only the holder of the
// "crl" lease makes CRLs, the other serves what it made, and after a revocation both serve the new
// CRL, made once (CRL numbers only grow: a second maker would have reached 3).
TEST_F(Revocation, OnlyTheLeaseHolderMakesCrlsAndEveryNodeServesThem) {
  const auto idc = issue_idc();
  ServiceOptions options;
  options.poll_interval = std::chrono::milliseconds(50);
  options.node_id = "node-a";
  Service first(w_.store(), cas_, w_.clock(), options);
  ASSERT_TRUE(first.start());
  options.node_id = "node-b";
  Service second(w_.store(), cas_, w_.clock(), options);
  ASSERT_TRUE(second.start());
  ASSERT_TRUE(first.served_crl("idc") && second.served_crl("idc"));
  EXPECT_EQ(second.served_crl("idc")->crl_number(), 1u);
  EXPECT_EQ(second.served_crl("idc")->to_der(), first.served_crl("idc")->to_der());

  RevokeOptions o;
  o.clock = &w_.clock();
  ASSERT_TRUE(revoke_certificate(w_.store(), idc.serial_hex(), RevocationReason::superseded, o));
  const auto serves_two = [](const Service& s) {
    const auto crl = s.served_crl("idc");
    return crl && crl->crl_number() == 2u;
  };
  for (int i = 0; i < 400 && !(serves_two(first) && serves_two(second)); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  ASSERT_TRUE(serves_two(first) && serves_two(second));
  EXPECT_EQ(second.served_crl("idc")->to_der(), first.served_crl("idc")->to_der());
  EXPECT_EQ(second.served_crl("idc")->entries().size(), 1u);
  // A few more passes of both jobs: nobody makes another one.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  first.stop();
  second.stop();
  const auto latest = w_.store().find_crl("idc");
  ASSERT_TRUE(latest) << latest.error().detail;
  EXPECT_EQ(latest->crl_number, 2);
}

TEST(RevocationConfig, DefaultsAndExactMessages) {
  auto c = parse_revocation_config("[pki]\norganization = \"x\"\n", "hallmark.toml");
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->enabled);
  c = parse_revocation_config(
      "[revocation]\nport = 0\ncrl_interval = \"10m\"\nnext_update = \"2h\"\ncrl_reload_command = \"nginx -s "
      "reload\"\n",
      "hallmark.toml");
  ASSERT_TRUE(c) << c.error().detail;
  EXPECT_TRUE(c->enabled);
  EXPECT_FALSE(c->server.tls);
  EXPECT_EQ(c->server.port, 0);
  EXPECT_EQ(c->crl_interval, std::chrono::minutes(10));
  EXPECT_EQ(c->next_update, std::chrono::hours(2));
  EXPECT_EQ(c->crl_reload_command, "nginx -s reload");
  auto err = [](std::string_view text) {
    auto r = parse_revocation_config(text, "hallmark.toml");
    return r ? std::string("ok") : r.error().detail;
  };
  EXPECT_EQ(err("[revocation]\nport = 70000\n"),
            "hallmark.toml: [revocation] port must be between 0 and 65535");
  EXPECT_EQ(err("[revocation]\nprot = 1\n"), "hallmark.toml: [revocation] unknown key 'prot'");
  EXPECT_EQ(err("[revocation]\ncrl_interval = 5\n"),
            "hallmark.toml: [revocation] crl_interval must be a duration such as \"30s\", \"15m\", \"1h\" or "
            "\"7d\"");
  EXPECT_EQ(
      err("[revocation]\ncrl_interval = \"2d\"\n"),
      "hallmark.toml: [revocation] next_update must be longer than crl_interval (relying parties would hold "
      "an expired CRL)");
  EXPECT_EQ(err("[revocation]\ncrl_cas = \"idc\"\n"),
            "hallmark.toml: [revocation] crl_cas must be an array of strings");
  EXPECT_EQ(err("[revocation]\nenabled = 1\n"), "hallmark.toml: [revocation] enabled must be true or false");
}

TEST(RevocationReasons, NamesAndSerials) {
  EXPECT_EQ(*x509::parse_revocation_reason("keyCompromise"), RevocationReason::key_compromise);
  EXPECT_EQ(*x509::parse_revocation_reason("cessationOfOperation"), RevocationReason::cessation_of_operation);
  EXPECT_EQ(x509::parse_revocation_reason("stolen").error().detail, "unknown revocation reason: stolen");
  EXPECT_EQ(*normalize_serial("00:0A:ff"), "0aff");
  EXPECT_EQ(*normalize_serial("0xABC"), "0abc");
  EXPECT_EQ(normalize_serial("xyz").error().detail, "serial 'xyz' is not hexadecimal");
}

}  // namespace
}  // namespace hallmark::revocation
