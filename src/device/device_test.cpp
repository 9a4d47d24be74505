// Unit tests of the device component that need no server: URLs, CsrAttrs (DER made by the openssl
// CLI), chip images, CSRs, the checks on cacerts and issued certificates, renewal times.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "flow.hpp"
#include "hallmark/crypto/digest.hpp"
#include "hallmark/device/agent.hpp"
#include "hallmark/device/est_client.hpp"
#include "hallmark/x509/builder.hpp"
#include "process.hpp"

namespace hallmark::device {
namespace {

using testing::run;
using testing::shell_quote;

TEST(DeviceServerUrl, ParsesHostPortAndAlias) {
  auto u = ServerUrl::parse("https://127.0.0.1:8443/.well-known/est/widget");
  ASSERT_TRUE(u) << u.error().detail;
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, "8443");
  EXPECT_EQ(u->alias, "widget");
  EXPECT_EQ(u->path("simpleenroll"), "/.well-known/est/widget/simpleenroll");
  EXPECT_EQ(u->to_string(), "https://127.0.0.1:8443/.well-known/est/widget");
  auto bare = ServerUrl::parse("est.example:443");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->path("cacerts"), "/.well-known/est/cacerts");
  auto v6 = ServerUrl::parse("https://[::1]:9/");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, "9");
}

TEST(DeviceServerUrl, RefusesWhatIsNotAnEstUrl) {
  for (const char* bad : {"http://h:1/", "https://:1/", "https://h:0/", "https://h:99999/",
                          "https://h:1/other", "https://h:1/.well-known/est/Bad_Alias", "https://h:x/"}) {
    auto u = ServerUrl::parse(bad);
    ASSERT_FALSE(u) << bad;
    EXPECT_EQ(u.error().code, Errc::invalid_input) << bad;
  }
}

TEST(DeviceCsrAttrs, ParsesOidsAndAttributesMadeByOpenssl) {
  testing::TempDir dir;
  // SEQUENCE { serialNumber OID, challengePassword OID, Attribute { extensionRequest, SET { ... } } }
  const std::string conf = dir / "attrs.cnf";
  ASSERT_TRUE(write_file_atomic(conf, as_bytes("asn1 = SEQUENCE:attrs\n[attrs]\na = OID:2.5.4.5\n"
                                               "b = OID:1.2.840.113549.1.9.7\nc = SEQUENCE:attr\n"
                                               "[attr]\ntype = OID:1.2.840.113549.1.9.14\nvalues = SET:vals\n"
                                               "[vals]\nv = OID:1.3.6.1.1.1.1.22\n")));
  const auto r = run("openssl asn1parse -genconf " + shell_quote(conf) + " -out " +
                     shell_quote(dir / "a.der") + " -noout");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto der = read_file(dir / "a.der");
  ASSERT_TRUE(der);
  auto attrs = parse_csr_attrs(*der);
  ASSERT_TRUE(attrs) << attrs.error().detail;
  EXPECT_EQ(attrs->oids,
            (std::vector<std::string>{"2.5.4.5", "1.2.840.113549.1.9.7", "1.2.840.113549.1.9.14"}));
  EXPECT_TRUE(attrs->has(kOidChallengePassword));
  EXPECT_EQ(attribute_name("2.5.4.5"), "serialNumber");
  EXPECT_EQ(attribute_name("1.2.3.4"), "1.2.3.4");

  Bytes truncated(der->begin(), der->end() - 1);
  EXPECT_FALSE(parse_csr_attrs(truncated));
  Bytes trailing = *der;
  trailing.push_back(std::byte{0});
  EXPECT_FALSE(parse_csr_attrs(trailing));
  const Bytes integer{std::byte{0x30}, std::byte{0x03}, std::byte{0x02}, std::byte{0x01}, std::byte{0x05}};
  auto bad = parse_csr_attrs(integer);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().detail.find("neither an OID nor an Attribute"), std::string::npos);
}

struct MiniPki {
  crypto::PrivateKey root_key = *crypto::PrivateKey::generate(crypto::KeyType::ec_p256);
  x509::Certificate root;
  crypto::PrivateKey ca_key = *crypto::PrivateKey::generate(crypto::KeyType::ec_p256);
  x509::Certificate ca;

