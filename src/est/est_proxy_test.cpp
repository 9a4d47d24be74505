// End to end behind a real nginx: `hallmark init`, `hallmark proxy issue-cert`, `hallmark serve` on
// 127.0.0.1 port 0 trusting the proxy's CA, `hallmark proxy nginx-config` for the server block, and
// nginx started on a free loopback port from that configuration. Devices are curl + openssl.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <fstream>

#include "hallmark/x509/crl.hpp"
#include "nginx_process.hpp"
#include "serve_harness.hpp"

namespace hallmark {
namespace {

namespace fs = std::filesystem;
using namespace hallmark::testing;

// The PEM file's first certificate, URL-encoded as nginx's $ssl_client_escaped_cert.
std::string escaped_first_cert(const std::string& pem_file) {
  auto chain = x509::Certificate::parse_pem_chain(slurp(pem_file));
  EXPECT_TRUE(chain && !chain->empty());
  std::string out;
  for (const unsigned char c : chain->front().to_pem()) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

class Proxy : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (nginx_binary().empty()) return;
    dir_ = new TempDir("hallmark-proxy");
    auto r = cli("init --org 'Acme Devices' --product 'Acme Widget'");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = cli("proxy issue-cert");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ASSERT_NE(r.output.find("trusted_cas = [\"proxy\"]"), std::string::npos) << r.output;
    std::ofstream(home() + "/hallmark.toml", std::ios::app) << server_config(1, 2) << R"(drain_delay = "0"
drain_timeout = "5s"

[server.proxy]
trusted_cas = ["proxy"]
)" << default_alias_config("widget", "bc");
    store_ = open_migrated_store("sqlite:" + home() + "/hallmark.db").release();
    ASSERT_NE(store_, nullptr);
    serve_ = new ServeProcess();
    start_serve(*serve_, home(), dir_->path().string());
    if (::testing::Test::HasFatalFailure()) return;

    nginx_port_ = free_port();
    r = cli("proxy nginx-config --upstream https://127.0.0.1:" + std::to_string(serve_->port()) +
            " --listen 127.0.0.1:" + std::to_string(nginx_port_) + " --server-name localhost --out " +
            shell_quote(tmp("hallmark-nginx.conf")));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    nginx_ = new NginxProcess();
    // Ready when a request passes through to hallmark (proxy TLS with the client certificate included).
    // A failure here fails every test (SetUp), where a fatal one would only skip them.
    nginx_error_ = nginx_->start(tmp("nginx"), tmp("hallmark-nginx.conf"), nginx_port_, [] {
      return curl(home(), dir_->path().string(), via_nginx("/.well-known/est/cacerts"), 5).status == 200;
    });
  }

  static void TearDownTestSuite() {
    delete nginx_;  // SIGTERM: nginx's master stops its workers
    nginx_ = nullptr;
    delete serve_;
    serve_ = nullptr;
    delete store_;
    store_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    if (nginx_binary().empty()) GTEST_SKIP() << "nginx is not installed (scripts/install-deps)";
    ASSERT_TRUE(nginx_error_.empty()) << nginx_error_;
    ASSERT_TRUE(nginx_ != nullptr && nginx_->running()) << "nginx is not running";
  }

  static CommandResult cli(const std::string& args) {
    return run(std::string(HALLMARK_CLI) + " --home " + shell_quote(home()) + " " + args);
  }
  static std::string home() { return (dir_->path() / "home").string(); }
  static std::string tmp(const std::string& name) { return (dir_->path() / name).string(); }
  static std::string via_nginx(const std::string& path) {
    return "https://localhost:" + std::to_string(nginx_port_) + path +
           " --resolve localhost:" + std::to_string(nginx_port_) + ":127.0.0.1";
  }
  static Http request(const std::string& args) { return curl(home(), dir_->path().string(), args); }
  static Device device() { return make_device(*store_, home(), dir_->path().string()); }
  static std::string dir() { return dir_->path().string(); }

  static std::vector<store::CertificateRecord> certificates_of(const Device& d) {
    store::CertificateFilter f;
    f.device_id = d.id;
    f.issuer_ca = "idc";  // the BC, revoked after issuance, is recorded too
    auto list = store_->list_certificates(f);
    EXPECT_TRUE(list);
    return list ? *list : std::vector<store::CertificateRecord>{};
  }

  static std::optional<store::AuditEvent> audited(const std::string& request_id) {
    auto audit = store_->list_audit(0, 1'000'000);
    EXPECT_TRUE(audit);
    if (!audit) return std::nullopt;
    for (const auto& a : *audit) {
      if (a.event.request_id == request_id) return a.event;
    }
    return std::nullopt;
  }

