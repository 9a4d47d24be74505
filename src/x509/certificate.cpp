#include "hallmark/x509/certificate.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>

#include "hallmark/core/bytes.hpp"
#include "hallmark/crypto/digest.hpp"
#include "internal.hpp"

namespace hallmark::x509 {
namespace {

const STACK_OF(X509_EXTENSION) * extensions_of(const X509* x) {
  return X509_get0_extensions(x);
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

}  // namespace

Certificate Certificate::adopt(X509* x509, Bytes der) {
  Certificate c;
  c.x509_ = std::shared_ptr<X509>(x509, X509_free);
  c.der_ = std::make_shared<const Bytes>(std::move(der));
  return c;
}

Result<Certificate> Certificate::parse_der(ByteView der) {
  if (der.empty()) return fail(Errc::invalid_input, "certificate: empty input");
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  X509* raw = d2i_X509(nullptr, &p, static_cast<long>(der.size()));
  if (raw == nullptr) return crypto::openssl_fail(Errc::invalid_input, "certificate: bad DER");
  crypto::X509Ptr x(raw);
  if (p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    return fail(Errc::invalid_input, "certificate: trailing bytes after DER");
  }
  // Decodes the extensions now (OpenSSL caches them under a lock), rejecting broken ones.
  if ((X509_get_extension_flags(x.get()) & EXFLAG_INVALID) != 0) {
    ERR_clear_error();
    return fail(Errc::invalid_input, "certificate: invalid extensions");
  }
  return adopt(x.release(), Bytes(der.begin(), der.end()));
}

Result<Certificate> Certificate::parse_pem(std::string_view pem) {
  auto der = detail::pem_decode(pem, {"CERTIFICATE", "X509 CERTIFICATE"});
  if (!der) return std::unexpected(der.error().with_context("certificate"));
  return parse_der(*der);
}

Result<Certificate> Certificate::parse(ByteView data) {
  if (detail::looks_like_pem(data)) return parse_pem(as_chars(data));
  return parse_der(data);
}

Result<std::vector<Certificate>> Certificate::parse_pem_chain(std::string_view pem) {
  auto bio = crypto::make_read_bio(pem.data(), pem.size());
  if (!bio) return crypto::openssl_fail(Errc::internal, "certificate chain");
  std::vector<Certificate> out;
  for (;;) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long len = 0;
    if (PEM_read_bio(bio.get(), &name, &header, &data, &len) != 1) {
      ERR_clear_error();
      break;
    }
    detail::OpensslBytesPtr n(reinterpret_cast<unsigned char*>(name));
    detail::OpensslBytesPtr h(reinterpret_cast<unsigned char*>(header));
    detail::OpensslBytesPtr d(data);
    if (std::string_view(name) != "CERTIFICATE" && std::string_view(name) != "X509 CERTIFICATE") continue;
    auto cert = parse_der(ByteView(reinterpret_cast<const std::byte*>(data), static_cast<std::size_t>(len)));
    if (!cert) {
      return std::unexpected(cert.error().with_context("certificate " + std::to_string(out.size() + 1)));
    }
    out.push_back(std::move(*cert));
  }
  if (out.empty()) return fail(Errc::invalid_input, "certificate chain: no CERTIFICATE block");
  return out;
}

Result<Certificate> Certificate::load(const std::string& path) {
  auto data = read_file(path);
  if (!data) return std::unexpected(data.error());
  auto cert = parse(*data);
  if (!cert) return std::unexpected(cert.error().with_context(path));
  return cert;
}

std::string Certificate::to_pem() const {
  return detail::pem_encode("CERTIFICATE", *der_);
}

Name Certificate::subject() const {
  return Name::copy_of(X509_get_subject_name(x509_.get()));
}
Name Certificate::issuer() const {
  return Name::copy_of(X509_get_issuer_name(x509_.get()));
}

Bytes Certificate::serial() const {
  return detail::to_bytes(X509_get0_serialNumber(x509_.get()));
}
std::string Certificate::serial_hex() const {
  return to_hex(serial());
}

Seconds Certificate::not_before() const {
  return detail::from_asn1_time(X509_get0_notBefore(x509_.get()));
}
Seconds Certificate::not_after() const {
  return detail::from_asn1_time(X509_get0_notAfter(x509_.get()));
}

crypto::PublicKey Certificate::public_key() const {
  // The key d2i_X509 already decoded, with its SPKI DER as the certificate carries it (re-encoding a
  // provider key would run OpenSSL 3.0's encoder).
  EVP_PKEY* key = X509_get_pubkey(x509_.get());
  if (key == nullptr) {
    ERR_clear_error();
    return {};
  }
  return crypto::PublicKey::adopt(key, detail::i2d_bytes(X509_get_X509_PUBKEY(x509_.get()), i2d_X509_PUBKEY));
}

Bytes Certificate::spki_der() const {
  // Encodes the algorithm and the key's bit string as parsed: no key encoder involved.
  return detail::i2d_bytes(X509_get_X509_PUBKEY(x509_.get()), i2d_X509_PUBKEY);
}

std::string Certificate::fingerprint_sha256_hex() const {
  return crypto::sha256_hex(*der_);
}

std::string Certificate::signature_algorithm() const {
  const int nid = X509_get_signature_nid(x509_.get());
  if (nid != NID_undef) return OBJ_nid2ln(nid);
  const X509_ALGOR* alg = nullptr;
  X509_get0_signature(nullptr, &alg, x509_.get());
  const ASN1_OBJECT* obj = nullptr;
  X509_ALGOR_get0(&obj, nullptr, nullptr, alg);
  return detail::oid_text(obj);
}

std::optional<BasicConstraints> Certificate::basic_constraints() const {
  return detail::basic_constraints_from(extensions_of(x509_.get()));
}

std::optional<KeyUsage> Certificate::key_usage() const {
  int crit = 0;
  detail::BitStringPtr bits(
      static_cast<ASN1_BIT_STRING*>(X509_get_ext_d2i(x509_.get(), NID_key_usage, &crit, nullptr)));
  if (!bits) {
    ERR_clear_error();
    return std::nullopt;
  }
  KeyUsage ku;
  ku.critical = crit == 1;
  for (int i = 0; i <= 8; ++i) {
    if (ASN1_BIT_STRING_get_bit(bits.get(), i) != 0) ku.bits |= static_cast<std::uint16_t>(1u << i);
  }
  return ku;
}

std::optional<ExtendedKeyUsage> Certificate::extended_key_usage() const {
  int crit = 0;
  detail::EkuPtr eku(
      static_cast<EXTENDED_KEY_USAGE*>(X509_get_ext_d2i(x509_.get(), NID_ext_key_usage, &crit, nullptr)));
  if (!eku) {
    ERR_clear_error();
    return std::nullopt;
  }
  ExtendedKeyUsage out;
  out.critical = crit == 1;
  for (int i = 0; i < sk_ASN1_OBJECT_num(eku.get()); ++i) {
    out.oids.push_back(detail::oid_text(sk_ASN1_OBJECT_value(eku.get(), i)));
  }
  return out;
}

std::optional<Bytes> Certificate::subject_key_id() const {
  crypto::Asn1OctetStringPtr ski(static_cast<ASN1_OCTET_STRING*>(
      X509_get_ext_d2i(x509_.get(), NID_subject_key_identifier, nullptr, nullptr)));
  if (!ski) {
    ERR_clear_error();
    return std::nullopt;
  }
  return detail::to_bytes(ski.get());
}

std::optional<Bytes> Certificate::authority_key_id() const {
  return detail::authority_key_id_from(extensions_of(x509_.get()));
}

std::optional<SubjectAltName> Certificate::subject_alt_name() const {
  return detail::subject_alt_name_from(extensions_of(x509_.get()));
}

std::optional<CrlDistributionPoints> Certificate::crl_distribution_points() const {
  detail::CrlDistPointsPtr dps(static_cast<CRL_DIST_POINTS*>(
      X509_get_ext_d2i(x509_.get(), NID_crl_distribution_points, nullptr, nullptr)));
  if (!dps) {
    ERR_clear_error();
    return std::nullopt;
  }
  CrlDistributionPoints out;
  for (int i = 0; i < sk_DIST_POINT_num(dps.get()); ++i) {
    const DIST_POINT* dp = sk_DIST_POINT_value(dps.get(), i);
    if (dp->distpoint == nullptr || dp->distpoint->type != 0) continue;
    const GENERAL_NAMES* names = dp->distpoint->name.fullname;
    for (int k = 0; k < sk_GENERAL_NAME_num(names); ++k) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, k);
      if (g->type == GEN_URI) out.uris.push_back(detail::asn1_string_to_utf8(g->d.uniformResourceIdentifier));
    }
  }
  return out;
}

