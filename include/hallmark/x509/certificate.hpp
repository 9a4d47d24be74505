#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hallmark/core/bytes.hpp"
#include "hallmark/core/clock.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/crypto/key.hpp"
#include "hallmark/crypto/signer.hpp"
#include "hallmark/x509/extensions.hpp"
#include "hallmark/x509/name.hpp"

using X509 = struct x509_st;
using X509_STORE = struct x509_store_st;

namespace hallmark::x509 {

// An immutable parsed certificate. Tolerant of what real vendors ship (a PrintableString holding
// '_', CRLF PEM) but never of a broken structure.
class Certificate {
 public:
  Certificate() = default;
  [[nodiscard]] static Result<Certificate> parse_der(ByteView der);
  // One PEM "CERTIFICATE" block (CRLF or LF); leading text is ignored.
  [[nodiscard]] static Result<Certificate> parse_pem(std::string_view pem);
  // DER or PEM, whichever the bytes are.
  [[nodiscard]] static Result<Certificate> parse(ByteView data);
  // Every CERTIFICATE block in order; none is invalid_input.
  [[nodiscard]] static Result<std::vector<Certificate>> parse_pem_chain(std::string_view pem);
  [[nodiscard]] static Result<Certificate> load(const std::string& path);

  [[nodiscard]] const Bytes& to_der() const { return *der_; }
  [[nodiscard]] std::string to_pem() const;

  [[nodiscard]] Name subject() const;
  [[nodiscard]] Name issuer() const;
  [[nodiscard]] Bytes serial() const;            // big-endian magnitude
  [[nodiscard]] std::string serial_hex() const;  // lowercase hex
  [[nodiscard]] Seconds not_before() const;
  [[nodiscard]] Seconds not_after() const;
  [[nodiscard]] bool has_no_expiry() const { return not_after() == kNoExpiry; }
  [[nodiscard]] crypto::PublicKey public_key() const;
  // The SubjectPublicKeyInfo DER exactly as the certificate carries it (the UKID is its SHA-256).
  [[nodiscard]] Bytes spki_der() const;
  [[nodiscard]] std::string fingerprint_sha256_hex() const;  // over the DER
  [[nodiscard]] std::string signature_algorithm() const;     // "ecdsa-with-SHA256"

  [[nodiscard]] std::optional<BasicConstraints> basic_constraints() const;
  [[nodiscard]] std::optional<KeyUsage> key_usage() const;
  [[nodiscard]] std::optional<ExtendedKeyUsage> extended_key_usage() const;
  [[nodiscard]] std::optional<Bytes> subject_key_id() const;
  [[nodiscard]] std::optional<Bytes> authority_key_id() const;
  [[nodiscard]] std::optional<SubjectAltName> subject_alt_name() const;
  [[nodiscard]] std::optional<CrlDistributionPoints> crl_distribution_points() const;
  [[nodiscard]] std::optional<AuthorityInfoAccess> authority_info_access() const;
  [[nodiscard]] std::optional<CertificatePolicies> certificate_policies() const;
  [[nodiscard]] bool has_extension(std::string_view dotted_oid) const;

  [[nodiscard]] bool is_ca() const;
  [[nodiscard]] bool is_self_issued() const { return subject() == issuer(); }
  // The signature on this certificate verifies with `issuer_key`.
  [[nodiscard]] Status verify_signature(const crypto::PublicKey& issuer_key) const;

  // Human-readable, like `openssl x509 -text` but shorter.
  [[nodiscard]] std::string describe() const;

  [[nodiscard]] bool operator==(const Certificate& other) const { return *der_ == *other.der_; }

  [[nodiscard]] X509* native() const noexcept { return x509_.get(); }
  // Takes one reference to `x509`; `der` must be its encoding (for x509 internals: the builder keeps
  // the DER produced by signing instead of encoding again).
  [[nodiscard]] static Certificate adopt(X509* x509, Bytes der);

 private:
  std::shared_ptr<X509> x509_;
  std::shared_ptr<const Bytes> der_;
};

// Anchors plus an optional set of untrusted intermediates; verifies a leaf at a chosen instant.
class TrustStore {
 public:
  TrustStore();
  void add_anchor(const Certificate& anchor);
  [[nodiscard]] const std::vector<Certificate>& anchors() const { return anchors_; }
  [[nodiscard]] bool empty() const { return anchors_.empty(); }

  // The path from `leaf` to an anchor (leaf first, anchor last), checked at `at` (validity of every
  // certificate in the path is judged at that instant). CRLs are not consulted here. Failure is
  // unauthenticated, with OpenSSL's reason and the subject of the certificate that failed.
  [[nodiscard]] Result<std::vector<Certificate>> verify(const Certificate& leaf,
                                                        const std::vector<Certificate>& intermediates,
                                                        Seconds at) const;

 private:
  friend class PathCache;
  bool partial_chain_ = false;  // an anchor may be an intermediate (PathCache only)
  std::vector<Certificate> anchors_;
  // Built once and reused by every verify (thread-safe for concurrent verification).
  std::shared_ptr<X509_STORE> store_;
};

// Verifies many leaves issued under the same intermediates (a reel's batch CA) as TrustStore::verify
// does, for the price of the leaf's own signature. The first leaf under a given set of intermediates
// is verified in full; the path it found above the leaf is remembered (its issuer, and the instants at
// which every certificate above is valid). Later leaves under the same intermediates are verified with
// that issuer as a partial-chain anchor at their own instant, when the instant lies in the remembered
// window and nothing above the issuer constrains names or policies (which would reach the leaf); any
// other case, and any failure (for the exact reason), takes the full path. One per thread.
class PathCache {
 public:
  explicit PathCache(const TrustStore& roots) : roots_(roots) {}
  [[nodiscard]] Status verify(const Certificate& leaf, const std::vector<Certificate>& intermediates,
                              Seconds at);
  [[nodiscard]] std::size_t fast_verifications() const { return fast_; }

 private:
  struct Path {
    bool eligible = false;
    Seconds valid_from{};
    Seconds valid_until{};
    TrustStore issuer;  // partial chain: the leaf's issuer as anchor
  };
  const TrustStore& roots_;
  std::map<std::string, Path, std::less<>> paths_;  // key: the intermediates' DER, concatenated
  std::size_t fast_ = 0;
};

// PKCS#7 SignedData "certs-only" (RFC 7030 §4.1.3): encode and decode.
[[nodiscard]] Bytes make_pkcs7_certs_only(const std::vector<Certificate>& certs);
[[nodiscard]] Result<std::vector<Certificate>> parse_pkcs7_certs_only(ByteView der);

}  // namespace hallmark::x509
