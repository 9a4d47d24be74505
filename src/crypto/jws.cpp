#include "hallmark/crypto/jws.hpp"

#include <openssl/ecdsa.h>
#include <openssl/err.h>

#include <algorithm>
#include <climits>

#include "hallmark/crypto/digest.hpp"
#include "hallmark/crypto/handle.hpp"

namespace hallmark::crypto {

namespace {

constexpr std::size_t kEs256Width = 32;

Result<std::string> string_member(const nlohmann::json& object, const char* name) {
  const auto it = object.find(name);
  if (it == object.end()) return fail(Errc::invalid_input, std::string("JWS: missing \"") + name + "\"");
  if (!it->is_string())
    return fail(Errc::invalid_input, std::string("JWS: \"") + name + "\" must be a string");
  return it->get<std::string>();
}

Result<Bytes> decode_part(const std::string& text, const char* name) {
  auto bytes = base64url_decode(text);
  if (!bytes) return std::unexpected(bytes.error().with_context(std::string("JWS: \"") + name + "\""));
  return bytes;
}

Result<nlohmann::json> decode_protected(const std::string& protected_b64) {
  const Bytes raw = HM_TRY(decode_part(protected_b64, "protected"));
  auto header = nlohmann::json::parse(as_chars(raw), nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) return fail(Errc::invalid_input, "JWS: \"protected\" is not valid JSON");
  if (!header.is_object()) return fail(Errc::invalid_input, "JWS: \"protected\" is not a JSON object");
  return header;
}

Status check_p256(const PublicKey& key) {
  const KeyInfo info = key.info();
  if (info.algorithm != KeyInfo::Algorithm::ec || info.curve != "P-256") {
    return fail(Errc::invalid_input, "ES256 needs a P-256 key, got " + info.describe());
  }
  return {};
}

Result<std::string> dump_compact(const nlohmann::json& value, std::string_view what) {
  try {
    return value.dump();
  } catch (const nlohmann::json::exception& e) {
    return fail(Errc::invalid_input, "JWS: cannot serialise " + std::string(what) + ": " + e.what());
  }
}

}  // namespace

Result<Bytes> FlattenedJws::payload() const {
  return decode_part(payload_b64, "payload");
}

nlohmann::json FlattenedJws::to_json() const {
  nlohmann::json out = nlohmann::json::object();
  out["protected"] = protected_b64;
  out["payload"] = payload_b64;
  out["signature"] = signature_b64;
  if (header.is_object() && !header.empty()) out["header"] = header;
  return out;
}

Result<FlattenedJws> parse_flattened_jws(const nlohmann::json& object) {
  if (!object.is_object()) return fail(Errc::invalid_input, "JWS: not a JSON object");
  FlattenedJws jws;
  jws.protected_b64 = HM_TRY(string_member(object, "protected"));
  jws.payload_b64 = HM_TRY(string_member(object, "payload"));
  jws.signature_b64 = HM_TRY(string_member(object, "signature"));
  jws.protected_header = HM_TRY(decode_protected(jws.protected_b64));
  HM_TRY_VOID(decode_part(jws.payload_b64, "payload"));
  HM_TRY_VOID(decode_part(jws.signature_b64, "signature"));
  jws.header = nlohmann::json::object();
  if (const auto it = object.find("header"); it != object.end()) {
    if (!it->is_object()) return fail(Errc::invalid_input, "JWS: \"header\" must be a JSON object");
    jws.header = *it;
  }
  return jws;
}

Result<FlattenedJws> sign_es256(ByteView payload, nlohmann::json protected_header,
                                nlohmann::json unprotected_header, const Signer& signer) {
  HM_TRY_VOID(check_p256(signer.public_key()));
  if (protected_header.is_null()) protected_header = nlohmann::json::object();
  if (!protected_header.is_object()) {
    return fail(Errc::invalid_input, "JWS: protected header must be a JSON object");
  }
  if (unprotected_header.is_null()) unprotected_header = nlohmann::json::object();
  if (!unprotected_header.is_object()) {
    return fail(Errc::invalid_input, "JWS: unprotected header must be a JSON object");
  }
  protected_header["alg"] = "ES256";
  FlattenedJws jws;
  jws.protected_b64 = base64url_encode(as_bytes(HM_TRY(dump_compact(protected_header, "protected header"))));
  jws.payload_b64 = base64url_encode(payload);
  const std::string input = jws.protected_b64 + "." + jws.payload_b64;
  const Bytes der = HM_TRY(signer.sign(as_bytes(input), DigestAlgorithm::sha256));
  jws.signature_b64 = base64url_encode(HM_TRY(ecdsa_der_to_raw(der, kEs256Width)));
  jws.protected_header = std::move(protected_header);
  jws.header = std::move(unprotected_header);
  return jws;
}

Status verify_es256(const FlattenedJws& jws, const PublicKey& key) {
  // Judge the header that was signed, not a decoded copy that may have been edited since.
  const nlohmann::json header = HM_TRY(decode_protected(jws.protected_b64));
  const auto alg = header.find("alg");
  if (alg == header.end()) return fail(Errc::invalid_input, "JWS: protected header has no \"alg\"");
  if (!alg->is_string() || alg->get<std::string>() != "ES256") {
    return fail(Errc::invalid_input, "JWS: alg must be ES256, got " + alg->dump());
  }
  if (header.contains("crit")) {
    return fail(Errc::invalid_input, "JWS: critical header parameters (\"crit\") are not supported");
  }
  HM_TRY_VOID(check_p256(key));
  const Bytes raw = HM_TRY(decode_part(jws.signature_b64, "signature"));
  if (raw.size() != 2 * kEs256Width) {
    return fail(Errc::invalid_input, "ES256 signature must be 64 bytes, got " + std::to_string(raw.size()));
  }
  const Bytes der = HM_TRY(ecdsa_raw_to_der(raw));
  const std::string input = jws.protected_b64 + "." + jws.payload_b64;
  if (!verify_signature(key, as_bytes(input), der, DigestAlgorithm::sha256)) {
    return fail(Errc::invalid_input, "JWS: ES256 signature does not verify");
  }
  return {};
}

Result<Bytes> ecdsa_der_to_raw(ByteView der, std::size_t width) {
  if (width == 0 || width > 1024 || der.size() > static_cast<std::size_t>(LONG_MAX)) {
    return fail(Errc::invalid_input, "ECDSA signature: unsupported size");
  }
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig) return openssl_fail(Errc::invalid_input, "ECDSA signature: not a DER ECDSA-Sig-Value");
  // Only the DER encoding: re-encoding must give back the same bytes.
  unsigned char* again = nullptr;
  const int n = i2d_ECDSA_SIG(sig.get(), &again);
  const bool canonical = n > 0 && static_cast<std::size_t>(n) == der.size() &&
                         std::equal(again, again + n, reinterpret_cast<const unsigned char*>(der.data()));
  OPENSSL_free(again);
  if (!canonical) return fail(Errc::invalid_input, "ECDSA signature: not a DER ECDSA-Sig-Value");
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  Bytes out(2 * width);
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  if (BN_bn2binpad(r, o, static_cast<int>(width)) < 0 ||
      BN_bn2binpad(s, o + width, static_cast<int>(width)) < 0) {
    ERR_clear_error();
    return fail(Errc::invalid_input,
                "ECDSA signature: r or s longer than " + std::to_string(width) + " bytes");
  }
  return out;
}

Result<Bytes> ecdsa_raw_to_der(ByteView raw) {
  if (raw.empty() || raw.size() % 2 != 0 || raw.size() > 2048) {
    return fail(Errc::invalid_input, "ECDSA signature: raw r||s must have an even, non-zero length, got " +
                                         std::to_string(raw.size()));
  }
  const std::size_t width = raw.size() / 2;
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  BnPtr r(BN_bin2bn(p, static_cast<int>(width), nullptr));
  BnPtr s(BN_bin2bn(p + width, static_cast<int>(width), nullptr));
  EcdsaSigPtr sig(ECDSA_SIG_new());
  if (!r || !s || !sig || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) {
    return openssl_fail(Errc::internal, "ECDSA signature: cannot convert");
  }
  r.release();  // owned by sig now
  s.release();
  unsigned char* der = nullptr;
  const int n = i2d_ECDSA_SIG(sig.get(), &der);
  if (n <= 0) return openssl_fail(Errc::internal, "ECDSA signature: cannot encode");
  Bytes out(reinterpret_cast<std::byte*>(der), reinterpret_cast<std::byte*>(der) + n);
  OPENSSL_free(der);
  return out;
}

}  // namespace hallmark::crypto
