// The HTTP server against real clients: curl, and a small OpenSSL client written here that computes
// the channel binding on its side. PKIs are generated at run time with the OpenSSL API.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "hallmark/crypto/handle.hpp"
#include "hallmark/http/router.hpp"
#include "hallmark/http/server.hpp"
#include "process.hpp"

namespace hallmark::http {
namespace {

using namespace std::chrono_literals;
using testing::run;
using testing::shell_quote;
using testing::TempDir;
using SslCtxPtr = crypto::Handle<SSL_CTX, SSL_CTX_free>;
using SslPtr = crypto::Handle<SSL, SSL_free>;

// ---- a throwaway PKI -------------------------------------------------------------------------------

struct Issued {
  crypto::X509Ptr cert;
  crypto::EvpPkeyPtr key;
};

crypto::EvpPkeyPtr make_key() {
  return crypto::EvpPkeyPtr(EVP_EC_gen("P-256"));
}

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  crypto::X509ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  ASSERT_TRUE(ext) << nid;
  X509_add_ext(cert, ext.get(), -1);
}

// Issued by `issuer` (self-signed when null); validity relative to now.
Issued make_cert(const std::string& cn, const Issued* issuer, bool ca, std::chrono::seconds not_before = -1h,
                 std::chrono::seconds not_after = 24h, const char* san = nullptr) {
  static long serial = 1;
  Issued out{crypto::X509Ptr(X509_new()), make_key()};
  X509* x = out.cert.get();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), not_before.count());
  X509_gmtime_adj(X509_getm_notAfter(x), not_after.count());
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()),
                             -1, -1, 0);
  X509_set_issuer_name(x, issuer != nullptr ? X509_get_subject_name(issuer->cert.get()) : name);
  X509_set_pubkey(x, out.key.get());
  X509* issuer_cert = issuer != nullptr ? issuer->cert.get() : x;
  add_ext(x, issuer_cert, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  add_ext(x, issuer_cert, NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
  add_ext(x, issuer_cert, NID_subject_key_identifier, "hash");
  if (issuer != nullptr) add_ext(x, issuer_cert, NID_authority_key_identifier, "keyid");
  if (san != nullptr) add_ext(x, issuer_cert, NID_subject_alt_name, san);
  EVP_PKEY* signing_key = issuer != nullptr ? issuer->key.get() : out.key.get();
  EXPECT_GT(X509_sign(x, signing_key, EVP_sha256()), 0);
  return out;
}

std::string pem_of(X509* x) {
  crypto::BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), x);
  return crypto::bio_to_string(bio.get());
}

std::string key_pem_of(EVP_PKEY* k) {
  crypto::BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), k, nullptr, nullptr, 0, nullptr, nullptr);
  return crypto::bio_to_string(bio.get());
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

x509::Certificate certificate_of(X509* x) {
  return x509::Certificate::parse_pem(pem_of(x)).value();
}

std::string fingerprint(X509* x) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  X509_digest(x, EVP_sha256(), md, &len);
  return to_hex(ByteView(reinterpret_cast<const std::byte*>(md), len));
}

// nginx's $ssl_client_escaped_cert.
std::string url_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

struct Pki {
  TempDir dir{"hallmark-http"};
  Issued server_ca, server, device_ca, device, expired_device, rogue_ca, rogue_device, proxy_ca, proxy,
      pinned_proxy;

