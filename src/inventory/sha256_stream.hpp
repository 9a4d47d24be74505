#pragma once
// Incremental SHA-256 for a manifest file read in chunks. crypto only offers one-shot digests and
// inventory may not include OpenSSL: replace with crypto's incremental digest once it has one.
#include <array>
#include <cstdint>
#include <string>

#include "hallmark/core/bytes.hpp"

namespace hallmark::inventory::detail {

class Sha256Stream final {
 public:
  Sha256Stream();
  void update(ByteView data);
  // Lowercase hex; the object must not be updated afterwards.
  [[nodiscard]] std::string finish_hex();

 private:
  void block(const std::uint8_t* p);
  std::array<std::uint32_t, 8> h_;
  std::array<std::uint8_t, 64> buffer_{};
  std::size_t buffered_ = 0;
  std::uint64_t length_ = 0;
};

}  // namespace hallmark::inventory::detail
