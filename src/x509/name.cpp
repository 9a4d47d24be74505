#include "hallmark/x509/name.hpp"

#include <openssl/err.h>

#include "internal.hpp"

namespace hallmark::x509 {
namespace {

bool is_ia5(std::string_view s) {
  for (unsigned char c : s) {
    if (c > 0x7f) return false;
  }
  return true;
}

bool is_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (std::size_t k = 1; k <= n; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

std::shared_ptr<X509_NAME> own(X509_NAME* name) {
  // Encode once now so later const uses (X509_NAME_cmp, i2d) never refresh a shared cache.
  if (i2d_X509_NAME(name, nullptr) < 0) {
    X509_NAME_free(name);
    throw std::bad_alloc();
  }
  return std::shared_ptr<X509_NAME>(name, X509_NAME_free);
}

// RFC 4514 §2.4 escaping.
std::string escape_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    const char c = v[i];
    const bool special = c == ',' || c == '+' || c == '"' || c == '\\' || c == '<' || c == '>' || c == ';' ||
                         (i == 0 && (c == '#' || c == ' ')) || (i + 1 == v.size() && c == ' ');
    if (special) out += '\\';
    out += c;
  }
  return out;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Splits on unescaped `sep`, resolving backslash escapes (RFC 4514 "\," and "\4F" forms).
Result<std::vector<std::string>> split_escaped(std::string_view text, char sep, bool trim_parts) {
  std::vector<std::string> parts;
  bool any = false;
  // Keeps "type=value" trimming correct around escaped trailing spaces: trim raw, then unescape.
  std::string raw;
  auto flush = [&]() {
    parts.push_back(trim_parts ? trim(raw) : raw);
    raw.clear();
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    any = true;
    if (c == '\\') {
      if (i + 1 >= text.size()) return fail(Errc::invalid_input, "name: dangling '\\'");
      raw += c;
      raw += text[++i];
      continue;
    }
    if (c == sep) {
      flush();
      continue;
    }
    raw += c;
  }
  if (any) flush();
  return parts;
}

Result<std::string> unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    if (i + 1 >= s.size()) return fail(Errc::invalid_input, "name: dangling '\\'");
    const int hi = hex_value(s[i + 1]);
    const int lo = i + 2 < s.size() ? hex_value(s[i + 2]) : -1;
    if (hi >= 0 && lo >= 0) {
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += s[++i];
    }
  }
  return out;
}

}  // namespace

Name::Name() : name_(own(detail::check_alloc(X509_NAME_new()))) {}

Result<Name> Name::make(const std::vector<NameAttribute>& attributes) {
  crypto::X509NamePtr name(detail::check_alloc(X509_NAME_new()));
  for (const auto& a : attributes) {
    if (a.type.empty()) return fail(Errc::invalid_input, "name: empty attribute type");
    if (a.value.empty()) return fail(Errc::invalid_input, "name: empty value for " + a.type);
    crypto::Asn1ObjectPtr obj(OBJ_txt2obj(a.type.c_str(), 0));
    if (!obj) {
      ERR_clear_error();
      return fail(Errc::invalid_input, "name: unknown attribute type " + a.type);
    }
    const int nid = OBJ_obj2nid(obj.get());
    int type = V_ASN1_UTF8STRING;
    if (nid == NID_countryName || nid == NID_serialNumber) {
      // X.520 requires PrintableString for these two.
      if (!detail::is_printable(a.value)) {
        return fail(Errc::invalid_input, "name: " + a.type + " must be a PrintableString: " + a.value);
      }
      if (nid == NID_countryName && a.value.size() != 2) {
        return fail(Errc::invalid_input, "name: C must be two letters: " + a.value);
      }
      type = V_ASN1_PRINTABLESTRING;
    } else if (nid == NID_pkcs9_emailAddress || nid == NID_domainComponent) {
      // IA5String by definition (RFC 5280 §4.1.2.6, RFC 4519).
      if (!is_ia5(a.value))
        return fail(Errc::invalid_input, "name: " + a.type + " must be ASCII: " + a.value);
      type = V_ASN1_IA5STRING;
    } else if (detail::is_printable(a.value)) {
      type = V_ASN1_PRINTABLESTRING;
    } else if (!is_utf8(a.value)) {
      return fail(Errc::invalid_input, "name: value of " + a.type + " is not UTF-8");
    }
    if (X509_NAME_add_entry_by_OBJ(name.get(), obj.get(), type,
                                   reinterpret_cast<const unsigned char*>(a.value.data()),
                                   static_cast<int>(a.value.size()), -1, 0) != 1) {
      return crypto::openssl_fail(Errc::invalid_input, "name: " + a.type);
    }
  }
  return Name(own(name.release()));
}

