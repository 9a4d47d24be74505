#pragma once
// Private helpers shared by the x509 sources: handles for extension types, ASN.1 conversions, PEM,
// and the GeneralName <-> GENERAL_NAME mapping used by certificates, CSRs and the builder.
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <initializer_list>
#include <new>
#include <string>
#include <string_view>

#include "hallmark/core/bytes.hpp"
#include "hallmark/core/clock.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/crypto/handle.hpp"
#include "hallmark/crypto/signer.hpp"
#include "hallmark/x509/extensions.hpp"

namespace hallmark::x509::detail {

using crypto::Asn1TimePtr;
using crypto::Handle;

inline void openssl_free(void* p) noexcept {
  OPENSSL_free(p);
}
using OpensslBytesPtr = Handle<unsigned char, openssl_free>;

using BasicConstraintsPtr = Handle<BASIC_CONSTRAINTS, BASIC_CONSTRAINTS_free>;
using BitStringPtr = Handle<ASN1_BIT_STRING, ASN1_BIT_STRING_free>;
using EkuPtr = Handle<EXTENDED_KEY_USAGE, EXTENDED_KEY_USAGE_free>;
using AuthorityKeyIdPtr = Handle<AUTHORITY_KEYID, AUTHORITY_KEYID_free>;
using CrlDistPointsPtr = Handle<CRL_DIST_POINTS, CRL_DIST_POINTS_free>;
using AiaPtr = Handle<AUTHORITY_INFO_ACCESS, AUTHORITY_INFO_ACCESS_free>;
using PoliciesPtr = Handle<CERTIFICATEPOLICIES, CERTIFICATEPOLICIES_free>;
using GeneralNamePtr = Handle<GENERAL_NAME, GENERAL_NAME_free>;
using Asn1TypePtr = Handle<ASN1_TYPE, ASN1_TYPE_free>;
using Asn1StringPtr = Handle<ASN1_STRING, ASN1_STRING_free>;
using Asn1EnumeratedPtr = Handle<ASN1_ENUMERATED, ASN1_ENUMERATED_free>;
using Asn1NullPtr = Handle<ASN1_NULL, ASN1_NULL_free>;
using X509ReqPtr = crypto::X509ReqPtr;

struct ExtensionStackFree {
  void operator()(STACK_OF(X509_EXTENSION) * s) const noexcept {
    sk_X509_EXTENSION_pop_free(s, X509_EXTENSION_free);
  }
};
using ExtensionStackPtr = std::unique_ptr<STACK_OF(X509_EXTENSION), ExtensionStackFree>;

// Out of memory is exceptional (STYLE.md): allocation failures throw, everything else is a Result.
template <class T>
T* check_alloc(T* p) {
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

inline ByteView view(const ASN1_STRING* s) {
  if (s == nullptr) return {};
  return {reinterpret_cast<const std::byte*>(ASN1_STRING_get0_data(s)),
          static_cast<std::size_t>(ASN1_STRING_length(s))};
}
inline Bytes to_bytes(const ASN1_STRING* s) {
  auto v = view(s);
  return {v.begin(), v.end()};
}

// Any ASN.1 string type decoded to UTF-8; bytes as they are when the encoding is broken (a
// PrintableString holding '_' is decoded, not rejected).
[[nodiscard]] std::string asn1_string_to_utf8(const ASN1_STRING* s);
// Dotted OID text.
[[nodiscard]] std::string oid_text(const ASN1_OBJECT* obj);
// Short name when OpenSSL knows one, else dotted.
[[nodiscard]] std::string oid_short_name(const ASN1_OBJECT* obj);

[[nodiscard]] Seconds from_asn1_time(const ASN1_TIME* t);
// UTCTime for 1950..2049, GeneralizedTime otherwise (RFC 5280 §4.1.2.5).
[[nodiscard]] Asn1TimePtr make_asn1_time(Seconds t);
[[nodiscard]] bool set_asn1_time(ASN1_TIME* target, Seconds t);

// PEM: encode with 64 columns, LF; decode the first block whose label is in `labels` (leading text
// and other blocks ignored, CRLF accepted).
[[nodiscard]] std::string pem_encode(std::string_view label, ByteView der);
[[nodiscard]] Result<Bytes> pem_decode(std::string_view text, std::initializer_list<std::string_view> labels);
[[nodiscard]] bool looks_like_pem(ByteView data);

// Extensions from a stack (certificate, CSR extensionRequest, CRL).
using ExtStack = const STACK_OF(X509_EXTENSION);
[[nodiscard]] std::optional<BasicConstraints> basic_constraints_from(ExtStack* exts);
[[nodiscard]] std::optional<SubjectAltName> subject_alt_name_from(ExtStack* exts);
[[nodiscard]] std::optional<Bytes> authority_key_id_from(ExtStack* exts);

[[nodiscard]] Result<GeneralName> from_general_name(const GENERAL_NAME* gen);
[[nodiscard]] Result<crypto::GeneralNamesPtr> to_general_names(const std::vector<GeneralName>& names);

// The digest X509_sign & co. should use for `key` (nullptr for Ed25519), per crypto::default_digest.
[[nodiscard]] const EVP_MD* signing_digest(EVP_PKEY* key);
[[nodiscard]] const EVP_MD* md_for(crypto::DigestAlgorithm digest);

// Minimal DER writing for structures we assemble from already-encoded parts.
void der_append_header(Bytes& out, unsigned char tag, std::size_t length);
void der_append_tlv(Bytes& out, unsigned char tag, ByteView content);

// i2d into a Bytes.
template <class T, class F>
[[nodiscard]] Bytes i2d_bytes(const T* obj, F i2d) {
  Bytes out;
  const int n = i2d(obj, nullptr);
  if (n <= 0) return out;
  out.resize(static_cast<std::size_t>(n));
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  i2d(obj, &p);
  return out;
}

// Fits the PrintableString alphabet (X.680): such values are encoded as PrintableString.
inline bool is_printable(std::string_view s) {
  for (unsigned char c : s) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == ' ' ||
                    c == '\'' || c == '(' || c == ')' || c == '+' || c == ',' || c == '-' || c == '.' ||
                    c == '/' || c == ':' || c == '=' || c == '?';
    if (!ok) return false;
  }
  return true;
}

}  // namespace hallmark::x509::detail
