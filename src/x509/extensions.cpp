#include "hallmark/x509/extensions.hpp"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <strings.h>

#include <array>
#include <cctype>

#include "internal.hpp"

namespace hallmark::x509 {
namespace {

constexpr std::array<std::pair<const char*, KeyUsageBit>, 9> kKeyUsageNames{{
    {"digitalSignature", kDigitalSignature},
    {"nonRepudiation", kNonRepudiation},
    {"keyEncipherment", kKeyEncipherment},
    {"dataEncipherment", kDataEncipherment},
    {"keyAgreement", kKeyAgreement},
    {"keyCertSign", kKeyCertSign},
    {"cRLSign", kCrlSign},
    {"encipherOnly", kEncipherOnly},
    {"decipherOnly", kDecipherOnly},
}};

constexpr std::array<std::pair<const char*, const char*>, 6> kEkuNames{{
    {"serverAuth", "1.3.6.1.5.5.7.3.1"},
    {"clientAuth", "1.3.6.1.5.5.7.3.2"},
    {"codeSigning", "1.3.6.1.5.5.7.3.3"},
    {"emailProtection", "1.3.6.1.5.5.7.3.4"},
    {"timeStamping", "1.3.6.1.5.5.7.3.8"},
    {"OCSPSigning", "1.3.6.1.5.5.7.3.9"},
}};

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && ::strncasecmp(a.data(), b.data(), a.size()) == 0;
}

std::string upper_hex(ByteView b) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(b.size() * 2);
  for (auto byte : b) {
    const auto v = std::to_integer<unsigned>(byte);
    out += kDigits[v >> 4];
    out += kDigits[v & 0xf];
  }
  return out;
}

// Normalises an IP address text to its binary form, for comparison.
std::optional<Bytes> ip_bytes(const std::string& text) {
  std::array<unsigned char, 16> buf{};
  if (::inet_pton(AF_INET, text.c_str(), buf.data()) == 1) {
    const auto* b = reinterpret_cast<const std::byte*>(buf.data());
    return Bytes(b, b + 4);
  }
  if (::inet_pton(AF_INET6, text.c_str(), buf.data()) == 1) {
    const auto* b = reinterpret_cast<const std::byte*>(buf.data());
    return Bytes(b, b + 16);
  }
  return std::nullopt;
}

Result<HardwareModuleName> parse_hardware_module_name(const ASN1_TYPE* value) {
  if (value == nullptr || value->type != V_ASN1_SEQUENCE) {
    return fail(Errc::invalid_input, "hardwareModuleName: not a SEQUENCE");
  }
  const ASN1_STRING* seq = value->value.sequence;
  const unsigned char* p = ASN1_STRING_get0_data(seq);
  long len = 0;
  int tag = 0;
  int cls = 0;
  const int r = ASN1_get_object(&p, &len, &tag, &cls, ASN1_STRING_length(seq));
  if ((r & 0x80) != 0 || tag != V_ASN1_SEQUENCE || cls != V_ASN1_UNIVERSAL || (r & V_ASN1_CONSTRUCTED) == 0) {
    ERR_clear_error();
    return fail(Errc::invalid_input, "hardwareModuleName: malformed SEQUENCE");
  }
  const unsigned char* end = p + len;
  crypto::Asn1ObjectPtr type(d2i_ASN1_OBJECT(nullptr, &p, end - p));
  if (!type) {
    ERR_clear_error();
    return fail(Errc::invalid_input, "hardwareModuleName: bad hwType");
  }
  crypto::Asn1OctetStringPtr serial(d2i_ASN1_OCTET_STRING(nullptr, &p, end - p));
  if (!serial || p != end) {
    ERR_clear_error();
    return fail(Errc::invalid_input, "hardwareModuleName: bad hwSerialNum");
  }
  return HardwareModuleName{detail::oid_text(type.get()), detail::to_bytes(serial.get())};
}

