#pragma once
// Distinguished names as values. Equality compares decoded names (OpenSSL's canonical form:
// case-folded, whitespace-normalised UTF-8), never raw bytes, so a PrintableString and a UTF8String
// with the same text are equal.
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hallmark/core/bytes.hpp"
#include "hallmark/core/result.hpp"

using X509_NAME = struct X509_name_st;

namespace hallmark::x509 {

struct NameAttribute {
  std::string type;   // short name when OpenSSL knows one ("CN", "O", "serialNumber"), else dotted OID
  std::string value;  // decoded to UTF-8
};

class Name {
 public:
  Name();  // the empty name
  // Attributes in order, one per RDN. Types: short names ("CN", "O", "OU", "C", "serialNumber",
  // "L", "ST", "emailAddress", "UID", "DC") or dotted OIDs. Values are encoded as PrintableString
  // where they fit, else UTF8String (C and serialNumber always PrintableString as X.520 requires).
  [[nodiscard]] static Result<Name> make(const std::vector<NameAttribute>& attributes);
  // "/O=Example/CN=Device" or "O=Example, CN=Device" (RFC 4514 order as written, left first).
  [[nodiscard]] static Result<Name> parse_string(std::string_view text);
  [[nodiscard]] static Result<Name> parse_der(ByteView der);

  [[nodiscard]] Bytes to_der() const;
  // RFC 2253-like, in written order: "CN=Device,O=Example".
  [[nodiscard]] std::string to_string() const;
  [[nodiscard]] std::vector<NameAttribute> attributes() const;
  // The first value of `type` (short name or dotted OID), if present.
  [[nodiscard]] std::optional<std::string> get(std::string_view type) const;
  [[nodiscard]] bool empty() const;

  [[nodiscard]] bool operator==(const Name& other) const;

  [[nodiscard]] const X509_NAME* native() const noexcept { return name_.get(); }
  [[nodiscard]] static Name copy_of(const X509_NAME* name);

 private:
  explicit Name(std::shared_ptr<X509_NAME> name) : name_(std::move(name)) {}
  std::shared_ptr<X509_NAME> name_;
};

}  // namespace hallmark::x509
