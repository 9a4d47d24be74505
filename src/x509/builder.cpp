#include "hallmark/x509/builder.hpp"

#include <openssl/ec.h>
#include <openssl/err.h>

#include <algorithm>

#include "hallmark/crypto/digest.hpp"
#include "internal.hpp"

namespace hallmark::x509 {
namespace {

using detail::check_alloc;

// Fetched once: EVP_sha1() would fetch an implementation on every digest.
const EVP_MD* sha1_md() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA1", nullptr);
  return md;
}

// RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING value.
Result<crypto::Asn1OctetStringPtr> key_id_of(const X509* cert) {
  const ASN1_BIT_STRING* bits = X509_get0_pubkey_bitstr(cert);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (bits == nullptr || sha1_md() == nullptr ||
      EVP_Digest(ASN1_STRING_get0_data(bits), static_cast<std::size_t>(ASN1_STRING_length(bits)), md, &len,
                 sha1_md(), nullptr) != 1) {
    return crypto::openssl_fail(Errc::crypto, "subject key identifier");
  }
  crypto::Asn1OctetStringPtr out(check_alloc(ASN1_OCTET_STRING_new()));
  if (ASN1_OCTET_STRING_set(out.get(), md, static_cast<int>(len)) != 1) throw std::bad_alloc();
  return out;
}

Result<detail::GeneralNamePtr> uri_name(const std::string& uri) {
  auto gens = detail::to_general_names({GeneralName::uri(uri)});
  if (!gens) return std::unexpected(gens.error());
  detail::GeneralNamePtr gen(sk_GENERAL_NAME_pop(gens->get()));
  return gen;
}

Result<crypto::Asn1ObjectPtr> oid_object(const std::string& dotted, std::string_view what) {
  crypto::Asn1ObjectPtr obj(OBJ_txt2obj(dotted.c_str(), 1));
  if (!obj) {
    ERR_clear_error();
    return fail(Errc::invalid_input, std::string(what) + ": not a dotted OID: " + dotted);
  }
  return obj;
}

class ExtensionWriter {
 public:
  explicit ExtensionWriter(X509* x) : x_(x) {}
  Status add(int nid, void* value, bool critical) {
    if (X509_add1_ext_i2d(x_, nid, value, critical ? 1 : 0, X509V3_ADD_APPEND) != 1) {
      return crypto::openssl_fail(Errc::internal, std::string("extension ") + OBJ_nid2sn(nid));
    }
    return {};
  }

