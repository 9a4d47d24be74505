#pragma once
// HTTP messages as plain values: a handler is a function from Request to Response, testable without
// sockets. The server fills in the peer's identity as verified at the TLS layer (or by a trusted proxy).
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hallmark/core/bytes.hpp"
#include "hallmark/x509/certificate.hpp"

namespace hallmark::http {

// Header fields in arrival order; names compare case-insensitively.
class Headers {
 public:
  struct Field {
    std::string name;
    std::string value;
  };

  void add(std::string name, std::string value);
  // Replaces every field of that name with one.
  void set(std::string name, std::string value);
  // Removes every field of that name; returns how many there were.
  std::size_t erase(std::string_view name);

  // The first field of that name.
  [[nodiscard]] std::optional<std::string_view> get(std::string_view name) const;
  [[nodiscard]] std::size_t count(std::string_view name) const;
  [[nodiscard]] bool has(std::string_view name) const { return count(name) > 0; }

  [[nodiscard]] auto begin() const { return fields_.begin(); }
  [[nodiscard]] auto end() const { return fields_.end(); }
  [[nodiscard]] std::size_t size() const { return fields_.size(); }
  [[nodiscard]] bool empty() const { return fields_.empty(); }

 private:
  std::vector<Field> fields_;
};

[[nodiscard]] bool iequals(std::string_view a, std::string_view b) noexcept;

enum class TlsVersion { none, tls1_2, tls1_3 };
[[nodiscard]] std::string_view to_string(TlsVersion v) noexcept;  // "none" | "TLSv1.2" | "TLSv1.3"

// The value that binds an application message to this TLS connection (POP linking):
// TLS 1.2 "tls-unique" (RFC 5929: the first Finished message, 12 bytes) or TLS 1.3 "tls-exporter"
// (RFC 9266: exporter "EXPORTER-Channel-Binding", no context, 32 bytes).
struct ChannelBinding {
  enum class Type { none, tls_unique, tls_exporter } type = Type::none;
  Bytes value;
  [[nodiscard]] bool empty() const noexcept { return type == Type::none; }
};
[[nodiscard]] std::string_view to_string(ChannelBinding::Type t) noexcept;  // "tls-unique", ...

// Who is on the other end. For a direct TLS connection: the client certificate chain as verified in the
// handshake. For a connection from a trusted reverse proxy: the device certificate the proxy
// forwarded (the proxy verified it), and no channel binding (POP linking does not survive a
// terminating proxy).
struct PeerIdentity {
  // Leaf first. Direct: the verified path, anchor last. Via proxy: what the header carried.
  // Empty when the client presented no certificate.
  std::vector<x509::Certificate> chain;
  // A certificate in the chain was outside its validity period: allowed through TLS, judged by the RA.
  bool expired = false;
  TlsVersion tls_version = TlsVersion::none;
  ChannelBinding channel_binding;
  bool via_proxy = false;
  // Direct peers: `chain` is the path OpenSSL verified in this handshake with no error at all (not
  // even a forgiven expiry). Never set for a forwarded chain.
  bool verified = false;
  std::string proxy_fingerprint;  // SHA-256 hex of the proxy's own certificate, when via_proxy
  std::string remote_address;     // "ip:port" of the TCP peer

  [[nodiscard]] bool has_certificate() const noexcept { return !chain.empty(); }
  [[nodiscard]] const x509::Certificate* leaf() const noexcept {
    return chain.empty() ? nullptr : &chain.front();
  }
};

struct Request {
  std::string method;  // as received, e.g. "GET"
  std::string target;  // origin-form: path and query
  Headers headers;
  std::string body;        // whole, chunked transfer coding already removed
  std::string request_id;  // also sent back as X-Request-Id
  PeerIdentity peer;
  // The client-certificate header arrived from a peer that is not a trusted proxy: it was ignored.
  // The EST layer refuses such a request (400) and audits it.
  bool spoofed_client_cert_header = false;

  [[nodiscard]] std::string_view path() const noexcept;   // target up to '?'
  [[nodiscard]] std::string_view query() const noexcept;  // after '?', empty when none
};

struct Response {
  int status = 200;
  Headers headers;
  std::string body;

  // Content-Length, Connection and Transfer-Encoding are the server's business and are replaced.
  [[nodiscard]] static Response text(int status, std::string body, std::string content_type = "text/plain");
  [[nodiscard]] static Response json(int status, std::string body);
};

// application/problem+json (RFC 9457) with a stable machine-readable code:
// {"type":"about:blank","title":<reason phrase or title>,"status":..,"detail":..,"code":..}.
[[nodiscard]] Response problem(int status, std::string_view code, std::string_view detail,
                               std::string_view title = {});

// "Not Found" for 404 and so on; "Unknown" for codes without one.
[[nodiscard]] std::string_view reason_phrase(int status) noexcept;

using Handler = std::function<Response(const Request&)>;

}  // namespace hallmark::http
