// bench_est: full EST enrollments over mutual TLS against a real `hallmark serve` on durable SQLite,
// driven by the fleet engine of hallmark-device (a new TCP and TLS connection per device, P-256 keys,
// csrattrs then simpleenroll), at 1, 16 and 64 concurrent devices. For each level it prints
// enrollments/s, the server's CPU time per enrollment (user + system of the `hallmark serve` process,
// from /proc/<pid>/stat, all its threads), the fleet's p50/p99 latency, the fleet's own CPU per
// enrollment and the latency floor both imply on this machine's cores.
//
// Baseline, in the same run: a bare OpenSSL loop that does what an enrollment needs of the server and
// nothing else, with the shapes of the bench's PKI (P-256; the device presents its BC and the BC CA;
// the server verifies that chain under the same anchors and TLS settings): a loopback TCP accept, the
// TLS 1.3 handshake, the CSR read from the connection, parsed and its signature checked, the
// certificate built and signed, a certs-only PKCS#7 encoded and written back. No HTTP, no database.
// Its server thread's CPU time (user + system) per iteration is the reference.
//
// Targets: server CPU per enrollment <= 1.3 x the baseline; p99 < 50 ms at 64 concurrent devices.
//
//   bench_est [--devices N (per level, default 400)] [--levels 1,16,64] [--keep] [--baseline-only]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pkcs7.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
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
//
// The same shapes as the bench's PKI home, so that the handshake does the same work: P-256 keys
// throughout; the device presents its BC and the BC CA above it (a chain of two), verified against a
// store holding the root and the CAs below it with partial chains allowed (hallmark serve trusts the
// union of its aliases' chains); the server presents its certificate, its TLS CA and the root; the
// same TLS options, groups and ticket settings as hallmark serve, and the fleet's client options.

struct Pki {
  EVP_PKEY* root_key = nullptr;
  X509* root = nullptr;
  EVP_PKEY* bc_ca_key = nullptr;
  X509* bc_ca = nullptr;
  EVP_PKEY* idc_ca_key = nullptr;
  X509* idc_ca = nullptr;
  EVP_PKEY* tls_ca_key = nullptr;
  X509* tls_ca = nullptr;
  EVP_PKEY* server_key = nullptr;
  X509* server = nullptr;
  EVP_PKEY* device_key = nullptr;
  X509* bc = nullptr;
  std::string csr_der;  // what the device sends: the server parses it from these bytes every time
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
  const auto add = [&](int nid, const char* value) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  };
  add(NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  add(NID_subject_key_identifier, "hash");
  if (issuer != nullptr) add(NID_authority_key_identifier, "keyid");
  if (ca) {
    add(NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add(NID_key_usage, "critical,digitalSignature");
    add(NID_ext_key_usage, "clientAuth,serverAuth");
  }
  if (X509_sign(x, issuer_key, EVP_sha256()) == 0) die("X509_sign");
  return x;
}

Pki make_pki() {
  Pki p;
  p.root_key = p256();
  p.root = make_cert("Bench Root CA", p.root_key, nullptr, p.root_key, true, 1);
  p.bc_ca_key = p256();
  p.bc_ca = make_cert("Bench BC CA", p.bc_ca_key, p.root, p.root_key, true, 2);
  p.idc_ca_key = p256();
  p.idc_ca = make_cert("Bench IDC CA", p.idc_ca_key, p.root, p.root_key, true, 3);
  p.tls_ca_key = p256();
  p.tls_ca = make_cert("Bench TLS CA", p.tls_ca_key, p.root, p.root_key, true, 4);
  p.server_key = p256();
  p.server = make_cert("127.0.0.1", p.server_key, p.tls_ca, p.tls_ca_key, false, 5);
  p.device_key = p256();
  p.bc = make_cert("sn0123456789abcdef01", p.device_key, p.bc_ca, p.bc_ca_key, false, 6);
  EVP_PKEY* idc_key = p256();
  X509_REQ* csr = X509_REQ_new();
  X509_NAME* n = X509_REQ_get_subject_name(csr);
  X509_NAME_add_entry_by_txt(n, "serialNumber", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(
                                 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
                             -1, -1, 0);
  X509_REQ_set_pubkey(csr, idc_key);
  X509_REQ_sign(csr, idc_key, EVP_sha256());
  unsigned char* der = nullptr;
  const int len = i2d_X509_REQ(csr, &der);
  if (len <= 0) die("i2d_X509_REQ");
  p.csr_der.assign(reinterpret_cast<const char*>(der), static_cast<std::size_t>(len));
  OPENSSL_free(der);
  X509_REQ_free(csr);
  EVP_PKEY_free(idc_key);
  return p;
}

struct Cpu {
  double user_us = 0;
  double system_us = 0;
  [[nodiscard]] double total() const { return user_us + system_us; }
  Cpu operator-(const Cpu& o) const { return {user_us - o.user_us, system_us - o.system_us}; }
  Cpu& operator+=(const Cpu& o) {
    user_us += o.user_us;
    system_us += o.system_us;
    return *this;
  }
};

Cpu thread_cpu() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  const auto us = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_usec);
  };
  return {us(u.ru_utime), us(u.ru_stime)};
}

