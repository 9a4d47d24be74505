#pragma once
#include <string>
#include <string_view>

#include "hallmark/core/bytes.hpp"
#include "hallmark/core/result.hpp"

namespace hallmark::crypto {

[[nodiscard]] Bytes sha1(ByteView data);
[[nodiscard]] Bytes sha256(ByteView data);
[[nodiscard]] Bytes sha384(ByteView data);
[[nodiscard]] std::string sha256_hex(ByteView data);

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
