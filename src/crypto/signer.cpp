#include "hallmark/crypto/signer.hpp"

#include <openssl/err.h>

#include <array>

#include "hallmark/crypto/handle.hpp"

namespace hallmark::crypto {

namespace {

std::string_view digest_name(DigestAlgorithm digest) noexcept {
  switch (digest) {
    case DigestAlgorithm::sha256: return "SHA-256";
    case DigestAlgorithm::sha384: return "SHA-384";
    case DigestAlgorithm::sha512: return "SHA-512";
    case DigestAlgorithm::none: return "none";
  }
  return "unknown";
}

// Fetched once per process: an implicit fetch on every signature shows up in profiles.
const EVP_MD* fetched_md(DigestAlgorithm digest) noexcept {
  static const std::array<EVP_MD*, 3> kMds = {
      EVP_MD_fetch(nullptr, "SHA256", nullptr),
      EVP_MD_fetch(nullptr, "SHA384", nullptr),
      EVP_MD_fetch(nullptr, "SHA512", nullptr),
  };
  switch (digest) {
    case DigestAlgorithm::sha256: return kMds[0];
    case DigestAlgorithm::sha384: return kMds[1];
    case DigestAlgorithm::sha512: return kMds[2];
    case DigestAlgorithm::none: return nullptr;
  }
  return nullptr;
}

bool signs_without_digest(EVP_PKEY* key) noexcept {
  return EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448");
}

Status check_digest(EVP_PKEY* key, DigestAlgorithm digest) {
  const bool raw = signs_without_digest(key);
  if (raw && digest != DigestAlgorithm::none) {
    return fail(Errc::invalid_input, "Ed25519 signs the message itself: digest must be none, got " +
                                         std::string(digest_name(digest)));
  }
  if (!raw && digest == DigestAlgorithm::none) {
    return fail(Errc::invalid_input, "digest none is only for Ed25519 keys");
  }
  if (!raw && fetched_md(digest) == nullptr) {
    return openssl_fail(Errc::internal, "digest " + std::string(digest_name(digest)) + " is not available");
  }
  return {};
}

// A digest-sign context initialised for `key` and `digest`.
Result<EvpMdCtxPtr> make_sign_context(EVP_PKEY* key, DigestAlgorithm digest) {
  HM_TRY_VOID(check_digest(key, digest));
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) return openssl_fail(Errc::internal, "cannot allocate digest context");
  if (EVP_DigestSignInit(ctx.get(), nullptr, fetched_md(digest), nullptr, key) != 1) {
    return openssl_fail(Errc::crypto, "cannot initialise signing");
  }
  return ctx;
}

}  // namespace

DigestAlgorithm default_digest(const KeyInfo& key) {
  switch (key.algorithm) {
    case KeyInfo::Algorithm::ed25519: return DigestAlgorithm::none;
    case KeyInfo::Algorithm::ec:
      if (key.curve == "P-384") return DigestAlgorithm::sha384;
      if (key.curve == "P-521") return DigestAlgorithm::sha512;
      return DigestAlgorithm::sha256;
    case KeyInfo::Algorithm::rsa:
    case KeyInfo::Algorithm::other: break;
  }
  return DigestAlgorithm::sha256;
}

// Initialised contexts, one per digest, copied for each signature: initialising a fresh context
// fetches the signature algorithm and digest again, which costs as much as a quarter of an ECDSA sign.
struct FileSigner::Templates {
  std::array<EvpMdCtxPtr, 4> contexts;  // indexed by DigestAlgorithm
  std::size_t max_signature_size = 0;
};

FileSigner::FileSigner(PrivateKey key, std::string reference)
    : key_(std::move(key)), public_key_(key_.public_key()), reference_(std::move(reference)) {
  auto templates = std::make_shared<Templates>();
  if (EVP_PKEY* pkey = key_.native(); pkey != nullptr) {
    templates->max_signature_size = static_cast<std::size_t>(std::max(EVP_PKEY_get_size(pkey), 0));
    for (auto digest :
         {DigestAlgorithm::sha256, DigestAlgorithm::sha384, DigestAlgorithm::sha512, DigestAlgorithm::none}) {
      if (signs_without_digest(pkey) != (digest == DigestAlgorithm::none)) continue;
      if (auto ctx = make_sign_context(pkey, digest)) {
        templates->contexts[static_cast<std::size_t>(digest)] = std::move(*ctx);
      }
    }
    ERR_clear_error();
  }
  templates_ = std::move(templates);
}

Result<std::unique_ptr<FileSigner>> FileSigner::load(const std::string& path,
                                                     std::string_view passphrase_source) {
  auto key = load_private_key(path, passphrase_source);
  if (!key) return std::unexpected(key.error().with_context("cannot load signing key " + path));
  return std::make_unique<FileSigner>(std::move(*key), "file:" + path);
}

Result<Bytes> FileSigner::sign(ByteView data, DigestAlgorithm digest) const {
  EVP_PKEY* pkey = key_.native();
  if (pkey == nullptr) return fail(Errc::internal, "signer has no key");
  const auto index = static_cast<std::size_t>(digest);
  EvpMdCtxPtr ctx;
  if (index < templates_->contexts.size() && templates_->contexts[index]) {
    ctx.reset(EVP_MD_CTX_new());
    if (!ctx || EVP_MD_CTX_copy_ex(ctx.get(), templates_->contexts[index].get()) != 1) {
      return openssl_fail(Errc::crypto, "cannot copy signing context");
    }
  } else {
    ctx = HM_TRY(make_sign_context(pkey, digest));
  }
  // Finalise in place: without the flag OpenSSL duplicates the whole context once more.
  EVP_MD_CTX_set_flags(ctx.get(), EVP_MD_CTX_FLAG_FINALISE);
  Bytes signature(templates_->max_signature_size);
  std::size_t length = signature.size();
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &length,
                     reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1) {
    return openssl_fail(Errc::crypto, "signing failed");
  }
  signature.resize(length);
  return signature;
}

Status verify_signature(const PublicKey& key, ByteView data, ByteView signature, DigestAlgorithm digest) {
  EVP_PKEY* pkey = key.native();
  if (pkey == nullptr) return fail(Errc::invalid_input, "no public key to verify with");
  HM_TRY_VOID(check_digest(pkey, digest));
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) return openssl_fail(Errc::internal, "cannot allocate digest context");
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, fetched_md(digest), nullptr, pkey) != 1) {
    return openssl_fail(Errc::crypto, "cannot initialise signature verification");
  }
  EVP_MD_CTX_set_flags(ctx.get(), EVP_MD_CTX_FLAG_FINALISE);
  const int rc =
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                       reinterpret_cast<const unsigned char*>(data.data()), data.size());
  ERR_clear_error();
  if (rc != 1) return fail(Errc::invalid_input, "signature verification failed");
  return {};
}

}  // namespace hallmark::crypto
