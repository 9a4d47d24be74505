#pragma once
// Certificate profiles are data: TOML files in the PKI home's profiles/ folder. A profile decides the
// subject and every extension of what it issues; a CSR only supplies the key (and, where the profile
// allows it, a SAN). The TOML schema, its defaults and the built-in profiles: docs/profiles.md.
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hallmark/core/result.hpp"
#include "hallmark/crypto/key.hpp"
#include "hallmark/x509/extensions.hpp"

namespace hallmark::ca {

enum class ProfileKind { root, sub_ca, end_entity };
[[nodiscard]] std::string_view to_string(ProfileKind kind) noexcept;

// Sub-CA roles (DESIGN.md §1): what a CA is for.
inline constexpr std::string_view kCaRoles[] = {"root", "bc", "idc", "tls", "ocsp", "manifest-signer"};
[[nodiscard]] bool is_ca_role(std::string_view role);

// One RDN of the subject: its type and a template with {variables} filled from the request
// (e.g. {"serialNumber", "{serial}"}). A rule whose variables are missing fails the issuance when
// required, and is left out otherwise.
struct SubjectRule {
  std::string type;
  std::string value;
  bool required = true;
  bool operator==(const SubjectRule&) const = default;
};

struct KeyPolicy {
  std::vector<std::string> curves{"P-256", "P-384"};  // EC curves allowed ("P-256" names)
  bool allow_ed25519 = true;
  int min_rsa_bits = 2048;  // 0: RSA not allowed
  int max_rsa_bits = 4096;
  bool operator==(const KeyPolicy&) const = default;
};

struct Profile {
  std::string name;
  ProfileKind kind = ProfileKind::end_entity;
  std::string description;

  std::vector<SubjectRule> subject;
  // Default values for {variables} a request does not supply (e.g. org = "Example OEM").
  std::map<std::string, std::string> variables;
  KeyPolicy key_policy;

  // nullopt: no expiry (notAfter 99991231235959Z, 802.1AR §8.5).
  std::optional<std::chrono::seconds> lifetime;
  std::chrono::seconds backdate{std::chrono::minutes{5}};  // notBefore = now - backdate (clock skew)

  std::optional<x509::BasicConstraints> basic_constraints;
  std::optional<x509::KeyUsage> key_usage;
  bool key_agreement_for_ec = false;  // add keyAgreement when the subject key is EC
  std::optional<x509::ExtendedKeyUsage> extended_key_usage;
  // SAN otherName hardwareModuleName {hwType, hwSerialNum = bytes of {hw_serial} variable}.
  std::optional<std::string> hardware_module_name_type;
  std::vector<std::string> san_dns;  // templates, e.g. "{host}"
  std::vector<std::string> san_uri;
  std::vector<std::string> san_ip;
  bool allow_csr_san = false;  // copy the CSR's SAN (DNS, IP, URI only) when set
  std::vector<std::string> crl_distribution_points;
  std::vector<std::string> ocsp_urls;
  std::vector<std::string> ca_issuers_urls;
  std::vector<std::string> certificate_policies;
  bool ocsp_no_check = false;

  // Parses a profile TOML; `origin` names the file in error messages ("profiles/idc.toml: ...").
  [[nodiscard]] static Result<Profile> parse_toml(std::string_view text, std::string_view origin);
  [[nodiscard]] static Result<Profile> load(const std::string& path);
  // parse_toml(to_toml()) == *this for every valid profile.
  [[nodiscard]] std::string to_toml() const;

  bool operator==(const Profile&) const = default;
};

// The built-in profiles `hallmark init` writes into a new home: root, sub-ca-<role> for each role
// except root, and end-entity bc, idc, tls-server, proxy-client, ocsp-responder, manifest-signer.
// URLs (CRL DP, AIA) come from `base_url` when set.
struct DefaultProfileOptions {
  std::string organization = "Example OEM";
  std::string product_oid = "1.3.6.1.4.1.55555.1.1";  // hwType of the IDC's hardwareModuleName
  std::string base_url;                               // "http://pki.example.com": CRL DP and AIA
};
[[nodiscard]] std::vector<Profile> default_profiles(const DefaultProfileOptions& options);

// Errc::forbidden with exact, user-facing text:
//   "profile idc does not allow EC P-521 keys (allowed: EC P-256, EC P-384, Ed25519, RSA 2048-4096)"
//   "profile idc does not allow RSA 1024 keys (minimum 2048 bits)"
[[nodiscard]] Status check_key_policy(const Profile& profile, const crypto::KeyInfo& key);

}  // namespace hallmark::ca
