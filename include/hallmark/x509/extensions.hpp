#pragma once
// X.509 extensions as small value types. A certificate template carries the ones a profile wants;
// a parsed certificate exposes the ones it has.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "hallmark/core/bytes.hpp"
#include "hallmark/x509/name.hpp"

namespace hallmark::x509 {

inline constexpr const char* kOidHardwareModuleName = "1.3.6.1.5.5.7.8.4";
inline constexpr const char* kOidClientAuth = "1.3.6.1.5.5.7.3.2";
inline constexpr const char* kOidServerAuth = "1.3.6.1.5.5.7.3.1";
inline constexpr const char* kOidOcspSigning = "1.3.6.1.5.5.7.3.9";
inline constexpr const char* kOidOcspNoCheck = "1.3.6.1.5.5.7.48.1.5";

// "1.3.6.1.5.5.7.8.4": at least two arcs of digits, no empty arc.
[[nodiscard]] bool is_dotted_oid(std::string_view s) noexcept;

struct BasicConstraints {
  bool ca = false;
  std::optional<int> path_length;
  bool critical = true;
  bool operator==(const BasicConstraints&) const = default;
};

// RFC 5280 §4.2.1.3 bits.
enum KeyUsageBit : std::uint16_t {
  kDigitalSignature = 1 << 0,
  kNonRepudiation = 1 << 1,
  kKeyEncipherment = 1 << 2,
  kDataEncipherment = 1 << 3,
  kKeyAgreement = 1 << 4,
  kKeyCertSign = 1 << 5,
  kCrlSign = 1 << 6,
  kEncipherOnly = 1 << 7,
  kDecipherOnly = 1 << 8,
};

struct KeyUsage {
  std::uint16_t bits = 0;
  bool critical = true;
  [[nodiscard]] bool has(KeyUsageBit bit) const { return (bits & bit) != 0; }
  // "digitalSignature,keyAgreement"
  [[nodiscard]] std::string to_string() const;
  bool operator==(const KeyUsage&) const = default;
};
// "digitalSignature" | "nonRepudiation" | "contentCommitment" | "keyEncipherment" | ... | "cRLSign"
[[nodiscard]] Result<KeyUsageBit> parse_key_usage_bit(std::string_view name);

struct ExtendedKeyUsage {
  std::vector<std::string> oids;  // dotted
  bool critical = false;
  bool operator==(const ExtendedKeyUsage&) const = default;
};
// "clientAuth" | "serverAuth" | "OCSPSigning" | "codeSigning" | "emailProtection" | "timeStamping"
// or a dotted OID, to a dotted OID.
[[nodiscard]] Result<std::string> parse_eku(std::string_view name);

// RFC 4108 HardwareModuleName ::= SEQUENCE { hwType OBJECT IDENTIFIER, hwSerialNum OCTET STRING }
struct HardwareModuleName {
  std::string hw_type;  // dotted OID
  Bytes hw_serial_num;
  bool operator==(const HardwareModuleName&) const = default;
};

struct GeneralName {
  enum class Kind { dns, ip, uri, email, directory, hardware_module_name, other_name };
  Kind kind = Kind::dns;
  std::string value;  // dns, uri, email; ip as text ("192.0.2.1", "2001:db8::1"); other_name: type OID
  std::optional<Name> directory;
  std::optional<HardwareModuleName> hardware_module_name;
  Bytes other_value_der;  // other_name: the DER of the value

  [[nodiscard]] static GeneralName dns(std::string v) { return {Kind::dns, std::move(v), {}, {}, {}}; }
  [[nodiscard]] static GeneralName uri(std::string v) { return {Kind::uri, std::move(v), {}, {}, {}}; }
  [[nodiscard]] static GeneralName ip(std::string v) { return {Kind::ip, std::move(v), {}, {}, {}}; }
  [[nodiscard]] static GeneralName email(std::string v) { return {Kind::email, std::move(v), {}, {}, {}}; }
  [[nodiscard]] static GeneralName dir(Name n) { return {Kind::directory, {}, std::move(n), {}, {}}; }
  [[nodiscard]] static GeneralName hmn(HardwareModuleName h) {
    return {Kind::hardware_module_name, {}, {}, std::move(h), {}};
  }
  // "DNS:example.com", "IP:192.0.2.1", "URI:...", "email:...", "DirName:CN=x",
  // "HardwareModuleName:1.2.3;0123AB"
  [[nodiscard]] std::string to_string() const;
  bool operator==(const GeneralName&) const;
};

struct SubjectAltName {
  std::vector<GeneralName> names;
  bool critical = false;  // RFC 5280: critical when the subject is empty
  bool operator==(const SubjectAltName&) const = default;
};

struct CrlDistributionPoints {
  std::vector<std::string> uris;
  bool operator==(const CrlDistributionPoints&) const = default;
};

struct AuthorityInfoAccess {
  std::vector<std::string> ocsp;
  std::vector<std::string> ca_issuers;
  bool operator==(const AuthorityInfoAccess&) const = default;
};

struct CertificatePolicies {
  std::vector<std::string> oids;  // dotted
  bool operator==(const CertificatePolicies&) const = default;
};

}  // namespace hallmark::x509
