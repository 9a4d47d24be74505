// Hand-rolled DER for one trivial fixed structure, CsrAttrs as a SEQUENCE OF OBJECT IDENTIFIER,
// because the x509 component offers no encoder yet (requested: x509::make_csr_attrs). Keep it this
// small; anything richer belongs in x509 over OpenSSL.
#include <fmt/format.h>
#include <charconv>
#include <cstdint>

#include "hallmark/est/server.hpp"

namespace hallmark::est {

namespace {

void append_length(Bytes& out, std::size_t n) {
  if (n < 0x80) {
    out.push_back(static_cast<std::byte>(n));
    return;
  }
  Bytes digits;
  for (; n > 0; n >>= 8) digits.insert(digits.begin(), static_cast<std::byte>(n & 0xff));
  out.push_back(static_cast<std::byte>(0x80 | digits.size()));
  out.insert(out.end(), digits.begin(), digits.end());
}

void append_base128(Bytes& out, std::uint64_t v) {
  Bytes groups{static_cast<std::byte>(v & 0x7f)};
  for (v >>= 7; v > 0; v >>= 7) groups.insert(groups.begin(), static_cast<std::byte>(0x80 | (v & 0x7f)));
  out.insert(out.end(), groups.begin(), groups.end());
}

Result<Bytes> encode_oid(std::string_view dotted) {
  std::vector<std::uint64_t> arcs;
  std::size_t pos = 0;
  while (pos <= dotted.size()) {
    const auto dot = dotted.find('.', pos);
    const auto part = dotted.substr(pos, dot == std::string_view::npos ? std::string_view::npos : dot - pos);
    std::uint64_t arc = 0;
    const auto [p, ec] = std::from_chars(part.data(), part.data() + part.size(), arc);
    if (part.empty() || ec != std::errc() || p != part.data() + part.size() ||
        arc > (std::uint64_t{1} << 56)) {
      return fail(Errc::invalid_input, fmt::format("'{}' is not a dotted OID", dotted));
    }
    arcs.push_back(arc);
    if (dot == std::string_view::npos) break;
    pos = dot + 1;
  }
  if (arcs.size() < 2 || arcs[0] > 2 || (arcs[0] < 2 && arcs[1] > 39)) {
    return fail(Errc::invalid_input, fmt::format("'{}' is not a dotted OID", dotted));
  }
  Bytes content;
  append_base128(content, arcs[0] * 40 + arcs[1]);
  for (std::size_t i = 2; i < arcs.size(); ++i) append_base128(content, arcs[i]);
  Bytes out{std::byte{0x06}};
  append_length(out, content.size());
  out.insert(out.end(), content.begin(), content.end());
  return out;
}

}  // namespace

Result<Bytes> make_csr_attrs_der(const std::vector<std::string>& oids) {
  Bytes content;
  for (const auto& oid : oids) {
    const auto encoded = HM_TRY(encode_oid(oid));
    content.insert(content.end(), encoded.begin(), encoded.end());
  }
  Bytes out{std::byte{0x30}};
  append_length(out, content.size());
  out.insert(out.end(), content.begin(), content.end());
  return out;
}

}  // namespace hallmark::est
