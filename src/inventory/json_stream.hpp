#pragma once
// Splits a top-level JSON array into its elements' bytes without parsing the whole document: the
// file is read in chunks and only one element is held at a time, so memory stays constant whatever
// the file's size. Each element is then parsed on its own (nlohmann::json::parse).
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "hallmark/core/result.hpp"
#include "hallmark/crypto/digest.hpp"

namespace hallmark::inventory::detail {

struct JsonElement {
  std::string text;
  std::uint64_t offset = 0;  // byte offset of the element's first byte in the file
};

class JsonArraySplitter final {
 public:
  static constexpr std::size_t kChunk = 1 << 20;
  static constexpr std::size_t kMaxElement = 16 << 20;

  // `hasher` (optional) sees every byte of the file, for the manifest's SHA-256.
  [[nodiscard]] static Result<JsonArraySplitter> open(const std::string& path, crypto::Sha256* hasher);

  // The next element, nullopt after the closing ']' (and only whitespace after it). A framing
  // error (truncation, bytes between elements, not an array) is invalid_input naming the byte.
  [[nodiscard]] Result<std::optional<JsonElement>> next();

  // Reads the rest of the file into the hasher (after an early stop).
  void drain();
  [[nodiscard]] std::uint64_t bytes_read() const { return consumed_; }

 private:
  JsonArraySplitter() = default;
  // Next byte, or -1 at end of file.
  int get();
  [[nodiscard]] bool fill();

  struct FileCloser {
    void operator()(std::FILE* f) const noexcept { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, FileCloser> file_;
  crypto::Sha256* hasher_ = nullptr;
  std::unique_ptr<char[]> buffer_;
  std::size_t pos_ = 0;
  std::size_t end_ = 0;
  std::uint64_t consumed_ = 0;  // bytes handed out by get()
  std::uint64_t file_bytes_ = 0;
  bool started_ = false;
  bool finished_ = false;
};

}  // namespace hallmark::inventory::detail
