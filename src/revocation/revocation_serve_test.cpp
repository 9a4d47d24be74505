// End to end: the real `hallmark serve` with its revocation listener on 127.0.0.1 port 0, checked with
// tools nobody here wrote: `openssl ocsp` (good, revoked after `hallmark cert revoke`, unknown, nonce,
// the delegated responder's signature), `openssl crl -text` and `openssl verify -crl_check` on the
// published CRLs, and curl for enrollment and the HTTP headers. Devices enroll over EST with curl.
#include <chrono>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "serve_harness.hpp"

namespace hallmark {
namespace {

namespace fs = std::filesystem;
using namespace hallmark::testing;

class RevocationServe : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("hallmark-revocation");
    init_home(home(), server_config(1, 2) + R"(
[revocation]
listen = "127.0.0.1"
port = 0
threads = 1
handler_threads = 2
poll_interval = "100ms"
crl_interval = "1h"
next_update = "1d"
ocsp_validity = "10m"
crl_reload_command = "touch reloaded.flag"
)");
    ASSERT_FALSE(HasFatalFailure());
    store_ = open_migrated_store("sqlite:" + home() + "/hallmark.db").release();
    ASSERT_NE(store_, nullptr);
    setup_option1();
    // The reload command runs in the home (a relative path above).
    const auto rport_file = tmp("rport");
    serve_ = new ServeProcess();
    start_serve(*serve_, home(), dir(), {}, {"--revocation-port-file", rport_file}, home());
    if (HasFatalFailure()) return;
    rport_ = std::stoi(slurp(rport_file));
  }

  static void TearDownTestSuite() {
    delete serve_;
    serve_ = nullptr;
    delete store_;
    store_ = nullptr;
    delete dir_;
  }

  // Option 1: the vendor holds the IDC sub-CA key, provisions IDCs, and issues the OEM a delegated
  // OCSP responder certificate; the OEM imports the reel.
  static void setup_option1() {
    const std::string vendor =
        std::string(HALLMARK_CLI) + " vendor --vendor-home " + shell_quote(tmp("vendor"));
    const auto step = [](const std::string& command) {
      const auto r = run(command + " 2>&1");
      EXPECT_EQ(r.exit_code, 0) << command << "\n" << r.output;
      return r;
    };
    step(vendor + " init --org 'Example Silicon'");
    step(vendor + " request-subca --role idc --oem Acme --out " + shell_quote(tmp("subca.csr")));
    step(cli("ca sign-subca --csr " + shell_quote(tmp("subca.csr")) + " --role idc --name vendor-idc --out " +
             shell_quote(tmp("subca-chain.pem"))));
    step(vendor + " install-subca --role idc --chain " + shell_quote(tmp("subca-chain.pem")));
    step(vendor + " provision --mode idc --count 2 --part-number ATECC608B-TFLXTLS --reel R-OPT1 --out " +
         shell_quote(tmp("reels")));
    fs::create_directories(tmp("signers"));
    fs::create_directories(tmp("roots"));
    fs::copy_file(tmp("vendor") + "/signer/cert.pem", tmp("signers") + "/vendor.pem");
    fs::copy_file(home() + "/ca/root/cert.pem", tmp("roots") + "/oem.pem");
    step(cli("manifest import " + shell_quote(tmp("reels") + "/R-OPT1.json") + " --signers " +
             shell_quote(tmp("signers")) + " --vendor-roots " + shell_quote(tmp("roots"))));
    step(cli("ocsp request --ca vendor-idc --out " + shell_quote(tmp("ocsp.csr"))));
    const auto issued = step(vendor + " issue-ocsp-delegate --csr " + shell_quote(tmp("ocsp.csr")) +
                             " --out " + shell_quote(tmp("delegate.pem")));
    EXPECT_TRUE(contains(issued.output, "Issued OCSP delegate")) << issued.output;
    step(cli("ocsp install --ca vendor-idc --cert " + shell_quote(tmp("delegate.pem"))));
  }

