#include "hallmark/inventory/manifest.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <filesystem>
#include <set>
#include <unordered_map>

#include "hallmark/crypto/digest.hpp"
#include "hallmark/crypto/jws.hpp"
#include "readers.hpp"

namespace hallmark::inventory {

namespace fs = std::filesystem;

Result<ManifestFormat> parse_manifest_format(std::string_view name) {
  if (name == "auto" || name.empty()) return ManifestFormat::automatic;
  if (name == "hallmark") return ManifestFormat::hallmark;
  if (name == "microchip") return ManifestFormat::microchip;
  if (name == "infineon") return ManifestFormat::infineon;
  return fail(Errc::invalid_input,
              "unknown manifest format \"" + std::string(name) + "\" (auto, hallmark, microchip, infineon)");
}

std::string_view to_string(ManifestFormat format) noexcept {
  switch (format) {
    case ManifestFormat::automatic: return "auto";
    case ManifestFormat::hallmark: return "hallmark";
    case ManifestFormat::microchip: return "microchip";
    case ManifestFormat::infineon: return "infineon";
  }
  return "auto";
}

std::string_view record_format(ManifestFormat format) noexcept {
  switch (format) {
    case ManifestFormat::hallmark: return "hallmark";
    case ManifestFormat::infineon: return "infineon-reel";
    case ManifestFormat::microchip:
    case ManifestFormat::automatic: return "microchip-jws";
  }
  return "microchip-jws";
}

Result<ManifestFormat> detect_container(const std::string& path) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) return fail(Errc::invalid_input, "cannot open " + path + ": no such file");
  if (fs::is_directory(status)) return ManifestFormat::infineon;
  auto head = std::string();
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    std::array<char, 6> magic{};
    const std::size_t n = std::fread(magic.data(), 1, magic.size(), f);
    std::fclose(f);
    head.assign(magic.data(), n);
  }
  static constexpr std::string_view k7zMagic{"7z\xBC\xAF\x27\x1C", 6};
  if (head == k7zMagic) return ManifestFormat::infineon;
  return ManifestFormat::microchip;
}

// ---- trust ----

Status ManifestTrust::add_signer(const x509::Certificate& signer) {
  PinnedSigner pinned;
  pinned.certificate = signer;
  pinned.x5t_s256 = crypto::base64url_encode(crypto::sha256(signer.to_der()));
  if (auto ski = signer.subject_key_id()) pinned.kid = crypto::base64url_encode(*ski);
  signers_.insert_or_assign(pinned.x5t_s256, std::move(pinned));
  return {};
}

const PinnedSigner* ManifestTrust::find_signer(std::string_view x5t_s256) const {
  const auto it = signers_.find(x5t_s256);
  return it == signers_.end() ? nullptr : &it->second;
}

Result<std::vector<x509::Certificate>> load_certificates(const std::string& path) {
  std::error_code ec;
  std::vector<x509::Certificate> out;
  auto load_file = [&out](const std::string& file) -> Status {
    const Bytes data = HM_TRY(read_file(file));
    const std::string_view text = as_chars(data);
    if (text.find("-----BEGIN") != std::string_view::npos) {
      auto chain = x509::Certificate::parse_pem_chain(text);
      if (!chain) return std::unexpected(chain.error().with_context(file));
      for (auto& c : *chain) out.push_back(std::move(c));
      return {};
    }
    auto cert = x509::Certificate::parse_der(data);
    if (!cert) return std::unexpected(cert.error().with_context(file));
    out.push_back(std::move(*cert));
    return {};
  };
  if (fs::is_directory(path, ec)) {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(path, ec)) {
      if (!e.is_regular_file()) continue;
      std::string ext = e.path().extension().string();
      std::ranges::transform(ext, ext.begin(), [](unsigned char c) { return std::tolower(c); });
      if (ext == ".crt" || ext == ".pem" || ext == ".cer" || ext == ".der")
        files.push_back(e.path().string());
    }
    if (ec) return fail(Errc::invalid_input, "cannot list " + path + ": " + ec.message());
    std::ranges::sort(files);
    for (const auto& f : files) HM_TRY_VOID(load_file(f));
    if (out.empty())
      return fail(Errc::invalid_input, "no certificates (*.crt, *.pem, *.cer, *.der) in " + path);
    return out;
  }
  HM_TRY_VOID(load_file(path));
  return out;
}

std::string ManifestEntry::describe_rejection() const {
  std::string out = "entry " + std::to_string(index);
  if (!unique_id.empty()) out += " (uniqueId " + unique_id + ")";
  return out + ": " + rejected;
}

// ---- shared helpers ----

