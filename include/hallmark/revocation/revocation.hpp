#pragma once
// Revocation (docs/revocation.md): revoking certificates durably and audited, CRLs per CA built from
// the store, and the CAs whose status hallmark answers for.
//
// Where revoked certificates live: the certificates table. An IDC hallmark issued is revoked in place
// (good -> revoked); a certificate hallmark did not issue but must answer for (a BC of its own BC CA,
// an IDC of a vendor-held CA learned from a manifest) is copied from the device row into that table
// as a revoked row when it is revoked. A CA's CRL is then one indexed, paged query.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hallmark/core/clock.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/crypto/signer.hpp"
#include "hallmark/store/store.hpp"
#include "hallmark/x509/certificate.hpp"
#include "hallmark/x509/crl.hpp"

namespace hallmark::revocation {

// A CA whose certificates hallmark answers for.
struct CaSource {
  std::string name;  // as in the PKI home and the store
  x509::Certificate certificate;
  // Its own key: hallmark signs its CRLs. Null: the key is held elsewhere (a vendor), no CRL here.
  std::shared_ptr<const crypto::Signer> crl_signer;
  // Its delegated OCSP responder (id-kp-OCSPSigning, id-pkix-ocsp-nocheck). Null signer: no OCSP.
  x509::Certificate responder;
  std::shared_ptr<const crypto::Signer> responder_signer;
};

// The CA in `cas` that issued `certificate_issuer_dn` (a device row's bc_issuer), or nullptr.
[[nodiscard]] const CaSource* find_issuer(const std::vector<CaSource>& cas, std::string_view issuer_dn);

struct RevokeOptions {
  std::string actor = "admin";
  std::string request_id;
  const Clock* clock = nullptr;  // nullptr: the system clock
};

// An IDC hallmark issued: good -> revoked (durable, audited). not_found, conflict (already revoked).
[[nodiscard]] Result<store::CertificateRecord> revoke_certificate(store::Store& store,
                                                                  std::string_view serial_hex,
                                                                  x509::RevocationReason reason,
                                                                  const RevokeOptions& options);

// The certificate of a device row (its BC, or for Option 1 the IDC the vendor issued), recorded as a
// revoked certificate of the CA in `cas` that issued it. not_found when the device has no certificate
// or none of `cas` issued it; conflict when it is already recorded.
[[nodiscard]] Result<store::CertificateRecord> revoke_device_certificate(store::Store& store,
                                                                         const store::DeviceRecord& device,
                                                                         const std::vector<CaSource>& cas,
                                                                         x509::RevocationReason reason,
                                                                         const RevokeOptions& options);

// Devices the RA flagged bc_revoked whose BC one of `cas` issued, not recorded as revoked rows yet
// (the service was off, or stopped between flag and record): recorded now (superseded). A scan of the
// inventory (certificates parsed only for flagged devices); returns how many were recorded.
[[nodiscard]] Result<std::size_t> record_flagged_bcs(store::Store& store, const std::vector<CaSource>& cas,
                                                     const RevokeOptions& options);

// Every good certificate hallmark issued to the device, revoked (device retire).
[[nodiscard]] Result<std::vector<store::CertificateRecord>> revoke_device_certificates(
    store::Store& store, store::Id device_id, x509::RevocationReason reason, const RevokeOptions& options);

// A device whose row certificate has this serial and was issued by one of `cas` (a scan of the
// inventory: for the command line, where no index is kept). not_found when none.
[[nodiscard]] Result<store::DeviceRecord> find_device_by_certificate_serial(store::Store& store,
                                                                            std::string_view serial_hex,
                                                                            const std::vector<CaSource>& cas);

// Lowercase hex without leading zeros (as the store keeps serials); invalid_input when not hex.
[[nodiscard]] Result<std::string> normalize_serial(std::string_view text);

// A full CRL of `ca` from the store (its revoked rows, streamed in pages), numbered by the store's
// next CRL number, thisUpdate `now`, nextUpdate `now + next_update`, and stored as the CA's latest.
// invalid_input when the CA has no signer here.
[[nodiscard]] Result<x509::Crl> generate_crl(store::Store& store, const CaSource& ca, Seconds now,
                                             std::chrono::seconds next_update);

// The CRLs of `crls` as one PEM bundle (nginx's ssl_crl).
[[nodiscard]] std::string crl_bundle_pem(const std::vector<x509::Crl>& crls);

}  // namespace hallmark::revocation
