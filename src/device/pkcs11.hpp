#pragma once
// Keys in a PKCS#11 token (the secure element's stand-in): used through libp11's OpenSSL engine, so
// TLS and CSR signing see an ordinary EVP_PKEY whose operations run in the token; new keys are
// generated in the token (C_GenerateKeyPair) and never leave it. Private to src/device.
#include <memory>
#include <string>

#include "hallmark/core/result.hpp"
#include "hallmark/crypto/signer.hpp"

namespace hallmark::device::detail {

// "pkcs11:token=...;object=...[;type=private][?pin-source=file:...&module-path=...]".
[[nodiscard]] Result<std::shared_ptr<const crypto::Signer>> load_pkcs11_key(const std::string& uri,
                                                                            const std::string& pin_source);
// A new P-256 key pair in the token named by `token_uri` (its token= attribute), labelled `label`;
// returns the URI of its private key (no PIN in it).
[[nodiscard]] Result<std::string> generate_pkcs11_key(const std::string& token_uri,
                                                      const std::string& pin_source,
                                                      const std::string& label);

}  // namespace hallmark::device::detail
