#pragma once
// Keys as value types. The EVP_PKEY inside is shared (reference counted by OpenSSL) and immutable;
// native() is for crypto and x509 only.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "hallmark/core/bytes.hpp"
#include "hallmark/core/result.hpp"
#include "hallmark/core/secret.hpp"

using EVP_PKEY = struct evp_pkey_st;

namespace hallmark::crypto {

enum class KeyType { ec_p256, ec_p384, ed25519, rsa2048, rsa3072, rsa4096 };

// "p256" | "p384" | "ed25519" | "rsa2048" | "rsa3072" | "rsa4096" (also "ec-p256", "rsa-2048"...).
[[nodiscard]] Result<KeyType> parse_key_type(std::string_view name);
[[nodiscard]] std::string_view to_string(KeyType type) noexcept;

// What a key is, for policy checks and display.
struct KeyInfo {
  enum class Algorithm { ec, ed25519, rsa, other } algorithm;
  std::string curve;  // "P-256", "P-384", "P-521", "secp256k1"... for EC; empty otherwise
  int bits = 0;       // modulus bits for RSA, field bits for EC, 256 for Ed25519
  [[nodiscard]] std::string describe() const;  // "EC P-256", "RSA 2048", "Ed25519"
};

class PublicKey {
 public:
  PublicKey() = default;  // empty; only for containers and late assignment
  [[nodiscard]] static Result<PublicKey> parse_der(ByteView spki);
  [[nodiscard]] static Result<PublicKey> parse_pem(std::string_view pem);

  // DER SubjectPublicKeyInfo.
  [[nodiscard]] Bytes to_der() const;
  // The same DER without a copy: computed once and shared by every copy of this key (thread-safe);
  // valid while any copy lives. Empty for an empty key.
  [[nodiscard]] ByteView der() const;
  [[nodiscard]] std::string to_pem() const;
  [[nodiscard]] KeyInfo info() const;
  // Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo: the UKID of a birth certificate.
  [[nodiscard]] std::string sha256_hex() const;
  [[nodiscard]] bool operator==(const PublicKey& other) const;

  [[nodiscard]] EVP_PKEY* native() const noexcept { return key_.get(); }
  // Takes one reference (the caller's reference is consumed).
  [[nodiscard]] static PublicKey adopt(EVP_PKEY* key);
  // The same, when the DER SubjectPublicKeyInfo of `key` is already known (`spki` must be it).
  [[nodiscard]] static PublicKey adopt(EVP_PKEY* key, Bytes spki);

 private:
  struct Cache;
  std::shared_ptr<EVP_PKEY> key_;
  std::shared_ptr<Cache> cache_;
};

enum class Kdf { scrypt, pbkdf2 };

class PrivateKey {
 public:
  PrivateKey() = default;
  [[nodiscard]] static Result<PrivateKey> generate(KeyType type);
  // PKCS#8 PEM ("PRIVATE KEY" or "ENCRYPTED PRIVATE KEY"); traditional EC/RSA PEM is also read.
  // An encrypted key without a passphrase, or a wrong passphrase, is invalid_input with a clear text.
  [[nodiscard]] static Result<PrivateKey> parse_pem(std::string_view pem, const Secret* passphrase = nullptr);
  [[nodiscard]] static Result<PrivateKey> parse_der(ByteView pkcs8);

  // PKCS#8 PEM; encrypted with AES-256-CBC and the chosen KDF when a passphrase is given.
  [[nodiscard]] Result<Secret> to_pem(const Secret* passphrase = nullptr, Kdf kdf = Kdf::scrypt) const;
  // Unencrypted PKCS#8 DER, in a Secret.
  [[nodiscard]] Result<Secret> to_der() const;

  [[nodiscard]] PublicKey public_key() const;
  [[nodiscard]] KeyInfo info() const;

  [[nodiscard]] EVP_PKEY* native() const noexcept { return key_.get(); }
  [[nodiscard]] static PrivateKey adopt(EVP_PKEY* key);

 private:
  std::shared_ptr<EVP_PKEY> key_;
};

// Loads a PEM private key file; the passphrase (if any) is read from `passphrase_source`
// ("file:PATH" or "env:NAME", see read_secret).
[[nodiscard]] Result<PrivateKey> load_private_key(const std::string& path,
                                                  std::string_view passphrase_source = {});
// Writes a PEM private key atomically with mode 0600.
[[nodiscard]] Status save_private_key(const std::string& path, const PrivateKey& key,
                                      const Secret* passphrase = nullptr, Kdf kdf = Kdf::scrypt);

}  // namespace hallmark::crypto