  explicit MiniPki(const std::string& name) {
    const crypto::FileSigner root_signer(root_key, "root");
    root = make(name + " Root", root_key.public_key(), root_signer, nullptr, true);
    const crypto::FileSigner ca_signer(ca_key, "ca");
    ca = make(name + " CA", ca_key.public_key(), root_signer, &root, true);
  }
  x509::Certificate make(const std::string& cn, const crypto::PublicKey& key, const crypto::Signer& signer,
                         const x509::Certificate* issuer, bool is_ca, Seconds not_after = kNoExpiry) const {
    x509::CertificateTemplate t;
    t.subject = *x509::Name::make({{"CN", cn}});
    t.public_key = key;
    t.serial = x509::make_serial();
    t.not_before = SystemClock().now() - std::chrono::hours{1};
    t.not_after = not_after;
    if (is_ca) {
      t.basic_constraints = x509::BasicConstraints{true, std::nullopt, true};
      t.key_usage = x509::KeyUsage{static_cast<std::uint16_t>(x509::kKeyCertSign | x509::kCrlSign)};
    }
    auto c = x509::make_certificate(t, issuer != nullptr ? std::optional(*issuer) : std::nullopt, signer);
    EXPECT_TRUE(c) << c.error().detail;
    return *c;
  }
  x509::Certificate leaf(const crypto::PublicKey& key) const {
    const crypto::FileSigner ca_signer(ca_key, "ca");
    return make("device", key, ca_signer, &ca, false);
  }
};

TEST(DeviceChecks, CacertsMustChainToTheAnchor) {
  MiniPki ours("Ours");
  MiniPki other("Other");
  const auto trust = detail::make_trust_store({ours.root});
  const auto now = SystemClock().now();
  EXPECT_TRUE(detail::check_cacerts({ours.ca, ours.root}, trust, now));
  auto refused = detail::check_cacerts({other.ca, other.root}, trust, now);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::forbidden);
  EXPECT_NE(refused.error().detail.find("does not chain to the trust anchor"), std::string::npos);
  // Another root slipped in beside ours is refused too.
  EXPECT_FALSE(detail::check_cacerts({ours.ca, ours.root, other.root}, trust, now));
}

TEST(DeviceChecks, IssuedCertificateMustCarryTheRequestedKeyAndChain) {
  MiniPki ours("Ours");
  MiniPki other("Other");
  const auto trust = detail::make_trust_store({ours.root});
  const auto now = SystemClock().now();
  const auto key = *crypto::PrivateKey::generate(crypto::KeyType::ec_p256);
  const auto idc = ours.leaf(key.public_key());
  EXPECT_TRUE(detail::check_issued({idc}, key.public_key(), {ours.ca, ours.root}, trust, now));
  const auto another = *crypto::PrivateKey::generate(crypto::KeyType::ec_p256);
  auto wrong_key = detail::check_issued({idc}, another.public_key(), {ours.ca, ours.root}, trust, now);
  ASSERT_FALSE(wrong_key);
  EXPECT_NE(wrong_key.error().detail.find("different key"), std::string::npos);
  auto foreign = detail::check_issued({other.leaf(key.public_key())}, key.public_key(), {ours.ca, ours.root},
                                      trust, now);
  ASSERT_FALSE(foreign);
  EXPECT_EQ(foreign.error().code, Errc::forbidden);
}

TEST(DeviceAnswer, ATruncatedCertsOnlyAnswerIsRefusedAsTruncated) {
  MiniPki ours("Ours");
  const auto key = *crypto::PrivateKey::generate(crypto::KeyType::ec_p256);
  EstReply reply;
  reply.status = 200;
  reply.content_type = "application/pkcs7-mime; smime-type=certs-only";
  const auto whole =
      crypto::base64_encode(x509::make_pkcs7_certs_only({ours.leaf(key.public_key()), ours.ca}));
  reply.body = whole;
  auto certs = decode_certs_only(reply, "simpleenroll");
  ASSERT_TRUE(certs) << certs.error().detail;
  EXPECT_EQ(certs->size(), 2u);
  // Cut at every 4-character quantum: the base64 decodes, to less DER than its header declares.
  for (std::size_t n = 4; n < whole.size(); n += 4) {
    reply.body = whole.substr(0, n);
    auto cut = decode_certs_only(reply, "simpleenroll");
    ASSERT_FALSE(cut) << n;
    EXPECT_EQ(cut.error().code, Errc::invalid_input);
    EXPECT_NE(cut.error().detail.find("simpleenroll: the answer is truncated: its PKCS#7 "),
              std::string::npos)
        << n << ": " << cut.error().detail;
  }
  // Cut inside a quantum: not even base64.
  reply.body = whole.substr(0, whole.size() / 2 / 4 * 4 + 1);
  auto odd = decode_certs_only(reply, "simplereenroll");
  ASSERT_FALSE(odd);
  EXPECT_NE(odd.error().detail.find("simplereenroll: the answer is not base64, truncated or corrupt"),
            std::string::npos)
      << odd.error().detail;
}

