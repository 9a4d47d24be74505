#pragma once
// The HTTPS (or plain HTTP) server: Boost.Beast over Asio, TLS by OpenSSL. OpenSSL and Asio stay in
// src/http; callers see values (Request, Response, x509::Certificate).
//
// Threads: `threads` I/O threads, each with its own io_context, and a separate pool of
// `handler_threads` on which handlers run, so a handler may block (on a durable commit) without
// stalling the I/O of other connections.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "hallmark/core/clock.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/http/message.hpp"
#include "hallmark/x509/certificate.hpp"

namespace hallmark::http {

// Reverse proxies (nginx) allowed to forward the device's certificate. A proxy is recognised by its
// own TLS client certificate: pinned by SHA-256 fingerprint (then it need not chain to anything), or
// issued under one of `issuers` (which are added to the handshake's trust anchors; use a CA that
// issues proxy certificates only). An expired proxy certificate is not trusted as a proxy.
struct TrustedProxies {
  std::vector<std::string> fingerprints;  // SHA-256 of the DER, hex, ':' separators allowed
  std::vector<x509::Certificate> issuers;
  // URL-encoded PEM, as nginx's $ssl_client_escaped_cert; empty or absent = no client certificate.
  std::string header = "X-SSL-Client-Cert";

  [[nodiscard]] bool empty() const noexcept { return fingerprints.empty() && issuers.empty(); }
};

struct Timeouts {
  std::chrono::milliseconds handshake{10'000};
  std::chrono::milliseconds header{10'000};  // from the first byte of a request to its last header byte
  std::chrono::milliseconds body{30'000};
  std::chrono::milliseconds idle{60'000};  // between requests on a keep-alive connection
  std::chrono::milliseconds write{30'000};
  // stop(): how long /healthz answers 503 while still accepting (so a load balancer can notice),
  // then how long in-flight requests may take before their connections are cut.
  std::chrono::milliseconds drain_delay{0};
  std::chrono::milliseconds drain{30'000};
};

struct ServerConfig {
  std::string section = "server";  // names the configuration section in error messages
  std::string listen = "0.0.0.0";
  std::uint16_t port = 8443;  // 0: an ephemeral port, see Server::port()

  bool tls = true;
  std::string tls_cert;            // PEM file: server certificate first, then its chain
  std::string tls_key;             // PEM file (PKCS#8, possibly encrypted)
  std::string tls_key_passphrase;  // "file:PATH" | "env:NAME" | empty
  // Anchors for client certificates (the union of every alias's anchors). Client certificates are
  // requested, not demanded; none configured (and no proxy issuers): none are requested.
  std::vector<x509::Certificate> client_anchors;
  TrustedProxies trusted_proxies;
  bool session_tickets = false;  // TLS 1.3 tickets and TLS 1.2 resumption; off: devices rarely resume
  std::string groups = "X25519:P-256:P-384";  // so common clients need no HelloRetryRequest
  std::string ciphers_tls12 =                 // TLS 1.3 suites are OpenSSL's defaults
      "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:"
      "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";
  TlsVersion min_tls_version = TlsVersion::tls1_2;

  unsigned threads = 0;          // I/O threads; 0: one per core
  unsigned handler_threads = 0;  // 0: four per core
  // Each I/O thread gets its own SO_REUSEPORT listener (the kernel spreads connections); also lets
  // several processes share the port. Off: one listener hands connections out round-robin.
  bool reuse_port = false;
  std::size_t max_connections = 10'000;      // beyond: accepted and closed at once
  std::size_t max_header_bytes = 16 * 1024;  // 431 beyond
  std::size_t max_body_bytes = 1024 * 1024;  // 413 beyond
  Timeouts timeouts;

  // Time for judging certificates forwarded by a proxy; null: the system clock.
  std::shared_ptr<const Clock> clock;
  // Requests this accepts never block (no store, no network: EST cacerts and csrattrs): the handler
  // answers them on the connection's I/O thread, sparing two thread handoffs. Null: none.
  std::function<bool(const Request&)> answers_inline;
};

// Checks what can be checked without binding: numbers, files, key/certificate match. Messages name
// the section and field: "[server] tls_cert: cannot open /x.pem".
[[nodiscard]] Status validate(const ServerConfig& config);

class Server final {
 public:
  // Validates, builds the TLS context once, binds and starts serving. `handler` runs on the handler
  // pool for every request except GET /healthz (200 "ok"; 503 while draining).
  [[nodiscard]] static Result<std::unique_ptr<Server>> start(ServerConfig config, Handler handler);
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept;
  [[nodiscard]] std::size_t connections() const noexcept;  // open right now
  [[nodiscard]] bool draining() const noexcept;

  // Graceful drain: /healthz turns 503, listening stops (after drain_delay), idle keep-alive
  // connections close, in-flight requests finish (up to timeouts.drain); then the threads are joined.
  // Safe from any thread that is not one of the server's own (e.g. an asio::signal_set handler in the
  // app); idempotent. request_stop() only begins it and may be called from anywhere, handlers included.
  void stop();
  void request_stop();

  struct State;

 private:
  explicit Server(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
};

}  // namespace hallmark::http
