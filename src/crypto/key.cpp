#include "hallmark/crypto/key.hpp"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <climits>
#include <mutex>
#include <utility>

#include "hallmark/crypto/digest.hpp"
#include "hallmark/crypto/handle.hpp"

namespace hallmark::crypto {

namespace {

// PBKDF2-HMAC-SHA256 iterations (OWASP 2023). scrypt N=2^14, r=8, p=1 (16 MiB) is what `openssl pkcs8
// -scrypt` writes; N=2^15 would exceed the 32 MiB that OpenSSL 3.0 allows when it decrypts.
constexpr int kPbkdf2Iterations = 600000;
constexpr std::uint64_t kScryptN = 1u << 14;
constexpr std::uint64_t kScryptR = 8;
constexpr std::uint64_t kScryptP = 1;
constexpr int kSaltBytes = 16;

using Pkcs8InfoPtr = Handle<PKCS8_PRIV_KEY_INFO, PKCS8_PRIV_KEY_INFO_free>;
using X509SigPtr = Handle<X509_SIG, X509_SIG_free>;
using X509AlgorPtr = Handle<X509_ALGOR, X509_ALGOR_free>;

std::shared_ptr<EVP_PKEY> share(EVP_PKEY* key) {
  return std::shared_ptr<EVP_PKEY>(key, EVP_PKEY_free);
}

struct PassphraseState {
  const Secret* passphrase = nullptr;
  bool asked = false;
  bool too_long = false;
};

// Never lets OpenSSL fall back to prompting on the terminal.
int passphrase_callback(char* buf, int size, int /*rwflag*/, void* user) {
  auto* state = static_cast<PassphraseState*>(user);
  state->asked = true;
  if (state->passphrase == nullptr) return -1;
  const auto value = state->passphrase->reveal();
  if (value.size() > static_cast<std::size_t>(size)) {
    state->too_long = true;
    return -1;
  }
  std::copy(value.begin(), value.end(), buf);
  return static_cast<int>(value.size());
}

std::string lower_alnum(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (std::isalnum(static_cast<unsigned char>(c)))
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

std::string group_name(EVP_PKEY* key);

using EcGroupPtr = Handle<EC_GROUP, EC_GROUP_free>;
using X509PubkeyPtr = Handle<X509_PUBKEY, X509_PUBKEY_free>;

// The curve's NID from an OpenSSL group name ("prime256v1", "P-256", "secp384r1"...).
int curve_nid(const char* name) {
  int nid = OBJ_sn2nid(name);
  if (nid == NID_undef) nid = EC_curve_nist2nid(name);
  return nid;
}

// DER SubjectPublicKeyInfo assembled from its parts through the ASN.1 layer: OpenSSL 3.0's i2d_PUBKEY
// on a provider key runs the generic encoder (~750k instructions), this costs a few thousand.
Bytes spki_der(int algorithm_nid, int parameter_type, void* parameter, const unsigned char* key_bits,
               std::size_t size) {
  X509PubkeyPtr pub(X509_PUBKEY_new());
  auto* bits = static_cast<unsigned char*>(OPENSSL_memdup(key_bits, size));
  if (!pub || bits == nullptr || size > INT_MAX) {
    OPENSSL_free(bits);
    throw std::bad_alloc();
  }
  if (X509_PUBKEY_set0_param(pub.get(), OBJ_nid2obj(algorithm_nid), parameter_type, parameter, bits,
                             static_cast<int>(size)) != 1) {
    OPENSSL_free(bits);
    ERR_clear_error();
    return {};
  }
  Bytes out;
  const int n = i2d_X509_PUBKEY(pub.get(), nullptr);
  if (n <= 0) return out;
  out.resize(static_cast<std::size_t>(n));
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  i2d_X509_PUBKEY(pub.get(), &p);
  return out;
}

Bytes ec_spki_der(int nid, const unsigned char* point, std::size_t size) {
  return spki_der(NID_X9_62_id_ecPublicKey, V_ASN1_OBJECT, OBJ_nid2obj(nid), point, size);
}

// The named curve and encoded public point of an EC key (provider-backed); false if either is missing.
struct EcPublicParts {
  int nid = NID_undef;
  std::array<unsigned char, 160> point{};
  std::size_t point_size = 0;
};
bool ec_public_parts(EVP_PKEY* key, EcPublicParts& out) {
  char name[80] = {};
  std::size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name, &len) != 1 ||
      EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, out.point.data(), out.point.size(),
                                      &out.point_size) != 1) {
    ERR_clear_error();
    return false;
  }
  out.nid = curve_nid(name);
  return out.nid != NID_undef;
}

