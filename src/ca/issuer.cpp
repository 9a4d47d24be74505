#include "hallmark/ca/issuer.hpp"

#include <utility>

#include "hallmark/x509/builder.hpp"
#include "template.hpp"

namespace hallmark::ca {

namespace {

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// hwSerialNum: the bytes a hex string spells ("0123F2408EA1FCF201"), else the string's UTF-8 bytes.
Bytes hardware_serial_bytes(std::string_view text) {
  bool hex = !text.empty() && text.size() % 2 == 0;
  for (std::size_t i = 0; hex && i < text.size(); ++i) hex = hex_value(text[i]) >= 0;
  if (!hex) return to_bytes(text);
  Bytes out(text.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<std::byte>(hex_value(text[2 * i]) << 4 | hex_value(text[2 * i + 1]));
  }
  return out;
}

std::unexpected<Error> missing_variable(const Profile& profile, std::string_view what,
                                        std::string_view name) {
  return fail(Errc::invalid_input, "profile " + profile.name + ": " + std::string(what) +
                                       " needs variable {" + std::string(name) + "}");
}

// Everything of the certificate but serial and validity, from the profile and the variables only.
Status fill_template(x509::CertificateTemplate& tmpl, const Profile& profile, const detail::Variables& vars,
                     const crypto::KeyInfo& key_info, const x509::Csr* csr) {
  std::string value;
  std::string_view missing;

  std::vector<x509::NameAttribute> attributes;
  attributes.reserve(profile.subject.size());
  for (const auto& rule : profile.subject) {
    if (!detail::expand_template(rule.value, vars, profile.variables, value, missing)) {
      if (rule.required) return missing_variable(profile, "subject " + rule.type, missing);
      continue;
    }
    attributes.push_back(x509::NameAttribute{rule.type, value});
  }
  tmpl.subject = HM_TRY(x509::Name::make(attributes));

  x509::SubjectAltName san;
  if (profile.hardware_module_name_type) {
    const std::string* serial = detail::find_variable("hw_serial", vars, profile.variables);
    if (serial == nullptr) return missing_variable(profile, "hardwareModuleName", "hw_serial");
    san.names.push_back(x509::GeneralName::hmn(
        x509::HardwareModuleName{*profile.hardware_module_name_type, hardware_serial_bytes(*serial)}));
  }
  // SAN templates whose variables are missing are left out ("IP when given").
  auto add_names = [&](const std::vector<std::string>& templates, x509::GeneralName::Kind kind) {
    for (const auto& t : templates) {
      if (detail::expand_template(t, vars, profile.variables, value, missing)) {
        x509::GeneralName name;
        name.kind = kind;
        name.value = value;
        san.names.push_back(std::move(name));
      }
    }
  };
  add_names(profile.san_dns, x509::GeneralName::Kind::dns);
  add_names(profile.san_uri, x509::GeneralName::Kind::uri);
  add_names(profile.san_ip, x509::GeneralName::Kind::ip);
  if (profile.allow_csr_san && csr != nullptr) {
    if (auto requested = csr->requested_subject_alt_name()) {
      for (auto& name : requested->names) {
        using Kind = x509::GeneralName::Kind;
        if (name.kind == Kind::dns || name.kind == Kind::ip || name.kind == Kind::uri) {
          san.names.push_back(std::move(name));
        }
      }
    }
  }
  if (!san.names.empty()) {
    san.critical = attributes.empty();  // RFC 5280 §4.2.1.6
    tmpl.subject_alt_name = std::move(san);
  } else if (attributes.empty()) {
    return fail(Errc::invalid_input, "profile " + profile.name +
                                         ": the certificate would have neither a subject "
                                         "nor a subject alternative name");
  }

  tmpl.basic_constraints = profile.basic_constraints;
  if (profile.key_usage) {
    x509::KeyUsage usage = *profile.key_usage;
    if (profile.key_agreement_for_ec && key_info.algorithm == crypto::KeyInfo::Algorithm::ec) {
      usage.bits |= x509::kKeyAgreement;
    }
    tmpl.key_usage = usage;
  }
  tmpl.extended_key_usage = profile.extended_key_usage;
  if (!profile.crl_distribution_points.empty()) {
    tmpl.crl_distribution_points = x509::CrlDistributionPoints{profile.crl_distribution_points};
  }
  if (!profile.ocsp_urls.empty() || !profile.ca_issuers_urls.empty()) {
    tmpl.authority_info_access = x509::AuthorityInfoAccess{profile.ocsp_urls, profile.ca_issuers_urls};
  }
  if (!profile.certificate_policies.empty()) {
    tmpl.certificate_policies = x509::CertificatePolicies{profile.certificate_policies};
  }
  tmpl.ocsp_no_check = profile.ocsp_no_check;
  return {};
}

}  // namespace

Issuer::Issuer(x509::Certificate certificate, std::shared_ptr<const crypto::Signer> signer,
               const Clock& clock)
    : certificate_(std::move(certificate)), signer_(std::move(signer)), clock_(clock) {
  issuer_ = certificate_;
  ca_not_after_ = certificate_.not_after();
  ca_no_expiry_ = ca_not_after_ == kNoExpiry;
  auto bc = certificate_.basic_constraints();
  ca_may_issue_cas_ = !(bc && bc->path_length && *bc->path_length == 0);
}

Result<x509::Certificate> Issuer::issue(const IssueRequest& request, const Profile& profile) const {
  if (profile.kind == ProfileKind::root) {
    return fail(Errc::invalid_input,
                "profile " + profile.name + " is for self-signed roots (use issue_self_signed)");
  }
  if (!ca_may_issue_cas_ && profile.kind == ProfileKind::sub_ca) {
    return fail(Errc::forbidden, "profile " + profile.name + ": issuing CA " +
                                     certificate_.subject().to_string() +
                                     " has path length 0 and cannot issue CA certificates");
  }

  const x509::Csr* csr = std::get_if<x509::Csr>(&request.key_source);
  x509::CertificateTemplate tmpl;
  if (csr != nullptr) {
    if (!csr->verify_self_signature()) return fail(Errc::invalid_input, "CSR signature does not verify");
    tmpl.public_key = csr->public_key();
  } else {
    tmpl.public_key = std::get<crypto::PublicKey>(request.key_source);
  }
  const crypto::KeyInfo key_info = tmpl.public_key.info();
  HM_TRY_VOID(check_key_policy(profile, key_info));
  HM_TRY_VOID(fill_template(tmpl, profile, request.variables, key_info, csr));

  const Seconds now = clock_.now();
  if (!ca_no_expiry_ && now >= ca_not_after_) {
    return fail(Errc::forbidden, "issuing CA " + certificate_.subject().to_string() + " expired at " +
                                     to_iso8601(ca_not_after_));
  }
  const Seconds start = request.not_before.value_or(now);
  tmpl.not_before = request.not_before ? *request.not_before : now - profile.backdate;
  auto lifetime = request.lifetime ? request.lifetime : profile.lifetime;
  tmpl.not_after = lifetime && *lifetime < kNoExpiry - start ? start + *lifetime : kNoExpiry;
  if (!ca_no_expiry_ && tmpl.not_after > ca_not_after_) tmpl.not_after = ca_not_after_;
  if (tmpl.not_after <= tmpl.not_before) {
    return fail(Errc::invalid_input, "notBefore " + to_iso8601(tmpl.not_before) + " is not before notAfter " +
                                         to_iso8601(tmpl.not_after));
  }
  tmpl.serial = x509::make_serial();
  return x509::make_certificate(tmpl, issuer_, *signer_);
}

Result<x509::Crl> Issuer::make_crl(const x509::CrlTemplate& tmpl) const {
  return x509::make_crl(tmpl, certificate_, *signer_);
}

Result<x509::Certificate> issue_self_signed(const crypto::Signer& signer,
                                            const std::map<std::string, std::string>& variables,
                                            const Profile& profile, const Clock& clock) {
  if (profile.kind != ProfileKind::root) {
    return fail(Errc::invalid_input, "profile " + profile.name + " is not a root profile (kind " +
                                         std::string(to_string(profile.kind)) + ")");
  }
  x509::CertificateTemplate tmpl;
  tmpl.public_key = signer.public_key();
  const crypto::KeyInfo key_info = tmpl.public_key.info();
  HM_TRY_VOID(check_key_policy(profile, key_info));
  HM_TRY_VOID(fill_template(tmpl, profile, variables, key_info, nullptr));
  const Seconds now = clock.now();
  tmpl.not_before = now - profile.backdate;
  tmpl.not_after =
      profile.lifetime && *profile.lifetime < kNoExpiry - now ? now + *profile.lifetime : kNoExpiry;
  tmpl.serial = x509::make_serial();
  tmpl.authority_key_id = false;
  return x509::make_certificate(tmpl, std::nullopt, signer);
}

}  // namespace hallmark::ca
