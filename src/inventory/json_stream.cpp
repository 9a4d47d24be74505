#include "json_stream.hpp"

#include <cerrno>
#include <cstring>

namespace hallmark::inventory::detail {

namespace {

bool is_space(int c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::unexpected<Error> truncated(std::uint64_t at) {
  return fail(Errc::invalid_input, "truncated JSON at byte " + std::to_string(at));
}

std::unexpected<Error> unexpected_byte(int c, std::uint64_t at, std::string_view expected) {
  std::string shown;
  if (c >= 0x20 && c < 0x7f) {
    shown = std::string("'") + static_cast<char>(c) + "'";
  } else {
    static constexpr char kHex[] = "0123456789abcdef";
    shown = std::string("0x") + kHex[(c >> 4) & 0xf] + kHex[c & 0xf];
  }
  return fail(Errc::invalid_input, "invalid JSON at byte " + std::to_string(at) + ": unexpected " + shown +
                                       ", expected " + std::string(expected));
}

}  // namespace

Result<JsonArraySplitter> JsonArraySplitter::open(const std::string& path, crypto::Sha256* hasher) {
  JsonArraySplitter s;
  s.file_.reset(std::fopen(path.c_str(), "rb"));
  if (!s.file_) return fail(Errc::invalid_input, "cannot open " + path + ": " + std::strerror(errno));
  s.hasher_ = hasher;
  s.buffer_ = std::make_unique<char[]>(kChunk);
  return s;
}

bool JsonArraySplitter::fill() {
  if (!file_) return false;
  const std::size_t n = std::fread(buffer_.get(), 1, kChunk, file_.get());
  if (n == 0) {
    file_.reset();
    return false;
  }
  if (hasher_ != nullptr) hasher_->update(ByteView(reinterpret_cast<const std::byte*>(buffer_.get()), n));
  file_bytes_ += n;
  pos_ = 0;
  end_ = n;
  return true;
}

int JsonArraySplitter::get() {
  if (pos_ == end_ && !fill()) return -1;
  ++consumed_;
  return static_cast<unsigned char>(buffer_[pos_++]);
}

void JsonArraySplitter::drain() {
  while (fill()) {
  }
}

Result<std::optional<JsonElement>> JsonArraySplitter::next() {
  if (finished_) return std::nullopt;
  int c = 0;
  if (!started_) {
    started_ = true;
    c = get();
    if (c == 0xef) {  // UTF-8 byte order mark
      if (get() != 0xbb || get() != 0xbf) return fail(Errc::invalid_input, "invalid JSON at byte 0: bad BOM");
      c = get();
    }
    while (is_space(c)) c = get();
    if (c < 0) return fail(Errc::invalid_input, "empty file: expected a JSON array");
    if (c != '[') return unexpected_byte(c, consumed_ - 1, "'[' (a manifest is a JSON array)");
    c = get();
    while (is_space(c)) c = get();
    if (c == ']') {
      finished_ = true;
    }
  } else {
    c = get();
    while (is_space(c)) c = get();
    if (c == ']') {
      finished_ = true;
    } else if (c == ',') {
      c = get();
      while (is_space(c)) c = get();
    } else if (c < 0) {
      return truncated(consumed_);
    } else {
      return unexpected_byte(c, consumed_ - 1, "',' or ']'");
    }
  }
  if (finished_) {
    for (c = get(); is_space(c); c = get()) {
    }
    if (c >= 0) return unexpected_byte(c, consumed_ - 1, "end of file after the array");
    return std::nullopt;
  }
  if (c < 0) return truncated(consumed_);
  if (c == ']' || c == ',') return unexpected_byte(c, consumed_ - 1, "an array element");

  JsonElement element;
  element.offset = consumed_ - 1;
  // Track nesting and strings only: the element's own syntax is checked when it is parsed.
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (;; c = get()) {
    if (c < 0) return truncated(consumed_);
    if (element.text.size() >= kMaxElement) {
      return fail(Errc::invalid_input,
                  "array element at byte " + std::to_string(element.offset) + " is larger than 16 MiB");
    }
    if (in_string) {
      element.text.push_back(static_cast<char>(c));
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
        if (depth == 0) break;
      }
      continue;
    }
    if (depth == 0 && (is_space(c) || c == ',' || c == ']') && !element.text.empty()) {
      // End of a scalar element: give the byte back.
      --pos_;
      --consumed_;
      break;
    }
    element.text.push_back(static_cast<char>(c));
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth < 0) return unexpected_byte(c, consumed_ - 1, "a value");
      if (depth == 0) break;
    }
  }
  return element;
}

}  // namespace hallmark::inventory::detail