  static TempDir* dir_;
  static store::Store* store_;
  static ServeProcess* serve_;
  static NginxProcess* nginx_;
  static std::string nginx_error_;
  static int nginx_port_;
};
TempDir* Proxy::dir_ = nullptr;
store::Store* Proxy::store_ = nullptr;
ServeProcess* Proxy::serve_ = nullptr;
NginxProcess* Proxy::nginx_ = nullptr;
std::string Proxy::nginx_error_;
int Proxy::nginx_port_ = 0;

TEST_F(Proxy, TheGeneratedConfigurationHasTheContractedDirectives) {
  const auto conf = slurp(tmp("hallmark-nginx.conf"));
  for (const auto* directive :
       {"ssl_verify_client optional;", "ssl_verify_depth 3;",
        "proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;", "proxy_ssl_verify on;",
        "client_max_body_size 1048576;", "proxy_ssl_name localhost;", "ssl_session_tickets off;",
        "proxy_next_upstream off;"}) {
    EXPECT_NE(conf.find(directive), std::string::npos) << directive << "\n" << conf;
  }
  EXPECT_NE(conf.find("ssl_client_certificate \"" + home() + "/proxy/client-cas.pem\";"), std::string::npos)
      << conf;
  EXPECT_NE(conf.find("proxy_ssl_certificate \"" + home() + "/proxy/client.pem\";"), std::string::npos)
      << conf;
  EXPECT_NE(conf.find("ssl_password_file \"" + home() + "/proxy/passphrase\";"), std::string::npos) << conf;
  // No CRL file yet: the directive is a comment.
  EXPECT_NE(conf.find("# ssl_crl \"" + home() + "/crl/nginx.pem\";"), std::string::npos) << conf;
  // The client CA bundle: the BC CA, the IDC CA and their root, nothing else (not the proxy or TLS CA).
  auto bundle = x509::Certificate::parse_pem_chain(slurp(home() + "/proxy/client-cas.pem"));
  ASSERT_TRUE(bundle);
  std::vector<std::string> subjects;
  for (const auto& c : *bundle) subjects.push_back(c.subject().to_string());
  std::sort(subjects.begin(), subjects.end());
  EXPECT_EQ(subjects, (std::vector<std::string>{"O=Acme Devices,CN=Acme Devices Birth Certificate CA",
                                                "O=Acme Devices,CN=Acme Devices IDC Issuing CA",
                                                "O=Acme Devices,CN=Acme Devices Root CA"}))
      << fmt::format("{}", fmt::join(subjects, " | "));
  // nginx's copy of the server key is encrypted under the proxy's own passphrase, not the CA one.
  const auto key = slurp(home() + "/proxy/server.key");
  EXPECT_NE(key.find("ENCRYPTED PRIVATE KEY"), std::string::npos);
  EXPECT_FALSE(
      crypto::load_private_key(home() + "/proxy/server.key", "file:" + home() + "/secrets/ca-passphrase"));
  EXPECT_TRUE(crypto::load_private_key(home() + "/proxy/server.key", "file:" + home() + "/proxy/passphrase"));

  // With the CRL file in place the directive is live.
  fs::create_directories(home() + "/crl");
  spit(home() + "/crl/nginx.pem", "placeholder");
  auto r = cli("proxy nginx-config --upstream https://127.0.0.1:1");
  fs::remove(home() + "/crl/nginx.pem");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("\n    ssl_crl \"" + home() + "/crl/nginx.pem\";"), std::string::npos) << r.output;
}

TEST_F(Proxy, BadNginxConfigArgumentsAreRefusedClearly) {
  struct Case {
    std::string args;
    int exit_code;
    std::string message;
  };
  const std::vector<Case> cases{
      {"--upstream http://127.0.0.1:8443", 2,
       "hallmark: error: --upstream 'http://127.0.0.1:8443': must start with https:// (the proxy "
       "authenticates to hallmark with its client certificate)"},
      {"--upstream https://127.0.0.1:8443/est", 2,
       "hallmark: error: --upstream 'https://127.0.0.1:8443/est': must be https://HOST[:PORT], no path"},
      {"--upstream https://127.0.0.1:99999", 2,
       "hallmark: error: --upstream 'https://127.0.0.1:99999': port must be 1-65535"},
      {"--upstream https://127.0.0.1:8443 --alias nope", 3,
       "hallmark: error: --alias nope: hallmark.toml has no [est.alias.nope]"},
      {"--upstream https://127.0.0.1:8443 --listen '443; evil'", 2,
       "hallmark: error: --listen '443; evil': not a valid nginx value"},
  };
  for (const auto& c : cases) {
    auto r = cli("proxy nginx-config " + c.args);
    EXPECT_EQ(r.exit_code, c.exit_code) << c.args << "\n" << r.output;
    EXPECT_EQ(r.output, c.message + "\n") << c.args;
  }
  // A second certificate is refused without --force.
  auto r = cli("proxy issue-cert");
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_NE(r.output.find("proxy/client.pem already exists; pass --force"), std::string::npos) << r.output;
}

