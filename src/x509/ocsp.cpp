#include "hallmark/x509/ocsp.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>

#include <algorithm>
#include <cctype>

#include "internal.hpp"

namespace hallmark::x509 {
namespace {

using detail::check_alloc;

using OcspRequestPtr = crypto::Handle<OCSP_REQUEST, OCSP_REQUEST_free>;
using OcspResponsePtr = crypto::Handle<OCSP_RESPONSE, OCSP_RESPONSE_free>;
using OcspBasicPtr = crypto::Handle<OCSP_BASICRESP, OCSP_BASICRESP_free>;
using OcspCertIdPtr = crypto::Handle<OCSP_CERTID, OCSP_CERTID_free>;
using X509AlgorPtr = crypto::Handle<X509_ALGOR, X509_ALGOR_free>;

std::string lower(std::string_view s) {
  std::string out(s);
  std::ranges::transform(out, out.begin(),
                         [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

ByteView magnitude(ByteView v) {
  while (!v.empty() && v[0] == std::byte{0}) v = v.subspan(1);
  return v;
}

OcspCertId from_native(const OCSP_CERTID* cid) {
  ASN1_OCTET_STRING* name_hash = nullptr;
  ASN1_OBJECT* md = nullptr;
  ASN1_OCTET_STRING* key_hash = nullptr;
  ASN1_INTEGER* serial = nullptr;
  OCSP_id_get0_info(&name_hash, &md, &key_hash, &serial, const_cast<OCSP_CERTID*>(cid));
  OcspCertId out;
  const int nid = md != nullptr ? OBJ_obj2nid(md) : NID_undef;
  out.hash_algorithm = nid != NID_undef ? lower(OBJ_nid2sn(nid)) : detail::oid_text(md);
  out.issuer_name_hash = detail::to_bytes(name_hash);
  out.issuer_key_hash = detail::to_bytes(key_hash);
  const auto m = magnitude(detail::view(serial));
  out.serial.assign(m.begin(), m.end());
  return out;
}

// CertID ::= SEQUENCE { hashAlgorithm, issuerNameHash, issuerKeyHash, serialNumber }, encoded from
// the values (OpenSSL can only compute the hashes itself) and decoded into its own type.
Result<OcspCertIdPtr> to_native(const OcspCertId& id) {
  const EVP_MD* md = EVP_get_digestbyname(id.hash_algorithm.c_str());
  if (md == nullptr) return fail(Errc::invalid_input, "OCSP: unknown hash algorithm " + id.hash_algorithm);
  X509AlgorPtr alg(check_alloc(X509_ALGOR_new()));
  if (X509_ALGOR_set0(alg.get(), OBJ_nid2obj(EVP_MD_get_type(md)), V_ASN1_NULL, nullptr) != 1)
    return crypto::openssl_fail(Errc::internal, "OCSP: CertID algorithm");
  Bytes content = detail::i2d_bytes(alg.get(), i2d_X509_ALGOR);
  detail::der_append_tlv(content, V_ASN1_OCTET_STRING, id.issuer_name_hash);
  detail::der_append_tlv(content, V_ASN1_OCTET_STRING, id.issuer_key_hash);
  const auto m = magnitude(id.serial);
  Bytes integer;
  if (m.empty()) {
    integer.push_back(std::byte{0});
  } else {
    if ((std::to_integer<unsigned>(m[0]) & 0x80) != 0) integer.push_back(std::byte{0});
    integer.insert(integer.end(), m.begin(), m.end());
  }
  detail::der_append_tlv(content, V_ASN1_INTEGER, integer);
  Bytes der;
  detail::der_append_tlv(der, V_ASN1_SEQUENCE | V_ASN1_CONSTRUCTED, content);
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  OcspCertIdPtr cid(d2i_OCSP_CERTID(nullptr, &p, static_cast<long>(der.size())));
  if (!cid) return crypto::openssl_fail(Errc::internal, "OCSP: CertID encoding");
  return cid;
}

}  // namespace

std::string_view to_string(OcspCertStatus status) noexcept {
  switch (status) {
    case OcspCertStatus::good: return "good";
    case OcspCertStatus::revoked: return "revoked";
    case OcspCertStatus::unknown: return "unknown";
  }
  return "unknown";
}

Result<OcspCertId> make_ocsp_cert_id(const Certificate& issuer, ByteView serial,
                                     std::string_view hash_algorithm) {
  const EVP_MD* md = EVP_get_digestbyname(std::string(hash_algorithm).c_str());
  if (md == nullptr || issuer.native() == nullptr)
    return fail(Errc::invalid_input, "OCSP: unknown hash algorithm " + std::string(hash_algorithm));
  OcspCertIdPtr cid(OCSP_cert_id_new(md, X509_get_subject_name(issuer.native()),
                                     X509_get0_pubkey_bitstr(issuer.native()), nullptr));
  if (!cid) return crypto::openssl_fail(Errc::internal, "OCSP: CertID");
  auto out = from_native(cid.get());
  const auto m = magnitude(serial);
  out.serial.assign(m.begin(), m.end());
  return out;
}

Result<OcspRequest> parse_ocsp_request(ByteView der) {
  if (der.empty()) return fail(Errc::invalid_input, "OCSP request: empty");
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  OcspRequestPtr req(d2i_OCSP_REQUEST(nullptr, &p, static_cast<long>(der.size())));
  if (!req) {
    ERR_clear_error();
    return fail(Errc::invalid_input, "OCSP request: bad DER");
  }
  if (p != reinterpret_cast<const unsigned char*>(der.data()) + der.size())
    return fail(Errc::invalid_input, "OCSP request: trailing bytes after DER");
  OcspRequest out;
  const int n = OCSP_request_onereq_count(req.get());
  if (n <= 0) return fail(Errc::invalid_input, "OCSP request: no CertID");
  out.ids.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    out.ids.push_back(from_native(OCSP_onereq_get0_id(OCSP_request_onereq_get0(req.get(), i))));
  }
  const int at = OCSP_REQUEST_get_ext_by_NID(req.get(), NID_id_pkix_OCSP_Nonce, -1);
  if (at >= 0) {
    out.nonce = detail::to_bytes(X509_EXTENSION_get_data(OCSP_REQUEST_get_ext(req.get(), at)));
  }
  return out;
}

Result<Bytes> make_ocsp_request(const std::vector<OcspCertId>& ids, const std::optional<Bytes>& nonce) {
  OcspRequestPtr req(check_alloc(OCSP_REQUEST_new()));
  for (const auto& id : ids) {
    auto cid = HM_TRY(to_native(id));
    if (OCSP_request_add0_id(req.get(), cid.get()) == nullptr)
      return crypto::openssl_fail(Errc::internal, "OCSP request: CertID");
    (void)cid.release();
  }
  if (nonce) {
    if (OCSP_request_add1_nonce(
            req.get(), const_cast<unsigned char*>(reinterpret_cast<const unsigned char*>(nonce->data())),
            static_cast<int>(nonce->size())) != 1)
      return crypto::openssl_fail(Errc::internal, "OCSP request: nonce");
  }
  return detail::i2d_bytes(req.get(), i2d_OCSP_REQUEST);
}

Result<Bytes> make_ocsp_response(const std::vector<OcspSingleResponse>& responses,
                                 const std::optional<Bytes>& nonce, const Certificate& responder,
                                 const crypto::Signer& signer) {
  EVP_PKEY* key = signer.native_private_key();
  if (key == nullptr || responder.native() == nullptr)
    return fail(Errc::invalid_input, "OCSP response: no responder key or certificate");
  OcspBasicPtr basic(check_alloc(OCSP_BASICRESP_new()));
  for (const auto& r : responses) {
    auto cid = HM_TRY(to_native(r.id));
    auto this_update = detail::make_asn1_time(r.this_update);
    crypto::Asn1TimePtr next_update;
    if (r.next_update) next_update = detail::make_asn1_time(*r.next_update);
    crypto::Asn1TimePtr revoked_at;
    int status = V_OCSP_CERTSTATUS_UNKNOWN;
    int reason = -1;
    if (r.status == OcspCertStatus::good) status = V_OCSP_CERTSTATUS_GOOD;
    if (r.status == OcspCertStatus::revoked) {
      status = V_OCSP_CERTSTATUS_REVOKED;
      revoked_at = detail::make_asn1_time(r.revocation_time);
      if (r.reason) reason = static_cast<int>(*r.reason);
    }
    if (OCSP_basic_add1_status(basic.get(), cid.get(), status, reason, revoked_at.get(), this_update.get(),
                               next_update.get()) == nullptr)
      return crypto::openssl_fail(Errc::internal, "OCSP response: single response");
  }
  if (nonce) {
    crypto::Asn1OctetStringPtr value(check_alloc(ASN1_OCTET_STRING_new()));
    if (ASN1_OCTET_STRING_set(value.get(), reinterpret_cast<const unsigned char*>(nonce->data()),
                              static_cast<int>(nonce->size())) != 1)
      return crypto::openssl_fail(Errc::internal, "OCSP response: nonce");
    crypto::X509ExtPtr ext(X509_EXTENSION_create_by_NID(nullptr, NID_id_pkix_OCSP_Nonce, 0, value.get()));
    if (!ext || OCSP_BASICRESP_add_ext(basic.get(), ext.get(), -1) != 1)
      return crypto::openssl_fail(Errc::internal, "OCSP response: nonce");
  }
  // producedAt is the signing time (OCSP_basic_sign reads the system clock).
  if (OCSP_basic_sign(basic.get(), responder.native(), key, detail::signing_digest(key), nullptr,
                      OCSP_RESPID_KEY) != 1)
    return crypto::openssl_fail(Errc::crypto, "OCSP response: signing");
  OcspResponsePtr resp(OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, basic.get()));
  if (!resp) return crypto::openssl_fail(Errc::internal, "OCSP response: encoding");
  return detail::i2d_bytes(resp.get(), i2d_OCSP_RESPONSE);
}

Bytes make_ocsp_error_response(OcspResponseStatus status) {
  // OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED } when unsuccessful.
  return Bytes{std::byte{0x30}, std::byte{0x03}, std::byte{0x0a}, std::byte{0x01},
               static_cast<std::byte>(static_cast<int>(status))};
}

Result<OcspResponse> parse_ocsp_response(ByteView der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  OcspResponsePtr resp(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size())));
  if (!resp) {
    ERR_clear_error();
    return fail(Errc::invalid_input, "OCSP response: bad DER");
  }
  OcspResponse out;
  out.status = static_cast<OcspResponseStatus>(OCSP_response_status(resp.get()));
  if (out.status != OcspResponseStatus::successful) return out;
  OcspBasicPtr basic(OCSP_response_get1_basic(resp.get()));
  if (!basic) return crypto::openssl_fail(Errc::invalid_input, "OCSP response: no basic response");
  out.produced_at = detail::from_asn1_time(OCSP_resp_get0_produced_at(basic.get()));
  for (int i = 0; i < OCSP_resp_count(basic.get()); ++i) {
    OCSP_SINGLERESP* single = OCSP_resp_get0(basic.get(), i);
    OcspSingleResponse r;
    r.id = from_native(OCSP_SINGLERESP_get0_id(single));
    int reason = -1;
    ASN1_GENERALIZEDTIME* revoked_at = nullptr;
    ASN1_GENERALIZEDTIME* this_update = nullptr;
    ASN1_GENERALIZEDTIME* next_update = nullptr;
    const int status = OCSP_single_get0_status(single, &reason, &revoked_at, &this_update, &next_update);
    r.status = status == V_OCSP_CERTSTATUS_GOOD      ? OcspCertStatus::good
               : status == V_OCSP_CERTSTATUS_REVOKED ? OcspCertStatus::revoked
                                                     : OcspCertStatus::unknown;
    if (revoked_at != nullptr) r.revocation_time = detail::from_asn1_time(revoked_at);
    if (reason >= 0) r.reason = static_cast<RevocationReason>(reason);
    if (this_update != nullptr) r.this_update = detail::from_asn1_time(this_update);
    if (next_update != nullptr) r.next_update = detail::from_asn1_time(next_update);
    out.responses.push_back(std::move(r));
  }
  const int at = OCSP_BASICRESP_get_ext_by_NID(basic.get(), NID_id_pkix_OCSP_Nonce, -1);
  if (at >= 0) out.nonce = detail::to_bytes(X509_EXTENSION_get_data(OCSP_BASICRESP_get_ext(basic.get(), at)));
  const STACK_OF(X509)* certs = OCSP_resp_get0_certs(basic.get());
  for (int i = 0; i < sk_X509_num(certs); ++i) {
    X509* c = sk_X509_value(certs, i);
    if (X509_up_ref(c) != 1) continue;
    out.certificates.push_back(Certificate::adopt(c, detail::i2d_bytes(c, i2d_X509)));
  }
  return out;
}

Status verify_ocsp_response_signature(ByteView der, const Certificate& responder) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  OcspResponsePtr resp(d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(der.size())));
  if (!resp) {
    ERR_clear_error();
    return fail(Errc::invalid_input, "OCSP response: bad DER");
  }
  OcspBasicPtr basic(OCSP_response_get1_basic(resp.get()));
  if (!basic) return crypto::openssl_fail(Errc::invalid_input, "OCSP response: no basic response");
  // Only `responder` may have signed (NOINTERN); its path is the caller's business (NOVERIFY).
  crypto::X509StackPtr certs(check_alloc(sk_X509_new_null()));
  if (sk_X509_push(certs.get(), responder.native()) <= 0 || X509_up_ref(responder.native()) != 1)
    throw std::bad_alloc();
  crypto::X509StorePtr store(check_alloc(X509_STORE_new()));
  if (OCSP_basic_verify(basic.get(), certs.get(), store.get(), OCSP_NOINTERN | OCSP_NOVERIFY) != 1) {
    ERR_clear_error();
    return fail(Errc::crypto, "OCSP response signature does not verify");
  }
  return {};
}

}  // namespace hallmark::x509
