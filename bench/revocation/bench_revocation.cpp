// bench_revocation: what revocation costs.
//
//   crl       a full CRL of N revoked entries (default 1,000,000) of one CA from a SQLite store:
//             revocation::generate_crl (paged reads, CRL number, make_crl, sign, store the DER), and
//             x509::make_crl alone; baseline: a bare OpenSSL X509_CRL with the same entries built with
//             X509_REVOKED/X509_CRL_add0_revoked, sorted and signed, then i2d (same process, same
//             machine load). Target: < 5 s for 1,000,000 entries.
//   ocsp      POST /ocsp over HTTP/1.1 keep-alive to the revocation routes on http::Server (plain),
//             requests without a nonce: pre-produced responses from the cache. Baseline: the same server
//             and clients with a handler that returns a fixed body of the same size. Target: >= 5,000/s.
//
// Usage: bench_revocation [--entries N] [--seconds S] [--connections C]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/x509.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "hallmark/ca/issuer.hpp"
#include "hallmark/ca/profile.hpp"
#include "hallmark/crypto/digest.hpp"
#include "hallmark/crypto/handle.hpp"
#include "hallmark/http/server.hpp"
#include "hallmark/revocation/service.hpp"
#include "hallmark/store/store.hpp"
#include "hallmark/x509/ocsp.hpp"

namespace {

using namespace hallmark;
using Steady = std::chrono::steady_clock;

double seconds_since(Steady::time_point t) {
  return std::chrono::duration<double>(Steady::now() - t).count();
}

template <class T>
T must(Result<T> r, const char* what) {
  if (!r) {
    std::fprintf(stderr, "bench_revocation: %s: %s\n", what, r.error().detail.c_str());
    std::exit(1);
  }
  return std::move(*r);
}

void must(Status s, const char* what) {
  if (!s) {
    std::fprintf(stderr, "bench_revocation: %s: %s\n", what, s.error().detail.c_str());
    std::exit(1);
  }
}

ca::Profile profile(const std::string& name) {
  ca::DefaultProfileOptions o;
  o.organization = "Bench OEM";
  for (auto& p : ca::default_profiles(o)) {
    if (p.name == name) {
      if (p.kind != ca::ProfileKind::end_entity) p.lifetime.reset();
      return p;
    }
  }
  std::fprintf(stderr, "no profile %s\n", name.c_str());
  std::exit(1);
}

struct Pki {
  x509::Certificate idc;
  std::shared_ptr<const crypto::FileSigner> idc_signer;
  x509::Certificate responder;
  std::shared_ptr<const crypto::FileSigner> responder_signer;
};

Pki make_pki(const hallmark::Clock& clock) {
  Pki p;
  auto root_key = must(crypto::PrivateKey::generate(crypto::KeyType::ec_p256), "key");
  auto root_signer = std::make_shared<const crypto::FileSigner>(root_key, "bench:root");
  auto root = must(ca::issue_self_signed(*root_signer, {{"org", "Bench OEM"}, {"cn", "Bench Root"}},
                                         profile("root"), clock),
                   "root");
  auto idc_key = must(crypto::PrivateKey::generate(crypto::KeyType::ec_p256), "key");
  p.idc_signer = std::make_shared<const crypto::FileSigner>(idc_key, "bench:idc");
  const ca::Issuer by_root(root, root_signer, clock);
  p.idc =
      must(by_root.issue(
               ca::IssueRequest{idc_key.public_key(), {{"org", "Bench OEM"}, {"cn", "Bench IDC CA"}}, {}, {}},
               profile("sub-ca-idc")),
           "idc");
  auto ocsp_key = must(crypto::PrivateKey::generate(crypto::KeyType::ec_p256), "key");
  p.responder_signer = std::make_shared<const crypto::FileSigner>(ocsp_key, "bench:ocsp");
  const ca::Issuer by_idc(p.idc, p.idc_signer, clock);
  p.responder =
      must(by_idc.issue(
               ca::IssueRequest{ocsp_key.public_key(), {{"org", "Bench OEM"}, {"cn", "Bench OCSP"}}, {}, {}},
               profile("ocsp-responder")),
           "responder");
  return p;
}

// N revoked rows of CA "idc", written straight into the migrated SQLite file in one transaction (the
// store's durable one-transaction-per-revocation path is not what is measured here).
std::vector<std::string> fill(const std::string& path, std::size_t n) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) std::exit(1);
  sqlite3_exec(db, "PRAGMA synchronous=OFF; BEGIN", nullptr, nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(
      db,
      "INSERT INTO certificates (serial, issuer_ca, subject, not_before, not_after, public_key_sha256, "
      "der, status, revoked_at, reason) VALUES (?, 'idc', 'CN=x', 0, 253402300799, '', x'00', "
      "'revoked', ?, ?)",
      -1, &st, nullptr);
  std::vector<std::string> serials;
  serials.reserve(n);
  const auto random = crypto::random_bytes(16 * n);
  for (std::size_t i = 0; i < n; ++i) {
    Bytes s(random.begin() + static_cast<std::ptrdiff_t>(16 * i),
            random.begin() + static_cast<std::ptrdiff_t>(16 * i + 16));
    s[0] = static_cast<std::byte>((std::to_integer<unsigned>(s[0]) & 0x7f) | 0x01);
    serials.push_back(to_hex(s));
    sqlite3_bind_text(st, 1, serials.back().c_str(), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, 1'800'000'000 + static_cast<std::int64_t>(i % 100'000));
    sqlite3_bind_int(st, 3, static_cast<int>(i % 6));
    if (sqlite3_step(st) != SQLITE_DONE) std::exit(1);
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  return serials;
}