Result<detail::Asn1TypePtr> encode_hardware_module_name(const HardwareModuleName& hmn) {
  crypto::Asn1ObjectPtr type(OBJ_txt2obj(hmn.hw_type.c_str(), 1));
  if (!type) {
    ERR_clear_error();
    return fail(Errc::invalid_input, "hardwareModuleName: hwType is not a dotted OID: " + hmn.hw_type);
  }
  Bytes content = detail::i2d_bytes(type.get(), i2d_ASN1_OBJECT);
  detail::der_append_tlv(content, V_ASN1_OCTET_STRING, hmn.hw_serial_num);
  Bytes seq;
  seq.reserve(content.size() + 4);
  detail::der_append_tlv(seq, V_ASN1_SEQUENCE | V_ASN1_CONSTRUCTED, content);
  detail::Asn1StringPtr str(detail::check_alloc(ASN1_STRING_type_new(V_ASN1_SEQUENCE)));
  if (ASN1_STRING_set(str.get(), seq.data(), static_cast<int>(seq.size())) != 1) throw std::bad_alloc();
  detail::Asn1TypePtr value(detail::check_alloc(ASN1_TYPE_new()));
  ASN1_TYPE_set(value.get(), V_ASN1_SEQUENCE, str.release());
  return value;
}

}  // namespace

std::string KeyUsage::to_string() const {
  std::string out;
  for (const auto& [name, bit] : kKeyUsageNames) {
    if ((bits & bit) == 0) continue;
    if (!out.empty()) out += ',';
    out += name;
  }
  return out;
}

Result<KeyUsageBit> parse_key_usage_bit(std::string_view name) {
  if (iequals(name, "contentCommitment")) return kNonRepudiation;
  for (const auto& [n, bit] : kKeyUsageNames) {
    if (iequals(name, n)) return bit;
  }
  return fail(Errc::invalid_input, "unknown key usage: " + std::string(name));
}

Result<std::string> parse_eku(std::string_view name) {
  for (const auto& [n, oid] : kEkuNames) {
    if (iequals(name, n)) return std::string(oid);
  }
  if (is_dotted_oid(name)) {
    crypto::Asn1ObjectPtr obj(OBJ_txt2obj(std::string(name).c_str(), 1));
    if (obj) return detail::oid_text(obj.get());
    ERR_clear_error();
  }
  return fail(Errc::invalid_input, "unknown extended key usage: " + std::string(name));
}

std::string GeneralName::to_string() const {
  switch (kind) {
    case Kind::dns: return "DNS:" + value;
    case Kind::ip: return "IP:" + value;
    case Kind::uri: return "URI:" + value;
    case Kind::email: return "email:" + value;
    case Kind::directory: return "DirName:" + (directory ? directory->to_string() : std::string());
    case Kind::hardware_module_name:
      if (!hardware_module_name) return "HardwareModuleName:";
      return "HardwareModuleName:" + hardware_module_name->hw_type + ";" +
             upper_hex(hardware_module_name->hw_serial_num);
    case Kind::other_name: return "otherName:" + value + ";" + upper_hex(other_value_der);
  }
  return {};
}

bool GeneralName::operator==(const GeneralName& other) const {
  if (kind != other.kind) return false;
  switch (kind) {
    case Kind::dns: return iequals(value, other.value);  // DNS names are case-insensitive
    case Kind::ip: {
      const auto a = ip_bytes(value);
      const auto b = ip_bytes(other.value);
      return a && b ? *a == *b : value == other.value;
    }
    case Kind::uri:
    case Kind::email: return value == other.value;
    case Kind::directory: return directory == other.directory;
    case Kind::hardware_module_name: return hardware_module_name == other.hardware_module_name;
    case Kind::other_name: return value == other.value && other_value_der == other.other_value_der;
  }
  return false;
}

