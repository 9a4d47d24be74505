// The hallmark command line, end to end, checked with tools nobody here wrote (openssl CLI).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "hallmark/core/bytes.hpp"
#include "process.hpp"

namespace hallmark {
namespace {

using testing::CommandResult;
using testing::run;
using testing::shell_quote;
using testing::TempDir;
namespace fs = std::filesystem;

const std::string kVectors = std::string(HALLMARK_SHARED_DIR) + "/vectors/idc-8021ar";
const std::string kSamples = std::string(HALLMARK_SHARED_DIR) + "/samples";

class Cli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("hallmark-cli");
    const auto r = run(std::string(HALLMARK_CLI) + " --home " + shell_quote(home()) +
                       " init --org 'Acme Devices' --product 'Acme Widget' --base-url http://pki.acme.test");
    init_output_ = new CommandResult(r);
  }
  static void TearDownTestSuite() {
    delete init_output_;
    delete dir_;
  }
  static std::string home() { return (dir_->path() / "home").string(); }
  static std::string path(const std::string& rel) { return home() + "/" + rel; }
  static CommandResult hm(const std::string& args) {
    return run(std::string(HALLMARK_CLI) + " --home " + shell_quote(home()) + " " + args);
  }
  static std::string tmp(const std::string& name) { return (dir_->path() / name).string(); }

  static TempDir* dir_;
  static CommandResult* init_output_;
};
TempDir* Cli::dir_ = nullptr;
CommandResult* Cli::init_output_ = nullptr;

unsigned mode_of(const std::string& p) {
  struct stat st {};
  ::stat(p.c_str(), &st);
  return st.st_mode & 0777;
}

TEST_F(Cli, InitPrintsTheTreeOfWhatItMade) {
  ASSERT_EQ(init_output_->exit_code, 0) << init_output_->output;
  const auto& out = init_output_->output;
  for (const char* expected :
       {"hallmark.toml", "secrets/ca-passphrase", "root/  [root] O=Acme Devices,CN=Acme Devices Root CA",
        "bc/  [bc] O=Acme Devices,CN=Acme Devices Birth Certificate CA",
        "idc/  [idc] O=Acme Devices,CN=Acme Devices IDC Issuing CA",
        "tls/  [tls] O=Acme Devices,CN=Acme Devices TLS CA", "tls/server.pem", "ocsp/idc.pem", "EC P-256"}) {
    EXPECT_NE(out.find(expected), std::string::npos) << "missing '" << expected << "' in:\n" << out;
  }
}

