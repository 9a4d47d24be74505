// The vendor station end to end, checked with tools nobody here wrote (the openssl CLI) and, where it
// is built, the OEM's own `hallmark ca sign-subca`.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "hallmark/core/bytes.hpp"
#include "hallmark/crypto/digest.hpp"
#include "hallmark/crypto/jws.hpp"
#include "hallmark/vendor/vendor.hpp"
#include "hallmark/x509/certificate.hpp"
#include "manifest.hpp"
#include "process.hpp"

namespace hallmark::vendor {
namespace {

using testing::run;
using testing::shell_quote;
using testing::TempDir;
namespace fs = std::filesystem;

const std::string kSamples = std::string(HALLMARK_SHARED_DIR) + "/samples/microchip";
const std::string kHallmarkCli = std::string(HALLMARK_BINARY_DIR) + "/app/hallmark/hallmark";

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  ::stat(p.c_str(), &st);
  return st.st_mode & 0777;
}

std::string q(const fs::path& p) {
  return shell_quote(p.string());
}

InitOptions init_options(const fs::path& home, const std::string& organization = "Example Silicon") {
  InitOptions o;
  o.home = home;
  o.organization = organization;
  return o;
}

std::string slurp(const fs::path& p) {
  return read_text_file(p.string()).value();
}

// A stand-in OEM root made with the openssl CLI; signs sub-CA CSRs as `hallmark ca sign-subca` would.
struct OpensslOem {
  fs::path dir;
  fs::path root_cert, root_key;

  explicit OpensslOem(fs::path d)
      : dir(std::move(d)), root_cert(dir / "oem-root.pem"), root_key(dir / "oem-root.key") {
    fs::create_directories(dir);
    const auto r =
        run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + q(root_key) +
            " -subj '/O=Acme Devices/CN=Acme Devices Root CA' -days 3650 -addext "
            "basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -out " +
            q(root_cert));
    EXPECT_EQ(r.exit_code, 0) << r.output;
  }

  // Signs `csr`; writes the chain (sub-CA first, root last) to `chain`.
  void sign(const fs::path& csr, const fs::path& chain, bool ca = true) const {
    const fs::path ext = dir / "ext.cnf";
    std::ofstream(ext) << "[v3]\nbasicConstraints=critical," << (ca ? "CA:TRUE,pathlen:0" : "CA:FALSE")
                       << "\nkeyUsage=critical," << (ca ? "keyCertSign,cRLSign" : "digitalSignature")
                       << "\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n";
    const fs::path cert = dir / "signed.pem";
    const auto r = run("openssl x509 -req -in " + q(csr) + " -CA " + q(root_cert) + " -CAkey " + q(root_key) +
                       " -CAcreateserial -days 3650 -extfile " + q(ext) + " -extensions v3 -out " + q(cert));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::ofstream(chain) << slurp(cert) << slurp(root_cert);
  }
};

class Vendor : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("hallmark-vendor");
    oem_ = new OpensslOem(dir_->path() / "oem");
    InitOptions init_options;
    init_options.home = home();
    init_options.organization = "Example Silicon";
    init_options.generic_bc_ca = true;
    auto init_result = init(init_options, clock_);
    ASSERT_TRUE(init_result) << init_result.error().detail;
    init_summary_ = new InitSummary(*init_result);
    for (const char* role : {"bc", "idc"}) {
      auto req = request_subca({home(), role, "Acme", {}});
      ASSERT_TRUE(req) << req.error().detail;
      const fs::path chain = dir_->path() / (std::string(role) + "-chain.pem");
      oem_->sign(req->csr, chain);
      auto installed = install_subca({home(), role, chain}, clock_);
      ASSERT_TRUE(installed) << installed.error().detail;
    }
  }
  static void TearDownTestSuite() {
    delete init_summary_;
    delete oem_;
    delete dir_;
  }
  static fs::path home() { return dir_->path() / "home"; }
  static fs::path tmp(const std::string& name) { return dir_->path() / name; }

  static ProvisionOptions reel(Mode mode, std::uint64_t count, const std::string& id) {
    ProvisionOptions o;
    o.home = home();
    o.mode = mode;
    o.count = count;
    o.part_number = "ATECC608B-TFLXTLS";
    o.reel = id;
    o.out_dir = tmp("out-" + id);
    o.threads = 2;
    o.product = "Acme Widget";
    o.progress = ProgressBar::Mode::never;
    return o;
  }

  static SystemClock clock_;
  static TempDir* dir_;
  static OpensslOem* oem_;
  static InitSummary* init_summary_;
};
SystemClock Vendor::clock_;
TempDir* Vendor::dir_ = nullptr;
OpensslOem* Vendor::oem_ = nullptr;
InitSummary* Vendor::init_summary_ = nullptr;

