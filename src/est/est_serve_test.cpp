// End to end: the real `hallmark serve` on 127.0.0.1 port 0, driven by clients nobody here wrote
// (curl + openssl, strongSwan's pki when installed). The PKI home comes from `hallmark init`; the
// device's birth certificate is issued under the home's BC CA and put in the inventory through the
// store and inventory APIs, as a manifest import and the factory's mount would.
#include <chrono>
#include <filesystem>

#include "serve_harness.hpp"

namespace hallmark {
namespace {

namespace fs = std::filesystem;
using namespace hallmark::testing;

class Serve : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("hallmark-serve");
    init_home(home(), server_config(1, 2) + R"(header_timeout = "2s"
drain_delay = "0"
drain_timeout = "5s"
)" + default_alias_config("widget", "bc") +
                          R"(
[est.alias.keygen]
ca = "idc"
enroll_anchors = ["bc"]
serverkeygen = true
base64_wrap = true

[est.alias.nosan]
ca = "idc"
profile = "idc-nosan"
enroll_anchors = ["bc"]
)");
    ASSERT_FALSE(HasFatalFailure());
    // strongSwan 5.9.8 cannot parse a PKCS#10 request with an otherName SAN, so it cannot re-enroll
    // an IDC with hardwareModuleName: its test uses this profile (the idc profile without that SAN).
    std::string idc = slurp(home() + "/profiles/idc.toml");
    idc.replace(idc.find("name = \"idc\""), 12, "name = \"idc-nosan\"");
    idc.erase(idc.find("hardware_module_name_type"), idc.find('\n', idc.find("hardware_module_name_type")) -
                                                         idc.find("hardware_module_name_type") + 1);
    spit(home() + "/profiles/idc-nosan.toml", idc);
    store_ = open_migrated_store("sqlite:" + home() + "/hallmark.db").release();
    ASSERT_NE(store_, nullptr);
    serve_ = new ServeProcess();
    start_serve(*serve_, home(), dir_->path().string());
  }

  static void TearDownTestSuite() {
    delete serve_;  // SIGKILL if a test did not stop it
    serve_ = nullptr;
    delete store_;
    store_ = nullptr;
    delete dir_;
  }

  static std::string home() { return (dir_->path() / "home").string(); }
  static std::string dir() { return dir_->path().string(); }
  static std::string tmp(const std::string& name) { return (dir_->path() / name).string(); }
  static std::string url(const std::string& path) { return serve_->url(path); }
  static std::string root_pem() { return home() + "/ca/root/cert.pem"; }

  static Device make_device(bool mount = true) { return testing::make_device(*store_, home(), dir(), mount); }

  static std::size_t certificate_count() {
    auto list = store_->list_certificates(store::CertificateFilter{});
    return list ? list->size() : 0;
  }

  static Http curl(const std::string& args) { return testing::curl(home(), dir(), args); }
  static std::string openssl_csr(const std::string& key_file, const std::string& subject,
                                 const std::string& extra = {}) {
    return testing::openssl_csr(dir(), key_file, subject, extra);
  }
  static std::string new_key_file() { return testing::new_key_file(dir()); }
  static std::string certs_of(const std::string& body) { return testing::certs_of(dir(), body); }

  // Enrolls `d` with curl and a new key; returns {IDC PEM file, device key file}.
  static std::pair<std::string, std::string> enroll_with_curl(const Device& d,
                                                              const std::string& alias = "widget") {
    const auto device_key = new_key_file();
    const auto csr = openssl_csr(device_key, "/serialNumber=" + d.ukid + "/CN=widget");
    auto h =
        curl("--cert " + shell_quote(d.chain) + " --key " + shell_quote(d.key) + " " + enroll_body_args(csr) +
             " " + shell_quote(url("/.well-known/est/" + alias + "/simpleenroll")));
    EXPECT_EQ(h.status, 200) << h.output << h.body;
    const auto idc_file = tmp(d.unique_id + ".idc.pem");
    spit(idc_file, certs_of(h.body));
    return {idc_file, device_key};
  }

  static std::string renewal_config(const std::string& idc_pem) {
    auto parsed = x509::Certificate::parse_pem(idc_pem);
    EXPECT_TRUE(parsed);
    return parsed ? testing::renewal_config(dir(), *parsed) : std::string();
  }

  static TempDir* dir_;
  static store::Store* store_;
  static ServeProcess* serve_;
};
TempDir* Serve::dir_ = nullptr;
store::Store* Serve::store_ = nullptr;
ServeProcess* Serve::serve_ = nullptr;

