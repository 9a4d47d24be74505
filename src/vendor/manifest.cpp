#include "manifest.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>

#include "hallmark/crypto/digest.hpp"
#include "hallmark/crypto/jws.hpp"

namespace hallmark::vendor {

namespace {

std::string json_string(std::string_view s) {
  return nlohmann::json(std::string(s)).dump();
}

std::string org_object(std::string_view org, std::string_view unit) {
  return "{\"organizationName\":" + json_string(org) + ",\"organizationalUnitName\":" + json_string(unit) +
         "}";
}

// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING { 0x00, 0x04 ... } }: a P-256
// SubjectPublicKeyInfo with an uncompressed point always starts with these 27 bytes.
constexpr std::array<unsigned char, 27> kP256SpkiPrefix = {
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
    0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04};

}  // namespace

Result<SignerIds> signer_ids(const x509::Certificate& signer) {
  const auto ski = signer.subject_key_id();
  if (!ski || ski->empty()) {
    return fail(Errc::invalid_input, "manifest signer " + signer.subject().to_string() +
                                         " has no SubjectKeyIdentifier (the JWS kid)");
  }
  return SignerIds{crypto::base64url_encode(*ski), crypto::base64url_encode(crypto::sha256(signer.to_der()))};
}

Result<P256Point> p256_point_of(ByteView der) {
  const auto* begin = reinterpret_cast<const unsigned char*>(der.data());
  const auto* end = begin + der.size();
  const auto* at = std::search(begin, end, kP256SpkiPrefix.begin(), kP256SpkiPrefix.end());
  if (at == end || end - at < static_cast<std::ptrdiff_t>(kP256SpkiPrefix.size() + 64)) {
    return fail(Errc::invalid_input, "certificate key is not an uncompressed EC P-256 point");
  }
  const auto* x = reinterpret_cast<const std::byte*>(at + kP256SpkiPrefix.size());
  return P256Point{Bytes(x, x + 32), Bytes(x + 32, x + 64)};
}

std::string manifest_timestamp(Seconds t) {
  std::string s = to_iso8601(t);  // "...:SSZ"
  if (!s.empty() && s.back() == 'Z') s.insert(s.size() - 1, ".000");
  return s;
}

Result<EntryEncoder> EntryEncoder::make(const ReelFields& f, const x509::Certificate& signer_cert,
                                        std::shared_ptr<const crypto::Signer> signer,
                                        const std::vector<x509::Certificate>& ca_chain) {
  const auto info = signer->public_key().info();
  if (info.algorithm != crypto::KeyInfo::Algorithm::ec || info.curve != "P-256") {
    return fail(Errc::invalid_input, "the manifest signer needs a P-256 key (ES256), got " + info.describe());
  }
  if (!(signer_cert.public_key() == signer->public_key())) {
    return fail(Errc::invalid_input, "the manifest signer key does not match its certificate");
  }
  EntryEncoder e;
  e.signer_ = std::move(signer);
  e.ids_ = HM_TRY(signer_ids(signer_cert));
  // nlohmann::json objects keep their keys sorted: Microchip's current tooling does the same.
  const nlohmann::json header = {{"alg", "ES256"}, {"kid", e.ids_.kid}, {"x5t#S256", e.ids_.x5t_s256}};
  e.protected_b64_ = crypto::base64url_encode(as_bytes(header.dump()));
  e.payload_head_ = "{\"version\":1,\"model\":" + json_string(f.model) +
                    ",\"partNumber\":" + json_string(f.part_number) +
                    ",\"manufacturer\":" + org_object(f.manufacturer_org, f.manufacturer_unit) +
                    ",\"provisioner\":" + org_object(f.provisioner_org, f.provisioner_unit) +
                    ",\"distributor\":" + org_object(f.distributor_org, f.distributor_unit) +
                    ",\"groupId\":" + json_string(f.group_id) + ",\"provisioningTimestamp\":\"";
  for (const auto& c : ca_chain) e.x5c_tail_ += ",\"" + crypto::base64_encode(c.to_der()) + "\"";
  e.x5c_tail_ += "]}]}";
  e.hallmark_tail_ =
      ",\"hallmark\":{\"reel\":" + json_string(f.reel) + ",\"mode\":" + json_string(f.mode) + "}}";
  return e;
}

Result<std::string> EntryEncoder::encode(std::string_view unique_id, std::string_view timestamp,
                                         ByteView device_cert_der,
                                         std::string_view ukid_secret_digest) const {
  const P256Point point = HM_TRY(p256_point_of(device_cert_der));
  std::string payload;
  payload.reserve(payload_head_.size() + 2 * device_cert_der.size() + x5c_tail_.size() + 400);
  payload += payload_head_;
  payload += timestamp;
  payload += "\",\"uniqueId\":\"";
  payload += unique_id;
  payload += "\",\"publicKeySet\":{\"keys\":[{\"kid\":\"0\",\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"";
  payload += crypto::base64url_encode(point.x);
  payload += "\",\"y\":\"";
  payload += crypto::base64url_encode(point.y);
  payload += "\",\"x5c\":[\"";
  payload += crypto::base64_encode(device_cert_der);
  payload += '"';
  payload += x5c_tail_;
  if (!ukid_secret_digest.empty()) {
    payload += ",\"ukidSecretDigest\":\"";
    payload += ukid_secret_digest;
    payload += '"';
  }
  payload += hallmark_tail_;

  std::string entry;
  entry.reserve(payload.size() * 4 / 3 + protected_b64_.size() + 256);
  entry += "  {\n    \"payload\": \"";
  const std::size_t payload_at = entry.size();
  entry += crypto::base64url_encode(as_bytes(payload));
  const std::size_t payload_end = entry.size();
  // The signing input is protected "." payload, as the strings appear in the file.
  std::string input;
  input.reserve(protected_b64_.size() + 1 + (payload_end - payload_at));
  input += protected_b64_;
  input += '.';
  input.append(entry, payload_at, payload_end - payload_at);
  const Bytes der = HM_TRY(signer_->sign(as_bytes(input), crypto::DigestAlgorithm::sha256));
  const Bytes raw = HM_TRY(crypto::ecdsa_der_to_raw(der, 32));

  entry += "\",\n    \"protected\": \"";
  entry += protected_b64_;
  entry += "\",\n    \"header\": {\n      \"uniqueId\": \"";
  entry += unique_id;
  entry += "\"\n    },\n    \"signature\": \"";
  entry += crypto::base64url_encode(raw);
  entry += "\"\n  }";
  return entry;
}

}  // namespace hallmark::vendor
