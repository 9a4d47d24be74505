#include "hallmark/ra/policy.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace hallmark::ra {

std::string_view to_string(Authenticator a) noexcept {
  switch (a) {
    case Authenticator::bc: return "bc";
    case Authenticator::bc_secret: return "bc-secret";
  }
  return "bc";
}

Result<Authenticator> parse_authenticator(std::string_view text) {
  if (text == "bc") return Authenticator::bc;
  if (text == "bc-secret") return Authenticator::bc_secret;
  return fail(Errc::invalid_input, fmt::format("unknown authenticator '{}' (known: bc, bc-secret)", text));
}

std::string_view to_string(AfterIssue a) noexcept {
  switch (a) {
    case AfterIssue::none: return "none";
    case AfterIssue::revoke_bc: return "revoke-bc";
    case AfterIssue::consume_bc: return "consume-bc";
  }
  return "none";
}

Result<AfterIssue> parse_after_issue(std::string_view text) {
  if (text == "none") return AfterIssue::none;
  if (text == "revoke-bc") return AfterIssue::revoke_bc;
  if (text == "consume-bc") return AfterIssue::consume_bc;
  return fail(Errc::invalid_input,
              fmt::format("after_issue must be one of none, revoke-bc, consume-bc (got '{}')", text));
}

std::string_view to_string(PopLinking p) noexcept {
  switch (p) {
    case PopLinking::off: return "off";
    case PopLinking::optional: return "optional";
    case PopLinking::required: return "required";
  }
  return "off";
}

Result<PopLinking> parse_pop_linking(std::string_view text) {
  if (text == "off") return PopLinking::off;
  if (text == "optional") return PopLinking::optional;
  if (text == "required") return PopLinking::required;
  return fail(Errc::invalid_input,
              fmt::format("pop_linking must be one of off, optional, required (got '{}')", text));
}

std::string_view to_string(SerialSource s) noexcept {
  switch (s) {
    case SerialSource::automatic: return "auto";
    case SerialSource::ukid: return "ukid";
    case SerialSource::unique_id: return "unique-id";
  }
  return "auto";
}

Result<SerialSource> parse_serial_source(std::string_view text) {
  if (text == "auto") return SerialSource::automatic;
  if (text == "ukid") return SerialSource::ukid;
  if (text == "unique-id") return SerialSource::unique_id;
  return fail(Errc::invalid_input,
              fmt::format("subject_serial must be one of auto, ukid, unique-id (got '{}')", text));
}

bool is_valid_alias_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 63) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
}

bool AliasPolicy::allows(Authenticator a) const {
  return std::find(authenticators.begin(), authenticators.end(), a) != authenticators.end();
}

std::optional<std::string> attribute_oid(std::string_view name) {
  static constexpr std::pair<std::string_view, std::string_view> kKnown[] = {
      {"serialNumber", "2.5.4.5"}, {"CN", "2.5.4.3"},         {"commonName", "2.5.4.3"},
      {"O", "2.5.4.10"},           {"OU", "2.5.4.11"},        {"UID", "0.9.2342.19200300.100.1.1"},
      {"title", "2.5.4.12"},       {"pseudonym", "2.5.4.65"}, {"name", "2.5.4.41"}};
  for (const auto& [n, oid] : kKnown) {
    if (n == name) return std::string(oid);
  }
  // A dotted OID: digits and single dots, at least two arcs.
  if (name.empty() || name.front() == '.' || name.back() == '.') return std::nullopt;
  bool dot = false;
  int arcs = 1;
  for (char c : name) {
    if (c == '.') {
      if (dot) return std::nullopt;
      dot = true;
      ++arcs;
    } else if (c >= '0' && c <= '9') {
      dot = false;
    } else {
      return std::nullopt;
    }
  }
  if (arcs < 2) return std::nullopt;
  return std::string(name);
}

Status AliasPolicy::validate() const {
  const std::string where = fmt::format("[est.alias.{}]", name);
  const auto bad = [&](std::string text) { return fail(Errc::invalid_input, where + " " + text); };
  if (!is_valid_alias_name(name)) {
    return fail(Errc::invalid_input,
                fmt::format("[est.alias.{}] invalid alias name: use 1-63 of a-z 0-9 -", name));
  }
  if (ca.empty()) return bad("ca is required (the issuing CA's name)");
  if (profile.empty()) return bad("profile must not be empty");
  if (authenticators.empty()) return bad("authenticators must list at least one of bc, bc-secret");
  if (enroll_anchors.empty()) return bad("enroll_anchors must name at least one CA (the BC anchors)");
  if (!attribute_oid(ukid_field)) {
    return bad(fmt::format("ukid_field: unknown attribute '{}' (use serialNumber, CN, UID or a dotted OID)",
                           ukid_field));
  }
  if (secret_field && !attribute_oid(*secret_field)) {
    return bad(fmt::format("secret_field: unknown attribute '{}' (use serialNumber, CN, UID or a dotted OID)",
                           *secret_field));
  }
  if (secret_field && !allows(Authenticator::bc_secret)) {
    return bad("secret_field needs the bc-secret authenticator");
  }
  if (after_issue == AfterIssue::revoke_bc && !allows(Authenticator::bc)) {
    return bad("after_issue = \"revoke-bc\" is for Option 2 (authenticator bc): a vendor's BC is consumed");
  }
  if (recovery_through_bc && after_issue != AfterIssue::none) {
    return bad(fmt::format(
        "recovery_through_bc needs after_issue = \"none\" (a {} BC cannot authenticate a recovery)",
        after_issue == AfterIssue::revoke_bc ? "revoked" : "consumed"));
  }
  if (lifetime && lifetime->count() <= 0) return bad("lifetime must be positive");
  if (renewal_window && renewal_window->count() <= 0) return bad("renewal_window must be positive");
  if (grace_period.count() < 0) return bad("grace_period must not be negative");
  return {};
}

}  // namespace hallmark::ra
