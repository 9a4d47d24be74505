// End to end: the real `hallmark serve` on 127.0.0.1 port 0, driven by clients nobody here wrote
// (curl + openssl, strongSwan's pki when installed). The PKI home comes from `hallmark init`; the
// device's birth certificate is issued under the home's BC CA and put in the inventory through the
// store and inventory APIs, as a manifest import and the factory's mount would.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "hallmark/ca/issuer.hpp"
#include "hallmark/ca/profile.hpp"
#include "hallmark/crypto/digest.hpp"
#include "hallmark/crypto/key.hpp"
#include "hallmark/inventory/devices.hpp"
#include "hallmark/store/store.hpp"
#include "process.hpp"

namespace hallmark {
namespace {

namespace fs = std::filesystem;
using testing::run;
using testing::shell_quote;

std::string slurp(const std::string& path) {
  auto t = read_text_file(path);
  return t ? *t : std::string();
}

void spit(const std::string& path, std::string_view text) {
  ASSERT_TRUE(write_file_atomic(path, as_bytes(text)));
}

class Serve : public ::testing::Test {
 protected:
  struct Device {
    std::string unique_id;
    std::string ukid;
    std::string key;    // PEM file of the BC key
    std::string chain;  // PEM file: BC then the BC CA
    store::Id id = 0;
  };

  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("hallmark-serve");
    const auto r = run(std::string(HALLMARK_CLI) + " --home " + shell_quote(home()) +
                       " init --org 'Acme Devices' --product 'Acme Widget'");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::ofstream(home() + "/hallmark.toml", std::ios::app) << R"(
[server]
listen = "127.0.0.1"
port = 0
threads = 1
handler_threads = 2
header_timeout = "2s"
drain_delay = "0"
drain_timeout = "5s"

[est]
default_alias = "widget"

[est.alias.widget]
ca = "idc"
enroll_anchors = ["bc"]
after_issue = "revoke-bc"

[est.alias.keygen]
ca = "idc"
enroll_anchors = ["bc"]
serverkeygen = true
base64_wrap = true

[est.alias.nosan]
ca = "idc"
profile = "idc-nosan"
enroll_anchors = ["bc"]
)";
    // strongSwan 5.9.8 cannot parse a PKCS#10 request with an otherName SAN, so it cannot re-enroll
    // an IDC with hardwareModuleName: its test uses this profile (the idc profile without that SAN).
    std::string idc = slurp(home() + "/profiles/idc.toml");
    idc.replace(idc.find("name = \"idc\""), 12, "name = \"idc-nosan\"");
    idc.erase(idc.find("hardware_module_name_type"), idc.find('\n', idc.find("hardware_module_name_type")) -
                                                         idc.find("hardware_module_name_type") + 1);
    spit(home() + "/profiles/idc-nosan.toml", idc);
    auto s = store::open_store("sqlite:" + home() + "/hallmark.db");
    ASSERT_TRUE(s) << s.error().detail;
    store_ = s->release();
    ASSERT_TRUE(store_->migrate());
    start_server();
  }

  static void TearDownTestSuite() {
    stop_server();
    delete store_;
    store_ = nullptr;
    delete dir_;
  }