namespace detail {

Result<GeneralName> from_general_name(const GENERAL_NAME* gen) {
  switch (gen->type) {
    case GEN_DNS: return GeneralName::dns(asn1_string_to_utf8(gen->d.dNSName));
    case GEN_URI: return GeneralName::uri(asn1_string_to_utf8(gen->d.uniformResourceIdentifier));
    case GEN_EMAIL: return GeneralName::email(asn1_string_to_utf8(gen->d.rfc822Name));
    case GEN_IPADD: {
      const auto raw = view(gen->d.iPAddress);
      char buf[INET6_ADDRSTRLEN] = {};
      const int family = raw.size() == 4 ? AF_INET : raw.size() == 16 ? AF_INET6 : 0;
      if (family == 0 || ::inet_ntop(family, raw.data(), buf, sizeof buf) == nullptr) {
        return fail(Errc::invalid_input, "SAN: IP address of " + std::to_string(raw.size()) + " bytes");
      }
      return GeneralName::ip(buf);
    }
    case GEN_DIRNAME: return GeneralName::dir(Name::copy_of(gen->d.directoryName));
    case GEN_OTHERNAME: {
      const OTHERNAME* on = gen->d.otherName;
      const std::string type = oid_text(on->type_id);
      if (type == kOidHardwareModuleName) {
        // A malformed one is kept as a plain otherName rather than dropped.
        if (auto hmn = parse_hardware_module_name(on->value)) return GeneralName::hmn(std::move(*hmn));
      }
      GeneralName g;
      g.kind = GeneralName::Kind::other_name;
      g.value = type;
      g.other_value_der = i2d_bytes(on->value, i2d_ASN1_TYPE);
      return g;
    }
    default:
      return fail(Errc::invalid_input, "SAN: unsupported GeneralName type " + std::to_string(gen->type));
  }
}

namespace {

Result<GeneralNamePtr> make_ia5_name(int type, const std::string& value) {
  if (value.empty()) return fail(Errc::invalid_input, "SAN: empty name");
  for (unsigned char c : value) {
    if (c > 0x7f) return fail(Errc::invalid_input, "SAN: not ASCII: " + value);
  }
  crypto::Asn1OctetStringPtr s(check_alloc(ASN1_IA5STRING_new()));
  if (ASN1_STRING_set(s.get(), value.data(), static_cast<int>(value.size())) != 1) throw std::bad_alloc();
  GeneralNamePtr gen(check_alloc(GENERAL_NAME_new()));
  GENERAL_NAME_set0_value(gen.get(), type, s.release());
  return gen;
}

Result<GeneralNamePtr> make_general_name(const GeneralName& name) {
  using Kind = GeneralName::Kind;
  switch (name.kind) {
    case Kind::dns: return make_ia5_name(GEN_DNS, name.value);
    case Kind::uri: return make_ia5_name(GEN_URI, name.value);
    case Kind::email: return make_ia5_name(GEN_EMAIL, name.value);
    case Kind::ip: {
      crypto::Asn1OctetStringPtr ip(a2i_IPADDRESS(name.value.c_str()));
      if (!ip) {
        ERR_clear_error();
        return fail(Errc::invalid_input, "SAN: not an IP address: " + name.value);
      }
      GeneralNamePtr gen(check_alloc(GENERAL_NAME_new()));
      GENERAL_NAME_set0_value(gen.get(), GEN_IPADD, ip.release());
      return gen;
    }
    case Kind::directory: {
      if (!name.directory) return fail(Errc::invalid_input, "SAN: directoryName without a name");
      crypto::X509NamePtr dn(check_alloc(X509_NAME_dup(name.directory->native())));
      GeneralNamePtr gen(check_alloc(GENERAL_NAME_new()));
      GENERAL_NAME_set0_value(gen.get(), GEN_DIRNAME, dn.release());
      return gen;
    }
    case Kind::hardware_module_name: {
      if (!name.hardware_module_name) return fail(Errc::invalid_input, "SAN: hardwareModuleName missing");
      auto value = encode_hardware_module_name(*name.hardware_module_name);
      if (!value) return std::unexpected(value.error());
      crypto::Asn1ObjectPtr oid(check_alloc(OBJ_txt2obj(kOidHardwareModuleName, 1)));
      GeneralNamePtr gen(check_alloc(GENERAL_NAME_new()));
      if (GENERAL_NAME_set0_othername(gen.get(), oid.get(), value->get()) != 1) throw std::bad_alloc();
      oid.release();
      (void)value->release();
      return gen;
    }
    case Kind::other_name: {
      crypto::Asn1ObjectPtr oid(OBJ_txt2obj(name.value.c_str(), 1));
      if (!oid) {
        ERR_clear_error();
        return fail(Errc::invalid_input, "SAN: otherName type is not a dotted OID: " + name.value);
      }
      const auto* p = reinterpret_cast<const unsigned char*>(name.other_value_der.data());
      Asn1TypePtr value(d2i_ASN1_TYPE(nullptr, &p, static_cast<long>(name.other_value_der.size())));
      if (!value || p != reinterpret_cast<const unsigned char*>(name.other_value_der.data()) +
                             name.other_value_der.size()) {
        ERR_clear_error();
        return fail(Errc::invalid_input, "SAN: otherName value is not one DER element");
      }
      GeneralNamePtr gen(check_alloc(GENERAL_NAME_new()));
      if (GENERAL_NAME_set0_othername(gen.get(), oid.get(), value.get()) != 1) throw std::bad_alloc();
      oid.release();
      value.release();
      return gen;
    }
  }
  return fail(Errc::invalid_input, "SAN: unknown kind");
}

}  // namespace

Result<crypto::GeneralNamesPtr> to_general_names(const std::vector<GeneralName>& names) {
  crypto::GeneralNamesPtr gens(check_alloc(sk_GENERAL_NAME_new_null()));
  for (const auto& n : names) {
    auto gen = make_general_name(n);
    if (!gen) return std::unexpected(gen.error());
    if (sk_GENERAL_NAME_push(gens.get(), gen->get()) <= 0) throw std::bad_alloc();
    (void)gen->release();
  }
  return gens;
}

std::optional<BasicConstraints> basic_constraints_from(ExtStack* exts) {
  int crit = 0;
  BasicConstraintsPtr bc(
      static_cast<BASIC_CONSTRAINTS*>(X509V3_get_d2i(exts, NID_basic_constraints, &crit, nullptr)));
  if (!bc) {
    ERR_clear_error();
    return std::nullopt;
  }
  BasicConstraints out;
  out.ca = bc->ca != 0;
  out.critical = crit == 1;
  if (bc->pathlen != nullptr) out.path_length = static_cast<int>(ASN1_INTEGER_get(bc->pathlen));
  return out;
}

std::optional<SubjectAltName> subject_alt_name_from(ExtStack* exts) {
  int crit = 0;
  crypto::GeneralNamesPtr gens(
      static_cast<GENERAL_NAMES*>(X509V3_get_d2i(exts, NID_subject_alt_name, &crit, nullptr)));
  if (!gens) {
    ERR_clear_error();
    return std::nullopt;
  }
  SubjectAltName san;
  san.critical = crit == 1;
  for (int i = 0; i < sk_GENERAL_NAME_num(gens.get()); ++i) {
    // Kinds we do not model (x400Address, ediPartyName, registeredID) are left out.
    if (auto g = from_general_name(sk_GENERAL_NAME_value(gens.get(), i))) san.names.push_back(std::move(*g));
  }
  return san;
}

std::optional<Bytes> authority_key_id_from(ExtStack* exts) {
  AuthorityKeyIdPtr akid(
      static_cast<AUTHORITY_KEYID*>(X509V3_get_d2i(exts, NID_authority_key_identifier, nullptr, nullptr)));
  if (!akid || akid->keyid == nullptr) {
    ERR_clear_error();
    return std::nullopt;
  }
  return to_bytes(akid->keyid);
}

}  // namespace detail
bool is_dotted_oid(std::string_view s) noexcept {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  int dots = 0;
  char prev = '.';
  for (char c : s) {
    if (c == '.') {
      if (prev == '.') return false;
      ++dots;
    } else if (c < '0' || c > '9') {
      return false;
    }
    prev = c;
  }
  return dots >= 1;
}

}  // namespace hallmark::x509
