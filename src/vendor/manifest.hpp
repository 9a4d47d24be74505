#pragma once
// Reel manifest entries in Microchip's format (docs/vendor.md): flattened JWS, ES256, one per chip.
// The constant parts (protected header, CA certificates, organisation objects) are encoded once per
// reel; a chip costs one payload, one base64url and one ECDSA signature.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "hallmark/core/bytes.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/crypto/signer.hpp"
#include "hallmark/x509/certificate.hpp"

namespace hallmark::vendor {

struct SignerIds {
  std::string kid;       // base64url of the SubjectKeyIdentifier (= SHA-1 of the public key point)
  std::string x5t_s256;  // base64url of SHA-256 over the certificate DER
};
[[nodiscard]] Result<SignerIds> signer_ids(const x509::Certificate& signer);

struct ReelFields {
  std::string model;
  std::string part_number;
  std::string manufacturer_org, manufacturer_unit;
  std::string provisioner_org, provisioner_unit;
  std::string distributor_org, distributor_unit;
  std::string group_id;
  std::string reel;
  std::string mode;  // "idc" | "bc" | "bc-secret"
};

class EntryEncoder {
 public:
  // `ca_chain`: the certificates after the device's in x5c (its issuing CA up to, not including, the root).
  [[nodiscard]] static Result<EntryEncoder> make(const ReelFields& fields,
                                                 const x509::Certificate& signer_cert,
                                                 std::shared_ptr<const crypto::Signer> signer,
                                                 const std::vector<x509::Certificate>& ca_chain);

  // One array element: the JWS object, indented as in Microchip's files (4 spaces, no trailing newline).
  // `ukid_secret_digest` is empty except for Option 3.
  [[nodiscard]] Result<std::string> encode(std::string_view unique_id, std::string_view timestamp,
                                           ByteView device_cert_der,
                                           std::string_view ukid_secret_digest) const;

  [[nodiscard]] const SignerIds& ids() const { return ids_; }

 private:
  EntryEncoder() = default;
  std::shared_ptr<const crypto::Signer> signer_;
  SignerIds ids_;
  std::string protected_b64_;  // base64url of {"alg":"ES256","kid":...,"x5t#S256":...}
  std::string payload_head_;   // {"version":1,...,"provisioningTimestamp":"
  std::string x5c_tail_;       // ,"<CA b64>"...]}]}
  std::string hallmark_tail_;  // ,"hallmark":{"reel":...,"mode":...}}
};

// The P-256 public point (x, y) of a certificate's SubjectPublicKeyInfo, read from its DER.
struct P256Point {
  Bytes x, y;
};
[[nodiscard]] Result<P256Point> p256_point_of(ByteView certificate_der);

// "2026-11-28T12:00:00.000Z", the provisioningTimestamp shape of Microchip's manifests.
[[nodiscard]] std::string manifest_timestamp(Seconds t);

}  // namespace hallmark::vendor
