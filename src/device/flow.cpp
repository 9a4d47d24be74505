#include "flow.hpp"

#include <fmt/format.h>

namespace hallmark::device::detail {

x509::TrustStore make_trust_store(const std::vector<x509::Certificate>& anchors) {
  x509::TrustStore t;
  for (const auto& a : anchors) t.add_anchor(a);
  return t;
}

Status check_cacerts(const std::vector<x509::Certificate>& cacerts, const x509::TrustStore& trust,
                     Seconds now) {
  if (cacerts.empty()) return fail(Errc::invalid_input, "cacerts: no certificate");
  for (const auto& c : cacerts) {
    if (!c.is_ca()) {
      return fail(Errc::forbidden,
                  fmt::format("cacerts: '{}' is not a CA certificate", c.subject().to_string()));
    }
    if (auto path = trust.verify(c, cacerts, now); !path) {
      return fail(Errc::forbidden,
                  fmt::format("cacerts: '{}' does not chain to the trust anchor ({}); refused",
                              c.subject().to_string(), path.error().detail));
    }
  }
  return {};
}

Status check_issued(const std::vector<x509::Certificate>& answer, const crypto::PublicKey& key,
                    const std::vector<x509::Certificate>& cacerts, const x509::TrustStore& trust,
                    Seconds now) {
  if (answer.empty()) return fail(Errc::invalid_input, "the answer holds no certificate");
  // The leaf is the one certificate of the answer that is not a CA.
  const x509::Certificate* leaf = nullptr;
  for (const auto& c : answer) {
    if (!c.is_ca()) {
      if (leaf != nullptr)
        return fail(Errc::invalid_input, "the answer holds more than one end-entity certificate");
      leaf = &c;
    }
  }
  if (leaf == nullptr) return fail(Errc::invalid_input, "the answer holds no end-entity certificate");
  if (!(leaf->public_key() == key)) {
    return fail(Errc::forbidden,
                "the issued certificate is for a different key than the one requested; refused");
  }
  std::vector<x509::Certificate> pool = cacerts;
  pool.insert(pool.end(), answer.begin(), answer.end());
  if (auto path = trust.verify(*leaf, pool, now); !path) {
    return fail(Errc::forbidden,
                fmt::format("the issued certificate does not chain to cacerts and the trust anchor "
                            "({}); refused",
                            path.error().detail));
  }
  return {};
}

Result<x509::Csr> make_enroll_csr(const CsrAttrs& attrs, const CsrPlan& plan, const crypto::Signer& key) {
  std::vector<x509::NameAttribute> subject;
  for (const auto& oid : attrs.oids) {
    if (oid == kOidChallengePassword) continue;
    subject.push_back({attribute_name(oid), plan.ukid});
  }
  if (subject.empty()) subject.push_back({"serialNumber", plan.ukid});
  const auto name = HM_TRY(x509::Name::make(subject));
  x509::CsrOptions options;
  if (plan.channel_binding) {
    options.challenge_password = Secret(*plan.channel_binding);
  } else if (plan.ukid_secret != nullptr) {
    options.challenge_password = *plan.ukid_secret;
  }
  return x509::make_csr(name, key, options);
}

Result<x509::Csr> make_reenroll_csr(const x509::Certificate& idc, const crypto::Signer& key,
                                    std::optional<std::string> channel_binding) {
  x509::CsrOptions options;
  options.subject_alt_name = idc.subject_alt_name();
  if (channel_binding) options.challenge_password = Secret(std::move(*channel_binding));
  return x509::make_csr(idc.subject(), key, options);
}

std::vector<x509::Certificate> intermediates_of(const std::vector<x509::Certificate>& cacerts) {
  std::vector<x509::Certificate> out;
  for (const auto& c : cacerts) {
    if (!c.is_self_issued()) out.push_back(c);
  }
  return out;
}

}  // namespace hallmark::device::detail