// The SPKI DER of any key, cheaply where we can (EC named curves, Ed25519), else through OpenSSL.
Bytes encode_spki(EVP_PKEY* key) {
  if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC && EVP_PKEY_get0_provider(key) != nullptr) {
    if (EcPublicParts parts; ec_public_parts(key, parts)) {
      if (auto der = ec_spki_der(parts.nid, parts.point.data(), parts.point_size); !der.empty()) return der;
    }
  } else if (EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519) {
    std::array<unsigned char, 32> raw{};
    std::size_t len = raw.size();
    if (EVP_PKEY_get_raw_public_key(key, raw.data(), &len) == 1) {
      if (auto der = spki_der(NID_ED25519, V_ASN1_UNDEF, nullptr, raw.data(), len); !der.empty()) return der;
    }
    ERR_clear_error();
  }
  unsigned char* der = nullptr;
  const int n = i2d_PUBKEY(key, &der);
  if (n <= 0) {
    ERR_clear_error();
    return {};
  }
  Bytes out(reinterpret_cast<std::byte*>(der), reinterpret_cast<std::byte*>(der) + n);
  OPENSSL_free(der);
  return out;
}

// One group per curve and thread, copied into each new key (creating a group costs ~130k instructions).
const EC_GROUP* cached_group(int nid) {
  thread_local std::array<std::pair<int, EcGroupPtr>, 4> groups;
  for (auto& [id, group] : groups) {
    if (id == nid) return group.get();
    if (!group) {
      group.reset(EC_GROUP_new_by_curve_name(nid));
      if (!group) return nullptr;
      id = nid;
      return group.get();
    }
  }
  return nullptr;  // more curves than slots: the caller builds its own
}

// A public-only EC key as a legacy EC_KEY: ~80k instructions against ~250k for EVP_PKEY_fromdata and
// ~2.1M for a DER round trip through OpenSSL 3.0's encoder and decoder. Deprecated API, on purpose.
EVP_PKEY* legacy_ec_public_key(const EcPublicParts& parts) {
  EC_KEY* ec = nullptr;
  if (const EC_GROUP* group = cached_group(parts.nid)) {
    ec = EC_KEY_new();
    if (ec != nullptr && EC_KEY_set_group(ec, group) != 1) {
      EC_KEY_free(ec);
      ec = nullptr;
    }
  } else {
    ec = EC_KEY_new_by_curve_name(parts.nid);
  }
  EvpPkeyPtr out(EVP_PKEY_new());
  if (ec == nullptr || !out || EC_KEY_oct2key(ec, parts.point.data(), parts.point_size, nullptr) != 1 ||
      EVP_PKEY_assign_EC_KEY(out.get(), ec) != 1) {
    EC_KEY_free(ec);
    ERR_clear_error();
    return nullptr;
  }
  return out.release();
}

