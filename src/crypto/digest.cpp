#include "hallmark/crypto/digest.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <utility>

namespace hallmark::crypto {

namespace {

// Fetched once: an implicit fetch per call costs more than hashing a certificate.
const EVP_MD* fetched_md(const char* name) {
  EVP_MD* md = EVP_MD_fetch(nullptr, name, nullptr);
  if (md == nullptr) {
    std::fprintf(stderr, "hallmark: OpenSSL has no %s digest\n", name);
    std::abort();
  }
  return md;
}

Bytes digest(const EVP_MD* md, ByteView data) {
  Bytes out(static_cast<std::size_t>(EVP_MD_get_size(md)));
  unsigned int n = 0;
  if (EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()), &n, md, nullptr) !=
      1) {
    std::fprintf(stderr, "hallmark: EVP_Digest failed\n");
    std::abort();
  }
  out.resize(n);
  return out;
}

constexpr char kBase64Alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kBase64UrlAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

constexpr std::array<signed char, 256> make_table(const char* alphabet) {
  std::array<signed char, 256> table{};
  for (auto& v : table) v = -1;
  for (int i = 0; i < 64; ++i) table[static_cast<unsigned char>(alphabet[i])] = static_cast<signed char>(i);
  return table;
}

constexpr auto kBase64Table = make_table(kBase64Alphabet);
constexpr auto kBase64UrlTable = make_table(kBase64UrlAlphabet);

std::string encode(ByteView data, const char* alphabet, bool pad) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  std::size_t i = 0;
  const auto at = [&](std::size_t k) { return std::to_integer<unsigned>(data[k]); };
  for (; i + 3 <= data.size(); i += 3) {
    const unsigned v = (at(i) << 16) | (at(i + 1) << 8) | at(i + 2);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  const std::size_t rest = data.size() - i;
  if (rest == 1) {
    const unsigned v = at(i) << 16;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    if (pad) out += "==";
  } else if (rest == 2) {
    const unsigned v = (at(i) << 16) | (at(i + 1) << 8);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    if (pad) out += '=';
  }
  return out;
}

std::string describe_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  char buf[16];
  if (u >= 0x21 && u < 0x7f) {
    std::snprintf(buf, sizeof buf, "'%c'", c);
  } else {
    std::snprintf(buf, sizeof buf, "0x%02x", u);
  }
  return buf;
}

// Strict RFC 4648 decoding: only the alphabet, whitespace (space, tab, CR, LF) anywhere, padding
// only at the end and only as much as the length calls for, and zero bits after the last byte.
Result<Bytes> decode(std::string_view text, const std::array<signed char, 256>& table, bool padding_required,
                     std::string_view name) {
  const auto error = [&](std::string what) {
    return fail(Errc::invalid_input, std::string(name) + ": " + what);
  };
  std::string values;  // 6-bit values, one per character
  values.reserve(text.size());
  std::size_t padding = 0;
  for (std::size_t pos = 0; pos < text.size(); ++pos) {
    const char c = text[pos];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    const signed char v = table[static_cast<unsigned char>(c)];
    if (v < 0) return error("invalid character " + describe_char(c) + " at offset " + std::to_string(pos));
    if (padding > 0) return error("data after padding at offset " + std::to_string(pos));
    values += static_cast<char>(v);
  }
  const std::size_t total = values.size() + padding;
  if (padding > 2) return error("too much padding");
  if (values.size() % 4 == 1) return error("truncated input");
  if ((padding > 0 || padding_required) && total % 4 != 0) return error("length is not a multiple of 4");
  if (padding > 0 && padding != 4 - values.size() % 4) return error("too much padding");

  Bytes out;
  out.reserve(values.size() / 4 * 3 + 2);
  const auto val = [&](std::size_t k) {
    return static_cast<unsigned>(static_cast<unsigned char>(values[k]));
  };
  std::size_t i = 0;
  for (; i + 4 <= values.size(); i += 4) {
    const unsigned v = (val(i) << 18) | (val(i + 1) << 12) | (val(i + 2) << 6) | val(i + 3);
    out.push_back(static_cast<std::byte>(v >> 16));
    out.push_back(static_cast<std::byte>((v >> 8) & 0xff));
    out.push_back(static_cast<std::byte>(v & 0xff));
  }
  const std::size_t rest = values.size() - i;
  if (rest == 2) {
    if ((val(i + 1) & 0x0f) != 0) return error("non-zero bits after the last byte");
    out.push_back(static_cast<std::byte>((val(i) << 2) | (val(i + 1) >> 4)));
  } else if (rest == 3) {
    if ((val(i + 2) & 0x03) != 0) return error("non-zero bits after the last byte");
    const unsigned v = (val(i) << 18) | (val(i + 1) << 12) | (val(i + 2) << 6);
    out.push_back(static_cast<std::byte>(v >> 16));
    out.push_back(static_cast<std::byte>((v >> 8) & 0xff));
  }
  return out;
}

}  // namespace