TEST_F(Serve, CacertsWithCurlAndOpenssl) {
  auto h = curl(shell_quote(url("/.well-known/est/cacerts")));
  ASSERT_EQ(h.status, 200) << h.output << h.body;
  EXPECT_EQ(header_value(h.headers, "Content-Type"), "application/pkcs7-mime; smime-type=certs-only");
  EXPECT_EQ(header_value(h.headers, "Content-Transfer-Encoding"), "base64");
  EXPECT_EQ(header_value(h.headers, "Content-Length"), std::to_string(h.body.size()));
  const auto certs = certs_of(h.body);
  EXPECT_NE(certs.find("subject=O = Acme Devices, CN = Acme Devices IDC Issuing CA"), std::string::npos)
      << certs;
  EXPECT_NE(certs.find("subject=O = Acme Devices, CN = Acme Devices Root CA"), std::string::npos) << certs;
  // The alias path serves the same chain; the keygen alias wraps its base64.
  auto wrapped = curl(shell_quote(url("/.well-known/est/keygen/cacerts")));
  ASSERT_EQ(wrapped.status, 200);
  EXPECT_NE(wrapped.body.find('\n'), std::string::npos);
  EXPECT_EQ(h.body.find('\n'), std::string::npos);
}

TEST_F(Serve, SimpleenrollWithABcThenSimplereenrollWithTheIdc) {
  const auto d = make_device();
  const auto before = certificate_count();
  const auto device_key = new_key_file();
  const auto csr = openssl_csr(device_key, "/serialNumber=" + d.ukid + "/CN=widget");
  auto h = curl("--cert " + shell_quote(d.chain) + " --key " + shell_quote(d.key) + " " +
                enroll_body_args(csr) + " " + shell_quote(url("/.well-known/est/simpleenroll")));
  ASSERT_EQ(h.status, 200) << h.output << h.body << serve_->log();
  EXPECT_EQ(header_value(h.headers, "Content-Type"), "application/pkcs7-mime; smime-type=certs-only");
  const auto idc_pem = certs_of(h.body);
  EXPECT_NE(idc_pem.find("subject=serialNumber = " + d.ukid + ", O = Acme Devices, CN = Acme Widget"),
            std::string::npos)
      << idc_pem;
  const auto idc_file = tmp(d.unique_id + ".idc.pem");
  spit(idc_file, idc_pem);
  const auto chain_file = tmp("idc-ca.pem");
  spit(chain_file, slurp(home() + "/ca/idc/cert.pem"));
  auto v = run("openssl verify -CAfile " + shell_quote(root_pem()) + " -untrusted " +
               shell_quote(chain_file) + " " + shell_quote(idc_file));
  EXPECT_EQ(v.exit_code, 0) << v.output;
  EXPECT_EQ(certificate_count(), before + 1);

  // The same request id is in the response, the audit log and the server's request line.
  const auto request_id = header_value(h.headers, "X-Request-Id");
  ASSERT_FALSE(request_id.empty());
  auto audit = store_->list_audit(0, 1'000'000);
  ASSERT_TRUE(audit);
  bool audited = false;
  for (const auto& a : *audit) audited |= a.event.request_id == request_id && a.event.action == "enroll";
  EXPECT_TRUE(audited);
  EXPECT_NE(serve_->log().find("request_id=" + request_id), std::string::npos);
  auto device = store_->find_device(d.id);
  ASSERT_TRUE(device);
  EXPECT_TRUE(device->bc_revoked);

  // simplereenroll: TLS with the IDC and its key, a CSR for a new key with the IDC's subject and SAN.
  const auto conf = renewal_config(idc_pem);
  const auto new_key = new_key_file();
  const auto renewal = openssl_csr(new_key, "/serialNumber=" + d.ukid + "/O=Acme Devices/CN=Acme Widget",
                                   "-config " + shell_quote(conf));
  auto r = curl("--cert " + shell_quote(idc_file) + " --key " + shell_quote(device_key) + " " +
                enroll_body_args(renewal) + " " + shell_quote(url("/.well-known/est/widget/simplereenroll")));
  ASSERT_EQ(r.status, 200) << r.output << r.body;
  const auto renewed = certs_of(r.body);
  EXPECT_NE(renewed.find("subject=serialNumber = " + d.ukid), std::string::npos) << renewed;
  EXPECT_NE(renewed, idc_pem);
  EXPECT_EQ(certificate_count(), before + 2);

  // Re-enrolling with the BC instead is refused by policy.
  const auto again = openssl_csr(new_key_file(), "/serialNumber=" + d.ukid + "/O=Acme Devices/CN=Acme Widget",
                                 "-config " + shell_quote(conf));
  auto bc = curl("--cert " + shell_quote(d.chain) + " --key " + shell_quote(d.key) + " " +
                 enroll_body_args(again) + " " + shell_quote(url("/.well-known/est/simplereenroll")));
  EXPECT_EQ(bc.status, 403) << bc.body;
  EXPECT_NE(bc.body.find("\"code\":\"not-an-idc\""), std::string::npos) << bc.body;
  EXPECT_EQ(certificate_count(), before + 2);
}

