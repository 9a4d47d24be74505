#pragma once
// What signs: a file key now, a PKCS#11 token key later, behind one interface.
#include <memory>

#include "hallmark/core/bytes.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/crypto/key.hpp"

namespace hallmark::crypto {

enum class DigestAlgorithm { sha256, sha384, sha512, none /* Ed25519 */ };

// The digest a signature with this key uses by default: SHA-256 for P-256 and RSA, SHA-384 for
// P-384, none for Ed25519.
[[nodiscard]] DigestAlgorithm default_digest(const KeyInfo& key);

class Signer {
 public:
  virtual ~Signer() = default;
  [[nodiscard]] virtual const PublicKey& public_key() const = 0;
  // A signature over `data` in the algorithm's standard encoding (DER ECDSA-Sig-Value for ECDSA,
  // PKCS#1 v1.5 for RSA, raw for Ed25519).
  [[nodiscard]] virtual Result<Bytes> sign(ByteView data, DigestAlgorithm digest) const = 0;
  // The private key as an OpenSSL object (possibly token-backed), for X.509 and TLS signing inside
  // crypto and x509 only.
  [[nodiscard]] virtual EVP_PKEY* native_private_key() const noexcept = 0;
  // "file:/path/key.pem", "pkcs11:...": where the key lives, for display (never secret).
  [[nodiscard]] virtual std::string reference() const = 0;
};

class FileSigner final : public Signer {
 public:
  FileSigner(PrivateKey key, std::string reference);
  [[nodiscard]] static Result<std::unique_ptr<FileSigner>> load(const std::string& path,
                                                                std::string_view passphrase_source = {});

  [[nodiscard]] const PublicKey& public_key() const override { return public_key_; }
  [[nodiscard]] Result<Bytes> sign(ByteView data, DigestAlgorithm digest) const override;
  [[nodiscard]] EVP_PKEY* native_private_key() const noexcept override { return key_.native(); }
  [[nodiscard]] std::string reference() const override { return reference_; }
  [[nodiscard]] const PrivateKey& private_key() const noexcept { return key_; }

 private:
  struct Templates;  // signing contexts initialised once, copied per signature
  PrivateKey key_;
  PublicKey public_key_;
  std::string reference_;
  std::shared_ptr<const Templates> templates_;
};

// Verifies a signature made by Signer::sign.
[[nodiscard]] Status verify_signature(const PublicKey& key, ByteView data, ByteView signature,
                                      DigestAlgorithm digest);

}  // namespace hallmark::crypto
