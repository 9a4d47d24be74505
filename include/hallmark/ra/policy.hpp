#pragma once
// An EST alias's policy as data: which CA issues, under which profile, who may enroll and re-enroll,
// and what happens after issuance. Parsed from [est.alias.<name>] of hallmark.toml by the est layer;
// the registration authority only reads it. See docs/est.md for the TOML keys.
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hallmark/core/result.hpp"
#include "hallmark/crypto/key.hpp"

namespace hallmark::ra {

// How a device proves who it is on simpleenroll.
enum class Authenticator {
  bc,         // Option 2: birth certificate in TLS + UKID (SHA-256 of the BC's key) in the CSR
  bc_secret,  // Option 3: birth certificate in TLS + the vendor-injected UKID secret
};
[[nodiscard]] std::string_view to_string(Authenticator a) noexcept;  // "bc" | "bc-secret"
[[nodiscard]] Result<Authenticator> parse_authenticator(std::string_view text);

// What becomes of the birth certificate once the IDC is committed.
enum class AfterIssue {
  none,
  revoke_bc,   // our own BC CA: flag it revoked (CRL revocation through the hook, see Registrar)
  consume_bc,  // a vendor's BC CA, not ours to revoke: flag it consumed
};
[[nodiscard]] std::string_view to_string(AfterIssue a) noexcept;  // "none" | "revoke-bc" | "consume-bc"
[[nodiscard]] Result<AfterIssue> parse_after_issue(std::string_view text);

// Proof-of-possession linking (RFC 7030 §3.5): the CSR's challengePassword carries the base64 of the
// TLS channel binding (tls-unique on TLS 1.2, RFC 9266 tls-exporter on TLS 1.3).
enum class PopLinking { off, optional, required };
[[nodiscard]] std::string_view to_string(PopLinking p) noexcept;  // "off" | "optional" | "required"
[[nodiscard]] Result<PopLinking> parse_pop_linking(std::string_view text);

// Where the IDC's subject serialNumber ({serial}) comes from.
enum class SerialSource {
  automatic,  // the end entity's: the UKID for Option 2, the vendor unique id for Option 3
  ukid,       // the UKID (Option 2 devices only)
  unique_id,  // the vendor unique id (chip serial)
};
[[nodiscard]] std::string_view to_string(SerialSource s) noexcept;  // "auto" | "ukid" | "unique-id"
[[nodiscard]] Result<SerialSource> parse_serial_source(std::string_view text);

// [a-z0-9-]{1,63}: an alias is one URL path segment (RFC 7030 §3.2.2).
[[nodiscard]] bool is_valid_alias_name(std::string_view name) noexcept;

struct AliasPolicy {
  std::string name;
  std::string ca;               // issuing CA (a CA name of the PKI home)
  std::string profile = "idc";  // end-entity profile in profiles/
  std::vector<Authenticator> authenticators{Authenticator::bc};
  std::vector<std::string> enroll_anchors;  // CA names whose certificates anchor BCs (ours or a vendor's)
  std::vector<std::string> reenroll_cas;    // IDC CAs whose certificates may re-enroll (default: `ca`)
  std::string ukid_field = "serialNumber";  // CSR subject attribute carrying the UKID (Option 2)
  // Option 3 firmware that puts the secret in a CSR subject attribute (as the seed describes);
  // nullopt: the secret comes from challengePassword or the HTTP Basic password only.
  std::optional<std::string> secret_field;
  SerialSource subject_serial = SerialSource::automatic;
  AfterIssue after_issue = AfterIssue::none;
  PopLinking pop_linking = PopLinking::off;
  bool allow_key_reuse = false;                  // re-enrollment may keep the old key
  bool allow_reissue = false;                    // an enrolled device may enroll again with a different key
  std::optional<std::chrono::seconds> lifetime;  // nullopt: "forever" (99991231235959Z)
  std::optional<std::chrono::seconds> renewal_window;  // nullopt: re-enroll any time before expiry
  std::chrono::seconds grace_period{0};  // after expiry, an unrevoked IDC may still re-enroll this long
  bool recovery_through_bc = false;      // an expired IDC's device may enroll again with its BC
  // A Lite device (manifest version 2: identity signed, no key) is known by the unique id its BC
  // carries (subject CN "sn<id>", else serialNumber); its first enrollment pins the BC's key.
  bool pin_lite_devices = true;
  bool base64_wrap = false;  // wrap response base64 at 64 columns
  bool serverkeygen = false;
  crypto::KeyType serverkeygen_key_type = crypto::KeyType::ec_p256;
  std::map<std::string, std::string> variables;  // extra profile {variables}, e.g. product

  [[nodiscard]] bool allows(Authenticator a) const;
  // Cross-field checks; messages name the section: "[est.alias.x] after_issue = \"revoke-bc\" ...".
  [[nodiscard]] Status validate() const;
};

// A subject attribute name as the CSR may carry it ("serialNumber", "CN", or a dotted OID) to its
// dotted OID; nullopt for names we do not know.
[[nodiscard]] std::optional<std::string> attribute_oid(std::string_view name);

inline constexpr const char* kOidSerialNumber = "2.5.4.5";
inline constexpr const char* kOidChallengePassword = "1.2.840.113549.1.9.7";

}  // namespace hallmark::ra