TEST_F(Serve, BodyEncodingsChunkedAndFixedLengthAllWork) {
  const auto d = make_device();
  const auto key = new_key_file();
  const auto wrapped = openssl_csr(key, "/serialNumber=" + d.ukid);
  const auto flat = tmp("flat.b64");
  std::string text = slurp(wrapped);
  std::erase(text, '\n');
  spit(flat, text);
  const auto crlf = tmp("crlf.b64");
  std::string with_crlf;
  for (char c : slurp(wrapped)) {
    if (c == '\n') with_crlf += '\r';
    with_crlf += c;
  }
  spit(crlf, with_crlf);
  const auto before = certificate_count();
  std::string serial;
  const std::string tls = "--cert " + shell_quote(d.chain) + " --key " + shell_quote(d.key) + " ";
  for (const auto& [file, extra] : std::vector<std::pair<std::string, std::string>>{
           {wrapped, ""},
           {flat, ""},
           {crlf, "-H 'Content-Transfer-Encoding: base64'"},
           {flat, "-H 'Content-Transfer-Encoding: binary'"},
           {wrapped, "-H 'Transfer-Encoding: chunked'"},
           {flat, "-H 'Transfer-Encoding: chunked' -H 'Content-Transfer-Encoding: base64'"}}) {
    auto h = curl(tls + enroll_body_args(file) + " " + extra + " " +
                  shell_quote(url("/.well-known/est/simpleenroll")));
    ASSERT_EQ(h.status, 200) << file << " " << extra << ": " << h.output << h.body;
    const auto pem = certs_of(h.body);
    if (serial.empty()) serial = pem;
    EXPECT_EQ(pem, serial) << "a retry with the same key returns the same IDC";
  }
  EXPECT_EQ(certificate_count(), before + 1);
}