  static void start_server() {
    const auto port_file = tmp("port");
    fs::remove(port_file);
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open(log_path().c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::execl(HALLMARK_CLI, "hallmark", "--home", home().c_str(), "serve", "--port-file", port_file.c_str(),
              nullptr);
      ::_exit(127);
    }
    for (int i = 0; i < 300 && !fs::exists(port_file); ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL() << "hallmark serve exited early:\n" << slurp(log_path());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ASSERT_TRUE(fs::exists(port_file)) << "no port file after 30 s:\n" << slurp(log_path());
    port_ = std::stoi(slurp(port_file));
  }

  // SIGTERM, then the exit status (-1 when it did not exit within 15 s).
  static int stop_server() {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 150; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    return -1;
  }

  static std::string home() { return (dir_->path() / "home").string(); }
  static std::string tmp(const std::string& name) { return (dir_->path() / name).string(); }
  static std::string log_path() { return tmp("serve.log"); }
  static std::string url(const std::string& path) {
    return "https://127.0.0.1:" + std::to_string(port_) + path;
  }
  static std::string root_pem() { return home() + "/ca/root/cert.pem"; }

  // A birth certificate under the home's BC CA, imported and mounted.
  static Device make_device(bool mount = true) {
    Device d;
    d.unique_id = "01" + to_hex(crypto::random_bytes(8));
    const auto passphrase = "file:" + home() + "/secrets/ca-passphrase";
    auto ca_key = crypto::load_private_key(home() + "/ca/bc/key.pem", passphrase);
    EXPECT_TRUE(ca_key) << ca_key.error().detail;
    auto ca_cert = x509::Certificate::load(home() + "/ca/bc/cert.pem");
    EXPECT_TRUE(ca_cert);
    auto profile = ca::Profile::load(home() + "/profiles/bc.toml");
    EXPECT_TRUE(profile) << profile.error().detail;
    const SystemClock clock;
    const ca::Issuer issuer(*ca_cert, std::make_shared<const crypto::FileSigner>(*ca_key, "bc"), clock);
    auto key = *crypto::PrivateKey::generate(crypto::KeyType::ec_p256);
    auto bc = issuer.issue(
        ca::IssueRequest{key.public_key(), {{"org", "Acme Devices"}, {"hw_serial", d.unique_id}}, {}, {}},
        *profile);
    EXPECT_TRUE(bc) << bc.error().detail;
    d.ukid = bc->public_key().sha256_hex();
    d.key = tmp(d.unique_id + ".key");
    d.chain = tmp(d.unique_id + ".chain.pem");
    EXPECT_TRUE(crypto::save_private_key(d.key, key));
    spit(d.chain, bc->to_pem() + ca_cert->to_pem());

    store::ManifestImport mi;
    mi.manifest.format = "hallmark";
    mi.manifest.signer = "test";
    mi.manifest.sha256 = to_hex(crypto::random_bytes(32));
    mi.manifest.entry_count = 1;
    mi.manifest.imported_at = clock.now();
    store::DeviceRecord r;
    r.vendor_unique_id = d.unique_id;
    r.ukid = d.ukid;
    r.bc_der = bc->to_der();
    r.bc_sha256 = bc->fingerprint_sha256_hex();
    r.bc_issuer = bc->issuer().to_string();
    mi.devices.push_back(r);
    mi.audit =
        store::AuditEvent{clock.now(), "test", "manifest-import", "test", store::Outcome::accepted, "", ""};
    EXPECT_TRUE(store_->import_manifest(mi));
    d.id = store_->find_device_by_unique_id(d.unique_id)->id;
    if (mount) {
      inventory::MountRequest req;
      req.unique_id = d.unique_id;
      const auto out = inventory::mount_device(*store_, req, inventory::MountOptions{});
      EXPECT_EQ(out.status, inventory::MountStatus::mounted) << out.reason;
    }
    return d;
  }

  static std::size_t certificate_count() {
    auto list = store_->list_certificates(store::CertificateFilter{});
    return list ? list->size() : 0;
  }

  struct Http {
    int status = 0;
    std::string headers;
    std::string body;
    std::string output;  // curl's own messages
  };
  // curl with `args`; the body goes to a file, the headers to another.
  static Http curl(const std::string& args) {
    const auto body = tmp("body-" + to_hex(crypto::random_bytes(4)));
    const auto headers = body + ".h";
    const auto r = run("curl -sS --max-time 30 --cacert " + shell_quote(root_pem()) + " -o " +
                       shell_quote(body) + " -D " + shell_quote(headers) + " -w '%{http_code}' " + args);
    Http h;
    h.output = r.output;
    h.body = slurp(body);
    h.headers = slurp(headers);
    const auto digits = r.output.size() >= 3 ? r.output.substr(r.output.size() - 3) : std::string();
    h.status = std::atoi(digits.c_str());
    return h;
  }

  // `openssl req` CSR (DER) for `key_file`, written as base64 (wrapped by openssl at 64 columns).
  static std::string openssl_csr(const std::string& key_file, const std::string& subject,
                                 const std::string& extra = {}) {
    const auto der = tmp("csr-" + to_hex(crypto::random_bytes(4)) + ".der");
    const auto r = run("openssl req -new -key " + shell_quote(key_file) + " -subj " + shell_quote(subject) +
                       " -outform DER -out " + shell_quote(der) + " " + extra);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    const auto b64 = der + ".b64";
    EXPECT_EQ(run("openssl base64 -in " + shell_quote(der) + " -out " + shell_quote(b64)).exit_code, 0);
    return b64;
  }

  static std::string new_key_file() {
    const auto path = tmp("key-" + to_hex(crypto::random_bytes(4)) + ".pem");
    EXPECT_EQ(run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + shell_quote(path))
                  .exit_code,
              0);
    return path;
  }

