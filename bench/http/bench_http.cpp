// bench_http: what the HTTP server costs per connection, on its side of the wire.
//
//   handshake/*  a new TCP connection and a full mTLS handshake (P-256 server and client
//                certificates), GET /healthz, read the answer, close: the shape of a device enrolling
//   request      GET on a keep-alive connection through a trivial handler on the handler pool
//   baseline     the same handshake and exchange against a bare blocking OpenSSL loop (same certificates,
//                tickets off, client certificate verified), for the ratio: the machine's load cancels
//
// The server runs in this process with one I/O thread and one handler thread; the client is the
// benchmark thread. server_us is the process CPU time minus the client thread's, per operation: what
// a server core spends. Extra arguments are Google Benchmark flags.
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "hallmark/crypto/handle.hpp"
#include "hallmark/http/server.hpp"

namespace {

using namespace hallmark;
using namespace std::chrono_literals;

struct Issued {
  crypto::X509Ptr cert;
  crypto::EvpPkeyPtr key;
};

Issued make_cert(const char* cn, const Issued* issuer, bool ca, const char* san = nullptr) {
  static long serial = 1;
  Issued out{crypto::X509Ptr(X509_new()), crypto::EvpPkeyPtr(EVP_EC_gen("P-256"))};
  X509* x = out.cert.get();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn), -1, -1,
                             0);
  X509_set_issuer_name(x, issuer != nullptr ? X509_get_subject_name(issuer->cert.get()) : name);
  X509_set_pubkey(x, out.key.get());
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, issuer != nullptr ? issuer->cert.get() : x, x, nullptr, nullptr, 0);
  auto add = [&](int nid, const char* value) {
    crypto::X509ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &v3, nid, value));
    X509_add_ext(x, ext.get(), -1);
  };
  add(NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  add(NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
  if (san != nullptr) add(NID_subject_alt_name, san);
  X509_sign(x, issuer != nullptr ? issuer->key.get() : out.key.get(), EVP_sha256());
  return out;
}

void write_pem(const std::string& path, X509* cert, X509* chain = nullptr) {
  crypto::BioPtr bio(BIO_new_file(path.c_str(), "w"));
  PEM_write_bio_X509(bio.get(), cert);
  if (chain != nullptr) PEM_write_bio_X509(bio.get(), chain);
}
void write_key(const std::string& path, EVP_PKEY* key) {
  crypto::BioPtr bio(BIO_new_file(path.c_str(), "w"));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
}

double cpu_seconds(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct Fixture {
  std::filesystem::path dir;
  Issued server_ca = make_cert("Bench Server CA", nullptr, true);
  Issued server = make_cert("localhost", &server_ca, false, "DNS:localhost,IP:127.0.0.1");
  Issued device_ca = make_cert("Bench Device CA", nullptr, true);
  Issued device = make_cert("device", &device_ca, false);
  std::unique_ptr<http::Server> servers[2];  // tickets off, on
  int baseline_fd = -1;
  std::uint16_t baseline_port = 0;
  std::thread baseline;
  crypto::Handle<SSL_CTX, SSL_CTX_free> client[3];  // TLS 1.3, TLS 1.3 (for tickets on), TLS 1.2

  Fixture() {
    std::signal(SIGPIPE, SIG_IGN);
    dir = std::filesystem::temp_directory_path() / ("hallmark-bench-http-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    write_pem(dir / "server.pem", server.cert.get(), server_ca.cert.get());
    write_key(dir / "server.key", server.key.get());
    for (int tickets = 0; tickets < 2; ++tickets) {
      http::ServerConfig c;
      c.listen = "127.0.0.1";
      c.port = 0;
      c.tls_cert = dir / "server.pem";
      c.tls_key = dir / "server.key";
      c.client_anchors = {x509::Certificate::parse_der(der_of(device_ca.cert.get())).value()};
      c.session_tickets = tickets == 1;
      c.threads = 1;
      c.handler_threads = 1;
      servers[tickets] = http::Server::start(c, [](const http::Request&) {
                           return http::Response::text(200, "pong\n");
                         }).value();
    }
    for (int i = 0; i < 3; ++i) {
      client[i].reset(SSL_CTX_new(TLS_client_method()));
      const int version = i == 2 ? TLS1_2_VERSION : TLS1_3_VERSION;
      SSL_CTX_set_min_proto_version(client[i].get(), version);
      SSL_CTX_set_max_proto_version(client[i].get(), version);
      SSL_CTX_set_verify(client[i].get(), SSL_VERIFY_PEER, nullptr);
      X509_STORE_add_cert(SSL_CTX_get_cert_store(client[i].get()), server_ca.cert.get());
      SSL_CTX_use_certificate(client[i].get(), device.cert.get());
      SSL_CTX_use_PrivateKey(client[i].get(), device.key.get());
    }
    start_baseline();
  }

  // One thread: accept, handshake, read a request, answer in one write, close.
  void start_baseline() {
    baseline_fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(baseline_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(baseline_fd, 128);
    socklen_t len = sizeof addr;
    ::getsockname(baseline_fd, reinterpret_cast<sockaddr*>(&addr), &len);
    baseline_port = ntohs(addr.sin_port);
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384");
    SSL_CTX_use_certificate(ctx, server.cert.get());
    SSL_CTX_add1_chain_cert(ctx, server_ca.cert.get());
    SSL_CTX_use_PrivateKey(ctx, server.key.get());
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), device_ca.cert.get());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    baseline = std::thread([this, ctx] {
      for (;;) {
        const int fd = ::accept(baseline_fd, nullptr, nullptr);
        if (fd < 0) break;
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        SSL* ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        char buf[4096];
        if (SSL_accept(ssl) == 1 && SSL_read(ssl, buf, sizeof buf) > 0) {
          static constexpr char kResponse[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
          SSL_write(ssl, kResponse, sizeof kResponse - 1);
          SSL_shutdown(ssl);
        }
        SSL_free(ssl);
        ::close(fd);
      }
      SSL_CTX_free(ctx);
    });
  }

  ~Fixture() {
    ::shutdown(baseline_fd, SHUT_RDWR);
    ::close(baseline_fd);
    baseline.join();
    for (auto& s : servers) s.reset();
    std::filesystem::remove_all(dir);
  }

  static Bytes der_of(X509* x) {
    unsigned char* p = nullptr;
    const int n = i2d_X509(x, &p);
    Bytes out(reinterpret_cast<std::byte*>(p), reinterpret_cast<std::byte*>(p) + n);
    OPENSSL_free(p);
    return out;
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

struct Connection {
  int fd = -1;
  crypto::Handle<SSL, SSL_free> ssl;
  Connection(std::uint16_t port, SSL_CTX* ctx) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) std::abort();
    ssl.reset(SSL_new(ctx));
    SSL_set_fd(ssl.get(), fd);
    if (SSL_connect(ssl.get()) != 1) std::abort();
  }
  ~Connection() {
    SSL_shutdown(ssl.get());
    ssl.reset();
    ::close(fd);
  }
  // Sends a GET and reads a response that fits one read (the server writes it in one piece).
  void get(const char* path) {
    std::string request = std::string("GET ") + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
    SSL_write(ssl.get(), request.data(), static_cast<int>(request.size()));
    char buf[4096];
    if (SSL_read(ssl.get(), buf, sizeof buf) <= 0) std::abort();
  }
};

void report(benchmark::State& state, double process0, double thread0) {
  const double server =
      (cpu_seconds(CLOCK_PROCESS_CPUTIME_ID) - process0) - (cpu_seconds(CLOCK_THREAD_CPUTIME_ID) - thread0);
  state.counters["server_us"] = benchmark::Counter(server * 1e6 / static_cast<double>(state.iterations()));
  state.counters["per_core_s"] = benchmark::Counter(static_cast<double>(state.iterations()) / server);
  state.SetItemsProcessed(state.iterations());
}

void handshake(benchmark::State& state, int server, int client) {
  auto& f = fixture();
  const auto port = server < 0 ? f.baseline_port : f.servers[server]->port();
  const double p0 = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID);
  const double t0 = cpu_seconds(CLOCK_THREAD_CPUTIME_ID);
  for (auto _ : state) {
    Connection c(port, f.client[client].get());
    c.get("/healthz");
  }
  report(state, p0, t0);
}

void BM_handshake_tls13_tickets_off(benchmark::State& s) {
  handshake(s, 0, 0);
}
void BM_handshake_tls13_tickets_on(benchmark::State& s) {
  handshake(s, 1, 1);
}
void BM_handshake_tls12(benchmark::State& s) {
  handshake(s, 0, 2);
}
void BM_baseline_tls13(benchmark::State& s) {
  handshake(s, -1, 0);
}
void BM_baseline_tls12(benchmark::State& s) {
  handshake(s, -1, 2);
}

void BM_request_keepalive(benchmark::State& state) {
  auto& f = fixture();
  Connection c(f.servers[0]->port(), f.client[0].get());
  const double p0 = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID);
  const double t0 = cpu_seconds(CLOCK_THREAD_CPUTIME_ID);
  for (auto _ : state) c.get("/ping");
  report(state, p0, t0);
}

BENCHMARK(BM_handshake_tls13_tickets_off)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_handshake_tls13_tickets_on)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_handshake_tls12)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_baseline_tls13)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_baseline_tls12)->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_request_keepalive)->UseRealTime()->MinTime(1.0);

}  // namespace

BENCHMARK_MAIN();
