#include "der_walk.hpp"

#include <cstdint>

namespace hallmark::inventory::detail {

namespace {

struct Tlv {
  std::uint8_t tag = 0;
  ByteView whole;  // tag, length and content
  ByteView content;
};

// Reads one TLV (single-byte tags, definite lengths up to 4 length bytes) at the start of `in`.
std::optional<Tlv> read_tlv(ByteView in) {
  if (in.size() < 2) return std::nullopt;
  Tlv t;
  t.tag = static_cast<std::uint8_t>(in[0]);
  if ((t.tag & 0x1f) == 0x1f) return std::nullopt;
  std::size_t pos = 1;
  std::size_t len = static_cast<std::uint8_t>(in[pos++]);
  if (len & 0x80) {
    const std::size_t n = len & 0x7f;
    if (n == 0 || n > 4 || in.size() < pos + n) return std::nullopt;
    len = 0;
    for (std::size_t i = 0; i < n; ++i) len = (len << 8) | static_cast<std::uint8_t>(in[pos++]);
  }
  if (in.size() - pos < len) return std::nullopt;
  t.whole = in.first(pos + len);
  t.content = in.subspan(pos, len);
  return t;
}

}  // namespace

std::optional<ByteView> certificate_spki(ByteView der) {
  // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
  //   signature, issuer, validity, subject, subjectPublicKeyInfo, ... }, ... }
  const auto cert = read_tlv(der);
  if (!cert || cert->tag != 0x30) return std::nullopt;
  const auto tbs = read_tlv(cert->content);
  if (!tbs || tbs->tag != 0x30) return std::nullopt;
  ByteView rest = tbs->content;
  auto next = [&rest]() -> std::optional<Tlv> {
    auto t = read_tlv(rest);
    if (t) rest = rest.subspan(t->whole.size());
    return t;
  };
  auto field = next();
  if (field && field->tag == 0xa0) field = next();  // version
  // serialNumber, signature, issuer, validity, subject
  static constexpr std::uint8_t kExpected[] = {0x02, 0x30, 0x30, 0x30, 0x30};
  for (std::uint8_t tag : kExpected) {
    if (!field || field->tag != tag) return std::nullopt;
    field = next();
  }
  if (!field || field->tag != 0x30) return std::nullopt;
  return field->whole;
}

}  // namespace hallmark::inventory::detail
