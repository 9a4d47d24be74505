#include "hallmark/x509/crl.hpp"

#include <openssl/err.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <numeric>

#include "internal.hpp"

namespace hallmark::x509 {
namespace {

using detail::check_alloc;

constexpr std::array<std::pair<RevocationReason, std::string_view>, 10> kReasons{{
    {RevocationReason::unspecified, "unspecified"},
    {RevocationReason::key_compromise, "keyCompromise"},
    {RevocationReason::ca_compromise, "cACompromise"},
    {RevocationReason::affiliation_changed, "affiliationChanged"},
    {RevocationReason::superseded, "superseded"},
    {RevocationReason::cessation_of_operation, "cessationOfOperation"},
    {RevocationReason::certificate_hold, "certificateHold"},
    {RevocationReason::remove_from_crl, "removeFromCRL"},
    {RevocationReason::privilege_withdrawn, "privilegeWithdrawn"},
    {RevocationReason::aa_compromise, "aACompromise"},
}};

// Lowercase without '-', '_' and spaces: "key-compromise", "KEY_COMPROMISE" and "keyCompromise" meet.
std::string fold(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (c == '-' || c == '_' || c == ' ') continue;
    out += static_cast<char>(std::tolower(c));
  }
  return out;
}

bool valid_reason(long v) {
  return v >= 0 && v <= 10 && v != 7;
}

}  // namespace

Result<RevocationReason> parse_revocation_reason(std::string_view name) {
  const auto folded = fold(name);
  for (const auto& [reason, text] : kReasons) {
    if (folded == fold(text)) return reason;
  }
  return fail(Errc::invalid_input, "unknown revocation reason: " + std::string(name));
}

std::string_view to_string(RevocationReason reason) noexcept {
  for (const auto& [r, text] : kReasons) {
    if (r == reason) return text;
  }
  return "unknown";
}

struct Crl::Parsed {
  std::once_flag once;
  std::shared_ptr<X509_CRL> crl;
};

Crl Crl::adopt(X509_CRL* crl, Bytes der) {
  Crl out;
  out.parsed_ = std::make_shared<Parsed>();
  out.parsed_->crl = std::shared_ptr<X509_CRL>(crl, X509_CRL_free);
  std::call_once(out.parsed_->once, [] {});
  out.der_ = std::make_shared<const Bytes>(std::move(der));
  return out;
}

X509_CRL* Crl::native() const noexcept {
  if (!parsed_) return nullptr;
  std::call_once(parsed_->once, [this] {
    const auto* p = reinterpret_cast<const unsigned char*>(der_->data());
    X509_CRL* crl = d2i_X509_CRL(nullptr, &p, static_cast<long>(der_->size()));
    if (crl == nullptr) {
      // Only DER we produced ourselves gets here: failing to read it back is a bug.
      std::fprintf(stderr, "hallmark: x509: a CRL made by make_crl does not decode\n");
      std::abort();
    }
    parsed_->crl = std::shared_ptr<X509_CRL>(crl, X509_CRL_free);
  });
  return parsed_->crl.get();
}

Result<Crl> Crl::parse_der(ByteView der) {
  if (der.empty()) return fail(Errc::invalid_input, "CRL: empty input");
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  X509_CRL* raw = d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size()));
  if (raw == nullptr) return crypto::openssl_fail(Errc::invalid_input, "CRL: bad DER");
  crypto::X509CrlPtr crl(raw);
  if (p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    return fail(Errc::invalid_input, "CRL: trailing bytes after DER");
  }
  return adopt(crl.release(), Bytes(der.begin(), der.end()));
}

Result<Crl> Crl::parse_pem(std::string_view pem) {
  auto der = detail::pem_decode(pem, {"X509 CRL"});
  if (!der) return std::unexpected(der.error().with_context("CRL"));
  return parse_der(*der);
}

std::string Crl::to_pem() const {
  return detail::pem_encode("X509 CRL", *der_);
}