  Pki() {
    server_ca = make_cert("Test Server CA", nullptr, true);
    server = make_cert("localhost", &server_ca, false, -1h, 24h, "DNS:localhost,IP:127.0.0.1");
    device_ca = make_cert("Test Device CA", nullptr, true);
    device = make_cert("device-1", &device_ca, false);
    expired_device = make_cert("device-old", &device_ca, false, -48h, -24h);
    rogue_ca = make_cert("Rogue CA", nullptr, true);
    rogue_device = make_cert("device-1", &rogue_ca, false);
    proxy_ca = make_cert("Test Proxy CA", nullptr, true);
    proxy = make_cert("nginx", &proxy_ca, false);
    pinned_proxy = make_cert("pinned-nginx", nullptr, false);
    write_text(dir / "server-ca.pem", pem_of(server_ca.cert.get()));
    write_text(dir / "server.pem", pem_of(server.cert.get()) + pem_of(server_ca.cert.get()));
    write_text(dir / "server.key", key_pem_of(server.key.get()));
    write_text(dir / "other.key", key_pem_of(device.key.get()));
    for (auto [name, issued] : {std::pair{"device", &device},
                                {"expired", &expired_device},
                                {"rogue", &rogue_device},
                                {"proxy", &proxy},
                                {"pinned", &pinned_proxy}}) {
      write_text(dir / (std::string(name) + ".pem"), pem_of(issued->cert.get()));
      write_text(dir / (std::string(name) + ".key"), key_pem_of(issued->key.get()));
    }
  }

  [[nodiscard]] ServerConfig config() const {
    ServerConfig c;
    c.listen = "127.0.0.1";
    c.port = 0;
    c.tls_cert = dir / "server.pem";
    c.tls_key = dir / "server.key";
    c.client_anchors = {certificate_of(device_ca.cert.get())};
    c.threads = 2;
    c.handler_threads = 4;
    c.timeouts.handshake = 3s;
    c.timeouts.header = 3s;
    c.timeouts.body = 3s;
    c.timeouts.idle = 3s;
    c.timeouts.drain = 5s;
    return c;
  }
};

Pki& pki() {
  static Pki p;
  return p;
}

// ---- a small OpenSSL client ------------------------------------------------------------------------

// The test's client writes to sockets the server has closed.
const bool kIgnoreSigpipe = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