TEST_F(Vendor, InitWritesEncryptedKeysReadableOnlyByOwner) {
  for (const char* f :
       {"vendor.toml", "signer/cert.pem", "generic-bc/cert.pem", "generic-bc/root-cert.pem", "vendor.db"}) {
    EXPECT_TRUE(fs::exists(home() / f)) << f;
  }
  for (const char* key : {"secrets/key-passphrase", "signer/key.pem", "generic-bc/key.pem",
                          "generic-bc/root-key.pem", "subca/bc/key.pem", "subca/idc/key.pem"}) {
    EXPECT_EQ(mode_of(home() / key), 0600u) << key;
  }
  const auto pem = slurp(home() / "signer/key.pem");
  EXPECT_TRUE(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----")) << pem.substr(0, 40);
  EXPECT_EQ(run("openssl pkey -noout -in " + q(home() / "signer/key.pem") +
                " -passin file:" + q(home() / "secrets/key-passphrase"))
                .exit_code,
            0);
  EXPECT_NE(run("openssl pkey -noout -in " + q(home() / "signer/key.pem") + " -passin pass:wrong").exit_code,
            0);
  EXPECT_EQ(init_summary_->signer_subject, "O=Example Silicon,CN=Example Silicon Manifest Signer");
  EXPECT_EQ(init_summary_->generic_bc_ca_subject, "O=Example Silicon,CN=Example Silicon Generic BC CA");

  auto again = init(init_options(home(), "Other"), clock_);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().detail,
            home().string() + " already holds a vendor home (vendor.toml exists); refusing to overwrite it");
}

TEST_F(Vendor, InitTakesThePassphraseFromTheEnvironment) {
  TempDir dir("hallmark-vendor-env");
  ::setenv("HALLMARK_VENDOR_TEST_PASS", "correct horse battery staple", 1);
  InitOptions options;
  options.home = dir.path();
  options.passphrase_source = "env:HALLMARK_VENDOR_TEST_PASS";
  ASSERT_TRUE(init(options, clock_));
  EXPECT_FALSE(fs::exists(dir.path() / "secrets/key-passphrase"));
  EXPECT_FALSE(fs::exists(dir.path() / "generic-bc"));
  EXPECT_EQ(run("openssl pkey -noout -in " + q(dir.path() / "signer/key.pem") +
                " -passin env:HALLMARK_VENDOR_TEST_PASS")
                .exit_code,
            0);
  TempDir other("hallmark-vendor-env2");
  options.home = other.path();
  options.passphrase_source = "env:HALLMARK_VENDOR_TEST_UNSET";
  auto r = init(options, clock_);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().detail.find("vendor key passphrase"), std::string::npos) << r.error().detail;
}

// Microchip's kid is base64url of the signer's SubjectKeyIdentifier, which for their signers (and ours,
// RFC 5280 method 1) is also SHA-1 of the public key point.
TEST(VendorManifest, KidIsTheSignersSubjectKeyIdentifier) {
  const auto signer =
      x509::Certificate::load(kSamples + "/signers/MCHP_manifest_signer_2_Aug-15-2019_Aug-15-2020.crt");
  ASSERT_TRUE(signer) << signer.error().detail;
  const auto ids = signer_ids(*signer);
  ASSERT_TRUE(ids);
  EXPECT_EQ(ids->kid, "8VeKGdyU2d8wev6_VzNJOBOv-cA");
  EXPECT_EQ(ids->x5t_s256, "U9TKmw4f3iG56OGR8YV_Ncxlk0DlG0FyL9aDlwfbv1A");
}