 private:
  X509* x_;
};

Status add_extensions(X509* x, const CertificateTemplate& tmpl, const X509* issuer) {
  ExtensionWriter ext(x);
  if (const auto& bc = tmpl.basic_constraints) {
    detail::BasicConstraintsPtr v(check_alloc(BASIC_CONSTRAINTS_new()));
    v->ca = bc->ca ? 0xff : 0;
    if (bc->path_length) {
      if (!bc->ca || *bc->path_length < 0) {
        return fail(Errc::invalid_input, "basicConstraints: pathLen needs CA:TRUE and a non-negative value");
      }
      v->pathlen = check_alloc(ASN1_INTEGER_new());
      ASN1_INTEGER_set(v->pathlen, *bc->path_length);
    }
    HM_TRY_VOID(ext.add(NID_basic_constraints, v.get(), bc->critical));
  }
  if (const auto& ku = tmpl.key_usage) {
    if (ku->bits == 0) return fail(Errc::invalid_input, "keyUsage: no bits set");
    detail::BitStringPtr v(check_alloc(ASN1_BIT_STRING_new()));
    for (int i = 0; i <= 8; ++i) {
      if ((ku->bits & (1u << i)) != 0 && ASN1_BIT_STRING_set_bit(v.get(), i, 1) != 1) throw std::bad_alloc();
    }
    HM_TRY_VOID(ext.add(NID_key_usage, v.get(), ku->critical));
  }
  if (const auto& eku = tmpl.extended_key_usage) {
    if (eku->oids.empty()) return fail(Errc::invalid_input, "extendedKeyUsage: empty");
    detail::EkuPtr v(check_alloc(sk_ASN1_OBJECT_new_null()));
    for (const auto& oid : eku->oids) {
      auto obj = HM_TRY(oid_object(oid, "extendedKeyUsage"));
      if (sk_ASN1_OBJECT_push(v.get(), obj.get()) <= 0) throw std::bad_alloc();
      (void)obj.release();
    }
    HM_TRY_VOID(ext.add(NID_ext_key_usage, v.get(), eku->critical));
  }
  if (tmpl.subject_key_id) {
    auto ski = HM_TRY(key_id_of(x));
    HM_TRY_VOID(ext.add(NID_subject_key_identifier, ski.get(), false));
  }
  if (tmpl.authority_key_id && issuer != nullptr) {
    detail::AuthorityKeyIdPtr akid(check_alloc(AUTHORITY_KEYID_new()));
    if (const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(const_cast<X509*>(issuer))) {
      akid->keyid = check_alloc(ASN1_OCTET_STRING_dup(ski));
    } else {
      akid->keyid = HM_TRY(key_id_of(issuer)).release();
    }
    HM_TRY_VOID(ext.add(NID_authority_key_identifier, akid.get(), false));
  }
  if (const auto& san = tmpl.subject_alt_name) {
    if (san->names.empty()) return fail(Errc::invalid_input, "subjectAltName: empty");
    auto gens = HM_TRY(detail::to_general_names(san->names));
    // RFC 5280 §4.2.1.6: critical when the subject is empty.
    HM_TRY_VOID(ext.add(NID_subject_alt_name, gens.get(), san->critical || tmpl.subject.empty()));
  }
  if (const auto& cdp = tmpl.crl_distribution_points; cdp && !cdp->uris.empty()) {
    detail::CrlDistPointsPtr dps(check_alloc(sk_DIST_POINT_new_null()));
    DIST_POINT* dp = check_alloc(DIST_POINT_new());
    if (sk_DIST_POINT_push(dps.get(), dp) <= 0) {
      DIST_POINT_free(dp);
      throw std::bad_alloc();
    }
    dp->distpoint = check_alloc(DIST_POINT_NAME_new());
    dp->distpoint->type = 0;
    std::vector<GeneralName> uris;
    for (const auto& u : cdp->uris) uris.push_back(GeneralName::uri(u));
    dp->distpoint->name.fullname = HM_TRY(detail::to_general_names(uris)).release();
    HM_TRY_VOID(ext.add(NID_crl_distribution_points, dps.get(), false));
  }
  if (const auto& aia = tmpl.authority_info_access; aia && (!aia->ocsp.empty() || !aia->ca_issuers.empty())) {
    detail::AiaPtr v(check_alloc(sk_ACCESS_DESCRIPTION_new_null()));
    auto push = [&](int method, const std::string& uri) -> Status {
      ACCESS_DESCRIPTION* ad = check_alloc(ACCESS_DESCRIPTION_new());
      if (sk_ACCESS_DESCRIPTION_push(v.get(), ad) <= 0) {
        ACCESS_DESCRIPTION_free(ad);
        throw std::bad_alloc();
      }
      ASN1_OBJECT_free(ad->method);
      ad->method = OBJ_nid2obj(method);
      GENERAL_NAME_free(ad->location);
      ad->location = HM_TRY(uri_name(uri)).release();
      return {};
    };
    for (const auto& u : aia->ocsp) HM_TRY_VOID(push(NID_ad_OCSP, u));
    for (const auto& u : aia->ca_issuers) HM_TRY_VOID(push(NID_ad_ca_issuers, u));
    HM_TRY_VOID(ext.add(NID_info_access, v.get(), false));
  }
  if (const auto& cp = tmpl.certificate_policies; cp && !cp->oids.empty()) {
    detail::PoliciesPtr v(check_alloc(sk_POLICYINFO_new_null()));
    for (const auto& oid : cp->oids) {
      auto obj = HM_TRY(oid_object(oid, "certificatePolicies"));
      POLICYINFO* pi = check_alloc(POLICYINFO_new());
      if (sk_POLICYINFO_push(v.get(), pi) <= 0) {
        POLICYINFO_free(pi);
        throw std::bad_alloc();
      }
      ASN1_OBJECT_free(pi->policyid);
      pi->policyid = obj.release();
    }
    HM_TRY_VOID(ext.add(NID_certificate_policies, v.get(), false));
  }
  if (tmpl.ocsp_no_check) {
    detail::Asn1NullPtr v(check_alloc(ASN1_NULL_new()));
    HM_TRY_VOID(ext.add(NID_id_pkix_OCSP_noCheck, v.get(), false));
  }
  return {};
}

}  // namespace

