#include "hallmark/core/secret.hpp"

#include <cstdlib>
#include <cstring>
#include <fstream>

namespace hallmark {

bool Secret::equals(std::string_view other) const noexcept {
  // Length is not secret; the content comparison does not stop early.
  if (other.size() != value_.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < other.size(); ++i) {
    diff |= static_cast<unsigned char>(value_[i] ^ other[i]);
  }
  return diff == 0;
}

void Secret::wipe() noexcept {
  if (!value_.empty()) explicit_bzero(value_.data(), value_.size());
  value_.clear();
}

Result<Secret> read_secret(std::string_view source) {
  if (source.starts_with("env:")) {
    const std::string name(source.substr(4));
    if (name.empty()) return fail(Errc::invalid_input, "secret source 'env:' names no variable");
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return fail(Errc::not_found, "environment variable " + name + " is not set");
    if (*value == '\0') return fail(Errc::invalid_input, "environment variable " + name + " is empty");
    return Secret(value);
  }
  if (source.starts_with("file:")) {
    const std::string path(source.substr(5));
    std::ifstream in(path, std::ios::binary);
    if (!in) return fail(Errc::not_found, "cannot open secret file " + path);
    Secret line;
    std::string buffer;
    std::getline(in, buffer);
    while (!buffer.empty() && (buffer.back() == '\r' || buffer.back() == '\n')) buffer.pop_back();
    line = Secret(std::move(buffer));
    if (!buffer.empty()) explicit_bzero(buffer.data(), buffer.size());
    if (line.empty()) return fail(Errc::invalid_input, "secret file " + path + " is empty");
    return line;
  }
  return fail(Errc::invalid_input, "secret source must be 'file:PATH' or 'env:NAME', got '" +
                                       std::string(source.substr(0, 8)) + "...'");
}

}  // namespace hallmark
