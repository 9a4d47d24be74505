#pragma once
// Everything hallmark issues funnels through make_certificate; everything it revokes through make_crl.
#include <optional>
#include <vector>

#include "hallmark/core/bytes.hpp"
#include "hallmark/core/clock.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/crypto/key.hpp"
#include "hallmark/crypto/signer.hpp"
#include "hallmark/x509/certificate.hpp"
#include "hallmark/x509/crl.hpp"
#include "hallmark/x509/extensions.hpp"
#include "hallmark/x509/name.hpp"

namespace hallmark::x509 {

struct CertificateTemplate {
  Name subject;
  crypto::PublicKey public_key;
  Bytes serial;  // big-endian, positive (top bit clear), non-zero
  Seconds not_before;
  Seconds not_after;  // kNoExpiry encodes as GeneralizedTime 99991231235959Z
  std::optional<BasicConstraints> basic_constraints;
  std::optional<KeyUsage> key_usage;
  std::optional<ExtendedKeyUsage> extended_key_usage;
  std::optional<SubjectAltName> subject_alt_name;
  std::optional<CrlDistributionPoints> crl_distribution_points;
  std::optional<AuthorityInfoAccess> authority_info_access;
  std::optional<CertificatePolicies> certificate_policies;
  bool subject_key_id = true;    // SKI = SHA-1 of the subjectPublicKey (RFC 5280 method 1)
  bool authority_key_id = true;  // AKI = issuer's SKI (omitted for self-signed)
  bool ocsp_no_check = false;    // id-pkix-ocsp-nocheck, for delegated OCSP responders
};

// Signs `tmpl` with `signer`. `issuer` is the issuing CA's certificate; nullopt for self-signed
// (then the issuer name is the subject and `signer` must hold the template's key). Times before
// 2050 are UTCTime, later GeneralizedTime (RFC 5280 §4.1.2.5).
[[nodiscard]] Result<Certificate> make_certificate(const CertificateTemplate& tmpl,
                                                   const std::optional<Certificate>& issuer,
                                                   const crypto::Signer& signer);

// 16 random bytes, top bit cleared, never zero: a positive INTEGER of at most 16 content bytes.
[[nodiscard]] Bytes make_serial();

}  // namespace hallmark::x509