  // The certificates of a certs-only base64 body, as PEM (openssl pkcs7 -print_certs).
  static std::string certs_of(const std::string& body) {
    const auto b64 = tmp("p7-" + to_hex(crypto::random_bytes(4)) + ".b64");
    spit(b64, body);
    const auto r =
        run("openssl base64 -d -A -in " + shell_quote(b64) + " | openssl pkcs7 -inform DER -print_certs");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.output;
  }

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

  // An openssl config whose request carries the IDC's SAN (hardwareModuleName), for re-enrollment.
  static std::string renewal_config(const std::string& idc_pem) {
    auto parsed = x509::Certificate::parse_pem(idc_pem);
    EXPECT_TRUE(parsed);
    const auto san = parsed->subject_alt_name();
    EXPECT_TRUE(san && san->names.size() == 1 && san->names[0].hardware_module_name);
    const auto& hmn = *san->names[0].hardware_module_name;
    const auto conf = tmp("reenroll-" + to_hex(crypto::random_bytes(4)) + ".cnf");
    spit(conf,
         "[req]\ndistinguished_name = dn\nreq_extensions = ext\n[dn]\n[ext]\n"
         "subjectAltName = otherName:1.3.6.1.5.5.7.8.4;SEQUENCE:hmn\n[hmn]\nhwType = OID:" +
             hmn.hw_type + "\nhwSerialNum = FORMAT:HEX,OCTETSTRING:" + to_hex(hmn.hw_serial_num) + "\n");
    return conf;
  }

  static std::string enroll_body_args(const std::string& b64_file) {
    return "-H 'Content-Type: application/pkcs10' --data-binary @" + shell_quote(b64_file);
  }

  static std::string header_value(const std::string& headers, const std::string& name) {
    std::string lower_headers = headers;
    std::string lower_name = name + ":";
    for (auto* s : {&lower_headers, &lower_name}) {
      for (auto& c : *s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    const auto at = lower_headers.find(lower_name);
    if (at == std::string::npos) return {};
    const auto begin = at + lower_name.size();
    auto value = headers.substr(begin, headers.find('\r', begin) - begin);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    return value;
  }

  static testing::TempDir* dir_;
  static store::Store* store_;
  static pid_t pid_;
  static int port_;
};
testing::TempDir* Serve::dir_ = nullptr;
store::Store* Serve::store_ = nullptr;
pid_t Serve::pid_ = -1;
int Serve::port_ = 0;

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
  ASSERT_EQ(h.status, 200) << h.output << h.body << slurp(log_path());
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
  EXPECT_NE(slurp(log_path()).find("request_id=" + request_id), std::string::npos);
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
  const auto log = slurp(log_path());
  EXPECT_NE(log.find("problem=spoofed-client-cert-header"), std::string::npos);
}

TEST_F(Serve, ASlowHeaderClientIsClosedAtTheTimeout) {
  // One byte a second; [server] header_timeout is 2 s.
  const auto start = std::chrono::steady_clock::now();
  const auto r =
      run("(for c in G E T ' ' / h e a l t h z ' ' H T T P; do printf \"$c\"; sleep 1; done) | timeout 30 "
          "openssl s_client -quiet -connect 127.0.0.1:" +
          std::to_string(port_) + " 2>&1");
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
  const std::string server = "https://127.0.0.1:" + std::to_string(port_);
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
  ASSERT_EQ(reenroll.exit_code, 0) << reenroll.output << slurp(log_path());
  auto text = run("openssl x509 -in " + shell_quote(out) + " -noout -subject -pubkey");
  EXPECT_NE(text.output.find("serialNumber = " + d.ukid), std::string::npos) << text.output;
  auto pub = run("openssl pkey -inform DER -in " + shell_quote(new_key) + " -pubout");
  EXPECT_NE(text.output.find(pub.output), std::string::npos) << "the renewed IDC carries the new key";
  EXPECT_EQ(certificate_count(), before + 1);
}

// Last: SIGTERM drains and exits 0 (gtest runs the tests of a suite in order).
TEST_F(Serve, ZzSigtermDrainsAndExitsCleanly) {
  EXPECT_EQ(stop_server(), 0) << slurp(log_path());
  const auto log = slurp(log_path());
  EXPECT_NE(log.find("serve_stopping signal=SIGTERM"), std::string::npos) << log;
  EXPECT_NE(log.find("serve_stopped"), std::string::npos) << log;
}

}  // namespace
}  // namespace hallmark
