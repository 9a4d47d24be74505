#pragma once
#include <memory>
#include <optional>
#include <string>

#include "hallmark/core/bytes.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/core/secret.hpp"
#include "hallmark/crypto/key.hpp"
#include "hallmark/crypto/signer.hpp"
#include "hallmark/x509/extensions.hpp"
#include "hallmark/x509/name.hpp"

using X509_REQ = struct X509_req_st;

namespace hallmark::x509 {

class Csr {
 public:
  Csr() = default;
  // Rejects trailing bytes after the DER structure.
  [[nodiscard]] static Result<Csr> parse_der(ByteView der);
  [[nodiscard]] static Result<Csr> parse_pem(std::string_view pem);
  [[nodiscard]] static Result<Csr> parse(ByteView data);  // DER or PEM

  [[nodiscard]] const Bytes& to_der() const { return *der_; }
  [[nodiscard]] std::string to_pem() const;

  [[nodiscard]] Name subject() const;
  [[nodiscard]] crypto::PublicKey public_key() const;
  // The self-signature verifies with the CSR's own key (proof of possession).
  [[nodiscard]] Status verify_self_signature() const;
  // RFC 2985 challengePassword, if present.
  [[nodiscard]] std::optional<Secret> challenge_password() const;
  // Requested extensions (PKCS#9 extensionRequest), for profiles that allow them.
  [[nodiscard]] std::optional<SubjectAltName> requested_subject_alt_name() const;
  [[nodiscard]] std::optional<BasicConstraints> requested_basic_constraints() const;

  [[nodiscard]] X509_REQ* native() const noexcept { return req_.get(); }

 private:
  std::shared_ptr<X509_REQ> req_;
  std::shared_ptr<const Bytes> der_;
};

struct CsrOptions {
  std::optional<Secret> challenge_password;
  std::optional<SubjectAltName> subject_alt_name;
};

// A CSR for `subject` signed by `signer` (whose public key it carries).
[[nodiscard]] Result<Csr> make_csr(const Name& subject, const crypto::Signer& signer,
                                   const CsrOptions& options = {});

}  // namespace hallmark::x509