Bytes sha1(ByteView data) {
  static const EVP_MD* md = fetched_md("SHA1");
  return digest(md, data);
}

Bytes sha256(ByteView data) {
  static const EVP_MD* md = fetched_md("SHA256");
  return digest(md, data);
}

Bytes sha384(ByteView data) {
  static const EVP_MD* md = fetched_md("SHA384");
  return digest(md, data);
}

std::string sha256_hex(ByteView data) {
  return to_hex(sha256(data));
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  static const EVP_MD* md = fetched_md("SHA256");
  if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, md, nullptr) != 1) {
    std::fprintf(stderr, "hallmark: cannot initialise SHA-256\n");
    std::abort();
  }
}

Sha256::~Sha256() {
  EVP_MD_CTX_free(ctx_);
}

Sha256::Sha256(Sha256&& other) noexcept : ctx_(std::exchange(other.ctx_, nullptr)) {}

Sha256& Sha256::operator=(Sha256&& other) noexcept {
  if (this != &other) {
    EVP_MD_CTX_free(ctx_);
    ctx_ = std::exchange(other.ctx_, nullptr);
  }
  return *this;
}

void Sha256::update(ByteView data) {
  if (ctx_ == nullptr) std::abort();  // used after move
  if (!data.empty() && EVP_DigestUpdate(ctx_, data.data(), data.size()) != 1) {
    std::fprintf(stderr, "hallmark: SHA-256 update failed\n");
    std::abort();
  }
}

Bytes Sha256::finish() {
  if (ctx_ == nullptr) std::abort();  // used after move
  Bytes out(kSize);
  unsigned int n = 0;
  // Finalising resets nothing: re-initialise so the object can hash a new message.
  if (EVP_DigestFinal_ex(ctx_, reinterpret_cast<unsigned char*>(out.data()), &n) != 1 || n != kSize ||
      EVP_DigestInit_ex(ctx_, nullptr, nullptr) != 1) {
    std::fprintf(stderr, "hallmark: SHA-256 finish failed\n");
    std::abort();
  }
  return out;
}

Bytes random_bytes(std::size_t n) {
  Bytes out(n);
  if (n > 0 && RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    // Without randomness no key, serial or secret is safe: stop rather than go on.
    std::fprintf(stderr, "hallmark: RAND_bytes failed\n");
    std::abort();
  }
  return out;
}

std::string base64_encode(ByteView data, bool wrap) {
  std::string flat = encode(data, kBase64Alphabet, true);
  if (!wrap || flat.size() <= 64) return flat;
  std::string out;
  out.reserve(flat.size() + flat.size() / 64 + 1);
  for (std::size_t i = 0; i < flat.size(); i += 64) {
    if (i > 0) out += '\n';
    out.append(flat, i, 64);
  }
  return out;
}

Result<Bytes> base64_decode(std::string_view text) {
  return decode(text, kBase64Table, true, "base64");
}

std::string base64url_encode(ByteView data) {
  return encode(data, kBase64UrlAlphabet, false);
}

Result<Bytes> base64url_decode(std::string_view text) {
  return decode(text, kBase64UrlTable, false, "base64url");
}

bool equal_constant_time(ByteView a, ByteView b) noexcept {
  if (a.size() != b.size()) return false;
  return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace hallmark::crypto