TEST_F(Vendor, SignerKidIsSha1OfThePublicKeyPerOpenssl) {
  const auto r =
      run("openssl x509 -in " + q(home() / "signer/cert.pem") +
          " -noout -pubkey | openssl pkey -pubin -outform DER | tail -c 65 | openssl sha1 -binary | "
          "basenc --base64url | tr -d '=\\n'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, init_summary_->signer_kid);
}

TEST_F(Vendor, InstallRefusesACertificateForAnotherKey) {
  TempDir dir("hallmark-vendor-refuse");
  const fs::path h = dir.path() / "home";
  ASSERT_TRUE(init(init_options(h), clock_));
  ASSERT_TRUE(request_subca({h, "bc", "Acme", {}}));
  // A CSR of a key the vendor does not hold, signed as a CA.
  const fs::path other_csr = dir.path() / "other.csr";
  auto r = run("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " +
               q(dir.path() / "other.key") +
               " -subj '/O=Example Silicon/CN=Example Silicon BC CA for Acme' -out " + q(other_csr));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const fs::path chain = dir.path() / "chain.pem";
  oem_->sign(other_csr, chain);
  auto installed = install_subca({h, "bc", chain}, clock_);
  ASSERT_FALSE(installed);
  EXPECT_EQ(
      installed.error().detail,
      "O=Example Silicon,CN=Example Silicon BC CA for Acme: the certificate's key does not match the pending "
      "BC sub-CA key (it was signed for another request)");
  EXPECT_FALSE(fs::exists(h / "subca/bc/chain.pem"));

  // The right key, but not a CA.
  oem_->sign(h / "subca/bc/request.csr", chain, /*ca=*/false);
  installed = install_subca({h, "bc", chain}, clock_);
  ASSERT_FALSE(installed);
  EXPECT_EQ(
      installed.error().detail,
      "O=Example Silicon,CN=Example Silicon BC CA for Acme is not a CA certificate (basicConstraints CA is "
      "not true)");
  EXPECT_FALSE(fs::exists(h / "subca/bc/chain.pem"));

  // Without a pending request, and for a role that does not exist.
  installed = install_subca({h, "idc", chain}, clock_);
  ASSERT_FALSE(installed);
  EXPECT_EQ(installed.error().detail,
            "no pending IDC sub-CA request: run 'hallmark vendor request-subca --role idc' first");
  auto req = request_subca({h, "tls", "Acme", {}});
  ASSERT_FALSE(req);
  EXPECT_EQ(req.error().detail, "sub-CA role must be bc or idc (got 'tls')");

  // Provisioning BCs needs the installed sub-CA.
  ProvisionOptions o = reel(Mode::bc, 3, "R-none");
  o.home = h;
  o.out_dir = dir.path() / "out";
  auto p = provision(o, clock_);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().detail,
            "no BC sub-CA installed: run 'hallmark vendor request-subca --role bc' and have the OEM sign it");
  EXPECT_FALSE(fs::exists(dir.path() / "out" / "R-none.json"));
  o.mode = Mode::bc_secret;
  p = provision(o, clock_);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().detail,
            "no generic BC CA in this vendor home (it is created by 'hallmark vendor init --generic-bc-ca')");
}

TEST_F(Vendor, RequestSubcaWritesACsrWithTheVendorsSubject) {
  const auto r = run("openssl req -noout -subject -verify -in " + q(home() / "subca/bc/request.csr"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("subject=O = Example Silicon, CN = Example Silicon BC CA for Acme"),
            std::string::npos)
      << r.output;
  auto again = request_subca({home(), "bc", "Acme", {}});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::conflict);
}

// What every reel must satisfy, checked entry by entry.
struct ReelCheck {
  std::vector<std::string> unique_ids;
};