std::optional<AuthorityInfoAccess> Certificate::authority_info_access() const {
  detail::AiaPtr aia(
      static_cast<AUTHORITY_INFO_ACCESS*>(X509_get_ext_d2i(x509_.get(), NID_info_access, nullptr, nullptr)));
  if (!aia) {
    ERR_clear_error();
    return std::nullopt;
  }
  AuthorityInfoAccess out;
  for (int i = 0; i < sk_ACCESS_DESCRIPTION_num(aia.get()); ++i) {
    const ACCESS_DESCRIPTION* ad = sk_ACCESS_DESCRIPTION_value(aia.get(), i);
    if (ad->location == nullptr || ad->location->type != GEN_URI) continue;
    auto uri = detail::asn1_string_to_utf8(ad->location->d.uniformResourceIdentifier);
    const int nid = OBJ_obj2nid(ad->method);
    if (nid == NID_ad_OCSP) {
      out.ocsp.push_back(std::move(uri));
    } else if (nid == NID_ad_ca_issuers) {
      out.ca_issuers.push_back(std::move(uri));
    }
  }
  return out;
}

std::optional<CertificatePolicies> Certificate::certificate_policies() const {
  detail::PoliciesPtr pols(static_cast<CERTIFICATEPOLICIES*>(
      X509_get_ext_d2i(x509_.get(), NID_certificate_policies, nullptr, nullptr)));
  if (!pols) {
    ERR_clear_error();
    return std::nullopt;
  }
  CertificatePolicies out;
  for (int i = 0; i < sk_POLICYINFO_num(pols.get()); ++i) {
    out.oids.push_back(detail::oid_text(sk_POLICYINFO_value(pols.get(), i)->policyid));
  }
  return out;
}

