// Inventory: the real Microchip and Infineon samples (../shared/samples, see its ORIGIN.md),
// adversarial manifests derived from them, hallmark reels, the factory line, and streaming memory.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <thread>

#include "hallmark/crypto/digest.hpp"
#include "hallmark/crypto/jws.hpp"
#include "hallmark/inventory/devices.hpp"
#include "hallmark/inventory/import.hpp"
#include "hallmark/inventory/manifest.hpp"
#include "hallmark/x509/builder.hpp"
#include "process.hpp"

namespace hallmark::inventory {
namespace {

using nlohmann::json;
using testing::TempDir;

const std::string kSamples = std::string(HALLMARK_SHARED_DIR) + "/samples";
const std::string kMicrochip = kSamples + "/microchip/pytrustplatform_ATECC608A-MAH4I_manifest.json";
const std::string kSigners = kSamples + "/microchip/signers";
const std::string kRoot = kSamples + "/microchip/Crypto_Authentication_Root_CA_002.crt";
const std::string kInfineon = kSamples + "/infineon/optiga-trust-m-express-reel-78211223032C7EFA";
const std::string kId0 = "01230390b3d1450c01";
const std::string kId1 = "0123d26e26e688c901";
const std::string kLogSigner2Kid = "8VeKGdyU2d8wev6_VzNJOBOv-cA";
const std::string kLogSigner2X5t = "U9TKmw4f3iG56OGR8YV_Ncxlk0DlG0FyL9aDlwfbv1A";

Seconds at(std::string_view iso) {
  return *parse_iso8601(iso);
}

std::unique_ptr<store::Store> memory_store() {
  auto s = store::open_store("sqlite::memory:");
  EXPECT_TRUE(s) << s.error().detail;
  auto m = (*s)->migrate();
  EXPECT_TRUE(m) << m.error().detail;
  return std::move(*s);
}

ManifestTrust microchip_trust() {
  auto t = load_manifest_trust(kSigners, kRoot);
  EXPECT_TRUE(t) << t.error().detail;
  return std::move(*t);
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string b64url_json(const json& j) {
  return crypto::base64url_encode(as_bytes(j.dump()));
}
json decode_b64url_json(const std::string& s) {
  return json::parse(as_chars(*crypto::base64url_decode(s)));
}

// A test CA or signer: key, certificate, Signer.
struct Party {
  crypto::PrivateKey key;
  std::unique_ptr<crypto::FileSigner> signer;
  x509::Certificate cert;
};

Party make_party(const std::string& cn, bool ca, Seconds not_before, Seconds not_after,
                 const Party* issuer = nullptr, std::optional<crypto::PrivateKey> key = std::nullopt) {
  Party p;
  p.key = key ? *key : *crypto::PrivateKey::generate(crypto::KeyType::ec_p256);
  p.signer = std::make_unique<crypto::FileSigner>(p.key, "test:" + cn);
  x509::CertificateTemplate t;
  t.subject = *x509::Name::make({{"O", "Test Vendor"}, {"CN", cn}});
  t.public_key = p.key.public_key();
  t.serial = x509::make_serial();
  t.not_before = not_before;
  t.not_after = not_after;
  x509::BasicConstraints bc;
  bc.ca = ca;
  t.basic_constraints = bc;
  x509::KeyUsage ku;
  ku.bits = static_cast<std::uint16_t>(ca ? (x509::kKeyCertSign | x509::kCrlSign) : x509::kDigitalSignature);
  t.key_usage = ku;
  auto cert = issuer ? x509::make_certificate(t, issuer->cert, *issuer->signer)
                     : x509::make_certificate(t, std::nullopt, *p.signer);
  EXPECT_TRUE(cert) << cert.error().detail;
  p.cert = *cert;
  return p;
}

// Signs `payload` as a manifest entry with `signer` (kid = base64url SKI, x5t#S256 of the DER).
json sign_entry(const json& payload, const Party& signer, std::string header_unique_id = {}) {
  json prot = {{"typ", "JWT"},
               {"kid", crypto::base64url_encode(*signer.cert.subject_key_id())},
               {"x5t#S256", crypto::base64url_encode(crypto::sha256(signer.cert.to_der()))}};
  if (header_unique_id.empty()) header_unique_id = payload["uniqueId"];
  auto jws =
      crypto::sign_es256(as_bytes(payload.dump()), prot, {{"uniqueId", header_unique_id}}, *signer.signer);
  EXPECT_TRUE(jws) << jws.error().detail;
  return jws->to_json();
}

// A JWK for a P-256 key from its SPKI DER (uncompressed point at the end).
json jwk_of(const crypto::PublicKey& key, const std::string& kid) {
  const Bytes spki = key.to_der();
  const ByteView point = ByteView(spki).last(64);
  return {{"kid", kid},
          {"kty", "EC"},
          {"crv", "P-256"},
          {"x", crypto::base64url_encode(point.first(32))},
          {"y", crypto::base64url_encode(point.last(32))}};
}

std::string b64(const x509::Certificate& c) {
  return crypto::base64_encode(c.to_der());
}

// The test's own manifest signer, pinned alongside Microchip's, valid around the samples' dates.
struct Fixture : ::testing::Test {
  TempDir dir{"hallmark-inventory"};
  std::unique_ptr<store::Store> db = memory_store();
  ManifestTrust trust = microchip_trust();
  Party signer =
      make_party("Test Manifest Signer", false, at("2019-01-01T00:00:00Z"), at("2031-01-01T00:00:00Z"));
  json sample = read_json(kMicrochip);
  ImportOptions options;

  Fixture() { EXPECT_TRUE(trust.add_signer(signer.cert)); }

  std::string write_manifest(const std::string& name, const json& array) {
    const std::string path = dir / name;
    write_text(path, array.dump(2));
    return path;
  }
  FileReport import(const std::string& path) { return import_manifest_file(*db, path, trust, options); }
  json payload(int i) const { return decode_b64url_json(sample[i]["payload"]); }
};

std::vector<std::string> reasons(const FileReport& r) {
  std::vector<std::string> out;
  for (const auto& x : r.rejections) out.push_back(x.message());
  return out;
}

// ---- the real samples ----

TEST(Samples, MicrochipKidIsBase64urlOfTheSignerSki) {
  auto signers = load_certificates(kSigners);
  ASSERT_TRUE(signers) << signers.error().detail;
  ManifestTrust t;
  for (const auto& s : *signers) ASSERT_TRUE(t.add_signer(s));
  const PinnedSigner* s2 = t.find_signer(kLogSigner2X5t);
  ASSERT_NE(s2, nullptr);
  EXPECT_EQ(s2->kid, kLogSigner2Kid);
  EXPECT_EQ(s2->certificate.subject().get("CN"), "Log Signer 002");
  // Manifest Signer 005's kid as ORIGIN.md gives it.
  const auto it = std::ranges::find_if(
      *signers, [](const x509::Certificate& c) { return c.subject().get("CN") == "Manifest Signer 005"; });
  ASSERT_NE(it, signers->end());
  EXPECT_EQ(crypto::base64url_encode(*it->subject_key_id()), "TCnpnzYB8M3CO776ByPJ2yX3KYo");
}

TEST_F(Fixture, MicrochipSampleImportsBothEntries) {
  const FileReport r = import(kMicrochip);
  ASSERT_TRUE(r.ok()) << *r.error;
  EXPECT_EQ(r.format, "microchip-jws");
  EXPECT_EQ(r.entries, 2);
  EXPECT_EQ(r.imported, 2);
  EXPECT_EQ(r.rejected, 0) << ::testing::PrintToString(reasons(r));
  EXPECT_EQ(r.signer, "O=Microchip Technology Inc,CN=Log Signer 002");
  EXPECT_EQ(r.sha256, "a714ff019a4f25fc6fb9ea27ba648c298316f716eeb3c2befcc56c1041bd0508");
  for (const std::string& id : {kId0, kId1}) {
    auto d = db->find_device_by_unique_id(id);
    ASSERT_TRUE(d) << id << ": " << d.error().detail;
    EXPECT_EQ(d->state, store::DeviceState::received);
    EXPECT_EQ(d->part_number, "ATECC608A-MAH4I");
    EXPECT_EQ(d->manifest_id, r.manifest_id);
    auto bc = x509::Certificate::parse_der(d->bc_der);
    ASSERT_TRUE(bc);
    std::string upper = id;
    std::ranges::transform(upper, upper.begin(), [](unsigned char c) { return std::toupper(c); });
    EXPECT_EQ(bc->subject().get("CN"), "sn" + upper);
    EXPECT_EQ(d->bc_sha256, bc->fingerprint_sha256_hex());
    EXPECT_EQ(d->ukid, bc->public_key().sha256_hex());
    EXPECT_FALSE(d->ukid_secret_digest);
  }
  // The JWK of kid 0 is the certificate's key (checked by the importer; pinned here too).
  const json key0 = payload(0)["publicKeySet"]["keys"][0];
  auto bc0 = x509::Certificate::parse_der(*crypto::base64_decode(key0["x5c"][0].get<std::string>()));
  EXPECT_EQ(jwk_of(bc0->public_key(), "0")["x"], key0["x"]);
}

TEST_F(Fixture, ReimportIsANoOp) {
  ASSERT_EQ(import(kMicrochip).imported, 2);
  const FileReport again = import(kMicrochip);
  ASSERT_TRUE(again.ok()) << *again.error;
  EXPECT_EQ(again.imported, 0);
  EXPECT_EQ(again.already_present, 2);
  EXPECT_EQ(again.rejected, 0);
  EXPECT_TRUE(again.manifest_known);
}

TEST_F(Fixture, SignerValidityIsJudgedAtProvisioningTime) {
  // Log Signer 002 expired in 2020; an entry it signs claiming 2021 is refused.
  auto key = x509::Certificate::load(kSigners + "/MCHP_manifest_signer_2_Aug-15-2019_Aug-15-2020.crt");
  ASSERT_TRUE(key);
  // We cannot sign with Microchip's key: use ours with a narrow validity instead.
  Party narrow = make_party("Narrow Signer", false, at("2020-01-01T00:00:00Z"), at("2020-06-01T00:00:00Z"));
  ASSERT_TRUE(trust.add_signer(narrow.cert));
  json p = payload(0);  // provisioned 2020-06-09, after the signer expired
  const auto path = write_manifest("late.json", json::array({sign_entry(p, narrow)}));
  const FileReport r = import(path);
  ASSERT_EQ(r.rejections.size(), 1u);
  EXPECT_EQ(r.rejections[0].message(),
            "entry 0 (uniqueId " + kId0 +
                "): signer O=Test Vendor,CN=Narrow Signer was not valid at provisioningTimestamp "
                "2020-06-09T22:49:52.470Z (valid 2020-01-01T00:00:00Z to 2020-06-01T00:00:00Z)");
  EXPECT_EQ(r.imported, 0);
}

TEST_F(Fixture, InfineonDirectoryImportsCandidates) {
  trust = ManifestTrust();  // no Infineon roots: candidates with unverified chains
  options.read.part_number = "OPTIGA Trust M Express";
  const FileReport r = import(kInfineon);
  ASSERT_TRUE(r.ok()) << *r.error;
  EXPECT_EQ(r.format, "infineon-reel");
  EXPECT_EQ(r.reel, "78211223032C7EFA");
  EXPECT_EQ(r.entries, 2);
  EXPECT_EQ(r.imported, 2);
  EXPECT_EQ(r.rejected, 0);
  EXPECT_TRUE(
      std::ranges::any_of(r.notes, [](const std::string& n) { return n.starts_with("unverified chain"); }));
  ASSERT_EQ(r.candidates.size(), 2u);
  EXPECT_EQ(r.candidates[0].unique_id, "0a091b5c001500070063");
  EXPECT_EQ(r.candidates[1].unique_id, "0a091b5c0015000c0069");
  for (const auto& c : r.candidates) {
    EXPECT_EQ(c.object_ids, (std::vector<std::string>{"E0E0", "E0E1", "E0E2"}));
    EXPECT_FALSE(c.chain_verified);
    auto d = find_device(*db, c.unique_id);
    ASSERT_TRUE(d) << d.error().detail;
    EXPECT_EQ(d->state, store::DeviceState::received);
    EXPECT_EQ(d->part_number, "OPTIGA Trust M Express");
    auto bc = x509::Certificate::parse_der(d->bc_der);
    ASSERT_TRUE(bc);
    auto e0e0 = x509::Certificate::load(kInfineon + "/" + "0A091B5C" + c.unique_id.substr(8) + "_E0E0.pem");
    if (!e0e0) {  // chip ids are upper case in the file names
      std::string upper = c.unique_id;
      std::ranges::transform(upper, upper.begin(), [](unsigned char ch) { return std::toupper(ch); });
      e0e0 = x509::Certificate::load(kInfineon + "/" + upper + "_E0E0.pem");
    }
    ASSERT_TRUE(e0e0);
    EXPECT_EQ(*bc, *e0e0);
    EXPECT_EQ(bc->public_key().info().describe(), "EC P-256");
    EXPECT_EQ(d->ukid, bc->public_key().sha256_hex());
  }
  // The JSON report keeps the object ids.
  ImportReport all{{r}};
  const json j = all.to_json();
  EXPECT_EQ(j["files"][0]["candidates"][0]["object_ids"], json({"E0E0", "E0E1", "E0E2"}));
  // Importing again changes nothing.
  const FileReport again = import(kInfineon);
  EXPECT_EQ(again.imported, 0);
  EXPECT_EQ(again.already_present, 2);
}

TEST_F(Fixture, InfineonSevenZipImportsTheSame) {
  trust = ManifestTrust();
  const std::string archive = dir / "78211223032C7EFA_0000_v1.0.7z";
  const auto r7 = testing::run("cd " + testing::shell_quote(kInfineon) + " && 7z a -bd " +
                               testing::shell_quote(archive) + " *.pem README.txt");
  ASSERT_EQ(r7.exit_code, 0) << r7.output;
  auto fmt = detect_container(archive);
  ASSERT_TRUE(fmt);
  EXPECT_EQ(*fmt, ManifestFormat::infineon);
  const FileReport r = import(archive);
  ASSERT_TRUE(r.ok()) << *r.error;
  EXPECT_EQ(r.reel, "78211223032C7EFA");
  EXPECT_EQ(r.imported, 2);
  ASSERT_EQ(r.candidates.size(), 2u);
  EXPECT_EQ(r.candidates[0].unique_id, "0a091b5c001500070063");
  EXPECT_EQ(r.candidates[1].object_ids, (std::vector<std::string>{"E0E0", "E0E1", "E0E2"}));
  // The directory then holds nothing new: same chips, same BCs.
  const FileReport dir_again = import(kInfineon);
  EXPECT_EQ(dir_again.imported, 0);
  EXPECT_EQ(dir_again.already_present, 2);
}

TEST_F(Fixture, InfineonNestedBundleAndVerifiedChains) {
  // The real bundle is an archive of archives: one inner .7z per object id.
  const TempDir work("hallmark-infineon");
  for (const std::string obj : {"E0E0", "E0E1", "E0E2"}) {
    const auto r =
        testing::run("cd " + testing::shell_quote(kInfineon) + " && 7z a -bd " +
                     testing::shell_quote(work / ("R1_GUID_" + obj + "_Certs.7z")) + " *_" + obj + ".pem");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  const std::string bundle = dir / "R1_GUID_v1.0.7z";
  const auto r = testing::run("cd " + testing::shell_quote(work.path().string()) + " && 7z a -bd " +
                              testing::shell_quote(bundle) + " *.7z");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // With a root configured that is not Infineon's (Microchip's), every chain fails: nothing imported.
  const FileReport rep = import(bundle);
  ASSERT_TRUE(rep.ok()) << *rep.error;
  EXPECT_EQ(rep.entries, 2);
  EXPECT_EQ(rep.imported, 0);
  ASSERT_EQ(rep.rejections.size(), 2u);
  EXPECT_TRUE(rep.rejections[0].reason.starts_with(
      "E0E0 chain does not verify to an Infineon root: unable to get local issuer certificate"))
      << rep.rejections[0].reason;
}

// ---- adversarial manifests ----

TEST_F(Fixture, TamperedPayloadIsRejected) {
  json m = sample;
  json p = payload(0);
  p["partNumber"] = "ATECC608A-TAMPER";
  m[0]["payload"] = b64url_json(p);
  const FileReport r = import(write_manifest("tampered-payload.json", m));
  EXPECT_EQ(reasons(r),
            std::vector<std::string>{"entry 0 (uniqueId " + kId0 + "): ES256 signature does not verify"});
  EXPECT_EQ(r.imported, 1);
  EXPECT_FALSE(db->find_device_by_unique_id(kId0));
  EXPECT_TRUE(db->find_device_by_unique_id(kId1));
}

TEST_F(Fixture, TamperedProtectedHeaderIsRejected) {
  json m = sample;
  json prot = decode_b64url_json(m[1]["protected"]);
  prot["typ"] = "JOSE";
  m[1]["protected"] = b64url_json(prot);
  const FileReport r = import(write_manifest("tampered-protected.json", m));
  EXPECT_EQ(reasons(r),
            std::vector<std::string>{"entry 1 (uniqueId " + kId1 + "): ES256 signature does not verify"});
  EXPECT_FALSE(db->find_device_by_unique_id(kId1));
  EXPECT_EQ(r.imported, 1);
}

TEST_F(Fixture, SwappedUnprotectedUniqueIdIsRejected) {
  json m = sample;
  m[0]["header"]["uniqueId"] = kId1;
  const FileReport r = import(write_manifest("swapped.json", m));
  EXPECT_EQ(reasons(r),
            std::vector<std::string>{"entry 0 (uniqueId " + kId1 + "): unprotected header uniqueId " + kId1 +
                                     " does not match signed uniqueId " + kId0});
  EXPECT_FALSE(db->find_device_by_unique_id(kId0));
  EXPECT_EQ(r.imported, 1);
}

TEST_F(Fixture, UnknownSignerIsRejected) {
  // Only Log Signer 001 pinned.
  ManifestTrust only_one;
  ASSERT_TRUE(only_one.add_signer(
      *x509::Certificate::load(kSigners + "/MCHP_manifest_signer_1_Jan-21-2019_Jul2-21-2019.crt")));
  only_one.add_vendor_root(*x509::Certificate::load(kRoot));
  const FileReport r = import_manifest_file(*db, kMicrochip, only_one, options);
  const std::string why = "unknown signer x5t#S256 " + kLogSigner2X5t + " (kid " + kLogSigner2Kid + ")";
  EXPECT_EQ(reasons(r), (std::vector<std::string>{"entry 0 (uniqueId " + kId0 + "): " + why,
                                                  "entry 1 (uniqueId " + kId1 + "): " + why}));
  EXPECT_EQ(r.imported, 0);
  EXPECT_FALSE(db->find_device_by_unique_id(kId0));
}

TEST_F(Fixture, KidThatDoesNotMatchTheSignerIsRejected) {
  json m = sample;
  json prot = decode_b64url_json(m[0]["protected"]);
  prot["kid"] = "TCnpnzYB8M3CO776ByPJ2yX3KYo";  // Manifest Signer 005's
  m[0]["protected"] = b64url_json(prot);
  const FileReport r = import(write_manifest("kid.json", m));
  EXPECT_EQ(reasons(r), std::vector<std::string>{
                            "entry 0 (uniqueId " + kId0 +
                            "): kid TCnpnzYB8M3CO776ByPJ2yX3KYo does not match signer O=Microchip Technology "
                            "Inc,CN=Log Signer 002 (expected " +
                            kLogSigner2Kid + ")"});
  EXPECT_FALSE(db->find_device_by_unique_id(kId0));
}

TEST_F(Fixture, ChainToAnotherRootIsRejected) {
  const Party fake_root =
      make_party("Fake Root", true, at("2018-01-01T00:00:00Z"), at("2040-01-01T00:00:00Z"));
  const Party fake_ca =
      make_party("Fake Signer CA", true, at("2018-01-01T00:00:00Z"), at("2040-01-01T00:00:00Z"), &fake_root);
  const Party device =
      make_party("sn" + kId0, false, at("2020-01-01T00:00:00Z"), at("2040-01-01T00:00:00Z"), &fake_ca);
  json p = payload(0);
  json key0 = jwk_of(device.cert.public_key(), "0");
  key0["x5c"] = {b64(device.cert), b64(fake_ca.cert)};
  p["publicKeySet"]["keys"][0] = key0;
  const FileReport r = import(write_manifest("other-root.json", json::array({sign_entry(p, signer)})));
  ASSERT_EQ(r.rejections.size(), 1u);
  EXPECT_EQ(
      r.rejections[0].message(),
      "entry 0 (uniqueId " + kId0 +
          "): x5c chain does not verify to a vendor root: unable to get local issuer certificate (subject "
          "O=Test Vendor,CN=Fake Signer CA)");
  EXPECT_EQ(r.imported, 0);
}

TEST_F(Fixture, JwkThatIsNotTheCertificateKeyIsRejected) {
  json p = payload(0);
  const json other = payload(1)["publicKeySet"]["keys"][0];
  p["publicKeySet"]["keys"][0]["x"] = other["x"];
  p["publicKeySet"]["keys"][0]["y"] = other["y"];
  const FileReport r = import(write_manifest("jwk.json", json::array({sign_entry(p, signer)})));
  EXPECT_EQ(reasons(r),
            std::vector<std::string>{"entry 0 (uniqueId " + kId0 + "): JWK does not match certificate key"});
  EXPECT_EQ(r.imported, 0);
  // The same entry re-signed without the change imports: the rejection was about the key alone.
  const FileReport good =
      import(write_manifest("jwk-ok.json", json::array({sign_entry(payload(0), signer)})));
  EXPECT_EQ(good.imported, 1) << ::testing::PrintToString(reasons(good));
}

TEST_F(Fixture, SignatureOfTheWrongLengthIsRejected) {
  json m = sample;
  Bytes sig = *crypto::base64url_decode(m[1]["signature"].get<std::string>());
  sig.pop_back();
  m[1]["signature"] = crypto::base64url_encode(sig);
  const FileReport r = import(write_manifest("short-sig.json", m));
  EXPECT_EQ(reasons(r), std::vector<std::string>{"entry 1 (uniqueId " + kId1 +
                                                 "): ES256 signature must be 64 bytes, got 63"});
  EXPECT_FALSE(db->find_device_by_unique_id(kId1));
}

TEST_F(Fixture, TruncatedJsonImportsNothing) {
  const std::string full = *read_text_file(kMicrochip);
  const std::size_t cut = full.size() - 200;  // inside the second entry
  const std::string path = dir / "truncated.json";
  write_text(path, full.substr(0, cut));
  const FileReport r = import(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(*r.error, "truncated JSON at byte " + std::to_string(cut));
  EXPECT_EQ(reasons(r), std::vector<std::string>{"entry 1: truncated JSON at byte " + std::to_string(cut)});
  EXPECT_EQ(r.imported, 0);
  EXPECT_FALSE(db->find_device_by_unique_id(kId0));
  EXPECT_FALSE(db->find_device_by_unique_id(kId1));
}

TEST_F(Fixture, MalformedFramingIsReportedWithItsByte) {
  const std::string path = dir / "junk.json";
  write_text(path, "[{\"a\":1} x]");
  const FileReport r = import(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(*r.error, "invalid JSON at byte 9: unexpected 'x', expected ',' or ']'");
}

TEST_F(Fixture, DuplicateEntriesInOneFileAreRejected) {
  json m = sample;
  m.push_back(sample[0]);
  const FileReport r = import(write_manifest("dup.json", m));
  EXPECT_EQ(reasons(r),
            std::vector<std::string>{"entry 2 (uniqueId " + kId0 + "): duplicate entry for uniqueId " + kId0 +
                                     " (first at entry 0)"});
  EXPECT_EQ(r.imported, 2);
}

TEST_F(Fixture, ConflictWithTheInventoryIsReportedPerEntry) {
  ASSERT_EQ(import(kMicrochip).imported, 2);
  // A validly signed entry claiming kId0 with entry 1's device certificate: contradicts the inventory.
  json p = payload(1);
  p["uniqueId"] = kId0;
  json other = payload(0);
  other["uniqueId"] = "0123000000000000ee";  // new id, but kId0's BC: conflicts by BC fingerprint
  const FileReport r = import(
      write_manifest("conflict.json", json::array({sign_entry(p, signer), sign_entry(other, signer)})));
  ASSERT_TRUE(r.ok()) << *r.error;
  auto d0 = db->find_device_by_unique_id(kId0);
  ASSERT_TRUE(d0);
  ASSERT_EQ(r.rejections.size(), 2u);
  auto bc1 = x509::Certificate::parse_der(
      *crypto::base64_decode(payload(1)["publicKeySet"]["keys"][0]["x5c"][0].get<std::string>()));
  EXPECT_EQ(r.rejections[0].message(), "entry 0 (uniqueId " + kId0 +
                                           "): conflicts with the inventory: uniqueId " + kId0 +
                                           " is known with BC sha256 " + d0->bc_sha256 + ", this entry has " +
                                           bc1->fingerprint_sha256_hex());
  EXPECT_EQ(r.rejections[1].message(),
            "entry 1 (uniqueId 0123000000000000ee): conflicts with the inventory: BC "
            "sha256 " +
                d0->bc_sha256 + " belongs to uniqueId " + kId0);
  EXPECT_EQ(r.imported, 0);
  EXPECT_FALSE(db->find_device_by_unique_id("0123000000000000ee"));
  EXPECT_EQ(d0->bc_sha256, x509::Certificate::parse_der(d0->bc_der)->fingerprint_sha256_hex());
}

// ---- hallmark reels and the factory line ----

MountRequest by_ukid(const std::string& ukid) {
  MountRequest r;
  r.ukid = ukid;
  return r;
}
MountRequest by_unique_id(const std::string& id) {
  MountRequest r;
  r.unique_id = id;
  return r;
}

struct Reel : Fixture {
  Party bc_root = make_party("OEM BC Root", true, at("2024-01-01T00:00:00Z"), kNoExpiry);
  Party bc_ca = make_party("OEM BC CA for Vendor", true, at("2024-01-01T00:00:00Z"), kNoExpiry, &bc_root);

  Reel() { trust.add_vendor_root(bc_root.cert); }

  // A hallmark reel entry for one chip; `secret_digest` makes it Option 3; `lite` version 2.
  json chip(const std::string& id, const Party& device,
            std::optional<std::string> secret_digest = std::nullopt, bool lite = false) const {
    json p = {{"version", lite ? 2 : 1},
              {"model", "HM-SE1"},
              {"partNumber", "HM-SE1-T"},
              {"manufacturer", {{"organizationName", "Test Vendor"}}},
              {"provisioner", {{"organizationName", "Test Vendor"}}},
              {"provisioningTimestamp", "2025-03-01T10:00:00.000Z"},
              {"uniqueId", id},
              {"hallmark", {{"reel", "R-001"}, {"mode", secret_digest ? "bc-secret" : "bc"}}}};
    if (secret_digest) p["ukidSecretDigest"] = *secret_digest;
    if (!lite) {
      json k = jwk_of(device.cert.public_key(), "0");
      k["x5c"] = {b64(device.cert), b64(bc_ca.cert)};
      p["publicKeySet"] = {{"keys", {k}}};
    }
    return sign_entry(p, signer);
  }
  Party device(const std::string& id) const {
    return make_party("sn" + id, false, at("2025-03-01T00:00:00Z"), kNoExpiry, &bc_ca);
  }
};

TEST_F(Reel, HallmarkReelOptions2And3AndLite) {
  const Party d2 = device("aa0000000000000001");
  const Party d3 = device("aa0000000000000002");
  const std::string digest = crypto::sha256_hex(as_bytes("the option 3 secret"));
  const Party d4 = device("aa0000000000000004");
  const json reel = json::array({chip("aa0000000000000001", d2), chip("AA0000000000000002", d3, digest),
                                 chip("aa0000000000000004", d4)});
  const FileReport r = import(write_manifest("reel.json", reel));
  ASSERT_TRUE(r.ok()) << *r.error;
  EXPECT_EQ(r.format, "hallmark");
  EXPECT_EQ(r.reel, "R-001");
  EXPECT_EQ(r.imported, 3) << ::testing::PrintToString(reasons(r));

  auto o2 = db->find_device_by_unique_id("aa0000000000000001");
  ASSERT_TRUE(o2);
  EXPECT_EQ(o2->ukid, d2.cert.public_key().sha256_hex());
  EXPECT_EQ(device_option(*o2), DeviceOption::option2);
  auto o3 = db->find_device_by_unique_id("aa0000000000000002");  // canonical lower case
  ASSERT_TRUE(o3);
  EXPECT_FALSE(o3->ukid);
  EXPECT_EQ(o3->ukid_secret_digest, digest);
  EXPECT_EQ(device_option(*o3), DeviceOption::option3);

  // Factory line: by unique id, by UKID, then from CSV (unknown, already mounted, Option 3, Lite).
  MountOptions mo;
  mo.station = "line-1";
  mo.alias = "sensor";
  const MountOutcome m2 = mount_device(*db, by_ukid(*o2->ukid), mo);
  EXPECT_EQ(m2.status, MountStatus::mounted) << m2.reason;
  EXPECT_EQ(m2.username, *o2->ukid);
  auto ee2 = db->find_end_entity(*o2->ukid);
  ASSERT_TRUE(ee2);
  EXPECT_EQ(ee2->device_id, o2->id);
  EXPECT_EQ(ee2->est_alias, "sensor");
  EXPECT_EQ(json::parse(ee2->subject_json)["serialNumber"], *o2->ukid);
  auto after = db->find_device_by_unique_id("aa0000000000000001");
  EXPECT_EQ(after->state, store::DeviceState::mounted);
  EXPECT_EQ(after->station, "line-1");

  const std::string csv =
      "unique_id,ukid,station,alias\r\n"
      "aa0000000000000001,,line-2,\r\n"
      "AA0000000000000002,,,\r\n"
      "# a comment\r\n"
      ",ffff000000000000000000000000000000000000000000000000000000000000,,\r\n"
      "aa0000000000000004,,\"line,3\",other\r\n";
  auto rows = parse_mount_csv(csv);
  ASSERT_TRUE(rows) << rows.error().detail;
  ASSERT_EQ(rows->size(), 4u);
  EXPECT_EQ((*rows)[3].station, "line,3");
  EXPECT_EQ((*rows)[3].line, 6u);
  const MountReport rep = mount_devices(*db, *rows, mo);
  ASSERT_EQ(rep.outcomes.size(), 4u);
  EXPECT_EQ(rep.outcomes[0].status, MountStatus::already_mounted);
  EXPECT_TRUE(rep.outcomes[0].reason.starts_with("already mounted at station line-1"))
      << rep.outcomes[0].reason;
  EXPECT_EQ(rep.outcomes[1].status, MountStatus::mounted) << rep.outcomes[1].reason;
  EXPECT_EQ(rep.outcomes[1].username, o3->bc_sha256);
  EXPECT_EQ(rep.outcomes[1].option, "option3");
  EXPECT_EQ(rep.outcomes[2].status, MountStatus::unknown);
  EXPECT_EQ(rep.outcomes[2].reason,
            "no device with UKID ffff000000000000000000000000000000000000000000000000000000000000");
  EXPECT_EQ(rep.outcomes[3].status, MountStatus::mounted) << rep.outcomes[3].reason;
  EXPECT_EQ(rep.outcomes[3].username, d4.cert.public_key().sha256_hex());
  EXPECT_EQ(db->find_end_entity(d4.cert.public_key().sha256_hex())->est_alias, "other");
  EXPECT_EQ(db->find_device_by_unique_id("aa0000000000000004")->station, "line,3");
  EXPECT_EQ(rep.count(MountStatus::mounted), 2u);
  EXPECT_NE(rep.to_table().find("already-mounted"), std::string::npos);
  EXPECT_EQ(rep.to_json()["unknown"], 1);

  // show / retire
  auto shown = find_device(*db, o3->bc_sha256);
  ASSERT_TRUE(shown);
  EXPECT_EQ(shown->vendor_unique_id, "aa0000000000000002");
  EXPECT_NE(describe_device(*shown).find("UKID secret SHA-256"), std::string::npos);
  auto retired = retire_device(*db, "aa0000000000000004", {});
  ASSERT_TRUE(retired) << retired.error().detail;
  EXPECT_EQ(retired->state, store::DeviceState::retired);
  EXPECT_EQ(retire_device(*db, "aa0000000000000004", {}).error().code, Errc::conflict);
  EXPECT_EQ(find_device(*db, "nope").error().code, Errc::not_found);
  const MountOutcome again = mount_device(*db, by_unique_id("aa0000000000000004"), mo);
  EXPECT_EQ(again.status, MountStatus::refused);
  EXPECT_EQ(again.reason, "device is retired");

  DeviceFilter f;
  f.state = store::DeviceState::mounted;
  EXPECT_TRUE(matches(f, *db->find_device_by_unique_id("aa0000000000000002")));
  EXPECT_FALSE(matches(f, *db->find_device_by_unique_id("aa0000000000000004")));
  EXPECT_NE(devices_table({*shown}).find("option3"), std::string::npos);

  // device list: the store filters; its answer agrees with matches().
  auto mounted = list_devices(*db, f);
  ASSERT_TRUE(mounted) << mounted.error().detail;
  ASSERT_EQ(mounted->size(), 2u);
  EXPECT_EQ((*mounted)[0].vendor_unique_id, "aa0000000000000001");
  EXPECT_EQ((*mounted)[1].vendor_unique_id, "aa0000000000000002");
  for (const auto& d : *mounted) EXPECT_TRUE(matches(f, d));
  auto reel_manifest = find_reel(*db, "R-001");
  ASSERT_TRUE(reel_manifest) << reel_manifest.error().detail;
  EXPECT_EQ(reel_manifest->id, *r.manifest_id);
  EXPECT_EQ(find_reel(*db, std::to_string(*r.manifest_id))->sha256, r.sha256);
  EXPECT_EQ(find_reel(*db, r.sha256)->id, *r.manifest_id);
  EXPECT_EQ(find_reel(*db, "R-404").error().code, Errc::not_found);
  DeviceFilter by_reel;
  by_reel.manifest_id = reel_manifest->id;
  by_reel.limit = 2;
  auto page = list_devices(*db, by_reel);
  ASSERT_TRUE(page);
  ASSERT_EQ(page->size(), 2u);
  by_reel.after_id = page->back().id;
  auto rest = list_devices(*db, by_reel);
  ASSERT_TRUE(rest);
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].vendor_unique_id, "aa0000000000000004");
  by_reel = {};
  by_reel.reel = "R-001";
  by_reel.state = store::DeviceState::retired;
  EXPECT_EQ(list_devices(*db, by_reel)->size(), 1u);
}

TEST_F(Reel, MountRefusesAUsernameOfAnotherDeviceWithoutChangingIt) {
  const Party d = device("aa00000000000000d1");
  ASSERT_EQ(import(write_manifest("d.json", json::array({chip("aa00000000000000d1", d)}))).imported, 1);
  store::EndEntityRecord squatter;
  squatter.username = d.cert.public_key().sha256_hex();  // the UKID mount would use
  ASSERT_TRUE(db->add_end_entity(squatter, {}));
  const MountOutcome m = mount_device(*db, by_unique_id("aa00000000000000d1"), {});
  EXPECT_EQ(m.status, MountStatus::refused);
  EXPECT_NE(m.reason.find("exists for another device"), std::string::npos) << m.reason;
  EXPECT_EQ(db->find_device_by_unique_id("aa00000000000000d1")->state, store::DeviceState::received);
}

TEST_F(Reel, ConflictsAreRejectedPerEntryAndTheRestImports) {
  const Party a = device("aa00000000000000e1");
  const Party b = device("aa00000000000000e2");
  ASSERT_EQ(import(write_manifest("e1.json", json::array({chip("aa00000000000000e1", a)}))).imported, 1);
  // A second reel file: e1 again with b's certificate, and e2 with e1's: both contradict the inventory.
  const FileReport r = import(
      write_manifest("e2.json", json::array({chip("aa00000000000000e1", b), chip("aa00000000000000e2", a)})));
  ASSERT_TRUE(r.ok()) << *r.error;
  EXPECT_EQ(r.imported, 0);
  ASSERT_EQ(r.rejections.size(), 2u);
  EXPECT_NE(r.rejections[0].reason.find("conflicts with the inventory: uniqueId aa00000000000000e1"),
            std::string::npos)
      << r.rejections[0].reason;
  EXPECT_NE(r.rejections[1].reason.find("belongs to uniqueId aa00000000000000e1"), std::string::npos)
      << r.rejections[1].reason;
  const Party c = device("aa00000000000000e3");
  const FileReport r2 = import(
      write_manifest("e3.json", json::array({chip("aa00000000000000e1", b), chip("aa00000000000000e3", c)})));
  ASSERT_TRUE(r2.ok()) << *r2.error;
  EXPECT_EQ(r2.imported, 1);
  EXPECT_EQ(r2.rejected, 1);
  EXPECT_TRUE(db->find_device_by_unique_id("aa00000000000000e3"));
  // The reel name stays with the first file of the reel; later files are noted, not refused.
  auto first = db->find_manifest_by_reel("R-001");
  ASSERT_TRUE(first) << first.error().detail;
  EXPECT_NE(first->sha256, r2.sha256);
  EXPECT_FALSE(r2.notes.empty());
}

TEST_F(Reel, LiteEntriesHaveNoKeyUntilFirstContact) {
  const Party unused = device("aa00000000000000b0");
  const std::string path =
      write_manifest("lite.json", json::array({chip("aa00000000000000b1", unused, std::nullopt, true),
                                               chip("aa00000000000000b2", unused, std::nullopt, true)}));
  std::vector<ManifestEntry> seen;
  auto read = read_manifest(path, trust, {}, [&](ManifestEntry&& e) -> Status {
    seen.push_back(std::move(e));
    return {};
  });
  ASSERT_TRUE(read) << read.error().detail;
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_TRUE(seen[0].accepted()) << seen[0].rejected;
  EXPECT_EQ(seen[0].version, 2);
  EXPECT_FALSE(seen[0].bc);
  EXPECT_FALSE(seen[0].ukid);
  const FileReport r = import(path);
  ASSERT_TRUE(r.ok()) << *r.error;
  EXPECT_EQ(r.imported, 2);
  auto lite = db->find_device_by_unique_id("aa00000000000000b1");
  ASSERT_TRUE(lite);
  EXPECT_TRUE(lite->bc_der.empty());
  EXPECT_EQ(device_option(*lite), DeviceOption::lite);
  MountOptions mo;
  const MountOutcome m = mount_device(*db, by_unique_id("aa00000000000000b1"), mo);
  EXPECT_EQ(m.status, MountStatus::mounted) << m.reason;
  EXPECT_EQ(m.username, "aa00000000000000b1");
  EXPECT_EQ(db->find_end_entity("aa00000000000000b1")->device_id, lite->id);
  // The same file again: already present, also after the key was pinned at first contact.
  const Bytes key = to_bytes("first-contact key of b1");
  ASSERT_TRUE(db->pin_device_key("aa00000000000000b1", key, crypto::sha256_hex(key), std::nullopt, {}));
  const FileReport again = import(path);
  ASSERT_TRUE(again.ok()) << *again.error;
  EXPECT_TRUE(again.manifest_known);
  EXPECT_EQ(again.already_present, 2);
  EXPECT_EQ(again.rejected, 0);
}

TEST_F(Reel, FormatIsCheckedAgainstTheMarker) {
  const Party d = device("aa00000000000000a1");
  const std::string path = write_manifest("r.json", json::array({chip("aa00000000000000a1", d)}));
  options.read.format = ManifestFormat::microchip;
  EXPECT_EQ(reasons(import(path)),
            std::vector<std::string>{"entry 0 (uniqueId aa00000000000000a1): hallmark reel "
                                     "entry in a file read as microchip"});
  options.read.format = ManifestFormat::hallmark;
  EXPECT_EQ(
      reasons(import(kMicrochip)).front(),
      "entry 0 (uniqueId " + kId0 + "): not a hallmark reel entry (payload has no \"hallmark\" object)");
  options.read.format = ManifestFormat::infineon;
  EXPECT_FALSE(import(path).ok());
}

TEST(Csv, RejectsRowsWithoutExactlyOneKey) {
  EXPECT_EQ(parse_mount_csv("unique_id,ukid\n1,2\n").error().detail,
            "line 2: give exactly one of unique_id and ukid");
  EXPECT_EQ(parse_mount_csv("serial\n1\n").error().detail,
            "line 1: unknown column \"serial\" (unique_id, ukid, station, alias)");
  EXPECT_EQ(parse_mount_csv("ukid\n\"abc\n").error().detail, "line 2: unterminated quoted field");
}

TEST(ReportTable, PrintsCountsAndReasons) {
  ImportReport rep;
  FileReport f;
  f.path = "dir/m.json";
  f.format = "microchip-jws";
  f.entries = 3;
  f.imported = 1;
  f.already_present = 1;
  f.rejected = 1;
  f.rejections.push_back({2, "01ab", "ES256 signature does not verify"});
  rep.files.push_back(f);
  const std::string t = rep.to_table();
  EXPECT_NE(t.find("m.json"), std::string::npos);
  EXPECT_NE(t.find("rejected entry 2 (uniqueId 01ab): ES256 signature does not verify"), std::string::npos);
  EXPECT_EQ(rep.to_json()["files"][0]["rejections"][0]["reason"], "ES256 signature does not verify");
}

// ---- streaming ----

long current_rss_kib() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * (::sysconf(_SC_PAGESIZE) / 1024);
}

long max_rss_kib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

TEST_F(Reel, ReaderMemoryStaysBoundedOnALargeManifest) {
  // 20,000 signed Lite entries with an 8 KiB pad each (~200 MB of JSON); only the reader runs.
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer's quarantine keeps freed memory resident: the bound is measured without it.
  constexpr bool kMeasureMemory = false;
  constexpr std::size_t kEntries = 2000;
#else
  constexpr bool kMeasureMemory = true;
  constexpr std::size_t kEntries = 20000;
#endif
  json p = {{"version", 2},
            {"partNumber", "HM-LITE"},
            {"provisioningTimestamp", "2025-03-01T10:00:00Z"},
            {"uniqueId", "bb0000000000000000"},
            {"hallmark", {{"reel", "R-BIG"}}},
            {"pad", std::string(8192, 'x')}};
  const std::string one = sign_entry(p, signer).dump();
  const std::string path = dir / "big.json";
  {
    std::ofstream out(path, std::ios::binary);
    out << "[\n";
    for (std::size_t i = 0; i < kEntries; ++i) out << (i ? ",\n" : "") << one;
    out << "\n]\n";
  }
  const auto file_mib = std::filesystem::file_size(path) >> 20;
  const long before = current_rss_kib();
  const long peak_before = max_rss_kib();
  long highest = before;
  std::size_t accepted = 0;
  std::size_t next = 0;
  bool in_order = true;
  auto summary = read_manifest(path, trust, {}, [&](ManifestEntry&& e) -> Status {
    in_order = in_order && e.index == next++;
    if (e.accepted()) ++accepted;
    if (next % 1000 == 0) highest = std::max(highest, current_rss_kib());
    return {};
  });
  const long grown_mib = (highest - before) >> 10;
  const long peak_grown_mib = (max_rss_kib() - peak_before) >> 10;
  ASSERT_TRUE(summary) << summary.error().detail;
  EXPECT_TRUE(in_order);
  EXPECT_EQ(accepted, kEntries);
  EXPECT_EQ(summary->entries, kEntries);
  EXPECT_EQ(summary->format, ManifestFormat::hallmark);
  std::printf(
      "[ reader   ] %zu entries, %ju MiB file: RSS grew by %ld MiB while reading (ru_maxrss +%ld MiB)\n",
      kEntries, static_cast<std::uintmax_t>(file_mib), grown_mib, peak_grown_mib);
  if (kMeasureMemory) {
    EXPECT_LT(grown_mib, 64);
    EXPECT_LT(peak_grown_mib, 64);
  }
}

TEST_F(Reel, CallbackErrorStopsTheRead) {
  const Party d = device("aa00000000000000c1");
  const std::string path =
      write_manifest("r.json", json::array({chip("aa00000000000000c1", d), chip("aa00000000000000c2", d)}));
  int calls = 0;
  auto r = read_manifest(path, trust, {}, [&](ManifestEntry&&) -> Status {
    ++calls;
    return fail(Errc::unavailable, "stop");
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail, "stop");
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace hallmark::inventory
