#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "hallmark/core/bytes.hpp"
#include "hallmark/core/clock.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/crypto/signer.hpp"
#include "hallmark/x509/certificate.hpp"
#include "hallmark/x509/name.hpp"

using X509_CRL = struct X509_crl_st;

namespace hallmark::x509 {

// RFC 5280 §5.3.1 CRLReason.
enum class RevocationReason : int {
  unspecified = 0,
  key_compromise = 1,
  ca_compromise = 2,
  affiliation_changed = 3,
  superseded = 4,
  cessation_of_operation = 5,
  certificate_hold = 6,
  remove_from_crl = 8,
  privilege_withdrawn = 9,
  aa_compromise = 10,
};
// "keyCompromise", "key-compromise", "superseded", ... (case-insensitive).
[[nodiscard]] Result<RevocationReason> parse_revocation_reason(std::string_view name);
[[nodiscard]] std::string_view to_string(RevocationReason reason) noexcept;  // "keyCompromise"

struct CrlEntry {
  Bytes serial;
  Seconds revocation_time;
  std::optional<RevocationReason> reason;
  bool operator==(const CrlEntry&) const = default;
};

struct CrlTemplate {
  std::uint64_t crl_number = 1;
  Seconds this_update;
  Seconds next_update;
  std::vector<CrlEntry> entries;
};

class Crl {
 public:
  Crl() = default;
  [[nodiscard]] static Result<Crl> parse_der(ByteView der);
  [[nodiscard]] static Result<Crl> parse_pem(std::string_view pem);
  [[nodiscard]] const Bytes& to_der() const { return *der_; }
  [[nodiscard]] std::string to_pem() const;

  [[nodiscard]] Name issuer() const;
  [[nodiscard]] std::optional<std::uint64_t> crl_number() const;
  [[nodiscard]] Seconds this_update() const;
  [[nodiscard]] std::optional<Seconds> next_update() const;
  [[nodiscard]] std::optional<Bytes> authority_key_id() const;
  [[nodiscard]] std::vector<CrlEntry> entries() const;
  [[nodiscard]] Status verify_signature(const crypto::PublicKey& issuer_key) const;

  // Parsed from the DER on first use when the CRL was made by make_crl (a million-entry CRL is
  // encoded directly; decoding it again is only paid for if someone looks inside).
  [[nodiscard]] X509_CRL* native() const noexcept;
  // Takes one reference to `crl`; `der` must be its encoding (for x509 internals).
  [[nodiscard]] static Crl adopt(X509_CRL* crl, Bytes der);

 private:
  friend Result<Crl> make_crl(const CrlTemplate& tmpl, const Certificate& issuer,
                              const crypto::Signer& signer);
  struct Parsed;
  std::shared_ptr<Parsed> parsed_;
  std::shared_ptr<const Bytes> der_;
};

// A full CRL signed by the CA `issuer` (AKI from its SKI, CRL number, reasons as entry extensions).
[[nodiscard]] Result<Crl> make_crl(const CrlTemplate& tmpl, const Certificate& issuer,
                                   const crypto::Signer& signer);

}  // namespace hallmark::x509