// A public-only copy through the provider's own parameters (RSA, Ed25519, anything not EC), with one
// import context per algorithm and thread: contexts are not safe to share between threads.
EVP_PKEY* provider_public_copy(EVP_PKEY* key) {
  const char* type = EVP_PKEY_get0_type_name(key);
  if (type == nullptr) return nullptr;
  thread_local std::vector<std::pair<std::string, EvpPkeyCtxPtr>> contexts;
  EVP_PKEY_CTX* ctx = nullptr;
  for (auto& [name, c] : contexts) {
    if (name == type) ctx = c.get();
  }
  if (ctx == nullptr) {
    EvpPkeyCtxPtr fresh(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
    if (!fresh || EVP_PKEY_fromdata_init(fresh.get()) != 1) {
      ERR_clear_error();
      return nullptr;
    }
    ctx = fresh.get();
    contexts.emplace_back(type, std::move(fresh));
  }
  OSSL_PARAM* params = nullptr;
  if (EVP_PKEY_todata(key, EVP_PKEY_PUBLIC_KEY, &params) != 1) {
    ERR_clear_error();
    return nullptr;
  }
  EVP_PKEY* out = nullptr;
  if (EVP_PKEY_fromdata(ctx, &out, EVP_PKEY_PUBLIC_KEY, params) != 1) {
    ERR_clear_error();
    out = nullptr;
  }
  OSSL_PARAM_free(params);
  return out;
}

// The ready key-generation context for `type` on this thread: setting one up (EVP_PKEY_Q_keygen) costs
// as much as generating a P-256 key.
EVP_PKEY_CTX* keygen_context(KeyType type) {
  thread_local std::array<EvpPkeyCtxPtr, 6> contexts;
  auto& ctx = contexts[static_cast<std::size_t>(type)];
  if (ctx) return ctx.get();
  const bool rsa = type == KeyType::rsa2048 || type == KeyType::rsa3072 || type == KeyType::rsa4096;
  const char* algorithm = type == KeyType::ed25519 ? "ED25519" : rsa ? "RSA" : "EC";
  EvpPkeyCtxPtr fresh(EVP_PKEY_CTX_new_from_name(nullptr, algorithm, nullptr));
  if (!fresh || EVP_PKEY_keygen_init(fresh.get()) != 1) return nullptr;
  int ok = 1;
  switch (type) {
    case KeyType::ec_p256: ok = EVP_PKEY_CTX_set_group_name(fresh.get(), "P-256"); break;
    case KeyType::ec_p384: ok = EVP_PKEY_CTX_set_group_name(fresh.get(), "P-384"); break;
    case KeyType::ed25519: break;
    case KeyType::rsa2048: ok = EVP_PKEY_CTX_set_rsa_keygen_bits(fresh.get(), 2048); break;
    case KeyType::rsa3072: ok = EVP_PKEY_CTX_set_rsa_keygen_bits(fresh.get(), 3072); break;
    case KeyType::rsa4096: ok = EVP_PKEY_CTX_set_rsa_keygen_bits(fresh.get(), 4096); break;
  }
  if (ok != 1) return nullptr;
  ctx = std::move(fresh);
  return ctx.get();
}

KeyInfo info_of(EVP_PKEY* key) {
  KeyInfo info{KeyInfo::Algorithm::other, {}, 0};
  if (key == nullptr) return info;
  if (EVP_PKEY_is_a(key, "EC")) {
    info.algorithm = KeyInfo::Algorithm::ec;
    info.curve = group_name(key);
    info.bits = EVP_PKEY_get_bits(key);
  } else if (EVP_PKEY_is_a(key, "ED25519")) {
    info.algorithm = KeyInfo::Algorithm::ed25519;
    info.bits = 256;
  } else if (EVP_PKEY_is_a(key, "RSA")) {
    info.algorithm = KeyInfo::Algorithm::rsa;
    info.bits = EVP_PKEY_get_bits(key);
  } else {
    info.bits = EVP_PKEY_get_bits(key);
  }
  return info;
}

std::string group_name(EVP_PKEY* key) {
  char name[80] = {};
  std::size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name, &len) != 1)
    return {};
  const int nid = OBJ_sn2nid(name);
  if (nid != NID_undef) {
    if (const char* nist = EC_curve_nid2nist(nid); nist != nullptr) return nist;
  }
  return std::string(name, len);
}

}  // namespace

Result<KeyType> parse_key_type(std::string_view name) {
  std::string n = lower_alnum(name);
  if (n.starts_with("ec") && n.size() > 2 && n[2] != 'd') n.erase(0, 2);  // "ec-p256" but not "ed25519"
  if (n == "p256" || n == "prime256v1" || n == "secp256r1") return KeyType::ec_p256;
  if (n == "p384" || n == "secp384r1") return KeyType::ec_p384;
  if (n == "ed25519") return KeyType::ed25519;
  if (n == "rsa2048") return KeyType::rsa2048;
  if (n == "rsa3072") return KeyType::rsa3072;
  if (n == "rsa4096") return KeyType::rsa4096;
  return fail(Errc::invalid_input, "unknown key type '" + std::string(name) +
                                       "' (expected p256, p384, ed25519, rsa2048, rsa3072 or rsa4096)");
}