TEST_F(Proxy, ADeviceEnrollsWithItsBcAndReenrollsWithItsIdcThroughNginx) {
  const auto d = device();
  const auto key = new_key_file(dir());
  const auto csr = openssl_csr(dir(), key, "/serialNumber=" + d.ukid + "/CN=widget");
  auto h = request("--cert " + shell_quote(d.chain) + " --key " + shell_quote(d.key) + " " +
                   enroll_body_args(csr) + " " + via_nginx("/.well-known/est/simpleenroll"));
  ASSERT_EQ(h.status, 200) << h.output << h.body << serve_->log();
  const auto idc = first_cert_of(dir(), h.body);
  EXPECT_EQ(idc.subject().get("serialNumber"), d.ukid);
  EXPECT_EQ(idc.public_key(), crypto::load_private_key(key)->public_key());
  ASSERT_EQ(certificates_of(d).size(), 1u);
  EXPECT_EQ(certificates_of(d)[0].serial_hex, idc.serial_hex());

  // hallmark saw the request through the proxy, under nginx's request id, and audited it.
  const auto request_id = header_value(h.headers, "X-Request-Id");
  ASSERT_EQ(request_id.size(), 32u) << h.headers;
  const auto log = serve_->log();
  EXPECT_NE(
      log.find("request_id=" + request_id + " method=POST path=/.well-known/est/simpleenroll status=200"),
      std::string::npos)
      << log;
  EXPECT_NE(log.find("request_id=" + request_id), std::string::npos);
  const auto line_at = log.find("request_id=" + request_id + " method=POST");
  ASSERT_NE(line_at, std::string::npos);
  EXPECT_NE(log.substr(line_at, log.find('\n', line_at) - line_at).find("proxy=yes"), std::string::npos);
  const auto event = audited(request_id);
  ASSERT_TRUE(event);
  EXPECT_EQ(event->action, "enroll");
  EXPECT_EQ(event->outcome, store::Outcome::accepted);

  // simplereenroll through the same listener, authenticated by the IDC.
  const auto idc_file = tmp(d.unique_id + ".idc.pem");
  spit(idc_file, idc.to_pem());
  const auto new_key = new_key_file(dir());
  const auto renewal =
      openssl_csr(dir(), new_key, "/serialNumber=" + d.ukid + "/O=Acme Devices/CN=Acme Widget",
                  "-config " + shell_quote(renewal_config(dir(), idc)));
  auto r = request("--cert " + shell_quote(idc_file) + " --key " + shell_quote(key) + " " +
                   enroll_body_args(renewal) + " " + via_nginx("/.well-known/est/widget/simplereenroll"));
  ASSERT_EQ(r.status, 200) << r.output << r.body << serve_->log();
  const auto renewed = first_cert_of(dir(), r.body);
  EXPECT_NE(renewed.serial_hex(), idc.serial_hex());
  EXPECT_EQ(renewed.public_key(), crypto::load_private_key(new_key)->public_key());
  EXPECT_EQ(certificates_of(d).size(), 2u);
  const auto re = audited(header_value(r.headers, "X-Request-Id"));
  ASSERT_TRUE(re);
  EXPECT_EQ(re->action, "reenroll");
  EXPECT_EQ(re->outcome, store::Outcome::accepted);

  // Re-enrolling with the BC through nginx is refused by hallmark's policy, as directly.
  const auto again =
      openssl_csr(dir(), new_key_file(dir()), "/serialNumber=" + d.ukid + "/O=Acme Devices/CN=Acme Widget",
                  "-config " + shell_quote(renewal_config(dir(), idc)));
  auto bc = request("--cert " + shell_quote(d.chain) + " --key " + shell_quote(d.key) + " " +
                    enroll_body_args(again) + " " + via_nginx("/.well-known/est/simplereenroll"));
  EXPECT_EQ(bc.status, 403) << bc.body;
  EXPECT_NE(bc.body.find("\"code\":\"not-an-idc\""), std::string::npos) << bc.body;
  EXPECT_EQ(certificates_of(d).size(), 2u);
}