double baseline_openssl_crl(const std::vector<std::string>& serials, const Pki& pki) {
  const auto start = Steady::now();
  crypto::X509CrlPtr crl(X509_CRL_new());
  X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2);
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(pki.idc.native()));
  crypto::Asn1TimePtr now(ASN1_TIME_set(nullptr, std::time(nullptr)));
  crypto::Asn1TimePtr next(ASN1_TIME_set(nullptr, std::time(nullptr) + 86400));
  X509_CRL_set1_lastUpdate(crl.get(), now.get());
  X509_CRL_set1_nextUpdate(crl.get(), next.get());
  for (std::size_t i = 0; i < serials.size(); ++i) {
    X509_REVOKED* r = X509_REVOKED_new();
    BIGNUM* bn = nullptr;
    BN_hex2bn(&bn, serials[i].c_str());
    ASN1_INTEGER* ai = BN_to_ASN1_INTEGER(bn, nullptr);
    X509_REVOKED_set_serialNumber(r, ai);
    ASN1_INTEGER_free(ai);
    BN_free(bn);
    crypto::Asn1TimePtr t(ASN1_TIME_set(nullptr, 1'800'000'000 + static_cast<long>(i % 100'000)));
    X509_REVOKED_set_revocationDate(r, t.get());
    if (i % 6 != 0) {
      ASN1_ENUMERATED* e = ASN1_ENUMERATED_new();
      ASN1_ENUMERATED_set(e, static_cast<long>(i % 6));
      X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, e, 0, 0);
      ASN1_ENUMERATED_free(e);
    }
    X509_CRL_add0_revoked(crl.get(), r);
  }
  X509_CRL_sort(crl.get());
  X509_CRL_sign(crl.get(), pki.idc_signer->native_private_key(), EVP_sha256());
  const int len = i2d_X509_CRL(crl.get(), nullptr);
  std::vector<unsigned char> der(static_cast<std::size_t>(len));
  auto* p = der.data();
  i2d_X509_CRL(crl.get(), &p);
  return seconds_since(start);
}

// ---- HTTP load ----