std::string_view to_string(KeyType type) noexcept {
  switch (type) {
    case KeyType::ec_p256: return "p256";
    case KeyType::ec_p384: return "p384";
    case KeyType::ed25519: return "ed25519";
    case KeyType::rsa2048: return "rsa2048";
    case KeyType::rsa3072: return "rsa3072";
    case KeyType::rsa4096: return "rsa4096";
  }
  return "unknown";
}

std::string KeyInfo::describe() const {
  switch (algorithm) {
    case Algorithm::ec: return "EC " + (curve.empty() ? std::string("unknown curve") : curve);
    case Algorithm::ed25519: return "Ed25519";
    case Algorithm::rsa: return "RSA " + std::to_string(bits);
    case Algorithm::other: break;
  }
  return "unsupported key type";
}

// ---------------------------------------------------------------------------------------------------
// PublicKey

// The SPKI DER, computed once per key (shared by every copy of the PublicKey).
struct PublicKey::Cache {
  std::once_flag once;
  Bytes der;
};

Result<PublicKey> PublicKey::parse_der(ByteView spki) {
  if (spki.size() > static_cast<std::size_t>(LONG_MAX))
    return fail(Errc::invalid_input, "public key too large");
  const auto* begin = reinterpret_cast<const unsigned char*>(spki.data());
  const auto* end = begin + spki.size();
  const auto* p = begin;
  EvpPkeyPtr key;
  // EC first through the legacy decoder: d2i_PUBKEY runs OpenSSL 3.0's generic decoder framework
  // (~1.35M instructions against ~170k). Deprecated API, on purpose.
  if (EC_KEY* ec = d2i_EC_PUBKEY(nullptr, &p, static_cast<long>(spki.size())); ec != nullptr) {
    key.reset(EVP_PKEY_new());
    if (!key || EVP_PKEY_assign_EC_KEY(key.get(), ec) != 1) {
      EC_KEY_free(ec);
      return openssl_fail(Errc::internal, "cannot allocate public key");
    }
  } else {
    ERR_clear_error();
    p = begin;
    key.reset(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki.size())));
  }
  if (!key) return openssl_fail(Errc::invalid_input, "cannot parse public key");
  if (p != end)
    return fail(Errc::invalid_input, "cannot parse public key: trailing data after SubjectPublicKeyInfo");
  ERR_clear_error();
  return adopt(key.release(), Bytes(spki.begin(), spki.end()));
}

Result<PublicKey> PublicKey::parse_pem(std::string_view pem) {
  auto bio = make_read_bio(pem.data(), pem.size());
  if (!bio) return fail(Errc::invalid_input, "cannot parse public key: input too large");
  EvpPkeyPtr key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return openssl_fail(Errc::invalid_input, "cannot parse public key PEM");
  ERR_clear_error();
  return adopt(key.release());
}

ByteView PublicKey::der() const {
  if (!key_ || !cache_) return {};
  std::call_once(cache_->once, [this] { cache_->der = encode_spki(key_.get()); });
  return cache_->der;
}

Bytes PublicKey::to_der() const {
  const ByteView d = der();
  return Bytes(d.begin(), d.end());
}

std::string PublicKey::to_pem() const {
  if (!key_) return {};
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key_.get()) != 1) return {};
  return bio_to_string(bio.get());
}

KeyInfo PublicKey::info() const {
  return info_of(key_.get());
}

std::string PublicKey::sha256_hex() const {
  return crypto::sha256_hex(der());
}