bool Certificate::has_extension(std::string_view dotted_oid) const {
  crypto::Asn1ObjectPtr obj(OBJ_txt2obj(std::string(dotted_oid).c_str(), 0));
  if (!obj) {
    ERR_clear_error();
    return false;
  }
  return X509_get_ext_by_OBJ(x509_.get(), obj.get(), -1) >= 0;
}

bool Certificate::is_ca() const {
  const auto bc = basic_constraints();
  return bc && bc->ca;
}

Status Certificate::verify_signature(const crypto::PublicKey& issuer_key) const {
  if (issuer_key.native() == nullptr)
    return fail(Errc::invalid_input, "certificate signature: no issuer key");
  if (X509_verify(x509_.get(), issuer_key.native()) != 1) {
    ERR_clear_error();
    return fail(Errc::crypto,
                "certificate signature does not verify (subject " + subject().to_string() + ")");
  }
  return {};
}

std::string Certificate::describe() const {
  std::string out;
  auto line = [&out](std::string_view key, const std::string& value) {
    out += key;
    out += ": ";
    out += value;
    out += '\n';
  };
  line("Subject", subject().to_string());
  line("Issuer", issuer().to_string());
  line("Serial", serial_hex());
  line("Not before", to_iso8601(not_before()));
  line("Not after", has_no_expiry() ? "no expiry (99991231235959Z)" : to_iso8601(not_after()));
  const auto key = public_key();
  line("Public key", key.native() != nullptr ? key.info().describe() : "(unreadable)");
  line("Signature", signature_algorithm());
  line("SHA-256", fingerprint_sha256_hex());
  if (auto bc = basic_constraints()) {
    std::string v = bc->ca ? "CA:TRUE" : "CA:FALSE";
    if (bc->path_length) v += ", pathlen:" + std::to_string(*bc->path_length);
    line(bc->critical ? "Basic constraints (critical)" : "Basic constraints", v);
  }
  if (auto ku = key_usage()) line(ku->critical ? "Key usage (critical)" : "Key usage", ku->to_string());
  if (auto eku = extended_key_usage()) line("Extended key usage", join(eku->oids, ","));
  if (auto ski = subject_key_id()) line("Subject key id", to_hex(*ski));
  if (auto aki = authority_key_id()) line("Authority key id", to_hex(*aki));
  if (auto san = subject_alt_name()) {
    std::vector<std::string> names;
    for (const auto& n : san->names) names.push_back(n.to_string());
    line(san->critical ? "Subject alt name (critical)" : "Subject alt name", join(names, ", "));
  }
  if (auto dp = crl_distribution_points()) line("CRL distribution points", join(dp->uris, ", "));
  if (auto aia = authority_info_access()) {
    if (!aia->ocsp.empty()) line("OCSP", join(aia->ocsp, ", "));
    if (!aia->ca_issuers.empty()) line("CA issuers", join(aia->ca_issuers, ", "));
  }
  if (auto pol = certificate_policies()) line("Policies", join(pol->oids, ","));
  if (has_extension(kOidOcspNoCheck)) line("OCSP no check", "yes");
  return out;
}