namespace detail {

std::string canonical_unique_id(std::string_view id) {
  const bool hex = !id.empty() && std::ranges::all_of(id, [](unsigned char c) { return std::isxdigit(c); });
  std::string out(id);
  if (hex) std::ranges::transform(out, out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string chain_failure(std::string_view detail) {
  static constexpr std::string_view kPrefix = "certificate verification failed: ";
  if (detail.starts_with(kPrefix)) detail.remove_prefix(kPrefix.size());
  return std::string(detail);
}

void derive_bc_fields(ManifestEntry& entry) {
  if (!entry.bc) return;
  entry.bc_sha256 = entry.bc->fingerprint_sha256_hex();
  // Option 3's UKID is the vendor-injected secret, never derived from the key.
  if (entry.ukid_secret_digest) return;
  entry.ukid = crypto::sha256_hex(entry.bc->spki_der());
}

}  // namespace detail

// ---- JWS entries (Microchip and hallmark reels) ----

namespace {

std::string strip_jws_prefix(std::string detail) {
  static constexpr std::string_view kPrefix = "JWS: ";
  if (std::string_view(detail).starts_with(kPrefix)) detail.erase(0, kPrefix.size());
  return detail;
}

const nlohmann::json* member(const nlohmann::json& object, const char* name) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(name);
  return it == object.end() ? nullptr : &*it;
}

std::optional<std::string> string_member(const nlohmann::json& object, const char* name) {
  const auto* m = member(object, name);
  if (m == nullptr || !m->is_string()) return std::nullopt;
  return m->get<std::string>();
}

// SubjectPublicKeyInfo DER of a P-256 point from its JWK coordinates (uncompressed point).
Result<Bytes> jwk_p256_spki(const nlohmann::json& jwk) {
  const auto kty = string_member(jwk, "kty");
  const auto crv = string_member(jwk, "crv");
  if (kty != "EC" || crv != "P-256") {
    return fail(Errc::invalid_input,
                "JWK is not an EC P-256 key (kty " + kty.value_or("?") + ", crv " + crv.value_or("?") + ")");
  }
  const auto x_text = string_member(jwk, "x");
  const auto y_text = string_member(jwk, "y");
  if (!x_text || !y_text) return fail(Errc::invalid_input, "JWK has no x or y");
  auto x = crypto::base64url_decode(*x_text);
  auto y = crypto::base64url_decode(*y_text);
  if (!x || !y || x->size() != 32 || y->size() != 32) {
    return fail(Errc::invalid_input, "JWK x and y must be 32-byte base64url values");
  }
  static constexpr std::array<unsigned char, 27> kPrefix = {
      0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
      0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04};
  Bytes spki;
  spki.reserve(kPrefix.size() + 64);
  for (unsigned char b : kPrefix) spki.push_back(static_cast<std::byte>(b));
  spki.insert(spki.end(), x->begin(), x->end());
  spki.insert(spki.end(), y->begin(), y->end());
  return spki;
}

// The JWK is the certificate's key: byte equality of the SPKIs is the fast path; a certificate
// that encodes its point otherwise (compressed) is compared as keys.
Status check_jwk_matches(const nlohmann::json& jwk, const x509::Certificate& cert) {
  const Bytes spki = HM_TRY(jwk_p256_spki(jwk));
  if (cert.spki_der() == spki) return {};
  auto key = crypto::PublicKey::parse_der(spki);
  if (!key) return fail(Errc::invalid_input, "JWK is not a valid P-256 point");
  if (!(*key == cert.public_key())) return fail(Errc::invalid_input, "JWK does not match certificate key");
  return {};
}

// x5c intermediates repeat across a reel: parse each once per thread.
Result<x509::Certificate> parse_x5c_intermediate(const std::string& b64) {
  thread_local std::unordered_map<std::string, x509::Certificate> cache;
  if (const auto it = cache.find(b64); it != cache.end()) return it->second;
  const Bytes der = HM_TRY(crypto::base64_decode(b64));
  x509::Certificate cert = HM_TRY(x509::Certificate::parse_der(der));
  if (cache.size() >= 64) cache.clear();
  cache.emplace(b64, cert);
  return cert;
}

bool is_hex(std::string_view s) {
  return std::ranges::all_of(s, [](unsigned char c) { return std::isxdigit(c); });
}

// Checks one publicKeySet key that carries an x5c chain; returns the leaf certificate.
Result<x509::Certificate> check_keyed_certificate(const nlohmann::json& key, const std::string& kid,
                                                  const ManifestTrust& trust, Seconds at,
                                                  x509::PathCache* paths) {
  const auto* x5c = member(key, "x5c");
  if (x5c == nullptr || !x5c->is_array() || x5c->empty()) {
    return fail(Errc::invalid_input, "key " + kid + " has no x5c certificate chain");
  }
  std::vector<x509::Certificate> chain;
  for (std::size_t i = 0; i < x5c->size(); ++i) {
    const auto& item = (*x5c)[i];
    if (!item.is_string()) {
      return fail(Errc::invalid_input, "key " + kid + " x5c[" + std::to_string(i) + "] is not a string");
    }
    const auto& text = item.get_ref<const std::string&>();
    Result<x509::Certificate> cert = fail(Errc::invalid_input, "not base64");
    if (i > 0) {
      cert = parse_x5c_intermediate(text);
    } else if (auto der = crypto::base64_decode(text)) {
      cert = x509::Certificate::parse_der(*der);
    }
    if (!cert) {
      return fail(Errc::invalid_input, "key " + kid + " x5c[" + std::to_string(i) +
                                           "] is not a certificate: " + cert.error().detail);
    }
    chain.push_back(std::move(*cert));
  }
  if (trust.vendor_roots().empty()) {
    return fail(Errc::invalid_input, "no vendor root configured to verify the x5c chain");
  }
  std::vector<x509::Certificate> intermediates(chain.begin() + 1, chain.end());
  intermediates.insert(intermediates.end(), trust.intermediates().begin(), trust.intermediates().end());
  Status path;
  if (paths != nullptr) {
    path = paths->verify(chain.front(), intermediates, at);
  } else if (auto full = trust.vendor_roots().verify(chain.front(), intermediates, at); !full) {
    path = std::unexpected(full.error());
  }
  if (!path) {
    return fail(Errc::invalid_input,
                "x5c chain does not verify to a vendor root: " + detail::chain_failure(path.error().detail));
  }
  HM_TRY_VOID(check_jwk_matches(key, chain.front()));
  return chain.front();
}

}  // namespace

ManifestEntry verify_jws_entry(std::string_view element_json, std::size_t index, const ManifestTrust& trust,
                               ManifestFormat expected, x509::PathCache* paths) {
  ManifestEntry entry;
  entry.index = index;
  entry.format = expected == ManifestFormat::hallmark ? ManifestFormat::hallmark : ManifestFormat::microchip;
  auto reject = [&entry](std::string reason) {
    entry.rejected = std::move(reason);
    return std::move(entry);
  };

  const auto object = nlohmann::json::parse(element_json, nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded()) return reject("invalid JSON in entry");
  if (!object.is_object()) return reject("entry is not a JSON object");
  if (const auto* header = member(object, "header")) {
    if (auto hid = string_member(*header, "uniqueId")) {
      entry.unique_id = detail::canonical_unique_id(*hid);  // unverified until the payload is
    }
  }
  auto parsed = crypto::parse_flattened_jws(object);
  if (!parsed) return reject(strip_jws_prefix(parsed.error().detail));
  const crypto::FlattenedJws& jws = *parsed;

  const auto x5t = string_member(jws.protected_header, "x5t#S256");
  const auto kid = string_member(jws.protected_header, "kid");
  if (!x5t) return reject("protected header has no x5t#S256");
  const PinnedSigner* signer = trust.find_signer(*x5t);
  if (signer == nullptr)
    return reject("unknown signer x5t#S256 " + *x5t + " (kid " + kid.value_or("none") + ")");
  const std::string signer_subject = signer->certificate.subject().to_string();
  if (signer->kid.empty())
    return reject("signer " + signer_subject + " has no SubjectKeyIdentifier to check kid");
  if (kid != signer->kid) {
    return reject("kid " + kid.value_or("(none)") + " does not match signer " + signer_subject +
                  " (expected " + signer->kid + ")");
  }
  if (auto ok = crypto::verify_es256(jws, signer->certificate.public_key()); !ok) {
    return reject(strip_jws_prefix(ok.error().detail));
  }
  entry.signer = signer_subject;

  // From here on the payload is the vendor's word.
  const auto payload_bytes = jws.payload();
  if (!payload_bytes) return reject(strip_jws_prefix(payload_bytes.error().detail));
  const auto payload = nlohmann::json::parse(as_chars(*payload_bytes), nullptr, false);
  if (payload.is_discarded() || !payload.is_object()) return reject("payload is not a JSON object");
  const auto signed_id = string_member(payload, "uniqueId");
  if (!signed_id || signed_id->empty()) return reject("payload has no uniqueId");
  const auto header_id = string_member(jws.header, "uniqueId");
  if (!header_id) return reject("unprotected header has no uniqueId");
  if (*header_id != *signed_id) {
    return reject("unprotected header uniqueId " + *header_id + " does not match signed uniqueId " +
                  *signed_id);
  }
  entry.unique_id = detail::canonical_unique_id(*signed_id);

  const bool is_hallmark = member(payload, "hallmark") != nullptr;
  if (expected == ManifestFormat::hallmark && !is_hallmark) {
    return reject("not a hallmark reel entry (payload has no \"hallmark\" object)");
  }
  if (expected == ManifestFormat::microchip && is_hallmark) {
    return reject("hallmark reel entry in a file read as microchip");
  }
  entry.format = is_hallmark ? ManifestFormat::hallmark : ManifestFormat::microchip;

  const auto* version = member(payload, "version");
  if (version == nullptr || !version->is_number_integer()) return reject("payload has no integer version");
  entry.version = version->get<int>();
  if (entry.version < 1 || entry.version > 3) return reject("unsupported payload version " + version->dump());
  entry.model = string_member(payload, "model").value_or("");
  entry.part_number = string_member(payload, "partNumber").value_or("");

  const auto stamp = string_member(payload, "provisioningTimestamp");
  if (!stamp) return reject("payload has no provisioningTimestamp");
  const auto at = parse_iso8601(*stamp);
  if (!at) return reject("provisioningTimestamp " + *stamp + " is not an ISO 8601 time");
  entry.provisioned_at = *at;
  // Signers expire; what matters is whether this one was valid when it signed the entry.
  const auto& sc = signer->certificate;
  if (*at < sc.not_before() || *at > sc.not_after()) {
    return reject("signer " + signer_subject + " was not valid at provisioningTimestamp " + *stamp +
                  " (valid " + to_iso8601(sc.not_before()) + " to " + to_iso8601(sc.not_after()) + ")");
  }

  if (is_hallmark) {
    const auto& mark = payload["hallmark"];
    if (!mark.is_object()) return reject("payload \"hallmark\" must be an object");
    entry.reel = string_member(mark, "reel").value_or("");
    if (const auto* digest = member(payload, "ukidSecretDigest")) {
      if (!digest->is_string() || digest->get_ref<const std::string&>().size() != 64 ||
          !is_hex(digest->get_ref<const std::string&>())) {
        return reject("ukidSecretDigest must be 64 hex digits (SHA-256)");
      }
      entry.ukid_secret_digest = detail::canonical_unique_id(digest->get_ref<const std::string&>());
    }
    if (string_member(mark, "mode") == "bc-secret" && !entry.ukid_secret_digest) {
      return reject("mode bc-secret without ukidSecretDigest");
    }
  }

  const auto* key_set = member(payload, "publicKeySet");
  if (entry.version == 2) {
    // "Lite": the identity is signed, the key is learned at first contact.
    if (key_set != nullptr) return reject("version 2 entry carries a publicKeySet");
    return entry;
  }
  const auto* keys = key_set != nullptr ? member(*key_set, "keys") : nullptr;
  if (keys == nullptr || !keys->is_array()) return reject("payload has no publicKeySet.keys");
  for (const auto& key : *keys) {
    const auto key_id = string_member(key, "kid");
    if (member(key, "x5c") == nullptr && key_id != "0") continue;
    auto cert = check_keyed_certificate(key, key_id.value_or("?"), trust, *at, paths);
    if (!cert) return reject(cert.error().detail);
    if (key_id == "0") entry.bc = std::move(*cert);
  }
  if (!entry.bc) return reject("publicKeySet has no key with kid \"0\" (the device certificate)");
  entry.chain_verified = true;
  detail::derive_bc_fields(entry);
  return entry;
}

// ---- dispatch ----

Result<ManifestSummary> read_manifest(const std::string& path, const ManifestTrust& trust,
                                      const ReadOptions& options, const EntryCallback& on_entry) {
  ManifestFormat format = options.format;
  const ManifestFormat container = HM_TRY(detect_container(path));
  if (format == ManifestFormat::automatic) format = container;
  if (format == ManifestFormat::infineon) {
    if (container != ManifestFormat::infineon) {
      return fail(Errc::invalid_input, path + ": an Infineon bundle is a directory or a .7z archive");
    }
    return detail::read_infineon_bundle(path, trust, options, on_entry);
  }
  if (container == ManifestFormat::infineon) {
    return fail(Errc::invalid_input, path + ": a " + std::string(to_string(format)) +
                                         " manifest is a JSON file, not a directory or .7z archive");
  }
  ReadOptions json_options = options;
  json_options.format = options.format;  // automatic: decided by the first entry
  return detail::read_json_manifest(path, trust, json_options, on_entry);
}

}  // namespace hallmark::inventory
