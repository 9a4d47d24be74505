#pragma once
// The PKI home's CAs as the revocation component sees them: certificate, CRL signer (local keys) and
// delegated OCSP responder (ocsp/<ca>.pem|.key). Shared by `hallmark serve`, `cert revoke` and `crl`.
#include <string>
#include <vector>

#include "hallmark/core/clock.hpp"
#include "hallmark/revocation/revocation.hpp"
#include "home.hpp"

namespace hallmark::app {

struct RevocationCaOptions {
  bool crl_signers = false;           // decrypt the keys of local CAs (to sign CRLs)
  bool responders = false;            // load ocsp/<ca>.pem|.key; make them for local CAs that lack them
  std::vector<std::string> crl_cas;   // only these sign CRLs; empty: every local CA
  std::vector<std::string> ocsp_cas;  // only these answer OCSP; empty: every CA with a responder
};

// Every CA of the home except external ones (a vendor's generic BC CA is not ours to revoke under).
// Unknown names in crl_cas/ocsp_cas are invalid_input naming the list.
[[nodiscard]] Result<std::vector<revocation::CaSource>> revocation_cas(const PkiHome& home,
                                                                       const RevocationCaOptions& options,
                                                                       const Clock& clock);

// ocsp/<ca>.pem|.key: a delegated OCSP responder certificate issued by the local CA `ca` (profile
// ocsp-responder: id-kp-OCSPSigning, id-pkix-ocsp-nocheck), its key encrypted like the CA keys.
[[nodiscard]] Status make_ocsp_responder(const PkiHome& home, const CaRecord& ca, const Clock& clock);

}  // namespace hallmark::app
