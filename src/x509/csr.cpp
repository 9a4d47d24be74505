#include "hallmark/x509/csr.hpp"

#include <openssl/err.h>

#include "internal.hpp"

namespace hallmark::x509 {
namespace {

detail::ExtensionStackPtr requested_extensions(const X509_REQ* req) {
  detail::ExtensionStackPtr exts(X509_REQ_get_extensions(const_cast<X509_REQ*>(req)));
  if (!exts) ERR_clear_error();
  return exts;
}

}  // namespace

Result<Csr> Csr::parse_der(ByteView der) {
  if (der.empty()) return fail(Errc::invalid_input, "CSR: empty input");
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  X509_REQ* raw = d2i_X509_REQ(nullptr, &p, static_cast<long>(der.size()));
  if (raw == nullptr) return crypto::openssl_fail(Errc::invalid_input, "CSR: bad DER");
  crypto::X509ReqPtr req(raw);
  if (p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    return fail(Errc::invalid_input, "CSR: trailing bytes after DER");
  }
  Csr csr;
  csr.req_ = std::shared_ptr<X509_REQ>(req.release(), X509_REQ_free);
  csr.der_ = std::make_shared<const Bytes>(der.begin(), der.end());
  return csr;
}

Result<Csr> Csr::parse_pem(std::string_view pem) {
  auto der = detail::pem_decode(pem, {"CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"});
  if (!der) return std::unexpected(der.error().with_context("CSR"));
  return parse_der(*der);
}

Result<Csr> Csr::parse(ByteView data) {
  if (detail::looks_like_pem(data)) return parse_pem(as_chars(data));
  return parse_der(data);
}

std::string Csr::to_pem() const {
  return detail::pem_encode("CERTIFICATE REQUEST", *der_);
}

Name Csr::subject() const {
  return Name::copy_of(X509_REQ_get_subject_name(req_.get()));
}

crypto::PublicKey Csr::public_key() const {
  EVP_PKEY* key = X509_REQ_get_pubkey(req_.get());
  if (key == nullptr) {
    ERR_clear_error();
    return {};
  }
  return crypto::PublicKey::adopt(key,
                                  detail::i2d_bytes(X509_REQ_get_X509_PUBKEY(req_.get()), i2d_X509_PUBKEY));
}

Status Csr::verify_self_signature() const {
  EVP_PKEY* key = X509_REQ_get0_pubkey(req_.get());
  if (key == nullptr) {
    ERR_clear_error();
    return fail(Errc::invalid_input, "CSR: unreadable public key");
  }
  if (X509_REQ_verify(req_.get(), key) != 1) {
    ERR_clear_error();
    return fail(Errc::crypto, "CSR: self-signature does not verify");
  }
  return {};
}

std::optional<Secret> Csr::challenge_password() const {
  const int i = X509_REQ_get_attr_by_NID(req_.get(), NID_pkcs9_challengePassword, -1);
  if (i < 0) return std::nullopt;
  X509_ATTRIBUTE* attr = X509_REQ_get_attr(req_.get(), i);
  ASN1_TYPE* value = X509_ATTRIBUTE_get0_type(attr, 0);
  if (value == nullptr) return std::nullopt;
  switch (value->type) {
    case V_ASN1_PRINTABLESTRING:
    case V_ASN1_UTF8STRING:
    case V_ASN1_T61STRING:
    case V_ASN1_BMPSTRING:
    case V_ASN1_UNIVERSALSTRING:
    case V_ASN1_IA5STRING: break;
    default: return std::nullopt;
  }
  unsigned char* out = nullptr;
  const int n = ASN1_STRING_to_UTF8(&out, value->value.asn1_string);
  if (n < 0) {
    ERR_clear_error();
    return std::nullopt;
  }
  detail::OpensslBytesPtr owned(out);
  Secret secret(std::string(reinterpret_cast<const char*>(out), static_cast<std::size_t>(n)));
  OPENSSL_cleanse(out, static_cast<std::size_t>(n));
  return secret;
}

std::optional<SubjectAltName> Csr::requested_subject_alt_name() const {
  auto exts = requested_extensions(req_.get());
  if (!exts) return std::nullopt;
  return detail::subject_alt_name_from(exts.get());
}

std::optional<BasicConstraints> Csr::requested_basic_constraints() const {
  auto exts = requested_extensions(req_.get());
  if (!exts) return std::nullopt;
  return detail::basic_constraints_from(exts.get());
}

Result<Csr> make_csr(const Name& subject, const crypto::Signer& signer, const CsrOptions& options) {
  EVP_PKEY* key = signer.native_private_key();
  if (key == nullptr || signer.public_key().native() == nullptr) {
    return fail(Errc::invalid_input, "CSR: signer has no key");
  }
  crypto::X509ReqPtr req(detail::check_alloc(X509_REQ_new()));
  if (X509_REQ_set_version(req.get(), X509_REQ_VERSION_1) != 1 ||
      X509_REQ_set_subject_name(req.get(), subject.native()) != 1 ||
      X509_REQ_set_pubkey(req.get(), signer.public_key().native()) != 1) {
    return crypto::openssl_fail(Errc::internal, "CSR: building");
  }
  if (options.challenge_password) {
    const auto pw = options.challenge_password->reveal();
    if (pw.empty()) return fail(Errc::invalid_input, "CSR: empty challengePassword");
    const int type = detail::is_printable(pw) ? V_ASN1_PRINTABLESTRING : V_ASN1_UTF8STRING;
    if (X509_REQ_add1_attr_by_NID(req.get(), NID_pkcs9_challengePassword, type,
                                  reinterpret_cast<const unsigned char*>(pw.data()),
                                  static_cast<int>(pw.size())) != 1) {
      return crypto::openssl_fail(Errc::internal, "CSR: challengePassword");
    }
  }
  if (options.subject_alt_name) {
    auto gens = detail::to_general_names(options.subject_alt_name->names);
    if (!gens) return std::unexpected(gens.error().with_context("CSR"));
    STACK_OF(X509_EXTENSION)* raw_exts = nullptr;
    const int added = X509V3_add1_i2d(&raw_exts, NID_subject_alt_name, gens->get(),
                                      options.subject_alt_name->critical ? 1 : 0, X509V3_ADD_DEFAULT);
    detail::ExtensionStackPtr exts(raw_exts);
    if (added != 1 || X509_REQ_add_extensions(req.get(), exts.get()) != 1) {
      return crypto::openssl_fail(Errc::internal, "CSR: extensionRequest");
    }
  }
  if (X509_REQ_sign(req.get(), key, detail::md_for(crypto::default_digest(signer.public_key().info()))) <=
      0) {
    return crypto::openssl_fail(Errc::crypto, "CSR: signing");
  }
  auto der = detail::i2d_bytes(req.get(), i2d_X509_REQ);
  if (der.empty()) return crypto::openssl_fail(Errc::internal, "CSR: encoding");
  return Csr::parse_der(der);
}

}  // namespace hallmark::x509