TEST(DeviceCsr, EnrollmentCsrCarriesTheUkidWhereAskedAndTheSecret) {
  const auto key = *crypto::PrivateKey::generate(crypto::KeyType::ec_p256);
  const crypto::FileSigner signer(key, "k");
  const std::string ukid = std::string(64, 'a');
  CsrAttrs attrs{{"0.9.2342.19200300.100.1.1", std::string(kOidChallengePassword)}};
  const Secret secret("00112233445566778899aabbccddeeff");
  auto csr = detail::make_enroll_csr(attrs, detail::CsrPlan{ukid, &secret, std::nullopt}, signer);
  ASSERT_TRUE(csr) << csr.error().detail;
  EXPECT_EQ(csr->subject().get("UID"), ukid);
  EXPECT_FALSE(csr->subject().get("serialNumber"));
  ASSERT_TRUE(csr->challenge_password());
  EXPECT_EQ(csr->challenge_password()->reveal(), secret.reveal());
  EXPECT_TRUE(csr->verify_self_signature());
  // No csrattrs: serialNumber; POP linking takes challengePassword.
  auto plain =
      detail::make_enroll_csr({}, detail::CsrPlan{ukid, &secret, std::string("YmluZGluZw==")}, signer);
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->subject().get("serialNumber"), ukid);
  EXPECT_EQ(plain->challenge_password()->reveal(), "YmluZGluZw==");
}

TEST(DeviceRenewal, LastThirdByDefaultNeverForNoExpiryUnlessForced) {
  MiniPki pki("Ours");
  const auto key = *crypto::PrivateKey::generate(crypto::KeyType::ec_p256);
  const auto forever = pki.leaf(key.public_key());
  const auto now = SystemClock().now();
  EXPECT_FALSE(renewal_time(forever, {}, now));
  EXPECT_EQ(renewal_time(forever, RenewalPolicy{std::nullopt, true}, now), now);
  const crypto::FileSigner ca_signer(pki.ca_key, "ca");
  const auto short_lived =
      pki.make("d", key.public_key(), ca_signer, &pki.ca, false, now + std::chrono::hours{2});
  // notBefore = now - 1h, notAfter = now + 2h: lifetime 3h, the window opens 1h before notAfter.
  EXPECT_EQ(renewal_time(short_lived, {}, now), now + std::chrono::hours{1});
  EXPECT_EQ(renewal_time(short_lived, RenewalPolicy{std::chrono::hours{2}, false}, now), now);
}

TEST(DeviceChipImage, RefusesBrokenImages) {
  EXPECT_FALSE(ChipImage::parse("{}", "x"));
  EXPECT_FALSE(ChipImage::parse("not json", "x"));
  const auto key = *crypto::PrivateKey::generate(crypto::KeyType::ec_p256);
  MiniPki pki("Ours");
  const auto other = *crypto::PrivateKey::generate(crypto::KeyType::ec_p256);
  const auto bc = pki.leaf(other.public_key());
  nlohmann::json j = {{"format", "hallmark-chip-image"},
                      {"version", 1},
                      {"uniqueId", "01aa"},
                      {"mode", "bc"},
                      {"privateKey", std::string(key.to_pem()->reveal())},
                      {"certificateChain", {bc.to_pem()}}};
  auto mismatch = ChipImage::parse(j.dump(), "chip.json");
  ASSERT_FALSE(mismatch);
  EXPECT_NE(mismatch.error().detail.find("does not match"), std::string::npos);
  j["certificateChain"] = {pki.leaf(key.public_key()).to_pem()};
  auto ok = ChipImage::parse(j.dump(), "chip.json");
  ASSERT_TRUE(ok) << ok.error().detail;
  j["mode"] = "bc-secret";
  EXPECT_FALSE(ChipImage::parse(j.dump(), "chip.json"));  // no ukidSecret
}

}  // namespace
}  // namespace hallmark::device