TEST_F(Serve, BadRequestsOverTheWire) {
  const auto d = make_device();
  const auto unmounted = make_device(false);
  const auto before = certificate_count();
  const auto csr = openssl_csr(new_key_file(), "/serialNumber=" + d.ukid);
  const std::string tls = "--cert " + shell_quote(d.chain) + " --key " + shell_quote(d.key) + " ";
  const auto big = tmp("big.b64");
  spit(big, std::string(10 * 1024 * 1024, 'A'));
  const auto garbage = tmp("garbage.b64");
  spit(garbage, "%%% not base64 %%%");
  const auto trailing_der = tmp("trailing.der");
  ASSERT_EQ(run("openssl base64 -d -in " + shell_quote(csr) + " -out " + shell_quote(trailing_der) +
                " && printf '\\000' >> " + shell_quote(trailing_der) + " && openssl base64 -in " +
                shell_quote(trailing_der) + " -out " + shell_quote(trailing_der + ".b64"))
                .exit_code,
            0);
  const auto unmounted_csr = openssl_csr(new_key_file(), "/serialNumber=" + unmounted.ukid);
  const std::string unmounted_tls =
      "--cert " + shell_quote(unmounted.chain) + " --key " + shell_quote(unmounted.key) + " ";

  struct Case {
    std::string args;
    int status;
    std::string code;
  };
  const std::vector<Case> cases{
      {enroll_body_args(csr) + " " + shell_quote(url("/.well-known/est/simpleenroll")), 401,
       "client-certificate-required"},
      {tls + "-H 'Content-Type: text/plain' --data-binary @" + shell_quote(csr) + " " +
           shell_quote(url("/.well-known/est/simpleenroll")),
       415, "unsupported-media-type"},
      {tls + enroll_body_args(garbage) + " " + shell_quote(url("/.well-known/est/simpleenroll")), 400,
       "bad-base64"},
      {tls + enroll_body_args(trailing_der + ".b64") + " " +
           shell_quote(url("/.well-known/est/simpleenroll")),
       400, "bad-csr"},
      {tls + enroll_body_args(big) + " " + shell_quote(url("/.well-known/est/simpleenroll")), 413, ""},
      {tls + enroll_body_args(csr) + " " + shell_quote(url("/.well-known/est/nope/simpleenroll")), 404,
       "unknown-alias"},
      {tls + enroll_body_args(csr) + " --path-as-is " + shell_quote(url("/.well-known/est/../simpleenroll")),
       404, ""},
      {tls + enroll_body_args(csr) + " " + shell_quote(url("/.well-known/est/a%2F..%2Fwidget/simpleenroll")),
       404, "unknown-alias"},
      {tls + enroll_body_args(csr) + " -H 'X-SSL-Client-Cert: spoofed' " +
           shell_quote(url("/.well-known/est/simpleenroll")),
       400, "spoofed-client-cert-header"},
      {unmounted_tls + enroll_body_args(unmounted_csr) + " " +
           shell_quote(url("/.well-known/est/simpleenroll")),
       403, "device-not-mounted"},
      {enroll_body_args(csr) + " " + shell_quote(url("/.well-known/est/fullcmc")), 501,
       "fullcmc-not-implemented"},
  };
  for (const auto& c : cases) {
    auto h = curl(c.args);
    EXPECT_EQ(h.status, c.status) << c.args << "\n" << h.output << h.body;
    if (!c.code.empty()) {
      EXPECT_NE(h.body.find("\"code\":\"" + c.code + "\""), std::string::npos) << c.args << h.body;
    }
    if (c.status != 413) {
      EXPECT_EQ(header_value(h.headers, "Content-Type"), "application/problem+json") << c.args;
    }
  }
  EXPECT_EQ(certificate_count(), before);
  const auto log = serve_->log();
  EXPECT_NE(log.find("problem=spoofed-client-cert-header"), std::string::npos);
}

TEST_F(Serve, ASlowHeaderClientIsClosedAtTheTimeout) {
  // One byte a second; [server] header_timeout is 2 s.
  const auto start = std::chrono::steady_clock::now();
  const auto r =
      run("(for c in G E T ' ' / h e a l t h z ' ' H T T P; do printf \"$c\"; sleep 1; done) | timeout 30 "
          "openssl s_client -quiet -connect 127.0.0.1:" +
          std::to_string(serve_->port()) + " 2>&1");
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 14.0) << r.output;  // the writer alone takes 15 s
  EXPECT_EQ(r.output.find("HTTP/1.1 200"), std::string::npos) << r.output;
}