TEST_F(Proxy, ASpoofedHeaderSentThroughNginxHasNoEffect) {
  const auto victim = device();
  const auto spoof = "X-SSL-Client-Cert: " + escaped_first_cert(victim.chain);

  // No client certificate, the victim's BC in the header: nginx drops the header, hallmark sees none.
  const auto victim_csr =
      openssl_csr(dir(), new_key_file(dir()), "/serialNumber=" + victim.ukid + "/CN=widget");
  for (const auto& header : {spoof, "x-ssl-client-cert: " + escaped_first_cert(victim.chain)}) {
    auto h = request("-H " + shell_quote(header) + " " + enroll_body_args(victim_csr) + " " +
                     via_nginx("/.well-known/est/simpleenroll"));
    EXPECT_EQ(h.status, 401) << h.body;
    EXPECT_NE(h.body.find("\"code\":\"client-certificate-required\""), std::string::npos) << h.body;
    const auto event = audited(header_value(h.headers, "X-Request-Id"));
    ASSERT_TRUE(event);
    EXPECT_EQ(event->outcome, store::Outcome::refused);
  }

  // Another device with its own BC and the victim's in the header: judged by its own certificate.
  const auto attacker = device();
  auto h = request("--cert " + shell_quote(attacker.chain) + " --key " + shell_quote(attacker.key) + " -H " +
                   shell_quote(spoof) + " " + enroll_body_args(victim_csr) + " " +
                   via_nginx("/.well-known/est/simpleenroll"));
  EXPECT_EQ(h.status, 403) << h.body;
  EXPECT_NE(h.body.find("\"code\":\"ukid-mismatch\""), std::string::npos) << h.body;
  EXPECT_TRUE(certificates_of(victim).empty());

  const auto own_key = new_key_file(dir());
  const auto own_csr = openssl_csr(dir(), own_key, "/serialNumber=" + attacker.ukid + "/CN=widget");
  h = request("--cert " + shell_quote(attacker.chain) + " --key " + shell_quote(attacker.key) + " -H " +
              shell_quote(spoof) + " " + enroll_body_args(own_csr) + " " +
              via_nginx("/.well-known/est/simpleenroll"));
  ASSERT_EQ(h.status, 200) << h.body;
  EXPECT_EQ(first_cert_of(dir(), h.body).subject().get("serialNumber"), attacker.ukid);
  EXPECT_EQ(certificates_of(attacker).size(), 1u);
  EXPECT_TRUE(certificates_of(victim).empty());
  auto v = store_->find_device(victim.id);
  ASSERT_TRUE(v);
  EXPECT_FALSE(v->bc_revoked);
}

TEST_F(Proxy, TheSameHeaderSentStraightToHallmarkIsRefusedAndAudited) {
  const auto victim = device();
  const auto spoof = "X-SSL-Client-Cert: " + escaped_first_cert(victim.chain);
  const auto csr = openssl_csr(dir(), new_key_file(dir()), "/serialNumber=" + victim.ukid + "/CN=widget");
  // Without a client certificate, and with a device's own BC: neither is a trusted proxy.
  const auto other = device();
  for (const auto& tls :
       {std::string(), "--cert " + shell_quote(other.chain) + " --key " + shell_quote(other.key)}) {
    auto h = request(tls + " -H " + shell_quote(spoof) + " " + enroll_body_args(csr) + " " +
                     shell_quote(serve_->url("/.well-known/est/simpleenroll")));
    EXPECT_EQ(h.status, 400) << h.body;
    EXPECT_NE(h.body.find("\"code\":\"spoofed-client-cert-header\""), std::string::npos) << h.body;
    const auto request_id = header_value(h.headers, "X-Request-Id");
    const auto event = audited(request_id);
    ASSERT_TRUE(event) << request_id;
    EXPECT_EQ(event->outcome, store::Outcome::refused);
    EXPECT_NE(serve_->log().find("request_id=" + request_id), std::string::npos);
  }
  EXPECT_TRUE(certificates_of(victim).empty());
  EXPECT_TRUE(certificates_of(other).empty());

  // The proxy's own certificate, straight to hallmark, without a forwarded device certificate: it is
  // a trusted proxy, but no device is authenticated.
  auto h = request(
      "--cert " + shell_quote(home() + "/proxy/client.pem") + " --key " +
      shell_quote(home() + "/proxy/client.key") + " --pass " +
      shell_quote(
          slurp(home() + "/proxy/passphrase").substr(0, slurp(home() + "/proxy/passphrase").find('\n'))) +
      " " + enroll_body_args(csr) + " " + shell_quote(serve_->url("/.well-known/est/simpleenroll")));
  EXPECT_EQ(h.status, 401) << h.output << h.body;
  EXPECT_NE(h.body.find("\"code\":\"client-certificate-required\""), std::string::npos) << h.body;
  EXPECT_TRUE(certificates_of(victim).empty());
}

