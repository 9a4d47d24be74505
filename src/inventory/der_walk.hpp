#pragma once
// A minimal DER walk to find a certificate's SubjectPublicKeyInfo bytes without decoding the key:
// OpenSSL 3.0's key decoders cost more than the ECDSA verification of an entry, and the UKID is
// defined over exactly these bytes.
#include <optional>

#include "hallmark/core/bytes.hpp"

namespace hallmark::inventory::detail {

// The DER SubjectPublicKeyInfo (tag and length included) inside an X.509 certificate's DER, or
// nullopt when the structure is not the expected one.
[[nodiscard]] std::optional<ByteView> certificate_spki(ByteView certificate_der);

}  // namespace hallmark::inventory::detail
