#pragma once
// The one issuing primitive: every certificate a CA makes goes through Issuer::issue.
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "hallmark/ca/profile.hpp"
#include "hallmark/core/clock.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/crypto/signer.hpp"
#include "hallmark/x509/certificate.hpp"
#include "hallmark/x509/crl.hpp"
#include "hallmark/x509/csr.hpp"

namespace hallmark::ca {

struct IssueRequest {
  // A CSR (its self-signature is checked) or a bare public key (vendor provisioning, server keygen).
  std::variant<x509::Csr, crypto::PublicKey> key_source;
  // Values for the profile's {variables}: "serial", "hw_serial", "product", "org", "cn", "host"...
  std::map<std::string, std::string> variables;
  std::optional<std::chrono::seconds> lifetime;  // overrides the profile's lifetime
  std::optional<Seconds> not_before;             // default: clock.now() - profile.backdate
};

// What issue() does, in order:
//  1. a CSR's self-signature must verify (Errc::invalid_input "CSR signature does not verify");
//  2. the key must pass the profile's key policy (Errc::forbidden, see check_key_policy);
//  3. subject and extensions come from the profile and the variables only; the CSR's subject and
//     requested extensions are ignored, except DNS/IP/URI SAN entries when profile.allow_csr_san;
//  4. notBefore = request.not_before or now - backdate; notAfter = (request.not_before or now) +
//     lifetime, or 99991231235959Z without one; either way clamped to the CA's own notAfter unless
//     the CA has no expiry (a certificate cannot usefully outlive its issuer: path validation fails
//     once the CA expires). A CA that has expired, or a CA profile under a pathLen 0 CA, is forbidden.

class Issuer {
 public:
  // `certificate` is the CA's certificate; `signer` holds its key. For a root being created, use
  // issue_self_signed instead.
  Issuer(x509::Certificate certificate, std::shared_ptr<const crypto::Signer> signer, const Clock& clock);

  [[nodiscard]] Result<x509::Certificate> issue(const IssueRequest& request, const Profile& profile) const;
  [[nodiscard]] Result<x509::Crl> make_crl(const x509::CrlTemplate& tmpl) const;

  [[nodiscard]] const x509::Certificate& certificate() const noexcept { return certificate_; }
  [[nodiscard]] const crypto::Signer& signer() const noexcept { return *signer_; }

 private:
  x509::Certificate certificate_;
  std::shared_ptr<const crypto::Signer> signer_;
  const Clock& clock_;
  // Read once from certificate_: issue() is on the enrollment hot path.
  std::optional<x509::Certificate> issuer_;
  Seconds ca_not_after_;
  bool ca_no_expiry_ = false;
  bool ca_may_issue_cas_ = true;
};

// A self-signed root under `profile` (kind root), for `hallmark init` and `hallmark ca create --role root`.
[[nodiscard]] Result<x509::Certificate> issue_self_signed(const crypto::Signer& signer,
                                                          const std::map<std::string, std::string>& variables,
                                                          const Profile& profile, const Clock& clock);

}  // namespace hallmark::ca
