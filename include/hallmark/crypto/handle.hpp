#pragma once
// RAII over OpenSSL: one deleter template for every OpenSSL type. Included only by crypto and x509
// (and later by the TLS layer); higher layers hold value types.
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>

#include "hallmark/core/result.hpp"

namespace hallmark::crypto {

template <auto Free>
struct Deleter {
  void operator()(auto* p) const noexcept { Free(p); }
};
template <class T, auto Free>
using Handle = std::unique_ptr<T, Deleter<Free>>;

using BioPtr = Handle<BIO, BIO_free_all>;
using BnPtr = Handle<BIGNUM, BN_free>;
using EvpPkeyPtr = Handle<EVP_PKEY, EVP_PKEY_free>;
using EvpPkeyCtxPtr = Handle<EVP_PKEY_CTX, EVP_PKEY_CTX_free>;
using EvpMdCtxPtr = Handle<EVP_MD_CTX, EVP_MD_CTX_free>;
using EvpCipherCtxPtr = Handle<EVP_CIPHER_CTX, EVP_CIPHER_CTX_free>;
using X509Ptr = Handle<X509, X509_free>;
using X509ReqPtr = Handle<X509_REQ, X509_REQ_free>;
using X509CrlPtr = Handle<X509_CRL, X509_CRL_free>;
using X509NamePtr = Handle<X509_NAME, X509_NAME_free>;
using X509ExtPtr = Handle<X509_EXTENSION, X509_EXTENSION_free>;
using X509StorePtr = Handle<X509_STORE, X509_STORE_free>;
using X509StoreCtxPtr = Handle<X509_STORE_CTX, X509_STORE_CTX_free>;
using X509RevokedPtr = Handle<X509_REVOKED, X509_REVOKED_free>;
using Asn1IntegerPtr = Handle<ASN1_INTEGER, ASN1_INTEGER_free>;
using Asn1TimePtr = Handle<ASN1_TIME, ASN1_TIME_free>;
using Asn1OctetStringPtr = Handle<ASN1_OCTET_STRING, ASN1_OCTET_STRING_free>;
using Asn1ObjectPtr = Handle<ASN1_OBJECT, ASN1_OBJECT_free>;
using GeneralNamesPtr = Handle<GENERAL_NAMES, GENERAL_NAMES_free>;
using Pkcs7Ptr = Handle<PKCS7, PKCS7_free>;
using EcdsaSigPtr = Handle<ECDSA_SIG, ECDSA_SIG_free>;

// Every X509* in a STACK_OF owned by the stack is freed with it.
struct X509StackFree {
  void operator()(STACK_OF(X509) * s) const noexcept { sk_X509_pop_free(s, X509_free); }
};
using X509StackPtr = std::unique_ptr<STACK_OF(X509), X509StackFree>;

// The OpenSSL error queue, drained into one line ("what: reason; reason").
[[nodiscard]] std::string openssl_error(std::string_view what);
[[nodiscard]] inline std::unexpected<Error> openssl_fail(Errc code, std::string_view what) {
  return std::unexpected(Error{code, openssl_error(what)});
}

// A BIO that reads a borrowed buffer (must outlive the BIO).
[[nodiscard]] BioPtr make_read_bio(const void* data, std::size_t size);
// Everything written to a memory BIO, as a string.
[[nodiscard]] std::string bio_to_string(BIO* bio);

}  // namespace hallmark::crypto
