// bench_est: full EST enrollments over mutual TLS against a real `hallmark serve` on durable SQLite,
// driven by the fleet engine of hallmark-device (a new TCP and TLS connection per device, P-256 keys,
// csrattrs then simpleenroll), at 1, 16 and 64 concurrent devices. For each level it prints
// enrollments/s, the server's CPU time per enrollment (user + system of the `hallmark serve` process,
// from /proc/<pid>/stat, all its threads) and the fleet's p50/p99 latency.
//
// Baseline, in the same run: a bare OpenSSL loop that does what an enrollment needs of the server and
// nothing else: a TLS 1.3 handshake requesting and verifying a client certificate (P-256, no tickets,
// over a socketpair), CSR signature check, certificate built and signed, certs-only PKCS#7 encoded and
// written back. No HTTP, no database. Its server-side thread CPU time per iteration is the reference.
//
// Targets: server CPU per enrollment <= 1.3 x the baseline; p99 < 50 ms at 64 concurrent devices.
//
//   bench_est [--devices N (per level, default 400)] [--levels 1,16,64] [--keep]
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pkcs7.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "hallmark/core/log.hpp"
#include "hallmark/device/fleet.hpp"
#include "hallmark/x509/certificate.hpp"
#include "process.hpp"
#include "serve_process.hpp"

namespace {

using namespace hallmark;
namespace fs = std::filesystem;
using testing::run;
using testing::shell_quote;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench_est: %s\n", what.c_str());
  std::exit(1);
}

void sh(const std::string& command) {
  const auto r = run(command);
  if (r.exit_code != 0) die(command + " failed:\n" + r.output);
}

// ---- the baseline: a bare OpenSSL enrollment, server side measured ----

struct Pki {
  EVP_PKEY* ca_key = nullptr;
  X509* ca = nullptr;
  EVP_PKEY* server_key = nullptr;
  X509* server = nullptr;
  EVP_PKEY* device_key = nullptr;
  X509* bc = nullptr;
  X509_REQ* csr = nullptr;
};

EVP_PKEY* p256() {
  EVP_PKEY* k = EVP_EC_gen("P-256");
  if (k == nullptr) die("EVP_EC_gen");
  return k;
}

X509* make_cert(const char* cn, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key, bool ca, long serial) {
  X509* x = X509_new();
  X509_set_version(x, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("Bench"), -1, -1,
                             0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509_set_issuer_name(x, issuer != nullptr ? X509_get_subject_name(issuer) : name);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
  X509_set_pubkey(x, key);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : x, x, nullptr, nullptr, 0);
  const char* bc = ca ? "critical,CA:TRUE" : "critical,CA:FALSE";
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_basic_constraints, bc);
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  if (!ca) {
    ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_ext_key_usage, "clientAuth,serverAuth");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(x, issuer_key, EVP_sha256()) == 0) die("X509_sign");
  return x;
}

Pki make_pki() {
  Pki p;
  p.ca_key = p256();
  p.ca = make_cert("Bench CA", p.ca_key, nullptr, p.ca_key, true, 1);
  p.server_key = p256();
  p.server = make_cert("127.0.0.1", p.server_key, p.ca, p.ca_key, false, 2);
  p.device_key = p256();
  p.bc = make_cert("sn0123456789abcdef01", p.device_key, p.ca, p.ca_key, false, 3);
  EVP_PKEY* idc_key = p256();
  p.csr = X509_REQ_new();
  X509_NAME* n = X509_REQ_get_subject_name(p.csr);
  X509_NAME_add_entry_by_txt(n, "serialNumber", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("0123456789abcdef"), -1, -1, 0);
  X509_REQ_set_pubkey(p.csr, idc_key);
  X509_REQ_sign(p.csr, idc_key, EVP_sha256());
  EVP_PKEY_free(idc_key);
  return p;
}

double thread_cpu_us() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