  static std::string home() { return (dir_->path() / "home").string(); }
  static std::string tmp(const std::string& name) { return (dir_->path() / name).string(); }
  static std::string dir() { return dir_->path().string(); }
  static std::string url(const std::string& path) { return serve_->url(path); }
  static std::string http_url(const std::string& path) {
    return "http://127.0.0.1:" + std::to_string(rport_) + path;
  }
  static std::string cli(const std::string& args) {
    return std::string(HALLMARK_CLI) + " --home " + shell_quote(home()) + " " + args;
  }

  static Device make_device() { return testing::make_device(*store_, home(), dir()); }

  // Enrolls `d` over EST with curl (the default alias: the BC is revoked after issuance); the IDC's
  // PEM file, its device key in `key_out`.
  static std::string enroll(const Device& d, std::string* key_out = nullptr) {
    const auto device_key = new_key_file(dir());
    const auto csr = openssl_csr(dir(), device_key, "/serialNumber=" + d.ukid + "/CN=widget");
    const auto h = curl(home(), dir(),
                        "--cert " + shell_quote(d.chain) + " --key " + shell_quote(d.key) + " " +
                            enroll_body_args(csr) + " " + shell_quote(url("/.well-known/est/simpleenroll")));
    EXPECT_EQ(h.status, 200) << h.output << h.body;
    const auto idc = tmp(d.unique_id + ".idc.pem");
    spit(idc, certs_of(dir(), h.body));
    if (key_out != nullptr) *key_out = device_key;
    return idc;
  }

  static std::string serial_of(const std::string& pem_file) {
    auto c = x509::Certificate::load(pem_file);
    EXPECT_TRUE(c);
    return c ? c->serial_hex() : std::string();
  }

  // `openssl ocsp` for `cert_args` (-cert FILE or -serial 0x..) under CA `ca`, verified with the CA's
  // delegated responder certificate as the only trusted signer (-VAfile).
  static testing::CommandResult ocsp(const std::string& ca, const std::string& cert_args,
                                     const std::string& extra = {}) {
    return run("openssl ocsp -issuer " + shell_quote(home() + "/ca/" + ca + "/cert.pem") + " " + cert_args +
               " -url " + shell_quote(http_url("/ocsp")) + " -VAfile " +
               shell_quote(home() + "/ocsp/" + ca + ".pem") + " -resp_text " + extra + " 2>&1");
  }