TEST_F(Cli, InitWritesEncryptedKeysReadableOnlyByOwner) {
  for (const char* key : {"ca/root/key.pem", "ca/bc/key.pem", "ca/idc/key.pem", "ca/tls/key.pem",
                          "tls/server.key", "ocsp/idc.key", "secrets/ca-passphrase"}) {
    EXPECT_EQ(mode_of(path(key)), 0600u) << key;
  }
  const auto pem = read_text_file(path("ca/idc/key.pem")).value();
  EXPECT_TRUE(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----")) << pem.substr(0, 40);
  // openssl reads it with the passphrase and not without.
  EXPECT_EQ(run("openssl pkey -in " + shell_quote(path("ca/idc/key.pem")) +
                " -passin file:" + shell_quote(path("secrets/ca-passphrase")) + " -noout")
                .exit_code,
            0);
  EXPECT_NE(
      run("openssl pkey -in " + shell_quote(path("ca/idc/key.pem")) + " -passin pass:wrong -noout").exit_code,
      0);
}

TEST_F(Cli, InitRefusesAnExistingHome) {
  const auto r = hm("init");
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(r.output, "hallmark: error: " + home() +
                          " already holds a PKI home (hallmark.toml exists); refusing to overwrite it\n");
}

TEST_F(Cli, ChainsVerifyWithOpenssl) {
  const auto root = shell_quote(path("ca/root/cert.pem"));
  for (const char* ca : {"bc", "idc", "tls"}) {
    const auto r = run("openssl verify -CAfile " + root + " " +
                       shell_quote(path(std::string("ca/") + ca + "/cert.pem")));
    EXPECT_EQ(r.exit_code, 0) << r.output;
  }
  auto r = run("openssl verify -purpose sslserver -CAfile " + root + " -untrusted " +
               shell_quote(path("ca/tls/cert.pem")) + " " + shell_quote(path("tls/server.pem")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run("openssl x509 -noout -ext subjectAltName -in " + shell_quote(path("tls/server.pem")));
  EXPECT_NE(r.output.find("DNS:localhost"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("IP Address:127.0.0.1"), std::string::npos) << r.output;
  r = run("openssl verify -purpose ocsphelper -CAfile " + root + " -untrusted " +
          shell_quote(path("ca/idc/cert.pem")) + " " + shell_quote(path("ocsp/idc.pem")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run("openssl x509 -noout -text -in " + shell_quote(path("ocsp/idc.pem")));
  EXPECT_NE(r.output.find("OCSP Signing"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("OCSP No Check"), std::string::npos) << r.output;
}

TEST_F(Cli, IssuesAn8021arIdcFromTheReferenceCsr) {
  const auto ukid = read_text_file(kVectors + "/bc.ukid").value().substr(0, 64);
  const auto out = tmp("idc.pem");
  auto r =
      hm("cert issue --csr " + shell_quote(kVectors + "/idc.csr") + " --profile idc --set serial=" + ukid +
         " --set hw_serial=0123F2408EA1FCF201 --out " + shell_quote(out));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("by CA idc"), std::string::npos) << r.output;

  r = run("openssl verify -CAfile " + shell_quote(path("ca/root/cert.pem")) + " -untrusted " +
          shell_quote(path("ca/idc/cert.pem")) + " " + shell_quote(out));
  EXPECT_EQ(r.exit_code, 0) << r.output;

  r = run("openssl x509 -noout -text -nameopt RFC2253 -in " + shell_quote(out));
  EXPECT_NE(r.output.find("Subject: CN=Acme Widget,O=Acme Devices,serialNumber=" + ukid), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("TLS Web Client Authentication"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Digital Signature, Key Agreement"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("URI:http://pki.acme.test/crl/idc.crl"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("OCSP - URI:http://pki.acme.test/ocsp"), std::string::npos) << r.output;

  r = run("openssl asn1parse -in " + shell_quote(out));
  EXPECT_NE(r.output.find("GENERALIZEDTIME   :99991231235959Z"), std::string::npos) << r.output;
  // Inside the SAN extension: otherName id-on-hardwareModuleName {hwType, hwSerialNum}.
  const auto san_at = r.output.find("X509v3 Subject Alternative Name");
  ASSERT_NE(san_at, std::string::npos) << r.output;
  const auto next_line = r.output.find('\n', san_at) + 1;
  const auto offset = r.output.substr(next_line, r.output.find(':', next_line) - next_line);
  r = run("openssl asn1parse -in " + shell_quote(out) + " -strparse " + offset);
  EXPECT_NE(r.output.find("OBJECT            :1.3.6.1.5.5.7.8.4"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("OBJECT            :1.3.6.1.4.1.55555.1.1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[HEX DUMP]:0123F2408EA1FCF201"), std::string::npos) << r.output;
}

TEST_F(Cli, CertShowDescribesAChain) {
  const auto r = hm("cert show " + shell_quote(path("tls/server.pem")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("# certificate 1 of 3"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("CN=Acme Devices TLS CA"), std::string::npos) << r.output;
}

TEST_F(Cli, SignsAVendorSubCaWhoseKeyStaysWithTheVendor) {
  const auto key = tmp("vendor-bc.key");
  const auto csr = tmp("vendor-bc.csr");
  auto r =
      run("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " + shell_quote(key) +
          " -subj '/O=Example Silicon/CN=Example Silicon BC CA for Acme' -out " + shell_quote(csr));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto chain = tmp("vendor-bc-chain.pem");
  r = hm("ca sign-subca --csr " + shell_quote(csr) + " --role bc --name vendor-bc --out " +
         shell_quote(chain));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run("openssl verify -CAfile " + shell_quote(path("ca/root/cert.pem")) + " " +
          shell_quote(path("ca/vendor-bc/cert.pem")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run("openssl x509 -noout -text -in " + shell_quote(path("ca/vendor-bc/cert.pem")));
  EXPECT_NE(r.output.find("CA:TRUE, pathlen:0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("CN = Example Silicon BC CA for Acme"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(path("ca/vendor-bc/key.pem")));

  // The vendor's key signs under the new sub-CA: the chain holds end to end.
  const auto leaf_key = tmp("chip.key");
  const auto leaf = tmp("chip.pem");
  r = run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout " +
          shell_quote(leaf_key) + " -subj '/CN=chip' -CA " + shell_quote(path("ca/vendor-bc/cert.pem")) +
          " -CAkey " + shell_quote(key) + " -days 1 -out " + shell_quote(leaf));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run("openssl verify -CAfile " + shell_quote(path("ca/root/cert.pem")) + " -untrusted " +
          shell_quote(chain) + " " + shell_quote(leaf));
  EXPECT_EQ(r.exit_code, 0) << r.output;

  r = hm("ca list");
  EXPECT_NE(r.output.find("vendor-bc  bc    root    vendor"), std::string::npos) << r.output;
  r = hm("cert issue --csr " + shell_quote(kVectors + "/idc.csr") + " --profile bc --ca vendor-bc");
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_EQ(
      r.output,
      "hallmark: error: CA 'vendor-bc' has no key here (its key is held by the vendor); it cannot sign\n");
  r = hm("ca sign-subca --csr " + shell_quote(csr) + " --role bc --name vendor-bc");
  EXPECT_EQ(r.exit_code, 4);
  EXPECT_EQ(r.output, "hallmark: error: a CA named 'vendor-bc' already exists\n");
}

TEST_F(Cli, CreatesAndExportsASubCa) {
  auto r = hm("ca create --name idc-2027 --role idc --parent root --key-type p384");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Created CA idc-2027: O=Acme Devices,CN=Acme Devices idc-2027 CA"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("(EC P-384, until "), std::string::npos) << r.output;
  const auto chain = tmp("idc-2027-chain.pem");
  r = hm("ca export-chain idc-2027 --out " + shell_quote(chain));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run("grep -c 'BEGIN CERTIFICATE' " + shell_quote(chain));
  EXPECT_EQ(r.output, "2\n");
  r = run("openssl verify -CAfile " + shell_quote(path("ca/root/cert.pem")) + " " +
          shell_quote(path("ca/idc-2027/cert.pem")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = hm("ca show idc-2027");
  EXPECT_NE(r.output.find("role:        idc"), std::string::npos) << r.output;
}

TEST_F(Cli, ImportsAnExternalVendorRoot) {
  auto r =
      hm("ca import-external " + shell_quote(kSamples + "/microchip/Crypto_Authentication_Root_CA_002.crt") +
         " --name microchip-root --role bc");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = hm("ca list");
  EXPECT_NE(r.output.find("microchip-root"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("external"), std::string::npos) << r.output;
  r = hm("ca import-external " + shell_quote(kVectors + "/bc.pem") + " --name not-a-ca");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output,
            "hallmark: error: CN=sn0123F2408EA1FCF201,O=Example Silicon is not a CA certificate "
            "(basicConstraints CA is "
            "not true)\n");
  EXPECT_FALSE(fs::exists(path("ca/not-a-ca")));
}

TEST_F(Cli, ErrorsAreSpecificWithStableExitCodes) {
  auto r = run(std::string(HALLMARK_CLI) + " --home " + shell_quote(tmp("nowhere")) + " ca list");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.output, "hallmark: error: no PKI home at " + tmp("nowhere") +
                          " (no hallmark.toml); create one with 'hallmark init --home " + tmp("nowhere") +
                          "'\n");
  r = hm("cert issue --csr " + shell_quote(kVectors + "/idc.csr") + " --profile nosuch");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.output, "hallmark: error: no profile named 'nosuch' (looked for profiles/nosuch.toml)\n");
  const auto garbage = tmp("garbage.csr");
  std::ofstream(garbage) << "not a csr";
  r = hm("cert issue --csr " + shell_quote(garbage) + " --profile idc");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(r.output.starts_with("hallmark: error: " + garbage + ": ")) << r.output;
  r = hm("ca create --name Bad/Name --role idc --parent root");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output,
            "hallmark: error: invalid CA name 'Bad/Name': use 1-63 of a-z 0-9 . _ - starting with a letter "
            "or digit\n");
  r = hm("ca create --name x --role boss --parent root");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output,
            "hallmark: error: unknown CA role 'boss' (roles: root, bc, idc, tls, ocsp, manifest-signer)\n");
  r = hm("cert issue --csr " + shell_quote(kVectors + "/idc.csr") + " --profile root");
  EXPECT_EQ(r.exit_code, 2);
}

TEST_F(Cli, ConfigIsValidatedWithExactMessages) {
  TempDir other("hallmark-cli-cfg");
  std::ofstream(other / "hallmark.toml") << "[pki]\norganisation = \"typo\"\n";
  auto r = run(std::string(HALLMARK_CLI) + " --home " + shell_quote(other.path().string()) + " ca list");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output, "hallmark: error: hallmark.toml: [pki]: unknown key 'organisation'\n");
  std::ofstream(other / "hallmark.toml", std::ios::trunc) << "[database]\nurl = \"mysql://x\"\n";
  r = run(std::string(HALLMARK_CLI) + " --home " + shell_quote(other.path().string()) + " ca list");
  EXPECT_EQ(r.output,
            "hallmark: error: hallmark.toml: [database] url must start with sqlite:, postgresql:// or "
            "postgres://\n");
  std::ofstream(other / "hallmark.toml", std::ios::trunc) << "[pki\n";
  r = run(std::string(HALLMARK_CLI) + " --home " + shell_quote(other.path().string()) + " ca list");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(r.output.starts_with("hallmark: error: hallmark.toml:1:")) << r.output;
}

TEST_F(Cli, EveryCommandHasHelp) {
  for (const char* cmd : {"",
                          "init",
                          "ca",
                          "ca list",
                          "ca show",
                          "ca create",
                          "ca sign-subca",
                          "ca export-chain",
                          "ca import-external",
                          "cert",
                          "cert issue",
                          "cert show",
                          "profile",
                          "profile list",
                          "profile show",
                          "db migrate",
                          "db check",
                          "audit verify",
                          "audit list",
                          "cert list",
                          "cert export",
                          "manifest import",
                          "device mount",
                          "device show",
                          "device retire",
                          "vendor init",
                          "vendor request-subca",
                          "vendor install-subca",
                          "vendor provision",
                          "serve",
                          "proxy issue-cert",
                          "proxy nginx-config"}) {
    const auto r = run(std::string(HALLMARK_CLI) + " " + cmd + " --help");
    EXPECT_EQ(r.exit_code, 0) << cmd;
    EXPECT_NE(r.output.find("Usage:"), std::string::npos) << cmd << ": " << r.output;
  }
}

TEST_F(Cli, PassphraseFromTheEnvironment) {
  TempDir other("hallmark-cli-env");
  const auto home = (other.path() / "h").string();
  auto r = run("HM_TEST_PASS=s3cret " + std::string(HALLMARK_CLI) + " --home " + shell_quote(home) +
               " init --passphrase-env HM_TEST_PASS");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(fs::exists(home + "/secrets/ca-passphrase"));
  EXPECT_EQ(run("openssl pkey -in " + shell_quote(home + "/ca/root/key.pem") + " -passin pass:s3cret -noout")
                .exit_code,
            0);
  r = run(std::string(HALLMARK_CLI) + " --home " + shell_quote(home) +
          " ca create --name x --role idc --parent root");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.output, "hallmark: error: CA key passphrase: environment variable HM_TEST_PASS is not set\n");
}

}  // namespace
}  // namespace hallmark

namespace hallmark {
namespace {

// The vendor station through the OEM's inventory, on the command line: reels are imported once,
// mounted devices get end entities, the audit chain holds and detects tampering.
TEST(CliFactory, VendorReelsImportMountAndAudit) {
  TempDir dir("hallmark-cli-factory");
  const std::string cli = HALLMARK_CLI;
  const auto oem = [&](const std::string& args) {
    return run(cli + " --home " + shell_quote(dir / "oem") + " " + args);
  };
  const auto vendor = [&](const std::string& args) {
    return run(cli + " vendor --vendor-home " + shell_quote(dir / "vendor") + " " + args);
  };
  ASSERT_EQ(oem("init --org 'Acme Devices'").exit_code, 0);
  auto r = vendor("init --org 'Example Silicon'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = vendor("request-subca --role bc --oem Acme --out " + shell_quote(dir / "bc.csr"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = oem("ca sign-subca --csr " + shell_quote(dir / "bc.csr") + " --role bc --name vendor-bc --out " +
          shell_quote(dir / "bc-chain.pem"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = vendor("install-subca --role bc --chain " + shell_quote(dir / "bc-chain.pem"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = vendor("provision --mode bc --count 5 --part-number ATECC608B-TFLXTLS --reel R1 --out " +
             shell_quote(dir / "reels"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Provisioned 5 chips (mode bc, reel R1)"), std::string::npos) << r.output;
  r = vendor("provision --mode bc --count 5 --part-number ATECC608B-TFLXTLS --reel R1 --out " +
             shell_quote(dir / "reels2"));
  EXPECT_NE(r.exit_code, 0) << r.output;  // a reel id is never reused

  const auto signers = dir / "vendor/signer/cert.pem";
  const auto roots = dir / "oem/ca/root/cert.pem";
  const auto import = "manifest import " + shell_quote(dir / "reels/R1.json") + " --signers " +
                      shell_quote(signers) + " --vendor-roots " + shell_quote(roots) + " --report " +
                      shell_quote(dir / "report.json");
  r = oem(import);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto report = read_text_file(dir / "report.json").value();
  EXPECT_NE(report.find("\"imported\": 5"), std::string::npos) << report;
  r = oem(import);  // the same file again changes nothing
  ASSERT_EQ(r.exit_code, 0) << r.output;
  report = read_text_file(dir / "report.json").value();
  EXPECT_NE(report.find("\"already_present\": 5"), std::string::npos) << report;
  // Without the pinned signer every entry is rejected with its reason, and the exit code says so.
  r = oem("manifest import " + shell_quote(dir / "reels/R1.json") + " --vendor-roots " + shell_quote(roots));
  EXPECT_EQ(r.exit_code, 2) << r.output;

  // Mount the first chip of the reel by unique id; then again (reported, not silently skipped).
  const auto manifest = read_text_file(dir / "reels/R1.json").value();
  const auto at = manifest.find("\"uniqueId\": \"");
  ASSERT_NE(at, std::string::npos);
  const auto unique_id = manifest.substr(at + 13, 18);
  r = oem("device mount --unique-id " + unique_id + " --station line-7");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = oem("device mount --unique-id " + unique_id);
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_NE(r.output.find("already"), std::string::npos) << r.output;
  r = oem("device mount --unique-id 01ffffffffffffffff");
  EXPECT_EQ(r.exit_code, 4) << r.output;
  r = oem("device show " + unique_id + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\"state\": \"mounted\""), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("line-7"), std::string::npos) << r.output;

  r = oem("device list --state mounted --reel R1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(unique_id), std::string::npos) << r.output;
  r = oem("device list --state received --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find(unique_id), std::string::npos) << r.output;  // mounted, so not listed
  EXPECT_NE(r.output.find("\"state\": \"received\""), std::string::npos) << r.output;
  r = oem("device list --state lost");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = oem("device list --reel NO-SUCH-REEL");
  EXPECT_EQ(r.exit_code, 3) << r.output;

  r = oem("db check");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("chain intact"), std::string::npos) << r.output;
  r = oem("audit verify");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = oem("cert export --serial 00ff");
  EXPECT_EQ(r.exit_code, 3) << r.output;

  // Tamper with one audit row directly: verify names it.
  ASSERT_EQ(run("sqlite3 " + shell_quote(dir / "oem/hallmark.db") +
                " \"UPDATE audit SET reason='edited' WHERE id=2\"")
                .exit_code,
            0);
  r = oem("audit verify");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("audit chain BROKEN at record 2"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace hallmark