// One enrollment's server work; returns its thread CPU time in microseconds.
double baseline_once(const Pki& pki, SSL_CTX* server_ctx, SSL_CTX* client_ctx, long serial) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) die("socketpair");
  std::thread client([&] {
    SSL* c = SSL_new(client_ctx);
    SSL_set_fd(c, fds[1]);
    if (SSL_connect(c) != 1) die("baseline: client handshake");
    char buffer[4096];
    while (SSL_read(c, buffer, sizeof buffer) > 0) {
    }
    SSL_free(c);
    close(fds[1]);
  });
  const double start = thread_cpu_us();
  SSL* s = SSL_new(server_ctx);
  SSL_set_fd(s, fds[0]);
  if (SSL_accept(s) != 1) die("baseline: server handshake");
  X509* peer = SSL_get1_peer_certificate(s);
  if (peer == nullptr || SSL_get_verify_result(s) != X509_V_OK) die("baseline: client certificate");
  X509_free(peer);
  EVP_PKEY* key = X509_REQ_get0_pubkey(pki.csr);
  if (X509_REQ_verify(pki.csr, key) != 1) die("baseline: CSR signature");
  X509* idc = X509_new();
  X509_set_version(idc, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(idc), serial);
  X509_set_subject_name(idc, X509_REQ_get_subject_name(pki.csr));
  X509_set_issuer_name(idc, X509_get_subject_name(pki.ca));
  X509_gmtime_adj(X509_getm_notBefore(idc), 0);
  ASN1_TIME_set_string(X509_getm_notAfter(idc), "99991231235959Z");
  X509_set_pubkey(idc, key);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, pki.ca, idc, nullptr, nullptr, 0);
  for (const auto& [nid, value] :
       {std::pair{NID_basic_constraints, "critical,CA:FALSE"},
        std::pair{NID_key_usage, "critical,digitalSignature"}, std::pair{NID_ext_key_usage, "clientAuth"},
        std::pair{NID_authority_key_identifier, "keyid"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    X509_add_ext(idc, ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(idc, pki.ca_key, EVP_sha256()) == 0) die("baseline: sign");
  PKCS7* p7 = PKCS7_new();
  PKCS7_set_type(p7, NID_pkcs7_signed);
  PKCS7_content_new(p7, NID_pkcs7_data);
  PKCS7_add_certificate(p7, idc);
  unsigned char* der = nullptr;
  const int n = i2d_PKCS7(p7, &der);
  if (n <= 0 || SSL_write(s, der, n) != n) die("baseline: write");
  OPENSSL_free(der);
  PKCS7_free(p7);
  X509_free(idc);
  SSL_shutdown(s);
  SSL_free(s);
  close(fds[0]);
  const double used = thread_cpu_us() - start;
  client.join();
  return used;
}

double baseline_us(std::size_t iterations) {
  const Pki pki = make_pki();
  SSL_CTX* server = SSL_CTX_new(TLS_server_method());
  SSL_CTX_set_min_proto_version(server, TLS1_3_VERSION);
  SSL_CTX_use_certificate(server, pki.server);
  SSL_CTX_use_PrivateKey(server, pki.server_key);
  X509_STORE_add_cert(SSL_CTX_get_cert_store(server), pki.ca);
  SSL_CTX_set_verify(server, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_options(server, SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(server, 0);
  SSL_CTX_set_session_cache_mode(server, SSL_SESS_CACHE_OFF);
  SSL_CTX* client = SSL_CTX_new(TLS_client_method());
  SSL_CTX_use_certificate(client, pki.bc);
  SSL_CTX_use_PrivateKey(client, pki.device_key);
  X509_STORE_add_cert(SSL_CTX_get_cert_store(client), pki.ca);
  SSL_CTX_set_verify(client, SSL_VERIFY_PEER, nullptr);
  double total = 0;
  for (std::size_t i = 0; i < iterations; ++i)
    total += baseline_once(pki, server, client, 1000 + static_cast<long>(i));
  SSL_CTX_free(server);
  SSL_CTX_free(client);
  return total / static_cast<double>(iterations);
}

// ---- hallmark: a real server and a fleet ----

double process_cpu_us(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  if (close == std::string::npos) die("cannot read /proc/" + std::to_string(pid) + "/stat");
  std::istringstream fields(text.substr(close + 2));
  std::string f;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stoull(f);
    if (i == 15) stime = std::stoull(f);
  }
  return static_cast<double>(utime + stime) * 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct Level {
  std::size_t concurrency = 0;
  std::string reel;
};

struct Setup {
  fs::path dir;
  std::string home;
  std::vector<Level> levels;
};

Setup set_up(const fs::path& dir, std::size_t devices, const std::vector<std::size_t>& levels) {
  Setup s;
  s.dir = dir;
  s.home = (dir / "oem").string();
  const std::string cli = HALLMARK_CLI;
  const std::string oem = cli + " --home " + shell_quote(s.home) + " ";
  const std::string vendor = cli + " vendor --vendor-home " + shell_quote((dir / "vendor").string()) + " ";
  const std::string d = shell_quote(dir.string());
  sh(oem + "init --org 'Bench OEM' --product 'Bench Widget'");
  sh(vendor + "init --org 'Bench Silicon'");
  sh(vendor + "request-subca --role bc --oem 'Bench OEM' --out " + d + "/bc.csr");
  sh(oem + "ca sign-subca --csr " + d + "/bc.csr --role bc --name vendor-bc --out " + d + "/bc-chain.pem");
  sh(vendor + "install-subca --role bc --chain " + d + "/bc-chain.pem");
  sh("mkdir -p " + d + "/signers " + d + "/roots && cp " + d + "/vendor/signer/cert.pem " + d +
     "/signers/ && cp " + d + "/oem/ca/root/cert.pem " + d + "/roots/");
  std::string csv = "unique_id\n";
  for (const auto c : levels) {
    Level l;
    l.concurrency = c;
    l.reel = (dir / ("reel-" + std::to_string(c))).string();
    sh(vendor + "provision --mode bc --count " + std::to_string(devices) +
       " --part-number BENCH-1 --reel BENCH-" + std::to_string(c) + " --out " + shell_quote(l.reel));
    sh(oem + "manifest import " + shell_quote(l.reel + "/BENCH-" + std::to_string(c) + ".json") +
       " --signers " + d + "/signers --vendor-roots " + d + "/roots");
    for (const auto& e : fs::directory_iterator(fs::path(l.reel) / "chips"))
      csv += e.path().stem().string() + "\n";
    s.levels.push_back(l);
  }
  std::ofstream(dir / "mount.csv") << csv;
  sh(oem + "device mount --from-csv " + d + "/mount.csv --station bench");
  std::ofstream(fs::path(s.home) / "hallmark.toml", std::ios::app)
      << testing::default_alias_config("bench", "vendor-bc");
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t devices = 400;
  std::vector<std::size_t> levels = {1, 16, 64};
  bool keep = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--devices" && i + 1 < argc) {
      devices = std::stoul(argv[++i]);
    } else if (a == "--levels" && i + 1 < argc) {
      levels.clear();
      std::stringstream list(argv[++i]);
      for (std::string item; std::getline(list, item, ',');) levels.push_back(std::stoul(item));
    } else if (a == "--keep") {
      keep = true;
    } else {
      std::fprintf(stderr, "usage: %s [--devices N] [--levels 1,16,64] [--keep]\n", argv[0]);
      return 2;
    }
  }
  if (devices == 0 || levels.empty()) die("--devices and --levels must not be empty");
  log::set_level(log::Level::error);

  const fs::path dir = fs::temp_directory_path() / ("hallmark-bench-est-" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::printf("setting up: PKI home, vendor station, %zu reels of %zu chips, import, mount...\n",
              levels.size(), devices);
  std::fflush(stdout);
  const Setup setup = set_up(dir, devices, levels);
  testing::ServeProcess serve;
  if (const auto error = serve.start(setup.home, dir.string(), {}, {"--listen", "127.0.0.1"});
      !error.empty()) {
    serve.kill();
    die(error);
  }
  const pid_t server = serve.pid();
  const auto root = x509::Certificate::load(setup.home + "/ca/root/cert.pem");
  if (!root) die(root.error().detail);

  const double base = baseline_us(std::min<std::size_t>(devices, 500));
  std::printf(
      "\nbaseline  bare OpenSSL: mTLS 1.3 handshake + CSR check + sign + PKCS#7, server thread CPU %.0f us\n",
      base);
  std::printf("\n%-12s %10s %14s %12s %10s %10s %8s\n", "concurrency", "devices", "enrollments/s",
              "server us", "ratio", "p50 ms", "p99 ms");
  bool ok = true;
  for (const auto& l : setup.levels) {
    device::FleetOptions o;
    o.reel = l.reel;
    o.server = *device::ServerUrl::parse(serve.url("/.well-known/est/bench"));
    o.trust = {*root};
    o.concurrency = l.concurrency;
    o.progress = ProgressBar::Mode::never;
    const double cpu_before = process_cpu_us(server);
    const auto report = device::run_fleet(o);
    const double cpu = process_cpu_us(server) - cpu_before;
    if (!report) die("fleet: " + report.error().detail);
    const double per = report->enrolled > 0 ? cpu / static_cast<double>(report->enrolled) : 0;
    std::printf("%-12zu %10zu %14.0f %12.0f %10.2f %10.1f %8.1f\n", l.concurrency, report->devices,
                report->enrollments_per_second, per, per / base, report->p50_ms, report->p99_ms);
    if (report->failed > 0) {
      std::printf("  %zu failed:\n%s", report->failed, report->to_text().c_str());
      ok = false;
    }
    if (per / base > 1.3) ok = false;
    if (l.concurrency == 64 && report->p99_ms >= 50) ok = false;
  }
  std::printf(
      "\ntargets: server CPU per enrollment <= 1.3 x baseline; p99 < 50 ms at 64 concurrent devices\n");
  serve.stop();
  if (keep) {
    std::printf("kept %s\n", dir.c_str());
  } else {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::printf("%s\n", ok ? "all targets met" : "TARGET MISSED");
  return ok ? 0 : 1;
}