// Last: it leaves a CRL file in nginx's configuration. nginx checks the CRL of every CA in the chain.
TEST_F(Proxy, WithCrlNginxNeedsEveryCasCrlAndRefusesARevokedBirthCertificate) {
  const auto revoked = device();
  const auto good = device();
  const SystemClock clock;
  const auto now = clock.now();
  const auto crl_of = [&](const std::string& ca, std::vector<x509::CrlEntry> entries) {
    auto key = crypto::load_private_key(home() + "/ca/" + ca + "/key.pem",
                                        "file:" + home() + "/secrets/ca-passphrase");
    EXPECT_TRUE(key);
    auto cert = x509::Certificate::load(home() + "/ca/" + ca + "/cert.pem");
    EXPECT_TRUE(cert);
    const crypto::FileSigner signer(*key, ca);
    auto crl = x509::make_crl(x509::CrlTemplate{1, now - std::chrono::seconds{60},
                                                now + std::chrono::seconds{86400}, std::move(entries)},
                              *cert, signer);
    EXPECT_TRUE(crl) << crl.error().detail;
    return crl ? crl->to_pem() : std::string();
  };
  const auto bc = x509::Certificate::parse_pem(slurp(revoked.chain));
  ASSERT_TRUE(bc);
  const auto bc_crl =
      crl_of("bc", {x509::CrlEntry{bc->serial(), now - std::chrono::seconds{30}, std::nullopt}});
  const auto reload = [&] {
    auto r = cli("proxy nginx-config --upstream https://127.0.0.1:" + std::to_string(serve_->port()) +
                 " --listen 127.0.0.1:" + std::to_string(nginx_port_) + " --server-name localhost --out " +
                 shell_quote(tmp("hallmark-nginx.conf")));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ASSERT_NE(slurp(tmp("hallmark-nginx.conf")).find("\n    ssl_crl "), std::string::npos);
    nginx_->reload();
  };
  const auto cacerts_with = [&](const Device& d) {
    return request("--cert " + shell_quote(d.chain) + " --key " + shell_quote(d.key) + " " +
                   via_nginx("/.well-known/est/cacerts"))
        .status;
  };
  const auto wait_for = [&](const Device& d, int status) {
    int got = 0;
    for (int i = 0; i < 100 && (got = cacerts_with(d)) != status; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return got;
  };

  // Only the BC CA's CRL: the root's is missing, so no BC passes at all.
  fs::create_directories(home() + "/crl");
  spit(home() + "/crl/nginx.pem", bc_crl);
  reload();
  EXPECT_EQ(wait_for(good, 400), 400) << nginx_->error_log();
  EXPECT_NE(nginx_->error_log().find("unable to get certificate CRL"), std::string::npos);

  // Every CA's CRL: the good device enrolls, the revoked BC is refused by nginx.
  spit(home() + "/crl/nginx.pem", bc_crl + crl_of("root", {}) + crl_of("idc", {}));
  reload();
  EXPECT_EQ(wait_for(good, 200), 200) << nginx_->error_log();
  EXPECT_EQ(cacerts_with(revoked), 400);
  EXPECT_NE(nginx_->error_log().find("certificate revoked"), std::string::npos);
  const auto csr = openssl_csr(dir(), new_key_file(dir()), "/serialNumber=" + revoked.ukid + "/CN=widget");
  auto h = request("--cert " + shell_quote(revoked.chain) + " --key " + shell_quote(revoked.key) + " " +
                   enroll_body_args(csr) + " " + via_nginx("/.well-known/est/simpleenroll"));
  EXPECT_EQ(h.status, 400) << h.body;
  EXPECT_TRUE(certificates_of(revoked).empty());
  const auto good_csr = openssl_csr(dir(), new_key_file(dir()), "/serialNumber=" + good.ukid + "/CN=widget");
  h = request("--cert " + shell_quote(good.chain) + " --key " + shell_quote(good.key) + " " +
              enroll_body_args(good_csr) + " " + via_nginx("/.well-known/est/simpleenroll"));
  EXPECT_EQ(h.status, 200) << h.body;
  EXPECT_EQ(certificates_of(good).size(), 1u);
}

}  // namespace
}  // namespace hallmark