Name Crl::issuer() const {
  return Name::copy_of(X509_CRL_get_issuer(native()));
}

std::optional<std::uint64_t> Crl::crl_number() const {
  crypto::Asn1IntegerPtr n(
      static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(native(), NID_crl_number, nullptr, nullptr)));
  std::uint64_t v = 0;
  if (!n || ASN1_INTEGER_get_uint64(&v, n.get()) != 1) {
    ERR_clear_error();
    return std::nullopt;
  }
  return v;
}

Seconds Crl::this_update() const {
  return detail::from_asn1_time(X509_CRL_get0_lastUpdate(native()));
}

std::optional<Seconds> Crl::next_update() const {
  const ASN1_TIME* t = X509_CRL_get0_nextUpdate(native());
  if (t == nullptr) return std::nullopt;
  return detail::from_asn1_time(t);
}

std::optional<Bytes> Crl::authority_key_id() const {
  return detail::authority_key_id_from(X509_CRL_get0_extensions(native()));
}

std::vector<CrlEntry> Crl::entries() const {
  std::vector<CrlEntry> out;
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(native());
  const int n = sk_X509_REVOKED_num(revoked);
  if (n <= 0) return out;
  out.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    const X509_REVOKED* r = sk_X509_REVOKED_value(revoked, i);
    CrlEntry e;
    e.serial = detail::to_bytes(X509_REVOKED_get0_serialNumber(r));
    e.revocation_time = detail::from_asn1_time(X509_REVOKED_get0_revocationDate(r));
    detail::Asn1EnumeratedPtr reason(
        static_cast<ASN1_ENUMERATED*>(X509_REVOKED_get_ext_d2i(r, NID_crl_reason, nullptr, nullptr)));
    if (reason) {
      const long v = ASN1_ENUMERATED_get(reason.get());
      if (valid_reason(v)) e.reason = static_cast<RevocationReason>(v);
    } else {
      ERR_clear_error();
    }
    out.push_back(std::move(e));
  }
  return out;
}

Status Crl::verify_signature(const crypto::PublicKey& issuer_key) const {
  if (issuer_key.native() == nullptr) return fail(Errc::invalid_input, "CRL signature: no issuer key");
  if (X509_CRL_verify(native(), issuer_key.native()) != 1) {
    ERR_clear_error();
    return fail(Errc::crypto, "CRL signature does not verify");
  }
  return {};
}

namespace {

// A time as DER (UTCTime 1950-2049, GeneralizedTime otherwise), digits written directly: this runs
// once per entry of CRLs with millions of them.
bool append_time(Bytes& out, Seconds t) {
  using namespace std::chrono;
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss hms{t - day};
  const int y = static_cast<int>(ymd.year());
  if (y < 0 || y > 9999) return false;
  const bool utc = y >= 1950 && y < 2050;
  auto two = [&out](unsigned v) {
    out.push_back(static_cast<std::byte>('0' + v / 10));
    out.push_back(static_cast<std::byte>('0' + v % 10));
  };
  out.push_back(static_cast<std::byte>(utc ? V_ASN1_UTCTIME : V_ASN1_GENERALIZEDTIME));
  out.push_back(static_cast<std::byte>(utc ? 13 : 15));
  if (!utc) two(static_cast<unsigned>(y / 100));
  two(static_cast<unsigned>(y % 100));
  two(static_cast<unsigned>(ymd.month()));
  two(static_cast<unsigned>(ymd.day()));
  two(static_cast<unsigned>(hms.hours().count()));
  two(static_cast<unsigned>(hms.minutes().count()));
  two(static_cast<unsigned>(hms.seconds().count()));
  out.push_back(std::byte{'Z'});
  return true;
}

// The DER length of append_time's output for `t` (0: out of range).
std::size_t time_der_size(Seconds t) {
  const int y =
      static_cast<int>(std::chrono::year_month_day{std::chrono::floor<std::chrono::days>(t)}.year());
  if (y < 0 || y > 9999) return 0;
  return y >= 1950 && y < 2050 ? 15 : 17;
}

// The size of a DER header (tag and length octets) for content of `length` bytes.
std::size_t der_header_size(std::size_t length) {
  if (length < 0x80) return 2;
  std::size_t n = 2;  // the tag and the octet counting the length octets that follow
  for (std::size_t l = length; l != 0; l >>= 8) ++n;
  return n;
}

ByteView magnitude(const Bytes& serial) {
  ByteView v(serial);
  while (!v.empty() && v[0] == std::byte{0}) v = v.subspan(1);
  return v;
}

void append_integer(Bytes& out, ByteView magnitude) {
  const bool pad = (std::to_integer<unsigned>(magnitude[0]) & 0x80) != 0;
  detail::der_append_header(out, V_ASN1_INTEGER, magnitude.size() + (pad ? 1 : 0));
  if (pad) out.push_back(std::byte{0});
  out.insert(out.end(), magnitude.begin(), magnitude.end());
}

template <class T, class F>
Bytes encode(const T* obj, F i2d) {
  return detail::i2d_bytes(obj, i2d);
}

}  // namespace

