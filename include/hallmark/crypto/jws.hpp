#pragma once
// JWS ES256 in flattened JSON serialization (RFC 7515 §7.2.2), as Microchip manifests use it.
// The signing input is the received "protected.payload" strings, never re-serialised JSON.
#include <nlohmann/json.hpp>
#include <string>

#include "hallmark/core/bytes.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/crypto/key.hpp"
#include "hallmark/crypto/signer.hpp"

namespace hallmark::crypto {

struct FlattenedJws {
  std::string protected_b64;        // as received
  std::string payload_b64;          // as received
  std::string signature_b64;        // as received
  nlohmann::json protected_header;  // decoded "protected"
  nlohmann::json header;            // unprotected "header" (object, possibly empty)

  [[nodiscard]] Result<Bytes> payload() const;
  [[nodiscard]] nlohmann::json to_json() const;
};

// Parses {"protected", "payload", "signature", "header"?}; checks that each part is valid base64url
// and the protected header is a JSON object.
[[nodiscard]] Result<FlattenedJws> parse_flattened_jws(const nlohmann::json& object);

// Signs `payload` with ES256 (the signer must hold a P-256 key). `protected_header` gets "alg":"ES256".
[[nodiscard]] Result<FlattenedJws> sign_es256(ByteView payload, nlohmann::json protected_header,
                                              nlohmann::json unprotected_header, const Signer& signer);

// Verifies an ES256 signature (raw r||s, 64 bytes) over "protected.payload"; "alg" must be ES256.
[[nodiscard]] Status verify_es256(const FlattenedJws& jws, const PublicKey& key);

// ECDSA signature conversions between DER ECDSA-Sig-Value and raw r||s of `width` bytes each.
[[nodiscard]] Result<Bytes> ecdsa_der_to_raw(ByteView der, std::size_t width);
[[nodiscard]] Result<Bytes> ecdsa_raw_to_der(ByteView raw);

}  // namespace hallmark::crypto