bool PublicKey::operator==(const PublicKey& other) const {
  if (!key_ || !other.key_) return !key_ && !other.key_;
  if (key_ == other.key_) return true;
  // Equal SPKI DER is the same key; different DER may still be (a compressed point), so ask OpenSSL.
  const ByteView a = der();
  const ByteView b = other.der();
  if (!a.empty() && std::ranges::equal(a, b)) return true;
  const bool equal = EVP_PKEY_eq(key_.get(), other.key_.get()) == 1;
  ERR_clear_error();
  return equal;
}

PublicKey PublicKey::adopt(EVP_PKEY* key) {
  PublicKey out;
  out.key_ = share(key);
  out.cache_ = std::make_shared<Cache>();
  return out;
}

PublicKey PublicKey::adopt(EVP_PKEY* key, Bytes spki) {
  PublicKey out = adopt(key);
  if (!spki.empty()) {
    out.cache_->der = std::move(spki);
    std::call_once(out.cache_->once, [] {});
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// PrivateKey

Result<PrivateKey> PrivateKey::generate(KeyType type) {
  EVP_PKEY* key = nullptr;
  EVP_PKEY_CTX* ctx = keygen_context(type);
  if (ctx == nullptr || EVP_PKEY_generate(ctx, &key) != 1) key = nullptr;
  if (key == nullptr)
    return openssl_fail(Errc::crypto, "cannot generate " + std::string(to_string(type)) + " key");
  return adopt(key);
}

Result<PrivateKey> PrivateKey::parse_pem(std::string_view pem, const Secret* passphrase) {
  auto bio = make_read_bio(pem.data(), pem.size());
  if (!bio) return fail(Errc::invalid_input, "cannot parse private key: input too large");
  PassphraseState state{passphrase, false, false};
  ERR_clear_error();
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, passphrase_callback, &state));
  if (!key) {
    if (state.asked && passphrase == nullptr) {
      ERR_clear_error();
      return fail(Errc::invalid_input, "private key is encrypted: a passphrase is required");
    }
    if (state.too_long) {
      ERR_clear_error();
      return fail(Errc::invalid_input, "cannot decrypt private key: passphrase too long");
    }
    if (state.asked) {
      ERR_clear_error();
      return fail(Errc::invalid_input, "cannot decrypt private key: wrong passphrase or corrupt key");
    }
    if (pem.find("-----BEGIN") == std::string_view::npos) {
      ERR_clear_error();
      return fail(Errc::invalid_input, "cannot parse private key: no PEM block found");
    }
    return openssl_fail(Errc::invalid_input, "cannot parse private key");
  }
  ERR_clear_error();
  return adopt(key.release());
}

Result<PrivateKey> PrivateKey::parse_der(ByteView pkcs8) {
  if (pkcs8.size() > static_cast<std::size_t>(LONG_MAX))
    return fail(Errc::invalid_input, "private key too large");
  const auto* p = reinterpret_cast<const unsigned char*>(pkcs8.data());
  const auto* end = p + pkcs8.size();
  Pkcs8InfoPtr info(d2i_PKCS8_PRIV_KEY_INFO(nullptr, &p, static_cast<long>(pkcs8.size())));
  if (!info) return openssl_fail(Errc::invalid_input, "cannot parse PKCS#8 private key");
  if (p != end) return fail(Errc::invalid_input, "cannot parse PKCS#8 private key: trailing data");
  EvpPkeyPtr key(EVP_PKCS82PKEY(info.get()));
  if (!key) return openssl_fail(Errc::invalid_input, "cannot parse PKCS#8 private key");
  ERR_clear_error();
  return adopt(key.release());
}