Result<Crl> make_crl(const CrlTemplate& tmpl, const Certificate& issuer, const crypto::Signer& signer) {
  EVP_PKEY* key = signer.native_private_key();
  if (key == nullptr || issuer.native() == nullptr)
    return fail(Errc::invalid_input, "CRL: no signer or issuer");
  const EVP_PKEY* issuer_key = X509_get0_pubkey(issuer.native());
  if (issuer_key == nullptr || EVP_PKEY_eq(issuer_key, signer.public_key().native()) != 1) {
    ERR_clear_error();
    return fail(Errc::invalid_input, "CRL: signer key does not match the issuer certificate");
  }
  if (tmpl.next_update < tmpl.this_update)
    return fail(Errc::invalid_input, "CRL: nextUpdate before thisUpdate");

  // The revoked entries are DER-encoded directly and sorted once by serial (as X509_CRL_sort would):
  // OpenSSL's template encoder costs microseconds per entry, twice (sign, then i2d).
  std::vector<std::uint32_t> order(tmpl.entries.size());
  std::iota(order.begin(), order.end(), 0u);
  std::vector<ByteView> serials;
  serials.reserve(tmpl.entries.size());
  for (const auto& e : tmpl.entries) {
    serials.push_back(magnitude(e.serial));
    if (serials.back().empty()) return fail(Errc::invalid_input, "CRL: zero or empty serial");
    if (serials.back().size() > 126) return fail(Errc::invalid_input, "CRL: serial too long");
    if (e.reason && !valid_reason(static_cast<long>(*e.reason))) {
      return fail(Errc::invalid_input, "CRL: invalid reason code");
    }
  }
  const auto serial_less = [&](std::uint32_t a, std::uint32_t b) {
    const auto x = serials[a];
    const auto y = serials[b];
    if (x.size() != y.size()) return x.size() < y.size();
    return std::memcmp(x.data(), y.data(), x.size()) < 0;
  };
  // Entries often come sorted already (revocation::generate_crl orders them itself, on compact
  // keys): one pass to check costs far less than sorting a million again.
  if (!std::is_sorted(order.begin(), order.end(), serial_less))
    std::sort(order.begin(), order.end(), serial_less);
  static constexpr unsigned char kReasonPrefix[] = {0x30, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55,
                                                    0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01};
  // Sizes first, so that the CRL is written once into one buffer: a million entries make ~46 MB,
  // and copying that through intermediate buffers cost more than encoding it.
  std::size_t revoked_size = 0;
  for (std::size_t i = 0; i < tmpl.entries.size(); ++i) {
    const auto& e = tmpl.entries[i];
    const std::size_t time_size = time_der_size(e.revocation_time);
    if (time_size == 0) return fail(Errc::invalid_input, "CRL: revocation date out of range");
    const bool pad = (std::to_integer<unsigned>(serials[i][0]) & 0x80) != 0;
    const std::size_t content =
        2 + serials[i].size() + (pad ? 1 : 0) + time_size + (e.reason ? sizeof kReasonPrefix + 1 : 0);
    revoked_size += der_header_size(content) + content;
  }

  // Everything but the entries comes from an OpenSSL-built, entry-less CRL signed once, which also
  // yields the signature AlgorithmIdentifier for this key and digest.
  const EVP_MD* md = detail::signing_digest(key);
  crypto::X509CrlPtr skeleton(check_alloc(X509_CRL_new()));
  auto this_update = detail::make_asn1_time(tmpl.this_update);
  auto next_update = detail::make_asn1_time(tmpl.next_update);
  if (X509_CRL_set_version(skeleton.get(), X509_CRL_VERSION_2) != 1 ||
      X509_CRL_set_issuer_name(skeleton.get(), X509_get_subject_name(issuer.native())) != 1 ||
      X509_CRL_set1_lastUpdate(skeleton.get(), this_update.get()) != 1 ||
      X509_CRL_set1_nextUpdate(skeleton.get(), next_update.get()) != 1) {
    return crypto::openssl_fail(Errc::internal, "CRL: building");
  }
  crypto::Asn1IntegerPtr number(check_alloc(ASN1_INTEGER_new()));
  if (ASN1_INTEGER_set_uint64(number.get(), tmpl.crl_number) != 1 ||
      X509_CRL_add1_ext_i2d(skeleton.get(), NID_crl_number, number.get(), 0, X509V3_ADD_APPEND) != 1) {
    return crypto::openssl_fail(Errc::internal, "CRL: crlNumber");
  }
  if (const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(issuer.native())) {
    detail::AuthorityKeyIdPtr akid(check_alloc(AUTHORITY_KEYID_new()));
    akid->keyid = check_alloc(ASN1_OCTET_STRING_dup(ski));
    if (X509_CRL_add1_ext_i2d(skeleton.get(), NID_authority_key_identifier, akid.get(), 0,
                              X509V3_ADD_APPEND) != 1) {
      return crypto::openssl_fail(Errc::internal, "CRL: authorityKeyIdentifier");
    }
  }
  if (tmpl.entries.empty()) {
    if (X509_CRL_sign(skeleton.get(), key, md) <= 0)
      return crypto::openssl_fail(Errc::crypto, "CRL: signing");
    auto der = detail::i2d_bytes(skeleton.get(), i2d_X509_CRL);
    if (der.empty()) return crypto::openssl_fail(Errc::internal, "CRL: encoding");
    return Crl::adopt(skeleton.release(), std::move(der));
  }
  if (X509_CRL_sign(skeleton.get(), key, md) <= 0) return crypto::openssl_fail(Errc::crypto, "CRL: signing");
  const X509_ALGOR* alg = nullptr;
  X509_CRL_get0_signature(skeleton.get(), nullptr, &alg);
  const Bytes alg_der = encode(alg, i2d_X509_ALGOR);
  const Bytes issuer_der = encode(X509_CRL_get_issuer(skeleton.get()), i2d_X509_NAME);
  const Bytes exts_der = encode(X509_CRL_get0_extensions(skeleton.get()), i2d_X509_EXTENSIONS);

  static constexpr std::byte kVersion2[] = {std::byte{0x02}, std::byte{0x01}, std::byte{0x01}};
  const std::size_t this_size = time_der_size(tmpl.this_update);
  const std::size_t next_size = time_der_size(tmpl.next_update);
  if (this_size == 0 || next_size == 0) {
    return fail(Errc::invalid_input, "CRL: thisUpdate or nextUpdate out of range");
  }
  const std::size_t body_size = sizeof kVersion2 + alg_der.size() + issuer_der.size() + this_size +
                                next_size + der_header_size(revoked_size) + revoked_size +
                                der_header_size(exts_der.size()) + exts_der.size();
  const std::size_t tbs_size = der_header_size(body_size) + body_size;
  // The outer SEQUENCE header's size depends on the signature's: room for the largest one is kept
  // in front of the tbsCertList and what is not needed is dropped at the end.
  constexpr std::size_t kOuterRoom = 2 + sizeof(std::size_t);
  Bytes der;
  der.reserve(kOuterRoom + tbs_size + alg_der.size() + 1024);
  der.resize(kOuterRoom);
  detail::der_append_header(der, V_ASN1_SEQUENCE | V_ASN1_CONSTRUCTED, body_size);
  der.insert(der.end(), std::begin(kVersion2), std::end(kVersion2));
  der.insert(der.end(), alg_der.begin(), alg_der.end());
  der.insert(der.end(), issuer_der.begin(), issuer_der.end());
  (void)append_time(der, tmpl.this_update);
  (void)append_time(der, tmpl.next_update);
  detail::der_append_header(der, V_ASN1_SEQUENCE | V_ASN1_CONSTRUCTED, revoked_size);
  for (const auto i : order) {
    const auto& e = tmpl.entries[i];
    const bool pad = (std::to_integer<unsigned>(serials[i][0]) & 0x80) != 0;
    const std::size_t content = 2 + serials[i].size() + (pad ? 1 : 0) + time_der_size(e.revocation_time) +
                                (e.reason ? sizeof kReasonPrefix + 1 : 0);
    detail::der_append_header(der, V_ASN1_SEQUENCE | V_ASN1_CONSTRUCTED, content);
    append_integer(der, serials[i]);
    (void)append_time(der, e.revocation_time);
    if (e.reason) {
      der.insert(der.end(), reinterpret_cast<const std::byte*>(kReasonPrefix),
                 reinterpret_cast<const std::byte*>(kReasonPrefix) + sizeof kReasonPrefix);
      der.push_back(static_cast<std::byte>(*e.reason));
    }
  }
  detail::der_append_tlv(der, 0xa0, exts_der);
  if (der.size() != kOuterRoom + tbs_size) return fail(Errc::internal, "CRL: encoded size mismatch");

  crypto::EvpMdCtxPtr ctx(check_alloc(EVP_MD_CTX_new()));
  std::size_t sig_len = 0;
  const auto* tbs_data = reinterpret_cast<const unsigned char*>(der.data()) + kOuterRoom;
  if (EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &sig_len, tbs_data, tbs_size) != 1) {
    return crypto::openssl_fail(Errc::crypto, "CRL: signing");
  }
  Bytes sig(sig_len + 1);  // BIT STRING: a leading "0 unused bits" octet
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()) + 1, &sig_len, tbs_data,
                     tbs_size) != 1) {
    return crypto::openssl_fail(Errc::crypto, "CRL: signing");
  }
  sig.resize(sig_len + 1);
  der.insert(der.end(), alg_der.begin(), alg_der.end());
  detail::der_append_tlv(der, V_ASN1_BIT_STRING, sig);

  // The outer header, written just before the tbsCertList; the unused room in front goes.
  const std::size_t content_size = der.size() - kOuterRoom;
  Bytes header;
  detail::der_append_header(header, V_ASN1_SEQUENCE | V_ASN1_CONSTRUCTED, content_size);
  const std::size_t start = kOuterRoom - header.size();
  std::copy(header.begin(), header.end(), der.begin() + static_cast<std::ptrdiff_t>(start));
  der.erase(der.begin(), der.begin() + static_cast<std::ptrdiff_t>(start));

  Crl out;
  out.parsed_ = std::make_shared<Crl::Parsed>();
  out.der_ = std::make_shared<const Bytes>(std::move(der));
  return out;
}

}  // namespace hallmark::x509
