#pragma once
// OCSP (RFC 6960) messages as value types: requests parsed, responses built and signed by a delegated
// responder, and parsed back (for tests and clients). OpenSSL's OCSP API stays behind this header.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hallmark/core/bytes.hpp"
#include "hallmark/core/clock.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/crypto/signer.hpp"
#include "hallmark/x509/certificate.hpp"
#include "hallmark/x509/crl.hpp"

namespace hallmark::x509 {

// CertID (RFC 6960 §4.1.1): which certificate of which issuer.
struct OcspCertId {
  std::string hash_algorithm;  // "sha1", "sha256", ... (what clients hash issuer name and key with)
  Bytes issuer_name_hash;
  Bytes issuer_key_hash;
  Bytes serial;  // big-endian magnitude, no leading zero
  bool operator==(const OcspCertId&) const = default;
  // Same hash algorithm and both hashes: the same issuer.
  [[nodiscard]] bool same_issuer(const OcspCertId& other) const {
    return hash_algorithm == other.hash_algorithm && issuer_name_hash == other.issuer_name_hash &&
           issuer_key_hash == other.issuer_key_hash;
  }
};

// The CertID of `serial` (magnitude; may be empty for an issuer-only id) under `issuer`.
// invalid_input for an unknown hash algorithm.
[[nodiscard]] Result<OcspCertId> make_ocsp_cert_id(const Certificate& issuer, ByteView serial,
                                                   std::string_view hash_algorithm = "sha1");

struct OcspRequest {
  std::vector<OcspCertId> ids;  // at least one
  std::optional<Bytes> nonce;   // the id-pkix-ocsp-nonce extension's value, echoed verbatim
};
// invalid_input for anything but a well-formed OCSPRequest with at least one CertID.
[[nodiscard]] Result<OcspRequest> parse_ocsp_request(ByteView der);
// An unsigned request (for tests and the bench; a nonce is encoded as OpenSSL does).
[[nodiscard]] Result<Bytes> make_ocsp_request(const std::vector<OcspCertId>& ids,
                                              const std::optional<Bytes>& nonce = std::nullopt);

enum class OcspCertStatus { good, revoked, unknown };
[[nodiscard]] std::string_view to_string(OcspCertStatus status) noexcept;  // "good", ...

// OCSPResponseStatus (RFC 6960 §4.2.1).
enum class OcspResponseStatus {
  successful = 0,
  malformed_request = 1,
  internal_error = 2,
  try_later = 3,
  sig_required = 5,
  unauthorized = 6,
};

struct OcspSingleResponse {
  OcspCertId id;
  OcspCertStatus status = OcspCertStatus::unknown;
  Seconds revocation_time{};  // revoked only
  std::optional<RevocationReason> reason;
  Seconds this_update{};
  std::optional<Seconds> next_update;
};

// A successful response: a BasicOCSPResponse over `responses` signed by the delegated responder
// `responder` with its key `signer` (responderID byKey; the responder certificate is included;
// producedAt is the signing time).
[[nodiscard]] Result<Bytes> make_ocsp_response(const std::vector<OcspSingleResponse>& responses,
                                               const std::optional<Bytes>& nonce,
                                               const Certificate& responder, const crypto::Signer& signer);
// An unsuccessful response (no body): malformedRequest, internalError, tryLater, unauthorized.
[[nodiscard]] Bytes make_ocsp_error_response(OcspResponseStatus status);

struct OcspResponse {
  OcspResponseStatus status = OcspResponseStatus::internal_error;
  std::vector<OcspSingleResponse> responses;
  std::optional<Bytes> nonce;
  Seconds produced_at{};
  std::vector<Certificate> certificates;  // those carried in the response
};
[[nodiscard]] Result<OcspResponse> parse_ocsp_response(ByteView der);
// The BasicOCSPResponse's signature verifies with the key of `responder`.
[[nodiscard]] Status verify_ocsp_response_signature(ByteView der, const Certificate& responder);

}  // namespace hallmark::x509
