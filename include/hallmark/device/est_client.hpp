#pragma once
// The device's EST client (RFC 7030): one TLS connection to the server, authenticated by a client
// certificate (a birth certificate or an IDC), the server verified against the trust anchor
// provisioned at the factory. Synchronous for the agent; the fleet drives the same code
// asynchronously (src/device/connection.hpp).
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hallmark/core/bytes.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/core/secret.hpp"
#include "hallmark/crypto/signer.hpp"
#include "hallmark/x509/certificate.hpp"
#include "hallmark/x509/csr.hpp"

namespace hallmark::device {

// "https://host[:port][/.well-known/est[/<alias>]]"; a bare "host:port" is taken as https.
struct ServerUrl {
  std::string host;
  std::string port = "443";
  std::string alias;  // empty: the server's default alias

  [[nodiscard]] static Result<ServerUrl> parse(std::string_view url);
  // "/.well-known/est/<alias>/<operation>" (no alias segment when alias is empty).
  [[nodiscard]] std::string path(std::string_view operation) const;
  [[nodiscard]] std::string to_string() const;
  [[nodiscard]] ServerUrl with_alias(std::string alias_name) const;
};

// Who the device is on the wire: a certificate chain (leaf first) and the key of the leaf.
struct Identity {
  std::shared_ptr<const crypto::Signer> key;
  std::vector<x509::Certificate> chain;
};

// One HTTP answer, with what EST and RFC 9457 put in it.
struct EstReply {
  unsigned status = 0;
  std::string content_type;
  std::string body;
  std::optional<std::chrono::seconds> retry_after;
  std::string problem_code;    // "code" of an application/problem+json body
  std::string problem_detail;  // "detail" of it
  std::string request_id;      // X-Request-Id

  [[nodiscard]] bool ok() const noexcept { return status == 200; }
  // "simpleenroll: 403 ukid-mismatch: <detail>", with the Errc of the status class.
  [[nodiscard]] Error to_error(std::string_view operation) const;
};

// RFC 7030 §4.5.2 CsrAttrs: the attribute types the server asks for (dotted OIDs).
struct CsrAttrs {
  std::vector<std::string> oids;
  [[nodiscard]] bool has(std::string_view oid) const;
};
inline constexpr std::string_view kOidChallengePassword = "1.2.840.113549.1.9.7";
// Short names agents understand for a subject attribute OID ("serialNumber", "CN", "UID"...), else
// the OID itself.
[[nodiscard]] std::string attribute_name(std::string_view oid);
// Parses a CsrAttrs DER (SEQUENCE OF AttrOrOID); for an Attribute, its type is taken.
[[nodiscard]] Result<CsrAttrs> parse_csr_attrs(ByteView der);

struct ClientOptions {
  ServerUrl server;
  std::vector<x509::Certificate> trust;      // anchors for the server's TLS certificate
  std::chrono::milliseconds timeout{30000};  // per network operation
  bool tls13_only = false;
};

// One connection; opened by the constructor-like open(), closed on destruction.
class EstSession {
 public:
  struct State;
  [[nodiscard]] static Result<std::unique_ptr<EstSession>> open(const ClientOptions& options,
                                                                const Identity* identity);
  ~EstSession();
  EstSession(const EstSession&) = delete;
  EstSession& operator=(const EstSession&) = delete;

  [[nodiscard]] Result<EstReply> get(std::string_view operation);
  [[nodiscard]] Result<EstReply> post_csr(std::string_view operation, const x509::Csr& csr,
                                          const Secret* basic_password = nullptr);
  // The PKCS#7 certs-only answer of cacerts; empty is invalid_input.
  [[nodiscard]] Result<std::vector<x509::Certificate>> cacerts();
  // 204 (nothing required) is an empty set.
  [[nodiscard]] Result<CsrAttrs> csrattrs();
  // Base64 of this connection's channel binding (tls-exporter on TLS 1.3, tls-unique on 1.2), for
  // POP linking in challengePassword.
  [[nodiscard]] Result<std::string> channel_binding() const;
  [[nodiscard]] std::string tls_version() const;

 private:
  explicit EstSession(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// Decoders shared by the agent and the fleet.
[[nodiscard]] Result<std::vector<x509::Certificate>> decode_certs_only(const EstReply& reply,
                                                                       std::string_view operation);

}  // namespace hallmark::device