Result<Name> Name::parse_string(std::string_view text) {
  std::string_view t = text;
  while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
  std::vector<std::string> parts;
  if (!t.empty() && t.front() == '/') {
    t.remove_prefix(1);
    parts = HM_TRY(split_escaped(t, '/', false));
  } else if (!t.empty()) {
    parts = HM_TRY(split_escaped(t, ',', true));
  }
  std::vector<NameAttribute> attributes;
  attributes.reserve(parts.size());
  for (const auto& part : parts) {
    const auto eq = part.find('=');
    if (eq == std::string::npos || eq == 0) {
      return fail(Errc::invalid_input, "name: expected type=value, got \"" + part + "\"");
    }
    auto value = HM_TRY(unescape(trim(std::string_view(part).substr(eq + 1))));
    attributes.push_back({trim(std::string_view(part).substr(0, eq)), std::move(value)});
  }
  return make(attributes);
}

Result<Name> Name::parse_der(ByteView der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  X509_NAME* raw = d2i_X509_NAME(nullptr, &p, static_cast<long>(der.size()));
  if (raw == nullptr) return crypto::openssl_fail(Errc::invalid_input, "name: bad DER");
  crypto::X509NamePtr name(raw);
  if (p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    return fail(Errc::invalid_input, "name: trailing bytes after DER");
  }
  return Name(own(name.release()));
}

Bytes Name::to_der() const {
  return detail::i2d_bytes(name_.get(), i2d_X509_NAME);
}

std::string Name::to_string() const {
  std::string out;
  const int n = X509_NAME_entry_count(name_.get());
  for (int i = 0; i < n; ++i) {
    const X509_NAME_ENTRY* e = X509_NAME_get_entry(name_.get(), i);
    if (i > 0) out += ',';
    out += detail::oid_short_name(X509_NAME_ENTRY_get_object(e));
    out += '=';
    out += escape_value(detail::asn1_string_to_utf8(X509_NAME_ENTRY_get_data(e)));
  }
  return out;
}

std::vector<NameAttribute> Name::attributes() const {
  std::vector<NameAttribute> out;
  const int n = X509_NAME_entry_count(name_.get());
  out.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    const X509_NAME_ENTRY* e = X509_NAME_get_entry(name_.get(), i);
    out.push_back({detail::oid_short_name(X509_NAME_ENTRY_get_object(e)),
                   detail::asn1_string_to_utf8(X509_NAME_ENTRY_get_data(e))});
  }
  return out;
}

std::optional<std::string> Name::get(std::string_view type) const {
  crypto::Asn1ObjectPtr obj(OBJ_txt2obj(std::string(type).c_str(), 0));
  if (!obj) {
    ERR_clear_error();
    return std::nullopt;
  }
  const int i = X509_NAME_get_index_by_OBJ(name_.get(), obj.get(), -1);
  if (i < 0) return std::nullopt;
  return detail::asn1_string_to_utf8(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name_.get(), i)));
}

bool Name::empty() const {
  return X509_NAME_entry_count(name_.get()) == 0;
}

bool Name::operator==(const Name& other) const {
  // Canonical encodings: case-folded, whitespace-normalised UTF-8, whatever the string types.
  return X509_NAME_cmp(name_.get(), other.name_.get()) == 0;
}

Name Name::copy_of(const X509_NAME* name) {
  return Name(own(detail::check_alloc(X509_NAME_dup(name))));
}

}  // namespace hallmark::x509