ReelCheck check_reel(const ProvisionOptions& o, const fs::path& home, const fs::path& root,
                     const fs::path& work) {
  ReelCheck out;
  const auto signer = x509::Certificate::load((home / "signer/cert.pem").string()).value();
  const auto ids = signer_ids(signer).value();
  const std::string manifest_text = slurp(o.out_dir / (o.reel + ".json"));
  const auto manifest = nlohmann::json::parse(manifest_text);
  EXPECT_TRUE(manifest.is_array());
  EXPECT_EQ(manifest.size(), o.count);
  fs::create_directories(work);
  for (std::size_t i = 0; i < manifest.size(); ++i) {
    SCOPED_TRACE("entry " + std::to_string(i));
    const auto& entry = manifest[i];
    std::vector<std::string> keys;
    for (const auto& [k, v] : entry.items()) keys.push_back(k);
    const auto jws = crypto::parse_flattened_jws(entry);
    EXPECT_TRUE(jws) << jws.error().detail;
    if (!jws) continue;
    EXPECT_TRUE(crypto::verify_es256(*jws, signer.public_key())) << "signature";
    const auto protected_text = hallmark::to_string(crypto::base64url_decode(jws->protected_b64).value());
    EXPECT_EQ(protected_text,
              R"({"alg":"ES256","kid":")" + ids.kid + R"(","x5t#S256":")" + ids.x5t_s256 + R"("})");
    const auto payload = nlohmann::json::parse(hallmark::to_string(jws->payload().value()));
    const std::string uid = payload.at("uniqueId");
    EXPECT_EQ(jws->header.at("uniqueId"), uid);
    EXPECT_EQ(uid.size(), 18u);
    EXPECT_TRUE(uid.starts_with("01"));
    out.unique_ids.push_back(uid);
    EXPECT_EQ(payload.at("version"), 1);
    EXPECT_EQ(payload.at("model"), "ATECC608B");
    EXPECT_EQ(payload.at("partNumber"), o.part_number);
    EXPECT_EQ(payload.at("manufacturer").at("organizationName"), "Example Silicon");
    EXPECT_EQ(payload.at("groupId"), o.reel);
    EXPECT_EQ(payload.at("hallmark").at("reel"), o.reel);
    EXPECT_EQ(payload.at("hallmark").at("mode"), std::string(to_string(o.mode)));
    EXPECT_TRUE(parse_iso8601(payload.at("provisioningTimestamp").get<std::string>()));
    const auto& key = payload.at("publicKeySet").at("keys").at(0);
    EXPECT_EQ(key.at("kid"), "0");
    EXPECT_EQ(key.at("kty"), "EC");
    EXPECT_EQ(key.at("crv"), "P-256");

    // x5c verifies to the right root with openssl.
    const auto& x5c = key.at("x5c");
    EXPECT_EQ(x5c.size(), 2u);
    std::vector<x509::Certificate> chain;
    for (const auto& c : x5c)
      chain.push_back(
          x509::Certificate::parse_der(crypto::base64_decode(c.get<std::string>()).value()).value());
    std::ofstream(work / "leaf.pem") << chain[0].to_pem();
    std::ofstream(work / "untrusted.pem") << chain[1].to_pem();
    const auto v = run("openssl verify -CAfile " + q(root) + " -untrusted " + q(work / "untrusted.pem") +
                       " " + q(work / "leaf.pem"));
    EXPECT_EQ(v.exit_code, 0) << v.output;

    // The JWK is the certificate's key.
    const Bytes spki = chain[0].public_key().to_der();
    Bytes xy = crypto::base64url_decode(key.at("x").get<std::string>()).value();
    const Bytes y = crypto::base64url_decode(key.at("y").get<std::string>()).value();
    xy.insert(xy.end(), y.begin(), y.end());
    EXPECT_EQ(Bytes(spki.end() - 64, spki.end()), xy);

    std::string upper_uid = uid;
    for (auto& c : upper_uid) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    const auto subject = chain[0].subject();
    if (o.mode == Mode::idc) {
      EXPECT_EQ(subject.get("serialNumber"), upper_uid);
      EXPECT_EQ(subject.get("O"), "Acme Devices");
      EXPECT_EQ(subject.get("CN"), "Acme Widget");
      const auto san = chain[0].subject_alt_name();
      EXPECT_TRUE(san && san->names.size() == 1 && san->names[0].hardware_module_name);
      if (san && !san->names.empty() && san->names[0].hardware_module_name) {
        EXPECT_EQ(to_hex(san->names[0].hardware_module_name->hw_serial_num), uid);
        EXPECT_EQ(san->names[0].hardware_module_name->hw_type, o.product_oid);
      }
      // No expiry of its own (802.1AR), clamped to the issuing CA's notAfter by the issuer.
      EXPECT_EQ(chain[0].not_after(), chain[1].not_after());
    } else {
      EXPECT_EQ(subject.get("CN"), "sn" + upper_uid);
      EXPECT_EQ(subject.get("O"), "Example Silicon");
    }

    // The chip image: key matches certificate; Option 3 holds the secret whose digest is in the manifest.
    const fs::path image_path = o.out_dir / "chips" / (uid + ".json");
    if (!o.images) {
      EXPECT_FALSE(fs::exists(image_path));
      continue;
    }
    EXPECT_EQ(mode_of(image_path), 0600u);
    const auto image = nlohmann::json::parse(slurp(image_path));
    EXPECT_EQ(image.at("uniqueId"), uid);
    EXPECT_EQ(image.at("mode"), std::string(to_string(o.mode)));
    EXPECT_EQ(image.at("partNumber"), o.part_number);
    EXPECT_EQ(image.at("certificateChain").size(), 2u);
    EXPECT_EQ(image.at("certificateChain").at(0).get<std::string>(), chain[0].to_pem());
    std::ofstream(work / "chip.key") << image.at("privateKey").get<std::string>();
    const auto from_key = run("openssl pkey -pubout -in " + q(work / "chip.key"));
    const auto from_cert = run("openssl x509 -pubkey -noout -in " + q(work / "leaf.pem"));
    EXPECT_EQ(from_key.exit_code, 0) << from_key.output;
    EXPECT_EQ(from_key.output, from_cert.output);
    if (o.mode == Mode::bc_secret) {
      const std::string secret = image.at("ukidSecret");
      EXPECT_EQ(secret.size(), 32u);
      EXPECT_EQ(payload.at("ukidSecretDigest"), crypto::sha256_hex(as_bytes(secret)));
      EXPECT_EQ(manifest_text.find(secret), std::string::npos);
      EXPECT_EQ(run("grep -c " + shell_quote(secret) + " " + q(o.out_dir / (o.reel + ".json"))).output,
                "0\n");
    } else {
      EXPECT_FALSE(payload.contains("ukidSecretDigest"));
      EXPECT_FALSE(image.contains("ukidSecret"));
    }
  }
  return out;
}

TEST_F(Vendor, ProvisionsBirthCertificatesUnderTheOemsBcSubCa) {
  const auto o = reel(Mode::bc, 5, "R-bc");
  const auto s = provision(o, clock_);
  ASSERT_TRUE(s) << s.error().detail;
  EXPECT_EQ(s->chips, 5u);
  EXPECT_EQ(s->files, 6u);
  EXPECT_EQ(s->issuer, "O=Example Silicon,CN=Example Silicon BC CA for Acme");
  EXPECT_EQ(s->signer_kid, init_summary_->signer_kid);
  EXPECT_TRUE(describe(*s).starts_with("Provisioned 5 chips (mode bc, reel R-bc) in ")) << describe(*s);
  EXPECT_FALSE(fs::exists(o.out_dir / "R-bc.json.partial"));
  const auto r = check_reel(o, home(), oem_->root_cert, tmp("work-bc"));
  EXPECT_EQ(r.unique_ids.size(), 5u);
  EXPECT_EQ(crypto::sha256_hex(to_bytes(slurp(o.out_dir / "R-bc.json"))), s->manifest_sha256);
}

TEST_F(Vendor, ProvisionsIdcsUnderTheOemsIdcSubCa) {
  const auto o = reel(Mode::idc, 4, "R-idc");
  const auto s = provision(o, clock_);
  ASSERT_TRUE(s) << s.error().detail;
  EXPECT_EQ(s->issuer, "O=Example Silicon,CN=Example Silicon IDC CA for Acme");
  check_reel(o, home(), oem_->root_cert, tmp("work-idc"));
}

TEST_F(Vendor, ProvisionsGenericBirthCertificatesWithASecret) {
  const auto o = reel(Mode::bc_secret, 4, "R-secret");
  const auto s = provision(o, clock_);
  ASSERT_TRUE(s) << s.error().detail;
  EXPECT_EQ(s->issuer, "O=Example Silicon,CN=Example Silicon Generic BC CA");
  check_reel(o, home(), home() / "generic-bc/root-cert.pem", tmp("work-secret"));
}

TEST_F(Vendor, UniqueIdsAreUniqueAcrossReelsAndReelIdsAreNeverReused) {
  auto a = reel(Mode::bc, 150, "R-a");
  a.images = false;
  auto b = reel(Mode::bc, 150, "R-b");
  b.images = false;
  ASSERT_TRUE(provision(a, clock_));
  ASSERT_TRUE(provision(b, clock_));
  EXPECT_FALSE(fs::exists(a.out_dir / "chips"));
  std::set<std::string> all;
  for (const auto& o : {a, b}) {
    const auto manifest = nlohmann::json::parse(slurp(o.out_dir / (o.reel + ".json")));
    for (const auto& e : manifest) all.insert(e.at("header").at("uniqueId").get<std::string>());
  }
  EXPECT_EQ(all.size(), 300u);

  auto again = reel(Mode::bc, 2, "R-a");
  again.out_dir = tmp("out-R-a-again");
  const auto r = provision(again, clock_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::conflict);
  EXPECT_EQ(r.error().detail, "reel 'R-a' was already provisioned (reel ids are never reused)");
  EXPECT_FALSE(fs::exists(again.out_dir / "R-a.json"));
}

TEST_F(Vendor, BadInputGivesExactErrors) {
  auto o = reel(Mode::bc, 0, "R-zero");
  auto r = provision(o, clock_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail, "count must be at least 1");
  EXPECT_FALSE(fs::exists(o.out_dir));

  const auto mode = parse_mode("bc2");
  ASSERT_FALSE(mode);
  EXPECT_EQ(mode.error().detail, "unknown mode 'bc2' (modes: idc, bc, bc-secret)");
  EXPECT_EQ(parse_mode("bc-secret").value(), Mode::bc_secret);

  o = reel(Mode::bc, 1, "../evil");
  r = provision(o, clock_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail,
            "invalid reel id '../evil': use 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit");

  o = reel(Mode::bc, 1, "R-nopart");
  o.part_number.clear();
  r = provision(o, clock_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail, "part number is required");
}

TEST_F(Vendor, SubCaSignedByTheHallmarkCli) {
  if (!fs::exists(kHallmarkCli)) GTEST_SKIP() << "hallmark CLI not built in this build directory";
  TempDir dir("hallmark-vendor-cli");
  const fs::path oem = dir.path() / "oem";
  auto r = run(shell_quote(kHallmarkCli) + " --home " + q(oem) + " init --org 'Acme Devices'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const fs::path h = dir.path() / "vendor";
  ASSERT_TRUE(init(init_options(h), clock_));
  const auto req = request_subca({h, "bc", "Acme", dir.path() / "bc.csr"});
  ASSERT_TRUE(req) << req.error().detail;
  const fs::path chain = dir.path() / "bc-chain.pem";
  r = run(shell_quote(kHallmarkCli) + " --home " + q(oem) + " ca sign-subca --csr " + q(req->csr) +
          " --role bc --name vendor-bc --out " + q(chain));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto installed = install_subca({h, "bc", chain}, clock_);
  ASSERT_TRUE(installed) << installed.error().detail;
  EXPECT_EQ(installed->root_subject, "O=Acme Devices,CN=Acme Devices Root CA");
  auto o = reel(Mode::bc, 3, "R-cli");
  o.home = h;
  o.out_dir = dir.path() / "out";
  ASSERT_TRUE(provision(o, clock_));
  check_reel(o, h, oem / "ca/root/cert.pem", dir.path() / "work");
}

}  // namespace
}  // namespace hallmark::vendor
