#pragma once
#include <string>
#include <string_view>

#include "hallmark/core/bytes.hpp"
#include "hallmark/core/result.hpp"

using EVP_MD_CTX = struct evp_md_ctx_st;

namespace hallmark::crypto {

[[nodiscard]] Bytes sha1(ByteView data);
[[nodiscard]] Bytes sha256(ByteView data);
[[nodiscard]] Bytes sha384(ByteView data);
[[nodiscard]] std::string sha256_hex(ByteView data);

// Streaming SHA-256: update() any number of times, then finish(), which also resets the hasher for
// a new message. Not thread-safe; movable, not copyable.
class Sha256 final {
 public:
  static constexpr std::size_t kSize = 32;
  Sha256();
  ~Sha256();
  Sha256(Sha256&& other) noexcept;
  Sha256& operator=(Sha256&& other) noexcept;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(ByteView data);
  [[nodiscard]] Bytes finish();

 private:
  EVP_MD_CTX* ctx_;
};

// Cryptographically secure random bytes.
[[nodiscard]] Bytes random_bytes(std::size_t n);

// Base64 (RFC 4648 §4). Encoding wraps at 64 columns with "\n" when `wrap` is set.
// Decoding ignores spaces, tabs, CR and LF anywhere; padding is required to be correct when present.
[[nodiscard]] std::string base64_encode(ByteView data, bool wrap = false);
[[nodiscard]] Result<Bytes> base64_decode(std::string_view text);
// Base64url (RFC 4648 §5) without padding; decoding also accepts padding and ignores whitespace.
[[nodiscard]] std::string base64url_encode(ByteView data);
[[nodiscard]] Result<Bytes> base64url_decode(std::string_view text);

// Constant-time equality.
[[nodiscard]] bool equal_constant_time(ByteView a, ByteView b) noexcept;

}  // namespace hallmark::crypto
