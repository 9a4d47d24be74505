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
};

// A self-signed root under `profile` (kind root), for `hallmark init` and `hallmark ca create --role root`.
[[nodiscard]] Result<x509::Certificate> issue_self_signed(const crypto::Signer& signer,
                                                          const std::map<std::string, std::string>& variables,
                                                          const Profile& profile, const Clock& clock);

}  // namespace hallmark::ca
