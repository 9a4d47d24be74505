#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <openssl/evp.h>

#include "hallmark/crypto/key.hpp"
#include "hallmark/crypto/signer.hpp"

using namespace hallmark;
using namespace hallmark::crypto;

TEST(Placeholder, SignVerify) {
  for (auto t : {KeyType::ec_p256, KeyType::ec_p384, KeyType::ed25519, KeyType::rsa2048}) {
    auto k = PrivateKey::generate(t);
    ASSERT_TRUE(k);
    FileSigner s(*k, "mem");
    auto d = default_digest(k->info());
    auto sig = s.sign(as_bytes("hello"), d);
    ASSERT_TRUE(sig) << sig.error().detail;
    auto v = verify_signature(s.public_key(), as_bytes("hello"), *sig, d);
    EXPECT_TRUE(v) << v.error().detail;
    EXPECT_FALSE(verify_signature(s.public_key(), as_bytes("hellO"), *sig, d));
    std::printf("%s %s %zu\n", k->info().describe().c_str(), k->public_key().sha256_hex().c_str(), sig->size());
  }
  auto k = PrivateKey::generate(KeyType::ec_p256);
  FileSigner s(*k, "mem");
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 20000; ++i) (void)s.sign(as_bytes("hello world"), DigestAlgorithm::sha256);
  auto dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("templated: %.0f signs/s\n", 20000 / dt);
  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 20000; ++i) {
    EVP_MD_CTX* c = EVP_MD_CTX_new();
    EVP_DigestSignInit(c, nullptr, EVP_sha256(), nullptr, k->native());
    unsigned char buf[100]; size_t n = sizeof buf;
    EVP_DigestSign(c, buf, &n, (const unsigned char*)"hello world", 11);
    EVP_MD_CTX_free(c);
  }
  dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("plain: %.0f signs/s\n", 20000 / dt);
  EVP_PKEY_CTX* tmpl = EVP_PKEY_CTX_new_from_pkey(nullptr, k->native(), nullptr);
  EVP_PKEY_sign_init(tmpl);
  EVP_PKEY_CTX_set_signature_md(tmpl, EVP_sha256());
  EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 20000; ++i) {
    unsigned char h[32]; unsigned hl = 32;
    EVP_Digest("hello world", 11, h, &hl, md, nullptr);
    EVP_PKEY_CTX* c = EVP_PKEY_CTX_dup(tmpl);
    unsigned char buf[100]; size_t n = sizeof buf;
    if (EVP_PKEY_sign(c, buf, &n, h, 32) != 1) std::abort();
    EVP_PKEY_CTX_free(c);
  }
  dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("pkey dup: %.0f signs/s\n", 20000 / dt);
  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 20000; ++i) {
    unsigned char h[32]; unsigned hl = 32;
    EVP_Digest("hello world", 11, h, &hl, md, nullptr);
    unsigned char buf[100]; size_t n = sizeof buf;
    if (EVP_PKEY_sign(tmpl, buf, &n, h, 32) != 1) std::abort();
  }
  dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("pkey reuse: %.0f signs/s\n", 20000 / dt);
}