Result<Certificate> make_certificate(const CertificateTemplate& tmpl,
                                     const std::optional<Certificate>& issuer, const crypto::Signer& signer) {
  EVP_PKEY* sign_key = signer.native_private_key();
  EVP_PKEY* subject_key = tmpl.public_key.native();
  if (sign_key == nullptr) return fail(Errc::invalid_input, "certificate: signer has no key");
  if (subject_key == nullptr) return fail(Errc::invalid_input, "certificate: template has no public key");
  X509* issuer_x509 = issuer ? issuer->native() : nullptr;
  if (issuer && issuer_x509 == nullptr)
    return fail(Errc::invalid_input, "certificate: empty issuer certificate");

  // The serial: big-endian, positive, non-zero, at most 20 octets (RFC 5280 §4.1.2.2).
  auto serial = ByteView(tmpl.serial);
  if (serial.empty() || (std::to_integer<unsigned>(serial[0]) & 0x80) != 0) {
    return fail(Errc::invalid_input, "certificate: serial must be a positive integer");
  }
  while (!serial.empty() && serial[0] == std::byte{0}) serial = serial.subspan(1);
  if (serial.empty()) return fail(Errc::invalid_input, "certificate: serial must not be zero");
  if (serial.size() > 20) return fail(Errc::invalid_input, "certificate: serial longer than 20 octets");
  if (tmpl.not_after < tmpl.not_before)
    return fail(Errc::invalid_input, "certificate: notAfter before notBefore");

  // The signer must hold the issuer's key (or, self-signed, the subject's): never sign with a stranger.
  const EVP_PKEY* expected = issuer_x509 != nullptr ? X509_get0_pubkey(issuer_x509) : subject_key;
  if (expected == nullptr || EVP_PKEY_eq(expected, signer.public_key().native()) != 1) {
    ERR_clear_error();
    return fail(Errc::invalid_input,
                issuer_x509 != nullptr
                    ? "certificate: signer key does not match the issuer certificate"
                    : "certificate: self-signed, but the signer key is not the subject key");
  }

  // OpenSSL 3.0's X509_set_pubkey encodes a provider-backed key and decodes it straight back (~2M
  // instructions); a legacy EC_KEY it encodes directly. A key from PrivateKey::public_key is already
  // legacy; any other EC key is re-read from its cached SPKI DER by the legacy decoder (~170k).
  // X509_PUBKEY_set0_param with that DER would skip even this, but would leave the certificate
  // without a decoded key (X509_get0_pubkey would return NULL for chain building). Deprecated API.
  EVP_PKEY* certified_key = subject_key;
  crypto::EvpPkeyPtr legacy_key;
  if (EVP_PKEY_get_base_id(subject_key) == EVP_PKEY_EC && EVP_PKEY_get0_provider(subject_key) != nullptr) {
    const ByteView spki = tmpl.public_key.der();
    const auto* p = reinterpret_cast<const unsigned char*>(spki.data());
    if (EC_KEY* ec = d2i_EC_PUBKEY(nullptr, &p, static_cast<long>(spki.size())); ec != nullptr) {
      legacy_key.reset(EVP_PKEY_new());
      if (legacy_key && EVP_PKEY_assign_EC_KEY(legacy_key.get(), ec) == 1) {
        certified_key = legacy_key.get();
      } else {
        EC_KEY_free(ec);
      }
    }
    ERR_clear_error();
  }

  crypto::X509Ptr x(check_alloc(X509_new()));
  const X509_NAME* issuer_name =
      issuer_x509 != nullptr ? X509_get_subject_name(issuer_x509) : tmpl.subject.native();
  if (X509_set_version(x.get(), X509_VERSION_3) != 1 ||
      ASN1_STRING_set(X509_get_serialNumber(x.get()), serial.data(), static_cast<int>(serial.size())) != 1 ||
      X509_set_issuer_name(x.get(), issuer_name) != 1 ||
      X509_set_subject_name(x.get(), tmpl.subject.native()) != 1 ||
      !detail::set_asn1_time(X509_getm_notBefore(x.get()), tmpl.not_before) ||
      !detail::set_asn1_time(X509_getm_notAfter(x.get()), tmpl.not_after) ||
      X509_set_pubkey(x.get(), certified_key) != 1) {
    return crypto::openssl_fail(Errc::internal, "certificate: building");
  }
  HM_TRY_VOID(add_extensions(x.get(), tmpl, issuer_x509));

  if (X509_sign(x.get(), sign_key, detail::signing_digest(sign_key)) <= 0) {
    return crypto::openssl_fail(Errc::crypto, "certificate: signing");
  }
  auto der = detail::i2d_bytes(x.get(), i2d_X509);
  if (der.empty()) return crypto::openssl_fail(Errc::internal, "certificate: encoding");
  return Certificate::adopt(x.release(), std::move(der));
}

Bytes make_serial() {
  Bytes serial = crypto::random_bytes(16);
  serial[0] &= std::byte{0x7f};  // positive
  // A zero first octet would shorten the INTEGER (and all-zero would be zero): keep 16 octets.
  if (serial[0] == std::byte{0}) serial[0] = std::byte{0x01};
  return serial;
}

}  // namespace hallmark::x509
