#pragma once
// EST (RFC 7030, with RFC 8951's clarifications) as routes on an http::Router. Thin: it decodes and
// encodes, checks media types and maps the registrar's decisions onto HTTP statuses; every identity
// and policy decision is ra::Registrar's.
//
//   /.well-known/est/[<alias>/]cacerts        GET   certs-only PKCS#7 of the issuing CA's chain
//   /.well-known/est/[<alias>/]csrattrs       GET   CsrAttrs (DER, base64); 204 when nothing is asked
//   /.well-known/est/[<alias>/]simpleenroll   POST  application/pkcs10 -> certs-only PKCS#7
//   /.well-known/est/[<alias>/]simplereenroll POST  idem, authenticated by the current IDC
//   /.well-known/est/[<alias>/]serverkeygen   POST  multipart/mixed: PKCS#8 key + certs-only PKCS#7
//   /.well-known/est/[<alias>/]fullcmc        POST  501
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hallmark/core/bytes.hpp"
#include "hallmark/core/secret.hpp"
#include "hallmark/http/message.hpp"
#include "hallmark/http/router.hpp"
#include "hallmark/ra/registrar.hpp"
#include "hallmark/x509/certificate.hpp"

namespace hallmark::est {

inline constexpr std::string_view kPathPrefix = "/.well-known/est/";
inline constexpr std::string_view kCertsOnly = "application/pkcs7-mime; smime-type=certs-only";
inline constexpr std::string_view kServerKeygenBoundary = "hallmark-est-boundary";

// Problem codes decided here rather than in the registrar.
namespace problem {
inline constexpr const char* kUnknownOperation = "unknown-operation";
inline constexpr const char* kMethodNotAllowed = "method-not-allowed";
inline constexpr const char* kFullCmc = "fullcmc-not-implemented";
inline constexpr const char* kMediaType = "unsupported-media-type";
inline constexpr const char* kBadBase64 = "bad-base64";
}  // namespace problem

class EstService final {
 public:
  // `registrar` must outlive the service.
  explicit EstService(ra::Registrar& registrar) : registrar_(registrar) {}

  // Installs the EST routes (GET and POST, with and without the alias segment).
  void install(http::Router& router) const;

  // One EST request; `alias` empty for the default alias. Exposed for socket-free tests.
  [[nodiscard]] http::Response handle(const http::Request& request, std::string_view alias,
                                      std::string_view operation) const;

  // The request is a GET of cacerts or csrattrs that no audit record follows (not a spoofed
  // client-certificate header): answering it never waits for the store (http::ServerConfig::
  // answers_inline).
  [[nodiscard]] static bool answers_without_store(const http::Request& request);

 private:
  [[nodiscard]] http::Response enroll(const http::Request& request, std::string_view alias,
                                      std::string_view operation) const;
  ra::Registrar& registrar_;
};

// ---- codecs (est_codec.cpp) ----

// The body of an EST request: base64 whatever Content-Transfer-Encoding says (RFC 8951), line breaks
// and other whitespace anywhere; a PEM armour ("-----BEGIN ...-----") around it is tolerated.
[[nodiscard]] Result<Bytes> decode_body(std::string_view body);
// Base64 of a certs-only PKCS#7 of `certs`; wrapped at 64 columns when `wrap`.
[[nodiscard]] std::string encode_certs_only(const std::vector<x509::Certificate>& certs, bool wrap);
// "application/pkcs10; charset=x" matches "application/pkcs10" (type/subtype compared case-insensitively).
[[nodiscard]] bool has_media_type(std::string_view content_type, std::string_view expected) noexcept;
// The password of "Authorization: Basic base64(user:password)"; nullopt when absent or malformed.
[[nodiscard]] std::optional<Secret> basic_password(const http::Headers& headers);
// RFC 7030 §4.4.2 body: the key (application/pkcs8) then the certificate (certs-only), both base64.
[[nodiscard]] std::string make_serverkeygen_body(const Secret& pkcs8_der,
                                                 const x509::Certificate& certificate, bool wrap);
// The registrar's view of the TLS peer.
[[nodiscard]] ra::Peer to_peer(const http::PeerIdentity& peer);
// The HTTP status of a refusal: 400, 401, 403, 404, 409, 503 (+ Retry-After), 500.
[[nodiscard]] int status_of(const ra::Refusal& refusal) noexcept;
[[nodiscard]] http::Response to_problem(const ra::Refusal& refusal);

// ---- CsrAttrs (csrattrs_der.cpp) ----

// DER of CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID, each an OBJECT IDENTIFIER (RFC 7030
// §4.5.2). invalid_input for a malformed dotted OID. A stand-in until x509 offers make_csr_attrs.
[[nodiscard]] Result<Bytes> make_csr_attrs_der(const std::vector<std::string>& oids);

}  // namespace hallmark::est