  // Polls until `pred` holds for the command's output (the job follows the store every 100 ms).
  static testing::CommandResult until(const std::function<testing::CommandResult()>& cmd,
                                      const std::function<bool(const std::string&)>& pred) {
    testing::CommandResult r;
    for (int i = 0; i < 100; ++i) {
      r = cmd();
      if (pred(r.output)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return r;
  }

  static TempDir* dir_;
  static store::Store* store_;
  static ServeProcess* serve_;
  static int rport_;
};
TempDir* RevocationServe::dir_ = nullptr;
store::Store* RevocationServe::store_ = nullptr;
ServeProcess* RevocationServe::serve_ = nullptr;
int RevocationServe::rport_ = 0;

TEST_F(RevocationServe, OpensslOcspGoodRevokedUnknownWithNonce) {
  const auto d = make_device();
  const auto idc = enroll(d);
  const auto serial = serial_of(idc);

  auto r = ocsp("idc", "-cert " + shell_quote(idc));
  EXPECT_TRUE(contains(r.output, "Response verify OK")) << r.output;
  EXPECT_TRUE(contains(r.output, idc + ": good")) << r.output;
  // openssl sends a nonce by default and warns when the response lacks it.
  EXPECT_TRUE(contains(r.output, "OCSP Nonce")) << r.output;
  EXPECT_FALSE(contains(r.output, "WARNING: no nonce in response")) << r.output;
  EXPECT_FALSE(contains(r.output, "nonce verify error")) << r.output;
  EXPECT_TRUE(contains(r.output, "Responder Id:")) << r.output;

  // Without a nonce: the pre-produced response, still signed by the delegate.
  r = ocsp("idc", "-cert " + shell_quote(idc), "-no_nonce");
  EXPECT_TRUE(contains(r.output, "Response verify OK")) << r.output;
  EXPECT_TRUE(contains(r.output, ": good")) << r.output;

  // Signed by anyone else than the trusted delegate, the response does not verify.
  const auto wrong = run("openssl ocsp -issuer " + shell_quote(home() + "/ca/idc/cert.pem") + " -cert " +
                         shell_quote(idc) + " -url " + shell_quote(http_url("/ocsp")) + " -VAfile " +
                         shell_quote(home() + "/tls/server.pem") + " 2>&1");
  EXPECT_TRUE(contains(wrong.output, "Response Verify Failure")) << wrong.output;

  auto rv = run(cli("cert revoke --serial " + serial + " --reason keyCompromise"));
  ASSERT_EQ(rv.exit_code, 0) << rv.output;
  EXPECT_TRUE(contains(rv.output, "Revoked certificate " + serial + " (CA idc, reason keyCompromise"))
      << rv.output;
  r = until([&] { return ocsp("idc", "-cert " + shell_quote(idc), "-no_nonce"); },
            [&](const std::string& out) { return contains(out, ": revoked"); });
  EXPECT_TRUE(contains(r.output, idc + ": revoked")) << r.output;
  EXPECT_TRUE(contains(r.output, "Reason: keyCompromise")) << r.output;
  EXPECT_TRUE(contains(r.output, "Revocation Time:")) << r.output;
  EXPECT_TRUE(contains(r.output, "Response verify OK")) << r.output;
  r = ocsp("idc", "-cert " + shell_quote(idc));
  EXPECT_TRUE(contains(r.output, ": revoked")) << r.output;

  // Never issued.
  r = ocsp("idc", "-serial 0x0badc0ffee0123456789");
  EXPECT_TRUE(contains(r.output, ": unknown")) << r.output;
  EXPECT_TRUE(contains(r.output, "Response verify OK")) << r.output;

  // The Option 2 BC was revoked by the RA after issuance: its own CA's responder says so.
  const auto bc_pem = tmp(d.unique_id + ".bc.pem");
  spit(bc_pem, slurp(d.chain).substr(0, slurp(d.chain).find("-----END CERTIFICATE-----") + 26));
  r = until([&] { return ocsp("bc", "-cert " + shell_quote(bc_pem)); },
            [](const std::string& out) { return contains(out, ": revoked"); });
  EXPECT_TRUE(contains(r.output, ": revoked")) << r.output;
  EXPECT_TRUE(contains(r.output, "Reason: superseded")) << r.output;
  EXPECT_TRUE(contains(r.output, "Response verify OK")) << r.output;

  // GET form (RFC 6960 Appendix A.1): base64 of the DER request in the path.
  const auto req = tmp("req.der");
  ASSERT_EQ(run("openssl ocsp -issuer " + shell_quote(home() + "/ca/idc/cert.pem") + " -cert " +
                shell_quote(idc) + " -no_nonce -reqout " + shell_quote(req))
                .exit_code,
            0);
  const auto b64 = crypto::base64_encode(*read_file(req));
  std::string escaped;
  for (char ch : b64)
    escaped += ch == '+' ? "%2B" : ch == '/' ? "%2F" : ch == '=' ? "%3D" : std::string(1, ch);
  const auto resp = tmp("resp.der");
  auto g =
      run("curl -sS --fail -D - -o " + shell_quote(resp) + " " + shell_quote(http_url("/ocsp/" + escaped)));
  ASSERT_EQ(g.exit_code, 0) << g.output;
  EXPECT_TRUE(contains(g.output, "application/ocsp-response")) << g.output;
  EXPECT_TRUE(contains(g.output, "max-age=300")) << g.output;
  r = run("openssl ocsp -respin " + shell_quote(resp) + " -resp_text -noverify 2>&1");
  EXPECT_TRUE(contains(r.output, "Cert Status: revoked")) << r.output;
}

TEST_F(RevocationServe, PublishedCrlsWithOpensslCrlAndVerify) {
  const auto revoked_device = make_device();
  const auto good_device = make_device();
  const auto revoked_idc = enroll(revoked_device);
  const auto good_idc = enroll(good_device);
  const auto serial = serial_of(revoked_idc);
  auto rv = run(cli("cert revoke --serial " + serial + " --reason superseded"));
  ASSERT_EQ(rv.exit_code, 0) << rv.output;

  // Over HTTP, DER with cache headers; polled until the job has regenerated it.
  std::string upper = serial;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const auto crl_der = tmp("idc.crl");
  auto text = until(
      [&] {
        run("curl -sS --fail -o " + shell_quote(crl_der) + " " + shell_quote(http_url("/crl/idc.crl")));
        return run("openssl crl -inform DER -in " + shell_quote(crl_der) + " -noout -text");
      },
      [&](const std::string& out) { return contains(out, upper); });
  EXPECT_TRUE(contains(text.output, "Serial Number: " + upper)) << text.output;
  EXPECT_TRUE(contains(text.output, "Superseded")) << text.output;
  EXPECT_TRUE(contains(text.output, "X509v3 CRL Number")) << text.output;
  EXPECT_TRUE(contains(text.output, "X509v3 Authority Key Identifier")) << text.output;
  EXPECT_TRUE(contains(text.output, "Next Update:")) << text.output;
  const auto h = run("curl -sS --fail -D - -o /dev/null " + shell_quote(http_url("/crl/idc.crl")));
  EXPECT_TRUE(contains(h.output, "Content-Type: application/pkix-crl")) << h.output;
  EXPECT_TRUE(contains(h.output, "ETag: \"idc-")) << h.output;
  EXPECT_TRUE(contains(h.output, "Last-Modified: ")) << h.output;
  EXPECT_TRUE(contains(h.output, "Cache-Control: public, max-age=")) << h.output;
  EXPECT_EQ(run("curl -sS --fail -o /dev/null " + shell_quote(http_url("/crl/nope.crl"))).exit_code, 22);

  // openssl verify with the published CRL: the revoked IDC fails, the good one passes.
  const auto chain = tmp("idc-chain.pem");
  spit(chain, slurp(home() + "/ca/idc/cert.pem") + slurp(home() + "/ca/root/cert.pem"));
  const auto crl_pem = tmp("idc-crl.pem");
  ASSERT_EQ(
      run("openssl crl -inform DER -in " + shell_quote(crl_der) + " -out " + shell_quote(crl_pem)).exit_code,
      0);
  auto v = run("openssl verify -crl_check -CAfile " + shell_quote(chain) + " -CRLfile " +
               shell_quote(crl_pem) + " " + shell_quote(revoked_idc) + " 2>&1");
  EXPECT_NE(v.exit_code, 0) << v.output;
  EXPECT_TRUE(contains(v.output, "certificate revoked")) << v.output;
  v = run("openssl verify -crl_check -CAfile " + shell_quote(chain) + " -CRLfile " + shell_quote(crl_pem) +
          " " + shell_quote(good_idc) + " 2>&1");
  EXPECT_EQ(v.exit_code, 0) << v.output;

  // The file for nginx: every CA's CRL (also the root's, for the intermediates) so that a whole-chain
  // check (nginx's ssl_crl) passes for a good certificate; the reload command ran.
  const auto bundle = home() + "/crl/nginx.pem";
  v = until(
      [&] {
        return run("openssl verify -crl_check_all -CAfile " + shell_quote(chain) + " -CRLfile " +
                   shell_quote(bundle) + " " + shell_quote(revoked_idc) + " 2>&1");
      },
      [](const std::string& out) { return contains(out, "certificate revoked"); });
  EXPECT_TRUE(contains(v.output, "certificate revoked")) << v.output;
  v = run("openssl verify -crl_check_all -CAfile " + shell_quote(chain) + " -CRLfile " + shell_quote(bundle) +
          " " + shell_quote(good_idc) + " 2>&1");
  EXPECT_EQ(v.exit_code, 0) << v.output;
  EXPECT_TRUE(fs::exists(home() + "/crl/idc.crl"));
  EXPECT_TRUE(fs::exists(home() + "/reloaded.flag")) << serve_->log();

  // The BCs revoked after issuance are on the BC CA's CRL, with the good device's too.
  const auto bc_text = until(
      [&] {
        return run("openssl crl -inform DER -in " + shell_quote(home() + "/crl/bc.crl") + " -noout -text");
      },
      [&](const std::string& out) {
        std::string u = good_device.bc_serial;
        for (auto& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        return contains(out, u);
      });
  std::string bc_upper = revoked_device.bc_serial;
  for (auto& c : bc_upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_TRUE(contains(bc_text.output, bc_upper)) << bc_text.output;

  // hallmark's own view of the stored CRL.
  auto show = run(cli("crl show --ca idc"));
  ASSERT_EQ(show.exit_code, 0) << show.output;
  EXPECT_TRUE(contains(show.output, serial)) << show.output;
  EXPECT_TRUE(contains(show.output, "superseded")) << show.output;
}

TEST_F(RevocationServe, CertRevokeErrorsAndDeviceRetire) {
  auto r = run(cli("cert revoke --serial 01 --reason stolen"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output,
            "hallmark: error: unknown revocation reason 'stolen' (reasons: unspecified, keyCompromise, "
            "cACompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn, "
            "aACompromise)\n");
  r = run(cli("cert revoke --serial 0badc0ffee"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_TRUE(contains(r.output, "hallmark: error: no certificate with serial 0badc0ffee")) << r.output;
  r = run(cli("cert revoke --serial xyz"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(r.output, "hallmark: error: serial 'xyz' is not hexadecimal\n");
  r = run(cli("cert revoke --reason keyCompromise"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(r.output, "hallmark: error: cert revoke needs --serial or --ukid\n");

  // By UKID, then again: conflict. Nothing else changed.
  const auto d = make_device();
  std::string device_key;
  const auto idc = enroll(d, &device_key);
  const auto serial = serial_of(idc);
  r = run(cli("cert revoke --ukid " + d.ukid + " --reason cessationOfOperation"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "Revoked certificate " + serial + " (CA idc, reason cessationOfOperation"));
  r = run(cli("cert revoke --serial " + serial));
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_EQ(r.output, "hallmark: error: certificate " + serial + " is already revoked\n");
  EXPECT_EQ(store_->find_certificate_by_serial(serial)->reason, 5);

  // device retire revokes the good IDCs, then the revoked IDC cannot re-enroll.
  const auto e = make_device();
  std::string e_key;
  const auto e_idc = enroll(e, &e_key);
  r = run(cli("device retire " + e.unique_id + " --reason 'scrapped'"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output,
                       "Revoked certificate " + serial_of(e_idc) + " (CA idc, reason cessationOfOperation)"))
      << r.output;
  EXPECT_EQ(store_->find_certificate_by_serial(serial_of(e_idc))->status, store::CertificateStatus::revoked);
  const auto der = tmp("re.der");
  run("openssl req -new -key " + shell_quote(e_key) + " -subj /CN=widget -outform DER -out " +
      shell_quote(der) + " && openssl base64 -in " + shell_quote(der) + " -out " + shell_quote(der + ".b64"));
  const auto code =
      run("curl -sS -o /dev/null -w '%{http_code}' --cacert " + shell_quote(home() + "/ca/root/cert.pem") +
          " --cert " + shell_quote(e_idc) + " --key " + shell_quote(e_key) +
          " -H 'Content-Type: application/pkcs10' --data-binary @" + shell_quote(der + ".b64") + " " +
          shell_quote(url("/.well-known/est/simplereenroll")));
  EXPECT_EQ(code.output, "403") << code.output;
}

TEST_F(RevocationServe, Option1VendorIssuedIdcsThroughTheVendorsDelegate) {
  // The chips of the reel carry IDCs the vendor issued; hallmark learned them from the manifest.
  std::vector<std::string> idcs;
  for (const auto& entry : fs::directory_iterator(tmp("reels") + "/chips")) {
    const auto image = nlohmann::json::parse(slurp(entry.path().string()));
    std::string chain;
    for (const auto& pem : image.at("certificateChain")) chain += pem.get<std::string>();
    const auto file = tmp(entry.path().stem().string() + ".opt1.pem");
    spit(file, chain);
    idcs.push_back(file);
  }
  ASSERT_EQ(idcs.size(), 2u);
  auto r = ocsp("vendor-idc", "-cert " + shell_quote(idcs[0]));
  EXPECT_TRUE(contains(r.output, "Response verify OK")) << r.output;
  EXPECT_TRUE(contains(r.output, idcs[0] + ": good")) << r.output;

  // The delegate the vendor issued: OCSPSigning and ocsp-nocheck, under the vendor-held sub-CA.
  const auto text = run("openssl x509 -in " + shell_quote(home() + "/ocsp/vendor-idc.pem") + " -noout -text");
  EXPECT_TRUE(contains(text.output, "OCSP Signing")) << text.output;
  EXPECT_TRUE(contains(text.output, "OCSP No Check")) << text.output;

  // Revoked at the OEM by serial: recorded from the device row, answered revoked; the other stays good.
  const auto serial = serial_of(idcs[0]);
  auto rv = run(cli("cert revoke --serial " + serial + " --reason keyCompromise"));
  ASSERT_EQ(rv.exit_code, 0) << rv.output;
  EXPECT_TRUE(contains(rv.output, "(CA vendor-idc, reason keyCompromise")) << rv.output;
  r = until([&] { return ocsp("vendor-idc", "-cert " + shell_quote(idcs[0]), "-no_nonce"); },
            [](const std::string& out) { return contains(out, ": revoked"); });
  EXPECT_TRUE(contains(r.output, ": revoked")) << r.output;
  EXPECT_TRUE(contains(r.output, "Reason: keyCompromise")) << r.output;
  EXPECT_TRUE(contains(r.output, "Response verify OK")) << r.output;
  r = ocsp("vendor-idc", "-cert " + shell_quote(idcs[1]));
  EXPECT_TRUE(contains(r.output, ": good")) << r.output;
  // No CRL for a CA whose key hallmark does not hold.
  EXPECT_EQ(run("curl -sS --fail -o /dev/null " + shell_quote(http_url("/crl/vendor-idc.crl"))).exit_code,
            22);
}

TEST_F(RevocationServe, CrlGenerateAndShowOffline) {
  auto r = run(cli("crl generate --ca idc --next-update 12h"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "CRL of CA idc: number ")) << r.output;
  r = run(cli("crl show --file " + shell_quote(home() + "/crl/idc.crl")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "CRL number:")) << r.output;
  EXPECT_TRUE(contains(r.output, "Acme Devices IDC Issuing CA")) << r.output;
  r = run(cli("crl show --ca tls"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = run(cli("crl generate --ca nope"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output, "hallmark: error: --ca: no CA named 'nope'\n");
  r = run(cli("crl generate --ca vendor-idc"));
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_EQ(r.output,
            "hallmark: error: CA 'vendor-idc' has no key here (held by the vendor): hallmark cannot sign its "
            "CRL\n");
  r = run(cli("crl generate --next-update soon"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output, "hallmark: error: --next-update 'soon' is not a duration such as 12h, 1d or 7d\n");
}

}  // namespace
}  // namespace hallmark
