#include "internal.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <chrono>
#include <ctime>

namespace hallmark::x509::detail {

std::string asn1_string_to_utf8(const ASN1_STRING* s) {
  if (s == nullptr) return {};
  unsigned char* out = nullptr;
  const int n = ASN1_STRING_to_UTF8(&out, s);
  if (n < 0) {
    ERR_clear_error();
    return std::string(as_chars(view(s)));
  }
  OpensslBytesPtr owned(out);
  return std::string(reinterpret_cast<const char*>(out), static_cast<std::size_t>(n));
}

std::string oid_text(const ASN1_OBJECT* obj) {
  if (obj == nullptr) return {};
  char buf[128];
  const int n = OBJ_obj2txt(buf, sizeof buf, obj, 1);
  if (n < 0) return {};
  if (static_cast<std::size_t>(n) < sizeof buf) return std::string(buf, static_cast<std::size_t>(n));
  std::string big(static_cast<std::size_t>(n) + 1, '\0');
  OBJ_obj2txt(big.data(), n + 1, obj, 1);
  big.resize(static_cast<std::size_t>(n));
  return big;
}

std::string oid_short_name(const ASN1_OBJECT* obj) {
  const int nid = OBJ_obj2nid(obj);
  if (nid != NID_undef) {
    if (const char* sn = OBJ_nid2sn(nid); sn != nullptr) return sn;
  }
  return oid_text(obj);
}

Seconds from_asn1_time(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    ERR_clear_error();
    return Seconds{};
  }
  using namespace std::chrono;
  const sys_days day{year{tm.tm_year + 1900} / month{static_cast<unsigned>(tm.tm_mon + 1)} /
                     static_cast<unsigned>(tm.tm_mday)};
  return Seconds{day} + hours{tm.tm_hour} + minutes{tm.tm_min} + seconds{tm.tm_sec};
}

bool set_asn1_time(ASN1_TIME* target, Seconds t) {
  return ASN1_TIME_set(target, static_cast<time_t>(t.time_since_epoch().count())) != nullptr;
}

Asn1TimePtr make_asn1_time(Seconds t) {
  return Asn1TimePtr(check_alloc(ASN1_TIME_set(nullptr, static_cast<time_t>(t.time_since_epoch().count()))));
}

std::string pem_encode(std::string_view label, ByteView der) {
  std::string out;
  out.reserve(der.size() * 4 / 3 + der.size() / 48 + 2 * label.size() + 40);
  out += "-----BEGIN ";
  out += label;
  out += "-----\n";
  unsigned char line[65];
  for (std::size_t off = 0; off < der.size(); off += 48) {
    const std::size_t n = std::min<std::size_t>(48, der.size() - off);
    const int len =
        EVP_EncodeBlock(line, reinterpret_cast<const unsigned char*>(der.data()) + off, static_cast<int>(n));
    out.append(reinterpret_cast<const char*>(line), static_cast<std::size_t>(len));
    out += '\n';
  }
  out += "-----END ";
  out += label;
  out += "-----\n";
  return out;
}

Result<Bytes> pem_decode(std::string_view text, std::initializer_list<std::string_view> labels) {
  auto bio = crypto::make_read_bio(text.data(), text.size());
  if (!bio) return crypto::openssl_fail(Errc::internal, "PEM");
  std::string wanted;
  for (auto l : labels) {
    if (!wanted.empty()) wanted += " or ";
    wanted += l;
  }
  for (;;) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long len = 0;
    if (PEM_read_bio(bio.get(), &name, &header, &data, &len) != 1) {
      ERR_clear_error();
      return fail(Errc::invalid_input, "PEM: no " + wanted + " block");
    }
    OpensslBytesPtr n(reinterpret_cast<unsigned char*>(name));
    OpensslBytesPtr h(reinterpret_cast<unsigned char*>(header));
    OpensslBytesPtr d(data);
    for (auto l : labels) {
      if (l == name) {
        const auto* b = reinterpret_cast<const std::byte*>(data);
        return Bytes(b, b + len);
      }
    }
  }
}

bool looks_like_pem(ByteView data) {
  // DER always starts with a SEQUENCE tag; PEM with text (possibly leading explanations).
  return !data.empty() && data[0] != std::byte{0x30};
}

const EVP_MD* signing_digest(EVP_PKEY* key) {
  // Builds the KeyInfo default_digest needs from cheap queries (no parameter fetches on the hot path).
  crypto::KeyInfo info{};
  const int bits = EVP_PKEY_get_bits(key);
  info.bits = bits;
  if (EVP_PKEY_is_a(key, "ED25519")) {
    info.algorithm = crypto::KeyInfo::Algorithm::ed25519;
  } else if (EVP_PKEY_is_a(key, "EC")) {
    info.algorithm = crypto::KeyInfo::Algorithm::ec;
    info.curve = bits <= 256 ? "P-256" : bits <= 384 ? "P-384" : "P-521";
  } else if (EVP_PKEY_is_a(key, "RSA") || EVP_PKEY_is_a(key, "RSA-PSS")) {
    info.algorithm = crypto::KeyInfo::Algorithm::rsa;
  } else {
    info.algorithm = crypto::KeyInfo::Algorithm::other;
  }
  return md_for(crypto::default_digest(info));
}

const EVP_MD* md_for(crypto::DigestAlgorithm digest) {
  switch (digest) {
    case crypto::DigestAlgorithm::sha256: return EVP_sha256();
    case crypto::DigestAlgorithm::sha384: return EVP_sha384();
    case crypto::DigestAlgorithm::sha512: return EVP_sha512();
    case crypto::DigestAlgorithm::none: return nullptr;
  }
  return EVP_sha256();
}

void der_append_header(Bytes& out, unsigned char tag, std::size_t length) {
  out.push_back(std::byte{tag});
  if (length < 0x80) {
    out.push_back(static_cast<std::byte>(length));
    return;
  }
  unsigned char buf[sizeof(std::size_t)];
  int n = 0;
  for (std::size_t l = length; l != 0; l >>= 8) buf[n++] = static_cast<unsigned char>(l & 0xff);
  out.push_back(static_cast<std::byte>(0x80 | n));
  while (n > 0) out.push_back(std::byte{buf[--n]});
}

void der_append_tlv(Bytes& out, unsigned char tag, ByteView content) {
  der_append_header(out, tag, content.size());
  out.insert(out.end(), content.begin(), content.end());
}

}  // namespace hallmark::x509::detail
