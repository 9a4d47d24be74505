#include "hallmark/crypto/handle.hpp"

#include <openssl/err.h>

#include <climits>

namespace hallmark::crypto {

std::string openssl_error(std::string_view what) {
  std::string out(what);
  const char* sep = ": ";
  const char* file = nullptr;
  const char* data = nullptr;
  int line = 0;
  int flags = 0;
  unsigned long code = 0;
  while ((code = ERR_get_error_all(&file, &line, nullptr, &data, &flags)) != 0) {
    const char* reason = ERR_reason_error_string(code);
    std::string text = reason != nullptr ? reason : "error:" + std::to_string(code);
    if (data != nullptr && (flags & ERR_TXT_STRING) != 0 && *data != '\0')
      text += " (" + std::string(data) + ")";
    out += sep;
    out += text;
    sep = "; ";
  }
  if (out.size() == what.size()) out += ": unknown OpenSSL error";
  return out;
}

BioPtr make_read_bio(const void* data, std::size_t size) {
  // BIO_new_mem_buf takes an int length; larger inputs are not ours to parse.
  if (size > static_cast<std::size_t>(INT_MAX)) return nullptr;
  static const char kEmpty = '\0';
  return BioPtr(BIO_new_mem_buf(size == 0 ? &kEmpty : data, static_cast<int>(size)));
}

std::string bio_to_string(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  if (n <= 0 || data == nullptr) return {};
  return std::string(data, static_cast<std::size_t>(n));
}

}  // namespace hallmark::crypto
