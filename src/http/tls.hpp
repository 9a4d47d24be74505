#pragma once
// The server's TLS context, built once: certificate and key, client-certificate trust, the verify
// policy (expired passes and is flagged; anything else fails), and reading the peer's identity after
// the handshake. Private to src/http.
#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>
#include <vector>

#include "hallmark/core/result.hpp"
#include "hallmark/http/message.hpp"
#include "hallmark/http/server.hpp"

namespace hallmark::http::detail {

class TlsContext;

// Filled in by the verify callback during one handshake; owned by the connection.
struct HandshakeNotes {
  const TlsContext* context = nullptr;
  bool expired = false;
  int error = 0;  // the verification error that failed the handshake, for the log
  int error_depth = 0;
};

struct TlsPeer {
  PeerIdentity identity;  // chain empty when the peer is a trusted proxy
  bool trusted_proxy = false;
};

class TlsContext final {
 public:
  [[nodiscard]] static Result<std::unique_ptr<TlsContext>> make(const ServerConfig& config);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  [[nodiscard]] boost::asio::ssl::context& asio() noexcept { return context_; }
  // Before the handshake: lets the verify callback record into `notes`.
  void attach(SSL* ssl, HandshakeNotes& notes) const;
  // After a successful handshake.
  [[nodiscard]] TlsPeer peer(SSL* ssl, const HandshakeNotes& notes) const;

  [[nodiscard]] bool is_pinned_proxy(X509* cert) const;

 private:
  TlsContext();
  boost::asio::ssl::context context_;
  std::vector<Bytes> proxy_pins_;  // SHA-256 of the DER
  std::vector<x509::Certificate> proxy_issuers_;
  EVP_MD* sha256_ = nullptr;  // fetched once
};

// Percent-decoding as nginx's $ssl_client_escaped_cert needs ('+' stays '+').
[[nodiscard]] Result<std::string> url_decode(std::string_view text);
// A forwarded client-certificate header: URL-encoded PEM (one certificate or a chain, leaf first);
// empty means the device presented none.
[[nodiscard]] Result<std::vector<x509::Certificate>> parse_forwarded_certificate(std::string_view value);

[[nodiscard]] std::vector<x509::Certificate> to_certificates(STACK_OF(X509) * chain);

}  // namespace hallmark::http::detail