// ---------------------------------------------------------------------------------------------

TrustStore::TrustStore() : store_(detail::check_alloc(X509_STORE_new()), X509_STORE_free) {}

void TrustStore::add_anchor(const Certificate& anchor) {
  if (store_.use_count() > 1) {
    // Copies share the X509_STORE; give this one its own before changing it.
    std::shared_ptr<X509_STORE> fresh(detail::check_alloc(X509_STORE_new()), X509_STORE_free);
    for (const auto& a : anchors_) X509_STORE_add_cert(fresh.get(), a.native());
    store_ = std::move(fresh);
  }
  anchors_.push_back(anchor);
  if (X509_STORE_add_cert(store_.get(), anchor.native()) != 1) ERR_clear_error();  // duplicate: harmless
}

Result<std::vector<Certificate>> TrustStore::verify(const Certificate& leaf,
                                                    const std::vector<Certificate>& intermediates,
                                                    Seconds at) const {
  if (leaf.native() == nullptr) return fail(Errc::invalid_input, "verify: empty certificate");
  crypto::X509StackPtr untrusted(detail::check_alloc(sk_X509_new_null()));
  for (const auto& c : intermediates) {
    X509_up_ref(c.native());
    if (sk_X509_push(untrusted.get(), c.native()) <= 0) {
      X509_free(c.native());
      throw std::bad_alloc();
    }
  }
  crypto::X509StoreCtxPtr ctx(detail::check_alloc(X509_STORE_CTX_new()));
  if (X509_STORE_CTX_init(ctx.get(), store_.get(), leaf.native(), untrusted.get()) != 1) {
    return crypto::openssl_fail(Errc::internal, "verify: X509_STORE_CTX_init");
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(at.time_since_epoch().count()));
  if (partial_chain_) {
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
  } else {
    X509_VERIFY_PARAM_clear_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
  }
  if (X509_verify_cert(ctx.get()) != 1) {
    const int err = X509_STORE_CTX_get_error(ctx.get());
    const X509* failed = X509_STORE_CTX_get_current_cert(ctx.get());
    std::string detail = "certificate verification failed: ";
    detail += X509_verify_cert_error_string(err);
    detail += " (subject ";
    detail += failed != nullptr ? Name::copy_of(X509_get_subject_name(failed)).to_string()
                                : leaf.subject().to_string();
    detail += ")";
    ERR_clear_error();
    return fail(Errc::unauthenticated, std::move(detail));
  }
  const STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(ctx.get());
  std::vector<Certificate> out;
  out.reserve(static_cast<std::size_t>(sk_X509_num(chain)));
  auto find = [&](const X509* x) -> const Certificate* {
    if (x == leaf.native()) return &leaf;
    for (const auto& c : intermediates) {
      if (c.native() == x) return &c;
    }
    for (const auto& c : anchors_) {
      if (c.native() == x) return &c;
    }
    return nullptr;
  };
  for (int i = 0; i < sk_X509_num(chain); ++i) {
    X509* x = sk_X509_value(chain, i);
    if (const Certificate* known = find(x)) {
      out.push_back(*known);
    } else {
      X509_up_ref(x);
      out.push_back(Certificate::adopt(x, detail::i2d_bytes(x, i2d_X509)));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

Status PathCache::verify(const Certificate& leaf, const std::vector<Certificate>& intermediates, Seconds at) {
  std::string key;
  for (const auto& c : intermediates) key.append(as_chars(c.to_der()));
  if (const auto it = paths_.find(key); it != paths_.end()) {
    const Path& p = it->second;
    if (p.eligible && at >= p.valid_from && at <= p.valid_until && p.issuer.verify(leaf, {}, at)) {
      ++fast_;
      return {};
    }
  }
  const auto path = HM_TRY(roots_.verify(leaf, intermediates, at));
  if (paths_.size() >= 64) paths_.clear();
  Path& p = paths_[std::move(key)];
  p = Path{};
  p.valid_from = Seconds::min();
  p.valid_until = Seconds::max();
  p.eligible = path.size() >= 2;
  for (std::size_t i = 1; i < path.size(); ++i) {
    const X509* x = path[i].native();
    // Constraints a CA places on the names and policies of everything below it.
    for (const int nid : {NID_name_constraints, NID_policy_constraints, NID_inhibit_any_policy}) {
      if (X509_get_ext_by_NID(x, nid, -1) >= 0) p.eligible = false;
    }
    p.valid_from = std::max(p.valid_from, path[i].not_before());
    p.valid_until = std::min(p.valid_until, path[i].not_after());
  }
  if (p.eligible) {
    p.issuer.partial_chain_ = true;
    p.issuer.add_anchor(path[1]);
  }
  return {};
}

// ---------------------------------------------------------------------------------------------

Bytes make_pkcs7_certs_only(const std::vector<Certificate>& certs) {
  // ContentInfo { signedData, [0] SignedData { 1, {}, { data }, [0] certs, {} } } assembled from the
  // certificates' own DER: no re-encoding.
  static constexpr unsigned char kOidSignedData[] = {0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                                     0xf7, 0x0d, 0x01, 0x07, 0x02};
  static constexpr unsigned char kVersionAndDigests[] = {0x02, 0x01, 0x01, 0x31, 0x00};
  static constexpr unsigned char kEncapData[] = {0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48,
                                                 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01};
  static constexpr unsigned char kNoSigners[] = {0x31, 0x00};
  auto append = [](Bytes& out, ByteView b) { out.insert(out.end(), b.begin(), b.end()); };
  auto bytes = [](const auto& a) { return ByteView(reinterpret_cast<const std::byte*>(a), sizeof a); };

  std::size_t certs_len = 0;
  for (const auto& c : certs) certs_len += c.to_der().size();
  Bytes signed_data;
  signed_data.reserve(certs_len + 64);
  append(signed_data, bytes(kVersionAndDigests));
  append(signed_data, bytes(kEncapData));
  detail::der_append_header(signed_data, 0xa0, certs_len);  // [0] IMPLICIT SET OF Certificate
  for (const auto& c : certs) append(signed_data, c.to_der());
  append(signed_data, bytes(kNoSigners));

  Bytes explicit0;
  explicit0.reserve(signed_data.size() + 8);
  detail::der_append_tlv(explicit0, 0x30, signed_data);
  Bytes content;
  content.reserve(explicit0.size() + 24);
  append(content, bytes(kOidSignedData));
  detail::der_append_tlv(content, 0xa0, explicit0);
  Bytes out;
  out.reserve(content.size() + 8);
  detail::der_append_tlv(out, 0x30, content);
  return out;
}

Result<std::vector<Certificate>> parse_pkcs7_certs_only(ByteView der) {
  if (der.empty()) return fail(Errc::invalid_input, "PKCS#7: empty input");
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  crypto::Pkcs7Ptr p7(d2i_PKCS7(nullptr, &p, static_cast<long>(der.size())));
  if (!p7) return crypto::openssl_fail(Errc::invalid_input, "PKCS#7: bad DER");
  if (p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    return fail(Errc::invalid_input, "PKCS#7: trailing bytes after DER");
  }
  if (PKCS7_type_is_signed(p7.get()) == 0 || p7->d.sign == nullptr) {
    return fail(Errc::invalid_input, "PKCS#7: not SignedData");
  }
  std::vector<Certificate> out;
  const STACK_OF(X509)* certs = p7->d.sign->cert;
  for (int i = 0; i < sk_X509_num(certs); ++i) {
    X509* x = sk_X509_value(certs, i);
    auto cert = Certificate::parse_der(detail::i2d_bytes(x, i2d_X509));
    if (!cert)
      return std::unexpected(cert.error().with_context("PKCS#7 certificate " + std::to_string(i + 1)));
    out.push_back(std::move(*cert));
  }
  return out;
}

}  // namespace hallmark::x509