TEST_F(Serve, ServerkeygenOverTheWire) {
  const auto d = make_device();
  const auto csr = openssl_csr(new_key_file(), "/serialNumber=" + d.ukid);
  auto h = curl("--cert " + shell_quote(d.chain) + " --key " + shell_quote(d.key) + " " +
                enroll_body_args(csr) + " " + shell_quote(url("/.well-known/est/keygen/serverkeygen")));
  ASSERT_EQ(h.status, 200) << h.output << h.body;
  EXPECT_EQ(header_value(h.headers, "Content-Type"), "multipart/mixed; boundary=hallmark-est-boundary");
  // The key part is a PKCS#8 key openssl reads.
  const auto begin = h.body.find("application/pkcs8");
  ASSERT_NE(begin, std::string::npos);
  const auto b64_begin = h.body.find("\r\n\r\n", begin) + 4;
  const auto key_b64 = h.body.substr(b64_begin, h.body.find("\r\n--", b64_begin) - b64_begin);
  const auto key_file = tmp("keygen.b64");
  spit(key_file, key_b64);
  auto r = run("openssl base64 -d -in " + shell_quote(key_file) + " | openssl pkey -inform DER -noout -text");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Private-Key: (256 bit"), std::string::npos) << r.output;
}

TEST_F(Serve, StrongswanPkiEstAndEstca) {
  if (run("command -v pki").exit_code != 0) {
    GTEST_SKIP()
        << "strongSwan's pki is not installed (Debian strongswan-pki with libstrongswan-standard-plugins "
           "and libstrongswan-extra-plugins; add them to scripts/install-deps)";
  }
  // pki writes plugin warnings on stderr: keep them out of the files it writes on stdout.
  const auto pki = [](const std::string& args, const std::string& out) {
    return run("(pki " + args + " 2>" + shell_quote(out + ".log") + ") > " + shell_quote(out) +
               "; rc=$?; cat " + shell_quote(out + ".log") + "; exit $rc");
  };
  const std::string server = "https://127.0.0.1:" + std::to_string(serve_->port());
  const auto cacerts_dir = tmp("pki-cacerts");
  fs::create_directories(cacerts_dir);
  auto ca = run("cd " + shell_quote(cacerts_dir) + " && pki --estca --url " + shell_quote(server) +
                " --cacert " + shell_quote(root_pem()) + " --caout cacert.pem --outform pem --force");
  ASSERT_EQ(ca.exit_code, 0) << ca.output;
  std::string fetched;
  for (const auto& e : fs::directory_iterator(cacerts_dir)) fetched += slurp(e.path().string());
  EXPECT_NE(fetched.find(slurp(home() + "/ca/idc/cert.pem").substr(0, 200)), std::string::npos) << fetched;

  // pki --est with --cert always re-enrolls (simplereenroll): its first enrollment is by HTTP Basic
  // without a client certificate, which the BC-based options do not take. So: enroll with curl, then
  // let strongSwan make the request and re-enroll with the IDC, on the alias without the
  // hardwareModuleName SAN (strongSwan's PKCS#10 parser rejects otherName SANs).
  const auto d = make_device();
  const auto [idc_file, device_key] = enroll_with_curl(d, "nosan");
  const auto before = certificate_count();
  const auto idc_der = tmp("pki-idc.der");
  const auto key_der = tmp("pki-key.der");
  ASSERT_EQ(run("openssl x509 -in " + shell_quote(idc_file) + " -outform DER -out " + shell_quote(idc_der))
                .exit_code,
            0);
  ASSERT_EQ(run("openssl pkey -in " + shell_quote(device_key) + " -outform DER -out " + shell_quote(key_der))
                .exit_code,
            0);
  const auto new_key = tmp("pki-new-key.der");
  auto gen = pki("--gen --type ecdsa --size 256 --outform der", new_key);
  ASSERT_EQ(gen.exit_code, 0) << gen.output;
  const auto csr = tmp("pki-renewal.der");
  auto req =
      pki("--req --type ecdsa --in " + shell_quote(new_key) + " --dn " +
              shell_quote("serialNumber=" + d.ukid + ", O=Acme Devices, CN=Acme Widget") + " --outform der",
          csr);
  ASSERT_EQ(req.exit_code, 0) << req.output;
  const auto out = tmp("pki-renewed.pem");
  auto reenroll = pki("--est --url " + shell_quote(server + "/.well-known/est/nosan") + " --cacert " +
                          shell_quote(root_pem()) + " --in " + shell_quote(csr) + " --cert " +
                          shell_quote(idc_der) + " --key " + shell_quote(key_der) + " --outform pem",
                      out);
  if (reenroll.exit_code != 0 && reenroll.output.find("HTTP 404") != std::string::npos) {
    // Older pki builds append /.well-known/est/ themselves: the default-alias form then.
    reenroll = pki("--est --url " + shell_quote(server) + " --cacert " + shell_quote(root_pem()) + " --in " +
                       shell_quote(csr) + " --cert " + shell_quote(idc_der) + " --key " +
                       shell_quote(key_der) + " --outform pem",
                   out);
  }
  ASSERT_EQ(reenroll.exit_code, 0) << reenroll.output << serve_->log();
  auto text = run("openssl x509 -in " + shell_quote(out) + " -noout -subject -pubkey");
  EXPECT_NE(text.output.find("serialNumber = " + d.ukid), std::string::npos) << text.output;
  auto pub = run("openssl pkey -inform DER -in " + shell_quote(new_key) + " -pubout");
  EXPECT_NE(text.output.find(pub.output), std::string::npos) << "the renewed IDC carries the new key";
  EXPECT_EQ(certificate_count(), before + 1);
}

// Last: SIGTERM drains and exits 0 (gtest runs the tests of a suite in order).
TEST_F(Serve, ZzSigtermDrainsAndExitsCleanly) {
  EXPECT_EQ(serve_->stop(), 0) << serve_->log();
  const auto log = serve_->log();
  EXPECT_NE(log.find("serve_stopping signal=SIGTERM"), std::string::npos) << log;
  EXPECT_NE(log.find("serve_stopped"), std::string::npos) << log;
}

}  // namespace
}  // namespace hallmark