// The length of the DER element at the start of `b` once its header is complete, else 0.
std::size_t der_length(const std::string& b) {
  if (b.size() < 2) return 0;
  const auto first = static_cast<unsigned char>(b[1]);
  if (first < 0x80) return 2 + first;
  const std::size_t octets = first & 0x7f;
  if (octets == 0 || octets > 4 || b.size() < 2 + octets) return 0;
  std::size_t len = 0;
  for (std::size_t i = 0; i < octets; ++i) len = len << 8 | static_cast<unsigned char>(b[2 + i]);
  return 2 + octets + len;
}

// One enrollment's server work over a new loopback TCP connection: accept, handshake, read and parse
// the CSR, check its signature, build and sign the certificate, write it as a certs-only PKCS#7,
// close. Returns the server thread's CPU time (user and system).
Cpu baseline_once(const Pki& pki, int listener, const sockaddr_in& address, SSL_CTX* server_ctx,
                  SSL_CTX* client_ctx, long serial) {
  std::thread client([&] {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0)
      die("baseline: connect");
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    SSL* c = SSL_new(client_ctx);
    SSL_set_fd(c, fd);
    SSL_set_tlsext_host_name(c, "127.0.0.1");
    if (SSL_connect(c) != 1) die("baseline: client handshake");
    if (SSL_write(c, pki.csr_der.data(), static_cast<int>(pki.csr_der.size())) <= 0)
      die("baseline: send CSR");
    char buffer[4096];
    while (SSL_read(c, buffer, sizeof buffer) > 0) {
    }
    SSL_free(c);
    close(fd);
  });
  const Cpu start = thread_cpu();
  const int fd = accept(listener, nullptr, nullptr);
  if (fd < 0) die("baseline: accept");
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  SSL* s = SSL_new(server_ctx);
  SSL_set_fd(s, fd);
  if (SSL_accept(s) != 1) die("baseline: server handshake");
  X509* peer = SSL_get1_peer_certificate(s);
  if (peer == nullptr || SSL_get_verify_result(s) != X509_V_OK) die("baseline: client certificate");
  X509_free(peer);
  std::string received;
  char buffer[4096];
  while (der_length(received) == 0 || received.size() < der_length(received)) {
    const int n = SSL_read(s, buffer, sizeof buffer);
    if (n <= 0) die("baseline: read CSR");
    received.append(buffer, static_cast<std::size_t>(n));
  }
  const auto* p = reinterpret_cast<const unsigned char*>(received.data());
  X509_REQ* csr = d2i_X509_REQ(nullptr, &p, static_cast<long>(received.size()));
  if (csr == nullptr) die("baseline: CSR");
  EVP_PKEY* key = X509_REQ_get0_pubkey(csr);
  if (key == nullptr || X509_REQ_verify(csr, key) != 1) die("baseline: CSR signature");
  X509* idc = X509_new();
  X509_set_version(idc, X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(idc), serial);
  X509_set_subject_name(idc, X509_REQ_get_subject_name(csr));
  X509_set_issuer_name(idc, X509_get_subject_name(pki.idc_ca));
  X509_gmtime_adj(X509_getm_notBefore(idc), 0);
  ASN1_TIME_set_string(X509_getm_notAfter(idc), "99991231235959Z");
  // OpenSSL 3.0's X509_set_pubkey re-encodes a provider key through its encoder and decodes it back
  // (about a tenth of this loop); a legacy EC key read from the CSR's SPKI skips that, as hallmark's
  // certificate builder does. The baseline is the careful use of OpenSSL, not the slow one.
  unsigned char* spki = nullptr;
  const int spki_len = i2d_X509_PUBKEY(X509_REQ_get_X509_PUBKEY(csr), &spki);
  const unsigned char* q = spki;
  EC_KEY* ec = spki_len > 0 ? d2i_EC_PUBKEY(nullptr, &q, spki_len) : nullptr;
  OPENSSL_free(spki);
  EVP_PKEY* legacy = EVP_PKEY_new();
  if (ec == nullptr || legacy == nullptr || EVP_PKEY_assign_EC_KEY(legacy, ec) != 1) die("baseline: CSR key");
  X509_set_pubkey(idc, legacy);
  EVP_PKEY_free(legacy);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, pki.idc_ca, idc, nullptr, nullptr, 0);
  for (const auto& [nid, value] :
       {std::pair{NID_basic_constraints, "critical,CA:FALSE"},
        std::pair{NID_key_usage, "critical,digitalSignature"}, std::pair{NID_ext_key_usage, "clientAuth"},
        std::pair{NID_authority_key_identifier, "keyid"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    X509_add_ext(idc, ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(idc, pki.idc_ca_key, EVP_sha256()) == 0) die("baseline: sign");
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
  X509_REQ_free(csr);
  SSL_shutdown(s);
  SSL_free(s);
  close(fd);
  const Cpu used = thread_cpu() - start;
  client.join();
  return used;
}

Cpu baseline_cpu(std::size_t iterations) {
  const Pki pki = make_pki();
  SSL_CTX* server = SSL_CTX_new(TLS_server_method());
  // As hallmark serve's TLS context sets it up (src/http/tls.cpp, with the [server] defaults).
  SSL_CTX_set_min_proto_version(server, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(server, TLS1_3_VERSION);
  SSL_CTX_set_options(server, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                  SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA);
  SSL_CTX_set_num_tickets(server, 0);
  SSL_CTX_set_options(server, SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(server, SSL_SESS_CACHE_OFF);
  if (SSL_CTX_set1_groups_list(server, "X25519:P-256:P-384") != 1) die("baseline: groups");
  SSL_CTX_use_certificate(server, pki.server);
  SSL_CTX_add1_chain_cert(server, pki.tls_ca);
  SSL_CTX_add1_chain_cert(server, pki.root);
  SSL_CTX_use_PrivateKey(server, pki.server_key);
  X509_STORE* store = SSL_CTX_get_cert_store(server);
  X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
  for (X509* anchor : {pki.bc_ca, pki.root, pki.idc_ca}) {
    X509_STORE_add_cert(store, anchor);
    SSL_CTX_add_client_CA(server, anchor);
  }
  SSL_CTX_set_verify(server, SSL_VERIFY_PEER, nullptr);
  // As the fleet's client (src/device/connection.cpp).
  SSL_CTX* client = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(client, TLS1_2_VERSION);
  SSL_CTX_set_session_cache_mode(client, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(client, SSL_OP_NO_TICKET);
  SSL_CTX_set1_groups_list(client, "X25519:P-256");
  SSL_CTX_use_certificate(client, pki.bc);
  SSL_CTX_add1_chain_cert(client, pki.bc_ca);
  SSL_CTX_use_PrivateKey(client, pki.device_key);
  X509_STORE_add_cert(SSL_CTX_get_cert_store(client), pki.root);
  SSL_CTX_set_verify(client, SSL_VERIFY_PEER, nullptr);

  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (listener < 0 || bind(listener, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0 ||
      listen(listener, 16) != 0 || getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) != 0)
    die("baseline: listen");
  Cpu total;
  for (std::size_t i = 0; i < iterations; ++i)
    total += baseline_once(pki, listener, address, server, client, 1000 + static_cast<long>(i));
  close(listener);
  SSL_CTX_free(server);
  SSL_CTX_free(client);
  for (X509* x : {pki.root, pki.bc_ca, pki.idc_ca, pki.tls_ca, pki.server, pki.bc}) X509_free(x);
  for (EVP_PKEY* k :
       {pki.root_key, pki.bc_ca_key, pki.idc_ca_key, pki.tls_ca_key, pki.server_key, pki.device_key})
    EVP_PKEY_free(k);
  const double n = static_cast<double>(iterations);
  return {total.user_us / n, total.system_us / n};
}

// ---- hallmark: a real server and a fleet ----

// User and system CPU time of a process, all its threads, from /proc/<pid>/stat.
Cpu process_cpu(pid_t pid) {
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
  const double tick = 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
  return {static_cast<double>(utime) * tick, static_cast<double>(stime) * tick};
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
  bool baseline_only = false;  // the baseline alone (for profiling it)
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
    } else if (a == "--baseline-only") {
      baseline_only = true;
    } else {
      std::fprintf(stderr, "usage: %s [--devices N] [--levels 1,16,64] [--keep] [--baseline-only]\n",
                   argv[0]);
      return 2;
    }
  }
  if (devices == 0 || levels.empty()) die("--devices and --levels must not be empty");
  log::set_level(log::Level::error);
  if (baseline_only) {
    const Cpu b = baseline_cpu(devices);
    std::printf("baseline server thread CPU %.0f us (user %.0f + sys %.0f)\n", b.total(), b.user_us,
                b.system_us);
    return 0;
  }

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

  std::printf(
      "\nbaseline: bare OpenSSL, TCP accept + mTLS 1.3 handshake (BC chain of 2) + CSR read, parsed and\n"
      "checked + certificate signed + PKCS#7 written, its server thread's CPU (user+sys), measured just\n"
      "before each level so that both see the same machine\n");
  std::printf("\n%-12s %8s %14s %12s %14s %12s %7s %8s %8s %10s %10s\n", "concurrency", "devices",
              "enrollments/s", "server us", "(user+sys)", "baseline us", "ratio", "p50 ms", "p99 ms",
              "client us", "floor ms");
  bool ok = true;
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  for (const auto& l : setup.levels) {
    const Cpu b = baseline_cpu(std::min<std::size_t>(devices, 200));
    const double base = b.total();
    device::FleetOptions o;
    o.reel = l.reel;
    o.server = *device::ServerUrl::parse(serve.url("/.well-known/est/bench"));
    o.trust = {*root};
    o.concurrency = l.concurrency;
    o.progress = ProgressBar::Mode::never;
    const Cpu server_before = process_cpu(server);
    const Cpu client_before = process_cpu(getpid());
    const auto report = device::run_fleet(o);
    const Cpu cpu = process_cpu(server) - server_before;
    const Cpu client = process_cpu(getpid()) - client_before;
    if (!report) die("fleet: " + report.error().detail);
    const double n = report->enrolled > 0 ? static_cast<double>(report->enrolled) : 1;
    const double per = cpu.total() / n;
    const double client_per = client.total() / n;
    // Server and fleet share this machine's cores: with `concurrency` devices in flight, a device
    // waits on average at least for the CPU work of the enrollments ahead of it.
    const double floor_ms = std::max(1.0, static_cast<double>(l.concurrency) / static_cast<double>(cores)) *
                            (per + client_per) / 1000;
    const std::string split = std::to_string(static_cast<long>(cpu.user_us / n)) + "+" +
                              std::to_string(static_cast<long>(cpu.system_us / n));
    const std::string base_split =
        std::to_string(static_cast<long>(b.user_us)) + "+" + std::to_string(static_cast<long>(b.system_us));
    std::printf("%-12zu %8zu %14.0f %12.0f %12s %12.0f %12s %7.2f %8.1f %8.1f %10.0f %10.1f\n", l.concurrency,
                report->devices, report->enrollments_per_second, per, split.c_str(), base, base_split.c_str(),
                per / base, report->p50_ms, report->p99_ms, client_per, floor_ms);
    if (report->failed > 0) {
      std::printf("  %zu failed:\n%s", report->failed, report->to_text().c_str());
      ok = false;
    }
    if (per / base > 1.3) ok = false;
    if (l.concurrency == 64 && report->p99_ms >= 50) ok = false;
  }
  std::printf(
      "\nclient us: the fleet's CPU per enrollment (this process); floor ms: (server + client CPU) x\n"
      "max(1, concurrency / %u cores), the mean latency no scheduling can beat on this machine\n"
      "\ntargets: server CPU per enrollment <= 1.3 x baseline; p99 < 50 ms at 64 concurrent devices\n",
      cores);
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