Result<Secret> PrivateKey::to_pem(const Secret* passphrase, Kdf kdf) const {
  if (!key_) return fail(Errc::internal, "empty private key");
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) return openssl_fail(Errc::internal, "cannot allocate BIO");
  if (passphrase == nullptr) {
    if (PEM_write_bio_PKCS8PrivateKey(bio.get(), key_.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
      return openssl_fail(Errc::crypto, "cannot encode private key");
    }
    return Secret(bio_to_string(bio.get()));
  }
  if (passphrase->empty()) return fail(Errc::invalid_input, "cannot encrypt private key: empty passphrase");
  if (passphrase->size() > static_cast<std::size_t>(INT_MAX)) {
    return fail(Errc::invalid_input, "cannot encrypt private key: passphrase too long");
  }
  Pkcs8InfoPtr info(EVP_PKEY2PKCS8(key_.get()));
  if (!info) return openssl_fail(Errc::crypto, "cannot encode private key");
  // OpenSSL 3.0 defaults to an 8-byte salt; NIST SP 800-132 asks for at least 16.
  Bytes salt = random_bytes(kSaltBytes);
  auto* salt_data = reinterpret_cast<unsigned char*>(salt.data());
  X509AlgorPtr pbe(kdf == Kdf::scrypt ? PKCS5_pbe2_set_scrypt(EVP_aes_256_cbc(), salt_data, kSaltBytes,
                                                              nullptr, kScryptN, kScryptR, kScryptP)
                                      : PKCS5_pbe2_set_iv(EVP_aes_256_cbc(), kPbkdf2Iterations, salt_data,
                                                          kSaltBytes, nullptr, NID_hmacWithSHA256));
  if (!pbe) return openssl_fail(Errc::crypto, "cannot set up private key encryption");
  const auto pass = passphrase->reveal();
  X509SigPtr sig(PKCS8_set0_pbe(pass.data(), static_cast<int>(pass.size()), info.get(), pbe.get()));
  if (!sig) return openssl_fail(Errc::crypto, "cannot encrypt private key");
  pbe.release();  // owned by sig now
  if (PEM_write_bio_PKCS8(bio.get(), sig.get()) != 1)
    return openssl_fail(Errc::crypto, "cannot encode private key");
  return Secret(bio_to_string(bio.get()));
}

Result<Secret> PrivateKey::to_der() const {
  if (!key_) return fail(Errc::internal, "empty private key");
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || i2d_PKCS8PrivateKey_bio(bio.get(), key_.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return openssl_fail(Errc::crypto, "cannot encode private key");
  }
  return Secret(bio_to_string(bio.get()));
}

KeyInfo PrivateKey::info() const {
  return info_of(key_.get());
}

PublicKey PrivateKey::public_key() const {
  if (!key_) return {};
  // A public-only copy: what leaves as a PublicKey must not carry the private half.
  EVP_PKEY* key = key_.get();
  if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
    if (EcPublicParts parts; ec_public_parts(key, parts)) {
      if (EVP_PKEY* pub = legacy_ec_public_key(parts)) {
        return PublicKey::adopt(pub, ec_spki_der(parts.nid, parts.point.data(), parts.point_size));
      }
    }
  } else if (EVP_PKEY* pub = provider_public_copy(key)) {
    return PublicKey::adopt(pub);
  }
  unsigned char* der = nullptr;
  const int n = i2d_PUBKEY(key_.get(), &der);
  if (n <= 0) return {};
  const unsigned char* p = der;
  EVP_PKEY* pub = d2i_PUBKEY(nullptr, &p, n);
  Bytes spki(reinterpret_cast<std::byte*>(der), reinterpret_cast<std::byte*>(der) + n);
  OPENSSL_free(der);
  if (pub == nullptr) return {};
  return PublicKey::adopt(pub, std::move(spki));
}

PrivateKey PrivateKey::adopt(EVP_PKEY* key) {
  PrivateKey out;
  out.key_ = share(key);
  return out;
}

Result<PrivateKey> load_private_key(const std::string& path, std::string_view passphrase_source) {
  auto text = HM_TRY(read_file(path));
  const Secret pem(std::string(as_chars(text)));
  if (!text.empty()) OPENSSL_cleanse(text.data(), text.size());
  if (passphrase_source.empty()) return PrivateKey::parse_pem(pem.reveal());
  const Secret passphrase = HM_TRY(read_secret(passphrase_source));
  return PrivateKey::parse_pem(pem.reveal(), &passphrase);
}

Status save_private_key(const std::string& path, const PrivateKey& key, const Secret* passphrase, Kdf kdf) {
  const Secret pem = HM_TRY(key.to_pem(passphrase, kdf));
  return write_file_atomic(path, as_bytes(pem.reveal()), 0600);
}

}  // namespace hallmark::crypto