int connect_to(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

std::atomic<int> g_tickets{0};

struct ClientOptions {
  int version = 0;   // 0: any, else TLS1_2_VERSION / TLS1_3_VERSION
  std::string cert;  // name in the PKI dir ("device"), or empty
};

class TlsClient {
 public:
  TlsClient(std::uint16_t port, const ClientOptions& o) {
    ctx_.reset(SSL_CTX_new(TLS_client_method()));
    if (o.version != 0) {
      SSL_CTX_set_min_proto_version(ctx_.get(), o.version);
      SSL_CTX_set_max_proto_version(ctx_.get(), o.version);
    }
    SSL_CTX_load_verify_locations(ctx_.get(), (pki().dir / "server-ca.pem").c_str(), nullptr);
    SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_session_cache_mode(ctx_.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx_.get(), [](SSL*, SSL_SESSION*) {
      ++g_tickets;
      return 0;
    });
    if (!o.cert.empty()) {
      SSL_CTX_use_certificate_file(ctx_.get(), (pki().dir / (o.cert + ".pem")).c_str(), SSL_FILETYPE_PEM);
      SSL_CTX_use_PrivateKey_file(ctx_.get(), (pki().dir / (o.cert + ".key")).c_str(), SSL_FILETYPE_PEM);
    }
    fd_ = connect_to(port);
    if (fd_ < 0) return;
    ssl_.reset(SSL_new(ctx_.get()));
    SSL_set_fd(ssl_.get(), fd_);
    SSL_set_tlsext_host_name(ssl_.get(), "localhost");
    SSL_set1_host(ssl_.get(), "localhost");
    connected_ = SSL_connect(ssl_.get()) == 1;
    ERR_clear_error();
  }
  ~TlsClient() {
    ssl_.reset();
    if (fd_ >= 0) ::close(fd_);
  }

  [[nodiscard]] bool connected() const { return connected_; }
  [[nodiscard]] SSL* ssl() const { return ssl_.get(); }

  // What the client computes for the channel binding, as the server should.
  [[nodiscard]] std::string binding_hex() const {
    unsigned char buf[64];
    if (SSL_version(ssl_.get()) == TLS1_3_VERSION) {
      static constexpr char kLabel[] = "EXPORTER-Channel-Binding";
      SSL_export_keying_material(ssl_.get(), buf, 32, kLabel, sizeof kLabel - 1, nullptr, 0, 0);
      return to_hex(ByteView(reinterpret_cast<const std::byte*>(buf), 32));
    }
    const auto n = SSL_get_finished(ssl_.get(), buf, sizeof buf);  // ours: the first Finished
    return to_hex(ByteView(reinterpret_cast<const std::byte*>(buf), n));
  }

  bool send(std::string_view data) {
    return connected_ &&
           SSL_write(ssl_.get(), data.data(), static_cast<int>(data.size())) == static_cast<int>(data.size());
  }

  // One response: header, then Content-Length bytes of body. Empty on failure or EOF.
  std::string read_response() {
    for (;;) {
      const auto end = in_.find("\r\n\r\n");
      if (end != std::string::npos) {
        std::size_t length = 0;
        const auto cl = in_.find("Content-Length: ");
        if (cl != std::string::npos && cl < end) length = std::stoul(in_.substr(cl + 16));
        if (in_.size() >= end + 4 + length) {
          auto out = in_.substr(0, end + 4 + length);
          in_.erase(0, end + 4 + length);
          return out;
        }
      }
      if (!read_more()) return {};
    }
  }

  // True when the server closed the connection (EOF or a TLS alert) without sending more.
  bool closed_by_peer() { return in_.empty() && !read_more(); }

  std::string exchange(std::string_view request) {
    if (!send(request)) return {};
    return read_response();
  }

 private:
  bool read_more() {
    if (!connected_) return false;
    char buf[16384];
    const int n = SSL_read(ssl_.get(), buf, sizeof buf);
    if (n <= 0) {
      ERR_clear_error();
      return false;
    }
    in_.append(buf, static_cast<std::size_t>(n));
    return true;
  }

  SslCtxPtr ctx_;
  SslPtr ssl_;
  int fd_ = -1;
  bool connected_ = false;
  std::string in_;
};

int status_of(const std::string& response) {
  return response.size() > 12 ? std::stoi(response.substr(9, 3)) : 0;
}
std::string body_of(const std::string& response) {
  const auto end = response.find("\r\n\r\n");
  return end == std::string::npos ? std::string{} : response.substr(end + 4);
}

// "key=value" lines from the echo handler.
std::map<std::string, std::string> fields_of(const std::string& response) {
  std::map<std::string, std::string> out;
  std::istringstream in(body_of(response));
  for (std::string line; std::getline(in, line);) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

std::string get(std::string_view path, std::string_view extra_headers = {}) {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: localhost\r\n" + std::string(extra_headers) +
         "\r\n";
}

// ---- the server under test -------------------------------------------------------------------------

struct Harness {
  std::atomic<int> calls{0};
  Router router;
  std::unique_ptr<Server> server;

  explicit Harness(ServerConfig config) {
    router.add("GET", "/echo", [this](const Request& r) { return echo(r); });
    router.add("POST", "/echo", [this](const Request& r) { return echo(r); });
    router.add("GET", "/slow", [this](const Request&) {
      ++calls;
      std::this_thread::sleep_for(1200ms);
      return Response::text(200, "slow done");
    });
    auto started = Server::start(std::move(config), router.handler());
    if (!started) ADD_FAILURE() << started.error().detail;
    if (started) server = std::move(*started);
  }

  Response echo(const Request& r) {
    ++calls;
    std::string out;
    const auto& p = r.peer;
    out += "chain=" + std::to_string(p.chain.size()) + "\n";
    out += "leaf=" + (p.leaf() != nullptr ? p.leaf()->fingerprint_sha256_hex() : std::string{}) + "\n";
    out += "expired=" + std::to_string(int{p.expired}) + "\n";
    out += "verified=" + std::to_string(int{p.verified}) + "\n";
    out += "tls=" + std::string(to_string(p.tls_version)) + "\n";
    out += "cb_type=" + std::string(to_string(p.channel_binding.type)) + "\n";
    out += "cb=" + to_hex(p.channel_binding.value) + "\n";
    out += "client_cb=" + std::string(r.headers.get("x-binding").value_or("")) + "\n";
    out += "via_proxy=" + std::to_string(int{p.via_proxy}) + "\n";
    out += "proxy_fp=" + p.proxy_fingerprint + "\n";
    out += "spoofed=" + std::to_string(int{r.spoofed_client_cert_header}) + "\n";
    out += "body=" + r.body + "\n";
    out += "id=" + r.request_id + "\n";
    return Response::text(200, out);
  }

  [[nodiscard]] std::uint16_t port() const { return server->port(); }
};

// ---- tests -----------------------------------------------------------------------------------------

TEST(Router, ExactPatternsRestAndDefaults) {
  Router router;
  router.add("GET", "/.well-known/est/cacerts",
             [](const Request&) { return Response::text(200, "cacerts"); });
  router.add("GET", "/.well-known/est/{alias}/cacerts", [](const Request&, const PathParams& p) {
    return Response::text(200, "alias " + std::string(p.get("alias")));
  });
  router.add("POST", "/files/*", [](const Request&, const PathParams& p) {
    return Response::text(200, std::string(p.get("*")));
  });
  auto call = [&](std::string method, std::string target) {
    Request r;
    r.method = std::move(method);
    r.target = std::move(target);
    return router(r);
  };
  EXPECT_EQ(call("GET", "/.well-known/est/cacerts").body, "cacerts");
  EXPECT_EQ(call("GET", "/.well-known/est/cacerts?x=1").body, "cacerts");
  EXPECT_EQ(call("GET", "/.well-known/est/fleet-a/cacerts").body, "alias fleet-a");
  EXPECT_EQ(call("GET", "/.well-known/est/a%2Fb/cacerts").body, "alias a%2Fb");  // raw, for EST to refuse
  EXPECT_EQ(call("GET", "/.well-known/est/a/b/cacerts").status, 404);
  EXPECT_EQ(call("GET", "/.well-known/est//cacerts").status, 404);
  EXPECT_EQ(call("POST", "/files/a/b.txt").body, "a/b.txt");
  EXPECT_EQ(call("POST", "/files/").body, "");

  const auto not_found = call("GET", "/nope");
  EXPECT_EQ(not_found.status, 404);
  EXPECT_EQ(not_found.headers.get("content-type"), "application/problem+json");
  EXPECT_EQ(
      not_found.body,
      R"({"code":"not_found","detail":"no resource at /nope","status":404,"title":"Not Found","type":"about:blank"})");
  const auto wrong_method = call("DELETE", "/.well-known/est/cacerts");
  EXPECT_EQ(wrong_method.status, 405);
  EXPECT_EQ(wrong_method.headers.get("Allow"), "GET");
}

TEST(Headers, CaseInsensitive) {
  Headers h;
  h.add("X-SSL-Client-Cert", "a");
  h.add("x-ssl-client-cert", "b");
  EXPECT_EQ(h.get("X-Ssl-Client-Cert"), "a");
  EXPECT_EQ(h.count("X-SSL-CLIENT-CERT"), 2u);
  h.set("X-SSL-Client-Cert", "c");
  EXPECT_EQ(h.count("x-ssl-client-cert"), 1u);
  EXPECT_EQ(h.erase("X-SSL-CLIENT-CERT"), 1u);
  EXPECT_FALSE(h.has("x-ssl-client-cert"));
}

TEST(Config, ExactMessages) {
  auto c = pki().config();
  c.tls_cert = "/nonexistent/x.pem";
  EXPECT_EQ(validate(c).error().detail, "[server] tls_cert: cannot open /nonexistent/x.pem");
  c = pki().config();
  c.tls_key = pki().dir / "other.key";
  EXPECT_EQ(validate(c).error().detail,
            "[server] tls_key: does not match the certificate in " + (pki().dir / "server.pem"));
  c = pki().config();
  c.listen = "localhost:80";
  EXPECT_EQ(validate(c).error().detail, "[server] listen: not an IP address: localhost:80");
  c = pki().config();
  c.timeouts.header = 0s;
  EXPECT_EQ(validate(c).error().detail, "[server] header_timeout: must be positive");
  c = pki().config();
  c.trusted_proxies.fingerprints = {"abcd"};
  EXPECT_EQ(validate(c).error().detail, "[server] trusted_proxies: not a SHA-256 fingerprint: abcd");
  c = pki().config();
  c.tls_key_passphrase = "env:HALLMARK_HTTP_TEST_UNSET";
  write_text(pki().dir / "empty.pem", "");
  c.tls_cert = pki().dir / "empty.pem";
  EXPECT_EQ(validate(c).error().detail, "[server] tls_cert: no certificate in " + (pki().dir / "empty.pem"));
  EXPECT_TRUE(validate(pki().config()).has_value());
}

TEST(Server, CurlHealthzOverTls) {
  Harness h(pki().config());
  const auto r = run("curl -sS --cacert " + shell_quote(pki().dir / "server-ca.pem") +
                     " https://localhost:" + std::to_string(h.port()) + "/healthz -D -");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("HTTP/1.1 200 OK"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Content-Length: 3"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("X-Request-Id: "), std::string::npos) << r.output;
  EXPECT_TRUE(r.output.ends_with("ok\n")) << r.output;
  // And a client certificate through curl reaches the handler.
  const auto e =
      run("curl -sS --cacert " + shell_quote(pki().dir / "server-ca.pem") + " --cert " +
          shell_quote(pki().dir / "device.pem") + " --key " + shell_quote(pki().dir / "device.key") +
          " https://localhost:" + std::to_string(h.port()) + "/echo");
  EXPECT_NE(e.output.find("leaf=" + fingerprint(pki().device.cert.get())), std::string::npos) << e.output;
}

TEST(Server, ClientCertificateIsOptional) {
  Harness h(pki().config());
  TlsClient anonymous(h.port(), {});
  ASSERT_TRUE(anonymous.connected());
  auto f = fields_of(anonymous.exchange(get("/echo")));
  EXPECT_EQ(f["chain"], "0");
  EXPECT_EQ(f["spoofed"], "0");

  TlsClient device(h.port(), {.cert = "device"});
  ASSERT_TRUE(device.connected());
  const auto response = device.exchange(get("/echo"));
  EXPECT_EQ(status_of(response), 200);
  f = fields_of(response);
  EXPECT_EQ(f["chain"], "2");  // leaf and anchor
  EXPECT_EQ(f["leaf"], fingerprint(pki().device.cert.get()));
  EXPECT_EQ(f["expired"], "0");
  EXPECT_EQ(f["verified"], "1");  // the registrar may rely on this handshake's verification
  EXPECT_EQ(f["via_proxy"], "0");
  // The request id is sent back.
  EXPECT_NE(response.find("X-Request-Id: " + f["id"] + "\r\n"), std::string::npos);
  EXPECT_EQ(f["id"].size(), 16u);
}

TEST(Server, UnknownCaFailsTheHandshake) {
  Harness h(pki().config());
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    TlsClient rogue(h.port(), {.version = version, .cert = "rogue"});
    // TLS 1.3: the client finishes first and learns of the failure on its first read.
    EXPECT_EQ(rogue.exchange(get("/echo")), "") << version;
  }
  EXPECT_EQ(h.calls, 0);
}

TEST(Server, ExpiredClientCertificatePassesFlagged) {
  Harness h(pki().config());
  TlsClient expired(h.port(), {.cert = "expired"});
  ASSERT_TRUE(expired.connected());
  auto f = fields_of(expired.exchange(get("/echo")));
  EXPECT_EQ(f["leaf"], fingerprint(pki().expired_device.cert.get()));
  EXPECT_EQ(f["expired"], "1");
  EXPECT_EQ(f["verified"], "0");  // a forgiven error: the registrar verifies again by its own rules
}

TEST(Server, ChannelBindingMatchesTheClient) {
  Harness h(pki().config());
  for (auto [version, name, type, bytes] : {std::tuple{TLS1_2_VERSION, "TLSv1.2", "tls-unique", 12u},
                                            std::tuple{TLS1_3_VERSION, "TLSv1.3", "tls-exporter", 32u}}) {
    TlsClient client(h.port(), {.version = version, .cert = "device"});
    ASSERT_TRUE(client.connected()) << name;
    const auto mine = client.binding_hex();
    const auto f = fields_of(client.exchange(get("/echo", "X-Binding: " + mine + "\r\n")));
    EXPECT_EQ(f.at("tls"), name);
    EXPECT_EQ(f.at("cb_type"), type);
    EXPECT_EQ(f.at("cb").size(), 2 * bytes) << name;
    EXPECT_EQ(f.at("cb"), f.at("client_cb")) << name;
  }
}

TEST(Server, KeepAliveAndChunkedBody) {
  Harness h(pki().config());
  TlsClient client(h.port(), {});
  ASSERT_TRUE(client.connected());
  const auto chunked = client.exchange(
      "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  EXPECT_EQ(fields_of(chunked)["body"], "hello world");
  // Same connection, fixed length.
  const auto fixed =
      client.exchange("POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc");
  EXPECT_EQ(fields_of(fixed)["body"], "abc");
  EXPECT_EQ(status_of(client.exchange(get("/nope"))), 404);
  EXPECT_EQ(h.calls, 2);
}

TEST(Server, LimitsAnswerItself) {
  auto c = pki().config();
  c.max_body_bytes = 1024;
  c.max_header_bytes = 1024;
  Harness h(c);
  {
    TlsClient client(h.port(), {});
    const auto r = client.exchange("POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n\r\n" +
                                   std::string(5000, 'x'));
    EXPECT_EQ(status_of(r), 413) << r;
    EXPECT_NE(r.find("application/problem+json"), std::string::npos);
    EXPECT_NE(r.find(R"("code":"body_too_large")"), std::string::npos);
    EXPECT_NE(r.find("Connection: close"), std::string::npos);
  }
  {
    TlsClient client(h.port(), {});
    std::string body = "800\r\n" + std::string(0x800, 'y') + "\r\n0\r\n\r\n";
    const auto r = client.exchange(
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" + body);
    EXPECT_EQ(status_of(r), 413) << r;
  }
  {
    TlsClient client(h.port(), {});
    const auto r = client.exchange(get("/echo", "X-Big: " + std::string(2000, 'z') + "\r\n"));
    EXPECT_EQ(status_of(r), 431) << r;
  }
  {
    TlsClient client(h.port(), {});
    const auto r = client.exchange("GET /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: x\r\n\r\n");
    EXPECT_EQ(status_of(r), 400) << r;
    EXPECT_NE(r.find(R"("code":"malformed_request")"), std::string::npos) << r;
  }
  {
    // curl sends Expect: 100-continue for large bodies and learns the answer before sending it.
    write_text(pki().dir / "big.bin", std::string(2 * 1024 * 1024, 'b'));
    const auto r =
        run("curl -sS -o /dev/null -w '%{http_code}' --cacert " + shell_quote(pki().dir / "server-ca.pem") +
            " --data-binary @" + shell_quote(pki().dir / "big.bin") +
            " https://localhost:" + std::to_string(h.port()) + "/echo");
    EXPECT_EQ(r.output, "413");
  }
  EXPECT_EQ(h.calls, 0);
}

TEST(Server, SlowHeaderClientIsClosedAtTheTimeout) {
  auto c = pki().config();
  c.timeouts.header = 1s;
  Harness h(c);
  TlsClient client(h.port(), {});
  ASSERT_TRUE(client.connected());
  const auto start = std::chrono::steady_clock::now();
  const std::string request = get("/echo");
  std::size_t sent = 0;
  while (sent < request.size() && client.send(request.substr(sent, 1))) {
    ++sent;
    std::this_thread::sleep_for(200ms);
    if (std::chrono::steady_clock::now() - start > 5s) break;
  }
  EXPECT_TRUE(client.closed_by_peer());
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 900ms);
  EXPECT_LT(elapsed, 2500ms);
  EXPECT_LT(sent, request.size());
  EXPECT_EQ(h.calls, 0);
}

TEST(Server, ForwardedCertificateOnlyFromTrustedProxies) {
  auto c = pki().config();
  c.trusted_proxies.issuers = {certificate_of(pki().proxy_ca.cert.get())};
  c.trusted_proxies.fingerprints = {fingerprint(pki().pinned_proxy.cert.get())};
  Harness h(c);
  const auto header = "X-SSL-Client-Cert: " + url_encode(pem_of(pki().device.cert.get())) + "\r\n";
  const auto device_fp = fingerprint(pki().device.cert.get());

  for (const auto* proxy : {"proxy", "pinned"}) {
    TlsClient client(h.port(), {.cert = proxy});
    ASSERT_TRUE(client.connected()) << proxy;
    auto f = fields_of(client.exchange(get("/echo", header + "X-Request-Id: nginx-req-1\r\n")));
    EXPECT_EQ(f["via_proxy"], "1") << proxy;
    EXPECT_EQ(f["spoofed"], "0");
    EXPECT_EQ(f["chain"], "1");
    EXPECT_EQ(f["leaf"], device_fp);
    EXPECT_EQ(f["verified"], "0");    // the proxy's word, not this server's handshake
    EXPECT_EQ(f["cb_type"], "none");  // POP linking does not survive a terminating proxy
    EXPECT_EQ(f["id"], "nginx-req-1");
    const auto& proxy_cert = std::string(proxy) == "proxy" ? pki().proxy : pki().pinned_proxy;
    EXPECT_EQ(f["proxy_fp"], fingerprint(proxy_cert.cert.get()));
    // An empty header: the device presented no certificate to the proxy.
    f = fields_of(client.exchange(get("/echo", "X-SSL-Client-Cert: \r\n")));
    EXPECT_EQ(f["via_proxy"], "1");
    EXPECT_EQ(f["chain"], "0");
    // The proxy's own certificate never stands for a device.
    f = fields_of(client.exchange(get("/echo")));
    EXPECT_EQ(f["chain"], "0");
    // A header that is not a certificate is the server's to refuse.
    EXPECT_EQ(status_of(client.exchange(get("/echo", "X-SSL-Client-Cert: %ZZnot-pem\r\n"))), 400);
  }
  // From anyone else the header is not honoured, and flagged.
  for (const auto* who : {"device", ""}) {
    TlsClient client(h.port(), {.cert = who});
    auto f = fields_of(client.exchange(get("/echo", header)));
    EXPECT_EQ(f["spoofed"], "1") << who;
    EXPECT_EQ(f["via_proxy"], "0");
    EXPECT_EQ(f["leaf"], std::string(who).empty() ? "" : device_fp);
    EXPECT_EQ(f["chain"], std::string(who).empty() ? "0" : "2");
    EXPECT_NE(f["id"], "nginx-req-1");
  }
  // The device CA does not make a proxy.
  TlsClient device(h.port(), {.cert = "expired"});
  EXPECT_EQ(fields_of(device.exchange(get("/echo", header)))["spoofed"], "1");
}

TEST(Server, MaxConnections) {
  auto c = pki().config();
  c.max_connections = 2;
  Harness h(c);
  TlsClient a(h.port(), {});
  TlsClient b(h.port(), {});
  ASSERT_TRUE(a.connected() && b.connected());
  TlsClient third(h.port(), {});
  EXPECT_FALSE(third.connected());
  EXPECT_EQ(status_of(a.exchange(get("/echo"))), 200);
  EXPECT_EQ(h.server->connections(), 2u);
  b.exchange(get("/echo", "Connection: close\r\n"));
  for (int i = 0; i < 100 && h.server->connections() > 1; ++i) std::this_thread::sleep_for(10ms);
  TlsClient fourth(h.port(), {});
  EXPECT_TRUE(fourth.connected());
}

TEST(Server, GracefulDrain) {
  auto c = pki().config();
  c.timeouts.drain_delay = 500ms;
  Harness h(c);
  TlsClient idle(h.port(), {});
  ASSERT_EQ(status_of(idle.exchange(get("/echo"))), 200);  // now idle on keep-alive

  auto slow = std::async(std::launch::async, [&] {
    TlsClient client(h.port(), {});
    return client.exchange(get("/slow"));
  });
  while (h.calls < 2) std::this_thread::sleep_for(5ms);
  const auto started = std::chrono::steady_clock::now();
  auto stopping = std::async(std::launch::async, [&] { h.server->stop(); });
  std::this_thread::sleep_for(100ms);
  // During the drain delay: still accepting, /healthz says 503.
  TlsClient probe(h.port(), {});
  const auto health = probe.exchange(get("/healthz"));
  EXPECT_EQ(status_of(health), 503) << health;
  EXPECT_NE(health.find("Connection: close"), std::string::npos);

  const auto response = slow.get();
  EXPECT_EQ(status_of(response), 200) << response;
  EXPECT_EQ(body_of(response), "slow done");
  EXPECT_NE(response.find("Connection: close"), std::string::npos);
  EXPECT_TRUE(idle.closed_by_peer());
  stopping.get();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 4s);
  EXPECT_EQ(h.server->connections(), 0u);
  EXPECT_EQ(connect_to(h.port()), -1);
}

TEST(Server, InlineRequestsAreNotQueuedBehindABlockedHandler) {
  auto c = pki().config();
  c.handler_threads = 1;
  c.answers_inline = [](const Request& r) { return r.method == "GET" && r.path() == "/echo"; };
  Harness h(c);
  auto slow = std::async(std::launch::async, [&] {
    TlsClient client(h.port(), {});
    return client.exchange(get("/slow"));
  });
  while (h.calls < 1) std::this_thread::sleep_for(5ms);  // the only handler thread is taken
  TlsClient client(h.port(), {.cert = "device"});
  auto f = fields_of(client.exchange(get("/echo")));
  EXPECT_EQ(f["chain"], "2");
  EXPECT_EQ(slow.wait_for(0ms), std::future_status::timeout) << "answered only after /slow";
  EXPECT_EQ(body_of(slow.get()), "slow done");
}

TEST(Server, SessionTicketsOffByDefault) {
  for (bool tickets : {false, true}) {
    auto c = pki().config();
    c.session_tickets = tickets;
    Harness h(c);
    g_tickets = 0;
    TlsClient client(h.port(), {.version = TLS1_3_VERSION, .cert = {}});
    EXPECT_EQ(status_of(client.exchange(get("/echo"))), 200);  // tickets arrive before the response
    EXPECT_EQ(g_tickets > 0, tickets);
  }
}

TEST(Server, ReusePortListenersShareTheEphemeralPort) {
  auto c = pki().config();
  c.reuse_port = true;
  c.threads = 3;
  Harness h(c);
  for (int i = 0; i < 6; ++i) {
    TlsClient client(h.port(), {});
    EXPECT_EQ(status_of(client.exchange(get("/echo"))), 200) << i;
  }
  h.server->stop();
  EXPECT_EQ(connect_to(h.port()), -1);
}

TEST(Server, PlainHttpListener) {
  auto c = pki().config();
  c.tls = false;
  c.client_anchors.clear();
  Harness h(c);
  const auto r =
      run("curl -sS -H 'X-SSL-Client-Cert: x' http://127.0.0.1:" + std::to_string(h.port()) + "/echo");
  EXPECT_NE(r.output.find("tls=none"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("spoofed=1"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace hallmark::http