int connect_to(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) std::exit(1);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Responses per second for `seconds` over `connections` keep-alive connections (one thread each).
double load(std::uint16_t port, const std::string& request, int connections, double seconds,
            std::size_t* bytes) {
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> done{0};
  std::atomic<std::size_t> last_size{0};
  std::vector<std::thread> threads;
  const auto start = Steady::now();
  for (int c = 0; c < connections; ++c) {
    threads.emplace_back([&] {
      const int fd = connect_to(port);
      std::string buf;
      char chunk[16384];
      while (!stop.load(std::memory_order_relaxed)) {
        if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
          break;
        buf.clear();
        std::size_t need = std::string::npos;
        while (need == std::string::npos || buf.size() < need) {
          const auto n = ::recv(fd, chunk, sizeof chunk, 0);
          if (n <= 0) goto out;
          buf.append(chunk, static_cast<std::size_t>(n));
          if (need == std::string::npos) {
            const auto end = buf.find("\r\n\r\n");
            if (end == std::string::npos) continue;
            auto cl = buf.find("Content-Length: ");
            if (cl == std::string::npos) cl = buf.find("content-length: ");
            need = end + 4 + std::strtoull(buf.c_str() + cl + 16, nullptr, 10);
          }
        }
        last_size = need;
        done.fetch_add(1, std::memory_order_relaxed);
      }
    out:
      ::close(fd);
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  if (bytes != nullptr) *bytes = last_size;
  return static_cast<double>(done.load()) / seconds_since(start);
}

std::string post(const std::string& path, std::string_view body) {
  return "POST " + path +
         " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/ocsp-request\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t entries = 1'000'000;
  double seconds = 3;
  int connections = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--entries") entries = std::strtoull(argv[i + 1], nullptr, 10);
    if (a == "--seconds") seconds = std::strtod(argv[i + 1], nullptr);
    if (a == "--connections") connections = std::atoi(argv[i + 1]);
  }
  const SystemClock clock;
  const auto dir =
      std::filesystem::temp_directory_path() / ("hallmark-bench-revocation-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto db_path = (dir / "bench.db").string();
  const auto pki = make_pki(clock);
  auto store = must(store::open_store("sqlite:" + db_path), "open store");
  must(store->migrate(), "migrate");
  must(store->add_ca(store::CaRecord{0, "idc", "idc", pki.idc.to_der(), "", "active", 0, false}), "add CA");

  std::printf("== crl: %zu revoked entries\n", entries);
  auto t = Steady::now();
  const auto serials = fill(db_path, entries);
  std::printf("  fill (bench setup, raw SQLite)        %8.2f s\n", seconds_since(t));
  revocation::CaSource ca{"idc", pki.idc, pki.idc_signer, pki.responder, pki.responder_signer};
  t = Steady::now();
  const auto crl =
      must(revocation::generate_crl(*store, ca, clock.now(), std::chrono::hours(24)), "generate_crl");
  const double generate = seconds_since(t);
  // make_crl alone, from entries in memory.
  x509::CrlTemplate tmpl;
  tmpl.this_update = clock.now();
  tmpl.next_update = tmpl.this_update + std::chrono::hours(24);
  tmpl.entries.reserve(serials.size());
  for (std::size_t i = 0; i < serials.size(); ++i) {
    x509::CrlEntry e{*parse_hex(serials[i]),
                     Seconds{std::chrono::seconds{1'800'000'000 + static_cast<long>(i % 100'000)}},
                     std::nullopt};
    if (i % 6 != 0) e.reason = static_cast<x509::RevocationReason>(i % 6);
    tmpl.entries.push_back(std::move(e));
  }
  t = Steady::now();
  const auto bare = must(x509::make_crl(tmpl, pki.idc, *pki.idc_signer), "make_crl");
  const double make = seconds_since(t);
  const double baseline = baseline_openssl_crl(serials, pki);
  std::printf("  generate_crl (store -> signed, stored) %8.2f s   %zu bytes, number %llu\n", generate,
              crl.to_der().size(), static_cast<unsigned long long>(crl.crl_number().value_or(0)));
  std::printf("  make_crl alone                         %8.2f s   %zu bytes\n", make, bare.to_der().size());
  std::printf("  baseline: bare OpenSSL X509_CRL        %8.2f s\n", baseline);
  std::printf(
      "  ratio generate_crl / baseline          %8.2f   (target: generate_crl < 5 s for 1,000,000: %s)\n",
      generate / baseline, entries >= 1'000'000 ? (generate < 5 ? "met" : "MISSED") : "n/a");
  bool ok = entries < 1'000'000 || generate < 5;

  // ---- OCSP over HTTP ----
  revocation::ServiceOptions so;
  so.node_id = "bench";
  so.poll_interval = std::chrono::milliseconds(1000);
  revocation::Service service(*store, {ca}, clock, so);
  must(service.start(), "service");
  http::Router router;
  service.install(router);
  http::ServerConfig config;
  config.section = "bench";
  config.listen = "127.0.0.1";
  config.port = 0;
  config.tls = false;
  config.threads = 1;
  config.handler_threads = 2;
  auto server = must(http::Server::start(config, router.handler()), "server");
  // The requests: distinct serials, each answered once before (pre-produced).
  std::vector<std::string> requests;
  for (std::size_t i = 0; i < 1; ++i) {
    auto id = must(x509::make_ocsp_cert_id(pki.idc, *parse_hex(serials[i % serials.size()])), "cert id");
    auto der = must(x509::make_ocsp_request({id}), "request");
    requests.push_back(post("/ocsp", as_chars(der)));
  }
  std::size_t ocsp_bytes = 0;
  (void)load(server->port(), requests[0], 1, 0.2, &ocsp_bytes);  // warm: the response is produced once
  const double ocsp = load(server->port(), requests[0], connections, seconds, &ocsp_bytes);
  server->stop();
  service.stop();

  // Baseline: the same server answering a fixed body of the same size.
  const std::string fixed(ocsp_bytes > 200 ? ocsp_bytes - 150 : 600, 'x');
  auto plain = must(http::Server::start(config,
                                        [&fixed](const http::Request&) {
                                          auto r =
                                              http::Response::text(200, fixed, "application/ocsp-response");
                                          return r;
                                        }),
                    "baseline server");
  const double base = load(plain->port(), requests[0], connections, seconds, nullptr);
  plain->stop();
  std::printf("== ocsp: POST /ocsp, pre-produced responses, %d keep-alive connections, %.0f s\n", connections,
              seconds);
  std::printf("  responses/s                            %8.0f   (target >= 5,000: %s)\n", ocsp,
              ocsp >= 5000 ? "met" : "MISSED");
  std::printf("  baseline: fixed body, same server      %8.0f\n", base);
  std::printf("  ratio ocsp / baseline                  %8.2f\n", ocsp / base);
  ok = ok && ocsp >= 5000;

  store.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return ok ? 0 : 1;
}
